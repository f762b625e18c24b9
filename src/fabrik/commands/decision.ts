/**
 * `fabrik run approve|deny --id N [--node X] [--note TEXT] [--by NAME] [--dry-run]`: the engine's own decision on a
 * waiting approval gate, then the run continues. The two commands differ only in the decision.
 */
import { defineCommand } from "../command.js";
import { runId } from "../args.js";

/** The command for one decision (`approve` or `deny`); `describe` is its help line. */
export function decisionCommand(action: "approve" | "deny", describe: string) {
  return defineCommand({
    command: action,
    describe,
    options: {
      id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
      node: { type: "string", describe: "the gate's node id (needed when several gates wait)" },
      note: { type: "string", describe: "a note kept with the decision" },
      by: { type: "string", describe: "who decides (kept with the decision)" },
      "dry-run": { type: "boolean", default: false, describe: "show the gate and the VM's checks; change nothing" },
    },
    async run(ctx, a) {
      const { controlCommand } = await import("../control-service.js");
      return controlCommand(ctx, { action, id: a.id, dryRun: a["dry-run"], yes: true, force: false, graceMs: 0, node: a.node, note: a.note, by: a.by, limitBytes: 100 * 1024 });
    },
  });
}
