/** `fabrik runs why --id N`: why the run is blocked, failed or stuck — its node, attempts, retries, last events and log lines, and one next command. */
import { defineCommand, view } from "../command.js";
import { runId } from "../args.js";

export default defineCommand({
  command: "why",
  describe: "explain why a run is blocked, failed or stuck: the node, its attempts, retries left, the last events and log lines, one next command",
  options: { id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" } },
  async run(ctx, a) {
    const [{ runWhy }, { renderWhy }] = await Promise.all([import("../inspect-service.js"), import("../render/inspect.js")]);
    const { view: v, warnings } = await runWhy(ctx, a.id);
    return view(v, renderWhy, { warnings });
  },
});
