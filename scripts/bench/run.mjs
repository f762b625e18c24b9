#!/usr/bin/env node
/**
 * `npm run bench` — fabrik against baselines a user would really script (README.md in this folder).
 *
 * Every target is measured in one run and printed as a ratio fabrik / baseline (lower is better) with its target
 * and PASS/MISS. Baselines make the same remote calls (or run the same probes) as fabrik, on the same VMs, runs and
 * injected latency, and each pair is measured interleaved (A B A B …): the ratio is the median of the pairwise
 * ratios. The exit status is 0 whatever the numbers are, 1 only when the bench itself breaks. Progress on stderr,
 * the report on stdout.
 *
 * Benches: S start-up (no VM) · L lists of 100 000 cached runs (no VM) · F a fleet of stand-in Lima VMs (root,
 * sshd) · P local-driver VMs · D the probe on a ~1 GB DB · W watch refresh over SSH (root, sshd) · R the ssh driver
 * over 50 real OpenSSH hosts × 10 runs (root, sshd; ssh-scale.mjs; only when asked: BENCH_ONLY=R or …,R).
 * Knobs (environment): BENCH_ONLY=S,L,F,P,D,W[,R]  BENCH_LATENCY_MS=200  BENCH_PAIRS=<scale, default 1>
 * BENCH_REFRESHES=5000  BENCH_KEEP=1 (keep the temp folder; the VMs are still stopped).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { build } from "esbuild";
import {
  LIMACTL,
  REPO,
  bytesEnv,
  callKinds,
  cpuHookEnv,
  ensureFixtures,
  fabrik,
  fabrikJson,
  fmtBytes,
  fmtMs,
  interleave,
  killChildren,
  makeWorld,
  median,
  percentile,
  phaseEnv,
  readBytesLog,
  readCalls,
  readCpuLog,
  run,
  standinUnavailable,
  stopAllVms,
  table,
} from "./lib.mjs";
import { naiveRunStatus } from "./naive.mjs";
import { bashRunStatus, pythonFleetStatus, xargsLocalProbes } from "./baselines.mjs";
import { runAt, setupFleet, setupLocalFleet } from "./fleet.mjs";
import { listSql, makeRegistry } from "./registry.mjs";
import { benchBigDb, bigDbUnavailable, ensureBigDb } from "./bigdb.mjs";
import { sshScaleBench } from "./ssh-scale.mjs";

const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!(n > 0)) {
    process.stderr.write(`bench: ${name} must be a positive number, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
};
const CFG = {
  latencyMs: num("BENCH_LATENCY_MS", 200),
  scale: num("BENCH_PAIRS", 1),
  refreshes: Math.round(num("BENCH_REFRESHES", 5000)),
  only: new Set((process.env.BENCH_ONLY ?? "S,L,F,P,D,W").split(",").map((s) => s.trim().toUpperCase()).filter(Boolean)),
  keep: process.env.BENCH_KEEP === "1",
};
/** Pairs per comparison, scaled by BENCH_PAIRS. */
const pairs = (n) => Math.max(3, Math.round(n * CFG.scale));

const T0 = performance.now();
const elapsed = () => `${((performance.now() - T0) / 1000).toFixed(1)}s`;
const log = (msg) => process.stderr.write(`[bench +${elapsed()}] ${msg}\n`);
const out = (msg = "") => process.stdout.write(`${msg}\n`);

/** Report rows: [bench, what, fabrik, baseline, ratio, target, result]. */
const rows = [];
const notes = [];
let broken = false;
const fmtX = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a");
/** A target row: `ratio` (fabrik / baseline) against `max`. */
function target(bench, what, fab, base, ratio, max) {
  rows.push([bench, what, fab, base, fmtX(ratio), `≤ ${max.toFixed(2)}×`, ratio <= max ? "PASS" : "MISS"]);
}
const spread = (xs) => `${fmtMs(Math.min(...xs))}–${fmtMs(Math.max(...xs))}`;

// ------------------------------------------------------------------------------------------- cleanup

let world;
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  killChildren();
  if (!world) return;
  const n = stopAllVms(world);
  if (n > 0) log(`stopped ${n} stand-in VM(s)`);
  if (CFG.keep) log(`kept ${world.tmp}`);
  else fs.rmSync(world.tmp, { recursive: true, force: true });
}
process.on("exit", cleanup);
process.stdout.on("error", (err) => {
  if (err.code !== "EPIPE") throw err;
  cleanup();
  process.exit(0);
});
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    process.stderr.write(`\n[bench] ${sig}: stopping every VM and process it started …\n`);
    cleanup();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

/** Run fabrik, throw unless it exits 0; returns the run (ms, stdout, …). */
async function fabrikOk(args, env, what = args.join(" ")) {
  const r = await fabrik(args, { env });
  if (r.code !== 0) throw new Error(`fabrik ${what} exited ${r.code}: ${r.stderr.slice(-600)}`);
  return r;
}

/** One run of `cmd args`, throwing unless it exits 0; returns its wall ms. */
async function timed(cmd, args, opts = {}) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(" ")} exited ${r.code}: ${r.stderr.slice(-400)}`);
  return r.ms;
}

// --------------------------------------------------------------------------------- S: start-up, L: lists

async function benchStartupAndLists() {
  const small = path.join(world.tmp, "home-1k");
  const big = path.join(world.tmp, "home-100k");
  log("registries of 1 000 and 100 000 cached runs …");
  await makeRegistry(small, 1_000, world.env);
  await makeRegistry(big, 100_000, world.env);
  const envSmall = { ...world.env, FABRIK_HOME: small };
  const envBig = { ...world.env, FABRIK_HOME: big };
  const node0 = () => timed(process.execPath, ["-e", "0"]);
  const fab = (env, args) => async () => (await fabrikOk(args, env)).ms;

  if (CFG.only.has("S")) {
    out(`\n## S. Start-up: fabrik vs \`node -e 0\` (interleaved, median of pairwise ratios; compile cache warm)`);
    const cases = [
      ["--version", ["--version"], 1.3],
      ["--help", ["--help"], 2.0],
      ["runs show --id 500 --no-live", ["runs", "show", "--id", "500", "--no-live"], 2.0],
    ];
    const t = [];
    for (const [label, args, max] of cases) {
      const n = pairs(21);
      const r = await interleave(n, fab(envSmall, args), node0, { warmup: 2 });
      t.push([`fabrik ${label}`, fmtMs(median(r.a)), fmtMs(median(r.b)), fmtX(r.ratio), String(n), `${spread(r.a)} / ${spread(r.b)}`]);
      target("S", `${label} vs node -e 0`, fmtMs(median(r.a)), fmtMs(median(r.b)), r.ratio, max);
    }
    out(table(["", "fabrik", "node -e 0", "ratio", "pairs", "spread (fabrik / node)"], t));
    // The first run after an install or upgrade compiles without the cache (and writes it).
    const cold = [];
    for (let i = 0; i < 5; i++) cold.push((await fabrikOk(["runs", "show", "--id", "500", "--no-live"], { ...envSmall, NODE_DISABLE_COMPILE_CACHE: "1" })).ms);
    notes.push(`S: without the compile cache (the first run of a kind of command after an install; NODE_DISABLE_COMPILE_CACHE=1) \`runs show --no-live\` takes ${fmtMs(median(cold))}.`);
  }

  if (CFG.only.has("L")) {
    out(`\n## L. Lists of cached runs (no VM): 100 000 runs`);
    const json = path.join(world.tmp, "list.json");
    const sq = path.join(world.tmp, "sqlite.json");
    // Both write to a file (a pipe would add the reader's time to both).
    const full = await interleave(
      pairs(5),
      () => timed("sh", ["-c", 'exec "$0" "$1" runs list --no-live --limit 100000 --json > "$2"', process.execPath, path.join(REPO, "bin/fabrik.js"), json], { env: envBig }),
      () => timed("sh", ["-c", 'exec sqlite3 -json "$0" "$1" > "$2"', path.join(big, "registry.db"), listSql(100_000), sq]),
    );
    const rowsOut = (fs.readFileSync(json, "utf8").match(/\n\{/g) ?? []).length;
    if (rowsOut !== 100_000) throw new Error(`runs list --json printed ${rowsOut} rows, expected 100000`);
    // Peak memory, with fabrik's stdout a pipe that is read slower than fabrik writes (backpressure).
    const cpuLog = path.join(world.tmp, "cpu-list.log");
    const piped = await run("sh", ["-c", '"$0" "$1" runs list --no-live --limit 100000 --json | (sleep 1; wc -c)', process.execPath, path.join(REPO, "bin/fabrik.js")], {
      env: cpuHookEnv(envBig, cpuLog),
    });
    const rss = readCpuLog(cpuLog).at(-1)?.max_rss_kib * 1024;
    const fileRss = [];
    for (let i = 0; i < 2; i++) {
      const l = path.join(world.tmp, `cpu-list-file-${i}.log`);
      await timed("sh", ["-c", 'exec "$0" "$1" runs list --no-live --limit 100000 --json > "$2"', process.execPath, path.join(REPO, "bin/fabrik.js"), json], { env: cpuHookEnv(envBig, l) });
      fileRss.push(readCpuLog(l).at(-1)?.max_rss_kib * 1024);
    }
    const dflt = await interleave(pairs(15), fab(envBig, ["runs", "list", "--no-live"]), fab(envSmall, ["runs", "list", "--no-live"]), { warmup: 2 });
    out(
      table(
        ["", "fabrik", "baseline", "ratio", "pairs"],
        [
          ["runs list --no-live --limit 100000 --json vs sqlite3 -json (same rows)", fmtMs(median(full.a)), fmtMs(median(full.b)), fmtX(full.ratio), String(full.a.length)],
          ["runs list --no-live (20 rows): 100 000 vs 1 000 cached runs", fmtMs(median(dflt.a)), fmtMs(median(dflt.b)), fmtX(dflt.ratio), String(dflt.a.length)],
        ],
      ),
    );
    const outBytes = fs.statSync(json).size;
    out(
      `output: fabrik ${fmtBytes(outBytes)} (the full RunView of each run), sqlite3 ${fmtBytes(fs.statSync(sq).size)} (the raw columns); ` +
        `peak RSS ${fmtBytes(rss)} into a slow pipe (${piped.stdout.trim()} bytes read), ${fileRss.map(fmtBytes).join(", ")} into a file`,
    );
    target("L", "runs list --json, 100 000 runs vs sqlite3 -json", fmtMs(median(full.a)), fmtMs(median(full.b)), full.ratio, 2.0);
    const peak = Math.max(rss, ...fileRss);
    rows.push(["L", "  peak RSS of that list", fmtBytes(peak), "-", "-", "< 150 MiB", peak < 150 * 1024 * 1024 ? "PASS" : "MISS"]);
    target("L", "runs list --no-live: 100 000 vs 1 000 runs", fmtMs(median(dflt.a)), fmtMs(median(dflt.b)), dflt.ratio, 1.2);
  }
}

// ------------------------------------------------------------------------------------ F: the Lima fleet

async function benchFleet(fx) {
  const nVms = 10;
  const perVm = 20;
  log(`setting up ${nVms} stand-in VMs × ${perVm} runs …`);
  const fleet = await setupFleet(world, fx, { vms: nVms, runsPerVm: perVm, log });
  const lat = { latencyMs: CFG.latencyMs };
  const vm = fleet.vms[0];
  const target3 = runAt(fleet, vm, 3); // the 0.32 `killed` fixture: an orphaned run with its WAL
  const id = String(target3.id);
  out(`\n## F. A fleet of ${nVms} stand-in Lima VMs × ${perVm} runs (LIMACTL_STANDIN_LATENCY_MS=${CFG.latencyMs} on every limactl call)`);

  // --- runs show, live, vs ONE bash call -------------------------------------------------------------------------
  const w = phaseEnv(world, "show-warmup", lat);
  await fabrikOk(["runs", "show", "--id", id], w.env);
  const warmCalls = readCalls(w.log);
  const showCalls = [];
  const show = await interleave(
    pairs(11),
    async () => {
      const p = phaseEnv(world, "show", lat);
      const r = await fabrikOk(["runs", "show", "--id", id], p.env);
      showCalls.push(readCalls(p.log).length);
      return r.ms;
    },
    async () => (await bashRunStatus(phaseEnv(world, "show-bash", lat).env, vm, target3)).ms,
  );
  const manual = [];
  for (let i = 0; i < 3; i++) manual.push((await naiveRunStatus(phaseEnv(world, "show-manual", lat).env, vm, target3)).ms);
  const bShow = path.join(world.tmp, "bytes-show.log");
  await fabrikOk(["runs", "show", "--id", id], bytesEnv(phaseEnv(world, "show-bytes", lat).env, bShow));
  const showBytes = readBytesLog(bShow);
  const showCpuLog = path.join(world.tmp, "cpu-show.log");
  for (let i = 0; i < 5; i++) await fabrikOk(["runs", "show", "--id", id], cpuHookEnv(phaseEnv(world, "show-cpu", lat).env, showCpuLog));
  const showCachedLog = path.join(world.tmp, "cpu-show-cached.log");
  for (let i = 0; i < 5; i++) await fabrikOk(["runs", "show", "--id", id, "--no-live"], cpuHookEnv(world.env, showCachedLog));
  const showCpu = median(readCpuLog(showCpuLog).map((c) => c.cpu_ms));
  const showCachedCpu = median(readCpuLog(showCachedLog).map((c) => c.cpu_ms));
  out(
    table(
      [`runs show --id ${id} (${vm}, orphaned)`, "limactl calls", "wall (median)", "runs"],
      [
        ["fabrik runs show", `${Math.max(...showCalls)} ${JSON.stringify(callKinds(warmCalls))}`, fmtMs(median(show.a)), spread(show.a)],
        ["one limactl shell bash call (the guide's fields)", "1", fmtMs(median(show.b)), spread(show.b)],
        ["the guide's manual steps, one call per field", "9", fmtMs(median(manual)), spread(manual)],
      ],
    ),
  );
  out(
    `bytes per call: ${showBytes.map((b) => `${b.total} B (argv ${b.argv}, stdin ${b.stdin})`).join("; ")}; ` +
      `fabrik's own CPU: ${fmtMs(showCpu)} live vs ${fmtMs(showCachedCpu)} with --no-live (start-up, registry, render) → ${fmtMs(showCpu - showCachedCpu)} for its one call`,
  );
  target("F", "runs show (live) vs one bash call", fmtMs(median(show.a)), fmtMs(median(show.b)), show.ratio, 1.3);
  rows.push(["F", "  limactl calls of runs show", String(Math.max(...showCalls)), "1", "-", "exactly 1", showCalls.every((c) => c === 1) ? "PASS" : "MISS"]);
  rows.push(["F", "  vs the guide's manual steps (9 calls)", fmtMs(median(show.a)), fmtMs(median(manual)), fmtX(median(show.a) / median(manual)), "(information)", "-"]);

  // --- runs list over the fleet, vs python3 probes in parallel -----------------------------------------------------
  const total = fleet.runs.length;
  const listArgs = ["runs", "list", "--limit", String(total), "--json"];
  const listCalls = [];
  const list = await interleave(
    pairs(9),
    async () => {
      const p = phaseEnv(world, "list", lat);
      const r = await fabrikOk(listArgs, p.env);
      const views = JSON.parse(r.stdout);
      if (views.length !== total || views.some((v) => v.source !== "live")) throw new Error(`runs list: ${views.length} rows, ${views.filter((v) => v.source === "live").length} live (expected ${total})`);
      listCalls.push(readCalls(p.log));
      return r.ms;
    },
    async () => {
      const r = await pythonFleetStatus(phaseEnv(world, "list-python", lat).env, fleet.byVm);
      if (r.rows !== total) throw new Error(`python3 baseline reported ${r.rows} runs, expected ${total}`);
      return r.ms;
    },
  );
  const bList = path.join(world.tmp, "bytes-list.log");
  await fabrikOk(listArgs, bytesEnv(phaseEnv(world, "list-bytes", lat).env, bList));
  const listBytes = readBytesLog(bList);
  const listCpuLog = path.join(world.tmp, "cpu-list-live.log");
  const cachedCpuLog = path.join(world.tmp, "cpu-list-cached.log");
  for (let i = 0; i < 5; i++) {
    await fabrikOk(listArgs, cpuHookEnv(phaseEnv(world, "list-cpu", lat).env, listCpuLog));
    await fabrikOk([...listArgs, "--no-live"], cpuHookEnv(world.env, cachedCpuLog));
  }
  const liveCpu = median(readCpuLog(listCpuLog).map((c) => c.cpu_ms));
  const cachedCpu = median(readCpuLog(cachedCpuLog).map((c) => c.cpu_ms));
  const calls = listCalls.at(-1);
  const starts = calls.map((c) => c.ts).sort((a, b) => a - b);
  const inFlight = starts.reduce((best, s, i) => Math.max(best, starts.slice(0, i + 1).filter((x) => s - x < CFG.latencyMs).length), 0);
  const cap = (await fabrikJson(["config", "get", "probe.concurrency", "--json"], { env: world.env })).value;
  out(
    table(
      [`runs list, ${nVms} VMs × ${perVm} runs`, "limactl calls", "wall (median)", "runs"],
      [
        [`fabrik runs list --limit ${total} --json (probe concurrency ${cap})`, `${Math.max(...listCalls.map((c) => c.length))} ${JSON.stringify(callKinds(calls))}`, fmtMs(median(list.a)), spread(list.a)],
        [`python3, one limactl shell per VM, all in parallel`, String(nVms), fmtMs(median(list.b)), spread(list.b)],
      ],
    ),
  );
  const perCall = (liveCpu - cachedCpu) / nVms;
  out(
    `bytes per call: median ${median(listBytes.map((b) => b.total))} B (argv ${median(listBytes.map((b) => b.argv))}, stdin ${median(listBytes.map((b) => b.stdin))}) for ${perVm} runs; ` +
      `up to ${inFlight} calls in flight; fabrik's own CPU: ${fmtMs(liveCpu)} live vs ${fmtMs(cachedCpu)} with --no-live → ${fmtMs(perCall)} of host CPU per call ` +
      `(spawning limactl, reading and validating its answer, deriving and writing back ${perVm} runs)`,
  );
  target("F", `runs list ${nVms}×${perVm} vs python3 in parallel`, fmtMs(median(list.a)), fmtMs(median(list.b)), list.ratio, 1.0);
  rows.push(["F", "  limactl calls of runs list", String(Math.max(...listCalls.map((c) => c.length))), String(nVms), "-", `1 per VM (${nVms})`, listCalls.every((c) => c.length === nVms) ? "PASS" : "MISS"]);
  rows.push(["F", "  bytes per call (20 runs)", `${median(listBytes.map((b) => b.total))} B`, "-", "-", "< 4 KB", median(listBytes.map((b) => b.total)) < 4096 ? "PASS" : "MISS"]);
  rows.push(["F", "  fabrik's host CPU per call", fmtMs(perCall), "-", "-", "(measured)", "-"]);
  return fleet;
}

// ---------------------------------------------------------------------------------- P: local-driver VMs

async function benchLocal(fx) {
  const nVms = 50;
  const perVm = 2;
  log(`setting up ${nVms} local VMs × ${perVm} runs …`);
  // A FABRIK_HOME of its own: `runs list` here lists the local VMs' runs only.
  const env = { ...world.env, FABRIK_HOME: path.join(world.tmp, "home-local") };
  const lf = await setupLocalFleet({ ...world, env }, fx, { vms: nVms, runsPerVm: perVm, log });
  out(`\n## P. ${nVms} local-driver VMs × ${perVm} runs: fabrik runs list vs the same ${nVms} probes run by xargs -P16`);
  const total = lf.runs.length;
  const args = ["runs", "list", "--limit", String(total), "--json"];
  await fabrikOk(args, env); // installs the probe in every VM
  // The same probes: each VM's installed probe.js, the request fabrik sends it (probeRequestFor's fields).
  const jobs = lf.vms.map((vm) => {
    const home = lf.homes.get(vm);
    const gdir = path.join(home, ".fabrik", "guest");
    const hash = fs.readdirSync(gdir).find((h) => fs.existsSync(path.join(gdir, h, "probe.js")));
    if (!hash) throw new Error(`no installed probe in local VM ${vm}`);
    const runs = lf.byVm.get(vm);
    return {
      vm,
      home,
      probeJs: path.join(gdir, hash, "probe.js"),
      request: {
        v: 1,
        runs: runs.map((r) => ({ key: String(r.id), control_dir: r.control_dir, db_path: r.db_path, smithers_run_id: r.smithers_run_id })),
        nodes: false,
        max_nodes: 500,
        row_size_warn_bytes: 102400,
        discover_roots: [],
        error_chars: 500,
      },
    };
  });
  const xdir = path.join(world.tmp, "xargs");
  const r = await interleave(
    pairs(9),
    async () => {
      const res = await fabrikOk(args, env);
      const views = JSON.parse(res.stdout);
      if (views.length !== total || views.some((v) => v.source !== "live")) throw new Error(`local runs list: ${views.length} rows, not all live`);
      return res.ms;
    },
    async () => {
      const x = await xargsLocalProbes(fx.bun, jobs, xdir);
      if (x.runs !== total) throw new Error(`xargs baseline: ${x.runs} run results, expected ${total}`);
      return x.ms;
    },
  );
  const liveLog = path.join(world.tmp, "cpu-local-live.log");
  const cachedLog = path.join(world.tmp, "cpu-local-cached.log");
  for (let i = 0; i < 5; i++) {
    await fabrikOk(args, cpuHookEnv(env, liveLog));
    await fabrikOk([...args, "--no-live"], cpuHookEnv(env, cachedLog));
  }
  const liveCpu = median(readCpuLog(liveLog).map((c) => c.cpu_ms));
  const cachedCpu = median(readCpuLog(cachedLog).map((c) => c.cpu_ms));
  const perCall = (liveCpu - cachedCpu) / nVms;
  out(
    table(
      ["", "wall (median)", "runs"],
      [
        [`fabrik runs list --limit ${total} --json (${nVms} probe calls)`, fmtMs(median(r.a)), spread(r.a)],
        [`xargs -P16: HOME=<vm home> bun <probe.js> < request, ${nVms} times`, fmtMs(median(r.b)), spread(r.b)],
      ],
    ),
  );
  out(`fabrik's own CPU: ${fmtMs(liveCpu)} live vs ${fmtMs(cachedCpu)} with --no-live → ${fmtMs(perCall)} of host CPU per call (spawn through the local driver, validation, derivation, write-back)`);
  target("P", `runs list ${nVms} local VMs × ${perVm} vs xargs -P16`, fmtMs(median(r.a)), fmtMs(median(r.b)), r.ratio, 1.3);
  rows.push(["P", "  fabrik's host CPU per call", fmtMs(perCall), "-", "-", "(measured)", "-"]);
}

// ----------------------------------------------------------------------------- D: the probe on a 1 GB DB

async function benchBigDbRow(fx) {
  const why = await bigDbUnavailable(fx);
  if (why) {
    rows.push(["D", "probe on ~1 GB DB", "-", "-", "-", "< 200 ms", `SKIP (${why})`]);
    return;
  }
  const big = await ensureBigDb(fx, log);
  out(`\n## D. The probe on a ${(big.bytes / 1e9).toFixed(2)} GB Smithers DB (${path.relative(REPO, big.db)}${big.built ? `, generated in ${fmtMs(big.buildMs)}` : ", reused"})`);
  const r = await benchBigDb(big, fx, { log });
  const pMs = median(r.probeMs);
  const nMs = median(r.naiveMs);
  out(`bun dist/guest/probe.js (octet_length): ${fmtMs(pMs)}; python3 max(length(response_text)): ${fmtMs(nMs)} (page cache warm for both)`);
  const correct = r.probeMax === r.naiveMax;
  rows.push(["D", `probe on ${(big.bytes / 1e9).toFixed(2)} GB DB (vs python3 reading it)`, fmtMs(pMs), fmtMs(nMs), fmtX(pMs / nMs), "< 200 ms", pMs < 200 && correct ? "PASS" : "MISS"]);
  if (!correct) notes.push(`D: the probe's max_response_text_bytes (${r.probeMax}) differs from python3's answer (${r.naiveMax})`);
}

// -------------------------------------------------------------------------- W: watch refresh over SSH

async function benchWatch(fleet, fx) {
  const vm = fleet.vms[0];
  const t = runAt(fleet, vm, 3);
  const bundle = path.join(REPO, "dist", "bench", "watch-refresh.mjs");
  await build({
    absWorkingDir: REPO,
    entryPoints: [path.join(REPO, "scripts/bench/watch-refresh.mjs")],
    outfile: bundle,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: ["ssh2", "cpu-features", "*.node", "better-sqlite3"],
    banner: { js: 'import { createRequire as __benchRequire } from "node:module"; const require = __benchRequire(import.meta.url);' },
    logLevel: "warning",
  });
  const info = await run(LIMACTL, ["list", "--json", vm], { env: world.env });
  const guestHome = JSON.parse(info.stdout.trim().split("\n")[0]).config.user.home;
  const hostHome = path.join(world.limaHome, vm, "guest-home");
  const toHost = (p) => (p.startsWith(guestHome + "/") ? hostHome + p.slice(guestHome.length) : p);
  const probeRun = { key: String(t.id), control_dir: t.control_dir, db_path: t.db_path, smithers_run_id: t.smithers_run_id };
  const base = { v: 1, nodes: true, max_nodes: 500, row_size_warn_bytes: 102400, discover_roots: [], error_chars: 500 };
  const params = {
    vm,
    fabrikHome: world.fabrikHome,
    callDir: world.callDir,
    bun: fx.bun,
    req: { ...base, runs: [probeRun] },
    localReq: { ...base, runs: [{ ...probeRun, control_dir: toHost(probeRun.control_dir), db_path: toHost(probeRun.db_path) }] },
    driverRefreshes: 10,
    timedRefreshes: 300,
    memRefreshes: CFG.refreshes,
  };
  out(`\n## W. Watch refresh: the long-lived SSH probe channel vs one limactl shell per refresh (VM ${vm}, run ${t.id}, nodes: true)`);
  const r = await run(process.execPath, ["--expose-gc", bundle, JSON.stringify(params)], {
    env: { ...world.env, LIMACTL_STANDIN_LATENCY_MS: String(CFG.latencyMs) },
    timeoutMs: 600_000,
    onStderr: (d) => process.stderr.write(d),
  });
  if (r.code !== 0) throw new Error(`watch-refresh exited ${r.code}`);
  const w = JSON.parse(r.stdout.trim().split("\n").at(-1));
  const dMs = median(w.driverMs);
  const sMs = median(w.sshMs);
  const qMs = median(w.localMs);
  const dHeap = w.memEnd.heapUsed - w.memStart.heapUsed;
  out(
    `per refresh: limactl shell ${fmtMs(dMs)}; SSH channel ${fmtMs(sMs)} (p95 ${fmtMs(percentile(w.sshMs, 95))}); the query alone ${fmtMs(qMs)}; ` +
      `empty request ${fmtMs(median(w.sshEmptyMs))}; session open ${fmtMs(w.openMs)}`,
  );
  out(`memory over ${CFG.refreshes} refreshes (after gc): heap ${fmtBytes(w.memStart.heapUsed)} → ${fmtBytes(w.memEnd.heapUsed)}, RSS ${fmtBytes(w.memStart.rss)} → ${fmtBytes(w.memEnd.rss)}`);
  rows.push(["W", "watch refresh: SSH channel overhead", fmtMs(sMs - qMs), fmtMs(dMs), "-", "< 5 ms + query", sMs - qMs < 5 ? "PASS" : "MISS"]);
  rows.push(["W", `  heap growth over ${CFG.refreshes} refreshes`, fmtBytes(dHeap), "-", "-", "< 2 MiB", dHeap < 2 * 1024 * 1024 ? "PASS" : "MISS"]);
}

// ------------------------------------------------------------------------------------------------ main

async function guarded(label, fn) {
  try {
    return await fn();
  } catch (err) {
    broken = true;
    log(`${label} broke: ${err?.stack ?? err}`);
    rows.push([label, "(bench broke)", "-", "-", "-", "-", "ERROR"]);
    return undefined;
  }
}

async function main() {
  const cpus = os.cpus();
  out(`# fabrik bench — ${new Date().toISOString()}`);
  out(
    `machine: ${cpus.length} cores (${cpus[0]?.model?.trim() ?? "?"}), ${fmtBytes(os.totalmem())}, node ${process.version}, ${os.platform()} ${os.release()}; ` +
      `load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );
  if (!fs.existsSync(path.join(REPO, "dist", "cli", "fabrik.cjs"))) throw new Error("dist/ is missing: run `npm run build` (or `npm run bench`, which builds first)");
  world = makeWorld();
  const standinWhy = standinUnavailable();
  let fx;
  if (["F", "P", "D", "W"].some((b) => CFG.only.has(b))) {
    log("real-engine fixtures …");
    fx = await ensureFixtures(log);
  }
  if (CFG.only.has("S") || CFG.only.has("L")) await guarded("S/L", () => benchStartupAndLists());
  if (CFG.only.has("P")) await guarded("P", () => benchLocal(fx));
  if (CFG.only.has("D")) await guarded("D", () => benchBigDbRow(fx));
  if (CFG.only.has("F") || CFG.only.has("W")) {
    if (standinWhy) {
      out(`\nSKIPPING F and W (${standinWhy}): stand-in Lima VMs need root and openssh-server (e.g. \`sudo npm run bench\`).`);
      rows.push(["F/W", "(needs root and sshd)", "-", "-", "-", "-", "SKIP"]);
    } else {
      const fleet = await guarded("F", () => benchFleet(fx));
      if (fleet && CFG.only.has("W")) await guarded("W", () => benchWatch(fleet, fx));
    }
  }
  if (CFG.only.has("R")) {
    const r = await guarded("R", () => sshScaleBench({ log, out, scale: CFG.scale, keep: CFG.keep }));
    if (r) {
      rows.push(...r.rows);
      notes.push(...r.notes);
    }
  }
  out(`\n## Report (ratio = fabrik / baseline, lower is better; baselines measured in this run, interleaved; stand-in latency ${CFG.latencyMs} ms per limactl call)\n`);
  out(table(["", "benchmark", "fabrik", "baseline", "ratio", "target", "result"], rows, { right: [2, 3, 4] }));
  for (const n of notes) out(`note: ${n}`);
  out(`\nmachine: ${cpus.length} cores; load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; total bench time ${fmtMs(performance.now() - T0)}`);
}

try {
  await main();
} catch (err) {
  broken = true;
  process.stderr.write(`bench: ${err?.stack ?? err}\n`);
} finally {
  cleanup();
}
process.exitCode = broken ? 1 : 0;
