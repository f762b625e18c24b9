/**
 * Bench 3: the probe on a ~1 GB Smithers DB.
 *
 * The DB is a copy of the real 0.32 `finished` fixture DB grown with `_smithers_attempts` rows for its run whose
 * response_text values total 1 000 000 000 bytes, the largest 400 000 000 (make-big-db.js, run by the fixture
 * engine's bun). It lives in `.cache/bench/big-1g.db` and is reused while its stamp matches.
 *
 * Measured (page cache warm for both, after one untimed run of each):
 * - fabrik: `bun dist/guest/probe.js` with the request on stdin (process start included), as the VM runs it;
 * - baseline: python3 (stdlib sqlite3, SQLite 3.40: no octet_length) doing
 *   `SELECT max(length(response_text)) FROM _smithers_attempts WHERE run_id = ?`, which reads every value.
 */
import fs from "node:fs";
import path from "node:path";
import { BENCH_CACHE, REPO, cleanupHooks, median, pidAlive, run, runOk } from "./lib.mjs";

export const BIG_SIZES = [400e6, 250e6, 150e6, 100e6, 50e6, 30e6, 20e6];
const STAMP_VERSION = 1;

function stampOf(fx) {
  const c = fx.manifest.cases["0.32.0"].finished;
  return { v: STAMP_VERSION, sizes: BIG_SIZES, fixture: c.files["run.db"].sha256, runId: c.runs[0].runId };
}

/** Remove the empty -wal/-shm a read-only SQLite connection may leave beside a WAL-mode DB. */
export function dropEmptyWal(db) {
  const wal = fs.statSync(`${db}-wal`, { throwIfNoEntry: false });
  if (wal && wal.size === 0) fs.rmSync(`${db}-wal`, { force: true });
  if (!fs.existsSync(`${db}-wal`)) fs.rmSync(`${db}-shm`, { force: true });
}

/** The big DB (built when missing or stale). Returns `{ db, runId, bytes, built, buildMs }`. */
export async function ensureBigDb(fx, log) {
  const db = path.join(BENCH_CACHE, "big-1g.db");
  const stampFile = `${db}.json`;
  const want = stampOf(fx);
  try {
    const st = JSON.parse(fs.readFileSync(stampFile, "utf8"));
    const size = fs.statSync(db).size;
    if (JSON.stringify(st.stamp) === JSON.stringify(want) && st.size === size) {
      dropEmptyWal(db);
      return { db, runId: want.runId, bytes: size, built: false, buildMs: 0 };
    }
  } catch {
    /* build it */
  }
  fs.mkdirSync(BENCH_CACHE, { recursive: true });
  const tmp = `${db}.tmp-${process.pid}`;
  for (const f of [db, stampFile, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true });
  // Leftovers of an interrupted generation.
  for (const f of fs.readdirSync(BENCH_CACHE)) {
    const m = f.startsWith(`${path.basename(db)}.tmp-`) ? /\.tmp-(\d+)/.exec(f) : null;
    if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join(BENCH_CACHE, f), { force: true });
  }
  log?.(`generating ${path.relative(REPO, db)} (~1 GB, once; reused afterwards) …`);
  const t0 = performance.now();
  const dropTmp = () => {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) fs.rmSync(f, { force: true });
  };
  cleanupHooks.add(dropTmp);
  try {
    fs.copyFileSync(path.join(fx.dir, fx.manifest.cases["0.32.0"].finished.db), tmp);
    const r = await runOk(fx.bun, [path.join(REPO, "scripts/bench/make-big-db.js"), tmp, want.runId, ...BIG_SIZES.map(String)], { timeoutMs: 600_000 });
    const check = JSON.parse(r.stdout.trim().split("\n").at(-1));
    if (check.max !== Math.max(...BIG_SIZES) || check.total < BIG_SIZES.reduce((a, b) => a + b, 0)) {
      throw new Error(`big DB check failed: ${r.stdout.trim()}`);
    }
    for (const f of [`${tmp}-wal`, `${tmp}-shm`]) fs.rmSync(f, { force: true });
    fs.renameSync(tmp, db);
  } finally {
    cleanupHooks.delete(dropTmp);
    dropTmp();
  }
  const size = fs.statSync(db).size;
  fs.writeFileSync(stampFile, JSON.stringify({ stamp: want, size, createdAt: new Date().toISOString() }) + "\n");
  return { db, runId: want.runId, bytes: size, built: true, buildMs: performance.now() - t0 };
}

const NAIVE_PY = `import sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(conn.execute("SELECT max(length(response_text)) FROM _smithers_attempts WHERE run_id = ?", (sys.argv[2],)).fetchone()[0])
conn.close()
`;

/**
 * Time the probe and the naive reader on the big DB.
 * @returns `{ probeMs[], naiveMs[], fallbackMs[], probeMax, naiveMax, oversized, dbBytes }`
 */
export async function benchBigDb(big, fx, { probeReps = 7, naiveReps = 3, log } = {}) {
  const req = JSON.stringify({
    v: 1,
    runs: [{ key: "1", control_dir: null, db_path: big.db, smithers_run_id: big.runId }],
    nodes: false,
    max_nodes: 500,
    row_size_warn_bytes: 102400,
    discover_roots: [],
    error_chars: 500,
  });
  const probeJs = path.join(REPO, "dist/guest/probe.js"); // `npm run bench` builds it
  const probeOnce = async (cmd, script) => {
    dropEmptyWal(big.db);
    const r = await runOk(cmd, [script], { input: req + "\n", timeoutMs: 120_000 });
    const res = JSON.parse(r.stdout.trim().split("\n").at(-1));
    const d = res.runs[0].db;
    if (!d || d.error) throw new Error(`probe on the big DB failed: ${JSON.stringify(res.runs[0]).slice(0, 400)}`);
    return { ms: r.ms, d, tool: res.tool };
  };
  const naiveOnce = async () => {
    const r = await runOk("python3", ["-c", NAIVE_PY, big.db, big.runId], { timeoutMs: 300_000 });
    dropEmptyWal(big.db);
    return { ms: r.ms, max: Number(r.stdout.trim()) };
  };
  // One untimed run of each: page cache warm for both (the baseline's favour: cold, it reads 1 GB from disk).
  const first = await probeOnce(fx.bun, probeJs);
  await naiveOnce();
  const probeMs = [];
  for (let i = 0; i < probeReps; i++) probeMs.push((await probeOnce(fx.bun, probeJs)).ms);
  const naive = [];
  for (let i = 0; i < naiveReps; i++) naive.push(await naiveOnce());
  log?.(
    `probe ${median(probeMs).toFixed(1)} ms (max_response_text_bytes ${first.d.max_response_text_bytes}), ` +
      `naive ${median(naive.map((n) => n.ms)).toFixed(0)} ms (max length ${naive[0].max})`,
  );
  return {
    probeMs,
    naiveMs: naive.map((n) => n.ms),
    probeMax: first.d.max_response_text_bytes,
    oversized: first.d.oversized_values,
    naiveMax: naive[0].max,
    dbBytes: big.bytes,
  };
}

/** Whether python3 and the fixture bun are usable (bench 3 needs no root). */
export async function bigDbUnavailable(fx) {
  const r = await run("python3", ["-c", "import sqlite3; print(sqlite3.sqlite_version)"]).catch(() => undefined);
  if (!r || r.code !== 0) return "python3 with sqlite3 is missing";
  if (!fs.existsSync(fx.bun)) return "the fixture engine's bun is missing";
  return undefined;
}
