/**
 * fabrik's guest `inspect` program (runs in the VM with bun; bundled into `dist/guest/inspect.js`): READ-ONLY
 * answers to `runs why` and `runs nodes` (host side: src/fabrik/inspect-service.ts; wire: src/vm/control-schema.ts).
 *
 * Run as `bun inspect.js` with an InspectRequest on stdin; prints ONE InspectResult JSON line and exits 0 (problems
 * are data: `ok: false`, `error`); exit 2 = a request it cannot read.
 *
 * The DB is opened the probe's way (lib/db.ts: read-only, never creating or checkpointing a file). Big values are
 * measured with octet_length() and never read; error messages are read only up to 1 MiB. For 0.32, `why` also runs
 * the engine's own `smithers why ID --format json` against the run's DB (lib/engine-cli.ts: how it is pointed at
 * the DB) — the engine's reader opens the DB read-write (it needs the -shm), the one exception to this program's
 * read-only discipline, made because the engine names the blockers (signal names, gates) in its own terms.
 */
import path from "node:path";
import type { Database } from "bun:sqlite";
import type { InspectRequest, InspectResult, NodeRow, AttemptRow } from "../control-schema.js";
import { columnOrNull, columnsOf, dbErrorText, withReadOnlyDb } from "./lib/db.js";
import { readCapped, statSafe } from "./lib/files.js";
import { readStdin, writeJsonLine } from "./lib/io.js";
import { readEvents } from "./lib/events.js";
import { runEngineVerb } from "./lib/engine-cli.js";
import { cap, errorJsonMessage, errorText, int, ms } from "./lib/text.js";

type Row = Record<string, unknown>;
/** error_json values larger than this (bytes) are not read, only measured. */
const ERR_READ_MAX = 1024 * 1024;
const LOG_TAIL_BYTES = 256 * 1024;

function parseRequest(raw: string): InspectRequest {
  const j: unknown = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  const src = j as Row;
  if (src.v !== 1) throw new Error(`unsupported request version ${JSON.stringify(src.v)}`);
  const abs = (k: string, nullable = false): string | null => {
    const x = src[k];
    if (nullable && (x === null || x === undefined)) return null;
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4096) throw new Error(`${k} must be an absolute path`);
    return path.resolve(x);
  };
  const count = (k: string, d: number, max: number) => {
    const x = int(src[k]);
    return x !== null && x >= 0 ? Math.min(x, max) : d;
  };
  if (src.action !== "why" && src.action !== "nodes") throw new Error("action must be why or nodes");
  if (typeof src.smithers_run_id !== "string" || !src.smithers_run_id || src.smithers_run_id.length > 200) throw new Error("smithers_run_id must be a string");
  return {
    v: 1,
    action: src.action,
    smithers_run_id: src.smithers_run_id,
    control_dir: abs("control_dir")!,
    db_path: abs("db_path")!,
    engine_dir: abs("engine_dir", true),
    dialect: src.dialect === "modern" || src.dialect === "legacy" ? src.dialect : null,
    engine_why: src.engine_why === true,
    events: count("events", 10, 1000),
    log_lines: count("log_lines", 20, 1000),
    error_lines: count("error_lines", 5, 200),
    max_nodes: Math.max(1, count("max_nodes", 2000, 5000)),
  };
}

/** The first `n` lines of a message (each capped), joined. */
function firstLines(text: string | null, n: number): string | null {
  if (text === null) return null;
  const lines = text.split("\n").slice(0, Math.max(1, n)).map((l) => l.slice(0, 500));
  return cap(lines.join("\n"), 4000);
}

interface Cols {
  runs: Set<string>;
  nodes: Set<string>;
  att: Set<string>;
}

/** The latest-attempt join and column helpers for node rows. */
function nodeRowsSql(c: Cols, where: string, order: string): string {
  const n = (x: string) => columnOrNull(c.nodes, "n", x);
  const a = (x: string) => columnOrNull(c.att, "la", x);
  const it = n("iteration");
  const attOk = ["run_id", "node_id", "attempt"].every((x) => c.att.has(x));
  const sameNode = (alias: string) => `${alias}.run_id = n.run_id AND ${alias}.node_id = n.node_id${c.att.has("iteration") && c.nodes.has("iteration") ? ` AND ${alias}.iteration = n.iteration` : ""}`;
  const rt = (alias: string) => (c.att.has("response_text") ? `octet_length(${alias}.response_text)` : "NULL");
  const ej = (alias: string) => (c.att.has("error_json") ? `octet_length(${alias}.error_json)` : "NULL");
  const join = attOk ? `LEFT JOIN _smithers_attempts la ON ${sameNode("la")} AND la.attempt = (SELECT max(x.attempt) FROM _smithers_attempts x WHERE ${sameNode("x")})` : "";
  const first = attOk && c.att.has("started_at_ms") ? `(SELECT min(y.started_at_ms) FROM _smithers_attempts y WHERE ${sameNode("y")})` : "NULL";
  return `SELECT n.node_id AS node_id, ${it} AS iteration, n.state AS state, ${n("label")} AS label, ${n("updated_at_ms")} AS updated_at_ms,
      ${attOk ? `(SELECT count(*) FROM _smithers_attempts z WHERE ${sameNode("z")})` : "0"} AS attempts,
      ${attOk ? "la.attempt" : "NULL"} AS la_attempt, ${a("state")} AS la_state, ${a("started_at_ms")} AS la_started, ${a("finished_at_ms")} AS la_finished,
      ${attOk ? rt("la") : "NULL"} AS rb, ${attOk ? ej("la") : "NULL"} AS eb,
      ${attOk ? `(SELECT sum(coalesce(${rt("w")}, 0) + coalesce(${ej("w")}, 0)) FROM _smithers_attempts w WHERE ${sameNode("w")})` : "NULL"} AS tb,
      ${first} AS first_start
    FROM _smithers_nodes n ${join} WHERE n.run_id = ? ${where} ORDER BY ${order}`;
}

/** Execution order: started nodes by their first start, then the rest (pending last). */
const EXEC_ORDER = "(n.state = 'pending'), (first_start IS NULL), first_start, updated_at_ms, n.node_id, iteration";

function nodeRow(r: Row): NodeRow {
  return {
    node_id: cap(r.node_id, 500) ?? "",
    iteration: int(r.iteration) ?? 0,
    state: cap(r.state, 60) ?? "",
    label: cap(r.label, 500),
    attempts: Math.max(0, int(r.attempts) ?? 0),
    last_attempt: int(r.la_attempt),
    last_attempt_state: cap(r.la_state, 60),
    last_started_at_ms: ms(r.la_started),
    last_finished_at_ms: ms(r.la_finished),
    response_bytes: ms(r.rb),
    error_bytes: ms(r.eb),
    total_bytes: ms(r.tb),
  };
}

function readNodes(db: Database, c: Cols, req: InspectRequest, out: InspectResult): void {
  const rows = db.query<Row>(nodeRowsSql(c, "", `${EXEC_ORDER} LIMIT ?`)).all(req.smithers_run_id, req.max_nodes + 1);
  out.nodes_truncated = rows.length > req.max_nodes;
  out.nodes = rows.slice(0, req.max_nodes).map(nodeRow);
}

function readWhy(db: Database, c: Cols, req: InspectRequest, out: InspectResult): void {
  const id = req.smithers_run_id;
  const pick = (where: string, order: string): Row | null => db.query<Row>(nodeRowsSql(c, where, `${order} LIMIT 1`)).get(id) ?? null;
  let focus: Row | null = null;
  let why: NonNullable<InspectResult["focus"]>["why"] = "next";
  if ((focus = pick("AND n.state LIKE 'waiting-%'", "updated_at_ms DESC, n.node_id"))) why = "waiting";
  else if ((focus = pick("AND n.state = 'in-progress'", "la_started DESC, n.node_id"))) why = "in-progress";
  else if ((focus = pick("AND n.state = 'failed'", "la_finished DESC, n.node_id"))) why = "failed";
  else focus = pick("AND n.state NOT IN ('finished', 'skipped')", EXEC_ORDER);
  if (focus) {
    const node = nodeRow(focus);
    out.focus = { node_id: node.node_id, iteration: node.iteration, state: node.state, label: node.label, why };
    const a = (x: string) => columnOrNull(c.att, "a", x);
    const ej = c.att.has("error_json") ? "a.error_json" : "NULL";
    const rows = db
      .query<Row>(
        `SELECT a.attempt AS attempt, ${a("state")} AS state, ${a("started_at_ms")} AS started, ${a("finished_at_ms")} AS finished,
          CASE WHEN octet_length(${ej}) <= ${ERR_READ_MAX} THEN ${ej} END AS err, octet_length(${ej}) AS eb,
          ${c.att.has("response_text") ? "octet_length(a.response_text)" : "NULL"} AS rb,
          ${c.att.has("meta_json") ? `CASE WHEN octet_length(a.meta_json) <= ${ERR_READ_MAX} AND json_valid(a.meta_json) THEN json_extract(a.meta_json, '$.retries') END` : "NULL"} AS retries
        FROM _smithers_attempts a WHERE a.run_id = ? AND a.node_id = ?${c.att.has("iteration") ? " AND a.iteration = ?" : ""} ORDER BY a.attempt LIMIT 1000`,
      )
      .all(...(c.att.has("iteration") ? [id, node.node_id, node.iteration] : [id, node.node_id]));
    out.attempts = rows.map(
      (r): AttemptRow => ({
        attempt: int(r.attempt) ?? 0,
        state: cap(r.state, 60) ?? "",
        started_at_ms: ms(r.started),
        finished_at_ms: ms(r.finished),
        error: firstLines(errorJsonMessage(r.err, r.eb, 4000), req.error_lines),
        response_bytes: ms(r.rb),
        error_bytes: ms(r.eb),
      }),
    );
    const newest = rows.at(-1);
    const retries = newest ? int(newest.retries) : null;
    out.retries = retries !== null && retries >= 0 ? retries : null;
    if (out.retries !== null) {
      const failed = out.attempts.filter((x) => x.state === "failed").length;
      out.retries_left = Math.max(0, out.retries + 1 - failed);
    }
  }
  if (req.events > 0) out.events = readEvents(db, id, { after_seq: null, limit: req.events, node: null, since_ms: null, raw: false }).events;
}

function logTail(controlDir: string, lines: number): string[] {
  if (lines <= 0) return [];
  const r = readCapped(path.join(controlDir, "reports", "smithers.log"), LOG_TAIL_BYTES, true);
  if (!r) return [];
  const all = r.buf.toString("utf8").split("\n");
  if (all.at(-1) === "") all.pop();
  return all.slice(-lines).map((l) => l.slice(0, 2000));
}

/** The engine's own `why` (0.32): its blockers, capped. */
function engineWhy(req: InspectRequest): InspectResult["engine_why"] {
  if (!req.engine_dir) return null;
  const r = runEngineVerb({ engineDir: req.engine_dir, dialect: "modern", dbPath: req.db_path, workflowPath: req.db_path, args: ["why", req.smithers_run_id, "--format", "json"], timeoutMs: 30_000 });
  const j = r.json && typeof r.json === "object" ? (r.json as Row) : null;
  const blockers = Array.isArray(j?.blockers) ? (j!.blockers as unknown[]) : [];
  const str = (x: unknown, n: number) => (typeof x === "string" ? cap(x, n) : null);
  return {
    argv: r.argv.map((a) => cap(a, 4096) ?? ""),
    exit_code: r.exit_code,
    blockers: blockers.slice(0, 50).map((b) => {
      const o = b && typeof b === "object" ? (b as Row) : {};
      return { kind: str(o.kind, 60), node_id: str(o.nodeId, 500), reason: str(o.reason, 1000), unblocker: str(o.unblocker, 1000), signal_name: str(o.signalName, 300) };
    }),
    summary: str(j?.summary, 1000),
    error: r.exit_code === 0 && j ? null : cap(r.error ?? (`${r.stderr}\n${r.stdout}`.trim().split("\n").slice(-3).join(" | ") || `exit ${r.exit_code}`), 1000),
  };
}

function inspect(req: InspectRequest): InspectResult {
  const out: InspectResult = {
    v: 1, ok: false, error: null, now_ms: Date.now(), run: null, schema: null, nodes: [], nodes_truncated: false, focus: null, attempts: [],
    retries: null, retries_left: null, events: [], log_tail: [], engine_why: null,
  };
  if (req.action === "why") out.log_tail = logTail(req.control_dir, req.log_lines);
  if (!statSafe(req.db_path)?.isFile()) {
    out.error = `the Smithers DB ${req.db_path} does not exist`;
    return out;
  }
  try {
    withReadOnlyDb(
      req.db_path,
      (db) => {
        const c: Cols = { runs: columnsOf(db, "_smithers_runs"), nodes: columnsOf(db, "_smithers_nodes"), att: columnsOf(db, "_smithers_attempts") };
        if (!c.runs.has("run_id") || !c.nodes.has("node_id")) {
          out.schema = "unknown";
          out.error = `${req.db_path} is not a Smithers DB fabrik knows (no _smithers_runs/_smithers_nodes)`;
          return;
        }
        out.schema = c.runs.has("heartbeat_at_ms") || c.runs.has("runtime_owner_id") ? "modern" : "legacy";
        const r = (x: string) => columnOrNull(c.runs, "r", x);
        const ej = r("error_json");
        const run = db
          .query<Row>(
            `SELECT r.status AS status, ${r("started_at_ms")} AS started, ${r("finished_at_ms")} AS finished, ${r("heartbeat_at_ms")} AS hb,
              CASE WHEN octet_length(${ej}) <= ${ERR_READ_MAX} THEN ${ej} END AS err, octet_length(${ej}) AS eb FROM _smithers_runs r WHERE r.run_id = ?`,
          )
          .get(req.smithers_run_id);
        if (!run) {
          out.error = `run ${req.smithers_run_id} is not in ${req.db_path}`;
          return;
        }
        out.run = { status: cap(run.status, 60) ?? "", error: errorJsonMessage(run.err, run.eb, 4000), started_at_ms: ms(run.started), finished_at_ms: ms(run.finished), heartbeat_at_ms: ms(run.hb) };
        if (req.action === "nodes") readNodes(db, c, req, out);
        else readWhy(db, c, req, out);
        out.ok = true;
      },
      { busyTimeoutMs: 2000 },
    );
  } catch (e) {
    out.ok = false;
    out.error = cap(`cannot read ${req.db_path}: ${dbErrorText(e)}`, 2000);
    return out;
  }
  if (out.ok && req.action === "why" && req.engine_why && req.dialect === "modern") {
    try {
      out.engine_why = engineWhy(req);
    } catch (e) {
      out.engine_why = { argv: [], exit_code: null, blockers: [], summary: null, error: cap(errorText(e), 1000) };
    }
  }
  out.now_ms = Date.now();
  return out;
}

async function main(): Promise<void> {
  let req: InspectRequest;
  try {
    req = parseRequest(await readStdin());
  } catch (e) {
    process.stderr.write(`fabrik-inspect: bad request: ${errorText(e)}\n`);
    process.exitCode = 2;
    return;
  }
  await writeJsonLine(inspect(req));
}

void main();
