#!/usr/bin/env node
/**
 * Bench R — the `ssh` driver at scale: 50 real OpenSSH hosts × 10 runs (issue 15, item 6).
 *
 *   node scripts/bench/ssh-scale.mjs          # as root, after `npm run build`
 *   BENCH_ONLY=R npm run bench                # the same, from the bench orchestrator (run.mjs)
 *
 * Setup (untimed): a world of test hosts (scripts/ssh-hosts/ssh-hosts.mjs: one sshd per host in its own pid/mount
 * namespace, its own user, home and ed25519 host key, key-only login), each with the fixture engines 0.32.0 and 0.5.0
 * in `~/.fabrik/engines/` (their runtime — bun — and marker hard-linked, as src/__tests__/helpers/driver-fleet.ts
 * links whole engines; the probe uses nothing else of an engine) and 10 control dirs laid out
 * as `fabrik run` lays them out, `~/work/<vm>/.runs/<i>-seq/` (fleet.mjs `stageVm`: byte copies of the real-engine
 * fixture DBs, heartbeat.json, pid files, exit_code, run.sh, a log), owned by the host's user; then
 * `fabrik vm add` and `fabrik runs import --vm` per host (the import's probe installs the probe program).
 *
 * Measured:
 * - `runs list --limit 1000 --json` (all 500 runs, live): the sessions and logins it makes on every host, counted
 *   from each host's sshd log (`LogLevel VERBOSE`: one `Accepted publickey` per connection, one
 *   `Starting session: command` per exec channel) — exactly one of each per host is the target;
 * - its wall time against the slowest single probe: every host listed alone (`runs list --vm H`, the same CLI path
 *   with one probe) once, the slowest picked, then the two interleaved (A B A B …); ratio = median of the pairwise
 *   ratios, target ≤ 1.5×; with the default `probe.concurrency` (16) and with 64;
 * - its wall time against this machine's floor for the same fan-out: the same 50 probes (the installed probe.js, each
 *   host's runs in the request) started at once with OpenSSH's `ssh`, interleaved likewise. On this rig all 50
 *   "machines" run on the same cores as fabrik, so every probe's CPU is paid here; this row separates fabrik's own
 *   fan-out cost from the rig's;
 * - fabrik's own peak RSS and CPU (cpu-hook.cjs: the kernel's accounting of fabrik's process alone); host CPU per
 *   probe = (CPU of the live list − CPU of the same list `--no-live`) / hosts;
 * - the hosts' CPU per probe (sshd session, shell, bun and the probe's queries: the growth of the cutime+cstime of
 *   each host's pid 1 and sshd listener, which between them reap every process a connection started);
 * - bytes on the wire per probe: one host reached through a counting TCP relay (another FABRIK_HOME registers it
 *   at the relay's port), for `vm list` (connect, key exchange, auth) and `runs list` (the same plus the probe).
 *
 * Every host, relay and temp dir is removed at the end, on an error and on Ctrl-C/SIGTERM.
 * Knobs: BENCH_SSH_HOSTS=50  BENCH_SSH_RUNS=10  BENCH_PAIRS=1 (scales the 5 interleaved pairs)  BENCH_KEEP=1.
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as hosts from "../ssh-hosts/ssh-hosts.mjs";
import { REPO, cleanupHooks, cpuHookEnv, ensureFixtures, fabrik, fabrikJson, fmtBytes, fmtMs, interleave, killChildren, median, pool, readCpuLog, run, runOk, sleep, table } from "./lib.mjs";
import { stageVm } from "./fleet.mjs";

const ENGINES = ["0.32.0", "0.5.0"];
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat times are in 1/100 s

/** Why this bench cannot run here, or undefined. */
export function sshScaleUnavailable() {
  return hosts.sshHostsUnavailable();
}

const intEnv = (name, dflt) => {
  const n = Number(process.env[name] ?? dflt);
  return Number.isInteger(n) && n > 0 ? n : dflt;
};

/** cutime + cstime of a process, ms (the CPU of every child it has reaped, and of theirs). */
function childrenCpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK; // fields 16, 17: cutime, cstime
}

/**
 * CPU (ms) that host `h` has spent on finished connections: its pid 1 (host-init.sh, which reaps the commands that
 * left their session: the pid preamble runs each in a process group of its own) plus its sshd listener (which reaps
 * every connection's sshd). NaN when the host is not running. Resolution 10 ms.
 */
function reapedCpuMs(h) {
  try {
    const unshare = hosts.runningPid(h);
    const init = fs.readFileSync(`/proc/${unshare}/task/${unshare}/children`, "utf8").trim().split(/\s+/)[0];
    let ms = childrenCpuMs(init);
    for (const c of fs.readFileSync(`/proc/${init}/task/${init}/children`, "utf8").trim().split(/\s+/)) {
      if (fs.readFileSync(`/proc/${c}/comm`, "utf8").trim() === "sshd") ms += childrenCpuMs(c);
    }
    return ms;
  } catch {
    return NaN;
  }
}

/** A TCP relay 127.0.0.1:<port> → 127.0.0.1:`to` that counts the bytes each way, per connection. */
async function countingRelay(to) {
  const conns = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    const c = { up: 0, down: 0 };
    conns.push(c);
    const upstream = net.connect(to, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.on("data", (d) => (c.up += d.length));
    upstream.on("data", (d) => (c.down += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    conns,
    reset: () => conns.splice(0),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/**
 * Run bench R. `log` gets progress (stderr), `out` the report lines (stdout).
 * @returns `{ rows, notes }`: report rows [bench, what, fabrik, baseline, ratio, target, result] for run.mjs.
 * @throws when the bench itself breaks (a command fails, a count is not what the setup guarantees).
 */
export async function sshScaleBench({ log, out, scale = 1, keep = false }) {
  const nHosts = intEnv("BENCH_SSH_HOSTS", 50);
  const runsPerHost = intEnv("BENCH_SSH_RUNS", 10);
  const pairs = Math.max(3, Math.round(5 * scale));
  const rows = [];
  const notes = [];
  const why = sshScaleUnavailable();
  if (why) {
    out(`\nSKIPPING R (${why}): the ssh scale bench needs root and openssh-server.`);
    return { rows: [["R", "(needs root and sshd)", "-", "-", "-", "-", "SKIP"]], notes };
  }
  if (!fs.existsSync(path.join(REPO, "dist", "cli", "fabrik.cjs"))) throw new Error("dist/ is missing: run `npm run build` first");

  // ------------------------------------------------------------------------------------------------ the world
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fbench-ssh-"));
  fs.chmodSync(tmp, 0o755); // the hosts' users read hard-linked engines whose symlinks point into it
  const made = [];
  let relay;
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    relay?.close();
    hosts.stopAllSync(made);
    if (keep) log(`kept ${tmp} (hosts powered off)`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  };
  cleanupHooks.add(cleanup);
  try {
    const fx = await ensureFixtures(log);
    const engines = {};
    for (const v of ENGINES) {
      engines[v] = path.join(REPO, ".cache", "engines", v);
      if (!fs.existsSync(path.join(engines[v], ".fabrik-engine.json"))) throw new Error(`no fixture engine at ${engines[v]} (scripts/make-fixtures.mjs installs it)`);
    }
    const world = await hosts.createWorld(path.join(tmp, "world"));
    const fh = path.join(tmp, "fh");
    const baseEnv = { ...process.env };
    for (const k of Object.keys(baseEnv)) if (k.startsWith("FABRIK_") || k === "FORCE_COLOR") delete baseEnv[k];
    // HOME is the world's client home: fabrik never reads or writes the real ~/.ssh.
    const env = { ...baseEnv, HOME: world.home, FABRIK_HOME: fh, FABRIK_CONFIG: path.join(tmp, "config.json"), NO_COLOR: "1" };
    const names = Array.from({ length: nHosts }, (_, i) => `s${String(i + 1).padStart(2, "0")}`);
    const byName = new Map();

    const t0 = performance.now();
    await pool(names, 6, async (name, i) => {
      const h = await hosts.createHost(world, name);
      made.push(h);
      // The engines' runtimes (bun) and markers, hard-linked: all a probe uses of an engine (the whole install is
      // ~19 000 files per version, which 50 hosts would take minutes to link and delete).
      for (const [v, src] of Object.entries(engines)) {
        const dest = path.join(h.hostHome, ".fabrik", "engines", v);
        fs.mkdirSync(dest, { recursive: true });
        await runOk("cp", ["-al", path.join(src, ".runtime"), path.join(src, ".fabrik-engine.json"), path.join(src, "package.json"), dest]);
      }
      byName.set(name, h);
      hosts.trustHost(world, h);
      stageVm(fx, h.hostHome, name, runsPerHost, i);
      await runOk("chown", ["-R", `${h.uid}:${h.gid}`, path.join(h.hostHome, "work")]);
      await hosts.startHost(h, { timeoutMs: 60_000 });
      const add = await fabrik(["vm", "add", name, "--ssh", `${h.user}@127.0.0.1`, "--port", String(h.port), "--identity", world.key, "--known-hosts", world.knownHosts], { env, timeoutMs: 120_000 });
      if (add.code !== 0) throw new Error(`vm add ${name} exited ${add.code}: ${add.stderr.trim().slice(-800)}`);
      const imp = await fabrikJson(["runs", "import", "--vm", name, "--json"], { env, timeoutMs: 120_000 });
      if (imp.imported.length !== runsPerHost) throw new Error(`runs import --vm ${name} imported ${imp.imported.length} runs, expected ${runsPerHost}`);
    });
    log(`${nHosts} hosts × ${runsPerHost} runs: created, started, added, imported in ${fmtMs(performance.now() - t0)}`);

    const total = nHosts * runsPerHost;
    const listArgs = ["runs", "list", "--limit", "100000", "--json"];
    const listAll = async (extraEnv = {}) => {
      const r = await fabrik(listArgs, { env: { ...env, ...extraEnv }, timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(`runs list exited ${r.code}: ${r.stderr.trim().slice(-800)}`);
      return r;
    };
    const listOne = async (name) => {
      const r = await fabrik([...listArgs, "--vm", name], { env, timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`runs list --vm ${name} exited ${r.code}: ${r.stderr.trim().slice(-800)}`);
      return r;
    };
    await listAll(); // warm-up (compile cache, page cache of 500 DBs)

    // ---------------------------------------------------------------- one counted list: probes, RSS, CPU
    const before = new Map(made.map((h) => [h.name, { ...hosts.sshdActivity(h), cpu: reapedCpuMs(h) }]));
    const cpuLog = path.join(tmp, "cpu.log");
    const t1 = performance.now();
    const counted = await listAll(cpuHookEnv({}, cpuLog));
    const countedMs = performance.now() - t1;
    await sleep(500); // the listeners reap the closed connections
    const views = JSON.parse(counted.stdout);
    const unreachable = views.filter((v) => v.effective_status === "unreachable" || v.source !== "live");
    if (views.length !== total || unreachable.length > 0) {
      throw new Error(`runs list gave ${views.length} rows (expected ${total}), ${unreachable.length} not live: ${JSON.stringify(unreachable[0] ?? {}).slice(0, 300)}`);
    }
    const sessions = [];
    const logins = [];
    const hostCpu = [];
    for (const h of made) {
      const a = hosts.sshdActivity(h);
      const b = before.get(h.name);
      sessions.push(a.sessions - b.sessions);
      logins.push(a.logins - b.logins);
      hostCpu.push(reapedCpuMs(h) - b.cpu);
    }
    const exactlyOne = sessions.every((n) => n === 1) && logins.every((n) => n === 1);
    const live = readCpuLog(cpuLog).at(-1);
    const noLiveLog = path.join(tmp, "cpu-nolive.log");
    const nl = await fabrik(["runs", "list", "--limit", "100000", "--json", "--no-live"], { env: cpuHookEnv(env, noLiveLog) });
    if (nl.code !== 0) throw new Error(`runs list --no-live exited ${nl.code}`);
    const noLive = readCpuLog(noLiveLog).at(-1);
    const perProbeCpu = (live.cpu_ms - noLive.cpu_ms) / nHosts;
    const sumHostCpu = hostCpu.reduce((x, y) => x + y, 0);
    out(`\n## R. ssh driver at scale: ${nHosts} OpenSSH hosts × ${runsPerHost} runs (${total} runs), one list`);
    out(`runs list --json (${total} rows, all live): ${fmtMs(countedMs)}; per host: sessions ${[...new Set(sessions)].join("/")}, logins ${[...new Set(logins)].join("/")} (sshd logs)`);
    out(`fabrik's own process: CPU ${fmtMs(live.cpu_ms)} live, ${fmtMs(noLive.cpu_ms)} --no-live → ${fmtMs(perProbeCpu)} per probe; peak RSS ${fmtBytes(live.max_rss_kib * 1024)}`);
    out(`hosts' CPU per probe (sshd session + sh + bun probe over ${runsPerHost} DBs): median ${fmtMs(median(hostCpu))}, max ${fmtMs(Math.max(...hostCpu))}, sum ${fmtMs(sumHostCpu)} on this machine's ${os.cpus().length} cores`);
    rows.push(["R", `probes of runs list (${nHosts} hosts)`, `${sessions.reduce((x, y) => x + y, 0)}`, "-", "-", `1 per host (${nHosts})`, exactlyOne ? "PASS" : "MISS"]);
    rows.push(["R", "  SSH connections of runs list", `${logins.reduce((x, y) => x + y, 0)}`, "-", "-", `1 per host (${nHosts})`, logins.every((n) => n === 1) ? "PASS" : "MISS"]);

    // ------------------------------------------------------------------------ single probes: the slowest host
    const single = [];
    for (const name of names) single.push({ name, ms: (await listOne(name)).ms });
    single.sort((a, b) => b.ms - a.ms);
    const slowest = single[0];
    out(`each host alone (runs list --vm H, ${runsPerHost} rows, one probe): median ${fmtMs(median(single.map((s) => s.ms)))}, slowest ${slowest.name} ${fmtMs(slowest.ms)}`);
    const oneLog = path.join(tmp, "cpu-one.log");
    const one0 = await fabrik([...listArgs, "--vm", slowest.name], { env: cpuHookEnv(env, oneLog) });
    if (one0.code !== 0) throw new Error(`runs list --vm ${slowest.name} exited ${one0.code}`);
    const one = readCpuLog(oneLog).at(-1);
    out(
      `fabrik's process for one host: CPU ${fmtMs(one.cpu_ms)}, peak RSS ${fmtBytes(one.max_rss_kib * 1024)} → each further host adds ` +
        `${fmtMs((live.cpu_ms - one.cpu_ms) / (nHosts - 1))} of CPU and ${fmtBytes(((live.max_rss_kib - one.max_rss_kib) * 1024) / (nHosts - 1))} of peak RSS`,
    );

    // The rig's floor: the same probes (the installed probe.js under the engine's bun, each host's 10 runs in the
    // request) started at once by OpenSSH's own client, one `ssh` per host, what a user would script with xargs -P.
    const cached = await fabrikJson(["runs", "list", "--no-live", "--limit", "100000", "--json"], { env });
    const requests = new Map(names.map((n) => [n, { v: 1, runs: [] }]));
    for (const v of cached) requests.get(v.vm)?.runs.push({ key: String(v.id), control_dir: v.control_dir, db_path: v.db_path ?? null, smithers_run_id: v.smithers_run_id ?? null });
    const remote = 'exec "$HOME/.fabrik/engines/0.32.0/.runtime/node_modules/.bin/bun" "$HOME"/.fabrik/guest/*/probe.js';
    const sshArgs = (h) => ["-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${world.knownHosts}`, "-o", "IdentitiesOnly=yes", "-i", world.key, "-p", String(h.port), `${h.user}@127.0.0.1`, remote];
    const parallelSsh = async () => {
      const t = performance.now();
      await Promise.all(
        made.map(async (h) => {
          const r = await run("ssh", sshArgs(h), { env, input: JSON.stringify(requests.get(h.name)), timeoutMs: 120_000 });
          const answer = r.code === 0 ? JSON.parse(r.stdout.trim().split("\n").at(-1)) : undefined;
          if (answer?.runs?.length !== runsPerHost) throw new Error(`ssh probe of ${h.name} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
        }),
      );
      return performance.now() - t;
    };
    {
      const r = await interleave(pairs, async () => (await listAll()).ms, parallelSsh);
      out(`runs list ${fmtMs(median(r.a))} vs the same ${nHosts} probes started at once with OpenSSH's ssh ${fmtMs(median(r.b))} (${r.b.map(fmtMs).join(", ")}); ratio ${r.ratio.toFixed(2)}×`);
      rows.push(["R", `runs list ${nHosts}×${runsPerHost} vs ${nHosts} ssh probes at once (this machine's floor)`, fmtMs(median(r.a)), fmtMs(median(r.b)), `${r.ratio.toFixed(2)}×`, "≤ 1.50×", r.ratio <= 1.5 ? "PASS" : "MISS"]);
    }

    for (const conc of [16, 64]) {
      const extra = conc === 16 ? {} : { FABRIK_PROBE_CONCURRENCY: String(conc) };
      const r = await interleave(pairs, async () => (await listAll(extra)).ms, async () => (await listOne(slowest.name)).ms);
      const label = conc === 16 ? "probe.concurrency 16 (default)" : `probe.concurrency ${conc}`;
      out(`${label}: runs list ${fmtMs(median(r.a))} (${r.a.map(fmtMs).join(", ")}) vs runs list --vm ${slowest.name} ${fmtMs(median(r.b))} (${r.b.map(fmtMs).join(", ")}); ratio ${r.ratio.toFixed(2)}×`);
      rows.push(["R", `runs list ${nHosts}×${runsPerHost} vs slowest single probe, ${label}`, fmtMs(median(r.a)), fmtMs(median(r.b)), `${r.ratio.toFixed(2)}×`, "≤ 1.50×", r.ratio <= 1.5 ? "PASS" : "MISS"]);
    }
    rows.push(["R", "  peak RSS of runs list (fabrik's process)", fmtBytes(live.max_rss_kib * 1024), "-", "-", "(printed)", "-"]);
    rows.push(["R", "  peak RSS of runs list --vm (one host)", fmtBytes(one.max_rss_kib * 1024), "-", "-", "(printed)", "-"]);
    rows.push(["R", "  fabrik's host CPU per probe", fmtMs(perProbeCpu), "-", "-", "(measured)", "-"]);
    rows.push(["R", "  hosts' CPU per probe (median)", fmtMs(median(hostCpu)), "-", "-", "(measured)", "-"]);
    notes.push(
      `R: the ${nHosts} "machines" share this host's ${os.cpus().length} cores with fabrik: their ${fmtMs(sumHostCpu)} of CPU for one list ` +
        `(sshd, sh, bun) and fabrik's ${fmtMs(live.cpu_ms)} put a floor of ~${fmtMs((sumHostCpu + live.cpu_ms) / os.cpus().length)} under its wall time here; ` +
        `on real machines each probe's CPU is spent on its own machine.`,
    );

    // ------------------------------------------------------------------------------------ bytes on the wire
    const probeHost = byName.get(names[0]);
    relay = await countingRelay(probeHost.port);
    const fhBytes = path.join(tmp, "fh-bytes");
    const khBytes = path.join(tmp, "known_hosts-bytes");
    const [type, b64] = probeHost.hostKeyPub.split(/\s+/);
    fs.writeFileSync(khBytes, `[127.0.0.1]:${relay.port} ${type} ${b64}\n`, { mode: 0o600 });
    const envBytes = { ...env, FABRIK_HOME: fhBytes };
    const add = await fabrik(["vm", "add", probeHost.name, "--ssh", `${probeHost.user}@127.0.0.1`, "--port", String(relay.port), "--identity", world.key, "--known-hosts", khBytes], { env: envBytes });
    if (add.code !== 0) throw new Error(`vm add (through the relay) exited ${add.code}: ${add.stderr.trim().slice(-400)}`);
    await fabrikJson(["runs", "import", "--vm", probeHost.name, "--json"], { env: envBytes });
    const measure = async (args) => {
      relay.reset();
      const a0 = hosts.sshdActivity(probeHost);
      const r = await fabrik(args, { env: envBytes });
      if (r.code !== 0) throw new Error(`fabrik ${args.join(" ")} (through the relay) exited ${r.code}`);
      await sleep(200);
      const a1 = hosts.sshdActivity(probeHost);
      const c = relay.conns.reduce((s, x) => ({ up: s.up + x.up, down: s.down + x.down }), { up: 0, down: 0 });
      return { ...c, conns: relay.conns.length, sessions: a1.sessions - a0.sessions };
    };
    const vmList = await measure(["vm", "list", "--json"]);
    const probe = await measure(listArgs);
    out(
      `bytes on the wire, host ${probeHost.name} through a counting relay: vm list ${vmList.conns} connection(s), ${vmList.sessions} session(s): ` +
        `${fmtBytes(vmList.up)} up / ${fmtBytes(vmList.down)} down; runs list (${runsPerHost} runs) ${probe.conns} connection(s), ${probe.sessions} session(s): ` +
        `${fmtBytes(probe.up)} up / ${fmtBytes(probe.down)} down`,
    );
    rows.push(["R", `  bytes per probe on the wire (${runsPerHost} runs, connection included)`, `${probe.up + probe.down} B`, "-", "-", "(measured)", "-"]);
    rows.push(["R", "  of which connect, key exchange, auth (vm list)", `${vmList.up + vmList.down} B`, "-", "-", "(measured)", "-"]);
    return { rows, notes };
  } finally {
    cleanupHooks.delete(cleanup);
    cleanup();
  }
}

// ------------------------------------------------------------------------------------------------- main
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const T0 = performance.now();
  const log = (m) => process.stderr.write(`[ssh-scale +${((performance.now() - T0) / 1000).toFixed(1)}s] ${m}\n`);
  const out = (m = "") => process.stdout.write(`${m}\n`);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      process.stderr.write(`\n[ssh-scale] ${sig}: powering off every host and removing the temp dir …\n`);
      killChildren();
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
  process.on("exit", () => killChildren());
  const cpus = os.cpus();
  out(`# fabrik bench R (ssh scale) — ${new Date().toISOString()}`);
  out(`machine: ${cpus.length} cores (${cpus[0]?.model?.trim() ?? "?"}), ${fmtBytes(os.totalmem())}, node ${process.version}; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  try {
    const { rows, notes } = await sshScaleBench({ log, out, scale: Number(process.env.BENCH_PAIRS) > 0 ? Number(process.env.BENCH_PAIRS) : 1, keep: process.env.BENCH_KEEP === "1" });
    out("");
    out(table(["", "benchmark", "fabrik", "baseline", "ratio", "target", "result"], rows, { right: [2, 3, 4] }));
    for (const n of notes) out(`note: ${n}`);
    out(`\nload average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; total ${fmtMs(performance.now() - T0)}`);
  } catch (err) {
    process.stderr.write(`ssh-scale: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  }
}
