/**
 * fabrik's guest `control` program (runs in the VM with the engine's bun; bundled into `dist/guest/control.js`):
 * the apply kind behind `run cancel`, `run approve|deny`, `run signal` and `run compact` (host side:
 * src/fabrik/control-service.ts; wire: src/vm/control-schema.ts). The wrapper holds `<control dir>/resume.lock`
 * while it applies, so a control action never races a resume of the same run.
 *
 * Run as `bun control.js <dry-run|apply>` with a ControlRequest on stdin; prints ONE ControlResult JSON line and
 * exits 0 (refusals and failures are data); exit 2 = a request it cannot read.
 *
 * Rules it keeps:
 * - it re-checks everything in the VM before acting; `dry-run` changes nothing (the DB is opened read-only, the
 *   probe's way, and no engine verb runs);
 * - where the engine has the verb it runs the engine's own command against the run's DB (lib/engine-cli.ts);
 * - it signals ONLY processes proven to be the run's (src/core/pid-identity.ts: `verified`, or `plausible` for old
 *   pid files), and refuses a 0.32 cancel whose recorded owner pid now belongs to another process (the engine's
 *   cancel would terminate that process's group);
 * - `compact` backs the DB up (verified) before it changes anything, and truncates in one transaction.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Database, constants } from "bun:sqlite";
import type { ControlRequest, ControlResult, EngineCall } from "../control-schema.js";
import { isNotTheRunsProcess, maySignal } from "../../core/pid-identity.js";
import { columnsOf, dbErrorText, withReadOnlyDb } from "./lib/db.js";
import { readSmallText, statSafe } from "./lib/files.js";
import { readStdin, writeJsonLine } from "./lib/io.js";
import { ancestorPids, runProcesses, type RunProcess } from "./lib/proc.js";
import { outputTail, runEngineVerb, type EngineRun } from "./lib/engine-cli.js";
import { backupRunDb } from "./lib/backup.js";
import { fileSizes, truncateOversized } from "./lib/fix.js";
import { cap, errorText, int, num } from "./lib/text.js";

type Row = Record<string, unknown>;
type Mode = "dry-run" | "apply";
const ACTIONS = ["cancel", "approve", "deny", "signal", "compact"] as const;
/** Engine run statuses that are its final record. */
const TERMINAL = new Set(["finished", "continued", "failed", "cancelled"]);
const ENGINE_VERB_TIMEOUT_MS = 60_000;

// ---------- request ----------
function parseRequest(raw: string, argMode: Mode): ControlRequest {
  const j: unknown = JSON.parse(raw);
  if (!j || typeof j !== "object" || Array.isArray(j)) throw new Error("request is not a JSON object");
  const src = j as Row;
  if (src.v !== 1) throw new Error(`unsupported request version ${JSON.stringify(src.v)}`);
  const abs = (k: string): string => {
    const x = src[k];
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4096) throw new Error(`${k} must be an absolute path`);
    return path.resolve(x);
  };
  const str = (k: string, max: number): string | null => {
    const x = src[k];
    if (x === null || x === undefined) return null;
    if (typeof x !== "string" || x.length > max || x.includes("\0")) throw new Error(`${k} must be a string of at most ${max} characters`);
    return x;
  };
  const nat = (k: string, d: number, max: number) => {
    const x = int(src[k]);
    return x !== null && x >= 0 ? Math.min(x, max) : d;
  };
  if (!(ACTIONS as readonly unknown[]).includes(src.action)) throw new Error(`action must be one of ${ACTIONS.join(", ")}`);
  const dialect = src.dialect === "legacy" ? "legacy" : src.dialect === "modern" ? "modern" : null;
  if (!dialect) throw new Error("dialect must be modern or legacy");
  const id = str("smithers_run_id", 200);
  if (!id) throw new Error("smithers_run_id must be a string");
  const hostId = int(src.host_run_id);
  if (hostId === null || hostId <= 0) throw new Error("host_run_id must be a positive integer");
  const r: ControlRequest = {
    v: 1,
    action: src.action as ControlRequest["action"],
    dry_run: src.dry_run === true,
    host_run_id: hostId,
    smithers_run_id: id,
    control_dir: abs("control_dir"),
    db_path: abs("db_path"),
    workflow_path: abs("workflow_path"),
    engine_dir: abs("engine_dir"),
    dialect,
    grace_ms: nat("grace_ms", 30_000, 3_600_000),
    force: src.force === true,
    node: str("node", 500),
    iteration: int(src.iteration),
    note: str("note", 4000),
    by: str("by", 300),
    signal_name: str("signal_name", 300),
    data_json: str("data_json", 64 * 1024),
    correlation: str("correlation", 300),
    limit_bytes: Math.max(1024, nat("limit_bytes", 100 * 1024, Number.MAX_SAFE_INTEGER)),
    backup_path: src.backup_path === null || src.backup_path === undefined ? null : abs("backup_path"),
    keep_backups: Math.max(1, nat("keep_backups", 3, 50)),
  };
  if (r.dry_run !== (argMode === "dry-run")) throw new Error(`request dry_run=${r.dry_run} does not match the wrapper mode ${argMode}`);
  if (r.action === "compact" && !r.dry_run) {
    if (!r.backup_path) throw new Error("compact needs backup_path");
    if (path.dirname(r.backup_path) !== path.join(r.control_dir, "backups") || !new RegExp(`^run-${r.host_run_id}-[0-9A-Za-z.]+\\.db$`).test(path.basename(r.backup_path))) {
      throw new Error("backup_path must be <control_dir>/backups/run-<id>-<stamp>.db");
    }
  }
  if (r.action === "signal" && !r.signal_name) throw new Error("signal needs signal_name");
  return r;
}

// ---------- the run as it is now ----------
interface RunState {
  status: string;
  owner_id: string | null;
  /** Nodes waiting for an approval (approve/deny). */
  gates: { node_id: string; iteration: number; state: string }[];
  /** compact: values over the limit, and the largest sizes. */
  oversized: { values: number; max_response_text_bytes: number | null; max_error_json_bytes: number | null };
}

/** The run's row and what the actions need, read-only (the probe's discipline). null: the run is not in the DB. */
function readState(req: ControlRequest): RunState | null {
  return withReadOnlyDb(
    req.db_path,
    (db) => {
      const runs = columnsOf(db, "_smithers_runs");
      const att = columnsOf(db, "_smithers_attempts");
      const nodes = columnsOf(db, "_smithers_nodes");
      if (!runs.has("status")) throw new Error(`${req.db_path} has no _smithers_runs table`);
      const row = db.query<Row>(`SELECT status, ${runs.has("runtime_owner_id") ? "runtime_owner_id" : "NULL"} AS owner FROM _smithers_runs WHERE run_id = ?`).get(req.smithers_run_id);
      if (!row) return null;
      const it = nodes.has("iteration") ? "iteration" : "0";
      const gates = nodes.has("state")
        ? db
            .query<Row>(`SELECT node_id, ${it} AS iteration, state FROM _smithers_nodes WHERE run_id = ? AND state = 'waiting-approval' ORDER BY node_id, iteration`)
            .all(req.smithers_run_id)
            .map((g) => ({ node_id: String(g.node_id), iteration: num(g.iteration) ?? 0, state: String(g.state) }))
        : [];
      const rt = att.has("response_text") ? "octet_length(response_text)" : "NULL";
      const ej = att.has("error_json") ? "octet_length(error_json)" : "NULL";
      const o = att.has("run_id")
        ? db
            .query<Row>(`SELECT coalesce(sum(${rt} > ?), 0) + coalesce(sum(${ej} > ?), 0) AS n, max(${rt}) AS mr, max(${ej}) AS me FROM _smithers_attempts WHERE run_id = ?`)
            .get(req.limit_bytes, req.limit_bytes, req.smithers_run_id)
        : null;
      return {
        status: String(row.status),
        owner_id: typeof row.owner === "string" ? row.owner : null,
        gates,
        oversized: { values: num(o?.n) ?? 0, max_response_text_bytes: num(o?.mr), max_error_json_bytes: num(o?.me) },
      };
    },
    { busyTimeoutMs: 5000 },
  );
}

// ---------- helpers ----------
function newResult(req: ControlRequest | null, mode: Mode): ControlResult {
  return {
    v: 1, action: req?.action ?? "cancel", ok: false, dry_run: mode === "dry-run", refused: false, stage: "request", reasons: [], checks: [],
    status_before: null, status_after: null, node: null, iteration: null, engine_calls: [], signals: [], processes: [], exit_code: null,
    exit_code_written: false, backup: null, fix: null, oversized: null, error: null, now_ms: Date.now(),
  };
}

function refuse(out: ControlResult, code: string, message: string, hint: string | null = null): ControlResult {
  out.refused = true;
  out.reasons.push({ code, message: cap(message, 1000) ?? "", hint: hint === null ? null : cap(hint, 1000) });
  return out;
}

function check(out: ControlResult, name: string, ok: boolean, detail: string): boolean {
  out.checks.push({ name, ok, detail: cap(detail, 1000) });
  return ok;
}

/** Run an engine verb and record it (its JSON `status` when it printed one). */
function engine(req: ControlRequest, out: ControlResult, args: string[]): EngineRun {
  const r = runEngineVerb({ engineDir: req.engine_dir, dialect: req.dialect, dbPath: req.db_path, workflowPath: req.workflow_path, args, timeoutMs: ENGINE_VERB_TIMEOUT_MS });
  const j = r.json && typeof r.json === "object" ? (r.json as Row) : null;
  const call: EngineCall = {
    argv: r.argv.map((a) => cap(a, 4096) ?? ""),
    cwd: cap(r.cwd, 4096) ?? "",
    exit_code: r.exit_code,
    status: typeof j?.status === "string" ? cap(j.status, 100) : null,
    output_tail: r.exit_code === 0 || r.exit_code === 2 ? null : outputTail(r),
  };
  out.engine_calls.push(call);
  return r;
}

function recordProcesses(out: ControlResult, procs: RunProcess[]): void {
  out.processes = procs.slice(0, 20).map((p) => ({ pid: p.pid, alive: p.alive, state: p.state, cmdline: p.cmdline, identity: p.identity, role: p.role }));
}

function readExitCode(dir: string): number | null {
  const t = readSmallText(path.join(dir, "exit_code"), 4096)?.trim() ?? "";
  return /^-?[0-9]{1,9}$/.test(t) ? Number(t) : null;
}

/** Append one `[fabrik HH:MM:SS] …` line to the run's log (as the launcher writes its own). */
function logLine(dir: string, text: string): void {
  try {
    const t = new Date().toISOString().slice(11, 19);
    fs.appendFileSync(path.join(dir, "reports", "smithers.log"), `[fabrik ${t}] ${text}\n`, { mode: 0o600 });
  } catch {
    /* the log is informative */
  }
}

function signal(out: ControlResult, p: RunProcess, sig: "SIGTERM" | "SIGKILL"): void {
  // Never a process whose identity is not proven (src/core/pid-identity.ts).
  if (!maySignal(p.identity)) return;
  try {
    process.kill(p.pid, sig);
    out.signals.push({ pid: p.pid, role: p.role, signal: sig, at_ms: Date.now() });
  } catch {
    /* already gone */
  }
}

// ---------- cancel ----------
async function cancel(req: ControlRequest, out: ControlResult, st: RunState): Promise<ControlResult> {
  const self = ancestorPids();
  const C = req.control_dir;
  const procsNow = () => runProcesses(C, st.owner_id, self);
  let procs = procsNow();
  recordProcesses(out, procs);
  const alive = (ps: RunProcess[]) => ps.filter((p) => p.alive);
  const livingUnknown = alive(procs).filter((p) => !maySignal(p.identity));
  check(out, "processes", true, procs.length === 0 ? "no pid of the run is recorded" : procs.map((p) => `${p.role} ${p.pid}: ${p.alive ? `alive (${p.identity})` : p.identity && isNotTheRunsProcess(p.identity) ? `dead (the pid now belongs to another process: ${p.identity})` : "dead"}`).join("; "));
  if (TERMINAL.has(st.status) && alive(procs).length === 0) {
    out.stage = "ended";
    out.ok = true;
    out.status_after = st.status;
    out.exit_code = readExitCode(C);
    return out;
  }
  const reusedOwner = procs.find((p) => p.role.includes("owner") && isNotTheRunsProcess(p.identity));
  if (req.dialect === "modern" && reusedOwner && !TERMINAL.has(st.status)) {
    return refuse(
      out,
      "OWNER_PID_REUSED",
      `the DB's engine owner pid ${reusedOwner.pid} now belongs to another process (${reusedOwner.cmdline ?? reusedOwner.identity}); the engine's cancel would terminate it`,
      `the run's engine is dead: \`fabrik run resume --id ${req.host_run_id}\` continues it (and clears the stale owner)`,
    );
  }
  if (livingUnknown.length > 0) {
    check(out, "identity", false, `${livingUnknown.map((p) => `${p.role} ${p.pid}`).join(", ")}: alive, identity unknown (/proc unreadable); fabrik will not signal it`);
  }
  if (req.dry_run) {
    out.stage = "done";
    out.ok = true;
    return out;
  }

  out.stage = "engine";
  if (req.dialect === "modern") {
    const r = engine(req, out, ["cancel", req.smithers_run_id, "--format", "json"]);
    if (r.exit_code !== 2 && r.exit_code !== 4 && r.exit_code !== 0) {
      out.error = cap(`the engine's cancel failed (exit ${r.exit_code}): ${outputTail(r) ?? ""}`, 2000);
      return out;
    }
    logLine(C, `run cancel: the engine's cancel answered ${typeof (r.json as Row | null)?.status === "string" ? (r.json as Row).status : `exit ${r.exit_code}`}`);
  } else {
    // 0.5 has no cancel of a running process: SIGTERM to the launcher (which forwards it to the engine), and to the
    // engine itself — a launcher's trap can miss a signal (bash 5.2, a signal during a command substitution), and
    // the launcher records the engine's exit either way.
    const targets = alive(procs)
      .filter((p) => maySignal(p.identity))
      .sort((a, b) => Number(b.role.includes("launcher")) - Number(a.role.includes("launcher")));
    if (targets.length > 0) logLine(C, `run cancel: SIGTERM to ${targets.map((p) => `${p.role} ${p.pid}`).join(", ")}`);
    for (const p of targets) signal(out, p, "SIGTERM");
  }

  // Wait for the run's processes to end (and, on 0.32, for the engine to record the cancel).
  out.stage = "wait";
  const settled = (ps: RunProcess[], status: string) => alive(ps).length === 0 && (req.dialect === "legacy" || TERMINAL.has(status));
  const waitFor = async (ms: number): Promise<{ procs: RunProcess[]; status: string }> => {
    const until = Date.now() + ms;
    for (;;) {
      const p = procsNow();
      let s = st.status;
      try {
        s = readState(req)?.status ?? s;
      } catch {
        /* locked for a moment: look again */
      }
      if (settled(p, s) || Date.now() >= until) return { procs: p, status: s };
      await sleep(200);
    }
  };
  let now = await waitFor(req.grace_ms);
  procs = now.procs;
  if (alive(procs).length > 0) {
    if (!req.force) {
      recordProcesses(out, procs);
      out.status_after = now.status;
      out.error = `the run's processes still live after ${Math.round(req.grace_ms / 1000)} s (${alive(procs).map((p) => `${p.role} ${p.pid}`).join(", ")}); the cancel request stands`;
      return out;
    }
    out.stage = "kill";
    // The engine first (its launcher then records exit_code), the launcher only if it does not end by itself.
    const engines = alive(procs).filter((p) => p.role !== "launcher");
    logLine(C, `run cancel --force: SIGKILL to ${engines.map((p) => `${p.role} ${p.pid}`).join(", ") || "the launcher"} after ${Math.round(req.grace_ms / 1000)} s`);
    for (const p of engines) signal(out, p, "SIGKILL");
    // The launcher sees its child die and records exit_code; give it a moment, then stop it too.
    now = await waitFor(5_000);
    for (const p of alive(now.procs)) signal(out, p, "SIGKILL");
    now = await waitFor(3_000);
    procs = now.procs;
  }

  // The DB must say cancelled: a 0.5 engine killed by a signal records nothing; a 0.32 one killed before it
  // wrote the cancel leaves `running` (its owner is dead now, so the engine's cancel flips it directly).
  out.stage = "record";
  const after = readState(req);
  if (after && !TERMINAL.has(after.status) && alive(procs).length === 0) {
    engine(req, out, req.dialect === "modern" ? ["cancel", req.smithers_run_id, "--format", "json"] : ["cancel", req.workflow_path, "--run-id", req.smithers_run_id]);
  }
  const final = readState(req);
  out.status_after = final?.status ?? null;
  recordProcesses(out, procsNow());
  out.exit_code = readExitCode(C);
  if (out.exit_code === null && alive(procsNow()).length === 0 && out.status_after === "cancelled") {
    // The launcher was gone (or killed) before writing it: record the outcome the launcher contract promises.
    try {
      fs.writeFileSync(path.join(C, "exit_code.tmp"), "2\n", { mode: 0o600 });
      fs.renameSync(path.join(C, "exit_code.tmp"), path.join(C, "exit_code"));
      out.exit_code = 2;
      out.exit_code_written = true;
      logLine(C, "run cancel: the launcher was not running; exit_code 2 written by fabrik");
    } catch (e) {
      out.error = cap(`cannot write exit_code: ${errorText(e)}`, 2000);
    }
  }
  out.ok = out.status_after === "cancelled" && alive(procsNow()).length === 0;
  if (!out.ok && !out.error) out.error = `the run is ${out.status_after ?? "unknown"} after the cancel`;
  out.stage = "done";
  return out;
}

// ---------- approve / deny / signal ----------
function decide(req: ControlRequest, out: ControlResult, st: RunState): ControlResult {
  const verb = req.action as "approve" | "deny";
  const gates = st.gates.filter((g) => (req.node === null || g.node_id === req.node) && (req.iteration === null || g.iteration === req.iteration));
  if (gates.length === 0) {
    const known = st.gates.map((g) => g.node_id).join(", ");
    return refuse(
      out,
      "NO_WAITING_GATE",
      req.node ? `node ${req.node} is not waiting for an approval${known ? ` (waiting: ${known})` : ""}` : `run ${req.smithers_run_id} has no gate waiting for an approval (status ${st.status})`,
      `see \`fabrik runs why --id ${req.host_run_id}\``,
    );
  }
  if (gates.length > 1) {
    return refuse(out, "AMBIGUOUS_GATE", `several gates wait for an approval: ${gates.map((g) => `${g.node_id}${g.iteration ? ` (iteration ${g.iteration})` : ""}`).join(", ")}`, "name one with --node");
  }
  const g = gates[0]!;
  out.node = g.node_id;
  out.iteration = g.iteration;
  check(out, "gate", true, `${g.node_id} (iteration ${g.iteration}) waits for an approval`);
  if (req.dry_run) {
    out.ok = true;
    out.stage = "done";
    return out;
  }
  out.stage = "engine";
  const args =
    req.dialect === "modern"
      ? [verb, req.smithers_run_id, "--node", g.node_id, "--iteration", String(g.iteration), ...(req.note ? ["--note", req.note] : []), ...(req.by ? ["--by", req.by] : []), "--format", "json"]
      : [verb, req.workflow_path, "--run-id", req.smithers_run_id, "--node-id", g.node_id, "--iteration", String(g.iteration), ...(req.note ? ["--note", req.note] : []), ...(req.by ? ["--decided-by", req.by] : [])];
  const r = engine(req, out, args);
  out.status_after = readState(req)?.status ?? null;
  if (r.exit_code !== 0) {
    out.error = cap(`the engine's ${verb} failed (exit ${r.exit_code}): ${outputTail(r) ?? ""}`, 2000);
    return out;
  }
  logLine(req.control_dir, `run ${verb}: ${g.node_id} (iteration ${g.iteration})${req.by ? ` by ${req.by}` : ""}`);
  out.ok = true;
  out.stage = "done";
  return out;
}

function signalRun(req: ControlRequest, out: ControlResult): ControlResult {
  if (req.dialect !== "modern") return refuse(out, "ENGINE_HAS_NO_SIGNALS", "engine 0.5 has no signals (<Signal>/<WaitForEvent> came later)", null);
  if (req.dry_run) {
    out.ok = true;
    out.stage = "done";
    return out;
  }
  out.stage = "engine";
  const r = engine(req, out, ["signal", req.smithers_run_id, req.signal_name!, "--data", req.data_json ?? "{}", ...(req.correlation ? ["--correlation", req.correlation] : []), ...(req.by ? ["--by", req.by] : []), "--format", "json"]);
  out.status_after = readState(req)?.status ?? null;
  if (r.exit_code !== 0) {
    out.error = cap(`the engine's signal failed (exit ${r.exit_code}): ${outputTail(r) ?? ""}`, 2000);
    return out;
  }
  logLine(req.control_dir, `run signal: ${req.signal_name}${req.by ? ` by ${req.by}` : ""}`);
  out.ok = true;
  out.stage = "done";
  return out;
}

// ---------- compact ----------
function compact(req: ControlRequest, out: ControlResult, st: RunState): ControlResult {
  const self = ancestorPids();
  const C = req.control_dir;
  const procs = runProcesses(C, st.owner_id, self);
  recordProcesses(out, procs);
  const living = procs.filter((p) => p.alive);
  if (!check(out, "run-ended", TERMINAL.has(st.status), `status ${st.status}`)) {
    return refuse(out, "RUN_NOT_ENDED", `the run is ${st.status}; compact works on ended runs only (finished, failed, cancelled)`, `stop it first (\`fabrik run cancel --id ${req.host_run_id}\`), or resume it with --fix`);
  }
  if (!check(out, "processes", living.length === 0, living.length === 0 ? "no process of the run lives" : living.map((p) => `${p.role} ${p.pid} alive`).join(", "))) {
    return refuse(out, "PROCESS_ALIVE", `a process of the run still lives (${living.map((p) => `${p.role} ${p.pid}`).join(", ")})`, "wait for it to end, then compact");
  }
  const lock = path.join(C, "launcher.lock");
  if (statSafe(lock)) {
    const r = spawnSync("flock", ["-n", "-E", "75", lock, "true"], { stdio: "ignore", timeout: 5000 });
    if (!check(out, "launcher-lock", !r.error && r.status === 0, r.error ? `cannot test ${lock}` : r.status === 0 ? "launcher.lock is free" : "launcher.lock is held")) {
      return refuse(out, "LAUNCHER_LOCK_HELD", "launcher.lock is held: a launcher or engine of this run is still alive", null);
    }
  }
  const files = fileSizes(req.db_path);
  out.oversized = { values: st.oversized.values, max_response_text_bytes: st.oversized.max_response_text_bytes, max_error_json_bytes: st.oversized.max_error_json_bytes, db_bytes: files.db_bytes, wal_bytes: files.wal_bytes };
  try {
    const need = (files.db_bytes + files.wal_bytes) * 2 + 1024 * 1024;
    const sf = fs.statfsSync(C);
    const free = Number(sf.bavail) * Number(sf.bsize);
    if (!check(out, "disk-space", free >= need, `${free} bytes free, need about ${need}`)) return refuse(out, "DISK_FULL", `not enough disk space for the backup (${free} bytes free, need about ${need})`, "free some space in the VM");
  } catch {
    /* statfs unsupported: not checked */
  }
  if (req.dry_run) {
    out.ok = true;
    out.stage = "done";
    return out;
  }
  out.stage = "backup";
  const db = new Database(req.db_path, constants.SQLITE_OPEN_READWRITE);
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    out.backup = backupRunDb(db, req.backup_path!, req.smithers_run_id, req.host_run_id, req.keep_backups);
    out.stage = "fix";
    out.fix = truncateOversized(db, req.db_path, req.smithers_run_id, req.limit_bytes);
  } finally {
    db.close();
  }
  logLine(C, `run compact: ${out.fix.values} value(s) truncated to ${req.limit_bytes} bytes; backup ${out.backup.path}`);
  out.status_after = readState(req)?.status ?? null;
  out.ok = true;
  out.stage = "done";
  return out;
}

// ---------- main ----------
async function control(raw: string, mode: Mode): Promise<{ out: ControlResult; code: number }> {
  let req: ControlRequest;
  try {
    req = parseRequest(raw, mode);
  } catch (e) {
    const out = newResult(null, mode);
    out.error = `bad request: ${errorText(e, 400)}`;
    return { out, code: 2 };
  }
  const out = newResult(req, mode);
  out.stage = "check";
  try {
    if (!check(out, "control-dir", !!statSafe(req.control_dir)?.isDirectory(), req.control_dir)) {
      return { out: refuse(out, "CONTROL_DIR_MISSING", `the run's control dir ${req.control_dir} does not exist in the VM`), code: 0 };
    }
    if (!check(out, "engine-installed", !!statSafe(path.join(req.engine_dir, "node_modules", ".bin", "smithers")), req.engine_dir) && req.action !== "compact") {
      return { out: refuse(out, "ENGINE_MISSING", `the engine is not installed at ${req.engine_dir}`, "a `fabrik run` with the same --engine installs it"), code: 0 };
    }
    if (!check(out, "db", !!statSafe(req.db_path)?.isFile(), req.db_path)) return { out: refuse(out, "DB_MISSING", `the Smithers DB ${req.db_path} does not exist in the VM`), code: 0 };
    let st: RunState | null;
    try {
      st = readState(req);
    } catch (e) {
      return { out: refuse(out, "DB_UNREADABLE", `cannot read the Smithers DB ${req.db_path}: ${dbErrorText(e)}`), code: 0 };
    }
    if (!st) return { out: refuse(out, "RUN_NOT_IN_DB", `run ${req.smithers_run_id} is not in ${req.db_path}`), code: 0 };
    out.status_before = st.status;
    switch (req.action) {
      case "cancel":
        await cancel(req, out, st);
        break;
      case "approve":
      case "deny":
        decide(req, out, st);
        break;
      case "signal":
        signalRun(req, out);
        break;
      case "compact":
        compact(req, out, st);
        break;
    }
  } catch (e) {
    out.ok = false;
    out.error = cap(`${out.stage}: ${errorText(e, 1000)}`, 2000);
  }
  out.now_ms = Date.now();
  return { out, code: 0 };
}

async function main(): Promise<void> {
  const mode: Mode = process.argv.slice(2).includes("dry-run") ? "dry-run" : "apply";
  let raw: string;
  try {
    raw = await readStdin();
  } catch (e) {
    process.stderr.write(`fabrik-control: cannot read stdin: ${errorText(e)}\n`);
    process.exitCode = 2;
    return;
  }
  const r = await control(raw, mode);
  await writeJsonLine(r.out);
  process.exitCode = r.code;
}

void main();
