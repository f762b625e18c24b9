/**
 * Has a run ended? One judgement, made over the status authority's result, used by `runs watch` (when to stop
 * following a run) and `run attach` (when the log is complete), so the two cannot disagree. Pure.
 *
 * | end signal (any of)                                                      | launcher alive | phase    |
 * |--------------------------------------------------------------------------|----------------|----------|
 * | status final (done, failed, cancelled, orphaned); or exit_code written and no engine alive; or engine and launcher both known dead | yes | settling: the launcher is writing exit_code and its last log line |
 * | (same)                                                                   | no / unknown   | ended    |
 * | none, or the VM was not asked live                                       | –              | active   |
 *
 * A run that stays `settling` for {@link LAUNCHER_SETTLE_MS} counts as ended (a launcher that hangs must not
 * keep a watch open forever).
 */
import { isFinalRunStatus, type RunStatus } from "../../core/status.js";

/** How long a run may look ended while its launcher still lives, ms. */
export const LAUNCHER_SETTLE_MS = 10_000;

/** How a run ended, as watch and attach report it. */
export interface RunOutcome {
  /** `done`, `failed`, `cancelled`, or `not-done` (stopped without finishing: orphaned, parked, unknown). */
  kind: "done" | "failed" | "cancelled" | "not-done";
  /** What to print: the run status (`done`, `orphaned`, `waiting-approval`, …). */
  label: RunStatus;
  /** The launcher's exit_code, when written. */
  exitCode: number | null;
}

export interface RunEnd {
  phase: "active" | "settling" | "ended";
  /** Set unless `active`. */
  outcome: RunOutcome | undefined;
}

/** The fields of a derived run state this judgement reads. */
export interface RunEndInput {
  source: "live" | "cache" | "unreachable";
  effective_status: RunStatus;
  exit_code: number | null;
  engine_alive: boolean | null;
  launcher_alive: boolean | null;
}

/** Judge one derived state. */
export function runEnd(d: RunEndInput): RunEnd {
  if (d.source !== "live") return { phase: "active", outcome: undefined };
  const signal =
    isFinalRunStatus(d.effective_status) || (d.exit_code !== null && d.engine_alive !== true) || (d.engine_alive === false && d.launcher_alive === false);
  if (!signal) return { phase: "active", outcome: undefined };
  const s = d.effective_status;
  const kind: RunOutcome["kind"] = s === "done" || s === "failed" || s === "cancelled" ? s : "not-done";
  return { phase: d.launcher_alive === true ? "settling" : "ended", outcome: { kind, label: s, exitCode: d.exit_code } };
}

/**
 * Track one run across refreshes: `ended` once {@link runEnd} says so, or once it has been `settling` for
 * {@link LAUNCHER_SETTLE_MS}. Call `update` with each new derived state and the current time (ms).
 */
export class RunEndTracker {
  private settlingSince: number | undefined;

  update(d: RunEndInput, nowMs: number): RunEnd {
    const e = runEnd(d);
    if (e.phase !== "settling") {
      this.settlingSince = undefined;
      return e;
    }
    this.settlingSince ??= nowMs;
    return nowMs - this.settlingSince >= LAUNCHER_SETTLE_MS ? { ...e, phase: "ended" } : e;
  }
}

/** The line that ends a watch or an attach: `run 113 finished: done (exit 0)`, `run 113 ended without finishing: orphaned (no exit code)`. */
export function renderOutcomeLine(id: number, o: RunOutcome): string {
  const code = o.exitCode === null ? "no exit code" : `exit ${o.exitCode}`;
  return o.kind === "not-done" ? `run ${id} ended without finishing: ${o.label} (${code})` : `run ${id} finished: ${o.label} (${code})`;
}
