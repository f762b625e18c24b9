/** `fabrik runs list`: live by default, one round trip per VM; unreachable VMs warn but never fail the command. */
import { defineCommand } from "../command.js";
import { count, vmName } from "../args.js";

export default defineCommand({
  command: "list",
  describe: "list runs with their live status (one round trip per VM)",
  options: {
    vm: { type: "string", coerce: vmName, describe: "only runs in this VM" },
    status: { type: "string", array: true, describe: "only runs whose live status is one of these (repeatable or comma-separated: stale, orphaned, unknown, unreachable, waiting-…; groups waiting, active, ended)" },
    stuck: { type: "boolean", default: false, describe: "only stuck runs: stale, orphaned, unknown, and running runs whose task has run longer than thresholds.task_running_long_ms" },
    limit: { type: "string", coerce: count("--limit", 1, "50"), default: "20", describe: "at most this many runs" },
    since: { type: "string", describe: "only runs created within this duration (e.g. 2h, 30m, 7d) or since a date" },
    live: { type: "boolean", default: true, describe: "ask the VMs (--no-live: cache only)" },
    quiet: { alias: "q", type: "boolean", default: false, describe: "print run ids only" },
  },
  async run(ctx, a) {
    const [{ listRunViews }, { RUN_LIST_HEADERS, runListCells, NO_RUNS }] = await Promise.all([import("../runs-service.js"), import("../render/run.js")]);
    const { views, json, warnings } = await listRunViews(ctx, { vm: a.vm, statuses: a.status?.map(String), stuck: a.stuck, limit: a.limit, since: a.since, live: a.live });
    return {
      kind: "list",
      rows: views,
      ...(json ? { json } : {}),
      headers: RUN_LIST_HEADERS,
      cells: runListCells,
      ...(a.quiet ? { line: (v: { id: number }) => String(v.id) } : {}),
      empty: NO_RUNS,
      warnings,
    };
  },
});
