/** `fabrik runs show --id N [--no-live]`: the VM as source of truth; `--no-live` never touches the VM. */
import { defineCommand, view } from "../command.js";
import { runId } from "../args.js";

export default defineCommand({
  command: "show",
  describe: "show one run, with the VM as source of truth",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    live: { type: "boolean", default: true, describe: "ask the VM (--no-live: cache only, never touches the VM)" },
  },
  async run(ctx, a) {
    const [{ showRun }, { renderRunDetail }] = await Promise.all([import("../runs-service.js"), import("../render/run.js")]);
    const { view: v, warnings } = await showRun(ctx, a.id, { live: a.live });
    return view(v, renderRunDetail, { warnings });
  },
});
