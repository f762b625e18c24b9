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
import type { CachedRunStatus, RunStatus } from "../../core/status.js";
import { runFacts, type Progress, type StatusThresholds } from "./facts.js";
import { judge } from "./rules.js";
import { diagnose, type Diagnosis } from "./diagnoses.js";
import { reconcileWithCache, type Mismatch } from "./reconcile.js";

export type { StatusThresholds, Progress, Diagnosis, Mismatch };

/**
 * What {@link deriveRunState} concludes. JSON names say what they hold; ages in ms (VM clock when live),
 * sizes in bytes, times epoch ms. This object is the core of `runs show --json` (see `RunView`).
 */
export interface DerivedState {
  effective_status: RunStatus;
  /** Why this status, in one line. */
  reason: string;
  /** The decision-table rule that decided (docs/status.md), or `cache` / `unreachable`. */
  status_rule: string;
  source: "live" | "cache" | "unreachable";
  /** The engine's own run status in its DB (`_smithers_runs.status`: running, finished, …), when read. The guide's `vm_status:`. */
  engine_run_status: string | null;
  current_task: string | null;
  current_attempt: number | null;
  current_task_started_at_ms: number | null;
  progress: Progress | null;
  /** Age of the engine's last sign of life (engine rule: max(heartbeat_at_ms, started_at_ms) while running); null for legacy/unknown. */
  engine_heartbeat_age_ms: number | null;
  /** Age of the launcher's heartbeat.json. */
  launcher_heartbeat_age_ms: number | null;
  engine_alive: boolean | null;
  launcher_alive: boolean | null;
  engine_pid: number | null;
  launcher_pid: number | null;
  exit_code: number | null;
  db_size_bytes: number | null;
  wal_size_bytes: number | null;
  db_path: string | null;
  /** The engine version run.sh pins. */
  run_sh_engine: string | null;
  last_failed: { node_id: string; iteration: number; attempt: number | null; error: string | null } | null;
  run_error: string | null;
  /** Facts a judgement needed but the VM could not provide (e.g. legacy: the engine heartbeat). */
  missing_facts: string[];
  mismatches: Mismatch[];
  diagnoses: Diagnosis[];
  /** The status the cache should now hold (undefined: leave it). */
  cache_status: CachedRunStatus | undefined;
  /** The failure reason the cache should now hold (undefined: leave it). */
  cache_failure_reason: string | undefined;
}

/** The summary a live check stores in the registry (`last_check_json`), shown by cache-only and unreachable views. */
export interface CheckSummary {
  engine_run_status: string | null;
  current_task: string | null;
  progress: Progress | null;
  db_size_bytes: number | null;
  last_failed: DerivedState["last_failed"];
  effective_status: RunStatus;
  exit_code: number | null;
  tool: string;
}

/**
 * Derive a run's state. Pure: the same inputs give the same output.
 * @param cache the registry row
 * @param obs the live observation, `unreachable`, or `none` (`--no-live`)
 * @param nowMs host clock, epoch ms (ages of cache-only views)
 */
export function deriveRunState(cache: RunRecord, obs: RunObservation, nowMs: number, t: StatusThresholds): DerivedState {
  void nowMs;
  const base: DerivedState = {
    effective_status: cache.status,
    reason: "from the cache (not checked live)",
    status_rule: "cache",
    source: "cache",
    engine_run_status: null,
    current_task: null,
    current_attempt: null,
    current_task_started_at_ms: null,
    progress: null,
    engine_heartbeat_age_ms: null,
    launcher_heartbeat_age_ms: null,
    engine_alive: null,
    launcher_alive: null,
    engine_pid: cache.engine_pid,
    launcher_pid: cache.launcher_pid,
    exit_code: cache.exit_code,
    db_size_bytes: null,
    wal_size_bytes: null,
    db_path: cache.smithers_db_path,
    run_sh_engine: null,
    last_failed: null,
    run_error: cache.failure_reason,
    missing_facts: [],
    mismatches: [],
    diagnoses: [],
    cache_status: undefined,
    cache_failure_reason: undefined,
  };

  if (obs.kind === "none") return { ...base, ...lastCheckSummary(cache) };
  if (obs.kind === "unreachable") {
    return {
      ...base,
      ...lastCheckSummary(cache),
      effective_status: "unreachable",
      reason: `VM ${cache.vm} is unreachable: ${obs.reason}`,
      status_rule: "unreachable",
      source: "unreachable",
      diagnoses: [
        {
          code: "UNREACHABLE",
          severity: "warning",
          message: `VM ${cache.vm} could not be asked (${obs.reason}); showing cached values (cache says ${cache.status}). The run was NOT judged dead.`,
          next_command: `fabrik vm list`,
        },
      ],
    };
  }

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
  };
}

/** The values remembered from the last live check (`last_check_json`), for cache-only and unreachable views. */
function lastCheckSummary(cache: RunRecord): Partial<DerivedState> {
  if (!cache.last_check_json) return {};
  try {
    const j = JSON.parse(cache.last_check_json) as Partial<CheckSummary> & { vm_status?: unknown };
    const engineStatus = typeof j.engine_run_status === "string" ? j.engine_run_status : typeof j.vm_status === "string" ? j.vm_status : null;
    return {
      engine_run_status: engineStatus,
      current_task: typeof j.current_task === "string" ? j.current_task : null,
      progress: j.progress && typeof j.progress === "object" ? j.progress : null,
      db_size_bytes: typeof j.db_size_bytes === "number" ? j.db_size_bytes : null,
      last_failed: j.last_failed ?? null,
    };
  } catch {
    return {};
  }
}
