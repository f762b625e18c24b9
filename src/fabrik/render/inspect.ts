/** Rendering `runs why`, `runs nodes` and `runs events` for people. Pure: model in, string out. */
import { sanitizeLine, sanitizeText } from "../../core/sanitize.js";
import { formatBytes, formatDuration, formatTime } from "../../core/units.js";
import type { RenderContext } from "../command.js";
import type { NodeView, TimelineEvent, WhyView } from "../inspect-service.js";

/** One timeline line: `<ISO time>  fabrik  <kind>  <text>` (sanitised: engine text comes from the VM). */
export function renderTimelineLine(e: TimelineEvent): string {
  return sanitizeLine(`${e.at}  ${e.source.padEnd(6)}  ${e.kind.padEnd(20)}  ${e.text}`.trimEnd(), 4000) + "\n";
}

/** `runs why`: the node, its attempts, retries, the last events and log lines, and ONE next command. */
export function renderWhy(v: WhyView, r: RenderContext): string {
  const L: string[] = [];
  L.push(`run ${v.id} (VM ${v.vm}, smithers run ${v.smithers_run_id}): ${v.effective_status} — ${v.reason}`);
  if (v.engine_run_status) L.push(`engine status: ${v.engine_run_status}${v.run_error ? `; error: ${v.run_error}` : ""}`);
  if (v.node) {
    const why = { waiting: "waits", "in-progress": "is running", failed: "failed", next: "is next" }[v.node.why];
    L.push("", `node: ${v.node.node_id}${v.node.iteration ? ` (iteration ${v.node.iteration})` : ""} ${why} (state ${v.node.state})${v.node.label && v.node.label !== v.node.node_id ? ` — ${v.node.label}` : ""}`);
  } else L.push("", "node: none left to run");
  if (v.attempts.length > 0) {
    L.push("attempts:");
    for (const a of v.attempts) {
      L.push(`  #${a.attempt} ${a.state.padEnd(11)} started ${r.tty && a.started_at_ms !== null ? formatTime(a.started_at_ms) : formatTime(a.started_at_ms)}  ${a.duration_ms !== null ? formatDuration(a.duration_ms) : "-"}  response ${formatBytes(a.response_bytes)}${a.error_bytes ? `, error ${formatBytes(a.error_bytes)}` : ""}`);
      if (a.error) for (const line of a.error.split("\n")) L.push(`      ${line}`);
    }
  }
  if (v.node) L.push(`retries: ${v.retries === null ? "unknown (or unlimited)" : `${v.retries}; attempts left: ${v.retries_left ?? "?"}`}`);
  for (const b of v.engine_blockers) L.push(`engine says: ${[b.kind, b.node_id, b.reason].filter(Boolean).join(" — ")}${b.unblocker ? ` (engine: ${b.unblocker})` : ""}`);
  if (v.events.length > 0) {
    L.push("", "last events:");
    for (const e of v.events) L.push("  " + renderTimelineLine(e).trimEnd());
  }
  if (v.log_tail.length > 0) {
    L.push("", "last log lines:");
    for (const l of v.log_tail) L.push("  " + sanitizeLine(l, 2000));
  }
  if (v.diagnoses.length > 0) {
    L.push("", "diagnoses:");
    for (const d of v.diagnoses) L.push(`  ${d.code}: ${d.message}`);
  }
  L.push("", `next: ${v.next_command ?? "nothing to do"}`);
  return sanitizeText(L.join("\n") + "\n");
}

/** `runs nodes` table headers. */
export const NODE_HEADERS = ["NODE", "ITER", "STATE", "ATTEMPTS", "LAST", "STARTED", "DURATION", "RESPONSE", "ERROR", "TOTAL"];

/** One `runs nodes` row's cells (sanitised). */
export function nodeCells(n: NodeView, r: RenderContext): string[] {
  const bytes = (b: number | null) => (r.tty ? formatBytes(b) : b === null ? "-" : String(b));
  const started = n.last_started_at_ms === null ? "-" : r.tty ? formatDuration(Math.max(0, r.now - n.last_started_at_ms)) + " ago" : formatTime(n.last_started_at_ms);
  return [
    sanitizeLine(n.node_id, 200),
    String(n.iteration),
    n.state,
    String(n.attempts),
    n.last_attempt === null ? "-" : `#${n.last_attempt} ${n.last_attempt_state ?? ""}`.trim(),
    started,
    n.last_duration_ms === null ? "-" : r.tty ? formatDuration(n.last_duration_ms) : String(n.last_duration_ms),
    bytes(n.response_bytes),
    bytes(n.error_bytes),
    bytes(n.total_bytes),
  ].map((c) => sanitizeLine(c, 300));
}
