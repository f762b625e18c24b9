/**
 * What `fabrik supervise` does with one run it looked at: PURE (the live view, the registry row, the run's
 * history and the options in; `now` injected). The resume itself is `run resume`'s own path
 * (src/fabrik/resume-service.ts, `resumeRun`), with all of its checks; these rules only decide whether to try.
 *
 * The decision table (first match wins):
 * | live facts                                                        | decision                  |
 * |-------------------------------------------------------------------|---------------------------|
 * | the VM could not be asked                                          | nothing (judge next pass) |
 * | status `cancelled`                                                 | skip CANCELLED            |
 * | a cancel was recorded for the run (a `cancel…` event after its last resume) | skip CANCEL_REQUESTED |
 * | status `failed`, no `--retry-failed`                               | skip FAILED_NOT_RETRIED   |
 * | status neither `orphaned` nor (`failed` with `--retry-failed`)     | nothing                   |
 * | a launch or resume of it is not settled (journal)                  | skip PENDING              |
 * | its launcher still lives (settling)                                | skip LAUNCHER_ALIVE       |
 * | engine heartbeat not older than the threshold                      | skip HEARTBEAT_FRESH      |
 * | `--max-resumes` supervisor attempts already made                   | skip MAX_RESUMES          |
 * | the last attempt was less than the backoff ago (base × 2^(n−1))    | skip BACKOFF              |
 * | otherwise                                                          | resume                    |
 */
import type { RunEvent, RunRecord } from "./registry.js";
import type { RunView } from "./runs-service.js";

/** Run-event kinds the supervisor records for its attempts (each counts toward `--max-resumes`). */
export const SUPERVISE_ATTEMPT_KINDS = ["supervise-resumed", "supervise-refused", "supervise-failed"] as const;
/** Run-event kind for a notable decision not to act (recorded once per code). */
export const SUPERVISE_SKIP_KIND = "supervise-skipped";

/** Why the supervisor did not resume a run (stable, for `--json`). */
export const SKIP_CODES = ["CANCELLED", "CANCEL_REQUESTED", "FAILED_NOT_RETRIED", "PENDING", "LAUNCHER_ALIVE", "HEARTBEAT_FRESH", "MAX_RESUMES", "BACKOFF", "LEASED", "CHANGED"] as const;
export type SkipCode = (typeof SKIP_CODES)[number];

/** Skip codes worth a run event (the run will not be resumed by a supervisor as things stand). */
export const RECORDED_SKIPS: readonly SkipCode[] = ["CANCELLED", "CANCEL_REQUESTED", "FAILED_NOT_RETRIED", "MAX_RESUMES"];

export interface SuperviseOptions {
  retryFailed: boolean;
  maxResumes: number;
  /** Wait after the first attempt, ms; doubled after each further attempt. */
  backoffMs: number;
  /** Engine heartbeat threshold, ms (config `thresholds.engine_heartbeat_stale_ms`). */
  engineHeartbeatStaleMs: number;
}

export type SuperviseDecision =
  | { kind: "none" }
  | { kind: "skip"; code: SkipCode; reason: string }
  | { kind: "resume"; attempt: number; reason: string };

/** The supervisor's earlier attempts on a run (from its history): how many, and when the last one was (epoch ms). */
export function attemptsOf(events: readonly Pick<RunEvent, "kind" | "at_ms">[]): { count: number; lastAtMs: number | null } {
  const a = events.filter((e) => (SUPERVISE_ATTEMPT_KINDS as readonly string[]).includes(e.kind));
  return { count: a.length, lastAtMs: a.length ? Math.max(...a.map((e) => e.at_ms)) : null };
}

/** Whether a cancel was recorded after the run's last (re)start: an event whose kind starts with `cancel`. */
export function cancelRecorded(events: readonly Pick<RunEvent, "kind" | "at_ms">[]): boolean {
  let lastStart = 0;
  for (const e of events) if (e.kind === "launched" || e.kind === "resumed") lastStart = Math.max(lastStart, e.at_ms);
  return events.some((e) => /^cancel/.test(e.kind) && e.at_ms >= lastStart);
}

/** The backoff before attempt `n + 1` after `n` attempts: `base × 2^(n−1)` (0 before the first). */
export function backoffAfter(n: number, baseMs: number): number {
  return n <= 0 ? 0 : baseMs * 2 ** Math.min(n - 1, 20);
}

/** Decide (see the module's table). */
export function superviseDecision(
  view: Pick<RunView, "source" | "effective_status" | "launcher_alive" | "engine_heartbeat_age_ms">,
  run: Pick<RunRecord, "pending_json">,
  history: readonly Pick<RunEvent, "kind" | "at_ms">[],
  o: SuperviseOptions,
  now: number,
): SuperviseDecision {
  if (view.source !== "live") return { kind: "none" };
  const s = view.effective_status;
  if (s === "cancelled") return { kind: "skip", code: "CANCELLED", reason: "it was cancelled: a supervisor never resumes a cancelled run" };
  const retryable = s === "orphaned" || (s === "failed" && o.retryFailed);
  if (cancelRecorded(history) && (retryable || s === "failed")) return { kind: "skip", code: "CANCEL_REQUESTED", reason: "a cancel was recorded for it: never resumed" };
  if (s === "failed" && !o.retryFailed) return { kind: "skip", code: "FAILED_NOT_RETRIED", reason: "it failed: pass --retry-failed to let the supervisor retry failed runs" };
  if (!retryable) return { kind: "none" };
  if (run.pending_json) return { kind: "skip", code: "PENDING", reason: "a launch or resume of it is not settled yet" };
  if (view.launcher_alive === true) return { kind: "skip", code: "LAUNCHER_ALIVE", reason: "its launcher still lives (the run is settling)" };
  const age = view.engine_heartbeat_age_ms;
  if (age !== null && age <= o.engineHeartbeatStaleMs) return { kind: "skip", code: "HEARTBEAT_FRESH", reason: `its engine heartbeat is only ${Math.round(age / 1000)}s old (stale after ${Math.round(o.engineHeartbeatStaleMs / 1000)}s)` };
  const a = attemptsOf(history);
  if (a.count >= o.maxResumes) return { kind: "skip", code: "MAX_RESUMES", reason: `the supervisor already tried ${a.count} time(s) (--max-resumes ${o.maxResumes}): resume it by hand with \`fabrik run resume\`` };
  const wait = backoffAfter(a.count, o.backoffMs);
  if (a.lastAtMs !== null && now - a.lastAtMs < wait) return { kind: "skip", code: "BACKOFF", reason: `backing off: next attempt after ${new Date(a.lastAtMs + wait).toISOString()}` };
  return { kind: "resume", attempt: a.count + 1, reason: s === "orphaned" ? "orphaned: its engine is dead and its heartbeat is stale" : "failed, and --retry-failed" };
}
