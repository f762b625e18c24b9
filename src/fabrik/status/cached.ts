/**
 * The status authority's cache-only views: what fabrik can say about a run WITHOUT a live observation — `--no-live`
 * (`none`) and an unreachable VM. Kept apart from the live derivation (`derive.ts`) so cache-only commands load
 * none of the decision table, diagnoses or their libraries. Pure.
 */
import type { RunListRecord } from "../registry.js";
import type { RunStatus, CachedRunStatus } from "../../core/status.js";
import type { Progress } from "./facts.js";
import type { Diagnosis } from "./diagnoses.js";
import type { Mismatch } from "./reconcile.js";

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
  /** The cached exit code should be cleared (no exit_code file, the run is active again). */
  cache_clear_exit_code: boolean;
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

/** The state of a run from the cache alone: `none` (`--no-live`) or an unreachable VM (`reason`). */
export function cachedRunState(cache: RunListRecord, obs: { kind: "none" } | { kind: "unreachable"; reason: string }): DerivedState {
  // One object literal of a fixed shape (no spreads): `runs list --no-live` builds one per cached run.
  const last = lastCheckSummary(cache);
  const unreachable = obs.kind === "unreachable";
  return {
    effective_status: unreachable ? "unreachable" : cache.status,
    reason: unreachable ? `VM ${cache.vm} is unreachable: ${obs.reason}` : "from the cache (not checked live)",
    status_rule: unreachable ? "unreachable" : "cache",
    source: unreachable ? "unreachable" : "cache",
    engine_run_status: last ? last.engine_run_status : null,
    current_task: last ? last.current_task : null,
    current_attempt: null,
    current_task_started_at_ms: null,
    progress: last ? last.progress : null,
    engine_heartbeat_age_ms: null,
    launcher_heartbeat_age_ms: null,
    engine_alive: null,
    launcher_alive: null,
    engine_pid: cache.engine_pid,
    launcher_pid: cache.launcher_pid,
    exit_code: cache.exit_code,
    db_size_bytes: last ? last.db_size_bytes : null,
    wal_size_bytes: null,
    db_path: cache.smithers_db_path,
    run_sh_engine: null,
    last_failed: last ? last.last_failed : null,
    run_error: cache.failure_reason,
    missing_facts: [],
    mismatches: [],
    diagnoses: unreachable
      ? [
          {
            code: "UNREACHABLE",
            severity: "warning",
            message: `VM ${cache.vm} could not be asked (${obs.reason}); showing cached values (cache says ${cache.status}). The run was NOT judged dead.`,
            next_command: `fabrik vm list`,
          },
        ]
      : [],
    cache_status: undefined,
    cache_failure_reason: undefined,
    cache_clear_exit_code: false,
  };
}

/** The values remembered from the last live check (`last_check_json`), for cache-only and unreachable views; null when none. */
function lastCheckSummary(cache: RunListRecord): Pick<DerivedState, "engine_run_status" | "current_task" | "progress" | "db_size_bytes" | "last_failed"> | null {
  if (!cache.last_check_json) return null;
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
    return null;
  }
}
