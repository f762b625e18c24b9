/**
 * Step 1 of the status authority: the raw facts of one live observation, named and normalised, with every
 * age computed on the VM's clock (so host/VM clock skew never matters). Pure.
 *
 * The probe (`src/vm/guest/probe.ts`) gathers them read-only in one round trip; this module only reads the
 * validated answer. The rules (`rules.ts`) and diagnoses (`diagnoses.ts`) judge nothing but these facts.
 */
import type { DbFacts, NodeFact, PidFact, ProbeRunResult } from "../../vm/probe-schema.js";
import { ageMs, isHeartbeatFresh, lastSignOfLifeMs } from "../../core/liveness.js";
import { isNotTheRunsProcess } from "../../core/pid-identity.js";

/** Thresholds, each configurable (`thresholds.*` in the config file; defaults and sources in config.ts). */
export interface StatusThresholds {
  /** Engine rule RUN_HEARTBEAT_STALE_MS = 30 s: a `running` run's last sign of life older than this is stale/orphaned. */
  engineHeartbeatStaleMs: number;
  /** heartbeat.json is rewritten every 10 s by the launcher; stale after this many ms (30 s). */
  launcherHeartbeatStaleMs: number;
  /** Guide Issue 2: a DB (+ WAL) over this many bytes (100 MB). */
  dbSizeWarnBytes: number;
  /** Guide Issue 2: a response_text/error_json value over this many bytes (100 KB). */
  rowSizeWarnBytes: number;
  /** The configured engine version (config `engine.version`), for the guide's Issue 4. */
  configuredEngineVersion: string;
  /** An attempt in progress longer than this while the engine lives is diagnosed TASK_RUNNING_LONG, ms (2 h). */
  taskRunningLongMs: number;
}

/** A pid of the run whose number now belongs to another process (src/core/pid-identity.ts). */
export interface ReusedPid {
  /** Where the pid was read: `engine.pid`, `smithers.pid`, `launcher.pid`, or the DB owner (`runtime_owner_id`). */
  source: string;
  pid: number;
  /** `reused` (start time differs), `rebooted` (boot id differs) or `foreign` (an old pid file, another command line). */
  identity: string;
  /** The command line of the process that has the pid now (truncated). */
  cmdline: string | null;
}

/** What the DB told us, as one word. */
export type DbState = "missing" | "unreadable" | "unknown-schema" | "no-run" | "ok";

/** Progress as the engine stores it: this run's node rows (loop iterations count separately). */
export interface Progress {
  finished: number;
  total: number;
  by_state: Record<string, number>;
}

/** The facts the status rules and diagnoses are written over. Ages in ms on the VM's clock; sizes in bytes. */
export interface RunFacts {
  vmNowMs: number;
  db: DbState;
  dbPath: string | null;
  dbError: string | null;
  /** `modern` (0.32: heartbeat + owner columns), `legacy` (0.5), `unknown`; null when there is no DB. */
  schema: DbFacts["schema"] | null;
  dbSizeBytes: number | null;
  walSizeBytes: number | null;
  runsInDb: number | null;
  /** The engine's own run status (`_smithers_runs.status`), when the run row was read. */
  engineRunStatus: string | null;
  /** The run's error_json message, truncated. */
  runError: string | null;
  finishedAtMs: number | null;
  /** Any of the DB owner, engine.pid, smithers.pid alive → true; all known ones dead → false; none known → null. */
  engineAlive: boolean | null;
  enginePid: number | null;
  launcherAlive: boolean | null;
  launcherPid: number | null;
  /** heartbeat.json says the launcher has exited (phase `exited`). */
  launcherExited: boolean;
  /** The launch the current heartbeat.json belongs to (the id fabrik journalled), when written. */
  launchId: string | null;
  /** The launcher's exit_code file, when written. */
  exitCode: number | null;
  exitCodeGarbage: boolean;
  /** The engine's heartbeat age (engine rule: max(heartbeat_at_ms, started_at_ms) while running); null when unknown or legacy. */
  engineHeartbeatAgeMs: number | null;
  /**
   * Is that heartbeat fresh? null when unknown, including the moment after a (re)start: the engine has not
   * written a heartbeat yet (heartbeat_at_ms NULL, e.g. cleared by a resume) while the launcher's heartbeat is fresh.
   */
  engineHeartbeatFresh: boolean | null;
  /** The DB has the engine heartbeat/owner columns (0.32). */
  hasEngineHeartbeat: boolean;
  launcherHeartbeatAgeMs: number | null;
  launcherHeartbeatFresh: boolean | null;
  /** null when the probe was not given a control dir. */
  controlDirExists: boolean | null;
  heartbeatError: string | null;
  currentTask: { node_id: string; attempt: number | null; started_at_ms: number | null } | null;
  /** Age of the current task's attempt (VM clock), ms; null when unknown. */
  currentTaskAgeMs: number | null;
  /** Nodes parked on an approval, an event or a timer (the engine's `waiting-*` node states). */
  waitingNodes: { node_id: string; iteration: number; state: string; label: string | null }[];
  /** Pids of the run that answer to signal 0 but are proven to be other processes: the run's own are dead. */
  reusedPids: ReusedPid[];
  progress: Progress | null;
  lastFailed: { node_id: string; iteration: number; attempt: number | null; error: string | null } | null;
  oversizedValues: number | null;
  maxValueBytes: number | null;
  logBlobTooBig: boolean;
  /** The engine version run.sh pins (`ENGINE_VERSION=`), or a non-release reference. */
  runShEngine: string | null;
  /** Facts a judgement needed but the VM could not provide (e.g. legacy: the engine heartbeat). */
  missing: string[];
}

const alive = (p: PidFact | null | undefined): boolean | null => (p ? p.alive : null);

function anyAlive(...xs: (boolean | null)[]): boolean | null {
  if (xs.some((x) => x === true)) return true;
  if (xs.some((x) => x === false)) return false;
  return null;
}

/** Normalise one probe result into {@link RunFacts}. Pure. */
export function runFacts(r: ProbeRunResult, vmNowMs: number, t: StatusThresholds): RunFacts {
  const c = r.control;
  const db = r.db;
  const run = db?.run ?? null;
  const ok = db !== null && db.exists && !db.error && db.schema !== "unknown" && run !== null;
  const dbState: DbState = !db || !db.exists ? "missing" : db.error ? "unreadable" : db.schema === "unknown" ? "unknown-schema" : !run ? "no-run" : "ok";
  const hasEngineHeartbeat = db?.schema === "modern";
  const launcherHbAt = c?.heartbeat?.ts_ms ?? c?.heartbeat_mtime_ms ?? null;
  const launcherHeartbeatAgeMs = ageMs(launcherHbAt, vmNowMs);
  const launcherHeartbeatFresh = isHeartbeatFresh(launcherHeartbeatAgeMs, t.launcherHeartbeatStaleMs);

  // Engine rule: while running, the last sign of life is max(heartbeat_at_ms, started_at_ms); an ended run
  // clears its heartbeat, so only a recorded heartbeat has an age then.
  let engineHeartbeatAgeMs: number | null = null;
  if (run && hasEngineHeartbeat) {
    engineHeartbeatAgeMs = ageMs(run.status === "running" ? lastSignOfLifeMs(run) : run.heartbeat_at_ms, vmNowMs);
  }
  let engineHeartbeatFresh = isHeartbeatFresh(engineHeartbeatAgeMs, t.engineHeartbeatStaleMs);
  // Right after a (re)start the engine has not written its heartbeat yet (a resume clears it), so the age falls
  // back to the run's original start: not evidence of a stuck engine while the new launcher beats.
  if (run?.status === "running" && hasEngineHeartbeat && run.heartbeat_at_ms === null && launcherHeartbeatFresh === true && c?.heartbeat?.phase !== "exited") {
    engineHeartbeatFresh = null;
  }

  const missing: string[] = [];
  if (db?.schema === "legacy") missing.push("engine heartbeat (_smithers_runs.heartbeat_at_ms)", "engine owner pid (_smithers_runs.runtime_owner_id)");
  if (c && !c.exists) missing.push("control dir");
  if (c?.heartbeat_error && c.exists) missing.push(`heartbeat.json (${c.heartbeat_error})`);

  // An exit status is 0..255 (what a shell can record); anything else in exit_code is not one.
  const rawExit = c?.exit_code ?? null;
  const exitCode = rawExit !== null && rawExit >= 0 && rawExit <= 255 ? rawExit : null;
  const cur: NodeFact | undefined = ok ? db.in_progress[0] : undefined;
  const reusedPids: ReusedPid[] = [];
  const seen = new Set<number>();
  for (const [source, p] of [["DB owner (runtime_owner_id)", run?.owner], ["engine.pid", c?.engine], ["smithers.pid", c?.child], ["launcher.pid", c?.launcher]] as const) {
    if (!p || seen.has(p.pid) || !isNotTheRunsProcess(p.identity)) continue;
    seen.add(p.pid);
    reusedPids.push({ source, pid: p.pid, identity: p.identity!, cmdline: p.cmdline });
  }
  const lf = ok ? db.last_failed : null;
  return {
    vmNowMs,
    db: dbState,
    dbPath: db?.path ?? null,
    dbError: db?.error ?? null,
    schema: db?.exists ? db.schema : null,
    dbSizeBytes: db?.exists ? (db.size_bytes ?? null) : null,
    walSizeBytes: db?.exists ? (db.wal_size_bytes ?? null) : null,
    runsInDb: db?.runs_in_db ?? null,
    engineRunStatus: run?.status ?? null,
    runError: run?.error ?? null,
    finishedAtMs: run?.finished_at_ms ?? null,
    engineAlive: anyAlive(alive(run?.owner), alive(c?.engine), alive(c?.child)),
    enginePid: run?.owner?.pid ?? c?.engine?.pid ?? c?.child?.pid ?? null,
    launcherAlive: alive(c?.launcher),
    launcherPid: c?.launcher?.pid ?? null,
    launcherExited: c?.heartbeat?.phase === "exited",
    launchId: c?.heartbeat?.launch_id ?? null,
    exitCode,
    exitCodeGarbage: (c?.exit_code_garbage ?? false) || (rawExit !== null && exitCode === null),
    engineHeartbeatAgeMs,
    engineHeartbeatFresh,
    hasEngineHeartbeat,
    launcherHeartbeatAgeMs,
    launcherHeartbeatFresh,
    controlDirExists: c ? c.exists : null,
    heartbeatError: c?.heartbeat_error ?? null,
    currentTask: cur ? { node_id: cur.node_id, attempt: cur.last_attempt, started_at_ms: cur.started_at_ms } : null,
    currentTaskAgeMs: cur ? ageMs(cur.started_at_ms, vmNowMs) : null,
    waitingNodes: ok ? (db.waiting ?? []).map((n) => ({ node_id: n.node_id, iteration: n.iteration, state: n.state, label: n.label })) : [],
    reusedPids,
    progress: ok ? { finished: db.by_state["finished"] ?? 0, total: db.total_nodes, by_state: { ...db.by_state } } : null,
    lastFailed: lf ? { node_id: lf.node_id, iteration: lf.iteration, attempt: lf.last_attempt, error: lf.error } : null,
    oversizedValues: ok ? db.oversized_values : null,
    maxValueBytes: ok ? Math.max(db.max_response_text_bytes ?? 0, db.max_error_json_bytes ?? 0) : null,
    logBlobTooBig: c?.log_blob_too_big ?? false,
    runShEngine: c?.run_sh_engine ?? null,
    missing,
  };
}
