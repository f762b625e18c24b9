/** `fabrik runs nodes --id N`: every node × iteration with its state, attempts, last attempt and value sizes (the guide's schema queries). */
import { defineCommand } from "../command.js";
import { count, runId } from "../args.js";

export default defineCommand({
  command: "nodes",
  describe: "list a run's nodes × iterations: state, attempts, the last attempt's start and duration, response_text/error_json sizes",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    limit: { type: "string", coerce: count("--limit", 1, "2000"), default: "2000", describe: "at most this many rows" },
  },
  async run(ctx, a) {
    const [{ runNodes }, { NODE_HEADERS, nodeCells }] = await Promise.all([import("../inspect-service.js"), import("../render/inspect.js")]);
    const { rows, warnings } = await runNodes(ctx, a.id, { maxNodes: Math.min(a.limit, 5000) });
    return { kind: "list", rows, headers: NODE_HEADERS, cells: nodeCells, empty: "no nodes\n", warnings };
  },
});
