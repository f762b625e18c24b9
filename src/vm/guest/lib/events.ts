/**
 * Reading the engine's own event log, `_smithers_events(run_id, seq, timestamp_ms, type, payload_json)` — the same
 * table in 0.32 and 0.5, the one `smithers events` prints (0.32). Read-only, through the caller's read-only
 * connection (lib/db.ts). Payloads are read only up to {@link PAYLOAD_READ_MAX} bytes (agent output can be
 * huge); each event becomes a short line's worth of facts.
 */
import type { Database } from "bun:sqlite";
import type { EventFact } from "../../probe-schema.js";
import { columnsOf } from "./db.js";
import { cap, int, ms } from "./text.js";

/** Payloads larger than this (bytes) are not parsed: the event keeps its type, seq and time. */
const PAYLOAD_READ_MAX = 64 * 1024;

/**
 * Event types left out unless `raw` (the engine's own default view leaves them out too: agent chunks, token
 * counts, tool calls, frames and heartbeats — thousands per hour of agent work).
 */
export const NOISY_EVENT_TYPES = [
  "AgentEvent", "AgentTraceEvent", "AgentTraceSummary", "AgentSessionEvent", "TokenUsageReported", "NodeOutput", "FrameCommitted",
  "TaskHeartbeat", "SandboxHeartbeat", "ToolCallStarted", "ToolCallFinished", "SnapshotCaptured", "MemoryFactSet", "MemoryRecalled",
  "MemoryMessageSaved", "SupervisorPollCompleted",
] as const;

/** What to read. */
export interface EventQuery {
  /** Only events after this seq (following); null: the last `limit` events. */
  after_seq: number | null;
  limit: number;
  /** Only events whose payload names this node id. */
  node: string | null;
  /** Only events at or after this time (VM clock, epoch ms). */
  since_ms: number | null;
  /** Include the noisy types ({@link NOISY_EVENT_TYPES}). */
  raw: boolean;
}

type Row = Record<string, unknown>;

/** A short, human detail from an event's payload (status, error message, decision), or null. */
function detailOf(type: string, p: Row): string | null {
  const err = p.error;
  const errText = typeof err === "string" ? err : err && typeof err === "object" && typeof (err as Row).message === "string" ? String((err as Row).message) : null;
  const parts: string[] = [];
  if (typeof p.status === "string") parts.push(p.status);
  if (typeof p.reason === "string") parts.push(p.reason);
  if (errText) parts.push(errText);
  if (typeof p.signalName === "string") parts.push(`signal ${p.signalName}`);
  if (typeof p.decidedBy === "string") parts.push(`by ${p.decidedBy}`);
  if (type === "NodeRetrying" && typeof p.attempt === "number") parts.push(`next attempt ${p.attempt}`);
  const t = parts.join("; ").replace(/\s+/g, " ").trim();
  return t ? cap(t, 500) : null;
}

/**
 * Events of run `runId`, oldest first, as {@link EventFact}s; `truncated` when more matched than `limit`.
 * Returns `{ events: [], truncated: false }` when the DB has no `_smithers_events` table.
 */
export function readEvents(db: Database, runId: string, q: EventQuery): { events: EventFact[]; truncated: boolean } {
  const cols = columnsOf(db, "_smithers_events");
  if (!["run_id", "seq", "type"].every((c) => cols.has(c))) return { events: [], truncated: false };
  const ts = cols.has("timestamp_ms") ? "timestamp_ms" : "NULL";
  const pj = cols.has("payload_json") ? "payload_json" : "NULL";
  const where: string[] = ["run_id = ?"];
  const params: unknown[] = [runId];
  if (!q.raw) {
    where.push(`type NOT IN (${NOISY_EVENT_TYPES.map(() => "?").join(", ")})`);
    params.push(...NOISY_EVENT_TYPES);
  }
  if (q.after_seq !== null) {
    where.push("seq > ?");
    params.push(q.after_seq);
  }
  if (q.since_ms !== null && ts !== "NULL") {
    where.push(`${ts} >= ?`);
    params.push(q.since_ms);
  }
  if (q.node !== null && pj !== "NULL") {
    where.push(`(CASE WHEN octet_length(${pj}) <= ${PAYLOAD_READ_MAX} AND json_valid(${pj}) THEN json_extract(${pj}, '$.nodeId') END) = ?`);
    params.push(q.node);
  }
  const limit = Math.max(1, Math.min(q.limit, 100_000));
  // Following reads forward from a seq; a first look takes the LAST events (newest `limit`), shown oldest first.
  const order = q.after_seq !== null ? "seq ASC" : "seq DESC";
  const rows = db
    .query<Row>(
      `SELECT seq, ${ts} AS ts, type, CASE WHEN octet_length(${pj}) <= ${PAYLOAD_READ_MAX} THEN ${pj} END AS payload
       FROM _smithers_events WHERE ${where.join(" AND ")} ORDER BY ${order} LIMIT ?`,
    )
    .all(...params, limit + 1);
  const truncated = rows.length > limit;
  const kept = rows.slice(0, limit);
  if (q.after_seq === null) kept.reverse();
  const events = kept.map((r): EventFact => {
    let p: Row = {};
    if (typeof r.payload === "string") {
      try {
        const j: unknown = JSON.parse(r.payload);
        if (j && typeof j === "object" && !Array.isArray(j)) p = j as Row;
      } catch {
        /* not JSON: no detail */
      }
    }
    const type = cap(r.type, 100) ?? "";
    return {
      seq: int(r.seq) ?? 0,
      ts_ms: ms(r.ts),
      type,
      node_id: typeof p.nodeId === "string" ? cap(p.nodeId, 500) : null,
      iteration: int(p.iteration),
      attempt: int(p.attempt),
      detail: detailOf(type, p),
    };
  });
  return { events, truncated };
}
