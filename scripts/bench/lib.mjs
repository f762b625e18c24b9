/**
 * Shared helpers of `npm run bench` (scripts/bench/run.mjs): child processes that are tracked and killed on
 * exit, the stand-in environment (LIMA_HOME, FABRIK_HOME, limactl first on PATH), limactl call logs, the
 * real-engine fixtures, statistics and formatting. Plain Node ESM, builtins only.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const STANDIN_DIR = path.join(REPO, "scripts", "limactl-standin");
export const LIMACTL = path.join(STANDIN_DIR, "limactl");
export const FABRIK_BIN = path.join(REPO, "bin", "fabrik.js");
export const BENCH_CACHE = path.join(REPO, ".cache", "bench");

// ------------------------------------------------------------------------------------------- processes

/** Every child we started and that has not exited yet: pid → label. Each runs in its own process group. */
const children = new Map();

function killGroup(pid) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

/** Synchronous cleanups to run on exit/interrupt (e.g. half-written files), registered by the benches. */
export const cleanupHooks = new Set();

/** SIGKILL every tracked child's process group, then run the cleanup hooks. */
export function killChildren() {
  for (const pid of children.keys()) killGroup(pid);
  children.clear();
  for (const hook of cleanupHooks) {
    try {
      hook();
    } catch {
      /* best effort */
    }
  }
  cleanupHooks.clear();
}

/**
 * Start `cmd args` in its own process group, tracked for cleanup. Returns `{ child, done }`; `done` resolves to
 * `{ code, signal, stdout, stderr, ms }` (wall time in ms from spawn to close, high resolution).
 */
export function start(cmd, args, { env = process.env, input, cwd = REPO, timeoutMs = 120_000, onStderr } = {}) {
  const t0 = performance.now();
  const child = spawn(cmd, args, { env, cwd, detached: true, stdio: ["pipe", "pipe", "pipe"] });
  if (child.pid) children.set(child.pid, `${path.basename(cmd)} ${args.slice(0, 3).join(" ")}`);
  const out = [];
  const err = [];
  child.stdout.on("data", (d) => out.push(d));
  child.stderr.on("data", (d) => {
    err.push(d);
    onStderr?.(d);
  });
  child.stdin.on("error", () => undefined);
  if (input !== undefined) child.stdin.end(input);
  else child.stdin.end();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid) killGroup(child.pid);
  }, timeoutMs);
  const done = new Promise((resolve, reject) => {
    child.on("error", (e) => {
      clearTimeout(timer);
      if (child.pid) children.delete(child.pid);
      reject(new Error(`cannot start ${cmd}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (child.pid) children.delete(child.pid);
      resolve({
        code: code ?? 128,
        signal,
        timedOut,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        ms,
      });
    });
  });
  return { child, done };
}

/** Run to completion; see {@link start}. */
export function run(cmd, args, opts = {}) {
  return start(cmd, args, opts).done;
}

/** Run and throw (with the tail of stderr) unless it exits 0. */
export async function runOk(cmd, args, opts = {}) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const tail = (r.stderr || r.stdout).trim().split("\n").slice(-8).join("\n");
    throw new Error(`${path.basename(cmd)} ${args.slice(0, 4).join(" ")} exited ${r.code}${r.timedOut ? " (timed out)" : ""}\n${tail}`);
  }
  return r;
}

/** Run items through `fn` with at most `limit` in flight; results in input order. */
export async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// ------------------------------------------------------------------------------------ stand-in world

/** Why the stand-in VMs cannot run here, or undefined when they can. */
export function standinUnavailable() {
  if (process.getuid?.() !== 0) return "the Lima stand-in needs root (Linux namespaces)";
  if (!fs.existsSync("/usr/sbin/sshd")) return "openssh-server is not installed (apt-get install -y openssh-server)";
  for (const tool of ["unshare", "ssh", "scp", "python3", "ps"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is missing`;
  }
  return undefined;
}

/**
 * A fresh world: temp dir with FABRIK_HOME, LIMA_HOME (short: socket paths must stay < 108 chars), a call-log
 * folder, and the environment for fabrik/limactl (stand-in first on PATH, no colour, no inherited fabrik or
 * stand-in tuning variables).
 */
export function makeWorld() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fbench-"));
  const fabrikHome = path.join(tmp, "fh");
  const limaHome = path.join(tmp, "lh");
  const callDir = path.join(tmp, "calls");
  for (const d of [fabrikHome, limaHome, callDir]) fs.mkdirSync(d, { recursive: true });
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith("FABRIK_") || k.startsWith("LIMACTL_STANDIN_") || k === "FORCE_COLOR") delete env[k];
  }
  Object.assign(env, {
    PATH: `${STANDIN_DIR}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    FABRIK_HOME: fabrikHome,
    FABRIK_CONFIG: path.join(tmp, "config.json"),
    FABRIK_DRIVER: "lima",
    LIMA_HOME: limaHome,
    NO_COLOR: "1",
  });
  return { tmp, fabrikHome, limaHome, callDir, env, logSeq: 0 };
}

/**
 * Environment for one measured phase: the stand-in's injected latency and a fresh call log.
 * Returns `{ env, log }`; read the log with {@link readCalls}.
 */
export function phaseEnv(world, label, { latencyMs = 0, extra = {} } = {}) {
  const log = path.join(world.callDir, `${String(++world.logSeq).padStart(3, "0")}-${label.replace(/[^\w.-]+/g, "_")}.log`);
  const env = { ...world.env, LIMACTL_STANDIN_CALL_LOG: log, ...extra };
  if (latencyMs > 0) env.LIMACTL_STANDIN_LATENCY_MS = String(latencyMs);
  return { env, log };
}

/** limactl invocations recorded in a call log: `{ ts (epoch ms), argv, kind }` (kind: shell, list, version, copy, …). */
export function readCalls(log) {
  let text = "";
  try {
    text = fs.readFileSync(log, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const j = JSON.parse(l);
      const words = j.argv.filter((a) => !a.startsWith("--tty") && !a.startsWith("--log-") && a !== "--debug");
      const kind = words[0] === "--version" ? "version" : (words[0] ?? "?");
      return { ts: Date.parse(j.ts), argv: j.argv, kind };
    });
}

/** `{ shell: 1, list: 2 }` of a call list. */
export function callKinds(calls) {
  const out = {};
  for (const c of calls) out[c.kind] = (out[c.kind] ?? 0) + 1;
  return out;
}

/** Run the built fabrik CLI. */
export function fabrik(args, { env, input, timeoutMs = 180_000 } = {}) {
  return run(process.execPath, [FABRIK_BIN, ...args], { env, input, timeoutMs });
}

/** Run fabrik and parse its JSON stdout (throws with stderr on failure). */
export async function fabrikJson(args, opts = {}) {
  const r = await fabrik(args, opts);
  if (r.code !== 0) throw new Error(`fabrik ${args.join(" ")} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`fabrik ${args.join(" ")}: stdout is not JSON: ${r.stdout.slice(0, 300)}`);
  }
}

/** Power off every stand-in VM under the world's LIMA_HOME (SIGKILL of each VM's init, through limactl). */
export function stopAllVms(world) {
  let names = [];
  try {
    names = fs.readdirSync(world.limaHome).filter((n) => !n.startsWith("_") && !n.startsWith("."));
  } catch {
    return 0;
  }
  let stopped = 0;
  for (const n of names) {
    if (!fs.existsSync(path.join(world.limaHome, n, "ha.pid")) && !fs.existsSync(path.join(world.limaHome, n, "qemu.pid"))) continue;
    const r = spawnSync(LIMACTL, ["stop", "-f", n], { env: world.env, stdio: "ignore", timeout: 30_000 });
    if (r.status === 0) stopped++;
  }
  return stopped;
}

// ------------------------------------------------------------------------------------------ fixtures

/** Whether a process with this pid exists (EPERM counts as alive). */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/** Must equal FIXTURE_INPUTS in src/__tests__/helpers/fixtures.ts (the fixture cache key). */
const FIXTURE_INPUTS = [
  "scripts/make-fixtures.mjs",
  "examples/workflows/seq.tsx",
  "examples/workflows/loop.tsx",
  "examples/workflows-legacy/seq.tsx",
  "examples/workflows-legacy/loop.tsx",
];

function fixturesKey() {
  const h = createHash("sha256");
  for (const rel of FIXTURE_INPUTS) h.update(rel).update("\0").update(fs.readFileSync(path.join(REPO, rel))).update("\0");
  return h.digest("hex").slice(0, 16);
}

function readManifest(dir) {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
    const ok = ["0.32.0", "0.5.0"].every((v) => m.cases?.[v]?.finished && m.cases?.[v]?.failed && m.cases?.[v]?.killed);
    return m.schemaVersion === 1 && ok ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The real-engine fixture DBs (same cache as the tests: `.cache/fixtures/<key>/`), built with
 * scripts/make-fixtures.mjs when missing (~30 s on a fresh machine, engines included).
 * @returns `{ dir, manifest, bun }` where `bun` is the fixture engine's bun binary (real path).
 */
export async function ensureFixtures(log) {
  const root = path.join(REPO, ".cache", "fixtures");
  const dir = path.join(root, fixturesKey());
  let manifest = readManifest(dir);
  if (!manifest) {
    log?.(`building real-engine fixtures into ${path.relative(REPO, dir)} (scripts/make-fixtures.mjs) …`);
    const tmp = `${dir}.tmp-bench-${process.pid}`;
    fs.mkdirSync(root, { recursive: true });
    // Leftovers of an interrupted build by an earlier bench.
    for (const f of fs.readdirSync(root)) {
      const m = f.startsWith(`${path.basename(dir)}.tmp-bench-`) ? /(\d+)$/.exec(f) : null;
      if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join(root, f), { recursive: true, force: true });
    }
    try {
      await runOk(process.execPath, [path.join(REPO, "scripts/make-fixtures.mjs"), "--out", tmp, "--quiet"], { timeoutMs: 900_000 });
      if (!readManifest(dir)) {
        fs.rmSync(dir, { recursive: true, force: true });
        fs.renameSync(tmp, dir);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    manifest = readManifest(dir);
    if (!manifest) throw new Error(`make-fixtures.mjs produced no complete manifest in ${dir}`);
  }
  const bunLink = path.join(REPO, ".cache", "engines", "0.32.0", ".runtime", "node_modules", ".bin", "bun");
  const bun = fs.realpathSync(bunLink);
  const marker = path.join(REPO, ".cache", "engines", "0.32.0", ".fabrik-engine.json");
  return { dir, manifest, bun, marker };
}

/** Host paths of one fixture case's DB files: `{ "run.db": path, "run.db-wal"?: path, … }` and its run. */
export function fixtureCase(fx, version, name) {
  const c = fx.manifest.cases[version][name];
  const files = {};
  for (const f of Object.keys(c.files)) files[f] = path.join(fx.dir, c.dir, f);
  return { version, name, files, run: c.runs[0] };
}

// ------------------------------------------------------------------------------------ stats and format

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** 0.42 ms, 4.1 ms, 312 ms, 2.41 s, 9m 12s */
export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return "n/a";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "n/a";
  const sign = n < 0 ? "-" : "";
  n = Math.abs(n);
  if (n < 1024) return `${sign}${n} B`;
  if (n < 1024 ** 2) return `${sign}${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${sign}${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${sign}${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** baseline / measured as "12.3×" (how many times fewer/faster). */
export function fmtRatio(baseline, measured) {
  if (!Number.isFinite(baseline) || !Number.isFinite(measured) || measured <= 0) return "n/a";
  const r = baseline / measured;
  return r >= 100 ? `${Math.round(r)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

/** A plain-text table (no colours), columns padded; `right` = indexes of right-aligned columns. */
export function table(header, rows, { right = [] } = {}) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c ?? "")));
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (right.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
  const sep = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(all[0]), sep, ...all.slice(1).map(line)].join("\n");
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------ A/B runs

/**
 * Run `a` and `b` in turn, `n` times each (A B A B …, after one untimed run of each): pairing keeps a ratio
 * meaningful when the machine's speed drifts. Each function returns its wall time in ms (or `{ ms, … }`).
 * @returns `{ a: ms[], b: ms[], ratio }`: `ratio` is the median of the pairwise ratios a/b.
 */
export async function interleave(n, a, b, { warmup = 1 } = {}) {
  const ms = async (f) => {
    const r = await f();
    return typeof r === "number" ? r : r.ms;
  };
  for (let i = 0; i < warmup; i++) {
    await ms(a);
    await ms(b);
  }
  const as = [];
  const bs = [];
  for (let i = 0; i < n; i++) {
    as.push(await ms(a));
    bs.push(await ms(b));
  }
  return { a: as, b: bs, ratio: median(as.map((x, i) => x / bs[i])) };
}

/** The bench's CPU hook (cpu-hook.cjs) as NODE_OPTIONS for fabrik, logging to `log`. */
export function cpuHookEnv(env, log) {
  const hook = path.join(REPO, "scripts", "bench", "cpu-hook.cjs");
  return { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ? env.NODE_OPTIONS + " " : ""}--require ${hook}`, BENCH_CPU_LOG: log };
}

/** The lines a CPU hook log holds: `{ pid, user_us, sys_us, max_rss_kib }` (cpu_ms = user + system in ms). */
export function readCpuLog(log) {
  let text = "";
  try {
    text = fs.readFileSync(log, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const j = JSON.parse(l);
      return { ...j, cpu_ms: (j.user_us + j.sys_us) / 1000 };
    });
}

/**
 * Environment whose limactl counts the bytes of every call (scripts/bench/count-bytes/limactl, first on PATH):
 * for UNTIMED runs only (the counter adds a shell and a temporary file per call). Read the log with {@link readBytesLog}.
 */
export function bytesEnv(env, log) {
  return { ...env, PATH: `${path.join(REPO, "scripts", "bench", "count-bytes")}:${env.PATH}`, BENCH_BYTES_LOG: log, BENCH_REAL_LIMACTL: LIMACTL };
}

/** `[{ argv, stdin }]` bytes per call from a count-bytes log. */
export function readBytesLog(log) {
  let text = "";
  try {
    text = fs.readFileSync(log, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const [argv, stdin] = l.trim().split(/\s+/).map(Number);
      return { argv, stdin, total: argv + stdin };
    });
}
