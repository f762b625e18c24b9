/** `fabrik vm create NAME`: create, start, install the engine — listr2 steps on a TTY, plain lines otherwise. */
import { defineCommand, view } from "../command.js";
import { count, engineVersion, vmName } from "../args.js";
import { DRIVER_NAMES } from "../../vm/driver.js";

export default defineCommand({
  command: "create <name>",
  describe: "create a VM, start it and install the engine",
  positionals: { name: { type: "string", demandOption: true, describe: "VM name (letters, digits, . _ -)", coerce: vmName } },
  options: {
    template: { type: "string", describe: "Lima template file (default: lima-templates/fabrik.yaml)" },
    cpus: { type: "string", coerce: count("--cpus", 1, "2"), describe: "virtual CPUs" },
    memory: { type: "string", coerce: count("--memory", 1, "4"), describe: "memory in GiB" },
    disk: { type: "string", coerce: count("--disk", 1, "20"), describe: "disk in GiB" },
    driver: { choices: DRIVER_NAMES, describe: "VM driver (default: config `driver`, else lima)" },
    engine: {
      type: "string",
      coerce: (v: unknown): string | false => (v === false ? false : engineVersion(v)),
      describe: "engine version to install (default 0.32.0); --no-engine: install it before the first run instead",
    },
    timeout: { type: "string", coerce: count("--timeout", 1, "600"), default: "600", describe: "seconds to wait for the VM to boot" },
  },
  configFlags: (a) => ({ driver: a.driver, engine: a.engine === false ? undefined : a.engine }),
  async run(ctx, a) {
    const { createVm } = await import("../vm-service.js");
    const r = await createVm(ctx, {
      name: a.name,
      driver: ctx.config.driver,
      template: a.template,
      cpus: a.cpus,
      memoryGiB: a.memory,
      diskGiB: a.disk,
      timeoutMs: a.timeout * 1000,
      engine: a.engine === false ? null : ctx.config.engineVersion,
    });
    return view(r, (v) => `${v.name}\n`);
  },
});
