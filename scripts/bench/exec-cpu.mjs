#!/usr/bin/env node
/**
 * Host CPU per command through fabrik's process runner (`runProcess` of src/vm/process.ts), per git revision:
 *
 *   node scripts/bench/exec-cpu.mjs [REV ...]        (as root; default: the working tree, and f2350e2~1 = execa)
 *
 * For each revision, src/vm/process.ts as of that revision is bundled with esbuild and imported, then run against
 * the same stand-in VM, in alternating rounds:
 * - `limactl --tty=false shell --workdir / VM true` (what a probe or exec costs): wall time, CPU of this process
 *   (the runner itself: spawning, pipes, bookkeeping) and CPU of the children it waited for (limactl, ssh);
 * - `/bin/true` (the runner's own overhead with the cheapest possible child).
 * CPU comes from process.cpuUsage() (this process) and /proc/self/stat cutime+cstime (waited-for children).
 * Knobs: EXEC_CPU_CALLS (limactl calls per revision, default 60), EXEC_CPU_TRUE (default 400).
 */
import { build } from "esbuild";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const STANDIN = path.join(REPO, "scripts/limactl-standin");
const LIMACTL = path.join(STANDIN, "limactl");
const CALLS = Number(process.env.EXEC_CPU_CALLS ?? 60);
const TRUE_CALLS = Number(process.env.EXEC_CPU_TRUE ?? 400);
const revs = process.argv.slice(2).length ? process.argv.slice(2) : ["WORKTREE", "f2350e2~1"];

if (process.getuid?.() !== 0) {
  console.error("exec-cpu: needs root (the stand-in's VMs are namespaces)");
  process.exit(1);
}

const world = fs.mkdtempSync(path.join(os.tmpdir(), "fbench-exec-"));
const env = { ...process.env, LIMA_HOME: path.join(world, "lh"), PATH: `${STANDIN}:${process.env.PATH}` };
const limactl = (...args) => spawnSync(LIMACTL, args, { env, encoding: "utf8" });
const cleanup = () => {
  limactl("delete", "-f", "bench");
  fs.rmSync(world, { recursive: true, force: true });
};
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
function childrenCpuMs() {
  const stat = fs.readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) * TICK_MS; // cutime, cstime (fields 16, 17)
}

async function loadRunner(rev) {
  const source = rev === "WORKTREE" ? fs.readFileSync(path.join(REPO, "src/vm/process.ts"), "utf8") : execFileSync("git", ["show", `${rev}:src/vm/process.ts`], { cwd: REPO, encoding: "utf8" });
  const out = path.join(world, `process-${rev.replace(/[^\w.-]/g, "_")}.mjs`);
  await build({
    stdin: { contents: source, resolveDir: path.join(REPO, "src/vm"), loader: "ts", sourcefile: "process.ts" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: out,
    banner: { js: 'import { createRequire as __r } from "node:module"; const require = __r(import.meta.url);' },
    logLevel: "error",
  });
  return (await import(pathToFileURL(out).href)).runProcess;
}

async function measure(runProcess, cmd, args, n) {
  const wall0 = performance.now();
  const self0 = process.cpuUsage();
  const kids0 = childrenCpuMs();
  for (let i = 0; i < n; i++) {
    const r = await runProcess(cmd, args, { timeoutMs: 30_000, env, extendEnv: false });
    if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.exitCode}: ${r.stderr}`);
  }
  const self = process.cpuUsage(self0);
  return { n, wallMs: performance.now() - wall0, selfMs: (self.user + self.system) / 1000, kidsMs: childrenCpuMs() - kids0 };
}

try {
  const tpl = path.join(world, "tiny.yaml");
  fs.writeFileSync(tpl, "cpus: 1\n");
  for (const args of [["--tty=false", "create", "--name", "bench", tpl], ["--tty=false", "start", "bench"]]) {
    const r = limactl(...args);
    if (r.status !== 0) throw new Error(`limactl ${args.join(" ")}: ${r.stderr}`);
  }
  const runners = Object.fromEntries(await Promise.all(revs.map(async (rev) => [rev, await loadRunner(rev)])));
  const shell = ["--tty=false", "shell", "--workdir", "/", "bench", "true"];
  const totals = Object.fromEntries(revs.map((r) => [r, { shell: { n: 0, wallMs: 0, selfMs: 0, kidsMs: 0 }, tru: { n: 0, wallMs: 0, selfMs: 0, kidsMs: 0 } }]));
  const add = (a, b) => {
    for (const k of Object.keys(a)) a[k] += b[k];
  };
  for (const rev of revs) await measure(runners[rev], LIMACTL, shell, 3); // warm up
  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    for (const rev of round % 2 ? [...revs].reverse() : revs) {
      add(totals[rev].shell, await measure(runners[rev], LIMACTL, shell, Math.ceil(CALLS / rounds)));
      add(totals[rev].tru, await measure(runners[rev], "/bin/true", [], Math.ceil(TRUE_CALLS / rounds)));
    }
  }
  const f = (x) => x.toFixed(2).padStart(8);
  console.log(`host CPU per call through runProcess (${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}), ms per call:`);
  console.log("revision               | limactl shell: wall   fabrik  children | /bin/true: wall   fabrik  children");
  for (const rev of revs) {
    const s = totals[rev].shell;
    const t = totals[rev].tru;
    console.log(`${rev.padEnd(22)} | ${f(s.wallMs / s.n)} ${f(s.selfMs / s.n)} ${f(s.kidsMs / s.n)}   | ${f(t.wallMs / t.n)} ${f(t.selfMs / t.n)} ${f(t.kidsMs / t.n)}`);
  }
} finally {
  cleanup();
}
