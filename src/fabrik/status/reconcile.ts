/**
 * Step 4 of the status authority: reconciliation. The live verdict against what the registry cached: the
 * mismatches to show, the two "the cache was wrong" diagnoses, and the patch to write back. Pure; the write
 * itself happens in `runs-service.ts`.
 */
import { isActiveRunStatus, isFinalRunStatus, type CachedRunStatus, type RunStatus } from "../../core/status.js";
import type { Diagnosis } from "./diagnoses.js";
import type { RunFacts } from "./facts.js";
import type { Verdict } from "./rules.js";

/** A field on which the cache and the VM disagree. `live` is the truth as read now. */
export interface Mismatch {
  field: "status" | "exit_code";
  cache: string | number | null;
  live: string | number | null;
}

/** What the registry row looked like (a `RunRecord` satisfies it). */
export interface CachedRun {
  id: number;
  vm: string;
  status: CachedRunStatus;
  exit_code: number | null;
}

export interface Reconciliation {
  mismatches: Mismatch[];
  diagnoses: Diagnosis[];
  /** The status the cache should now hold; undefined: leave it (an `unknown` verdict never overwrites what was known). */
  cacheStatus: CachedRunStatus | undefined;
  /** The failure reason the cache should now hold (failed/orphaned runs), else undefined. */
  cacheFailureReason: string | undefined;
  /** The cached exit code no longer stands (the file is gone and the run is active again): clear it. */
  clearExitCode: boolean;
}

/** Compare a live verdict with the cached row. Pure. */
export function reconcileWithCache(cache: CachedRun, f: RunFacts, v: Verdict): Reconciliation {
  const mismatches: Mismatch[] = [];
  const diagnoses: Diagnosis[] = [];
  const live: RunStatus = v.status;
  const cacheStatus = live === "unknown" || live === "unreachable" ? undefined : live;
  if (cacheStatus !== undefined && cacheStatus !== cache.status) {
    mismatches.push({ field: "status", cache: cache.status, live });
    const cacheEnded = cache.status === "done" || cache.status === "failed" || cache.status === "cancelled";
    if (cacheEnded && (live === "running" || live === "stale")) {
      diagnoses.push({
        code: "CACHE_SAYS_FINISHED_BUT_RUNNING",
        severity: "warning",
        message: `the host cache said ${cache.status} but the VM shows the run ${live}`,
        next_command: `fabrik runs watch --vm ${cache.vm} --run-id ${cache.id}`,
      });
    } else if (isActiveRunStatus(cache.status) && cache.status !== "unknown" && isFinalRunStatus(live)) {
      diagnoses.push({
        code: "CACHE_SAYS_RUNNING_BUT_ENDED",
        severity: live === "done" ? "info" : "warning",
        message: `the host cache said ${cache.status} but the VM shows ${live}`,
        next_command: null,
      });
    }
  }
  if (f.exitCode !== null && f.exitCode !== cache.exit_code) mismatches.push({ field: "exit_code", cache: cache.exit_code, live: f.exitCode });
  // A cached exit code with no exit_code file in the VM, for a run that is active again (resumed elsewhere, or the
  // file was removed): the old code is no longer the run's.
  const clearExitCode = cache.exit_code !== null && f.exitCode === null && !f.exitCodeGarbage && f.controlDirExists === true && isActiveRunStatus(live) && live !== "unknown";
  if (clearExitCode) mismatches.push({ field: "exit_code", cache: cache.exit_code, live: null });
  let cacheFailureReason: string | undefined;
  if (live === "orphaned") cacheFailureReason = v.reason;
  else if (live === "failed") {
    const lf = f.lastFailed;
    cacheFailureReason = lf ? `${lf.node_id}: ${lf.error ?? "failed"}` : (f.runError ?? v.reason);
  }
  return { mismatches, diagnoses, cacheStatus, cacheFailureReason, clearExitCode };
}

/** How long a journalled launch may stay unseen in the VM before it counts as never started, ms. */
export const PENDING_LAUNCH_TIMEOUT_MS = 20 * 60_000;

/**
 * What became of a journalled launch, judged from a live heartbeat: `completed` (the VM runs the launcher with
 * that id, or ran it), `abandoned` (not seen after {@link PENDING_LAUNCH_TIMEOUT_MS}: the VM never started it),
 * or `pending` (still within the time the launch may take). Pure.
 */
export function pendingLaunchOutcome(pending: { launch_id: string; at_ms: number }, liveLaunchId: string | null, nowMs: number): "completed" | "abandoned" | "pending" {
  if (liveLaunchId === pending.launch_id) return "completed";
  return nowMs - pending.at_ms > PENDING_LAUNCH_TIMEOUT_MS ? "abandoned" : "pending";
}
