/**
 * `runs why` and `runs nodes`: the guide's `limactl shell` schema queries as commands. One probe (the status
 * authority's verdict, written back like `runs show`) and one call of the read-only guest program `inspect`
 * (src/vm/guest/inspect.ts) per command. Returns view models; never prints.
 */
import type { Context } from "./context.js";
import type { RunRecord, RunEvent } from "./registry.js";
import { observeVm, reconcile, requireRun, type RunView } from "./runs-service.js";
import { RemoteError, VmUnavailableError } from "../core/errors.js";
import { InspectResultSchema, type InspectRequest, type InspectResult, type NodeRow } from "../vm/control-schema.js";
import type { EventFact } from "../vm/probe-schema.js";
import { engineDialect } from "../vm/engine-recipe.js";
import { shellQuote } from "../vm/shell-quote.js";
import { callRunGuest, runEngine, runVm } from "./run-guest.js";

/** One attempt as `runs why --json` prints it. Times epoch ms (VM clock), durations ms, sizes bytes. */
export interface WhyAttempt {
  attempt: number;
  state: string;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  /** finished − started; for an attempt still in progress, its age so far (VM clock). */
  duration_ms: number | null;
  /** The error message's first lines. */
  error: string | null;
  response_bytes: number | null;
  error_bytes: number | null;
}

/** One line of a timeline: fabrik's own event (registry) or the engine's (its DB). */
export interface TimelineEvent {
  source: "fabrik" | "engine";
  /** Host clock, epoch ms (engine times are moved by the measured VM−host clock offset). */
  at_ms: number;
  at: string;
  /** fabrik: launched, status, resumed, cancel, …; engine: RunStarted, NodeFailed, … */
  kind: string;
  node: string | null;
  iteration: number | null;
  attempt: number | null;
  /** engine: its seq; fabrik: null. */
  seq: number | null;
  /** fabrik: the registry event's id; engine: null. */
  event_id: number | null;
  /** One line about it. */
  text: string;
  /** fabrik: the recorded detail; engine: null. */
  detail: unknown;
}

/** The model `runs why --json` prints. */
export interface WhyView {
  v: 1;
  id: number;
  vm: string;
  smithers_run_id: string;
  effective_status: string;
  reason: string;
  engine_run_status: string | null;
  run_error: string | null;
  /** The node that blocks, failed or runs (null when the run has none left). */
  node: { node_id: string; iteration: number; state: string; label: string | null; why: "waiting" | "in-progress" | "failed" | "next" } | null;
  attempts: WhyAttempt[];
  /** The node's `retries` (null: unknown or unlimited) and attempts left before the engine gives up. */
  retries: number | null;
  retries_left: number | null;
  /** The last events, fabrik's and the engine's, oldest first. */
  events: TimelineEvent[];
  /** The last lines of reports/smithers.log. */
  log_tail: string[];
  /** The engine's own `smithers why` (0.32): its blockers and their unblockers, in the engine's words. */
  engine_blockers: { kind: string | null; node_id: string | null; reason: string | null; unblocker: string | null; signal_name: string | null }[];
  engine_why_error: string | null;
  diagnoses: RunView["diagnoses"];
  /** Exactly one command to run next, or null when there is nothing to do. */
  next_command: string | null;
}

/** A fabrik registry event as a timeline line. */
export function fabrikTimelineEvent(e: RunEvent): TimelineEvent {
  let detail: unknown = null;
  try {
    detail = e.detail_json ? JSON.parse(e.detail_json) : null;
  } catch {
    detail = e.detail_json;
  }
  const d = (detail && typeof detail === "object" ? detail : {}) as Record<string, unknown>;
  const bits: string[] = [];
  if (e.kind === "status") bits.push(`${String(d.from ?? "?")} → ${String(d.to ?? "?")}${d.reason ? ` (${String(d.reason)})` : ""}`);
  else {
    if (typeof d.mode === "string") bits.push(d.mode);
    if (d.backup && typeof d.backup === "object" && typeof (d.backup as Record<string, unknown>).path === "string") bits.push(`backup ${(d.backup as Record<string, unknown>).path}`);
    else if (typeof d.backup === "string") bits.push(`backup ${d.backup}`);
    if (d.fix && typeof d.fix === "object") bits.push(`fix: ${String((d.fix as Record<string, unknown>).values ?? "?")} value(s) truncated`);
    if (typeof d.node === "string") bits.push(`node ${d.node}`);
    if (typeof d.signal_name === "string") bits.push(`signal ${d.signal_name}`);
    if (typeof d.status_after === "string") bits.push(`DB ${d.status_after}`);
    if (typeof d.engine_from === "string" || typeof d.engine_to === "string") bits.push(`engine ${String(d.engine_from ?? "?")} → ${String(d.engine_to ?? "?")}`);
    if (typeof d.launcher_pid === "number") bits.push(`launcher pid ${d.launcher_pid}`);
    if (typeof d.engine_version === "string" && e.kind === "launched") bits.push(`engine ${d.engine_version}`);
    if (typeof d.reason === "string" && d.reason) bits.push(`reason: ${d.reason}`);
    if (typeof d.error === "string" && d.error) bits.push(`error: ${d.error}`);
    if (d.reconciled === true) bits.push("(recorded later from the VM)");
  }
  return {
    source: "fabrik",
    at_ms: e.at_ms,
    at: new Date(e.at_ms).toISOString(),
    kind: e.kind,
    node: typeof d.node === "string" ? d.node : null,
    iteration: null,
    attempt: null,
    seq: null,
    event_id: e.id,
    text: bits.join("; "),
    detail,
  };
}

/** An engine event as a timeline line; `offsetMs` = host clock − VM clock. */
export function engineTimelineEvent(e: EventFact, offsetMs: number): TimelineEvent {
  const at = (e.ts_ms ?? 0) + offsetMs;
  const where = e.node_id ? `${e.node_id}${e.attempt !== null ? ` (attempt ${e.attempt}${e.iteration ? `, iteration ${e.iteration}` : ""})` : e.iteration ? ` (iteration ${e.iteration})` : ""}` : "";
  return {
    source: "engine",
    at_ms: at,
    at: new Date(at).toISOString(),
    kind: e.type,
    node: e.node_id,
    iteration: e.iteration,
    attempt: e.attempt,
    seq: e.seq,
    event_id: null,
    text: [where, e.detail].filter(Boolean).join(": "),
    detail: null,
  };
}

/**
 * host clock − VM clock, ms, from one call: `t0`/`t1` the host clock before and after it, `vmNowMs` the VM's clock
 * during it. Offsets within the call's own duration (or 1 s) are noise of the measurement, not skew: 0.
 */
export function clockOffsetMs(t0: number, t1: number, vmNowMs: number): number {
  const off = Math.round((t0 + t1) / 2 - vmNowMs);
  return Math.abs(off) <= Math.max(1000, t1 - t0) ? 0 : off;
}

/** Merge two timelines by time (stable: fabrik before engine at the same ms, then seq / id order). */
export function mergeTimeline(a: readonly TimelineEvent[], b: readonly TimelineEvent[]): TimelineEvent[] {
  return [...a, ...b].sort((x, y) => x.at_ms - y.at_ms || (x.source === y.source ? (x.seq ?? x.event_id ?? 0) - (y.seq ?? y.event_id ?? 0) : x.source === "fabrik" ? -1 : 1));
}

/**
 * The one command to run next for `runs why`: the first next command of the most severe diagnosis; a parked run
 * whose engine named the signal it waits for gets `run signal` with that name; `runs why` itself is never
 * suggested (attach follows a run that is simply working). Pure.
 */
export function pickNextCommand(v: Pick<WhyView, "id" | "diagnoses" | "effective_status" | "engine_blockers" | "node">): string | null {
  const signal = v.node?.why === "waiting" ? v.engine_blockers.find((b) => b.signal_name && (b.node_id === null || b.node_id === v.node!.node_id)) : undefined;
  if (signal?.signal_name) return `fabrik run signal --id ${v.id} ${shellQuote(signal.signal_name)}`;
  const rank = { error: 0, warning: 1, info: 2 } as const;
  const withCmd = [...v.diagnoses].filter((d) => d.next_command).sort((a, b) => rank[a.severity] - rank[b.severity]);
  const self = `fabrik runs why --id ${v.id}`;
  const first = withCmd.map((d) => d.next_command!).find((c) => c !== self);
  if (first) return first;
  if (withCmd.length > 0 || v.effective_status === "running") return `fabrik run attach --id ${v.id}`;
  return null;
}

async function inspectCall(ctx: Context, run: RunRecord, req: Omit<InspectRequest, "v" | "smithers_run_id" | "control_dir" | "db_path" | "engine_dir" | "dialect">, what: string): Promise<InspectResult> {
  const vm = await runVm(ctx, run);
  const engine = runEngine(vm.home, run.engine_version, ctx.config.engineVersion);
  const request: InspectRequest = {
    v: 1,
    smithers_run_id: run.smithers_run_id,
    control_dir: run.control_dir,
    db_path: run.smithers_db_path,
    engine_dir: engine.dir,
    dialect: engineDialect(engine.version),
    ...req,
  };
  const json = await callRunGuest(ctx, vm, run, { name: "inspect", bun: engine.bun, mode: "read", request, timeoutMs: ctx.config.probeTimeoutMs + 45_000, what });
  const parsed = InspectResultSchema.safeParse(json);
  if (!parsed.success) {
    throw new RemoteError(run.vm, what, `invalid answer: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  if (!parsed.data.ok) throw new RemoteError(run.vm, what, parsed.data.error ?? "the VM could not answer", undefined, `see \`fabrik runs show --id ${run.id}\``);
  return parsed.data;
}

/** `runs why --id N`. @throws NotFoundError (exit 4), VmUnavailableError (exit 6), RemoteError. */
export async function runWhy(ctx: Context, id: number): Promise<{ view: WhyView; warnings: string[] }> {
  const run = requireRun(ctx, id);
  const driver = await ctx.driver(run.driver);
  const { observations } = await observeVm(ctx, driver, run.vm, [run]);
  const obs = observations.get(run.id)!;
  if (obs.kind === "unreachable") throw new VmUnavailableError(run.vm, `cannot explain run ${id}: VM ${run.vm} is unreachable (${obs.reason})`, "check it with `fabrik vm list`");
  const rv = await reconcile(ctx, run, obs);
  const fresh = requireRun(ctx, id);
  const r = await inspectCall(ctx, fresh, { action: "why", engine_why: true, events: 10, log_lines: 20, error_lines: 5, max_nodes: 1 }, "why");
  // The program reads its clock as it ends (after the engine's own `why`): the call's end on the host matches it.
  const end = ctx.now();
  const offset = clockOffsetMs(end, end, r.now_ms);
  const ours = ctx.registry().runEvents(id).slice(-10).map(fabrikTimelineEvent);
  const events = mergeTimeline(ours, r.events.map((e) => engineTimelineEvent(e, offset))).slice(-12);
  const view: WhyView = {
    v: 1,
    id,
    vm: run.vm,
    smithers_run_id: run.smithers_run_id,
    effective_status: rv.effective_status,
    reason: rv.reason,
    engine_run_status: r.run?.status ?? rv.engine_run_status,
    run_error: r.run?.error ?? null,
    node: r.focus,
    attempts: r.attempts.map((a) => ({
      ...a,
      duration_ms: a.started_at_ms === null ? null : a.finished_at_ms !== null ? Math.max(0, a.finished_at_ms - a.started_at_ms) : a.state === "in-progress" ? Math.max(0, r.now_ms - a.started_at_ms) : null,
    })),
    retries: r.retries,
    retries_left: r.retries_left,
    events,
    log_tail: r.log_tail,
    engine_blockers: r.engine_why?.blockers ?? [],
    engine_why_error: r.engine_why?.error ?? null,
    diagnoses: rv.diagnoses,
    next_command: null,
  };
  view.next_command = pickNextCommand(view);
  const warnings = r.engine_why?.error ? [`the engine's own \`smithers why\` did not answer: ${r.engine_why.error}`] : [];
  return { view, warnings };
}

/** One row of `runs nodes` (JSON): the guide's schema query per node × iteration, with the last attempt's duration. */
export interface NodeView extends NodeRow {
  /** The last attempt's duration (VM clock), ms; its age so far while in progress. */
  last_duration_ms: number | null;
}

/** `runs nodes --id N`: every node × iteration. */
export async function runNodes(ctx: Context, id: number, opts: { maxNodes: number }): Promise<{ rows: NodeView[]; warnings: string[] }> {
  const run = requireRun(ctx, id);
  const r = await inspectCall(ctx, run, { action: "nodes", engine_why: false, events: 0, log_lines: 0, error_lines: 0, max_nodes: opts.maxNodes }, "nodes");
  const rows = r.nodes.map((n) => ({
    ...n,
    last_duration_ms:
      n.last_started_at_ms === null ? null : n.last_finished_at_ms !== null ? Math.max(0, n.last_finished_at_ms - n.last_started_at_ms) : n.last_attempt_state === "in-progress" ? Math.max(0, r.now_ms - n.last_started_at_ms) : null,
  }));
  return { rows, warnings: r.nodes_truncated ? [`run ${id} has more than ${opts.maxNodes} node rows; showing the first ${opts.maxNodes} (--limit)`] : [] };
}
