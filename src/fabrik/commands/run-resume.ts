/** `fabrik run resume --id N [--dry-run] [--force] [--fix [--fix-limit B]] [--engine X] [--yes] [--reason TEXT]`. */
import { defineCommand } from "../command.js";
import { count, engineVersion, runId } from "../args.js";

export default defineCommand({
  command: "resume",
  describe: "continue a crashed or failed run from where it stopped",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    "dry-run": { type: "boolean", default: false, describe: "print the plan and the script; change nothing (exit 0 if resume is allowed)" },
    force: { type: "boolean", default: false, describe: "resume even if the engine heartbeat is fresh (never overrides a living process)" },
    fix: { type: "boolean", default: false, describe: "first truncate oversized response_text/error_json values and VACUUM" },
    "fix-limit": { type: "string", coerce: count("--fix-limit", 1024, "102400"), default: String(100 * 1024), describe: "--fix: keep at most this many bytes per value (the tail)" },
    yes: { alias: "y", type: "boolean", default: false, describe: "do not ask for confirmation (required without a TTY)" },
    reason: { type: "string", describe: "why you resume (kept in the run's history)" },
    engine: { type: "string", coerce: engineVersion, describe: "resume with this engine version (same dialect as the run's DB; installed first)" },
  },
  async run(ctx, a) {
    const { resumeCommand } = await import("../resume-service.js");
    return resumeCommand(ctx, { id: a.id, dryRun: a["dry-run"], force: a.force, fix: a.fix, fixLimitBytes: a["fix-limit"], yes: a.yes, reason: a.reason, engine: a.engine });
  },
});
