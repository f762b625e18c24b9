#!/usr/bin/env node
/**
 * `npm run bench` — fabrik's performance benchmarks (README.md in this folder says what each measures).
 *
 * Performance is measured, not asserted: every result is printed as a ratio against a naive baseline measured
 * in the same run, with its target and PASS/MISS next to it; the exit status is 0 unless the bench itself
 * breaks (then 1). Benches 1, 2 and 4 need root (the Lima stand-in's namespaces) and are skipped, with a
 * message, otherwise; bench 3 runs anywhere. Every VM and process started here is stopped on exit and on
 * Ctrl-C. Knobs (environment): BENCH_ONLY=1,3  BENCH_LATENCY_MS=200  BENCH_VMS=10  BENCH_RUNS_PER_VM=20
 * BENCH_BASELINE_RUNS_PER_VM=1  BENCH_REFRESHES=10000  BENCH_KEEP=1 (keep the temp folder, VMs still stopped).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import {
  LIMACTL,
  REPO,
  callKinds,
  ensureFixtures,
  fabrik,
  fmtBytes,
  fmtMs,
  fmtRatio,
  killChildren,
  makeWorld,
  mean,
  median,
  percentile,
  phaseEnv,
  readCalls,
  run,
  standinUnavailable,
  stopAllVms,
  table,
} from "./lib.mjs";
import { naiveRunStatus } from "./naive.mjs";
import { runAt, setupFleet } from "./fleet.mjs";
import { benchBigDb, bigDbUnavailable, ensureBigDb } from "./bigdb.mjs";

const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`bench: ${name} must be a positive integer, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
};
const CFG = {
  latencyMs: num("BENCH_LATENCY_MS", 200),
  vms: num("BENCH_VMS", 10),
  runsPerVm: num("BENCH_RUNS_PER_VM", 20),
  baselineRunsPerVm: num("BENCH_BASELINE_RUNS_PER_VM", 1),
  refreshes: num("BENCH_REFRESHES", 10_000),
  only: new Set((process.env.BENCH_ONLY ?? "1,2,3,4").split(",").map((s) => s.trim()).filter(Boolean)),
  keep: process.env.BENCH_KEEP === "1",
};

const T0 = performance.now();
const elapsed = () => `${((performance.now() - T0) / 1000).toFixed(1)}s`;
const log = (msg) => process.stderr.write(`[bench +${elapsed()}] ${msg}\n`);
const out = (msg = "") => process.stdout.write(`${msg}\n`);

/** Report rows: [#, benchmark, fabrik, baseline, ratio, target, result]. */
const rows = [];
const notes = [];
let broken = false;
const verdict = (ok) => (ok ? "PASS" : "MISS");

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
// stdout closed early (e.g. `| head`): stop, cleaning up, rather than crash on EPIPE.
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

// ------------------------------------------------------------------------------------------ bench 1

async function bench1(fleet) {
  const vm = fleet.vms[0];
  const target = runAt(fleet, vm, 3); // the 0.32 `killed` fixture: an orphaned run with its WAL
  out(`\n## 1. runs show --id ${target.id}  (VM ${vm}, ${target.smithers_run_id}; stand-in latency ${CFG.latencyMs} ms per limactl call)`);
  // Warm-up: the Lima version check (`limactl --version`) is cached under FABRIK_HOME after the first command.
  const w = phaseEnv(world, "b1-warmup", { latencyMs: CFG.latencyMs });
  const warm = await fabrik(["runs", "show", "--id", String(target.id)], { env: w.env });
  if (warm.code !== 0) throw new Error(`runs show exited ${warm.code}: ${warm.stderr.slice(-800)}`);
  const warmCalls = readCalls(w.log);
  out(
    `warm-up: one untimed \`runs show\` first (${warmCalls.length} limactl call(s): ${JSON.stringify(callKinds(warmCalls))}); ` +
      `the Lima version check is cached under FABRIK_HOME/cache since \`vm create\`, so measured calls exclude it`,
  );
  const effective = /effective_status: (\S+)/.exec(warm.stdout)?.[1];
  const fab = [];
  for (let i = 0; i < 5; i++) {
    const p = phaseEnv(world, `b1-show-${i}`, { latencyMs: CFG.latencyMs });
    const r = await fabrik(["runs", "show", "--id", String(target.id)], { env: p.env });
    if (r.code !== 0) throw new Error(`runs show exited ${r.code}: ${r.stderr.slice(-800)}`);
    const calls = readCalls(p.log);
    fab.push({ ms: r.ms, calls: calls.length, kinds: callKinds(calls) });
  }
  const naive = [];
  for (let i = 0; i < 3; i++) {
    const p = phaseEnv(world, `b1-naive-${i}`, { latencyMs: CFG.latencyMs });
    const n = await naiveRunStatus(p.env, vm, target);
    naive.push({ ms: n.ms, calls: readCalls(p.log).length });
  }
  const fCalls = Math.max(...fab.map((f) => f.calls));
  const nCalls = Math.max(...naive.map((n) => n.calls));
  const fMs = median(fab.map((f) => f.ms));
  const nMs = median(naive.map((n) => n.ms));
  out(
    table(
      ["", "limactl calls", "wall (median)", "runs"],
      [
        ["fabrik runs show", `${fCalls} ${JSON.stringify(fab[0].kinds)}`, fmtMs(fMs), `${fab.length} (${fab.map((f) => fmtMs(f.ms)).join(", ")})`],
        ["naive, field by field", String(nCalls), fmtMs(nMs), `${naive.length} (${naive.map((n) => fmtMs(n.ms)).join(", ")})`],
        ["ratio (naive / fabrik)", fmtRatio(nCalls, fCalls), fmtRatio(nMs, fMs), ""],
      ],
      { right: [] },
    ),
  );
  const floor = [];
  for (let i = 0; i < 3; i++) floor.push((await fabrik(["--version"], { env: world.env })).ms);
  out(`fabrik said: effective_status ${effective ?? "?"} (the naive tool leaves that judgement to the reader)`);
  out(`fabrik's own start-up (\`fabrik --version\`, no VM): ${fmtMs(median(floor))} of its ${fmtMs(fMs)}; the naive calls pay none of it`);
  const allOne = fab.every((f) => f.calls === 1);
  rows.push(["1", "runs show: limactl calls", String(fCalls), String(nCalls), fmtRatio(nCalls, fCalls), "exactly 1", verdict(allOne)]);
  rows.push(["1", "runs show: wall time", fmtMs(fMs), fmtMs(nMs), fmtRatio(nMs, fMs), "(measured)", "-"]);
}

// ------------------------------------------------------------------------------------------ bench 2

async function listOnce(label, extra = {}) {
  const p = phaseEnv(world, label, { latencyMs: CFG.latencyMs, extra });
  const t0 = Date.now();
  const r = await fabrik(["runs", "list", "--limit", "200", "--json"], { env: p.env });
  if (r.code !== 0) throw new Error(`runs list exited ${r.code}: ${r.stderr.slice(-800)}`);
  const views = JSON.parse(r.stdout);
  const calls = readCalls(p.log);
  const starts = calls.map((c) => c.ts).sort((a, b) => a - b);
  return {
    ms: r.ms,
    rows: views.length,
    live: views.filter((v) => v.source === "live").length,
    calls: calls.length,
    kinds: callKinds(calls),
    spreadMs: starts.length ? starts.at(-1) - starts[0] : NaN,
    // A call that started while another was still inside its injected latency certainly overlapped it: the
    // largest number of calls started within one latency window is a lower bound on the calls in flight.
    peakInFlight: starts.reduce((best, s, i) => Math.max(best, starts.slice(0, i + 1).filter((x) => s - x < CFG.latencyMs).length), 0),
    firstCallMs: starts.length ? starts[0] - t0 : NaN,
  };
}

async function bench2(fleet) {
  const { DEFAULTS } = await import(pathToFileURL(path.join(REPO, "dist/fabrik/config.js")).href);
  const defCap = DEFAULTS.probeConcurrency;
  const total = fleet.runs.length;
  const nVms = fleet.vms.length;
  out(`\n## 2. runs list --limit 200 --json over ${nVms} VMs × ${CFG.runsPerVm} runs (${total} runs; latency ${CFG.latencyMs} ms per limactl call)`);
  await listOnce("b2-warmup"); // untimed: page cache, registry
  const def = [];
  for (let i = 0; i < 5; i++) def.push(await listOnce(`b2-default-${i}`));
  const all = [];
  for (let i = 0; i < 3; i++) all.push(await listOnce(`b2-cap${nVms}-${i}`, { FABRIK_PROBE_CONCURRENCY: String(nVms) }));
  const one = [];
  for (let i = 0; i < 2; i++) one.push(await listOnce(`b2-cap1-${i}`, { FABRIK_PROBE_CONCURRENCY: "1" }));
  for (const r of [...def, ...all, ...one]) {
    if (r.rows !== total || r.live !== total) throw new Error(`runs list returned ${r.rows} rows, ${r.live} live (expected ${total})`);
  }

  // Baseline: VM by VM, run by run, field by field, sequentially — on a sample, extrapolated linearly.
  const k = Math.min(CFG.baselineRunsPerVm, CFG.runsPerVm);
  const sample = [];
  fleet.vms.forEach((vm, v) => {
    for (let j = 0; j < k; j++) sample.push([vm, ((v * k + j) % CFG.runsPerVm) + 1]);
  });
  log(`bench 2 baseline: ${sample.length} of ${total} runs field by field (${k} per VM) …`);
  const p = phaseEnv(world, "b2-naive", { latencyMs: CFG.latencyMs });
  const t = performance.now();
  for (const [vm, i] of sample) await naiveRunStatus(p.env, vm, runAt(fleet, vm, i));
  const sampleMs = performance.now() - t;
  const sampleCalls = readCalls(p.log).length;
  const factor = total / sample.length;
  const nCalls = Math.round(sampleCalls * factor);
  const nMs = sampleMs * factor;
  const exact = sample.length === total;

  const dMs = median(def.map((r) => r.ms));
  const aMs = median(all.map((r) => r.ms));
  const oMs = median(one.map((r) => r.ms));
  const dCalls = Math.max(...def.map((r) => r.calls));
  const cap = { ...def[0], peakInFlight: Math.max(...def.map((r) => r.peakInFlight)), spreadMs: median(def.map((r) => r.spreadMs)) };
  out(
    table(
      ["", "limactl calls", "wall (median)", "runs"],
      [
        [`fabrik, default cap (${defCap})`, `${dCalls} ${JSON.stringify(cap.kinds)}`, fmtMs(dMs), def.map((r) => fmtMs(r.ms)).join(", ")],
        [`fabrik, FABRIK_PROBE_CONCURRENCY=${nVms}`, String(Math.max(...all.map((r) => r.calls))), fmtMs(aMs), all.map((r) => fmtMs(r.ms)).join(", ")],
        [`fabrik, FABRIK_PROBE_CONCURRENCY=1`, String(Math.max(...one.map((r) => r.calls))), fmtMs(oMs), one.map((r) => fmtMs(r.ms)).join(", ")],
        [
          `naive, field by field${exact ? "" : " (extrapolated)"}`,
          `${exact ? "" : "≈"}${nCalls}`,
          `${exact ? "" : "≈"}${fmtMs(nMs)}`,
          exact ? "all runs" : `measured ${sample.length} runs: ${sampleCalls} calls in ${fmtMs(sampleMs)}; ×${factor.toFixed(0)}`,
        ],
        ["ratio (naive / fabrik default)", fmtRatio(nCalls, dCalls), fmtRatio(nMs, dMs), ""],
      ],
    ),
  );
  out(
    `parallelism (default cap): up to ${cap.peakInFlight} limactl calls in flight at once (started within one ${CFG.latencyMs} ms latency window), ` +
      `call starts spread over ${fmtMs(cap.spreadMs)}; cap 1 → ${fmtMs(oMs)} (${fmtRatio(oMs, dMs)} the default's wall), cap ${nVms} → ${fmtMs(aMs)}`,
  );
  // Where the wall time goes when latency is not the bottleneck: fabrik's own start-up and the host's CPU.
  const floor = [];
  for (let i = 0; i < 3; i++) floor.push((await fabrik(["--version"], { env: world.env })).ms);
  const cached = [];
  for (let i = 0; i < 3; i++) cached.push((await fabrik(["runs", "list", "--limit", "200", "--json", "--no-live"], { env: world.env })).ms);
  const zero = [];
  for (let i = 0; i < 3; i++) {
    const p0 = phaseEnv(world, `b2-lat0-${i}`);
    zero.push((await fabrik(["runs", "list", "--limit", "200", "--json"], { env: p0.env })).ms);
  }
  out(
    `floors: \`fabrik --version\` ${fmtMs(median(floor))}; \`runs list --no-live\` (no VM touched) ${fmtMs(median(cached))}; ` +
      `live with NO injected latency ${fmtMs(median(zero))}; first limactl call started ${fmtMs(median(def.map((r) => r.firstCallMs)))} after fabrik was spawned`,
  );
  const callsOk = def.every((r) => r.calls === nVms);
  rows.push(["2", "runs list: limactl calls", String(dCalls), `${exact ? "" : "≈"}${nCalls}`, fmtRatio(nCalls, dCalls), `1 per VM (${nVms})`, verdict(callsOk)]);
  rows.push(["2", "runs list: wall time", fmtMs(dMs), `${exact ? "" : "≈"}${fmtMs(nMs)}`, fmtRatio(nMs, dMs), "< 1.5 s, parallel", verdict(dMs < 1500 && cap.peakInFlight > 1)]);
  rows.push(["2", `  wall: default cap ${defCap} vs cap 1`, fmtMs(dMs), fmtMs(oMs), fmtRatio(oMs, dMs), "(effect of the cap)", "-"]);
  rows.push(["2", `  wall: default cap ${defCap} vs cap ${nVms}`, fmtMs(dMs), fmtMs(aMs), fmtRatio(aMs, dMs), "(effect of the cap)", "-"]);
  const zMs = median(zero);
  notes.push(
    `bench 2: with NO injected latency live \`runs list\` still takes ${fmtMs(zMs)} (fabrik start-up alone ${fmtMs(median(floor))}); ` +
      `the ${CFG.latencyMs} ms latency accounts for only ${fmtMs(Math.max(0, dMs - zMs))} of the ${fmtMs(dMs)}` +
      (zMs > 0.7 * dMs ? ` — on this ${os.cpus().length}-core host the wall is bound by CPU (process start-ups), not by the latency.` : "."),
  );
  if (!exact) notes.push(`bench 2 baseline measured on ${sample.length}/${total} runs (BENCH_BASELINE_RUNS_PER_VM=${k}) and extrapolated linearly (${sampleCalls} calls in ${fmtMs(sampleMs)}).`);
}

// ------------------------------------------------------------------------------------------ bench 3

async function bench3(fx) {
  const why = await bigDbUnavailable(fx);
  if (why) {
    out(`\n## 3. probe on a ~1 GB DB: SKIPPED (${why})`);
    rows.push(["3", "probe on ~1 GB DB", "-", "-", "-", "< 200 ms", `SKIP (${why})`]);
    return;
  }
  const big = await ensureBigDb(fx, log);
  out(`\n## 3. the probe on a ${(big.bytes / 1e9).toFixed(2)} GB Smithers DB (${path.relative(REPO, big.db)}${big.built ? `, generated in ${fmtMs(big.buildMs)}` : ", reused"})`);
  const r = await benchBigDb(big, fx, { log });
  const pMs = median(r.probeMs);
  const nMs = median(r.naiveMs);
  out(
    table(
      ["", "wall (median)", "runs", "largest response_text"],
      [
        ["bun dist/guest/probe.js (octet_length)", fmtMs(pMs), r.probeMs.map(fmtMs).join(", "), `${r.probeMax} bytes (${r.oversized} values over 100 KB)`],
        ["naive: python3 max(length(...))", fmtMs(nMs), r.naiveMs.map(fmtMs).join(", "), `${r.naiveMax} chars`],
        ["ratio (naive / probe)", fmtRatio(nMs, pMs), "", ""],
      ],
    ),
  );
  out("page cache warm for both (one untimed run of each first); the probe's time includes starting bun");
  const correct = r.probeMax === r.naiveMax;
  rows.push(["3", `probe on ${(big.bytes / 1e9).toFixed(2)} GB DB`, fmtMs(pMs), fmtMs(nMs), fmtRatio(nMs, pMs), "< 200 ms", verdict(pMs < 200 && correct)]);
  if (!correct) notes.push(`bench 3: the probe's max_response_text_bytes (${r.probeMax}) differs from the naive answer (${r.naiveMax})`);
}

// ------------------------------------------------------------------------------------------ bench 4

async function bench4(fleet, fx) {
  const vm = fleet.vms[0];
  const target = runAt(fleet, vm, 3);
  const info = spawnSync(LIMACTL, ["list", "--json", vm], { env: world.env, encoding: "utf8" });
  const guestHome = JSON.parse(info.stdout.trim().split("\n")[0]).config.user.home;
  const hostHome = path.join(world.limaHome, vm, "guest-home");
  const toHost = (p) => (p.startsWith(guestHome + "/") ? hostHome + p.slice(guestHome.length) : p);
  const probeRun = { key: String(target.id), control_dir: target.control_dir, db_path: target.db_path, smithers_run_id: target.smithers_run_id };
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
  out(`\n## 4. watch refresh: persistent SSH channel vs one limactl shell per refresh (VM ${vm}, run ${target.id}, nodes: true; latency ${CFG.latencyMs} ms)`);
  const env = { ...world.env, LIMACTL_STANDIN_LATENCY_MS: String(CFG.latencyMs) };
  const r = await run(process.execPath, ["--expose-gc", path.join(REPO, "scripts/bench/watch-refresh.mjs"), JSON.stringify(params)], {
    env,
    timeoutMs: 600_000,
    onStderr: (d) => process.stderr.write(d),
  });
  if (r.code !== 0) throw new Error(`watch-refresh.mjs exited ${r.code}`);
  const w = JSON.parse(r.stdout.trim().split("\n").at(-1));
  const dMs = median(w.driverMs);
  const sMs = median(w.sshMs);
  const eMs = median(w.sshEmptyMs);
  const qMs = median(w.localMs);
  const overhead = sMs - qMs;
  out(
    table(
      ["", "median", "p95", "n", "limactl calls"],
      [
        ["probeVm via limactl shell (driver)", fmtMs(dMs), fmtMs(percentile(w.driverMs, 95)), String(w.driverMs.length), `${w.driverCalls} (1 per refresh)`],
        ["VmSession probe over SSH channel", fmtMs(sMs), fmtMs(percentile(w.sshMs, 95)), String(w.sshMs.length), `${w.sshCalls} (open: ${w.openCalls})`],
        ["  same channel, empty request", fmtMs(eMs), fmtMs(percentile(w.sshEmptyMs, 95)), String(w.sshEmptyMs.length), ""],
        ["  the query alone (local bun --serve, pipes)", fmtMs(qMs), fmtMs(percentile(w.localMs, 95)), String(w.localMs.length), ""],
        ["ratio (driver / SSH)", fmtRatio(dMs, sMs), "", "", ""],
      ],
    ),
  );
  out(
    `session open (limactl list + SSH handshake): ${fmtMs(w.openMs)}; first probe (starts the channel and bun): ${fmtMs(w.firstProbeMs)}; ` +
      `transport overhead per refresh = SSH − query alone = ${fmtMs(overhead)}`,
  );
  const m0 = w.memStart;
  const m1 = w.memEnd;
  const dHeap = m1.heapUsed - m0.heapUsed;
  const dRss = m1.rss - m0.rss;
  out(
    `memory over ${CFG.refreshes} refreshes (${fmtMs(w.memLoopMs)}, ${fmtMs(w.memLoopMs / CFG.refreshes)} each)${w.gcAvailable ? ", after gc" : " (no --expose-gc)"}: ` +
      `RSS ${fmtBytes(m0.rss)} → ${fmtBytes(m1.rss)} (${dRss >= 0 ? "+" : ""}${fmtBytes(dRss)}), ` +
      `heap used ${fmtBytes(m0.heapUsed)} → ${fmtBytes(m1.heapUsed)} (${dHeap >= 0 ? "+" : ""}${fmtBytes(dHeap)}), ` +
      `external ${fmtBytes(m0.external)} → ${fmtBytes(m1.external)}`,
  );
  out(`  RSS every 1000 refreshes (no gc): ${w.memSamples.map((s) => fmtBytes(s.rss)).join(", ")}`);
  rows.push(["4", "watch refresh (SSH vs limactl)", fmtMs(sMs), fmtMs(dMs), fmtRatio(dMs, sMs), `< 5 ms + query (${fmtMs(qMs)})`, verdict(overhead < 5)]);
  rows.push(["4", `  memory, ${CFG.refreshes} refreshes`, `heap ${dHeap >= 0 ? "+" : ""}${fmtBytes(dHeap)}`, `RSS ${dRss >= 0 ? "+" : ""}${fmtBytes(dRss)}`, "-", "flat (heap < +2 MiB)", verdict(dHeap < 2 * 1024 * 1024)]);
}

// ------------------------------------------------------------------------------------------- main

async function guarded(n, fn) {
  if (!CFG.only.has(n)) return;
  try {
    await fn();
  } catch (err) {
    broken = true;
    log(`bench ${n} broke: ${err?.stack ?? err}`);
    rows.push([n, "(bench broke)", "-", "-", "-", "-", "ERROR"]);
  }
}

async function main() {
  out(`# fabrik bench — ${new Date().toISOString()}`);
  out(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model?.trim() ?? "?"}), ${fmtBytes(os.totalmem())}, node ${process.version}, ${os.platform()} ${os.release()}`);
  if (!fs.existsSync(path.join(REPO, "dist", "cli", "fabrik.js"))) throw new Error("dist/ is missing: run `npm run build` (or `npm run bench`, which builds first)");
  const standinWhy = standinUnavailable();
  if (standinWhy) {
    out(
      `\nSKIPPING benches 1, 2 and 4 (${standinWhy}): they run stand-in Lima VMs — one pid/mount namespace and a real ` +
        `sshd each — which needs root and openssh-server; run them as root (e.g. \`sudo npm run bench\`). Bench 3 runs anyway.`,
    );
    for (const n of ["1", "2", "4"]) if (CFG.only.has(n)) rows.push([n, "(needs root and sshd)", "-", "-", "-", "-", "SKIP"]);
  }
  const needFleet = !standinWhy && ["1", "2", "4"].some((n) => CFG.only.has(n));
  let fx;
  if (needFleet || CFG.only.has("3")) {
    log("real-engine fixtures …");
    fx = await ensureFixtures(log);
  }

  await guarded("3", () => bench3(fx));

  if (needFleet) {
    world = makeWorld();
    let fleet;
    try {
      log(`setting up ${CFG.vms} stand-in VMs × ${CFG.runsPerVm} runs in ${world.tmp} …`);
      fleet = await setupFleet(world, fx, { vms: CFG.vms, runsPerVm: CFG.runsPerVm, log });
    } catch (err) {
      broken = true;
      log(`fleet setup broke: ${err?.stack ?? err}`);
      rows.push(["-", "fleet setup (benches 1, 2, 4 not run)", "-", "-", "-", "-", "ERROR"]);
    }
    if (fleet) {
      await guarded("1", () => bench1(fleet));
      await guarded("2", () => bench2(fleet));
      await guarded("4", () => bench4(fleet, fx));
    }
  }
  rows.sort((a, b) => a[0].localeCompare(b[0]));
  out(`\n## Report (baselines measured in this run; ratio = baseline / fabrik; stand-in latency ${CFG.latencyMs} ms per limactl call)\n`);
  out(table(["#", "benchmark", "fabrik", "baseline", "ratio", "target", "result"], rows, { right: [2, 3, 4] }));
  for (const n of notes) out(`note: ${n}`);
  out(`\ntotal bench time ${fmtMs(performance.now() - T0)}`);
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
