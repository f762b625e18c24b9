/**
 * fabrik's guest probe (runs in the VM with bun; bundled into `dist/guest/probe.js` by scripts/build-guest.mjs).
 * Wire format: src/vm/probe-schema.ts — a ProbeRequest on stdin → one ProbeResponse JSON line on stdout, exit 0;
 * problems of one run are data (`errors`, `db.error`). A request it cannot read: exit 2, message on stderr.
 * `--serve` (or FABRIK_PROBE_SERVE=1): one request per stdin line → one response per stdout line, until stdin
 * closes (the SSH transport's long-lived channel); a bad request line answers `{"v":1,"error":"bad request: …"}`.
 *
 * DBs are opened read-only and never written (lib/db.ts). Big values (response_text, error_json) are measured
 * with octet_length(), which reads the record header, never the value (smithers-engine.md, "Reading a big DB").
 */
import fs from "node:fs";
import path from "node:path";
import type { Database } from "bun:sqlite";
import type { ControlFacts, DbFacts, DiscoveredRun, EventFact, NodeFact, ProbeResponse, ProbeRunResult } from "../probe-schema.js";
import { readEvents, type EventQuery } from "./lib/events.js";
import { columnOrNull, columnsOf, dbErrorText, sqliteVersion, withReadOnlyDb } from "./lib/db.js";
import { isDir, isFile, lstatSafe, readCapped, statSafe } from "./lib/files.js";
import { blobTooBigInCurrentLaunch } from "./lib/log.js";
import { readStdin, runtimeVersion, writeJsonLine } from "./lib/io.js";
import { ownerPid, pidFact, readPidFile, readPidsFile, recordedIdentity, type PidsFile } from "./lib/proc.js";
import { cap, errorJsonMessage, errorText, int, ms } from "./lib/text.js";
import { healthFacts, healthRequest, type HealthReq } from "./lib/health.js";

const V = 1;
/** heartbeat.json, run.sh, pid files, fabrik-run.json: bytes read at most. */
const CAP_FILE = 64 * 1024;
/** Bytes of the log's tail searched for "string or blob too big". */
const LOG_TAIL = 256 * 1024;
/** error_json values larger than this (bytes) are not read, only measured. */
const ERR_READ_MAX = 1024 * 1024;
const MAX_ERRORS = 20;
const DB_BUSY_TIMEOUT_MS = 1000;

type HbKind = "int" | "ms" | "num" | number;
const HB_FIELDS: Record<string, HbKind> = {
  v: "int", ts_ms: "ms", seq: "int", phase: 40, host_run_id: "int", smithers_run_id: 200, launcher_pid: "int",
  child_pid: "int", engine_pid: "int", engine_version: 100, interval_s: "num", exit_code: "int", launch_id: 100,
};
const RUN_COLS = ["run_id", "status", "workflow_name", "workflow_path", "created_at_ms", "started_at_ms", "finished_at_ms", "heartbeat_at_ms", "runtime_owner_id", "error_json"];
const MODERN_COLS = ["heartbeat_at_ms", "runtime_owner_id"];
const NODE_COLS = ["run_id", "node_id", "iteration", "state", "last_attempt", "updated_at_ms", "label"];
const ATT_COLS = ["run_id", "node_id", "iteration", "attempt", "state", "started_at_ms", "finished_at_ms", "error_json", "response_text"];

/** The request with defaults filled and caps applied (the host validated it with zod already). */
interface Req {
  runs: Record<string, unknown>[];
  nodes: boolean;
  max_nodes: number;
  row_size_warn_bytes: number;
  discover_roots: string[];
  error_chars: number;
  /** The VM's health facts are wanted too (lib/health.ts). */
  health: HealthReq | null;
}
type Row = Record<string, unknown>;

function addErr(errs: string[], msg: string): void {
  if (errs.length < MAX_ERRORS) errs.push(cap(msg, 500) ?? "");
}

// ---------- control dir ----------
function parseHeartbeat(text: string): { hb: ControlFacts["heartbeat"]; error: string | null } {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return { hb: null, error: "not JSON" };
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) return { hb: null, error: "not a JSON object" };
  const src = j as Row;
  const hb: Row = {};
  for (const [k, t] of Object.entries(HB_FIELDS)) {
    const x = src[k];
    if (t === "int") hb[k] = int(x);
    else if (t === "ms") hb[k] = int(x) !== null && (x as number) >= 0 ? x : null;
    else if (t === "num") hb[k] = typeof x === "number" && Number.isFinite(x) ? x : null;
    else hb[k] = typeof x === "string" ? cap(x, t) : null;
  }
  return { hb: hb as NonNullable<ControlFacts["heartbeat"]>, error: null };
}

/** The engine version run.sh pins: `ENGINE_VERSION=…`, `smithers-orchestrator@…`, or a `github:o/r#ref`. */
function runShEngine(text: string): string | null {
  let m = /^[ \t]*(?:export[ \t]+)?ENGINE_VERSION=(?:'([^'\n]*)'|"([^"\n]*)"|([^\s;#]+))/m.exec(text);
  if (m && (m[1] || m[2] || m[3])) return cap(m[1] || m[2] || m[3], 200);
  m = /smithers-orchestrator@([^\s'"`;|&)]+)/.exec(text);
  if (m) return cap(m[1], 200);
  m = /github:[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+#[A-Za-z0-9_./-]+/.exec(text);
  return m ? cap(m[0], 200) : null;
}

/** The launcher script of the newest launch: the highest-numbered `resume-N.sh`, else `run.sh`. */
function currentLauncherScript(dir: string): string {
  let best = 0;
  try {
    for (const n of fs.readdirSync(dir)) {
      const m = /^resume-([0-9]{1,6})\.sh$/.exec(n);
      if (m && Number(m[1]) > best) best = Number(m[1]);
    }
  } catch {
    /* unreadable dir: run.sh */
  }
  return path.join(dir, best > 0 ? `resume-${best}.sh` : "run.sh");
}

function controlFacts(dir: string, errs: string[], pids: PidsFile | null): ControlFacts {
  const f: ControlFacts = {
    exists: isDir(dir), heartbeat: null, heartbeat_error: null, heartbeat_mtime_ms: null, launcher: null,
    child: null, engine: null, exit_code: null, exit_code_garbage: false, log_size_bytes: null, log_mtime_ms: null,
    log_blob_too_big: false, run_sh_engine: null,
  };
  if (!f.exists) {
    f.heartbeat_error = "control dir missing";
    return f;
  }
  const step = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      addErr(errs, `${what}: ${errorText(e)}`);
    }
  };
  step("heartbeat.json", () => {
    const p = path.join(dir, "heartbeat.json");
    const st = lstatSafe(p);
    if (!st) {
      f.heartbeat_error = "missing";
      return;
    }
    f.heartbeat_mtime_ms = ms(st.mtimeMs);
    if (!st.isFile()) f.heartbeat_error = st.isSymbolicLink() ? "a symbolic link (not followed)" : st.isFIFO() ? "a FIFO (not read)" : "not a file";
    else if (st.size > CAP_FILE) f.heartbeat_error = `too large (${st.size} bytes)`;
    else {
      const r = readCapped(p, CAP_FILE);
      const { hb, error } = parseHeartbeat(r ? r.buf.toString("utf8") : "");
      f.heartbeat = hb;
      f.heartbeat_error = error;
    }
  });
  const hb: Row = f.heartbeat ?? {};
  const pidOf = (file: string, hbField: string, key: "launcher" | "child" | "engine") =>
    step(file, () => {
      let pid: unknown = readPidFile(path.join(dir, file));
      if (pid === "garbage") {
        addErr(errs, `${file}: not a pid`);
        pid = null;
      }
      if (pid === null) pid = hb[hbField];
      const fact = pidFact(pid, undefined, recordedIdentity(pids, int(pid)));
      f[key] = fact ? { pid: fact.pid, alive: fact.alive, state: fact.state, cmdline: fact.cmdline, identity: fact.identity } : null;
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
    const st = lstatSafe(p); // a symbolic link is not the run's log: not measured, not read
    if (!st || !st.isFile()) return;
    f.log_size_bytes = st.size;
    f.log_mtime_ms = ms(st.mtimeMs);
    const r = readCapped(p, LOG_TAIL, true);
    f.log_blob_too_big = !!r && blobTooBigInCurrentLaunch(r.buf);
  });
  step("run.sh", () => {
    const r = readCapped(currentLauncherScript(dir), CAP_FILE);
    if (r) f.run_sh_engine = runShEngine(r.buf.toString("utf8"));
  });
  return f;
}

// ---------- DB location ----------
/** DB files of a control dir, best first: `.smithers/*.db` (newest first), `smithers.db`, `workflow/smithers.db`. */
function dbCandidates(dir: string): string[] {
  const sdir = path.join(dir, ".smithers");
  let names: string[] = [];
  try {
    names = fs.readdirSync(sdir);
  } catch {
    /* no .smithers */
  }
  const found: { p: string; m: number }[] = [];
  for (const n of names) {
    if (!n.endsWith(".db")) continue;
    const st = statSafe(path.join(sdir, n));
    if (st && st.isFile()) found.push({ p: path.join(sdir, n), m: st.mtimeMs });
  }
  found.sort((a, b) => b.m - a.m || (a.p < b.p ? -1 : 1));
  const out = found.map((x) => x.p);
  for (const rel of ["smithers.db", "workflow/smithers.db"]) if (isFile(path.join(dir, rel))) out.push(path.join(dir, rel));
  return out;
}

// ---------- SQLite ----------
interface Schema {
  runs: Set<string>;
  nodes: Set<string>;
  att: Set<string>;
  attOk: boolean;
}

function latestAttemptJoin(S: Schema): { join: string; a: (c: string) => string } {
  if (!S.attOk) return { join: "", a: () => "NULL" };
  return {
    join: `LEFT JOIN _smithers_attempts a ON a.run_id = n.run_id AND a.node_id = n.node_id AND a.iteration = n.iteration
      AND a.attempt = (SELECT max(x.attempt) FROM _smithers_attempts x WHERE x.run_id = n.run_id AND x.node_id = n.node_id AND x.iteration = n.iteration)`,
    a: (c) => columnOrNull(S.att, "a", c),
  };
}
function nodeSql(S: Schema, where: string, order: string, extra = ""): string {
  const { join, a } = latestAttemptJoin(S);
  const n = (c: string) => columnOrNull(S.nodes, "n", c);
  const err = a("error_json");
  return `SELECT n.node_id AS node_id, ${n("iteration")} AS iteration, n.state AS state, ${n("last_attempt")} AS last_attempt,
      ${n("updated_at_ms")} AS updated_at_ms, ${n("label")} AS label, ${a("attempt")} AS a_attempt,
      ${a("started_at_ms")} AS a_started, ${a("finished_at_ms")} AS a_finished,
      CASE WHEN n.state = 'failed' AND octet_length(${err}) <= ${ERR_READ_MAX} THEN ${err} END AS a_err,
      CASE WHEN n.state = 'failed' THEN octet_length(${err}) END AS a_err_bytes ${extra}
    FROM _smithers_nodes n ${join} WHERE n.run_id = ? ${where} ORDER BY ${order}`;
}
/** A node row joined with its latest attempt (max attempt number: the attempts table is the truth). */
function nodeFact(r: Row, chars: number): NodeFact {
  const la = int(r.a_attempt);
  return {
    node_id: cap(r.node_id, 500) ?? "",
    iteration: int(r.iteration) ?? 0,
    state: cap(r.state, 60) ?? "",
    last_attempt: la !== null ? la : int(r.last_attempt),
    updated_at_ms: ms(r.updated_at_ms),
    label: cap(r.label, 500),
    started_at_ms: ms(r.a_started),
    error: r.state === "failed" ? errorJsonMessage(r.a_err, r.a_err_bytes, chars) : null,
  };
}

function emptyDbFacts(p: string): DbFacts {
  return {
    path: cap(p, 4096) ?? "", exists: false, size_bytes: null, wal_size_bytes: null, schema: "unknown", missing_columns: [],
    error: null, run: null, runs_in_db: null, by_state: Object.create(null) as Record<string, number>, total_nodes: 0, in_progress: [],
    last_failed: null, waiting: [], max_response_text_bytes: null, max_error_json_bytes: null, oversized_values: null, nodes: null, nodes_truncated: false,
  };
}

/** Where the run's events go when the request asked for them (`query` set), filled in the same read transaction. */
interface EventsOut {
  query: EventQuery;
  events: EventFact[];
  truncated: boolean;
}

function dbFacts(p: string, runId: string | null, req: Req, errs: string[], pids: PidsFile | null, ev: EventsOut | null): DbFacts {
  const d = emptyDbFacts(p);
  const st = statSafe(p);
  if (!st) return d;
  d.exists = true;
  if (!st.isFile()) {
    d.error = "not a regular file";
    return d;
  }
  d.size_bytes = st.size;
  d.wal_size_bytes = statSafe(p + "-wal")?.size ?? null;
  try {
    withReadOnlyDb(p, (db) => readDb(db, d, runId, req, errs, pids, ev), { busyTimeoutMs: DB_BUSY_TIMEOUT_MS });
  } catch (e) {
    d.error = cap(dbErrorText(e), 500);
  }
  return d;
}

function readDb(db: Database, d: DbFacts, runId: string | null, req: Req, errs: string[], pids: PidsFile | null, ev: EventsOut | null): void {
  const S: Schema = { runs: columnsOf(db, "_smithers_runs"), nodes: columnsOf(db, "_smithers_nodes"), att: columnsOf(db, "_smithers_attempts"), attOk: false };
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
  d.missing_columns = missing.slice(0, 50).map((c) => cap(c, 100) ?? "");
  d.schema = MODERN_COLS.some((c) => S.runs.has(c)) ? "modern" : "legacy";
  S.attOk = ["run_id", "node_id", "iteration", "attempt"].every((c) => S.att.has(c)) && S.nodes.has("iteration");
  const nodesOk = ["run_id", "node_id", "state"].every((c) => S.nodes.has(c));

  d.runs_in_db = int(db.query<{ c: number }>("SELECT count(*) AS c FROM _smithers_runs").get()?.c);
  const r = (c: string) => columnOrNull(S.runs, "r", c);
  const ej = r("error_json");
  const sel = `SELECT ${RUN_COLS.filter((c) => c !== "error_json").map((c) => `${r(c)} AS "${c}"`).join(", ")},
    CASE WHEN octet_length(${ej}) <= ${ERR_READ_MAX} THEN ${ej} END AS error_json, octet_length(${ej}) AS error_json_bytes
    FROM _smithers_runs r`;
  const row =
    runId !== null
      ? db.query<Row>(`${sel} WHERE r.run_id = ?`).get(runId)
      : db.query<Row>(`${sel} ORDER BY coalesce(${r("started_at_ms")}, ${r("created_at_ms")}) DESC, r.run_id DESC LIMIT 1`).get();
  if (!row) {
    addErr(errs, runId !== null ? `run ${JSON.stringify(runId).slice(0, 220)} not found in the DB` : "no runs in the DB");
    return;
  }
  const id = row.run_id;
  const owner = cap(row.runtime_owner_id, 300);
  const ownerFact = pidFact(ownerPid(owner), undefined, recordedIdentity(pids, ownerPid(owner)));
  d.run = {
    run_id: cap(id, 200) ?? "", status: cap(row.status, 60) ?? "", workflow_name: cap(row.workflow_name, 300),
    workflow_path: cap(row.workflow_path, 4096), created_at_ms: ms(row.created_at_ms), started_at_ms: ms(row.started_at_ms),
    finished_at_ms: ms(row.finished_at_ms), heartbeat_at_ms: ms(row.heartbeat_at_ms), runtime_owner_id: owner,
    owner: ownerFact ? { pid: ownerFact.pid, alive: ownerFact.alive, state: ownerFact.state, cmdline: ownerFact.cmdline, identity: ownerFact.identity } : null,
    error: errorJsonMessage(row.error_json, row.error_json_bytes, req.error_chars),
  };
  if (ev) {
    try {
      const r = readEvents(db, String(id), ev.query);
      ev.events = r.events;
      ev.truncated = r.truncated;
    } catch (e) {
      addErr(errs, `events: ${errorText(e)}`);
    }
  }
  if (!nodesOk) return;

  let total = 0;
  for (const x of db.query<{ state: unknown; c: number }>("SELECT state, count(*) AS c FROM _smithers_nodes WHERE run_id = ? GROUP BY state").all(id)) {
    const k = cap(x.state === null ? "null" : x.state, 60) ?? "null";
    d.by_state[k] = (d.by_state[k] ?? 0) + x.c;
    total += x.c;
  }
  d.total_nodes = total;
  const startExpr = S.attOk && S.att.has("started_at_ms") ? "a.started_at_ms" : "NULL";
  const finExpr = S.attOk && S.att.has("finished_at_ms") ? "a.finished_at_ms" : "NULL";
  const upd = columnOrNull(S.nodes, "n", "updated_at_ms");
  d.in_progress = db
    .query<Row>(nodeSql(S, "AND n.state = 'in-progress'", `coalesce(${startExpr}, ${upd}) DESC, n.node_id LIMIT 20`))
    .all(id)
    .map((x) => nodeFact(x, req.error_chars));
  const lf = db.query<Row>(nodeSql(S, "AND n.state = 'failed'", `coalesce(${finExpr}, ${upd}) DESC, n.node_id LIMIT 1`)).get(id);
  d.last_failed = lf ? nodeFact(lf, req.error_chars) : null;
  d.waiting = db
    .query<Row>(nodeSql(S, "AND n.state LIKE 'waiting-%'", `${upd} DESC, n.node_id LIMIT 20`))
    .all(id)
    .map((x) => nodeFact(x, req.error_chars));

  if (S.att.size > 0 && S.att.has("run_id")) {
    const rt = S.att.has("response_text") ? "response_text" : "NULL";
    const ae = S.att.has("error_json") ? "error_json" : "NULL";
    const w = req.row_size_warn_bytes;
    const s = db
      .query<Row>(`SELECT max(octet_length(${rt})) AS mr, max(octet_length(${ae})) AS me,
        coalesce(sum(octet_length(${rt}) > ?), 0) + coalesce(sum(octet_length(${ae}) > ?), 0) AS over
        FROM _smithers_attempts WHERE run_id = ?`)
      .get(w, w, id);
    const runErr = int(row.error_json_bytes);
    d.max_response_text_bytes = s?.mr === null || s?.mr === undefined ? 0 : ms(s.mr);
    d.max_error_json_bytes = Math.max(ms(s?.me) ?? 0, runErr ?? 0);
    d.oversized_values = (ms(s?.over) ?? 0) + (runErr !== null && runErr > w ? 1 : 0);
  }

  if (req.nodes) {
    const first =
      S.attOk && S.att.has("started_at_ms")
        ? ", (SELECT min(y.started_at_ms) FROM _smithers_attempts y WHERE y.run_id = n.run_id AND y.node_id = n.node_id AND y.iteration = n.iteration) AS first_start"
        : ", NULL AS first_start";
    const it = columnOrNull(S.nodes, "n", "iteration");
    const rows = db
      .query<Row>(nodeSql(S, "", `(n.state = 'pending'), (first_start IS NULL), first_start, ${upd}, n.node_id, ${it} LIMIT ?`, first))
      .all(id, req.max_nodes + 1);
    d.nodes_truncated = rows.length > req.max_nodes;
    d.nodes = rows.slice(0, req.max_nodes).map((x) => nodeFact(x, req.error_chars));
  }
}

// ---------- one run ----------
/** The request's `events` field as a query (values capped), or null when events were not asked for. */
function eventQuery(x: unknown): EventsOut | null {
  if (!x || typeof x !== "object") return null;
  const e = x as Row;
  const n = (v: unknown) => int(v);
  const limit = n(e.limit);
  return {
    query: {
      after_seq: n(e.after_seq),
      limit: limit !== null && limit > 0 ? Math.min(limit, 100_000) : 1000,
      node: typeof e.node === "string" ? e.node.slice(0, 500) : null,
      since_ms: n(e.since_ms),
      raw: e.raw === true,
    },
    events: [],
    truncated: false,
  };
}

function probeRun(rr: Row, req: Req): ProbeRunResult {
  const errs: string[] = [];
  const key = cap(typeof rr.key === "string" ? rr.key : String(rr.key), 200) ?? "";
  const cd = typeof rr.control_dir === "string" && rr.control_dir ? rr.control_dir : null;
  const dbp = typeof rr.db_path === "string" && rr.db_path ? rr.db_path : null;
  const runId = typeof rr.smithers_run_id === "string" ? rr.smithers_run_id : null;
  let control: ControlFacts | null = null;
  let db: DbFacts | null = null;
  let out: EventsOut | null = null;
  try {
    const pids = cd ? readPidsFile(cd) : null;
    if (cd) control = controlFacts(cd, errs, pids);
    let p = dbp;
    if (cd && (!p || !statSafe(p))) {
      const c = dbCandidates(cd);
      const best = c[0];
      if (best !== undefined) {
        if (p) addErr(errs, `db_path ${p.slice(0, 300)} is missing; found ${best.slice(0, 150)}`);
        p = best;
      } else if (!p) {
        // Nothing to open: report the pattern that was searched, as a DB that does not exist.
        db = emptyDbFacts(path.join(cd, ".smithers", "*.db"));
        addErr(errs, "no DB found in the control dir (.smithers/*.db, smithers.db, workflow/smithers.db)");
      }
    }
    const ev = eventQuery(rr.events);
    if (ev) out = ev;
    if (p) db = dbFacts(p, runId, req, errs, pids, ev);
    else if (!cd) addErr(errs, "neither control_dir nor db_path given");
  } catch (e) {
    addErr(errs, `probe: ${errorText(e)}`);
  }
  return out ? { key, control, db, errors: errs, events: out.events, events_truncated: out.truncated } : { key, control, db, errors: errs };
}

// ---------- discovery (fabrik runs import) ----------
function readMeta(dir: string): DiscoveredRun["meta"] {
  const r = readCapped(path.join(dir, "fabrik-run.json"), CAP_FILE);
  if (!r || r.size > CAP_FILE) return null;
  let j: unknown;
  try {
    j = JSON.parse(r.buf.toString("utf8"));
  } catch {
    return null;
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) return null;
  const src = j as Row;
  const m: NonNullable<DiscoveredRun["meta"]> = {};
  const hostId = int(src.host_run_id);
  if (hostId !== null) m.host_run_id = hostId;
  for (const [k, n] of [["smithers_run_id", 200], ["engine_version", 100], ["db_path", 4096], ["workflow", 500]] as const) {
    if (typeof src[k] === "string") m[k] = cap(src[k], n);
  }
  return m;
}

function discover(roots: string[]): DiscoveredRun[] {
  const out: DiscoveredRun[] = [];
  for (const root of roots) {
    let names: string[];
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
      const item: DiscoveredRun = { control_dir: cap(dir, 4096) ?? "", meta: null, db_paths: [], run_ids: [], workflow_path: null };
      try {
        item.meta = readMeta(dir);
        const dbs = dbCandidates(dir);
        const mp = item.meta?.db_path;
        if (mp && !dbs.includes(mp) && isFile(mp)) dbs.unshift(mp);
        item.db_paths = dbs.slice(0, 20).map((p) => cap(p, 4096) ?? "");
        const first = dbs[0];
        if (first !== undefined) {
          withReadOnlyDb(
            first,
            (db) => {
              const c = columnsOf(db, "_smithers_runs");
              if (!c.has("run_id")) return;
              const r = (x: string) => columnOrNull(c, "r", x);
              const rows = db
                .query<{ id: unknown; wf: unknown }>(`SELECT r.run_id AS id, ${r("workflow_path")} AS wf FROM _smithers_runs r
                  ORDER BY coalesce(${r("started_at_ms")}, ${r("created_at_ms")}) DESC, r.run_id DESC LIMIT 100`)
                .all();
              item.run_ids = rows.map((x) => cap(x.id, 200) ?? "");
              if (rows[0]?.wf) item.workflow_path = cap(rows[0].wf, 4096);
            },
            { busyTimeoutMs: DB_BUSY_TIMEOUT_MS },
          );
        }
      } catch {
        /* an unreadable DB still lists the dir */
      }
      if (!item.workflow_path) {
        try {
          const wf = fs.readdirSync(path.join(dir, "workflow")).filter((n) => /\.(tsx|ts|jsx|js|mjs)$/.test(n)).sort()[0];
          if (wf) item.workflow_path = cap(path.join(dir, "workflow", wf), 4096);
        } catch {
          /* no workflow folder */
        }
      }
      out.push(item);
    }
  }
  return out;
}

// ---------- request / response ----------
function normalise(raw: string): Req {
  const j: unknown = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  const src = j as Row;
  if (src.v !== V) throw new Error(`unsupported probe version ${JSON.stringify(src.v)}`);
  const posInt = (x: unknown, d: number, max: number) => {
    const v = int(x);
    return v !== null && v > 0 ? Math.min(v, max) : d;
  };
  return {
    runs: Array.isArray(src.runs) ? (src.runs as unknown[]).slice(0, 1000).filter((r): r is Row => !!r && typeof r === "object") : [],
    nodes: src.nodes === true,
    max_nodes: posInt(src.max_nodes, 500, 5000),
    row_size_warn_bytes: posInt(src.row_size_warn_bytes, 100 * 1024, Number.MAX_SAFE_INTEGER),
    discover_roots: Array.isArray(src.discover_roots) ? (src.discover_roots as unknown[]).filter((r): r is string => typeof r === "string").slice(0, 20) : [],
    error_chars: posInt(src.error_chars, 500, 4000),
    health: healthRequest(src.health),
  };
}

function handle(raw: string): ProbeResponse {
  const req = normalise(raw);
  const runs = req.runs.map((rr) => probeRun(rr, req));
  const out: ProbeResponse = { v: V, tool: "bun", tool_version: cap(runtimeVersion(), 100) ?? "", sqlite_version: cap(sqliteVersion(), 40) ?? "", now_ms: Date.now(), runs, discovered: discover(req.discover_roots) };
  if (req.health) out.health = healthFacts(req.health);
  return out;
}

async function main(): Promise<void> {
  const serve = process.argv.slice(2).includes("--serve") || process.env.FABRIK_PROBE_SERVE === "1";
  if (!serve) {
    let raw: string;
    try {
      raw = await readStdin();
    } catch (e) {
      process.stderr.write(`fabrik-probe: cannot read stdin: ${errorText(e)}\n`);
      process.exitCode = 2;
      return;
    }
    let out: ProbeResponse;
    try {
      out = handle(raw);
    } catch (e) {
      process.stderr.write(`fabrik-probe: bad request: ${errorText(e)}\n`);
      process.exitCode = 2;
      return;
    }
    await writeJsonLine(out);
    return;
  }
  // Loaded only here: node:readline (and node's process.stdin) cost ~13 + ~25 ms of bun's start-up (lib/io.ts).
  const readline = await import("node:readline");
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  rl.on("line", (line) => {
    if (!line.trim()) return;
    let out: unknown;
    try {
      out = handle(line);
    } catch (e) {
      out = { v: V, error: `bad request: ${errorText(e)}` };
    }
    // In order (lib/io.ts chains the writes); a closed stdout means the host is gone: stop serving.
    writeJsonLine(out).catch(() => {
      process.exitCode = 1;
      rl.close();
    });
  });
}

void main();
