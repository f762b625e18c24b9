/**
 * `fabrik runs watch`: refresh a VM's runs every interval over ONE session (the persistent SSH channel when the
 * VM offers SSH, else the driver's command path), and stream what changes. The model (`model.ts`) decides what
 * changed and when a run has ended (the status authority's `run-end.ts`, shared with `run attach`); the renderers
 * (`render.ts`) draw it; `cli.ts` shows the TTY frame in the alternate screen, or one line per change, or NDJSON.
 */
import type { Context } from "../context.js";
import { requireVm } from "../context.js";
import type { StreamResult } from "../command.js";
import { observeVm, reconcile } from "../runs-service.js";
import { ExitCode, runOutcomeExitCode } from "../exit-codes.js";
import { NotFoundError, UsageError } from "../../core/errors.js";
import { ACTIVE_RUN_STATUSES } from "../../core/status.js";
import type { ProbeResponse } from "../../vm/probe-schema.js";
import type { RunRecord } from "../registry.js";
import { openVmSession, type VmSession } from "../../vm/session.js";
import { assertVmName } from "../../vm/names.js";
import { renderOutcomeLine, type RunOutcome } from "../status/run-end.js";
import { channel, type Emitter } from "../stream.js";
import { WatchModel, type FrameRun, type WatchEvent } from "./model.js";
import { renderEventLine, renderFrame } from "./render.js";

export interface WatchArgs {
  vm: string;
  runId?: number | undefined;
  /** Seconds between refreshes (≥ 0.5). */
  intervalS: number;
  /** Give up after this many seconds (exit 10). */
  timeoutS?: number | undefined;
  exitStatus: boolean;
  notify: boolean;
}

/** One data item of a watch stream. */
export type WatchItem =
  /** A change (printed as a line, or as NDJSON). */
  | { kind: "event"; event: WatchEvent }
  /** The state after a refresh (the TTY frame). */
  | { kind: "frame"; runs: FrameRun[]; session: string }
  /** A run ended: its final line (and, on a TTY, its last frame for the scrollback). */
  | { kind: "final"; run_id: number; outcome: RunOutcome; last: FrameRun | undefined; session: string };

/**
 * Watch runs of one VM until they all end (or `--timeout`, or Ctrl-C). The stream's exit code: 0, or with
 * `--exit-status` the worst outcome (done 0, failed 8, cancelled 9, not done 10); 130 on Ctrl-C; 10 on timeout.
 * @throws NotFoundError (run or VM), UsageError (run in another VM) before streaming.
 */
export async function watchStream(ctx: Context, a: WatchArgs): Promise<StreamResult<WatchItem>> {
  assertVmName(a.vm);
  if (!Number.isFinite(a.intervalS) || a.intervalS < 0.5) throw new UsageError(`--interval must be at least 0.5 seconds, got ${a.intervalS}`, "e.g. --interval 2");
  const reg = ctx.registry();
  let runs: RunRecord[];
  if (a.runId !== undefined) {
    const r = reg.getRun(a.runId);
    if (!r) throw new NotFoundError(`run ${a.runId} does not exist`, "see `fabrik runs list`");
    if (r.vm !== a.vm) throw new UsageError(`run ${a.runId} is in VM ${r.vm}, not ${a.vm}`, `use --vm ${r.vm}`);
    runs = [r];
  } else {
    runs = reg.listRuns({ vm: a.vm, statuses: ACTIVE_RUN_STATUSES });
  }
  const { driver } = await requireVm(ctx, a.vm);
  const stopper = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stopper.signal]);
  const frameOpts = (r: { columns: number; rows: number; color: import("chalk").ChalkInstance; now: number }, session: string) => ({ ...r, intervalS: a.intervalS, vm: a.vm, session });
  return {
    kind: "stream",
    items: channel<WatchItem>((emit) => watchLoop(ctx, a, runs, driver, emit, signal), () => stopper.abort()),
    itemJson: (e) =>
      e.kind === "event"
        ? e.event
        : e.kind === "final"
          ? { type: "final", ts: new Date(ctx.now()).toISOString(), run_id: e.run_id, vm: a.vm, status: e.outcome.label, outcome: e.outcome.kind, exit_code: e.outcome.exitCode }
          : undefined,
    renderItem: (e, r) => {
      if (e.kind === "event") return renderEventLine(e.event) + "\n";
      if (e.kind !== "final") return undefined;
      const last = r.tty && e.last ? renderFrame([e.last], { ...frameOpts(r, e.session), rows: 1000, noTitle: true }).replace(/^\n/, "") + "\n" : "";
      return last + renderOutcomeLine(e.run_id, e.outcome) + "\n";
    },
    screen: {
      frame: (e, r) => (e.kind === "frame" ? renderFrame(e.runs, frameOpts(r, e.session)) : undefined),
      isFinal: (e) => e.kind === "final",
    },
  };
}

async function watchLoop(ctx: Context, a: WatchArgs, runs: RunRecord[], driver: Awaited<ReturnType<typeof requireVm>>["driver"], emit: Emitter<WatchItem>, signal: AbortSignal): Promise<number> {
  if (runs.length === 0) {
    emit.notice(`no active runs in VM ${a.vm} (see \`fabrik runs list --vm ${a.vm}\`)`);
    return ExitCode.OK;
  }
  const reg = ctx.registry();
  const session: VmSession = await openVmSession(driver, a.vm, { preferSsh: true, onNotice: (m) => emit.notice(m), signal, installCache: await ctx.guestInstalls() });
  const model = new WatchModel(runs.map((r) => r.id));
  const deadline = a.timeoutS !== undefined ? ctx.now() + a.timeoutS * 1000 : Infinity;
  try {
    if (!ctx.io.stdoutTty && !ctx.io.json) emit.notice(`watching ${runs.length} run(s) in VM ${a.vm} every ${a.intervalS}s (${session.kind}); Ctrl-C to quit`);
    for (;;) {
      const active = model.active().map((id) => reg.getRun(id) ?? runs.find((r) => r.id === id)!);
      let response: ProbeResponse | undefined;
      const { observations } = await observeVm(ctx, driver, a.vm, active, {
        nodes: true,
        probe: async (req) => (response = await session.probe(req, { timeoutMs: ctx.config.probeTimeoutMs, signal })),
      });
      for (const r of active) {
        const obs = observations.get(r.id)!;
        const view = await reconcile(ctx, r, obs);
        const nodes = obs.kind === "live" ? (obs.result.db?.nodes ?? null) : null;
        for (const event of model.refresh(view, nodes, response?.now_ms ?? null, ctx.now())) emit.data({ kind: "event", event });
      }
      emit.data({ kind: "frame", runs: runs.map((r) => model.frame.get(r.id)).filter((x): x is FrameRun => x !== undefined), session: session.kind });
      if (model.done()) break;
      if (ctx.now() >= deadline) {
        emit.notice(`watch timed out after ${a.timeoutS}s; ${runs.length - model.ended.size} run(s) still not finished`);
        return ExitCode.RUN_NOT_DONE;
      }
      await sleep(a.intervalS * 1000, signal);
      if (signal.aborted) return ExitCode.INTERRUPTED;
    }
  } catch (err) {
    if (signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  } finally {
    session.close();
  }
  let code: number = ExitCode.OK;
  for (const r of runs) {
    const { end } = model.ended.get(r.id)!;
    const outcome = end.outcome!;
    emit.data({ kind: "final", run_id: r.id, outcome, last: model.frame.get(r.id), session: session.kind });
    code = Math.max(code, runOutcomeExitCode(outcome.kind));
    if (a.notify) {
      const { notifyDesktop } = await import("./notify.js");
      await notifyDesktop(`fabrik: run ${r.id}`, renderOutcomeLine(r.id, outcome));
    }
  }
  return a.exitStatus ? code : ExitCode.OK;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  const { setTimeout: wait } = await import("node:timers/promises");
  await wait(ms, undefined, { signal }).catch(() => undefined);
}
