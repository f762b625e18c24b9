/**
 * `runs events --id N [--follow] [--since] [--node X]`: ONE timeline of a run — fabrik's own events (the registry's
 * `run_events`: launched, status changes, resumes with their backup, fixes, cancels, decisions) merged by time with
 * the engine's (its DB's `_smithers_events`, read by the probe in the same round trip as the run's state).
 *
 * Engine times are on the VM clock; each is moved by the offset measured at the probe (host now − VM now), so the
 * two sources sort together. `--follow` rides ONE session (the persistent SSH probe channel when the VM offers SSH):
 * every interval one probe asks only for events after the last seq seen, the live verdict is written back like
 * `runs watch` does (which records fabrik's own status events), and the stream ends when the status authority says
 * the run has ended (`status/run-end.ts`).
 */
import type { Context } from "./context.js";
import type { StreamResult } from "./command.js";
import type { ProbeRequest } from "../vm/probe-schema.js";
import type { RunObservation } from "../vm/probe.js";
import { NoBunError, ProbeError } from "../vm/probe.js";
import { InterruptedError, VmUnavailableError } from "../core/errors.js";
import { openVmSession, type VmSession } from "../vm/session.js";
import { ExitCode } from "./exit-codes.js";
import { parseSince, reconcile, requireRun } from "./runs-service.js";
import { RunEndTracker, renderOutcomeLine, type RunEndInput, type RunOutcome } from "./status/run-end.js";
import { channel, pause, type Emitter } from "./stream.js";
import { clockOffsetMs, engineTimelineEvent, fabrikTimelineEvent, mergeTimeline, type TimelineEvent } from "./inspect-service.js";
import { renderTimelineLine } from "./render/inspect.js";

/** `runs events` options. */
export interface EventsOptions {
  id: number;
  follow: boolean;
  /** `--since`: a duration (`2h`) or a date. */
  since?: string | undefined;
  /** `--node`: only the engine's events about this node. */
  node?: string | undefined;
  /** At most this many engine events in the first look (the newest). */
  limit: number;
  /** Include agent chunks, token counts, tool calls, frames and heartbeats. */
  raw: boolean;
  /** `--follow`: seconds between looks. */
  intervalS: number;
}

/** One data item of the stream. */
export type EventsItem = { kind: "event"; event: TimelineEvent } | { kind: "end"; run_id: number; outcome: RunOutcome };

/** How far back (ms) the VM is asked beyond `--since`, to allow for host/VM clock skew; the exact cut is made after correcting. */
const SINCE_MARGIN_MS = 10 * 60_000;

/**
 * The events of run `o.id` as a stream (NDJSON with `--json`). Exit code 0; 130 on Ctrl-C (following stops, the run
 * is never touched). @throws NotFoundError for an unknown run (before streaming).
 */
export function eventsStream(ctx: Context, o: EventsOptions): StreamResult<EventsItem> {
  const rec = requireRun(ctx, o.id);
  const sinceMs = o.since ? parseSince(o.since, ctx.now()) : undefined;
  const stopper = new AbortController();
  const items = channel<EventsItem>((emit) => eventsLoop(ctx, o, rec.id, sinceMs, emit, AbortSignal.any([ctx.signal, stopper.signal])), () => stopper.abort());
  return {
    kind: "stream",
    items,
    renderItem: (e) => (e.kind === "event" ? renderTimelineLine(e.event) : undefined),
    itemJson: (e) => (e.kind === "event" ? { type: "event", run_id: o.id, ...e.event } : { type: "end", run_id: e.run_id, status: e.outcome.label, outcome: e.outcome.kind, exit_code: e.outcome.exitCode }),
  };
}

async function eventsLoop(ctx: Context, o: EventsOptions, id: number, sinceMs: number | undefined, emit: Emitter<EventsItem>, signal: AbortSignal): Promise<number> {
  let run = requireRun(ctx, id);
  let session: VmSession;
  try {
    session = await openVmSession(await ctx.driver(run.driver), run.vm, { preferSsh: o.follow, onNotice: (m) => emit.notice(m), signal, installCache: await ctx.guestInstalls() });
  } catch (err) {
    if (signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  }
  const keep = (e: TimelineEvent) => (sinceMs === undefined || e.at_ms >= sinceMs) && (o.node === undefined || e.node === o.node);
  let lastSeq: number | null = null;
  let lastFabrikId = 0;
  const warned = new Set<string>();
  const tracker = new RunEndTracker();

  /** One look: probe (with the events after `lastSeq`), write the verdict back, and the new events of both sources. */
  const look = async (first: boolean): Promise<{ events: TimelineEvent[]; end: RunEndInput }> => {
    run = requireRun(ctx, id);
    const req: ProbeRequest = {
      v: 1,
      runs: [
        {
          key: String(run.id),
          control_dir: run.control_dir,
          db_path: run.smithers_db_path,
          smithers_run_id: run.smithers_run_id,
          events: { after_seq: lastSeq, limit: first ? o.limit : 10_000, node: o.node ?? null, since_ms: first && sinceMs !== undefined ? Math.max(0, sinceMs - SINCE_MARGIN_MS) : null, raw: o.raw },
        },
      ],
    };
    let obs: RunObservation;
    let engine: TimelineEvent[] = [];
    const t0 = ctx.now();
    try {
      const res = await session.probe(req, { timeoutMs: ctx.config.probeTimeoutMs, signal });
      const offset = clockOffsetMs(t0, ctx.now(), res.now_ms);
      const r = res.runs.find((x) => x.key === String(run.id));
      obs = r ? { kind: "live", result: r, vmNowMs: res.now_ms, tool: res.tool } : { kind: "unreachable", reason: "no result for this run" };
      if (r?.events) {
        engine = r.events.map((e) => engineTimelineEvent(e, offset));
        const seqs = r.events.map((e) => e.seq);
        if (seqs.length > 0) lastSeq = Math.max(lastSeq ?? -1, ...seqs);
        if (first && r.events_truncated) emit.notice(`showing the last ${o.limit} engine events (--limit)`);
      }
    } catch (err) {
      if (err instanceof InterruptedError || signal.aborted) throw new InterruptedError();
      if (!(err instanceof ProbeError || err instanceof NoBunError || err instanceof VmUnavailableError)) throw err;
      const msg = (err as Error).message;
      if (!warned.has(msg)) {
        warned.add(msg);
        emit.warning(`VM ${run.vm} could not be asked (${msg}); ${o.follow ? "still following" : "the engine's events are not shown"}`);
      }
      obs = { kind: "unreachable", reason: msg };
    }
    // The live verdict is written back (a status change becomes one of fabrik's events, read just below).
    const view = obs.kind === "live" ? await reconcile(ctx, run, obs) : null;
    const ours = ctx.registry().runEvents(id).filter((e) => e.id > lastFabrikId);
    if (ours.length > 0) lastFabrikId = Math.max(...ours.map((e) => e.id));
    const end: RunEndInput = view ?? { source: "unreachable", effective_status: "unreachable", exit_code: null, engine_alive: null, launcher_alive: null };
    return { events: mergeTimeline(ours.map(fabrikTimelineEvent), engine).filter(keep), end };
  };

  try {
    let r = await look(true);
    for (const e of r.events) emit.data({ kind: "event", event: e });
    if (!o.follow) return ExitCode.OK;
    for (;;) {
      const end = tracker.update(r.end, ctx.now());
      if (end.phase === "ended") {
        emit.data({ kind: "end", run_id: id, outcome: end.outcome! });
        emit.notice(renderOutcomeLine(id, end.outcome!));
        return ExitCode.OK;
      }
      await pause(o.intervalS * 1000, signal);
      if (signal.aborted) return ExitCode.INTERRUPTED;
      r = await look(false);
      for (const e of r.events) emit.data({ kind: "event", event: e });
    }
  } catch (err) {
    if (signal.aborted || err instanceof InterruptedError) return ExitCode.INTERRUPTED;
    throw err;
  } finally {
    session.close();
  }
}
