/** `fabrik run --vm NAME --workflow PATH [--input JSON|@file] [--name LABEL] [--engine V] [--follow]`. */
import { defineCommand, view } from "../command.js";
import { engineVersion, vmName } from "../args.js";

export default defineCommand({
  command: "$0",
  describe: "start a workflow run in a VM; prints its host id at once",
  options: {
    vm: { type: "string", coerce: vmName, describe: "VM to run in" },
    workflow: { type: "string", describe: "workflow file (.tsx) on this host" },
    input: { type: "string", describe: "workflow input: a JSON object, or @file" },
    name: { type: "string", describe: "a label for the run" },
    engine: { type: "string", coerce: engineVersion, describe: "engine version (default: config, else 0.32.0)" },
    follow: { type: "boolean", default: false, describe: "stream the log until the run ends" },
  },
  configFlags: (a) => ({ engine: a.engine }),
  async run(ctx, a) {
    const { UsageError } = await import("../../core/errors.js");
    if (!a.vm) throw new UsageError("missing --vm NAME", "e.g. fabrik run --vm dev --workflow wf.tsx");
    if (!a.workflow) throw new UsageError("missing --workflow PATH", "e.g. fabrik run --vm dev --workflow wf.tsx");
    const { launchRun } = await import("../launch.js");
    const { result, notes } = await launchRun(ctx, { vm: a.vm, workflow: a.workflow, input: a.input, label: a.name, engineVersion: ctx.config.engineVersion });
    const started = `run ${result.id} started in ${result.vm} (smithers run ${result.smithers_run_id}); follow it with \`fabrik run attach --id ${result.id}\``;
    if (!a.follow) return view(result, (v) => `${v.id}\n`, { notes: [...notes, started] });
    const { attachStream } = await import("../attach.js");
    return attachStream(ctx, { id: result.id, tail: 1_000_000, follow: true, exitStatus: false }, { notes: [...notes, started], launched: result });
  },
});
