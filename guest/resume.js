// fabrik guest resume (bun). The VM side of `fabrik run resume`: re-checks that continuing run X is safe, then
// backs the DB up, optionally shrinks oversized values (--fix), resets the interrupted/failed state in ONE
// transaction scoped to this run, writes resume-N.sh and starts it detached. Host side: src/resume/apply.ts
// (which also holds the wire format as zod schemas and the bash wrapper that takes `resume.lock`).
//
// Run as `bun -e <this text> <dry-run|apply>` with the request JSON on stdin; prints ONE JSON line on stdout
// and exits 0 (refusals and failures are data: `refused`, `reasons`, `error`, `stage`); exit 2 = bad request.
// Node builtins + bun:sqlite only; no import statements, no import.meta, no top-level await.
//
// Never changes anything before every check passed. Dry-run changes NOTHING, not even file metadata SQLite
// would add: the DB is opened like the probe does — `immutable=1` when there is no -wal (no -wal/-shm is
// created), `mode=ro&readonly_shm=1` when -wal and -shm exist (the -shm is not written) — and no lock file is
// created (the wrapper only tests an existing resume.lock).
//
// What is reset (run `smithers_run_id` only; finished work and other runs in the DB are never touched), and
// why — all verified against the real engines (smithers-engine.md and the experiments noted below):
// - every mode: attempts `in-progress` -> `cancelled` (finished_at_ms = now); nodes `in-progress` -> `pending`.
//   0.32 needs it for `up --resume` to start at once; 0.5 `run --resume` closes the stuck attempt itself, and
//   the same reset before it gives the identical outcome (verified: step-3 attempt 1 cancelled, attempt 2
//   finished, steps 4-6 once) — done anyway so a leftover in-progress attempt can never make a later
//   plain `run` mark the run finished (smithers-engine.md, "Hazards").
// - 0.32, status `running`: `heartbeat_at_ms` and `runtime_owner_id` -> NULL (only while still `running`).
// - failed run, 0.32 with exactly ONE failed node: no DB change; the script runs `retry-task --node-id`.
// - failed run, 0.5 (and 0.32 with several failed nodes): failed nodes -> `pending` and THEIR failed
//   attempts -> `cancelled`. Evidence (0.5.0, seq 5 tasks, failAt 3, then the cause fixed):
//     no reset:                          `run --resume` -> "✗ Run failed: Task failed" at once, nothing runs
//     node failed->pending only:         same: fails at once, node back to failed (attempts decide)
//     node -> pending + run -> running:  same
//     failed attempt -> cancelled only:  step-3 attempt 2 runs and finishes, steps 4-5 run, run finished
//     node -> pending + attempt -> cancelled: same as the previous line (chosen: states stay consistent)
//   The engine counts `failed` attempts against `retries`; a `cancelled` one does not. The run's own
//   status (`failed`) needs no change: the engine sets it back to `running` itself. The same reset also
//   works on 0.32 with `up --resume` (verified), which is why several failed 0.32 nodes take that path.
// - cancelled run: nothing beyond the in-progress rule (0.32 `up --resume` re-runs the cancelled node;
//   0.5 `run --resume` after `smithers cancel` too — both verified).
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { Database, constants: SQ } = require("bun:sqlite");

const V = 1;
const MODES = ["continue-interrupted", "retry-failed", "continue-cancelled"];
const KEEP_BACKUPS_MAX = 50;

// ---------- small helpers ----------
function cap(s, n) {
  if (s === null || s === undefined) return null;
  s = String(s);
  return s.length > n ? s.slice(0, n) : s;
}
function errMsg(e) {
  return cap(e && e.message ? e.message : String(e), 400);
}
function num(x) {
  if (typeof x === "bigint") x = Number(x);
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}
function statSafe(p) {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}
function readSmall(p) {
  try {
    const st = fs.statSync(p);
    if (!st.isFile() || st.size > 64 * 1024) return null;
    return fs.readFileSync(p, "utf8");
  } catch {
    return null;
  }
}
function readPid(p) {
  const t = readSmall(p);
  if (t === null) return null;
  const s = t.trim();
  return /^[0-9]{1,10}$/.test(s) && Number(s) > 0 ? Number(s) : null;
}
function ownerPid(owner) {
  const m = typeof owner === "string" ? /^pid:([0-9]{1,10}):/.exec(owner) : null;
  return m ? Number(m[1]) : null;
}
/** This process and its ancestors: a stale pid file pointing at one of them is not the engine. */
function ancestors() {
  const out = new Set([process.pid]);
  let pid = process.pid;
  for (let i = 0; i < 64 && pid > 1; i++) {
    const st = readSmall(`/proc/${pid}/stat`);
    const m = st ? /^\s*\S+\s+(\d+)/.exec(st.slice(st.lastIndexOf(")") + 1)) : null;
    if (!m) break;
    pid = Number(m[1]);
    out.add(pid);
  }
  return out;
}
/** Liveness inside this machine: signal 0 (EPERM = alive; a zombie is alive, as the engine counts it). */
function pidInfo(pid, self) {
  if (self.has(pid)) return { pid, alive: false, state: null, cmdline: null, note: "pid belongs to this resume's own process" };
  let alive;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch (e) {
    alive = !!e && e.code === "EPERM";
  }
  let state = null;
  let cmdline = null;
  if (alive) {
    const st = readSmall(`/proc/${pid}/stat`);
    const m = st ? /^\s*(\S+)/.exec(st.slice(st.lastIndexOf(")") + 1)) : null;
    if (m) state = m[1];
    try {
      cmdline = cap(fs.readFileSync(`/proc/${pid}/cmdline`).toString("utf8").replace(/\0/g, " ").trim(), 160) || null;
    } catch {}
  }
  return { pid, alive, state, cmdline, note: null };
}

// ---------- request ----------
function parseRequest(raw, argMode) {
  const j = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  if (j.v !== V) throw new Error(`unsupported request version ${JSON.stringify(j.v)}`);
  const abs = (k) => {
    const x = j[k];
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4096) throw new Error(`${k} must be an absolute path`);
    return path.resolve(x);
  };
  const str = (k, max, nullable) => {
    const x = j[k];
    if (nullable && (x === null || x === undefined)) return null;
    if (typeof x !== "string" || x.length === 0 || x.length > max || x.includes("\0")) throw new Error(`${k} must be a string`);
    return x;
  };
  const pos = (k, d) => {
    const x = j[k] === undefined ? d : j[k];
    if (!Number.isSafeInteger(x) || x <= 0) throw new Error(`${k} must be a positive integer`);
    return x;
  };
  const r = {
    dry_run: j.dry_run === true,
    host_run_id: pos("host_run_id"),
    smithers_run_id: str("smithers_run_id", 200),
    control_dir: abs("control_dir"),
    db_path: abs("db_path"),
    workflow_path: abs("workflow_path"),
    engine_dir: abs("engine_dir"),
    dialect: j.dialect === "legacy" ? "legacy" : j.dialect === "modern" ? "modern" : null,
    force: j.force === true,
    fix: j.fix === true,
    fix_limit_bytes: pos("fix_limit_bytes", 100 * 1024),
    engine_heartbeat_stale_ms: pos("engine_heartbeat_stale_ms", 30000),
    expected_mode: MODES.includes(j.expected_mode) ? j.expected_mode : null,
    retry_node: str("retry_node", 500, true),
    backup_path: abs("backup_path"),
    keep_backups: Math.min(pos("keep_backups", 3), KEEP_BACKUPS_MAX),
    script_path: abs("script_path"),
    script: j.script === null || j.script === undefined ? null : str("script", 1024 * 1024),
    start_wait_ms: Math.min(pos("start_wait_ms", 10000), 60000),
  };
  if (!r.dialect) throw new Error("dialect must be modern or legacy");
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

// ---------- SQLite ----------
function uriPath(p) {
  return "file:" + path.resolve(p).replace(/%/g, "%25").replace(/\?/g, "%3f").replace(/#/g, "%23");
}
/** Read-only open modes that never create or write a file (see the header); plain `mode=ro` last. */
function roModes(p) {
  const wal = statSafe(p + "-wal");
  const shm = statSafe(p + "-shm");
  const modes = [];
  if (wal && shm) modes.push("mode=ro&readonly_shm=1");
  else if (!wal && !statSafe(p + "-journal")) modes.push("mode=ro&immutable=1");
  modes.push("mode=ro");
  return modes;
}
function withRoDb(p, fn) {
  let last;
  for (const mode of roModes(p)) {
    let db;
    try {
      db = new Database(`${uriPath(p)}?${mode}`, SQ.SQLITE_OPEN_READONLY | SQ.SQLITE_OPEN_URI);
      db.exec("PRAGMA busy_timeout = 2000");
      db.exec("BEGIN");
      try {
        return fn(db);
      } finally {
        try {
          db.exec("COMMIT");
        } catch {}
      }
    } catch (e) {
      last = e;
      if (!/^SQLITE_(CANTOPEN|READONLY|BUSY|PROTOCOL|IOERR)/.test((e && e.code) || "")) break;
    } finally {
      if (db) {
        try {
          db.close();
        } catch {}
      }
    }
  }
  throw last;
}
function dbErrorText(e) {
  const code = (e && e.code) || "";
  const msg = errMsg(e);
  if (code.startsWith("SQLITE_BUSY") || /database is locked/.test(msg)) return "locked by another process";
  if (code === "SQLITE_NOTADB" || /not a database/.test(msg)) return "not a database (corrupt or not SQLite)";
  if (code.startsWith("SQLITE_CORRUPT")) return `corrupt: ${msg}`;
  return code ? `${code}: ${msg}` : msg;
}
function colsOf(db, table) {
  return new Set(db.query("SELECT name FROM pragma_table_info(?)").all(table).map((r) => r.name));
}

/** Everything the checks and the reset need, read in one read transaction. */
function readState(db, req) {
  const runs = colsOf(db, "_smithers_runs");
  const nodes = colsOf(db, "_smithers_nodes");
  const att = colsOf(db, "_smithers_attempts");
  const s = { schema: "unknown", run: null, by_state: {}, total: 0, attempts_in_progress: [], nodes_in_progress: [], failed_nodes: [], failed_attempts: [], oversized: null };
  if (runs.size === 0 || nodes.size === 0 || att.size === 0 || !runs.has("status") || !nodes.has("state") || !att.has("state")) return s;
  s.schema = runs.has("heartbeat_at_ms") && runs.has("runtime_owner_id") ? "modern" : "legacy";
  const c = (cols, x) => (cols.has(x) ? `"${x}"` : "NULL");
  const id = req.smithers_run_id;
  s.run = db
    .query(`SELECT status, ${c(runs, "started_at_ms")} AS started_at_ms, ${c(runs, "heartbeat_at_ms")} AS heartbeat_at_ms,
      ${c(runs, "runtime_owner_id")} AS runtime_owner_id, ${c(runs, "workflow_path")} AS workflow_path FROM _smithers_runs WHERE run_id = ?`)
    .get(id);
  if (!s.run) return s;
  for (const r of db.query("SELECT state, count(*) AS n FROM _smithers_nodes WHERE run_id = ? GROUP BY state").all(id)) {
    s.by_state[r.state] = num(r.n) || 0;
    s.total += num(r.n) || 0;
  }
  s.attempts_in_progress = db
    .query("SELECT node_id, iteration, attempt FROM _smithers_attempts WHERE run_id = ? AND state = 'in-progress' ORDER BY node_id, iteration, attempt")
    .all(id);
  s.nodes_in_progress = db.query("SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ? AND state = 'in-progress' ORDER BY node_id, iteration").all(id);
  s.failed_nodes = db.query("SELECT node_id, iteration FROM _smithers_nodes WHERE run_id = ? AND state = 'failed' ORDER BY node_id, iteration").all(id);
  s.failed_attempts = db
    .query(`SELECT a.node_id, a.iteration, a.attempt FROM _smithers_attempts a JOIN _smithers_nodes n
      ON n.run_id = a.run_id AND n.node_id = a.node_id AND n.iteration = a.iteration
      WHERE a.run_id = ? AND a.state = 'failed' AND n.state = 'failed' ORDER BY a.node_id, a.iteration, a.attempt`)
    .all(id);
  if (req.fix) {
    const rt = att.has("response_text") ? "octet_length(response_text)" : "NULL";
    const ej = att.has("error_json") ? "octet_length(error_json)" : "NULL";
    const o = db
      .query(`SELECT coalesce(sum(${rt} > ?), 0) + coalesce(sum(${ej} > ?), 0) AS n, max(${rt}) AS mr, max(${ej}) AS me FROM _smithers_attempts WHERE run_id = ?`)
      .get(req.fix_limit_bytes, req.fix_limit_bytes, id);
    s.oversized = { values: num(o.n) || 0, max_response_text_bytes: num(o.mr), max_error_json_bytes: num(o.me) };
  }
  return s;
}

/** The mode a DB status calls for, or a refusal reason. */
function modeFor(status) {
  if (status === "running") return { mode: "continue-interrupted" };
  if (status === "failed") return { mode: "retry-failed" };
  if (status === "cancelled") return { mode: "continue-cancelled" };
  if (status === "finished") return { refuse: ["RUN_FINISHED", "the run already finished; there is nothing to resume", "start a new run with `fabrik run`"] };
  return { refuse: ["RUN_NOT_RESUMABLE", `the run is ${status}; fabrik resumes only running (interrupted), failed or cancelled runs`, "see `fabrik runs show`"] };
}

/** What the reset will change, computed from the state (the same rules as the header). */
function resetPlan(req, st, mode) {
  const now = Date.now();
  const retryByEngine = req.dialect === "modern" && mode === "retry-failed" && st.failed_nodes.length === 1;
  const p = {
    attempts: st.attempts_in_progress.map((a) => ({ node_id: a.node_id, iteration: num(a.iteration), attempt: num(a.attempt), from: "in-progress", to: "cancelled" })),
    nodes: st.nodes_in_progress.map((n) => ({ node_id: n.node_id, iteration: num(n.iteration), from: "in-progress", to: "pending" })),
    run: null,
    by_engine: null,
    now_ms: now,
  };
  if (req.dialect === "modern" && st.run.status === "running" && (st.run.heartbeat_at_ms !== null || st.run.runtime_owner_id !== null)) {
    p.run = { heartbeat_at_ms: num(st.run.heartbeat_at_ms), runtime_owner_id: cap(st.run.runtime_owner_id, 300), to: null };
  }
  if (mode === "retry-failed") {
    if (retryByEngine) {
      p.by_engine = `smithers retry-task resets ${st.failed_nodes[0].node_id} and its dependents`;
    } else {
      for (const a of st.failed_attempts) p.attempts.push({ node_id: a.node_id, iteration: num(a.iteration), attempt: num(a.attempt), from: "failed", to: "cancelled" });
      for (const n of st.failed_nodes) p.nodes.push({ node_id: n.node_id, iteration: num(n.iteration), from: "failed", to: "pending" });
    }
  }
  return { plan: p, retryNode: retryByEngine ? st.failed_nodes[0].node_id : null };
}

// ---------- the checks ----------
function runChecks(req, out) {
  const reasons = out.reasons;
  const check = (name, ok, detail, refuse) => {
    out.checks.push({ name, ok, detail: cap(detail, 500) });
    if (!ok && refuse) reasons.push({ code: refuse[0], message: cap(refuse[1], 500), hint: cap(refuse[2] || "", 500) || null });
  };
  const C = req.control_dir;
  const cst = statSafe(C);
  check("control-dir", !!cst && cst.isDirectory(), cst ? C : `${C} does not exist`, ["CONTROL_DIR_MISSING", `the run's control dir ${C} does not exist in the VM`, null]);
  const smithers = path.join(req.engine_dir, "node_modules", ".bin", "smithers");
  check("engine-installed", !!statSafe(smithers), smithers, ["ENGINE_MISSING", `the engine is not installed at ${req.engine_dir}`, "reinstall it: a `fabrik run` with the same --engine installs it"]);

  // Processes: pid files, heartbeat.json's pids, and the DB owner (below). --force never overrides these.
  const self = ancestors();
  const hb = (() => {
    try {
      const j = JSON.parse(readSmall(path.join(C, "heartbeat.json")) || "null");
      return j && typeof j === "object" ? j : {};
    } catch {
      return {};
    }
  })();
  const seen = new Map();
  const addPid = (pid, role) => {
    if (!Number.isSafeInteger(pid) || pid <= 0) return;
    const cur = seen.get(pid);
    if (cur) cur.roles.push(role);
    else seen.set(pid, { roles: [role] });
  };
  addPid(readPid(path.join(C, "launcher.pid")), "launcher (launcher.pid)");
  addPid(readPid(path.join(C, "smithers.pid")), "launched child (smithers.pid)");
  addPid(readPid(path.join(C, "engine.pid")), "engine (engine.pid)");
  addPid(num(hb.launcher_pid), "launcher (heartbeat.json)");
  addPid(num(hb.child_pid), "launched child (heartbeat.json)");
  addPid(num(hb.engine_pid), "engine (heartbeat.json)");
  out.pids_checked = [];
  for (const [pid, { roles }] of seen) {
    const info = pidInfo(pid, self);
    out.pids_checked.push({ pid, roles, alive: info.alive, state: info.state, cmdline: info.cmdline });
    const what = roles.join(", ");
    check(
      `process-${pid}`,
      !info.alive,
      info.alive ? `${what}: pid ${pid} is alive${info.state === "Z" ? " (a zombie: still counts)" : ""}${info.cmdline ? ` — ${info.cmdline}` : ""}` : `${what}: pid ${pid} is dead${info.note ? ` (${info.note})` : ""}`,
      [
        "PROCESS_ALIVE",
        `the ${roles[0].replace(/ \(.*\)$/, "")} process (pid ${pid}) is alive in the VM`,
        `wait for it to end or stop it; if pid ${pid} is unrelated (reused after a VM reboot), check \`ps -p ${pid}\` and remove the stale pid file; --force never overrides a living process`,
      ],
    );
  }
  const lock = path.join(C, "launcher.lock");
  if (statSafe(lock)) {
    const r = spawnSync("flock", ["-n", "-E", "75", lock, "true"], { stdio: "ignore", timeout: 5000 });
    if (r.error) check("launcher-lock", false, `cannot test ${lock}: ${errMsg(r.error)}`, ["LOCK_UNTESTABLE", `cannot test ${lock} (is flock installed?)`, null]);
    else check("launcher-lock", r.status === 0, r.status === 0 ? "launcher.lock is free" : "launcher.lock is held: a launcher or engine of this run still lives", [
      "LAUNCHER_LOCK_HELD",
      "launcher.lock is held: a launcher or engine of this run is still alive",
      "wait for it to end (`fabrik run attach`), or stop it first",
    ]);
  } else check("launcher-lock", true, "no launcher.lock (nothing holds it)");

  const wf = statSafe(req.workflow_path);
  check("workflow-file", !!wf && wf.isFile(), wf ? req.workflow_path : `${req.workflow_path} does not exist`, [
    "WORKFLOW_MISSING",
    `the workflow file ${req.workflow_path} is missing in the VM`,
    "restore it at that exact path (the engine checks the workflow path on resume)",
  ]);

  // The DB.
  const dst = statSafe(req.db_path);
  out.db = { path: req.db_path, size_bytes: dst ? dst.size : null, wal_size_bytes: (statSafe(req.db_path + "-wal") || {}).size ?? null };
  if (!dst || !dst.isFile()) {
    check("db", false, `${req.db_path} does not exist`, ["DB_MISSING", `the Smithers DB ${req.db_path} does not exist`, "fabrik cannot resume a run without its DB; restore it from a backup in <control dir>/backups if there is one"]);
    return null;
  }
  let st;
  try {
    st = withRoDb(req.db_path, (db) => readState(db, req));
  } catch (e) {
    check("db", false, `cannot read ${req.db_path}: ${dbErrorText(e)}`, ["DB_UNREADABLE", `cannot read the Smithers DB: ${dbErrorText(e)}`, "restore it from a backup in <control dir>/backups, or inspect it with `fabrik vm shell`"]);
    return null;
  }
  if (st.schema === "unknown") {
    check("db", false, "no _smithers_runs/_smithers_nodes/_smithers_attempts tables", ["DB_UNKNOWN_SCHEMA", "the DB is not a Smithers DB this fabrik knows (missing tables)", null]);
    return null;
  }
  check("db", true, `${req.db_path} readable (${st.schema} schema)`);
  if (st.schema !== req.dialect) {
    check("db-dialect", false, `the DB has the ${st.schema} schema but the run's engine speaks ${req.dialect}`, ["DB_DIALECT_MISMATCH", `the DB schema (${st.schema}) does not match the engine (${req.dialect})`, null]);
  }
  if (!st.run) {
    check("run-in-db", false, `run ${req.smithers_run_id} is not in the DB`, ["RUN_NOT_IN_DB", `run ${req.smithers_run_id} is not in ${req.db_path}`, null]);
    return null;
  }
  check("run-in-db", true, `run ${req.smithers_run_id}: ${st.run.status}`);
  const m = modeFor(st.run.status);
  if (m.refuse) {
    check("run-status", false, `status ${st.run.status}`, m.refuse);
    return null;
  }
  check("run-status", true, `status ${st.run.status}: ${m.mode}`);
  if (req.expected_mode && req.expected_mode !== m.mode) {
    check("run-unchanged", false, `the plan expected ${req.expected_mode}, the DB now says ${m.mode}`, ["RUN_CHANGED", "the run changed since fabrik looked at it", "run the command again"]);
  }
  const owner = ownerPid(st.run.runtime_owner_id);
  if (owner !== null) {
    const info = pidInfo(owner, self);
    check(`owner-${owner}`, !info.alive, `DB owner ${st.run.runtime_owner_id}: pid ${owner} ${info.alive ? `is alive${info.state === "Z" ? " (a zombie: still counts)" : ""}` : "is dead"}`, [
      "OWNER_ALIVE",
      `the engine that owns the run in the DB (pid ${owner}) is alive in the VM`,
      "--force never overrides a living process; wait for it or stop it",
    ]);
  }
  if (req.dialect === "modern" && st.run.status === "running") {
    const last = Math.max(num(st.run.heartbeat_at_ms) || 0, num(st.run.started_at_ms) || 0);
    const age = last > 0 ? Date.now() - last : null;
    const fresh = age !== null && age < req.engine_heartbeat_stale_ms;
    check(
      "engine-heartbeat",
      !fresh || req.force,
      age === null ? "no engine heartbeat recorded" : `engine heartbeat ${Math.round(age / 1000)}s old (stale after ${Math.round(req.engine_heartbeat_stale_ms / 1000)}s)${fresh && req.force ? "; fresh, overridden by --force" : ""}`,
      ["HEARTBEAT_FRESH", `the engine heartbeat is only ${Math.round((age || 0) / 1000)}s old: the engine may still be running`, "wait until it is older than 30 s, or pass --force if you are sure no engine runs (a living process still refuses)"],
    );
  }
  const rp = resetPlan(req, st, m.mode);
  if (m.mode === "retry-failed" && req.dialect === "modern" && (req.retry_node || null) !== rp.retryNode) {
    check("run-unchanged", false, `the plan retries ${req.retry_node ?? "(no single node)"}, the DB now says ${rp.retryNode ?? "(no single node)"}`, ["RUN_CHANGED", "the run's failed tasks changed since fabrik looked at it", "run the command again"]);
  }
  // Room for the backup (and for VACUUM with --fix: up to the DB's size again).
  try {
    const need = ((dst.size || 0) + (out.db.wal_size_bytes || 0)) * (req.fix ? 2 : 1) + 1024 * 1024;
    const sf = fs.statfsSync(C);
    const free = Number(sf.bavail) * Number(sf.bsize);
    check("disk-space", free >= need, `${free} bytes free in ${C}, need about ${need}`, ["DISK_FULL", `not enough disk space for the backup (${free} bytes free, need about ${need})`, "free some space in the VM"]);
  } catch {}
  return { st, mode: m.mode, reset: rp.plan, retryNode: rp.retryNode };
}

// ---------- the steps ----------
function backup(req, db, out) {
  const dir = path.dirname(req.backup_path);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // VACUUM INTO reads through this connection, so it includes what is in the WAL: a consistent copy. It
  // refuses to overwrite an existing file. The path is a bound parameter, never interpolated.
  db.query("VACUUM INTO ?").run(req.backup_path);
  const size = fs.statSync(req.backup_path).size;
  // Verify the copy holds the run before anything is changed.
  const chk = new Database(`${uriPath(req.backup_path)}?mode=ro&immutable=1`, SQ.SQLITE_OPEN_READONLY | SQ.SQLITE_OPEN_URI);
  let n;
  try {
    n = chk.query("SELECT count(*) AS n FROM _smithers_runs WHERE run_id = ?").get(req.smithers_run_id).n;
  } finally {
    chk.close();
  }
  if (num(n) !== 1) throw new Error(`the backup ${req.backup_path} does not hold run ${req.smithers_run_id}`);
  const prefix = `run-${req.host_run_id}-`;
  const all = fs.readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".db")).sort();
  const removed = [];
  for (const f of all.slice(0, Math.max(0, all.length - req.keep_backups))) {
    try {
      fs.rmSync(path.join(dir, f));
      removed.push(path.join(dir, f));
    } catch {}
  }
  out.backup = { path: req.backup_path, size_bytes: size, kept: all.slice(-req.keep_backups).map((f) => path.join(dir, f)), removed };
}

function fileSizes(p) {
  const a = statSafe(p);
  const w = statSafe(p + "-wal");
  return { db_bytes: a ? a.size : 0, wal_bytes: w ? w.size : 0 };
}
/** The last `limit` bytes of a UTF-8 value, starting on a character boundary. */
function tailText(bytes, limit) {
  let b = Buffer.from(bytes);
  if (b.length > limit) b = b.subarray(b.length - limit);
  let i = 0;
  while (i < b.length && i < 4 && (b[i] & 0xc0) === 0x80) i++;
  return b.subarray(i).toString("utf8");
}

/** --fix (guide Issue 2): truncate this run's oversized response_text/error_json values (keep the tail), VACUUM. */
function fix(req, db, out) {
  const L = req.fix_limit_bytes;
  const att = colsOf(db, "_smithers_attempts");
  const before = fileSizes(req.db_path);
  const f = { limit_bytes: L, rows: 0, values: 0, value_bytes_before: 0, value_bytes_after: 0, file_bytes_before: before, file_bytes_after: null };
  const cols = ["response_text", "error_json"].filter((c) => att.has(c));
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const col of cols) {
      const rows = db
        .query(`SELECT node_id, iteration, attempt, octet_length("${col}") AS n FROM _smithers_attempts WHERE run_id = ? AND octet_length("${col}") > ?`)
        .all(req.smithers_run_id, L);
      for (const r of rows) {
        const key = [req.smithers_run_id, r.node_id, r.iteration, r.attempt];
        const tail = db
          .query(`SELECT substr(CAST("${col}" AS BLOB), -?) AS t FROM _smithers_attempts WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?`)
          .get(L, ...key).t;
        const kept = tailText(tail || new Uint8Array(0), L);
        const total = num(r.n) || 0;
        const marker = `[fabrik --fix: truncated ${total - Buffer.byteLength(kept)} bytes]`;
        // error_json stays valid JSON (the engine parses it); response_text is plain text.
        const value = col === "error_json" ? JSON.stringify({ name: "FabrikTruncated", message: `${marker} ${kept}` }) : `${marker}\n${kept}`;
        db.query(`UPDATE _smithers_attempts SET "${col}" = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?`).run(value, ...key);
        f.values++;
        f.value_bytes_before += total;
        f.value_bytes_after += Buffer.byteLength(value);
      }
      f.rows += rows.length;
    }
    db.exec("COMMIT");
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch {}
    throw e;
  }
  db.exec("VACUUM");
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  f.file_bytes_after = fileSizes(req.db_path);
  out.fix = f;
}

/** The state reset, ONE transaction, this run only; re-verifies the status inside the transaction. */
function reset(req, db, expectedStatus, plan, out) {
  const id = req.smithers_run_id;
  const now = plan.now_ms;
  const done = { attempts_cancelled: 0, nodes_pending: 0, run_cleared: 0 };
  db.exec("BEGIN IMMEDIATE");
  try {
    const cur = db.query("SELECT status FROM _smithers_runs WHERE run_id = ?").get(id);
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
    db.exec("COMMIT");
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch {}
    throw e;
  }
  out.reset = { ...plan, applied: true, counts: done };
}


/** Write resume-N.sh (next free N), clear the stale pid/exit files, start it detached, wait for its pids. */
function start(req, out) {
  const C = req.control_dir;
  let p = req.script_path;
  let n = Number(/resume-([0-9]+)\.sh$/.exec(p)[1]);
  for (let i = 0; i < 1000; i++) {
    try {
      fs.writeFileSync(p, req.script, { flag: "wx", mode: 0o755 });
      break;
    } catch (e) {
      if (!e || e.code !== "EEXIST" || i === 999) throw e;
      n++;
      p = path.join(C, `resume-${n}.sh`);
    }
  }
  fs.chmodSync(p, 0o755);
  out.script = { path: p, bytes: Buffer.byteLength(req.script) };
  const previous = {};
  for (const f of ["exit_code", "launcher.pid", "smithers.pid", "engine.pid"]) {
    const t = readSmall(path.join(C, f));
    if (t !== null) previous[f] = cap(t.trim(), 40);
    fs.rmSync(path.join(C, f), { force: true });
  }
  out.previous_files = previous;
  const r = spawnSync("setsid", ["-f", "bash", p], { cwd: C, stdio: "ignore", timeout: 10000 });
  if (r.error) throw new Error(`cannot start ${p}: ${errMsg(r.error)}`);
  if (r.status !== 0) throw new Error(`setsid -f bash ${p} exited ${r.status}`);
  const deadline = Date.now() + req.start_wait_ms;
  for (;;) {
    const lp = readPid(path.join(C, "launcher.pid"));
    const cp = readPid(path.join(C, "smithers.pid"));
    if (lp && cp) {
      out.pids = { launcher_pid: lp, child_pid: cp };
      return;
    }
    const code = readSmall(path.join(C, "exit_code"));
    if (code !== null && code.trim() !== "") {
      let tail = "";
      try {
        tail = fs.readFileSync(path.join(C, "reports", "smithers.log"), "utf8").split("\n").slice(-6).join(" | ");
      } catch {}
      throw new Error(`the resume launcher exited at once with code ${code.trim()}: ${cap(tail, 600)}`);
    }
    if (Date.now() > deadline) throw new Error(`the resume launcher did not record its pids within ${req.start_wait_ms} ms`);
    Bun.sleepSync(50);
  }
}

// ---------- main ----------
function main(raw, argMode) {
  const out = {
    v: V, ok: false, dry_run: argMode === "dry-run", refused: false, stage: "request", reasons: [], checks: [], mode: null, retry_node: null,
    progress: null, reset: null, backup: null, fix: null, script: null, pids: null, pids_checked: [], previous_files: null, db: null,
    oversized: null, error: null, now_ms: Date.now(),
  };
  let req;
  try {
    req = parseRequest(raw, argMode);
  } catch (e) {
    out.error = `bad request: ${errMsg(e)}`;
    return { out, code: 2 };
  }
  out.stage = "check";
  let ctx;
  try {
    ctx = runChecks(req, out);
  } catch (e) {
    out.error = `check failed: ${errMsg(e)}`;
    out.refused = true;
    out.reasons.push({ code: "CHECK_ERROR", message: out.error, hint: null });
    return { out, code: 0 };
  }
  if (ctx) {
    out.mode = ctx.mode;
    out.retry_node = ctx.retryNode;
    out.progress = { finished: ctx.st.by_state.finished || 0, total: ctx.st.total, by_state: ctx.st.by_state };
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
    const db = new Database(req.db_path, SQ.SQLITE_OPEN_READWRITE);
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
    start(req, out);
    out.stage = "done";
    out.ok = true;
  } catch (e) {
    out.error = errMsg(e);
  }
  return { out, code: 0 };
}

const argMode = process.argv.slice(1).find((a) => a === "dry-run" || a === "apply") || "apply";
Bun.stdin.text().then(
  (raw) => {
    let r;
    try {
      r = main(raw, argMode);
    } catch (e) {
      r = { out: { v: V, ok: false, dry_run: argMode === "dry-run", refused: false, stage: "internal", reasons: [], checks: [], error: `internal error: ${errMsg(e)}` }, code: 1 };
    }
    process.stdout.write(JSON.stringify(r.out) + "\n");
    process.exitCode = r.code;
  },
  (e) => {
    process.stderr.write(`fabrik-resume: cannot read stdin: ${errMsg(e)}\n`);
    process.exitCode = 2;
  },
);
