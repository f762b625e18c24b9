/** `fabrik run signal --id N NAME [--data JSON] [--correlation ID] [--by NAME] [--dry-run]`: deliver a durable signal (0.32), then the run continues. */
import { defineCommand } from "../command.js";
import { runId } from "../args.js";

export default defineCommand({
  command: "signal <name>",
  describe: "deliver a signal to a run waiting on <Signal>/<WaitForEvent> (engine 0.32), then continue the run",
  positionals: { name: { type: "string", demandOption: true, describe: "the signal's name (a <Signal>'s id)" } },
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    data: { type: "string", describe: "the payload: a JSON object (default {})" },
    correlation: { type: "string", describe: "correlation id of the waiter to wake" },
    by: { type: "string", describe: "who sends it (kept with the signal)" },
    "dry-run": { type: "boolean", default: false, describe: "show the VM's checks; change nothing" },
  },
  async run(ctx, a) {
    const { controlCommand } = await import("../control-service.js");
    return controlCommand(ctx, {
      action: "signal",
      id: a.id,
      dryRun: a["dry-run"],
      yes: true,
      force: false,
      graceMs: 0,
      signalName: String(a.name),
      data: a.data,
      correlation: a.correlation,
      by: a.by,
      limitBytes: 100 * 1024,
    });
  },
});
