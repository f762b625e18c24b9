/** `fabrik run attach --id N [--tail 50] [--no-follow] [--exit-status]`: print a run's log and follow it (Ctrl-C detaches). */
import { defineCommand } from "../command.js";
import { count, runId } from "../args.js";

export default defineCommand({
  command: "attach",
  describe: "print a run's log and follow it; Ctrl-C detaches and never stops the run",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    tail: { type: "string", coerce: count("--tail", 0, "50"), default: "50", describe: "lines of history to print first" },
    follow: { type: "boolean", default: true, describe: "keep following (--no-follow prints and exits)" },
    "exit-status": { type: "boolean", default: false, describe: "exit with the run's outcome (see `fabrik help exit-codes`)" },
  },
  async run(ctx, a) {
    const { attachStream } = await import("../attach.js");
    return attachStream(ctx, { id: a.id, tail: a.tail, follow: a.follow, exitStatus: a["exit-status"] });
  },
});
