/** `fabrik runs events --id N [--follow] [--since D] [--node X]`: one timeline of fabrik's and the engine's events (NDJSON with --json). */
import { defineCommand } from "../command.js";
import { count, runId, seconds } from "../args.js";

export default defineCommand({
  command: "events",
  describe: "a run's timeline: fabrik's events (launched, status, resumed, cancel, …) and the engine's, ordered by time",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id (the host id shown by `fabrik runs list`)" },
    follow: { alias: "f", type: "boolean", default: false, describe: "keep printing new events until the run ends (Ctrl-C stops following, never the run)" },
    since: { type: "string", describe: "only events within this duration (e.g. 30m, 2h) or since a date" },
    node: { type: "string", describe: "only the engine's events about this node" },
    limit: { type: "string", coerce: count("--limit", 1, "1000"), default: "1000", describe: "at most this many engine events first (the newest)" },
    raw: { type: "boolean", default: false, describe: "also the engine's agent chunks, token counts, tool calls, frames and heartbeats" },
    interval: { type: "string", coerce: seconds("--interval", 0.5), default: "1", describe: "--follow: seconds between looks" },
  },
  async run(ctx, a) {
    const { eventsStream } = await import("../events-service.js");
    return eventsStream(ctx, { id: a.id, follow: a.follow, since: a.since, node: a.node, limit: a.limit, raw: a.raw, intervalS: a.interval });
  },
});
