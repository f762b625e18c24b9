/** `fabrik run cancel --id N [--yes] [--force] [--grace 30s] [--dry-run]`: stop a run the engine's way; an ended run is left alone. */
import { defineCommand } from "../command.js";
import { duration, runId } from "../args.js";

export default defineCommand({
  command: "cancel",
  describe: "cancel a run: the engine's own cancel (0.32) or SIGTERM through the launcher (0.5); the DB then says cancelled",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    yes: { alias: "y", type: "boolean", default: false, describe: "do not ask for confirmation (required without a TTY)" },
    force: { type: "boolean", default: false, describe: "SIGKILL the run's processes when they outlive --grace (only processes proven to be the run's)" },
    grace: { type: "string", coerce: duration("--grace"), default: "30s", describe: "how long the engine may take to stop (e.g. 30s, 2m)" },
    "dry-run": { type: "boolean", default: false, describe: "show what would happen and the VM's checks; change nothing" },
  },
  async run(ctx, a) {
    const { controlCommand } = await import("../control-service.js");
    return controlCommand(ctx, { action: "cancel", id: a.id, dryRun: a["dry-run"], yes: a.yes, force: a.force, graceMs: a.grace, limitBytes: 100 * 1024 });
  },
});
