#!/usr/bin/env node
/**
 * make-fixtures.mjs — REAL Smithers run databases, produced by the REAL engines, for fabrik's tests.
 *
 *   node scripts/make-fixtures.mjs --out DIR [--engines-dir DIR] [--only 0.32.0[,0.5.0]] [--quiet]
 *
 * For each engine version (0.32.0 "modern", 0.5.0 "legacy") it writes DIR/<version>/<case>/run.db (+ run.db-wal
 * and run.db-shm exactly as the engine left them) and DIR/manifest.json describing every case:
 *   finished  6-task `seq` run that finishes
 *   failed    task 3 throws (retries 0) → run failed
 *   killed    the ENGINE process is SIGKILLed during task 3 (whole process group, so a wrapper and its
 *             engine child both die); files copied untouched: main file ~4 KB, the data is in -wal.
 *             The run uses the workflow's gate (input `gateDir`): tasks 1-2 are released up front, task 3
 *             announces itself (`at-3`) and waits, and the kill comes then, so it always lands inside task 3.
 *   resumed   that same killed run continued to the end with the engine's real continue path:
 *             0.32: state reset (smithers-engine.md) then `smithers up WF --resume ID`;
 *             0.5:  `smithers run WF --run-id ID --resume`
 *   multi     (0.32 only) one DB holding three runs: seq finished, seq failed, loop finished
 *
 * Engines are installed into --engines-dir (default <repo>/.cache/engines/<version>) only when the marker
 * `<version>/.fabrik-engine.json` (written last) is missing or describes another package.json/bun; npm and bun
 * caches are shared under <repo>/.cache/{npm,bun}. Recipe and facts: src/vm/engine-recipe.ts — the package.json
 * below MUST equal `enginePackageJson(version)` there (the e2e fixture test checks via the manifest).
 *
 * Workflows come from examples/workflows (0.32) and examples/workflows-legacy (0.5). They are copied into a
 * scratch folder with a `node_modules` symlink to the engine's node_modules and a bunfig.toml that disables
 * bun auto-install, and run with `SMITHERS_DB_PATH` pointing at the case's DB. `_smithers_runs.workflow_path`
 * in the fixtures therefore names that (deleted) scratch folder.
 *
 * Plain Node ESM, builtins only; shells out to npm and bun. Every process it starts runs in its own process
 * group and is killed (group-wide SIGKILL) when done, on error, and on SIGINT/SIGTERM. Idempotent: the
 * selected versions' output folders are replaced; other versions' entries in an existing manifest are kept.
 */
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Must equal BUN_VERSION in src/vm/engine-recipe.ts. */
const BUN_VERSION = "1.4.5";
/** Must equal enginePackageJson(version) in src/vm/engine-recipe.ts. */
const ENGINES = {
  "0.32.0": {
    dialect: "modern",
    workflowsDir: "examples/workflows",
    packageJson: {
      name: "fabrik-engine-0.32.0",
      private: true,
      description: "Smithers engine 0.32.0 installed by fabrik",
      dependencies: { "smithers-orchestrator": "0.32.0", zod: "4.6.7" },
      overrides: {
        "@effect/platform-node-shared": "4.0.0-beta.102",
        "@tanstack/electric-db-collection": "0.3.15",
        "@vectorize-io/hindsight-client": "0.9.1",
      },
    },
  },
  "0.5.0": {
    dialect: "legacy",
    workflowsDir: "examples/workflows-legacy",
    packageJson: {
      name: "fabrik-engine-0.5.0",
      private: true,
      description: "Smithers engine 0.5.0 installed by fabrik",
      dependencies: { "smithers-orchestrator": "0.5.0", zod: "4.6.7" },
    },
  },
};

const MANIFEST_SCHEMA = 1;
const TASKS = 6;
const SLEEP_MS = 300;
const FAIL_AT = 3;
const KILL_AT = 3;
const RUN_TIMEOUT_MS = 120_000;
const CONCURRENCY = 3;

// ---------------------------------------------------------------------------------------------- args

function usage(msg) {
  if (msg) process.stderr.write(`make-fixtures: ${msg}\n`);
  process.stderr.write(
    "usage: node scripts/make-fixtures.mjs --out DIR [--engines-dir DIR] [--only 0.32.0[,0.5.0]] [--quiet]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { out: undefined, enginesDir: path.join(REPO, ".cache", "engines"), only: [], quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === "") usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--out":
        opts.out = path.resolve(value());
        break;
      case "--engines-dir":
        opts.enginesDir = path.resolve(value());
        break;
      case "--only":
        opts.only.push(...value().split(",").map((s) => s.trim()).filter(Boolean));
        break;
      case "--quiet":
        opts.quiet = true;
        break;
      case "-h":
      case "--help":
        usage();
        break;
      default:
        usage(`unknown argument ${a}`);
    }
  }
  if (!opts.out) usage("--out is required");
  for (const v of opts.only) if (!ENGINES[v]) usage(`unknown engine version ${v} (supported: ${Object.keys(ENGINES).join(", ")})`);
  if (opts.only.length === 0) opts.only = Object.keys(ENGINES);
  return opts;
}

const OPTS = parseArgs(process.argv.slice(2));
const CACHE = path.join(REPO, ".cache");
const T0 = Date.now();

function log(msg) {
  if (!OPTS.quiet) process.stderr.write(`[make-fixtures +${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
}

// ------------------------------------------------------------------------------- process bookkeeping

/** pid → description of every process group we started and have not yet reaped and killed. */
const groups = new Map();

function killGroup(pid, signal = "SIGKILL") {
  try {
    process.kill(-pid, signal);
  } catch {
    /* ESRCH: group already gone */
  }
}

function killAll() {
  for (const pid of groups.keys()) killGroup(pid);
  groups.clear();
}

process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    killAll();
    cleanupScratch();
    process.exit(128 + (os.constants.signals[sig] ?? 1));
  });
}

/**
 * Start `argv` in its own process group (setsid). Returns { child, done } where done resolves to
 * { code, signal, stdout, stderr, ms } after the process exits; the whole group is SIGKILLed then.
 */
function start(argv, { cwd, env, onStderrLine, timeoutMs = RUN_TIMEOUT_MS, label = argv.join(" ") } = {}) {
  const t = Date.now();
  const child = spawn(argv[0], argv.slice(1), { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid) groups.set(child.pid, label);
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => {
    stderr += d;
    if (!onStderrLine) return;
    pending += d;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      onStderrLine(line);
    }
  });
  const timer = setTimeout(() => {
    stderr += `\n[make-fixtures] timeout after ${timeoutMs} ms, killing\n`;
    if (child.pid) killGroup(child.pid);
  }, timeoutMs);
  const done = new Promise((resolve, reject) => {
    child.on("error", (err) => {
      clearTimeout(timer);
      if (child.pid) groups.delete(child.pid);
      reject(new Error(`cannot start ${label}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (child.pid) {
        killGroup(child.pid); // anything left in the group (e.g. an engine child of a wrapper)
        groups.delete(child.pid);
      }
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t });
    });
  });
  return { child, done };
}

async function run(argv, opts = {}) {
  const res = await start(argv, opts).done;
  if (opts.check !== false && res.code !== 0) {
    throw new Error(`${argv.join(" ")} exited ${res.code ?? res.signal}\n${tail(res.stderr)}\n${tail(res.stdout)}`);
  }
  return res;
}

function tail(s, n = 25) {
  return s.split("\n").slice(-n).join("\n");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/** Direct children of `pid`, from /proc (Linux). */
function childrenOf(pid) {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function descendantsOf(pid) {
  const out = [];
  const stack = [pid];
  while (stack.length) {
    for (const c of childrenOf(stack.pop())) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------- locking

async function withLock(lockDir, fn) {
  const waitStart = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lockDir, "pid"), "utf8"));
      } catch {
        /* being created, or left half-made */
      }
      const age = Date.now() - (fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if ((Number.isFinite(owner) && owner > 0 && !isAlive(owner)) || (!Number.isFinite(owner) && age > 10_000)) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - waitStart > 15 * 60_000) throw new Error(`timed out waiting for lock ${lockDir}`);
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------- engine install

function engineLayout(version) {
  const dir = path.join(OPTS.enginesDir, version);
  const binDir = path.join(dir, ".runtime", "node_modules", ".bin");
  return {
    dir,
    runtimeDir: path.join(dir, ".runtime"),
    binDir,
    bun: path.join(binDir, "bun"),
    nodeModules: path.join(dir, "node_modules"),
    smithers: path.join(dir, "node_modules", ".bin", "smithers"),
    marker: path.join(dir, ".fabrik-engine.json"),
  };
}

function markerWanted(version) {
  return { version, bunVersion: BUN_VERSION, packageJson: ENGINES[version].packageJson };
}

function engineReady(version) {
  const L = engineLayout(version);
  try {
    const m = JSON.parse(fs.readFileSync(L.marker, "utf8"));
    const want = markerWanted(version);
    return (
      JSON.stringify({ version: m.version, bunVersion: m.bunVersion, packageJson: m.packageJson }) ===
        JSON.stringify(want) &&
      fs.existsSync(L.smithers) &&
      fs.existsSync(L.bun)
    );
  } catch {
    return false;
  }
}

const installEnv = () => ({
  ...process.env,
  npm_config_cache: path.join(CACHE, "npm"),
  BUN_INSTALL_CACHE_DIR: path.join(CACHE, "bun"),
  npm_config_update_notifier: "false",
});

/** Install engine `version` unless its marker says it is already there. Returns timings (ms) or null. */
async function ensureEngine(version) {
  if (engineReady(version)) return null;
  fs.mkdirSync(OPTS.enginesDir, { recursive: true });
  const L = engineLayout(version);
  return withLock(`${L.dir}.lock`, async () => {
    if (engineReady(version)) return null;
    log(`installing engine ${version} into ${L.dir}`);
    fs.rmSync(L.marker, { force: true });
    fs.mkdirSync(L.dir, { recursive: true });
    fs.writeFileSync(path.join(L.dir, "package.json"), JSON.stringify(ENGINES[version].packageJson, null, 2) + "\n");
    const timings = {};
    let haveBun = false;
    if (fs.existsSync(L.bun)) {
      const v = await run([L.bun, "--version"], { check: false });
      haveBun = v.code === 0 && v.stdout.trim() === BUN_VERSION;
    }
    if (!haveBun) {
      const r = await run(
        ["npm", "install", "--prefix", L.runtimeDir, "--no-audit", "--no-fund", `bun@${BUN_VERSION}`],
        { cwd: L.dir, env: installEnv() },
      );
      timings.bunMs = r.ms;
      const v = await run([L.bun, "--version"]);
      if (v.stdout.trim() !== BUN_VERSION) throw new Error(`installed bun reports ${v.stdout.trim()}, wanted ${BUN_VERSION}`);
    }
    const r = await run([L.bun, "install"], { cwd: L.dir, env: installEnv() });
    timings.engineMs = r.ms;
    if (!fs.existsSync(L.smithers)) throw new Error(`bun install did not produce ${L.smithers}`);
    fs.writeFileSync(L.marker, JSON.stringify({ ...markerWanted(version), installedAt: new Date().toISOString(), timings }, null, 2) + "\n");
    log(`engine ${version} installed (${JSON.stringify(timings)})`);
    return timings;
  });
}

// ------------------------------------------------------------------------------------- bun helpers

const INSPECT_TS = `import { Database } from "bun:sqlite";
const db = new Database(process.argv[2], { readonly: true });
const runs = db.query("SELECT * FROM _smithers_runs ORDER BY run_id").all();
const nodes = db.query("SELECT run_id, node_id, iteration, state, last_attempt FROM _smithers_nodes ORDER BY run_id, node_id, iteration").all();
const attempts = db.query("SELECT run_id, node_id, iteration, attempt, state FROM _smithers_attempts ORDER BY run_id, node_id, iteration, attempt").all();
db.close();
console.log(JSON.stringify({ runs, nodes, attempts }));
`;

/** The 0.32 state reset from smithers-engine.md: one run, one transaction. */
const RESET_TS = `import { Database } from "bun:sqlite";
const [path, runId] = process.argv.slice(2);
const db = new Database(path);
db.exec("PRAGMA busy_timeout = 5000");
const now = Date.now();
const changes = db.transaction(() => ({
  attempts: db.query("UPDATE _smithers_attempts SET state = 'cancelled', finished_at_ms = ? WHERE run_id = ? AND state = 'in-progress'").run(now, runId).changes,
  nodes: db.query("UPDATE _smithers_nodes SET state = 'pending', updated_at_ms = ? WHERE run_id = ? AND state = 'in-progress'").run(now, runId).changes,
  runs: db.query("UPDATE _smithers_runs SET heartbeat_at_ms = NULL, runtime_owner_id = NULL WHERE run_id = ? AND status = 'running'").run(runId).changes,
}))();
db.close();
console.log(JSON.stringify(changes));
`;

let SCRATCH;
function cleanupScratch() {
  if (SCRATCH) fs.rmSync(SCRATCH, { recursive: true, force: true });
  SCRATCH = undefined;
}

const DB_FILES = ["run.db", "run.db-wal", "run.db-shm"];

function copyDbFiles(fromDir, toDir) {
  fs.mkdirSync(toDir, { recursive: true });
  for (const f of DB_FILES) {
    const src = path.join(fromDir, f);
    if (fs.existsSync(src)) fs.copyFileSync(src, path.join(toDir, f));
  }
}

/** Inspect a DB through a private copy of its files (opening the original, even read-only, could add files). */
async function inspect(version, dbDir) {
  const L = engineLayout(version);
  const tmp = fs.mkdtempSync(path.join(SCRATCH, "inspect-"));
  try {
    copyDbFiles(dbDir, tmp);
    const r = await run([L.bun, path.join(SCRATCH, "inspect.ts"), path.join(tmp, "run.db")], { cwd: SCRATCH });
    return JSON.parse(r.stdout);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function fileInfo(dir) {
  const files = {};
  for (const f of DB_FILES) {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) continue;
    const buf = fs.readFileSync(p);
    files[f] = { size: buf.length, sha256: crypto.createHash("sha256").update(buf).digest("hex") };
  }
  return files;
}

// ------------------------------------------------------------------------------- expectations/check

const seqNodes = (tasks, stateOf) =>
  Array.from({ length: tasks }, (_, i) => {
    const [state, attempts] = stateOf(i + 1);
    return { nodeId: `step-${i + 1}`, iteration: 0, state, attempts };
  });

const EXPECT = {
  finished: () => seqNodes(TASKS, () => ["finished", ["finished"]]),
  failed: () =>
    seqNodes(TASKS, (n) => (n < FAIL_AT ? ["finished", ["finished"]] : n === FAIL_AT ? ["failed", ["failed"]] : ["pending", []])),
  killed: () =>
    seqNodes(TASKS, (n) =>
      n < KILL_AT ? ["finished", ["finished"]] : n === KILL_AT ? ["in-progress", ["in-progress"]] : ["pending", []],
    ),
  resumed: () => seqNodes(TASKS, (n) => (n === KILL_AT ? ["finished", ["cancelled", "finished"]] : ["finished", ["finished"]])),
};

/** Compare one run of an inspected DB with the expected status and nodes; returns a list of problems. */
function checkRun(db, expected) {
  const problems = [];
  const row = db.runs.find((r) => r.run_id === expected.runId);
  if (!row) return [`run ${expected.runId} missing (runs: ${db.runs.map((r) => r.run_id).join(", ")})`];
  if (row.status !== expected.status) problems.push(`run ${expected.runId}: status ${row.status}, expected ${expected.status}`);
  const nodes = db.nodes.filter((n) => n.run_id === expected.runId);
  const key = (n) => `${n.node_id ?? n.nodeId}#${n.iteration}`;
  const want = new Map(expected.nodes.map((n) => [key(n), n]));
  for (const n of nodes) if (!want.has(key(n))) problems.push(`${expected.runId}: unexpected node ${key(n)} (${n.state})`);
  for (const w of expected.nodes) {
    const n = nodes.find((x) => key(x) === key(w));
    if (!n) {
      problems.push(`${expected.runId}: node ${key(w)} missing`);
      continue;
    }
    if (n.state !== w.state) problems.push(`${expected.runId}: node ${key(w)} is ${n.state}, expected ${w.state}`);
    const atts = db.attempts
      .filter((a) => a.run_id === expected.runId && a.node_id === w.nodeId && a.iteration === w.iteration)
      .sort((a, b) => a.attempt - b.attempt);
    const got = atts.map((a) => a.state);
    if (JSON.stringify(got) !== JSON.stringify(w.attempts)) {
      problems.push(`${expected.runId}: node ${key(w)} attempts [${got}], expected [${w.attempts}]`);
    }
    if (atts.some((a, i) => a.attempt !== i + 1)) problems.push(`${expected.runId}: node ${key(w)} attempt numbers ${atts.map((a) => a.attempt)}`);
  }
  return problems;
}

// ----------------------------------------------------------------------------------------- cases

function engineEnv(version, dbPath) {
  const L = engineLayout(version);
  const env = {
    ...process.env,
    PATH: `${L.binDir}:${process.env.PATH ?? ""}`,
    SMITHERS_DB_PATH: dbPath,
    NO_COLOR: "1",
    // bun's runtime transpiler cache (default ~/.bun/install/cache/@t@): keep it with the other caches.
    BUN_RUNTIME_TRANSPILER_CACHE_PATH: path.join(CACHE, "bun-transpiler"),
  };
  if (ENGINES[version].dialect === "modern") env.SMITHERS_POST_FAILURE = "0";
  delete env.FORCE_COLOR;
  return env;
}

function startArgv(version, workflowFile, runId, input) {
  const L = engineLayout(version);
  return ENGINES[version].dialect === "modern"
    ? [L.smithers, "up", workflowFile, "--run-id", runId, "--input", JSON.stringify(input), "--no-post-failure"]
    : [L.smithers, "run", workflowFile, "--run-id", runId, "--input", JSON.stringify(input)];
}

function resumeArgv(version, workflowFile, runId) {
  const L = engineLayout(version);
  return ENGINES[version].dialect === "modern"
    ? [L.smithers, "up", workflowFile, "--resume", runId, "--no-post-failure"]
    : [L.smithers, "run", workflowFile, "--run-id", runId, "--resume"];
}

/** argv as recorded in the manifest: engine bin as `smithers`, no absolute paths. */
const showArgv = (argv) => ["smithers", ...argv.slice(1)];

const runIdFor = (version, name) => `fx-${version}-${name}`;

class Lane {
  constructor(version) {
    this.version = version;
    this.dialect = ENGINES[version].dialect;
    this.workDir = path.join(SCRATCH, version);
    this.workflowsDir = ENGINES[version].workflowsDir;
  }

  setup() {
    fs.mkdirSync(this.workDir, { recursive: true });
    for (const f of ["seq.tsx", "loop.tsx"]) fs.copyFileSync(path.join(REPO, this.workflowsDir, f), path.join(this.workDir, f));
    fs.writeFileSync(path.join(this.workDir, "bunfig.toml"), '[install]\nauto = "disable"\n');
    fs.symlinkSync(engineLayout(this.version).nodeModules, path.join(this.workDir, "node_modules"));
  }

  dbDir(name) {
    const d = path.join(this.workDir, "db", name);
    fs.mkdirSync(d, { recursive: true });
    return d;
  }

  async engine(argv, dbDir, expectCode, opts = {}) {
    const res = await start(argv, { cwd: this.workDir, env: engineEnv(this.version, path.join(dbDir, "run.db")), ...opts }).done;
    if (expectCode !== undefined && res.code !== expectCode) {
      throw new Error(
        `[${this.version}] ${showArgv(argv).join(" ")} exited ${res.code ?? res.signal}, expected ${expectCode}\n${tail(res.stderr)}\n${tail(res.stdout)}`,
      );
    }
    return res;
  }

  async verify(dbDir, runs) {
    const db = await inspect(this.version, dbDir);
    const problems = runs.flatMap((r) => checkRun(db, r));
    const extra = db.runs.filter((r) => !runs.some((x) => x.runId === r.run_id)).map((r) => r.run_id);
    if (extra.length) problems.push(`unexpected runs ${extra.join(", ")}`);
    return { db, problems };
  }

  record(caseName, outDir, runs, extra = {}) {
    const files = fileInfo(outDir);
    const wal = files["run.db-wal"];
    const walHasData = Boolean(wal && wal.size > 32);
    if (extra.walExpected !== undefined && walHasData !== extra.walExpected) {
      throw new Error(`[${this.version}/${caseName}] -wal ${walHasData ? "holds" : "holds no"} data, expected the opposite`);
    }
    return {
      engineVersion: this.version,
      dialect: this.dialect,
      case: caseName,
      dir: path.relative(OPTS.out, outDir),
      db: path.relative(OPTS.out, path.join(outDir, "run.db")),
      files,
      walHasData,
      runs,
      ...extra,
    };
  }

  outDir(caseName) {
    return path.join(OPTS.out, this.version, caseName);
  }

  seqRun(name, input, status, nodes) {
    return {
      runId: runIdFor(this.version, name),
      workflow: "seq",
      workflowFile: `${this.workflowsDir}/seq.tsx`,
      input,
      status,
      nodes,
    };
  }

  async simple(caseName, input, expectCode, status, nodes) {
    const dbDir = this.dbDir(caseName);
    const run = this.seqRun(caseName, input, status, nodes);
    const argv = startArgv(this.version, "seq.tsx", run.runId, input);
    const res = await this.engine(argv, dbDir, expectCode);
    const { problems } = await this.verify(dbDir, [run]);
    if (problems.length) throw new Error(`[${this.version}/${caseName}] unexpected DB state:\n  ${problems.join("\n  ")}`);
    const out = this.outDir(caseName);
    copyDbFiles(dbDir, out);
    log(`${this.version}/${caseName} done (${res.ms} ms)`);
    return this.record(caseName, out, [run], {
      walExpected: false,
      steps: [{ argv: showArgv(argv), exitCode: res.code }],
    });
  }

  /**
   * One attempt at a run that is SIGKILLed during task KILL_AT: the gate releases the tasks before it, task
   * KILL_AT writes `at-<KILL_AT>` and waits for a release that never comes; the kill follows. Returns null
   * when the DB does not show the expected state (not expected with the gate; the caller retries).
   */
  async killOnce(dbDir, run) {
    const gateDir = run.input.gateDir;
    fs.rmSync(gateDir, { recursive: true, force: true });
    fs.mkdirSync(gateDir, { recursive: true });
    for (let n = 1; n < KILL_AT; n++) fs.writeFileSync(path.join(gateDir, `release-${n}`), "");
    const argv = startArgv(this.version, "seq.tsx", run.runId, run.input);
    const { child, done } = start(argv, { cwd: this.workDir, env: engineEnv(this.version, path.join(dbDir, "run.db")) });
    let exited = false;
    done.then(() => (exited = true));
    const atFile = path.join(gateDir, `at-${KILL_AT}`);
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    while (!fs.existsSync(atFile) && !exited && Date.now() < deadline) await sleep(20);
    if (!fs.existsSync(atFile)) {
      if (!exited) killGroup(child.pid);
      const res = await done;
      throw new Error(`[${this.version}] step-${KILL_AT} never started (exit ${res.code ?? res.signal})\n${tail(res.stderr)}`);
    }
    const launchedPid = child.pid;
    const tree = [launchedPid, ...descendantsOf(launchedPid)];
    killGroup(launchedPid, "SIGKILL");
    const res = await done;
    for (let i = 0; i < 50 && tree.some(isAlive); i++) await sleep(20);
    if (tree.some(isAlive)) throw new Error(`[${this.version}] processes ${tree.filter(isAlive)} survived SIGKILL`);
    const { db, problems } = await this.verify(dbDir, [run]);
    if (problems.length) {
      log(`${this.version}/killed: kill missed (${problems.join("; ")}), retrying`);
      return null;
    }
    // Which process was the engine? 0.32 records it (`pid:<pid>:<uuid>`); 0.5 does not (its bin never delegates).
    const owner = db.runs[0]?.runtime_owner_id;
    let enginePid = launchedPid;
    if (this.dialect === "modern") {
      const m = /^pid:(\d+):/.exec(owner ?? "");
      if (!m) throw new Error(`[${this.version}] killed run has no runtime_owner_id (${owner})`);
      enginePid = Number(m[1]);
      if (!tree.includes(enginePid)) throw new Error(`[${this.version}] engine pid ${enginePid} was not in the killed tree ${tree}`);
    }
    return {
      argv,
      res,
      engine: {
        launchedPid,
        processTree: tree,
        enginePid,
        engineIsLaunchedProcess: enginePid === launchedPid,
        ownerRecorded: this.dialect === "modern",
      },
    };
  }

  /** killed + resumed: the resumed fixture continues exactly the run the killed fixture captured. */
  async killedAndResumed() {
    const input = { tasks: TASKS, sleepMs: SLEEP_MS, gateDir: path.join(SCRATCH, `gate-${this.version}`) };
    const killedRun = this.seqRun("killed", input, "running", EXPECT.killed());
    let dbDir;
    let killed;
    for (let attempt = 1; attempt <= 3 && !killed; attempt++) {
      dbDir = this.dbDir(`killed-${attempt}`);
      killed = await this.killOnce(dbDir, killedRun);
    }
    if (!killed) throw new Error(`[${this.version}] could not kill a run during step-${KILL_AT}`);
    const killedOut = this.outDir("killed");
    copyDbFiles(dbDir, killedOut);
    const killedRec = this.record("killed", killedOut, [killedRun], {
      walExpected: true,
      engine: killed.engine,
      steps: [{ argv: showArgv(killed.argv), exitCode: killed.res.code, signal: killed.res.signal ?? "SIGKILL" }],
    });
    if (!killedRec.walHasData) throw new Error(`[${this.version}] killed DB has no data in -wal`);
    log(`${this.version}/killed done (engine pid ${killed.engine.enginePid}, launched ${killed.engine.launchedPid})`);

    // Continue the same run, in place, the way this engine version really continues a crashed run.
    const steps = [];
    let reset;
    if (this.dialect === "modern") {
      const L = engineLayout(this.version);
      const r = await run([L.bun, path.join(SCRATCH, "reset.ts"), path.join(dbDir, "run.db"), killedRun.runId], { cwd: SCRATCH });
      reset = JSON.parse(r.stdout);
      steps.push({ reset: "attempts in-progress→cancelled, nodes in-progress→pending, heartbeat/owner→NULL", changes: reset });
    }
    // The resumed task KILL_AT and the ones after it may finish.
    for (let n = KILL_AT; n <= TASKS; n++) fs.writeFileSync(path.join(input.gateDir, `release-${n}`), "");
    const argv = resumeArgv(this.version, "seq.tsx", killedRun.runId);
    const res = await this.engine(argv, dbDir, 0);
    steps.push({ argv: showArgv(argv), exitCode: res.code });
    const resumedRun = { ...killedRun, status: "finished", nodes: EXPECT.resumed() };
    const { problems } = await this.verify(dbDir, [resumedRun]);
    if (problems.length) throw new Error(`[${this.version}/resumed] unexpected DB state:\n  ${problems.join("\n  ")}`);
    const out = this.outDir("resumed");
    copyDbFiles(dbDir, out);
    log(`${this.version}/resumed done (${res.ms} ms)`);
    return [
      killedRec,
      this.record("resumed", out, [resumedRun], { walExpected: false, resumedFrom: "killed", steps }),
    ];
  }

  /** 0.32 only: three runs (two workflows) in one DB file. */
  async multi() {
    const dbDir = this.dbDir("multi");
    const a = this.seqRun("multi-a", { tasks: 3, sleepMs: SLEEP_MS }, "finished", seqNodes(3, () => ["finished", ["finished"]]));
    const b = this.seqRun(
      "multi-b",
      { tasks: 3, sleepMs: SLEEP_MS, failAt: 2 },
      "failed",
      seqNodes(3, (n) => (n < 2 ? ["finished", ["finished"]] : n === 2 ? ["failed", ["failed"]] : ["pending", []])),
    );
    const c = {
      runId: runIdFor(this.version, "multi-loop"),
      workflow: "loop",
      workflowFile: `${this.workflowsDir}/loop.tsx`,
      input: { iterations: 3, sleepMs: SLEEP_MS },
      status: "finished",
      nodes: [
        ...[0, 1, 2].map((iteration) => ({ nodeId: "tick", iteration, state: "finished", attempts: ["finished"] })),
        { nodeId: "done", iteration: 0, state: "finished", attempts: ["finished"] },
      ],
    };
    const steps = [];
    for (const [r, file, code] of [
      [a, "seq.tsx", 0],
      [b, "seq.tsx", 1],
      [c, "loop.tsx", 0],
    ]) {
      const argv = startArgv(this.version, file, r.runId, r.input);
      const res = await this.engine(argv, dbDir, code);
      steps.push({ argv: showArgv(argv), exitCode: res.code });
    }
    const { problems } = await this.verify(dbDir, [a, b, c]);
    if (problems.length) throw new Error(`[${this.version}/multi] unexpected DB state:\n  ${problems.join("\n  ")}`);
    const out = this.outDir("multi");
    copyDbFiles(dbDir, out);
    log(`${this.version}/multi done`);
    return this.record("multi", out, [a, b, c], { walExpected: false, steps });
  }

  jobs() {
    const jobs = [
      { weight: 3, fn: () => this.killedAndResumed() },
      {
        weight: 1,
        fn: () => this.simple("finished", { tasks: TASKS, sleepMs: SLEEP_MS }, 0, "finished", EXPECT.finished()),
      },
      {
        weight: 1,
        fn: () => this.simple("failed", { tasks: TASKS, sleepMs: SLEEP_MS, failAt: FAIL_AT }, 1, "failed", EXPECT.failed()),
      },
    ];
    if (this.dialect === "modern") jobs.push({ weight: 3, fn: () => this.multi() });
    return jobs.map((j) => ({ ...j, weight: j.weight * (this.dialect === "modern" ? 2 : 1) }));
  }
}

async function pool(jobs, limit) {
  const results = [];
  let next = 0;
  let failed;
  async function worker() {
    while (next < jobs.length && !failed) {
      const job = jobs[next++];
      try {
        results.push(await job.fn());
      } catch (e) {
        failed ??= e;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  if (failed) throw failed;
  return results.flat();
}

// ------------------------------------------------------------------------------------------- main

async function main() {
  const installs = {};
  for (const v of OPTS.only) {
    const t = await ensureEngine(v);
    if (t) installs[v] = t;
  }

  fs.mkdirSync(OPTS.out, { recursive: true });
  SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-fixtures-"));
  fs.writeFileSync(path.join(SCRATCH, "inspect.ts"), INSPECT_TS);
  fs.writeFileSync(path.join(SCRATCH, "reset.ts"), RESET_TS);
  fs.writeFileSync(path.join(SCRATCH, "bunfig.toml"), '[install]\nauto = "disable"\n');
  for (const v of OPTS.only) fs.rmSync(path.join(OPTS.out, v), { recursive: true, force: true });

  const lanes = OPTS.only.map((v) => new Lane(v));
  for (const l of lanes) l.setup();
  const jobs = lanes.flatMap((l) => l.jobs()).sort((a, b) => b.weight - a.weight);
  const records = await pool(jobs, CONCURRENCY);

  const manifestPath = path.join(OPTS.out, "manifest.json");
  let previous;
  try {
    previous = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  } catch {
    previous = undefined;
  }
  const manifest = {
    schemaVersion: MANIFEST_SCHEMA,
    generator: "scripts/make-fixtures.mjs",
    bunVersion: BUN_VERSION,
    engines: {},
    cases: {},
  };
  if (previous?.schemaVersion === MANIFEST_SCHEMA) {
    for (const [v, e] of Object.entries(previous.engines ?? {})) {
      if (!OPTS.only.includes(v) && fs.existsSync(path.join(OPTS.out, v))) {
        manifest.engines[v] = e;
        manifest.cases[v] = previous.cases?.[v] ?? {};
      }
    }
  }
  for (const v of OPTS.only) {
    manifest.engines[v] = {
      version: v,
      dialect: ENGINES[v].dialect,
      packageJson: ENGINES[v].packageJson,
      workflowsDir: ENGINES[v].workflowsDir,
    };
    manifest.cases[v] = {};
  }
  const order = ["finished", "failed", "killed", "resumed", "multi"];
  records.sort((a, b) => a.engineVersion.localeCompare(b.engineVersion) || order.indexOf(a.case) - order.indexOf(b.case));
  for (const r of records) manifest.cases[r.engineVersion][r.case] = r;
  const sorted = {};
  for (const v of Object.keys(ENGINES)) if (manifest.cases[v]) sorted[v] = manifest.cases[v];
  manifest.cases = sorted;

  fs.writeFileSync(`${manifestPath}.tmp`, JSON.stringify(manifest, null, 2) + "\n");
  fs.renameSync(`${manifestPath}.tmp`, manifestPath);
  log(`wrote ${records.length} cases to ${OPTS.out}${Object.keys(installs).length ? ` (installs: ${JSON.stringify(installs)})` : ""}`);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`make-fixtures: ${e?.stack ?? e}\n`);
  process.exitCode = 1;
} finally {
  killAll();
  cleanupScratch();
}
