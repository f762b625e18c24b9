/**
 * The status authority: the ONE place fabrik decides what a run is doing. Cache row + observation →
 * facts (`facts.ts`) → the decision table (`rules.ts`) → diagnoses (`diagnoses.ts`) → reconciliation with the
 * cache (`reconcile.ts`). `runs show`, `runs list`, `runs watch`, `run attach` (through `run-end.ts`) and
 * `run resume` all read runs through {@link deriveRunState}; docs/status.md is the same table for people.
 *
 * Pure: `nowMs` (host clock) is injected and used only for cache-only views; live ages use the VM's clock.
 */
import type { RunRecord } from "../registry.js";
import type { RunObservation } from "../../vm/probe.js";
import { runFacts, type Progress, type StatusThresholds } from "./facts.js";
import { judge } from "./rules.js";
import { diagnose, type Diagnosis } from "./diagnoses.js";
import { reconcileWithCache, type Mismatch } from "./reconcile.js";
import { cachedRunState, type CheckSummary, type DerivedState } from "./cached.js";

export type { StatusThresholds, Progress, Diagnosis, Mismatch, DerivedState, CheckSummary };

/**
 * Derive a run's state. Pure: the same inputs give the same output.
 * @param cache the registry row
 * @param obs the live observation, `unreachable`, or `none` (`--no-live`)
 * @param nowMs host clock, epoch ms (ages of cache-only views)
 */
export function deriveRunState(cache: RunRecord, obs: RunObservation, nowMs: number, t: StatusThresholds): DerivedState {
  void nowMs;
  if (obs.kind !== "live") return cachedRunState(cache, obs);

  const f = runFacts(obs.result, obs.vmNowMs, t);
  const v = judge(f, t);
  const r = reconcileWithCache(cache, f, v);
  return {
    effective_status: v.status,
    reason: v.reason,
    status_rule: v.rule,
    source: "live",
    engine_run_status: f.engineRunStatus,
    current_task: f.currentTask?.node_id ?? null,
    current_attempt: f.currentTask?.attempt ?? null,
    current_task_started_at_ms: f.currentTask?.started_at_ms ?? null,
    progress: f.progress,
    engine_heartbeat_age_ms: f.engineHeartbeatAgeMs,
    launcher_heartbeat_age_ms: f.launcherHeartbeatAgeMs,
    engine_alive: f.engineAlive,
    launcher_alive: f.launcherAlive,
    engine_pid: f.enginePid ?? cache.engine_pid,
    launcher_pid: f.launcherPid ?? cache.launcher_pid,
    exit_code: f.exitCode,
    db_size_bytes: f.dbSizeBytes,
    wal_size_bytes: f.walSizeBytes,
    db_path: f.dbPath ?? cache.smithers_db_path,
    run_sh_engine: f.runShEngine,
    last_failed: f.lastFailed,
    run_error: f.runError,
    missing_facts: f.missing,
    mismatches: r.mismatches,
    diagnoses: [...diagnose(f, v, cache, t), ...r.diagnoses],
    cache_status: r.cacheStatus,
    cache_failure_reason: r.cacheFailureReason,
    cache_clear_exit_code: r.clearExitCode,
  };
}
