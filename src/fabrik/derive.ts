/**
 * Deriving the truth about a run: cache row + live observation (or "unreachable") → effective status,
 * mismatches with the cache, and diagnoses with the exact next command. ONE pure function,
 * {@link deriveRunState}, with `now` injected; written as an explicit decision table over the raw facts.
 *
 * Rules (documented in docs/status.md):
 * - The VM is the source of truth; the cache is what fabrik last knew.
 * - Never `running` for a run whose engine process is dead (→ `orphaned`).
 * - Never dead because the VM is unreachable (→ `unreachable`, with the cached values).
 * - Engine liveness (engine rule, smithers-engine.md): last sign of life = max(heartbeat_at_ms,
 *   started_at_ms); within RUN_HEARTBEAT_STALE_MS (30 s) = alive; older = `orphaned` if no owner or its
 *   pid is dead, `stale` if the pid is alive. Legacy 0.5 DBs have no heartbeat/owner: judged by process
 *   liveness and heartbeat.json, and the missing facts are listed.
 */
import type { RunRecord } from "./registry.js";
import type { NodeFact, PidFact } from "../vm/probe-schema.js";
import type { RunObservation as Observation } from "../vm/probe.js";
import { hostStatusFromEffective, type EffectiveStatus, type HostStatus } from "../core/status.js";
import { compareVersions } from "../vm/versions.js";
import { shellQuote as shellSafe } from "../vm/shell-quote.js";

/** Thresholds, each configurable; defaults in config.ts with their sources. */
export interface DeriveThresholds {
  /** Engine rule RUN_HEARTBEAT_STALE_MS = 30 s. */
  engineHeartbeatStaleMs: number;
  /** heartbeat.json is rewritten every 10 s; stale after 30 s. */
  launcherHeartbeatStaleMs: number;
  /** Guide Issue 2: DB over 100 MB. */
  dbSizeWarnBytes: number;
  /** Guide Issue 2: a response_text/error_json value over 100 KB. */
  rowSizeWarnBytes: number;
  /** The configured engine version (config `engine.version`), for the guide's Issue 4. */
  configuredEngineVersion: string;
}


export interface Mismatch {
  field: string;
  cache: string | number | null;
  live: string | number | null;
}

export type DiagnosisCode =
  | "UNREACHABLE"
  | "CACHE_SAYS_FINISHED_BUT_RUNNING"
  | "CACHE_SAYS_RUNNING_BUT_ENDED"
  | "TASK_IN_PROGRESS_NO_ENGINE"
  | "ORPHANED_NO_ENGINE"
  | "EXITED_WITHOUT_FINISHING"
  | "ENGINE_STUCK"
  | "HEARTBEAT_WRITER_DIED"
  | "LEGACY_NO_ENGINE_HEARTBEAT"
  | "RUN_FAILED"
  | "RUN_CANCELLED"
  | "BLOB_TOO_BIG"
  | "OVERSIZED_VALUES"
  | "DB_TOO_LARGE"
  | "OLD_ENGINE_PINNED"
  | "DB_MISSING"
  | "DB_UNREADABLE"
  | "DB_UNKNOWN_SCHEMA"
  | "RUN_NOT_IN_DB"
  | "DB_PATH_MOVED"
  | "HEARTBEAT_UNREADABLE"
  | "EXIT_CODE_UNREADABLE"
  | "CONTROL_DIR_MISSING"
  | "WAITING";

export interface Diagnosis {
  code: DiagnosisCode;
  severity: "error" | "warning" | "info";
  message: string;
  /** The exact command to run next, or null. */
  next_command: string | null;
}

/** Progress as the engine stores it: node rows of this run (iterations count separately). */
export interface Progress {
  finished: number;
  total: number;
  by_state: Record<string, number>;
}

/** What {@link deriveRunState} concludes. Ages in ms (VM clock when live). */
export interface DerivedState {
  effective_status: EffectiveStatus;
  /** Why this status, in one line. */
  reason: string;
  source: "live" | "cache" | "unreachable";
  /** The engine's own run status in the DB (`running`, `finished`, …), when read. */
  vm_status: string | null;
  current_task: string | null;
  current_attempt: number | null;
  current_task_started_at_ms: number | null;
  progress: Progress | null;
  /** Age of the engine's last sign of life (max(heartbeat_at_ms, started_at_ms)); null for legacy/unknown. */
  heartbeat_age_ms: number | null;
  /** Age of heartbeat.json (launcher). */
  launcher_heartbeat_age_ms: number | null;
  engine_alive: boolean | null;
  launcher_alive: boolean | null;
  engine_pid: number | null;
  launcher_pid: number | null;
  exit_code: number | null;
  db_size_bytes: number | null;
  wal_size_bytes: number | null;
  db_path: string | null;
  run_sh_engine: string | null;
  last_failed: { node_id: string; iteration: number; attempt: number | null; error: string | null } | null;
  run_error: string | null;
  /** Facts that a judgement needed but the VM could not provide (e.g. legacy: engine heartbeat). */
  missing_facts: string[];
  mismatches: Mismatch[];
  diagnoses: Diagnosis[];
  /** The host status the cache should now hold (undefined: leave it). */
  cache_status: HostStatus | undefined;
  /** The failure reason the cache should now hold (undefined: leave it). */
  cache_failure_reason: string | undefined;
}

const TERMINAL_DB = new Set(["finished", "failed", "cancelled", "continued"]);
const WAITING_DB = new Set(["waiting-approval", "waiting-event", "waiting-timer", "waiting-quota", "paused"]);

function alive(p: PidFact | null | undefined): boolean | null {
  return p ? p.alive : null;
}

function anyTrue(...xs: (boolean | null)[]): boolean | null {
  if (xs.some((x) => x === true)) return true;
  if (xs.some((x) => x === false)) return false;
  return null;
}

function fmtMin(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/**
 * The decision table. Pure: same inputs, same output.
 * @param cache the registry row
 * @param obs the live observation, "unreachable", or "none" (`--no-live`)
 * @param nowMs host clock (used for cache-only ages)
 */
export function deriveRunState(cache: RunRecord, obs: Observation, nowMs: number, t: DeriveThresholds): DerivedState {
  const id = cache.id;
  const resumeCmd = `fabrik run resume --id ${id}`;
  const base: DerivedState = {
    effective_status: (cache.last_check_status as EffectiveStatus | null) ?? effectiveFromHost(cache.status),
    reason: "",
    source: "cache",
    vm_status: null,
    current_task: null,
    current_attempt: null,
    current_task_started_at_ms: null,
    progress: null,
    heartbeat_age_ms: null,
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

  if (obs.kind === "none") {
    const cached = cachedObservationSummary(cache);
    return { ...base, ...cached, effective_status: effectiveFromHost(cache.status), reason: "from the cache (not checked live)", source: "cache" };
  }
  if (obs.kind === "unreachable") {
    const cached = cachedObservationSummary(cache);
    return {
      ...base,
      ...cached,
      effective_status: "unreachable",
      reason: `VM ${cache.vm} is unreachable: ${obs.reason}`,
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

  const r = obs.result;
  const now = obs.vmNowMs;
  const c = r.control;
  const db = r.db;
  const run = db?.run ?? null;
  const d: DerivedState = { ...base, source: "live" };
  const diag = (x: Diagnosis) => d.diagnoses.push(x);

  // ---- raw facts -------------------------------------------------------------------------------
  const ownerAlive = alive(run?.owner);
  const engineAlive = anyTrue(ownerAlive, alive(c?.engine), alive(c?.child));
  const launcherAlive = alive(c?.launcher);
  d.engine_alive = engineAlive;
  d.launcher_alive = launcherAlive;
  d.engine_pid = run?.owner?.pid ?? c?.engine?.pid ?? c?.child?.pid ?? cache.engine_pid;
  d.launcher_pid = c?.launcher?.pid ?? cache.launcher_pid;
  d.exit_code = c?.exit_code ?? null;
  d.db_size_bytes = db?.exists ? (db.size_bytes ?? null) : null;
  d.wal_size_bytes = db?.exists ? (db.wal_size_bytes ?? null) : null;
  d.db_path = db?.path ?? cache.smithers_db_path;
  d.run_sh_engine = c?.run_sh_engine ?? null;
  d.vm_status = run?.status ?? null;
  d.run_error = run?.error ?? null;
  if (db && db.exists && !db.error) {
    d.progress = { finished: db.by_state["finished"] ?? 0, total: db.total_nodes, by_state: { ...db.by_state } };
    const cur: NodeFact | undefined = db.in_progress[0];
    if (cur) {
      d.current_task = cur.node_id;
      d.current_attempt = cur.last_attempt;
      d.current_task_started_at_ms = cur.started_at_ms;
    }
    if (db.last_failed) d.last_failed = { node_id: db.last_failed.node_id, iteration: db.last_failed.iteration, attempt: db.last_failed.last_attempt, error: db.last_failed.error };
  }
  const lastSign = run ? Math.max(run.heartbeat_at_ms ?? 0, run.started_at_ms ?? 0) : 0;
  const hasEngineHeartbeat = db?.schema === "modern";
  // Engine rule: for a running run, the last sign of life is max(heartbeat_at_ms, started_at_ms). Ended runs
  // clear their heartbeat; then only a recorded heartbeat has an age.
  d.heartbeat_age_ms =
    run && hasEngineHeartbeat
      ? run.status === "running"
        ? lastSign > 0
          ? Math.max(0, now - lastSign)
          : null
        : run.heartbeat_at_ms
          ? Math.max(0, now - run.heartbeat_at_ms)
          : null
      : null;
  const hbTs = c?.heartbeat?.ts_ms ?? c?.heartbeat_mtime_ms ?? null;
  d.launcher_heartbeat_age_ms = hbTs !== null ? Math.max(0, now - hbTs) : null;
  const engineHbFresh = d.heartbeat_age_ms !== null ? d.heartbeat_age_ms <= t.engineHeartbeatStaleMs : null;
  const launcherHbFresh = d.launcher_heartbeat_age_ms !== null ? d.launcher_heartbeat_age_ms <= t.launcherHeartbeatStaleMs : null;
  const launcherExited = c?.heartbeat?.phase === "exited";

  if (db?.schema === "legacy") {
    d.missing_facts.push("engine heartbeat (_smithers_runs.heartbeat_at_ms)", "engine owner pid (_smithers_runs.runtime_owner_id)");
  }
  if (c && !c.exists) d.missing_facts.push("control dir");
  if (c?.heartbeat_error && c.exists) d.missing_facts.push(`heartbeat.json (${c.heartbeat_error})`);

  // ---- the decision table ------------------------------------------------------------------------
  const set = (s: EffectiveStatus, reason: string) => {
    d.effective_status = s;
    d.reason = reason;
  };

  if (!db || !db.exists) {
    if (engineAlive === true) set("running", "engine process alive; its DB does not exist yet (starting)");
    else if (d.exit_code !== null) set(d.exit_code === 0 ? "unknown" : "failed", `engine exited with code ${d.exit_code} and left no DB at ${d.db_path}`);
    else if (c && !c.exists) set("unknown", `neither the control dir ${cache.control_dir} nor the DB exists in VM ${cache.vm}`);
    else set("unknown", `no DB at ${d.db_path} and no engine process`);
    if (engineAlive === true) {
      diag({ code: "DB_MISSING", severity: "info", message: `the engine has not created its DB yet (${d.db_path})`, next_command: null });
    } else {
      diag({ code: "DB_MISSING", severity: "error", message: `the Smithers DB ${d.db_path} does not exist in VM ${cache.vm}`, next_command: `fabrik vm shell ${cache.vm} -- ls -la ${shellSafe(cache.control_dir)}` });
    }
  } else if (db.error) {
    if (engineAlive === true) set("running", `engine process alive; DB unreadable right now (${db.error})`);
    else set("unknown", `DB unreadable (${db.error}) and no engine process`);
    diag({ code: "DB_UNREADABLE", severity: engineAlive ? "warning" : "error", message: `cannot read ${db.path}: ${db.error}`, next_command: `fabrik runs show --id ${id}` });
  } else if (db.schema === "unknown") {
    set("unknown", "the file has no _smithers_runs table (not a Smithers DB, or an unknown schema)");
    diag({ code: "DB_UNKNOWN_SCHEMA", severity: "error", message: `${db.path} has no _smithers_runs table`, next_command: null });
  } else if (!run) {
    if (engineAlive === true) set("running", `engine alive; run ${cache.smithers_run_id} not yet in the DB`);
    else set("unknown", `run ${cache.smithers_run_id} is not in ${db.path}`);
    if (engineAlive !== true) diag({ code: "RUN_NOT_IN_DB", severity: "error", message: `run ${cache.smithers_run_id} is not in ${db.path} (${db.runs_in_db ?? 0} other runs)`, next_command: `fabrik runs import --vm ${cache.vm}` });
  } else if (TERMINAL_DB.has(run.status)) {
    const s: EffectiveStatus = run.status === "failed" ? "failed" : run.status === "cancelled" ? "cancelled" : "done";
    set(s, `the engine recorded the run as ${run.status}`);
    if (s === "failed") {
      const where = d.last_failed ? ` at ${d.last_failed.node_id}${d.last_failed.error ? `: ${d.last_failed.error}` : ""}` : run.error ? `: ${run.error}` : "";
      diag({ code: "RUN_FAILED", severity: "error", message: `the run failed${where}; once the cause is fixed, resume re-runs the failed task and keeps finished work`, next_command: resumeCmd });
    } else if (s === "cancelled") {
      diag({ code: "RUN_CANCELLED", severity: "info", message: "the run was cancelled (SIGTERM/SIGINT or a cancel request)", next_command: resumeCmd });
    }
  } else if (WAITING_DB.has(run.status)) {
    set(run.status as EffectiveStatus, `the engine is parked: ${run.status}`);
    diag({ code: "WAITING", severity: "info", message: `the run is ${run.status}; it continues when its condition is met`, next_command: null });
  } else if (run.status === "running") {
    if (engineAlive === true) {
      if (engineHbFresh === false) {
        set("stale", `engine process alive but its heartbeat is ${fmtMin(d.heartbeat_age_ms!)} old (engine rule: 30 s)`);
        diag({
          code: "ENGINE_STUCK",
          severity: "warning",
          message: `engine pid ${d.engine_pid} is alive but has not refreshed its heartbeat for ${fmtMin(d.heartbeat_age_ms!)}: it may be stuck${d.current_task ? ` in ${d.current_task}` : ""}`,
          next_command: `fabrik run attach --id ${id}`,
        });
      } else {
        set("running", hasEngineHeartbeat ? "engine alive and its heartbeat is fresh" : "engine process alive (legacy engine: no DB heartbeat)");
      }
      if ((launcherHbFresh === false && !launcherExited) || (launcherAlive === false && !launcherExited)) {
        diag({
          code: "HEARTBEAT_WRITER_DIED",
          severity: "warning",
          message: `the launcher's heartbeat writer died (heartbeat.json ${d.launcher_heartbeat_age_ms !== null ? `${fmtMin(d.launcher_heartbeat_age_ms)} old` : "missing"}${launcherAlive === false ? ", launcher process gone" : ""}) but the engine is still running; exit_code will not be written when it ends`,
          next_command: `fabrik runs watch --vm ${cache.vm} --run-id ${id}`,
        });
      }
    } else if (engineAlive === false) {
      const exited = d.exit_code !== null ? ` (launcher recorded exit code ${d.exit_code})` : "";
      set("orphaned", `the DB says running but no engine process lives in the VM${exited}`);
      if (d.current_task) {
        diag({
          code: "TASK_IN_PROGRESS_NO_ENGINE",
          severity: "error",
          message: `task ${d.current_task} is in-progress but no engine process is running${exited}; the run will not continue by itself`,
          next_command: resumeCmd,
        });
      } else {
        diag({ code: "ORPHANED_NO_ENGINE", severity: "error", message: `the run is marked running but its engine is gone${exited}`, next_command: resumeCmd });
      }
      if (d.exit_code !== null) {
        diag({ code: "EXITED_WITHOUT_FINISHING", severity: "error", message: `the engine exited with code ${d.exit_code} without recording an outcome`, next_command: `fabrik run attach --id ${id} --no-follow` });
      }
    } else {
      // No pid facts at all (e.g. an imported run with no pid files).
      if (engineHbFresh === true) set("running", "engine heartbeat is fresh (no pid to check)");
      else if (engineHbFresh === false) {
        set("orphaned", `engine heartbeat is ${fmtMin(d.heartbeat_age_ms!)} old and no owner process can be found`);
        diag({ code: d.current_task ? "TASK_IN_PROGRESS_NO_ENGINE" : "ORPHANED_NO_ENGINE", severity: "error", message: `no sign of the engine for ${fmtMin(d.heartbeat_age_ms!)}${d.current_task ? `; task ${d.current_task} is in-progress` : ""}`, next_command: resumeCmd });
      } else if (launcherHbFresh === true) set("running", "launcher heartbeat is fresh (legacy engine: no DB heartbeat, no pid)");
      else {
        set("unknown", "the DB says running but there is no heartbeat and no pid to judge by");
        d.missing_facts.push("engine pid");
      }
    }
    if (db.schema === "legacy") {
      diag({
        code: "LEGACY_NO_ENGINE_HEARTBEAT",
        severity: "info",
        message: `legacy engine DB: no engine heartbeat or owner pid; judged by process liveness and heartbeat.json (missing: ${d.missing_facts.join(", ")})`,
        next_command: null,
      });
    }
  } else {
    set("unknown", `the engine reports an unknown run status ${JSON.stringify(run.status)}`);
  }

  // ---- size and version diagnoses (guide Issues 2 and 4) -------------------------------------------
  if (c?.log_blob_too_big || (run?.error ?? "").includes("string or blob too big")) {
    diag({ code: "BLOB_TOO_BIG", severity: "error", message: `"string or blob too big": an agent response exceeded SQLite's limit`, next_command: `${resumeCmd} --fix` });
  }
  if (db?.oversized_values && db.oversized_values > 0) {
    diag({
      code: "OVERSIZED_VALUES",
      severity: "warning",
      message: `${db.oversized_values} response_text/error_json value(s) over ${Math.round(t.rowSizeWarnBytes / 1024)} KB (largest ${Math.max(db.max_response_text_bytes ?? 0, db.max_error_json_bytes ?? 0)} bytes)`,
      next_command: `${resumeCmd} --fix`,
    });
  }
  const dbTotal = (d.db_size_bytes ?? 0) + (d.wal_size_bytes ?? 0);
  if (dbTotal > t.dbSizeWarnBytes) {
    diag({ code: "DB_TOO_LARGE", severity: "warning", message: `the DB is ${Math.round(dbTotal / 1024 / 1024)} MB (over ${Math.round(t.dbSizeWarnBytes / 1024 / 1024)} MB)`, next_command: `${resumeCmd} --fix` });
  }
  if (d.run_sh_engine && /^\d+\.\d+\.\d+/.test(d.run_sh_engine) && compareVersions(d.run_sh_engine, t.configuredEngineVersion) < 0) {
    diag({
      code: "OLD_ENGINE_PINNED",
      severity: "warning",
      message: `run.sh pins smithers-orchestrator ${d.run_sh_engine}, older than the configured ${t.configuredEngineVersion}`,
      next_command: `fabrik vm shell ${cache.vm} -- grep -n ENGINE_VERSION ${shellSafe(cache.control_dir + "/run.sh")}`,
    });
  } else if (d.run_sh_engine && !/^\d+\.\d+\.\d+/.test(d.run_sh_engine)) {
    diag({ code: "OLD_ENGINE_PINNED", severity: "warning", message: `run.sh pins a non-release engine (${d.run_sh_engine}); the configured engine is ${t.configuredEngineVersion}`, next_command: `fabrik vm shell ${cache.vm} -- grep -n smithers ${shellSafe(cache.control_dir + "/run.sh")}` });
  }
  if (c?.heartbeat_error && c.exists && c.heartbeat_error !== "missing") {
    diag({ code: "HEARTBEAT_UNREADABLE", severity: "warning", message: `heartbeat.json is unusable (${c.heartbeat_error})`, next_command: null });
  }
  if (c?.exit_code_garbage) diag({ code: "EXIT_CODE_UNREADABLE", severity: "warning", message: "exit_code exists but is not an integer", next_command: null });
  if (c && !c.exists && cache.control_dir) diag({ code: "CONTROL_DIR_MISSING", severity: "warning", message: `control dir ${cache.control_dir} does not exist in VM ${cache.vm}`, next_command: null });
  if (db?.exists && db.path !== cache.smithers_db_path) {
    diag({ code: "DB_PATH_MOVED", severity: "info", message: `the run's DB is at ${db.path} (the workflow ignored SMITHERS_DB_PATH); recorded`, next_command: null });
  }

  // ---- reconcile with the cache -------------------------------------------------------------------
  const liveHost = hostStatusFromEffective(d.effective_status);
  d.cache_status = liveHost;
  if (liveHost && liveHost !== cache.status) {
    d.mismatches.push({ field: "status", cache: cache.status, live: liveHost });
    const cacheEnded = cache.status === "done" || cache.status === "failed" || cache.status === "cancelled";
    if (cacheEnded && (d.effective_status === "running" || d.effective_status === "stale")) {
      diag({
        code: "CACHE_SAYS_FINISHED_BUT_RUNNING",
        severity: "warning",
        message: `the host cache said ${cache.status} but the VM shows the run ${d.effective_status}`,
        next_command: `fabrik runs watch --vm ${cache.vm} --run-id ${id}`,
      });
    } else if ((cache.status === "running" || cache.status === "launching") && d.effective_status !== "unknown") {
      diag({
        code: "CACHE_SAYS_RUNNING_BUT_ENDED",
        severity: d.effective_status === "done" ? "info" : "warning",
        message: `the host cache said ${cache.status} but the VM shows ${d.effective_status}`,
        next_command: null,
      });
    }
  }
  if (d.exit_code !== null && d.exit_code !== cache.exit_code) d.mismatches.push({ field: "exit_code", cache: cache.exit_code, live: d.exit_code });
  if (d.effective_status === "failed" || d.effective_status === "orphaned") {
    d.cache_failure_reason = d.effective_status === "orphaned" ? d.reason : d.last_failed ? `${d.last_failed.node_id}: ${d.last_failed.error ?? "failed"}` : (run?.error ?? d.reason);
  }
  return d;
}

/** The effective status a cached host status stands for (`--no-live`). */
export function effectiveFromHost(s: HostStatus): EffectiveStatus {
  switch (s) {
    case "launching":
      return "launching";
    case "running":
      return "running";
    case "waiting":
      return "waiting-approval";
    case "done":
    case "failed":
    case "cancelled":
      return s;
    case "unknown":
      return "unknown";
  }
}

/** Values remembered from the last live check, for cache-only and unreachable views. */
function cachedObservationSummary(cache: RunRecord): Partial<DerivedState> {
  if (!cache.last_check_json) return {};
  try {
    const j = JSON.parse(cache.last_check_json) as Partial<DerivedState>;
    return {
      vm_status: typeof j.vm_status === "string" ? j.vm_status : null,
      current_task: typeof j.current_task === "string" ? j.current_task : null,
      progress: j.progress && typeof j.progress === "object" ? j.progress : null,
      db_size_bytes: typeof j.db_size_bytes === "number" ? j.db_size_bytes : null,
      last_failed: j.last_failed ?? null,
    };
  } catch {
    return {};
  }
}
