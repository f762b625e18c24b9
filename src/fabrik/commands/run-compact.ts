/** `fabrik run compact --id N [--dry-run] [--limit BYTES]`: shrink an ended run's DB (backup, truncate, VACUUM; no relaunch). */
import { defineCommand } from "../command.js";
import { count, runId } from "../args.js";

export default defineCommand({
  command: "compact",
  describe: "shrink an ended run's DB: verified backup, truncate oversized response_text/error_json values, VACUUM (no relaunch)",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    limit: { type: "string", coerce: count("--limit", 1024, "102400"), default: String(100 * 1024), describe: "keep at most this many bytes per value (the tail, marker included)" },
    "dry-run": { type: "boolean", default: false, describe: "show what would change and the VM's checks; change nothing" },
  },
  async run(ctx, a) {
    const { controlCommand } = await import("../control-service.js");
    return controlCommand(ctx, { action: "compact", id: a.id, dryRun: a["dry-run"], yes: true, force: false, graceMs: 0, limitBytes: a.limit });
  },
});
