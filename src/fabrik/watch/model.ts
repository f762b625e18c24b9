/**
 * `runs watch`, the model: what watch remembers of each run between refreshes and the events between two
 * refreshes. Pure and bounded (no history is kept); time comes in as an argument.
 */
import type { RunView } from "../runs-service.js";
import type { NodeFact } from "../../vm/probe-schema.js";
import { RunEndTracker, type RunEnd } from "../status/run-end.js";

/** What watch remembers of a run between refreshes. */
export interface WatchSnapshot {
  id: number;
  effective_status: string;
  source: string;
  exit_code: number | null;
  /** node key (`id#iteration`) → `state/attempt`. */
  nodes: Map<string, string>;
  diagnoses: Set<string>;
  mismatches: Set<string>;
}

/** One change, as printed off a TTY and as NDJSON (`--json`). `ts` is ISO-8601 UTC. */
export interface WatchEvent {
  type: "status" | "node" | "diagnosis" | "mismatch" | "unreachable" | "reachable" | "final";
  ts: string;
  run_id: number;
  vm: string;
  [k: string]: unknown;
}

const nodeKey = (n: NodeFact) => `${n.node_id}#${n.iteration}`;

export function snapshotOf(v: RunView, nodes: NodeFact[] | null): WatchSnapshot {
  return {
    id: v.id,
    effective_status: v.effective_status,
    source: v.source,
    exit_code: v.exit_code,
    nodes: new Map((nodes ?? []).map((n) => [nodeKey(n), `${n.state}/${n.last_attempt ?? 0}`])),
    diagnoses: new Set(v.diagnoses.map((d) => d.code)),
    mismatches: new Set(v.mismatches.map((m) => `${m.field}:${m.cache}->${m.live}`)),
  };
}

/** The events between two snapshots of one run. `prev` undefined = first sight. */
export function diffSnapshots(prev: WatchSnapshot | undefined, next: WatchSnapshot, v: RunView, nodes: NodeFact[] | null, ts: string): WatchEvent[] {
  const out: WatchEvent[] = [];
  const base = { ts, run_id: v.id, vm: v.vm };
  if (!prev || prev.source !== next.source) {
    if (next.source === "unreachable") out.push({ ...base, type: "unreachable", reason: v.unreachable_reason });
    else if (prev?.source === "unreachable") out.push({ ...base, type: "reachable" });
  }
  if (next.source !== "unreachable" && (!prev || prev.effective_status !== next.effective_status)) {
    out.push({ ...base, type: "status", from: prev?.effective_status ?? null, to: next.effective_status, progress: v.progress ? { finished: v.progress.finished, total: v.progress.total } : null, reason: v.reason });
  }
  for (const n of nodes ?? []) {
    const k = nodeKey(n);
    const now = next.nodes.get(k);
    if (prev?.nodes.get(k) === now) continue;
    if (!prev && n.state === "pending") continue;
    out.push({ ...base, type: "node", node_id: n.node_id, iteration: n.iteration, state: n.state, attempt: n.last_attempt, error: n.error });
  }
  for (const d of v.diagnoses) {
    if (prev?.diagnoses.has(d.code)) continue;
    out.push({ ...base, type: "diagnosis", code: d.code, severity: d.severity, message: d.message, next_command: d.next_command });
  }
  for (const m of v.mismatches) {
    const k = `${m.field}:${m.cache}->${m.live}`;
    if (prev?.mismatches.has(k)) continue;
    out.push({ ...base, type: "mismatch", field: m.field, cache: m.cache, live: m.live, cache_updated: v.cache_updated });
  }
  return out;
}

/** One run in the frame: its latest view and nodes, and the VM clock of that refresh (ms). */
export interface FrameRun {
  view: RunView;
  nodes: NodeFact[] | null;
  vmNowMs: number | null;
}

/** The state of one watch: the runs it follows, their snapshots and end trackers. */
export class WatchModel {
  private readonly snaps = new Map<number, WatchSnapshot>();
  private readonly trackers = new Map<number, RunEndTracker>();
  /** Runs that have ended, with their final view and how they ended. */
  readonly ended = new Map<number, { view: RunView; end: RunEnd }>();
  /** The latest frame entry of every run (ended runs keep their last state). */
  readonly frame = new Map<number, FrameRun>();

  constructor(readonly runIds: readonly number[]) {}

  /** Runs still followed. */
  active(): number[] {
    return this.runIds.filter((id) => !this.ended.has(id));
  }

  /**
   * Take one refresh of one run: returns the events since the last refresh. `nowMs` (host clock) times the
   * launcher's settling ({@link RunEndTracker}).
   */
  refresh(v: RunView, nodes: NodeFact[] | null, vmNowMs: number | null, nowMs: number): WatchEvent[] {
    const snap = snapshotOf(v, nodes);
    const events = diffSnapshots(this.snaps.get(v.id), snap, v, nodes, new Date(nowMs).toISOString());
    this.snaps.set(v.id, snap);
    this.frame.set(v.id, { view: v, nodes, vmNowMs });
    let tracker = this.trackers.get(v.id);
    if (!tracker) this.trackers.set(v.id, (tracker = new RunEndTracker()));
    const end = tracker.update(v, nowMs);
    if (end.phase === "ended") this.ended.set(v.id, { view: v, end });
    return events;
  }

  /** Every run has ended. */
  done(): boolean {
    return this.ended.size === this.runIds.length;
  }
}
