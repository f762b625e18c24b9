/** `fabrik runs prune [--older-than 30d] [--vm V] [--id N…] [--dry-run] [--yes] [--force]`: remove ended runs' control dirs and rows. */
import { defineCommand } from "../command.js";
import { duration, runId, vmName } from "../args.js";

export default defineCommand({
  command: "prune",
  describe: "remove ended runs (control dir with DB and backups in the VM, registry row); lists first, never an active run",
  options: {
    "older-than": { type: "string", coerce: duration("--older-than"), default: "30d", describe: "only runs that ended longer ago than this" },
    vm: { type: "string", coerce: vmName, describe: "only this VM's runs" },
    id: { type: "string", array: true, coerce: (raw: unknown) => (Array.isArray(raw) ? raw : [raw]).map((x) => runId()(x)), describe: "exactly these runs (repeatable; --older-than does not apply)" },
    "dry-run": { type: "boolean", default: false, describe: "list what would go; change nothing" },
    yes: { alias: "y", type: "boolean", default: false, describe: "do not ask for confirmation (required without a TTY)" },
    force: { type: "boolean", default: false, describe: "also forget runs of unreachable VMs (their registry rows only; the VM's files stay)" },
  },
  async run(ctx, a) {
    const { pruneCommand } = await import("../prune-service.js");
    return pruneCommand(ctx, { olderThanMs: a["older-than"], vm: a.vm, ids: a.id, dryRun: a["dry-run"], yes: a.yes, force: a.force });
  },
});
