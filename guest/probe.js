// fabrik guest probe (bun). Wire format: src/vm/probe-schema.ts (ProbeRequest on stdin -> one ProbeResponse
// JSON line on stdout, exit 0; problems of a run are data in `errors` / `db.error`).
// Runs as `bun guest/probe.js [--serve]` or `bun -e <this text> [-- --serve]` (FABRIK_PROBE_SERVE=1 also
// serves): so no import statements, no import.meta, no top-level await, no npm packages.
// --serve: one request per stdin line -> one response per stdout line, until stdin closes.
// DBs are opened read-only and never written: with `-wal` and `-shm` present, `readonly_shm=1` (the -shm is
// not even written, so the files a SIGKILL left stay byte-identical); with no `-wal`, `immutable=1` (nothing
// to replay, and no -wal/-shm is created); plain `mode=ro` only as a fallback. Big values (response_text,
// error_json) are measured with octet_length(), which reads the record header, never the value.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { Database, constants: SQ } = require("bun:sqlite");

const V = 1;
const CAP_FILE = 64 * 1024; // heartbeat.json, run.sh, pid files, fabrik-run.json
const LOG_TAIL = 256 * 1024;
const ERR_READ_MAX = 1024 * 1024; // error_json values larger than this are not read
const MAX_ERRORS = 20;
const HB_FIELDS = {
  v: "int", ts_ms: "ms", seq: "int", phase: 40, host_run_id: "int", smithers_run_id: 200, launcher_pid: "int",
  child_pid: "int", engine_pid: "int", engine_version: 100, interval_s: "num", exit_code: "int",
};
const RUN_COLS = ["run_id", "status", "workflow_name", "workflow_path", "created_at_ms", "started_at_ms",
  "finished_at_ms", "heartbeat_at_ms", "runtime_owner_id", "error_json"];
const MODERN_COLS = ["heartbeat_at_ms", "runtime_owner_id"];
const NODE_COLS = ["run_id", "node_id", "iteration", "state", "last_attempt", "updated_at_ms", "label"];
const ATT_COLS = ["run_id", "node_id", "iteration", "attempt", "state", "started_at_ms", "finished_at_ms", "error_json", "response_text"];

// ---------- small helpers ----------
function cap(s, n) {
  if (s === null || s === undefined) return null;
  if (typeof s !== "string") s = s instanceof Uint8Array ? Buffer.from(s).toString("utf8") : String(s);
  return s.length > n ? s.slice(0, n) : s;
}
function ms(x) {
  if (typeof x === "bigint") x = Number(x);
  return typeof x === "number" && Number.isFinite(x) && x >= 0 ? Math.trunc(x) : null;
}
function int(x) {
  if (typeof x === "bigint") x = Number(x);
  return typeof x === "number" && Number.isSafeInteger(x) ? x : null;
}
function addErr(errs, msg) {
  if (errs.length < MAX_ERRORS) errs.push(cap(String(msg), 500));
}
function errMsg(e) {
  return cap(e && e.message ? String(e.message) : String(e), 300);
}
function statSafe(p) {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}
function isFile(p) {
  const s = statSafe(p);
  return !!s && s.isFile();
}
function isDir(p) {
  const s = statSafe(p);
  return !!s && s.isDirectory();
}
/** Read at most `max` bytes of a file: { buf, size } (size = the whole file), or null when absent. */
function readCapped(p, max, fromEnd) {
  let fd;
  try {
    fd = fs.openSync(p, "r");
  } catch (e) {
    if (e && e.code === "ENOENT") return null;
    throw e;
  }
  try {
    // /proc files report size 0: read up to `max` whatever the size says (except from the end).
    const size = fs.fstatSync(fd).size;
    const n = fromEnd ? Math.min(size, max) : Math.min(max, Math.max(size, 4096));
    const buf = Buffer.alloc(n);
    let off = 0;
    const start = fromEnd ? size - n : 0;
    while (off < buf.length) {
      const r = fs.readSync(fd, buf, off, buf.length - off, start + off);
      if (r <= 0) break;
      off += r;
    }
    return { buf: buf.subarray(0, off), size: Math.max(size, off) };
  } finally {
    fs.closeSync(fd);
  }
}

// ---------- processes ----------
/** Liveness of a pid inside this machine: signal 0 (EPERM = alive; a zombie is alive) + /proc state, cmdline. */
function pidFact(pid) {
  pid = int(pid);
  if (pid === null || pid <= 0 || pid > 0x7fffffff) return null;
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
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
      const m = /^\s*(\S+)/.exec(st.slice(st.lastIndexOf(")") + 1));
      if (m) state = m[1].slice(0, 4);
    } catch {}
    try {
      const r = readCapped(`/proc/${pid}/cmdline`, 4096);
      const c = r ? r.buf.toString("utf8").replace(/\0/g, " ").trim() : "";
      cmdline = c ? c.slice(0, 200) : null;
    } catch {}
  }
  return { pid, alive, state, cmdline };
}
/** A pid file: the pid, null when absent, "garbage" when not a positive integer. */
function readPid(p) {
  const r = readCapped(p, 4096);
  if (!r) return null;
  const t = r.buf.toString("utf8").trim();
  return /^[0-9]{1,10}$/.test(t) && Number(t) > 0 ? Number(t) : "garbage";
}
function ownerPid(owner) {
  const m = typeof owner === "string" ? /^pid:([0-9]{1,10}):/.exec(owner) : null;
  return m ? Number(m[1]) : null;
}

// ---------- control dir ----------
function parseHeartbeat(text) {
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    return { hb: null, error: "not JSON" };
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) return { hb: null, error: "not a JSON object" };
  const hb = {};
  for (const [k, t] of Object.entries(HB_FIELDS)) {
    const x = j[k];
    if (t === "int") hb[k] = int(x);
    else if (t === "ms") hb[k] = int(x) !== null && x >= 0 ? x : null;
    else if (t === "num") hb[k] = typeof x === "number" && Number.isFinite(x) ? x : null;
    else hb[k] = typeof x === "string" ? cap(x, t) : null;
  }
  return { hb, error: null };
}

function runShEngine(text) {
  let m = /^[ \t]*(?:export[ \t]+)?ENGINE_VERSION=(?:'([^'\n]*)'|"([^"\n]*)"|([^\s;#]+))/m.exec(text);
  if (m && (m[1] || m[2] || m[3])) return cap(m[1] || m[2] || m[3], 200);
  m = /smithers-orchestrator@([^\s'"`;|&)]+)/.exec(text);
  if (m) return cap(m[1], 200);
  m = /github:[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+#[A-Za-z0-9_./-]+/.exec(text);
  return m ? cap(m[0], 200) : null;
}

function controlFacts(dir, errs) {
  const f = {
    exists: isDir(dir), heartbeat: null, heartbeat_error: null, heartbeat_mtime_ms: null, launcher: null,
    child: null, engine: null, exit_code: null, exit_code_garbage: false, log_size_bytes: null, log_mtime_ms: null,
    log_blob_too_big: false, run_sh_engine: null,
  };
  if (!f.exists) {
    f.heartbeat_error = "control dir missing";
    return f;
  }
  const step = (what, fn) => {
    try {
      fn();
    } catch (e) {
      addErr(errs, `${what}: ${errMsg(e)}`);
    }
  };
  step("heartbeat.json", () => {
    const p = path.join(dir, "heartbeat.json");
    const st = statSafe(p);
    if (!st) {
      f.heartbeat_error = "missing";
      return;
    }
    f.heartbeat_mtime_ms = ms(st.mtimeMs);
    if (!st.isFile()) f.heartbeat_error = "not a file";
    else if (st.size > CAP_FILE) f.heartbeat_error = `too large (${st.size} bytes)`;
    else {
      const r = readCapped(p, CAP_FILE);
      const { hb, error } = parseHeartbeat(r ? r.buf.toString("utf8") : "");
      f.heartbeat = hb;
      f.heartbeat_error = error;
    }
  });
  const hb = f.heartbeat || {};
  const pidOf = (file, hbField, key) =>
    step(file, () => {
      let pid = readPid(path.join(dir, file));
      if (pid === "garbage") {
        addErr(errs, `${file}: not a pid`);
        pid = null;
      }
      if (pid === null) pid = hb[hbField];
      f[key] = pidFact(pid);
    });
  pidOf("launcher.pid", "launcher_pid", "launcher");
  pidOf("smithers.pid", "child_pid", "child");
  pidOf("engine.pid", "engine_pid", "engine");
  step("exit_code", () => {
    const r = readCapped(path.join(dir, "exit_code"), 4096);
    if (!r) return;
    const t = r.buf.toString("utf8").trim();
    if (/^-?[0-9]{1,9}$/.test(t)) f.exit_code = Number(t);
    else f.exit_code_garbage = true;
  });
  step("reports/smithers.log", () => {
    const p = path.join(dir, "reports", "smithers.log");
    const st = statSafe(p);
    if (!st || !st.isFile()) return;
    f.log_size_bytes = st.size;
    f.log_mtime_ms = ms(st.mtimeMs);
    const r = readCapped(p, LOG_TAIL, true);
    f.log_blob_too_big = !!r && r.buf.includes("string or blob too big");
  });
  step("run.sh", () => {
    const r = readCapped(path.join(dir, "run.sh"), CAP_FILE);
    if (r) f.run_sh_engine = runShEngine(r.buf.toString("utf8"));
  });
  return f;
}

// ---------- DB location ----------
/** DB files of a control dir, best first: `.smithers/*.db` (newest first), `smithers.db`, `workflow/smithers.db`. */
function dbCandidates(dir) {
  const out = [];
  const sdir = path.join(dir, ".smithers");
  let names = [];
  try {
    names = fs.readdirSync(sdir);
  } catch {}
  const found = [];
  for (const n of names) {
    if (!n.endsWith(".db")) continue;
    const st = statSafe(path.join(sdir, n));
    if (st && st.isFile()) found.push({ p: path.join(sdir, n), m: st.mtimeMs });
  }
  found.sort((a, b) => b.m - a.m || (a.p < b.p ? -1 : 1));
  for (const x of found) out.push(x.p);
  for (const rel of ["smithers.db", "workflow/smithers.db"]) if (isFile(path.join(dir, rel))) out.push(path.join(dir, rel));
  return out;
}

// ---------- SQLite ----------
function uriPath(p) {
  return "file:" + path.resolve(p).replace(/%/g, "%25").replace(/\?/g, "%3f").replace(/#/g, "%23");
}
/** Open modes to try, least intrusive first (see the header). */
function openModes(p) {
  const wal = statSafe(p + "-wal");
  const shm = statSafe(p + "-shm");
  const modes = [];
  if (wal && shm) modes.push("mode=ro&readonly_shm=1");
  else if (!wal && !statSafe(p + "-journal")) modes.push("mode=ro&immutable=1");
  modes.push("mode=ro");
  return modes;
}
function dbErrorText(e) {
  const code = (e && e.code) || "";
  const msg = errMsg(e);
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || /database is locked/.test(msg)) return "locked";
  if (code === "SQLITE_NOTADB") return "not a database";
  if (code.startsWith("SQLITE_CORRUPT")) return `corrupt: ${msg}`;
  return code ? `${code}: ${msg}` : msg;
}
/** Run fn(db) inside one read transaction on a read-only connection; retries with the next open mode on failure. */
function withDb(p, fn) {
  let last;
  for (const mode of openModes(p)) {
    let db;
    try {
      db = new Database(`${uriPath(p)}?${mode}`, SQ.SQLITE_OPEN_READONLY | SQ.SQLITE_OPEN_URI);
      db.exec("PRAGMA busy_timeout = 1000");
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
      // Only open/lock trouble is worth another mode; anything else (corrupt, not a DB, a bug) is final.
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
function colsOf(db, table) {
  return new Set(db.query("SELECT name FROM pragma_table_info(?)").all(table).map((r) => r.name));
}
/** `alias.col` when the column exists, else NULL (the schema varies between engine versions). */
function colExpr(cols, alias, c) {
  return cols.has(c) ? `${alias}."${c}"` : "NULL";
}

/** error_json text -> its `.message` when JSON with a message, else the raw text; truncated. */
function errorMessage(text, bytes, chars) {
  if (text === null || text === undefined) {
    return bytes !== null && bytes !== undefined ? cap(`(error_json of ${bytes} bytes not read)`, chars) : null;
  }
  if (typeof text !== "string") text = cap(text, ERR_READ_MAX);
  try {
    const j = JSON.parse(text);
    if (j && typeof j === "object" && typeof j.message === "string") return cap(j.message, chars);
    if (typeof j === "string") return cap(j, chars);
  } catch {}
  return cap(text, chars);
}

function latestAttemptJoin(S) {
  if (!S.attOk) return { join: "", a: (c) => "NULL" };
  return {
    join: `LEFT JOIN _smithers_attempts a ON a.run_id = n.run_id AND a.node_id = n.node_id AND a.iteration = n.iteration
      AND a.attempt = (SELECT max(x.attempt) FROM _smithers_attempts x WHERE x.run_id = n.run_id AND x.node_id = n.node_id AND x.iteration = n.iteration)`,
    a: (c) => colExpr(S.att, "a", c),
  };
}
function nodeSql(S, where, order, extra) {
  const { join, a } = latestAttemptJoin(S);
  const n = (c) => colExpr(S.nodes, "n", c);
  const err = a("error_json");
  return `SELECT n.node_id AS node_id, ${n("iteration")} AS iteration, n.state AS state, ${n("last_attempt")} AS last_attempt,
      ${n("updated_at_ms")} AS updated_at_ms, ${n("label")} AS label, ${a("attempt")} AS a_attempt,
      ${a("started_at_ms")} AS a_started, ${a("finished_at_ms")} AS a_finished,
      CASE WHEN n.state = 'failed' AND octet_length(${err}) <= ${ERR_READ_MAX} THEN ${err} END AS a_err,
      CASE WHEN n.state = 'failed' THEN octet_length(${err}) END AS a_err_bytes ${extra || ""}
    FROM _smithers_nodes n ${join} WHERE n.run_id = ? ${where} ORDER BY ${order}`;
}
/** A node row joined with its latest attempt (max attempt number: the attempts table is the truth). */
function nodeFact(r, chars) {
  const la = int(r.a_attempt);
  return {
    node_id: cap(r.node_id, 500) || "",
    iteration: int(r.iteration) || 0,
    state: cap(r.state, 60) || "",
    last_attempt: la !== null ? la : int(r.last_attempt),
    updated_at_ms: ms(r.updated_at_ms),
    label: cap(r.label, 500),
    started_at_ms: ms(r.a_started),
    error: r.state === "failed" ? errorMessage(r.a_err, r.a_err_bytes, chars) : null,
  };
}

function emptyDbFacts(p) {
  return {
    path: cap(p, 4096), exists: false, size_bytes: null, wal_size_bytes: null, schema: "unknown", missing_columns: [],
    error: null, run: null, runs_in_db: null, by_state: Object.create(null), total_nodes: 0, in_progress: [], last_failed: null,
    max_response_text_bytes: null, max_error_json_bytes: null, oversized_values: null, nodes: null, nodes_truncated: false,
  };
}

function dbFacts(p, runId, req, errs) {
  const d = emptyDbFacts(p);
  const st = statSafe(p);
  if (!st) return d;
  d.exists = true;
  if (!st.isFile()) {
    d.error = "not a regular file";
    return d;
  }
  d.size_bytes = st.size;
  const wst = statSafe(p + "-wal");
  d.wal_size_bytes = wst ? wst.size : null;
  try {
    withDb(p, (db) => readDb(db, d, runId, req, errs));
  } catch (e) {
    d.error = cap(dbErrorText(e), 500);
  }
  return d;
}

function readDb(db, d, runId, req, errs) {
  const S = { runs: colsOf(db, "_smithers_runs"), nodes: colsOf(db, "_smithers_nodes"), att: colsOf(db, "_smithers_attempts") };
  if (S.runs.size === 0) {
    d.schema = "unknown";
    addErr(errs, "no _smithers_runs table in the DB");
    return;
  }
  const missing = RUN_COLS.filter((c) => !S.runs.has(c));
  if (S.nodes.size === 0) missing.push("_smithers_nodes");
  else for (const c of NODE_COLS) if (!S.nodes.has(c)) missing.push(`_smithers_nodes.${c}`);
  if (S.att.size === 0) missing.push("_smithers_attempts");
  else for (const c of ATT_COLS) if (!S.att.has(c)) missing.push(`_smithers_attempts.${c}`);
  d.missing_columns = missing.slice(0, 50).map((c) => cap(c, 100));
  d.schema = MODERN_COLS.some((c) => S.runs.has(c)) ? "modern" : "legacy";
  S.attOk = ["run_id", "node_id", "iteration", "attempt"].every((c) => S.att.has(c)) && S.nodes.has("iteration");
  const nodesOk = ["run_id", "node_id", "state"].every((c) => S.nodes.has(c));

  d.runs_in_db = int(db.query("SELECT count(*) AS c FROM _smithers_runs").get().c);
  const r = (c) => colExpr(S.runs, "r", c);
  const ej = r("error_json");
  const sel = `SELECT ${RUN_COLS.filter((c) => c !== "error_json").map((c) => `${r(c)} AS "${c}"`).join(", ")},
    CASE WHEN octet_length(${ej}) <= ${ERR_READ_MAX} THEN ${ej} END AS error_json, octet_length(${ej}) AS error_json_bytes
    FROM _smithers_runs r`;
  const row =
    runId !== null
      ? db.query(`${sel} WHERE r.run_id = ?`).get(runId)
      : db.query(`${sel} ORDER BY coalesce(${r("started_at_ms")}, ${r("created_at_ms")}) DESC, r.run_id DESC LIMIT 1`).get();
  if (!row) {
    addErr(errs, runId !== null ? `run ${JSON.stringify(runId).slice(0, 220)} not found in the DB` : "no runs in the DB");
    return;
  }
  const id = row.run_id;
  const owner = cap(row.runtime_owner_id, 300);
  d.run = {
    run_id: cap(id, 200) || "", status: cap(row.status, 60) || "", workflow_name: cap(row.workflow_name, 300),
    workflow_path: cap(row.workflow_path, 4096), created_at_ms: ms(row.created_at_ms), started_at_ms: ms(row.started_at_ms),
    finished_at_ms: ms(row.finished_at_ms), heartbeat_at_ms: ms(row.heartbeat_at_ms), runtime_owner_id: owner,
    owner: pidFact(ownerPid(owner)), error: errorMessage(row.error_json, row.error_json_bytes, req.error_chars),
  };
  if (!nodesOk) return;

  let total = 0;
  for (const x of db.query("SELECT state, count(*) AS c FROM _smithers_nodes WHERE run_id = ? GROUP BY state").all(id)) {
    const k = cap(x.state === null ? "null" : x.state, 60);
    d.by_state[k] = (d.by_state[k] || 0) + x.c;
    total += x.c;
  }
  d.total_nodes = total;
  const a = S.attOk ? "a" : null;
  const startExpr = a && S.att.has("started_at_ms") ? "a.started_at_ms" : "NULL";
  const finExpr = a && S.att.has("finished_at_ms") ? "a.finished_at_ms" : "NULL";
  const upd = colExpr(S.nodes, "n", "updated_at_ms");
  d.in_progress = db
    .query(nodeSql(S, "AND n.state = 'in-progress'", `coalesce(${startExpr}, ${upd}) DESC, n.node_id LIMIT 20`))
    .all(id)
    .map((x) => nodeFact(x, req.error_chars));
  const lf = db.query(nodeSql(S, "AND n.state = 'failed'", `coalesce(${finExpr}, ${upd}) DESC, n.node_id LIMIT 1`)).get(id);
  d.last_failed = lf ? nodeFact(lf, req.error_chars) : null;

  if (S.att.size > 0 && S.att.has("run_id")) {
    const rt = S.att.has("response_text") ? "response_text" : "NULL";
    const ae = S.att.has("error_json") ? "error_json" : "NULL";
    const w = req.row_size_warn_bytes;
    const s = db
      .query(`SELECT max(octet_length(${rt})) AS mr, max(octet_length(${ae})) AS me,
        coalesce(sum(octet_length(${rt}) > ?), 0) + coalesce(sum(octet_length(${ae}) > ?), 0) AS over
        FROM _smithers_attempts WHERE run_id = ?`)
      .get(w, w, id);
    const runErr = int(row.error_json_bytes);
    d.max_response_text_bytes = s.mr === null ? 0 : ms(s.mr);
    d.max_error_json_bytes = Math.max(ms(s.me) || 0, runErr || 0);
    d.oversized_values = (ms(s.over) || 0) + (runErr !== null && runErr > w ? 1 : 0);
  }

  if (req.nodes) {
    const first = S.attOk && S.att.has("started_at_ms")
      ? ", (SELECT min(y.started_at_ms) FROM _smithers_attempts y WHERE y.run_id = n.run_id AND y.node_id = n.node_id AND y.iteration = n.iteration) AS first_start"
      : ", NULL AS first_start";
    const it = colExpr(S.nodes, "n", "iteration");
    const rows = db
      .query(nodeSql(S, "", `(n.state = 'pending'), (first_start IS NULL), first_start, ${upd}, n.node_id, ${it} LIMIT ?`, first))
      .all(id, req.max_nodes + 1);
    d.nodes_truncated = rows.length > req.max_nodes;
    d.nodes = rows.slice(0, req.max_nodes).map((x) => nodeFact(x, req.error_chars));
  }
}

// ---------- one run ----------
function probeRun(rr, req) {
  const errs = [];
  const key = cap(typeof rr.key === "string" ? rr.key : String(rr.key), 200);
  const cd = typeof rr.control_dir === "string" && rr.control_dir ? rr.control_dir : null;
  const dbp = typeof rr.db_path === "string" && rr.db_path ? rr.db_path : null;
  const runId = typeof rr.smithers_run_id === "string" ? rr.smithers_run_id : null;
  let control = null;
  let db = null;
  try {
    if (cd) control = controlFacts(cd, errs);
    let p = dbp;
    if (cd && (!p || !statSafe(p))) {
      const c = dbCandidates(cd);
      if (c.length) {
        if (p) addErr(errs, `db_path ${p.slice(0, 300)} is missing; found ${c[0].slice(0, 150)}`);
        p = c[0];
      } else if (!p) {
        // Nothing to open: report the pattern that was searched, as a DB that does not exist.
        db = emptyDbFacts(path.join(cd, ".smithers", "*.db"));
        addErr(errs, "no DB found in the control dir (.smithers/*.db, smithers.db, workflow/smithers.db)");
      }
    }
    if (p) db = dbFacts(p, runId, req, errs);
    else if (!cd) addErr(errs, "neither control_dir nor db_path given");
  } catch (e) {
    addErr(errs, `probe: ${errMsg(e)}`);
  }
  return { key, control, db, errors: errs };
}

// ---------- discovery (fabrik runs import) ----------
function readMeta(dir) {
  const r = readCapped(path.join(dir, "fabrik-run.json"), CAP_FILE);
  if (!r || r.size > CAP_FILE) return null;
  let j;
  try {
    j = JSON.parse(r.buf.toString("utf8"));
  } catch {
    return null;
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) return null;
  const m = {};
  if (int(j.host_run_id) !== null) m.host_run_id = j.host_run_id;
  for (const [k, n] of [["smithers_run_id", 200], ["engine_version", 100], ["db_path", 4096], ["workflow", 500]]) {
    if (typeof j[k] === "string") m[k] = cap(j[k], n);
  }
  return m;
}
function discover(roots, req) {
  const out = [];
  for (const root of roots) {
    let names;
    try {
      names = fs.readdirSync(root).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      if (out.length >= 1000) return out;
      const dir = path.join(root, name);
      if (!isDir(dir)) continue;
      if (!isFile(path.join(dir, "run.sh")) && !isDir(path.join(dir, ".smithers")) && !isDir(path.join(dir, "reports"))) continue;
      const item = { control_dir: cap(dir, 4096), meta: null, db_paths: [], run_ids: [], workflow_path: null };
      try {
        item.meta = readMeta(dir);
        const dbs = dbCandidates(dir);
        const mp = item.meta && item.meta.db_path;
        if (mp && !dbs.includes(mp) && isFile(mp)) dbs.unshift(mp);
        item.db_paths = dbs.slice(0, 20).map((p) => cap(p, 4096));
        if (dbs.length) {
          withDb(dbs[0], (db) => {
            const c = colsOf(db, "_smithers_runs");
            if (!c.has("run_id")) return;
            const r = (x) => colExpr(c, "r", x);
            const rows = db
              .query(`SELECT r.run_id AS id, ${r("workflow_path")} AS wf FROM _smithers_runs r
                ORDER BY coalesce(${r("started_at_ms")}, ${r("created_at_ms")}) DESC, r.run_id DESC LIMIT 100`)
              .all();
            item.run_ids = rows.map((x) => cap(x.id, 200) || "");
            if (rows.length && rows[0].wf) item.workflow_path = cap(rows[0].wf, 4096);
          });
        }
      } catch {}
      if (!item.workflow_path) {
        try {
          const wf = fs.readdirSync(path.join(dir, "workflow")).filter((n) => /\.(tsx|ts|jsx|js|mjs)$/.test(n)).sort()[0];
          if (wf) item.workflow_path = cap(path.join(dir, "workflow", wf), 4096);
        } catch {}
      }
      out.push(item);
    }
  }
  return out;
}

// ---------- request / response ----------
let sqliteVersion = null;
function normalise(raw) {
  const j = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  if (j.v !== V) throw new Error(`unsupported probe version ${JSON.stringify(j.v)}`);
  const posInt = (x, d, max) => (int(x) !== null && x > 0 ? Math.min(x, max) : d);
  return {
    runs: Array.isArray(j.runs) ? j.runs.slice(0, 1000).filter((r) => r && typeof r === "object") : [],
    nodes: j.nodes === true,
    max_nodes: posInt(j.max_nodes, 500, 5000),
    row_size_warn_bytes: posInt(j.row_size_warn_bytes, 100 * 1024, Number.MAX_SAFE_INTEGER),
    discover_roots: Array.isArray(j.discover_roots) ? j.discover_roots.filter((r) => typeof r === "string").slice(0, 20) : [],
    error_chars: posInt(j.error_chars, 500, 4000),
  };
}
function handle(raw) {
  const req = normalise(raw);
  if (sqliteVersion === null) {
    const m = new Database(":memory:");
    sqliteVersion = cap(m.query("SELECT sqlite_version() AS v").get().v, 40);
    m.close();
  }
  const runs = req.runs.map((rr) => probeRun(rr, req));
  const discovered = discover(req.discover_roots, req);
  return { v: V, tool: "bun", tool_version: cap(Bun.version, 100), sqlite_version: sqliteVersion, now_ms: Date.now(), runs, discovered };
}

function main() {
  const serve = process.argv.slice(1).includes("--serve") || process.env.FABRIK_PROBE_SERVE === "1";
  if (!serve) {
    Bun.stdin.text().then(
      (raw) => {
        let out;
        try {
          out = JSON.stringify(handle(raw));
        } catch (e) {
          process.stderr.write(`fabrik-probe: bad request: ${errMsg(e)}\n`);
          process.exitCode = 2;
          return;
        }
        process.stdout.write(out + "\n");
      },
      (e) => {
        process.stderr.write(`fabrik-probe: cannot read stdin: ${errMsg(e)}\n`);
        process.exitCode = 2;
      },
    );
    return;
  }
  const rl = require("node:readline").createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    let out;
    try {
      out = JSON.stringify(handle(line));
    } catch (e) {
      out = JSON.stringify({ v: V, error: `bad request: ${errMsg(e)}` });
    }
    process.stdout.write(out + "\n");
  });
}
main();
