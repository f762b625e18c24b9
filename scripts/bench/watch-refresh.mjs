/**
 * The watch-refresh bench's worker, bundled by run.mjs into dist/bench/watch-refresh.mjs (it imports fabrik's sources)
 * and started as `node --expose-gc dist/bench/watch-refresh.mjs PARAMS_JSON` with the
 * stand-in environment (LIMA_HOME, PATH, LIMACTL_STANDIN_LATENCY_MS) — a process of its own so that its memory
 * figures are the watch loop's alone. Prints one JSON line (the results) on stdout; progress on stderr.
 *
 * A "refresh" is what `fabrik runs watch` does every interval: one probe of one run with `nodes: true`.
 * - driver path: probeVm through the lima driver = one `limactl shell` per refresh;
 * - SSH path: VmSession (openVmSession, preferSsh) = one JSON line on the long-lived probe channel of a
 *   persistent ssh2 connection to the VM's real sshd;
 * - the query alone: the same request to `bun dist/guest/probe.js --serve` on this host over pipes (host paths of
 *   the same files), i.e. the probe's own work without any transport;
 * - memory: 10 000 refreshes over the open channel; RSS/heap after a gc before and after.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { LimaDriver } from "../../src/vm/lima-driver.ts";
import { openVmSession } from "../../src/vm/session.ts";
import { probeVm } from "../../src/vm/probe.ts";

// run.mjs bundles this file (esbuild) into dist/bench/, two levels below the package root like the sources.
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const P = JSON.parse(process.argv[2]);
const log = (m) => process.stderr.write(`[watch-refresh] ${m}\n`);
const gc = () => {
  if (typeof global.gc === "function") {
    global.gc();
    global.gc();
  }
};
const mem = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
};
const countCalls = (file) => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).length;
  } catch {
    return 0;
  }
};

let session;
let local;
const cleanup = () => {
  try {
    session?.close();
  } catch {
    /* closing */
  }
  try {
    local?.kill("SIGKILL");
  } catch {
    /* gone */
  }
};
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

async function timeEach(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

const out = { gcAvailable: typeof global.gc === "function" };
try {
  const driver = new LimaDriver({ limactl: "limactl", cacheDir: path.join(P.fabrikHome, "cache"), env: process.env });
  const opts = { timeoutMs: 30_000 };

  // --- driver path: one limactl shell per refresh -----------------------------------------------------------
  process.env.LIMACTL_STANDIN_CALL_LOG = path.join(P.callDir, "b4-driver-warmup.log");
  await probeVm(driver, P.vm, P.req, opts); // untimed: loads the modules, warms the version cache
  process.env.LIMACTL_STANDIN_CALL_LOG = path.join(P.callDir, "b4-driver.log");
  out.driverMs = await timeEach(P.driverRefreshes, async () => {
    const r = await probeVm(driver, P.vm, P.req, opts);
    if (!r.runs[0]?.db?.nodes) throw new Error("driver probe returned no nodes");
  });
  out.driverCalls = countCalls(process.env.LIMACTL_STANDIN_CALL_LOG);
  log(`driver path: ${out.driverMs.length} refreshes, ${out.driverCalls} limactl calls`);

  // --- the query alone: bun dist/guest/probe.js --serve on this host, over pipes ------------------------------------
  local = spawn(P.bun, [path.join(REPO, "dist/guest/probe.js"), "--serve"], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: local.stdout });
  const waiting = [];
  lines.on("line", (l) => waiting.shift()?.(l));
  const ask = (req) =>
    new Promise((resolve) => {
      waiting.push(resolve);
      local.stdin.write(JSON.stringify(req) + "\n");
    });
  for (let i = 0; i < 20; i++) await ask(P.localReq);
  const check = JSON.parse(await ask(P.localReq));
  if (!check.runs?.[0]?.db?.nodes) throw new Error(`local probe: ${JSON.stringify(check).slice(0, 300)}`);
  out.localMs = await timeEach(P.timedRefreshes, () => ask(P.localReq));
  local.stdin.end();
  local = undefined;

  // --- SSH path: persistent connection, long-lived probe channel ------------------------------------------------
  process.env.LIMACTL_STANDIN_CALL_LOG = path.join(P.callDir, "b4-ssh-open.log");
  let t = performance.now();
  session = await openVmSession(driver, P.vm, { preferSsh: true, onNotice: (m) => log(`notice: ${m}`) });
  out.openMs = performance.now() - t;
  out.sessionKind = session.kind;
  out.openCalls = countCalls(process.env.LIMACTL_STANDIN_CALL_LOG);
  if (session.kind !== "ssh") throw new Error(`expected an SSH session, got ${session.kind}`);
  process.env.LIMACTL_STANDIN_CALL_LOG = path.join(P.callDir, "b4-ssh.log");
  t = performance.now();
  await session.probe(P.req, opts);
  out.firstProbeMs = performance.now() - t;
  for (let i = 0; i < 50; i++) await session.probe(P.req, opts);
  out.sshMs = await timeEach(P.timedRefreshes, async () => {
    const r = await session.probe(P.req, opts);
    if (!r.runs[0]?.db?.nodes) throw new Error("ssh probe returned no nodes");
  });
  const empty = { v: 1, runs: [] };
  out.sshEmptyMs = await timeEach(P.timedRefreshes, () => session.probe(empty, opts));
  log(`ssh path: open ${out.openMs.toFixed(0)} ms, first probe ${out.firstProbeMs.toFixed(0)} ms`);

  // --- memory: a watch-style loop of N refreshes on the open channel ---------------------------------------------
  gc();
  out.memStart = mem();
  out.memSamples = [];
  t = performance.now();
  for (let i = 1; i <= P.memRefreshes; i++) {
    await session.probe(P.req, opts);
    if (i % 1000 === 0) out.memSamples.push({ i, ...mem() });
  }
  out.memLoopMs = performance.now() - t;
  out.memEndNoGc = mem();
  gc();
  out.memEnd = mem();
  out.sshCalls = countCalls(process.env.LIMACTL_STANDIN_CALL_LOG);
  log(`memory loop: ${P.memRefreshes} refreshes in ${(out.memLoopMs / 1000).toFixed(1)} s`);
  session.close();
  session = undefined;
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (err) {
  cleanup();
  process.stderr.write(`[watch-refresh] ${err?.stack ?? err}\n`);
  process.exitCode = 1;
}
