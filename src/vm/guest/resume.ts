/**
 * fabrik's guest resume (runs in the VM with the engine's bun; bundled into `dist/guest/resume.js`). The VM side
 * of `fabrik run resume`: re-checks that continuing run X is safe, then backs the DB up, optionally shrinks
 * oversized values (--fix), resets the interrupted/failed state in ONE transaction scoped to this run, writes
 * resume-N.sh and starts it detached. Host side: src/fabrik/resume-service.ts (the wrapper that takes
 * `resume.lock`); wire format: src/vm/resume-schema.ts; the rules (status → mode, heartbeat freshness, what the
 * reset changes, refusal texts): src/core/resume-rules.ts, the same functions the host planner calls.
 *
 * Run as `bun resume.js <dry-run|apply>` with the request JSON on stdin; prints ONE JSON line and exits 0
 * (refusals and failures are data: `refused`, `reasons`, `error`, `stage`); exit 2 = bad request.
 *
 * Never changes anything before every check passed. Dry-run changes NOTHING, not even file metadata SQLite
 * would add: the DB is opened like the probe opens it (lib/db.ts) and no lock file is created (the wrapper only
 * tests an existing resume.lock).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Database, constants } from "bun:sqlite";
import {
  RESUME_MODES,
  engineHeartbeatCheck,
  livingProcessReason,
  modeForStatus,
  planStateReset,
  refusals,
  type PlannedReset,
  type ResumeMode,
  type ResumeReason,
} from "../../core/resume-rules.js";
import type { ResumeRequestWire } from "../resume-schema.js";
import { columnsOf, dbErrorText, sqliteUri, withReadOnlyDb } from "./lib/db.js";
import { readSmallText, statSafe } from "./lib/files.js";
import { readStdin, writeJsonLine } from "./lib/io.js";
import { ancestorPids, ownerPid, pidFact, readPidsFile, recordedIdentity, type GuestPidFact } from "./lib/proc.js";
import { cap, errorText, num } from "./lib/text.js";
import { truncateOversized } from "./lib/fix.js";

const V = 1;
const KEEP_BACKUPS_MAX = 50;
const ERR_CHARS = 400;

type Mode = "dry-run" | "apply";
type Row = Record<string, unknown>;

// ---------- request ----------
function parseRequest(raw: string, argMode: Mode): ResumeRequestWire {
  const j: unknown = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  const src = j as Row;
  if (src.v !== V) throw new Error(`unsupported request version ${JSON.stringify(src.v)}`);
  const abs = (k: string): string => {
    const x = src[k];
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4096) throw new Error(`${k} must be an absolute path`);
    return path.resolve(x);
  };
  function str(k: string, max: number): string;
  function str(k: string, max: number, nullable: true): string | null;
  function str(k: string, max: number, nullable = false): string | null {
    const x = src[k];
    if (nullable && (x === null || x === undefined)) return null;
    if (typeof x !== "string" || x.length === 0 || x.length > max || x.includes("\0")) throw new Error(`${k} must be a string`);
    return x;
  }
  const pos = (k: string, d?: number): number => {
    const x = src[k] === undefined ? d : src[k];
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x <= 0) throw new Error(`${k} must be a positive integer`);
    return x;
  };
  const dialect = src.dialect === "legacy" ? "legacy" : src.dialect === "modern" ? "modern" : null;
  if (!dialect) throw new Error("dialect must be modern or legacy");
  const r: ResumeRequestWire = {
    v: 1,
    dry_run: src.dry_run === true,
    host_run_id: pos("host_run_id"),
    smithers_run_id: str("smithers_run_id", 200),
    control_dir: abs("control_dir"),
    db_path: abs("db_path"),
    workflow_path: abs("workflow_path"),
    engine_dir: abs("engine_dir"),
    dialect,
    force: src.force === true,
    fix: src.fix === true,
    fix_limit_bytes: pos("fix_limit_bytes", 100 * 1024),
    engine_heartbeat_stale_ms: pos("engine_heartbeat_stale_ms"),
    expected_mode: RESUME_MODES.includes(src.expected_mode as ResumeMode) ? (src.expected_mode as ResumeMode) : null,
    retry_node: str("retry_node", 500, true),
    backup_path: abs("backup_path"),
    keep_backups: Math.min(pos("keep_backups", 3), KEEP_BACKUPS_MAX),
    script_path: abs("script_path"),
    script: src.script === null || src.script === undefined ? null : str("script", 1024 * 1024),
    start_wait_ms: Math.min(pos("start_wait_ms", 10000), 60000),
  };
  if (r.dry_run !== (argMode === "dry-run")) throw new Error(`request dry_run=${r.dry_run} does not match the wrapper mode ${argMode}`);
  if (path.dirname(r.backup_path) !== path.join(r.control_dir, "backups") || !new RegExp(`^run-${r.host_run_id}-[0-9A-Za-z.]+\\.db$`).test(path.basename(r.backup_path))) {
    throw new Error("backup_path must be <control_dir>/backups/run-<id>-<stamp>.db");
  }
  if (path.dirname(r.script_path) !== r.control_dir || !/^resume-[0-9]{1,6}\.sh$/.test(path.basename(r.script_path))) {
    throw new Error("script_path must be <control_dir>/resume-<n>.sh");
  }
  if (!r.dry_run && r.script === null) throw new Error("script is required");
  return r;
}

// ---------- the DB state ----------
interface NodeKey {
  node_id: string;
  iteration: number;
}
interface AttemptKey extends NodeKey {
  attempt: number | null;
}
interface DbState {
  schema: "modern" | "legacy" | "unknown";
  run: { status: string; started_at_ms: number | null; heartbeat_at_ms: number | null; runtime_owner_id: string | null } | null;
  by_state: Record<string, number>;
  total: number;
  attempts_in_progress: AttemptKey[];
  nodes_in_progress: NodeKey[];
  failed_nodes: NodeKey[];
  failed_attempts: AttemptKey[];
  oversized: { values: number; max_response_text_bytes: number | null; max_error_json_bytes: number | null } | null;
}

const nodeKey = (r: Row): NodeKey => ({ node_id: String(r.node_id), iteration: num(r.iteration) ?? 0 });
const attemptKey = (r: Row): AttemptKey => ({ ...nodeKey(r), attempt: num(r.attempt) });

/** Everything the checks and the reset need, read in one read transaction. */
function readState(db: Database, req: ResumeRequestWire): DbState {
  const runs = columnsOf(db, "_smithers_runs");
  const nodes = columnsOf(db, "_smithers_nodes");
  const att = columnsOf(db, "_smithers_attempts");
  const s: DbState = { schema: "unknown", run: null, by_state: {}, total: 0, attempts_in_progress: [], nodes_in_progress: [], failed_nodes: [], failed_attempts: [], oversized: null };
  if (runs.size === 0 || nodes.size === 0 || att.size === 0 || !runs.has("status") || !nodes.has("state") || !att.has("state")) return s;
  s.schema = runs.has("heartbeat_at_ms") && runs.has("runtime_owner_id") ? "modern" : "legacy";
  const c = (cols: Set<string>, x: string) => (cols.has(x) ? `"${x}"` : "NULL");
  const id = req.smithers_run_id;
  const run = db
    .query<Row>(`SELECT status, ${c(runs, "started_at_ms")} AS started_at_ms, ${c(runs, "heartbeat_at_ms")} AS heartbeat_at_ms,
      ${c(runs, "runtime_owner_id")} AS runtime_owner_id FROM _smithers_runs WHERE run_id = ?`)
    .get(id);
  if (!run) return s;
  s.run = { status: String(run.status), started_at_ms: num(run.started_at_ms), heartbeat_at_ms: num(run.heartbeat_at_ms), runtime_owner_id: cap(run.runtime_owner_id, 300) };
  for (const r of db.query<{ state: string; n: unknown }>("SELECT state, count(*) AS n FROM _smithers_nodes WHERE run_id = ? GROUP BY state").all(id)) {
    s.by_state[r.state] = num(r.n) ?? 0;
    s.total += num(r.n) ?? 0;
  }
  s.attempts_in_progress = db
    .query<Row>("SELECT node_id, iteration, attempt FROM _smithers_attempts WHERE run_id = ? AND state = 'in-progress' ORDER BY node_id, iteration, attempt")
    .all(id)
    .map(attemptKey);
  s.nodes_in_progress = db.query<Row>("SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ? AND state = 'in-progress' ORDER BY node_id, iteration").all(id).map(nodeKey);
  s.failed_nodes = db.query<Row>("SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ? AND state = 'failed' ORDER BY node_id, iteration").all(id).map(nodeKey);
  s.failed_attempts = db
    .query<Row>(`SELECT a.node_id, a.iteration, a.attempt FROM _smithers_attempts a JOIN _smithers_nodes n
      ON n.run_id = a.run_id AND n.node_id = a.node_id AND n.iteration = a.iteration
      WHERE a.run_id = ? AND a.state = 'failed' AND n.state = 'failed' ORDER BY a.node_id, a.iteration, a.attempt`)
    .all(id)
    .map(attemptKey);
  if (req.fix) {
    const rt = att.has("response_text") ? "octet_length(response_text)" : "NULL";
    const ej = att.has("error_json") ? "octet_length(error_json)" : "NULL";
    const o = db
      .query<Row>(`SELECT coalesce(sum(${rt} > ?), 0) + coalesce(sum(${ej} > ?), 0) AS n, max(${rt}) AS mr, max(${ej}) AS me FROM _smithers_attempts WHERE run_id = ?`)
      .get(req.fix_limit_bytes, req.fix_limit_bytes, id);
    s.oversized = { values: num(o?.n) ?? 0, max_response_text_bytes: num(o?.mr), max_error_json_bytes: num(o?.me) };
  }
  return s;
}

// ---------- the checks ----------
/** Why a pid counts as dead, for a check's detail: its own note, or the process that has the number now. */
function deadNote(info: GuestPidFact): string {
  if (info.note) return ` (${info.note})`;
  if (info.identity === "reused" || info.identity === "rebooted" || info.identity === "foreign") {
    return ` (the pid now belongs to another process${info.cmdline ? `: ${info.cmdline}` : ""}; ${info.identity_reason ?? info.identity})`;
  }
  return "";
}

interface Out {
  v: 1;
  ok: boolean;
  dry_run: boolean;
  refused: boolean;
  stage: string;
  reasons: ResumeReason[];
  checks: { name: string; ok: boolean; detail: string | null }[];
  mode: ResumeMode | null;
  retry_node: string | null;
  progress: { finished: number; total: number; by_state: Record<string, number> } | null;
  reset: (PlannedReset & { now_ms?: number; applied: boolean; counts: { attempts_cancelled: number; nodes_pending: number; run_cleared: number } | null }) | null;
  backup: { path: string; size_bytes: number; kept: string[]; removed: string[] } | null;
  /** Files of a failed or interrupted backup that could not be removed (absolute paths in the VM). */
  leftovers: string[];
  fix: Row | null;
  script: { path: string; bytes: number } | null;
  pids: { launcher_pid: number; child_pid: number } | null;
  pids_checked: Row[];
  previous_files: Record<string, string> | null;
  db: Row | null;
  oversized: DbState["oversized"];
  error: string | null;
  now_ms: number;
}

interface Checked {
  st: DbState & { run: NonNullable<DbState["run"]> };
  mode: ResumeMode;
  reset: PlannedReset & { now_ms: number };
  retryNode: string | null;
}

function runChecks(req: ResumeRequestWire, out: Out): Checked | null {
  const check = (name: string, ok: boolean, detail: string, refuse: ResumeReason | null) => {
    out.checks.push({ name, ok, detail: cap(detail, 500) });
    if (!ok && refuse) out.reasons.push({ code: refuse.code, message: cap(refuse.message, 500) ?? "", hint: cap(refuse.hint ?? "", 500) || null });
  };
  const C = req.control_dir;
  const cst = statSafe(C);
  check("control-dir", !!cst && cst.isDirectory(), cst ? C : `${C} does not exist`, refusals.controlDirMissing(C, null));
  const smithers = path.join(req.engine_dir, "node_modules", ".bin", "smithers");
  check("engine-installed", !!statSafe(smithers), smithers, { code: "ENGINE_MISSING", message: `the engine is not installed at ${req.engine_dir}`, hint: "reinstall it: a `fabrik run` with the same --engine installs it" });

  // Processes: pid files, heartbeat.json's pids, and the DB owner (below). --force never overrides these.
  const self = ancestorPids();
  const hb = ((): Row => {
    try {
      const j: unknown = JSON.parse(readSmallText(path.join(C, "heartbeat.json")) ?? "null");
      return j && typeof j === "object" ? (j as Row) : {};
    } catch {
      return {};
    }
  })();
  const seen = new Map<number, string[]>();
  const addPid = (pid: number | null, role: string) => {
    if (pid === null || !Number.isSafeInteger(pid) || pid <= 0) return;
    const cur = seen.get(pid);
    if (cur) cur.push(role);
    else seen.set(pid, [role]);
  };
  const pidFile = (f: string) => {
    const t = readSmallText(path.join(C, f), 4096)?.trim() ?? "";
    return /^[0-9]{1,10}$/.test(t) && Number(t) > 0 ? Number(t) : null;
  };
  addPid(pidFile("launcher.pid"), "launcher (launcher.pid)");
  addPid(pidFile("smithers.pid"), "launched child (smithers.pid)");
  addPid(pidFile("engine.pid"), "engine (engine.pid)");
  addPid(num(hb.launcher_pid), "launcher (heartbeat.json)");
  addPid(num(hb.child_pid), "launched child (heartbeat.json)");
  addPid(num(hb.engine_pid), "engine (heartbeat.json)");
  const pidsFile = readPidsFile(C);
  for (const [pid, roles] of seen) {
    const info = pidFact(pid, self, recordedIdentity(pidsFile, pid));
    if (!info) continue;
    out.pids_checked.push({ pid, roles, alive: info.alive, state: info.state, cmdline: info.cmdline, identity: info.identity ?? null });
    const what = roles.join(", ");
    check(
      `process-${pid}`,
      !info.alive,
      info.alive ? `${what}: pid ${pid} is alive${info.state === "Z" ? " (a zombie: still counts)" : ""}${info.cmdline ? ` — ${info.cmdline}` : ""}` : `${what}: pid ${pid} is dead${deadNote(info)}`,
      livingProcessReason({ role: (roles[0] ?? "").replace(/ \(.*\)$/, ""), pid, zombie: info.state === "Z", owner: false, vm: null, hostRunId: req.host_run_id }),
    );
  }
  const lock = path.join(C, "launcher.lock");
  if (statSafe(lock)) {
    const r = spawnSync("flock", ["-n", "-E", "75", lock, "true"], { stdio: "ignore", timeout: 5000 });
    if (r.error) check("launcher-lock", false, `cannot test ${lock}: ${errorText(r.error)}`, { code: "LOCK_UNTESTABLE", message: `cannot test ${lock} (is flock installed?)`, hint: null });
    else
      check("launcher-lock", r.status === 0, r.status === 0 ? "launcher.lock is free" : "launcher.lock is held: a launcher or engine of this run still lives", {
        code: "LAUNCHER_LOCK_HELD",
        message: "launcher.lock is held: a launcher or engine of this run is still alive",
        hint: "wait for it to end (`fabrik run attach`), or stop it first",
      });
  } else check("launcher-lock", true, "no launcher.lock (nothing holds it)", null);

  const wf = statSafe(req.workflow_path);
  check("workflow-file", !!wf && wf.isFile(), wf ? req.workflow_path : `${req.workflow_path} does not exist`, {
    code: "WORKFLOW_MISSING",
    message: `the workflow file ${req.workflow_path} is missing in the VM`,
    hint: "restore it at that exact path (the engine checks the workflow path on resume)",
  });

  // The DB.
  const dst = statSafe(req.db_path);
  out.db = { path: req.db_path, size_bytes: dst ? dst.size : null, wal_size_bytes: statSafe(req.db_path + "-wal")?.size ?? null };
  if (!dst || !dst.isFile()) {
    check("db", false, `${req.db_path} does not exist`, refusals.dbMissing(req.db_path, C, null));
    return null;
  }
  let st: DbState;
  try {
    st = withReadOnlyDb(req.db_path, (db) => readState(db, req), { busyTimeoutMs: 2000 });
  } catch (e) {
    check("db", false, `cannot read ${req.db_path}: ${dbErrorText(e)}`, refusals.dbUnreadable(req.db_path, dbErrorText(e), C));
    return null;
  }
  if (st.schema === "unknown") {
    check("db", false, "no _smithers_runs/_smithers_nodes/_smithers_attempts tables", refusals.dbUnknownSchema(req.db_path));
    return null;
  }
  check("db", true, `${req.db_path} readable (${st.schema} schema)`, null);
  if (st.schema !== req.dialect) {
    check("db-dialect", false, `the DB has the ${st.schema} schema but the run's engine speaks ${req.dialect}`, refusals.dbDialectMismatch(st.schema, req.dialect, null));
  }
  const run = st.run;
  if (!run) {
    check("run-in-db", false, `run ${req.smithers_run_id} is not in the DB`, refusals.runNotInDb(req.smithers_run_id, req.db_path, null));
    return null;
  }
  check("run-in-db", true, `run ${req.smithers_run_id}: ${run.status}`, null);
  const m = modeForStatus(run.status, { afterDecision: req.expected_mode === "continue-waiting" });
  if ("reason" in m) {
    check("run-status", false, `status ${run.status}`, m.reason);
    return null;
  }
  check("run-status", true, `status ${run.status}: ${m.mode}`, null);
  if (req.expected_mode && req.expected_mode !== m.mode) {
    check("run-unchanged", false, `the plan expected ${req.expected_mode}, the DB now says ${m.mode}`, { code: "RUN_CHANGED", message: "the run changed since fabrik looked at it", hint: "run the command again" });
  }
  const owner = ownerPid(run.runtime_owner_id);
  if (owner !== null) {
    const info = pidFact(owner, self, recordedIdentity(pidsFile, owner));
    if (info) {
      check(
        `owner-${owner}`,
        !info.alive,
        `DB owner ${run.runtime_owner_id}: pid ${owner} ${info.alive ? `is alive${info.state === "Z" ? " (a zombie: still counts)" : ""}` : `is dead${deadNote(info)}`}`,
        livingProcessReason({ role: "engine owner", pid: owner, zombie: info.state === "Z", owner: true, vm: null, hostRunId: req.host_run_id }),
      );
    }
  }
  if (req.dialect === "modern" && run.status === "running") {
    const hbv = engineHeartbeatCheck(run, Date.now(), req.engine_heartbeat_stale_ms, req.force);
    check("engine-heartbeat", hbv.ok, hbv.detail, hbv.reason);
  }
  const { reset, retryNode } = planStateReset({
    dialect: req.dialect,
    mode: m.mode,
    run,
    inProgressAttempts: st.attempts_in_progress,
    inProgressNodes: st.nodes_in_progress,
    failedNodes: st.failed_nodes,
    failedAttempts: st.failed_attempts,
  });
  if (m.mode === "retry-failed" && req.dialect === "modern" && (req.retry_node ?? null) !== retryNode) {
    check("run-unchanged", false, `the plan retries ${req.retry_node ?? "(no single node)"}, the DB now says ${retryNode ?? "(no single node)"}`, {
      code: "RUN_CHANGED",
      message: "the run's failed tasks changed since fabrik looked at it",
      hint: "run the command again",
    });
  }
  // Room for the backup (and for VACUUM with --fix: up to the DB's size again).
  try {
    const need = (dst.size + (statSafe(req.db_path + "-wal")?.size ?? 0)) * (req.fix ? 2 : 1) + 1024 * 1024;
    const sf = fs.statfsSync(C);
    const free = Number(sf.bavail) * Number(sf.bsize);
    check("disk-space", free >= need, `${free} bytes free in ${C}, need about ${need}`, { code: "DISK_FULL", message: `not enough disk space for the backup (${free} bytes free, need about ${need})`, hint: "free some space in the VM" });
  } catch {
    /* statfs unsupported: not checked */
  }
  return { st: { ...st, run }, mode: m.mode, reset: { ...reset, now_ms: Date.now() }, retryNode };
}

// ---------- the steps ----------
/** What a finished backup's name looks like (`run-<host id>-<stamp>.db`); only such files are rotated. */
function backupName(hostRunId: number): RegExp {
  return new RegExp(`^run-${hostRunId}-[0-9A-Za-z.]+\\.db$`);
}

/** The temporary name a backup is written to, in the same folder (hidden, never rotated, never mistaken for one). */
function partialPath(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.partial`);
}

/** Remove `p` (a file); true when it is gone. */
function removeFile(p: string): boolean {
  try {
    fs.rmSync(p, { force: true });
    return true;
  } catch {
    return !statSafe(p);
  }
}

/**
 * This run's leftovers in `dir`: `.run-<id>-*.db.partial` (and its `-journal`) of a backup that was interrupted
 * (SIGKILL, power off, disk full), and, from fabrik versions that wrote backups in place, a `run-<id>-*.db` that
 * has a `-journal` beside it or is not a whole SQLite file (its VACUUM INTO never finished). Only files a resume of
 * this run wrote are candidates; the run's resume.lock (held by the wrapper) keeps two resumes from racing here.
 */
function backupLeftovers(dir: string, hostRunId: number): string[] {
  const finished = backupName(hostRunId);
  const partial = new RegExp(`^\\.run-${hostRunId}-[0-9A-Za-z.]+\\.db\\.partial(-journal)?$`);
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const p = path.join(dir, n);
    if (partial.test(n)) out.push(p);
    else if (n.endsWith("-journal") && finished.test(n.slice(0, -"-journal".length))) out.push(p, p.slice(0, -"-journal".length));
    else if (finished.test(n) && !looksComplete(p)) out.push(p); // 0 bytes or truncated: a VACUUM INTO that never finished
  }
  return [...new Set(out)];
}

/**
 * Whether `p` is a whole SQLite file by its header: the magic string, and a size equal to page size × the header's
 * page count (valid when the header's version-valid-for number matches its change counter, as VACUUM INTO writes
 * it). A copy cut short by a kill or a full disk fails this; a file with an unreadable header counts as junk too.
 */
function looksComplete(p: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size < 512) return false;
    const h = Buffer.alloc(100);
    if (fs.readSync(fd, h, 0, 100, 0) !== 100 || h.toString("latin1", 0, 16) !== "SQLite format 3\0") return false;
    const raw = h.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    const pages = h.readUInt32BE(28);
    if (h.readUInt32BE(92) !== h.readUInt32BE(24) || pages === 0) return true; // no trustworthy page count: keep it
    return st.size === pageSize * pages;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * `PRAGMA integrity_check` of the copy at `p`, and that it holds run `runId`.
 * @throws Error naming what is wrong.
 */
function verifyBackup(p: string, runId: string): void {
  const chk = new Database(`${sqliteUri(p)}?mode=ro&immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
  try {
    const problems = chk
      .query<{ integrity_check: string }>("PRAGMA integrity_check")
      .all()
      .map((r) => String(r.integrity_check).replace(/\s+/g, " ").trim());
    if (problems.length !== 1 || problems[0] !== "ok") throw new Error(`the backup failed its integrity check: ${cap(problems.slice(0, 3).join("; "), 300)}`);
    const n = chk.query<{ n: unknown }>("SELECT count(*) AS n FROM _smithers_runs WHERE run_id = ?").get(runId)?.n;
    if (num(n) !== 1) throw new Error(`the backup does not hold run ${runId}`);
  } finally {
    chk.close();
  }
}

/** fsync a file or a folder (best effort where the file system refuses it on folders). */
function fsyncPath(p: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, "r");
    fs.fsyncSync(fd);
  } catch {
    /* not supported here */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Back the DB up before anything changes it: VACUUM INTO a temporary name (WAL included: it reads through this
 * connection), give it the DB's mode, `PRAGMA integrity_check` it and check it holds the run, fsync, THEN rename
 * it to `req.backup_path`. A failed copy is removed (with any `-journal`), so only verified backups carry the
 * final name, and only those count towards "last N kept". Leftovers of interrupted earlier backups of this run are
 * removed first. Files it could not remove are listed in `out.leftovers`.
 * @throws Error when the copy cannot be written or verified (nothing was changed then).
 */
function backup(req: ResumeRequestWire, db: Database, out: Out): void {
  const dir = path.dirname(req.backup_path);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const p of backupLeftovers(dir, req.host_run_id)) if (!removeFile(p)) out.leftovers.push(p);
  const tmp = partialPath(req.backup_path);
  /** Remove the failed copy; false when part of it stays. */
  const discard = (): boolean => {
    const left = [tmp, `${tmp}-journal`].filter((p) => !removeFile(p));
    out.leftovers.push(...left);
    return left.length === 0;
  };
  if (statSafe(req.backup_path)) throw new Error(`the backup ${req.backup_path} already exists`);
  try {
    // VACUUM INTO refuses to overwrite an existing file; the path is a bound parameter, never interpolated.
    db.query("VACUUM INTO ?").run(tmp);
    fs.chmodSync(tmp, (statSafe(req.db_path)?.mode ?? 0o600) & 0o777);
    verifyBackup(tmp, req.smithers_run_id);
    fsyncPath(tmp);
    fs.renameSync(tmp, req.backup_path);
    fsyncPath(dir);
  } catch (e) {
    const clean = discard();
    throw new Error(`cannot back the DB up (${dbErrorText(e)}); the partial copy ${clean ? "was removed" : `could NOT be removed: ${tmp}`}`);
  }
  const size = fs.statSync(req.backup_path).size;
  const finished = backupName(req.host_run_id);
  const all = fs.readdirSync(dir).filter((f) => finished.test(f)).sort();
  const removed: string[] = [];
  for (const f of all.slice(0, Math.max(0, all.length - req.keep_backups))) {
    if (removeFile(path.join(dir, f))) removed.push(path.join(dir, f));
  }
  out.backup = { path: req.backup_path, size_bytes: size, kept: all.slice(-req.keep_backups).map((f) => path.join(dir, f)), removed };
}

/** --fix (guide Issue 2): truncate this run's oversized response_text/error_json values (keep the tail), VACUUM. */
function fix(req: ResumeRequestWire, db: Database, out: Out): void {
  out.fix = truncateOversized(db, req.db_path, req.smithers_run_id, req.fix_limit_bytes) as unknown as Row;
}

/** The state reset, ONE transaction, this run only; re-verifies the status inside the transaction. */
function reset(req: ResumeRequestWire, db: Database, expectedStatus: string, plan: Checked["reset"], out: Out): void {
  const id = req.smithers_run_id;
  const now = plan.now_ms;
  const done = { attempts_cancelled: 0, nodes_pending: 0, run_cleared: 0 };
  // One IMMEDIATE transaction: bun:sqlite commits it, or rolls it back and rethrows.
  db.transaction(() => {
    const cur = db.query<{ status: string }>("SELECT status FROM _smithers_runs WHERE run_id = ?").get(id);
    if (!cur || cur.status !== expectedStatus) throw new Error(`the run's status changed to ${cur ? cur.status : "(gone)"} during the resume; nothing was reset`);
    done.attempts_cancelled += db.query("UPDATE _smithers_attempts SET state = 'cancelled', finished_at_ms = ? WHERE run_id = ? AND state = 'in-progress'").run(now, id).changes;
    done.nodes_pending += db.query("UPDATE _smithers_nodes SET state = 'pending' WHERE run_id = ? AND state = 'in-progress'").run(id).changes;
    for (const a of plan.attempts.filter((x) => x.from === "failed")) {
      done.attempts_cancelled += db
        .query("UPDATE _smithers_attempts SET state = 'cancelled' WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? AND state = 'failed'")
        .run(id, a.node_id, a.iteration, a.attempt).changes;
    }
    for (const n of plan.nodes.filter((x) => x.from === "failed")) {
      done.nodes_pending += db.query("UPDATE _smithers_nodes SET state = 'pending' WHERE run_id = ? AND node_id = ? AND iteration = ? AND state = 'failed'").run(id, n.node_id, n.iteration).changes;
    }
    if (plan.run) {
      done.run_cleared = db.query("UPDATE _smithers_runs SET heartbeat_at_ms = NULL, runtime_owner_id = NULL WHERE run_id = ? AND status = 'running'").run(id).changes;
    }
  }).immediate();
  out.reset = { ...plan, applied: true, counts: done };
}

/** Write resume-N.sh (next free N), clear the stale pid/exit files, start it detached, wait for its pids. */
async function start(req: ResumeRequestWire, out: Out): Promise<void> {
  const C = req.control_dir;
  const script = req.script ?? "";
  let p = req.script_path;
  let n = Number(/resume-([0-9]+)\.sh$/.exec(p)?.[1] ?? "1");
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(p, script, { flag: "wx", mode: 0o755 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i >= 999) throw e;
      n++;
      p = path.join(C, `resume-${n}.sh`);
    }
  }
  fs.chmodSync(p, 0o755);
  out.script = { path: p, bytes: Buffer.byteLength(script) };
  const previous: Record<string, string> = {};
  for (const f of ["exit_code", "launcher.pid", "smithers.pid", "engine.pid", "pids.json"]) {
    const t = readSmallText(path.join(C, f));
    if (t !== null) previous[f] = cap(t.trim(), 40) ?? "";
    fs.rmSync(path.join(C, f), { force: true });
  }
  out.previous_files = previous;
  const r = spawnSync("setsid", ["-f", "bash", p], { cwd: C, stdio: "ignore", timeout: 10000 });
  if (r.error) throw new Error(`cannot start ${p}: ${errorText(r.error)}`);
  if (r.status !== 0) throw new Error(`setsid -f bash ${p} exited ${r.status}`);
  const pidIn = (f: string) => {
    const t = readSmallText(path.join(C, f), 4096)?.trim() ?? "";
    return /^[0-9]{1,10}$/.test(t) && Number(t) > 0 ? Number(t) : null;
  };
  const deadline = Date.now() + req.start_wait_ms;
  for (;;) {
    const lp = pidIn("launcher.pid");
    const cp = pidIn("smithers.pid");
    if (lp && cp) {
      out.pids = { launcher_pid: lp, child_pid: cp };
      return;
    }
    const code = readSmallText(path.join(C, "exit_code"));
    if (code !== null && code.trim() !== "") {
      let tail = "";
      try {
        tail = fs.readFileSync(path.join(C, "reports", "smithers.log"), "utf8").split("\n").slice(-6).join(" | ");
      } catch {
        /* no log */
      }
      throw new Error(`the resume launcher exited at once with code ${code.trim()}: ${cap(tail, 600)}`);
    }
    if (Date.now() > deadline) throw new Error(`the resume launcher did not record its pids within ${req.start_wait_ms} ms`);
    await sleep(50);
  }
}

// ---------- main ----------
async function resume(raw: string, argMode: Mode): Promise<{ out: Out; code: number }> {
  const out: Out = {
    v: V, ok: false, dry_run: argMode === "dry-run", refused: false, stage: "request", reasons: [], checks: [], mode: null, retry_node: null,
    progress: null, reset: null, backup: null, leftovers: [], fix: null, script: null, pids: null, pids_checked: [], previous_files: null, db: null,
    oversized: null, error: null, now_ms: Date.now(),
  };
  let req: ResumeRequestWire;
  try {
    req = parseRequest(raw, argMode);
  } catch (e) {
    out.error = `bad request: ${errorText(e, ERR_CHARS)}`;
    return { out, code: 2 };
  }
  out.stage = "check";
  let ctx: Checked | null;
  try {
    ctx = runChecks(req, out);
  } catch (e) {
    out.error = `check failed: ${errorText(e, ERR_CHARS)}`;
    out.refused = true;
    out.reasons.push({ code: "CHECK_ERROR", message: out.error, hint: null });
    return { out, code: 0 };
  }
  if (ctx) {
    out.mode = ctx.mode;
    out.retry_node = ctx.retryNode;
    out.progress = { finished: ctx.st.by_state.finished ?? 0, total: ctx.st.total, by_state: ctx.st.by_state };
    out.reset = { ...ctx.reset, applied: false, counts: null };
    out.oversized = ctx.st.oversized;
  }
  if (out.reasons.length > 0 || !ctx) {
    out.refused = true;
    if (out.reasons.length === 0) out.reasons.push({ code: "CHECK_ERROR", message: "the checks could not complete", hint: null });
    return { out, code: 0 };
  }
  if (req.dry_run) {
    out.ok = true;
    out.stage = "done";
    return { out, code: 0 };
  }
  // Apply. Nothing above changed anything; from here on a failure reports where the backup is.
  try {
    out.stage = "backup";
    const db = new Database(req.db_path, constants.SQLITE_OPEN_READWRITE);
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      backup(req, db, out);
      if (req.fix) {
        out.stage = "fix";
        fix(req, db, out);
      }
      out.stage = "reset";
      reset(req, db, ctx.st.run.status, ctx.reset, out);
    } finally {
      db.close();
    }
    out.stage = "start";
    await start(req, out);
    out.stage = "done";
    out.ok = true;
  } catch (e) {
    out.error = errorText(e, ERR_CHARS);
  }
  return { out, code: 0 };
}

async function main(): Promise<void> {
  const argMode: Mode = process.argv.slice(2).includes("dry-run") ? "dry-run" : "apply";
  let raw: string;
  try {
    raw = await readStdin();
  } catch (e) {
    process.stderr.write(`fabrik-resume: cannot read stdin: ${errorText(e)}\n`);
    process.exitCode = 2;
    return;
  }
  let r: { out: unknown; code: number };
  try {
    r = await resume(raw, argMode);
  } catch (e) {
    r = { out: { v: V, ok: false, dry_run: argMode === "dry-run", refused: false, stage: "internal", reasons: [], checks: [], error: `internal error: ${errorText(e, ERR_CHARS)}` }, code: 1 };
  }
  await writeJsonLine(r.out);
  process.exitCode = r.code;
}

void main();
