/** `fabrik vm install-engine NAME [--engine V]`: install (or repair) an engine in a VM — the fix `fabrik doctor` names. */
import { defineCommand, view } from "../command.js";
import { engineVersion, vmName } from "../args.js";

export default defineCommand({
  command: "install-engine <name>",
  describe: "install an engine (bun and smithers-orchestrator) in a VM; does nothing when it is installed",
  positionals: { name: { type: "string", coerce: vmName, demandOption: true, describe: "VM name" } },
  options: { engine: { type: "string", coerce: engineVersion, describe: "engine version (default: config engine.version)" } },
  configFlags: (a) => ({ engine: a.engine }),
  async run(ctx, a) {
    const { installEngine } = await import("../engine-service.js");
    const r = await installEngine(ctx, a.name, ctx.config.engineVersion);
    return view(r, (v) => `${v.vm}\t${v.engine_version}\t${v.fresh ? "installed" : "already installed"}\n`);
  },
});
