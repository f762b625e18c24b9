/**
 * One temporary root per test run, `<tmp>/fabrik-test-<pid>`, so a run leaves nothing behind in /tmp, whether
 * it passes, fails or is interrupted:
 *
 * - global setup creates the root and points `TMPDIR` at it (workers, fabrik, bun, limactl and every process
 *   they start inherit it, so `os.tmpdir()`/`mkdtemp` land inside it) and records its owner (pid + process
 *   start time, so a reused pid is not mistaken for a live run);
 * - global teardown kills every process that belongs to the root and removes it;
 * - global setup first sweeps the roots of runs whose owner is dead (killed runs never reach their teardown).
 *
 * A process "belongs" to a root when its command line, working directory or any environment value names a
 * path inside it (`TMPDIR=<root>`, `HOME=<root>/…` for local VMs, `LIMA_HOME`, the stand-in's VM init and
 * sshd, engines started from control dirs under it). A stand-in VM's init is pid 1 of its pid namespace:
 * SIGKILL to it ends every process of that VM.
 *
 * Only Node builtins (global setup/teardown run in vitest's main process); the one child process is the teardown's
 * `rm -rf` (asynchronous: it never blocks that process).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const ROOT_PREFIX = "fabrik-test-";
const OWNER_FILE = "owner.json";

interface Owner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
  start: string | null;
  created_at: string;
}

/** Start time of `pid` (clock ticks since boot), or null when it does not exist. */
export function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Create this run's root under `base` and record its owner. */
export function createRoot(base: string, pid = process.pid): string {
  const root = path.join(base, `${ROOT_PREFIX}${pid}`);
  fs.rmSync(root, { recursive: true, force: true }); // a previous run with the same pid left it
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const owner: Owner = { pid, start: processStart(pid), created_at: new Date().toISOString() };
  fs.writeFileSync(path.join(root, OWNER_FILE), JSON.stringify(owner) + "\n");
  return root;
}

/** Whether the run that owns `root` is still alive (same pid AND same process start time). */
export function rootOwnerAlive(root: string): boolean {
  let owner: Owner | undefined;
  try {
    owner = JSON.parse(fs.readFileSync(path.join(root, OWNER_FILE), "utf8")) as Owner;
  } catch {
    const m = /-(\d+)$/.exec(root);
    if (!m) return false;
    // No owner file yet (being created) or unreadable: judge by the pid in the name, and by age.
    const age = Date.now() - (fs.statSync(root, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    return processStart(Number(m[1])) !== null && age < 24 * 3600_000;
  }
  const start = processStart(owner.pid);
  return start !== null && (owner.start === null || start === owner.start);
}

/** This process and its ancestors (vitest's main process carries TMPDIR=<root> once setup set it). */
function selfAndAncestors(): Set<number> {
  const out = new Set<number>([process.pid]);
  let pid = process.pid;
  for (let i = 0; i < 64 && pid > 1; i++) {
    const ppid = parentOf(pid);
    if (ppid === undefined) break;
    out.add(ppid);
    pid = ppid;
  }
  return out;
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

/**
 * Live (non-zombie) processes that belong to `root`, with what tied them to it. `spareChildren`: leave this
 * process's direct children alone (vitest's own helpers such as esbuild or a worker still closing, at a normal
 * teardown); a test's leftover process is never a direct child (its worker has exited and it was re-parented).
 */
export function processesUnder(root: string, opts: { spareChildren?: boolean } = {}): { pid: number; why: string; cmdline: string }[] {
  const spareChildren = opts.spareChildren ?? true;
  const spare = selfAndAncestors();
  const inside = (s: string) => s === root || s.startsWith(root + "/");
  const out: { pid: number; why: string; cmdline: string }[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (spare.has(pid) || (spareChildren && parentOf(pid) === process.pid)) continue;
    let cmdline = "";
    let why = "";
    try {
      cmdline = fs.readFileSync(`/proc/${e}/cmdline`, "utf8").replace(/\0+$/, "").replace(/\0/g, " ");
      if (cmdline.includes(root + "/") || cmdline.endsWith(root) || cmdline.includes(root + " ")) why = "cmdline";
      if (!why) {
        try {
          if (inside(fs.readlinkSync(`/proc/${e}/cwd`))) why = "cwd";
        } catch {
          /* no access */
        }
      }
      if (!why) {
        const env = fs.readFileSync(`/proc/${e}/environ`, "utf8").split("\0");
        const hit = env.find((kv) => inside(kv.slice(kv.indexOf("=") + 1)));
        if (hit) why = `env ${hit.slice(0, hit.indexOf("="))}`;
      }
    } catch {
      continue; // gone
    }
    if (why && !isZombie(pid)) out.push({ pid, why, cmdline: cmdline.slice(0, 200) });
  }
  return out;
}

/** SIGKILL every process of `root` until none is left (or 10 s passed). Returns what was killed. */
export async function killProcessesUnder(root: string): Promise<{ pid: number; why: string; cmdline: string }[]> {
  const killed = new Map<number, { pid: number; why: string; cmdline: string }>();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const procs = processesUnder(root);
    if (procs.length === 0 || Date.now() > deadline) break;
    for (const p of procs) {
      killed.set(p.pid, p);
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return [...killed.values()];
}

/** `rm -rf dir` (Node's recursive rm when coreutils' fails to start). */
function rmTree(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn("rm", ["-rf", "--", dir], { stdio: "ignore" });
    p.on("error", () => fs.promises.rm(dir, { recursive: true, force: true, maxRetries: 3 }).then(resolve, reject));
    p.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`rm -rf ${dir} exited ${code}`))));
  });
}

/** Kill the processes of `root` and remove it. */
export async function removeRoot(root: string): Promise<{ killed: { pid: number; why: string; cmdline: string }[]; killMs: number; rmMs: number }> {
  const t0 = Date.now();
  const killed = await killProcessesUnder(root);
  const t1 = Date.now();
  for (let i = 0; i < 5; i++) {
    try {
      // Per top-level folder, in parallel, by coreutils `rm -rf`: the fleets' engine trees are ~50 000 hard links
      // each, and rm unlinks them in about 2/3 of the time (and 1/10 of the user CPU) of Node's recursive rm.
      const names = fs.existsSync(root) ? fs.readdirSync(root) : [];
      await Promise.all(names.map((n) => rmTree(path.join(root, n))));
      fs.rmSync(root, { recursive: true, force: true });
      break;
    } catch (err) {
      // ENOTEMPTY while a just-killed process still writes; EBUSY for a mount point: retry briefly.
      if (i === 4) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { killed, killMs: t1 - t0, rmMs: Date.now() - t1 };
}

/**
 * The same as {@link removeRoot}, synchronously, sparing nothing but this process and its ancestors: for a
 * `process.on("exit")` handler when vitest exits without its teardown (Ctrl-C), workers included.
 */
export function removeRootSync(root: string): number {
  const killed = new Set<number>();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const procs = processesUnder(root, { spareChildren: false });
    if (procs.length === 0 || Date.now() > deadline) break;
    for (const p of procs) {
      killed.add(p.pid);
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    Atomics.wait(nap, 0, 0, 50); // the main process is exiting: nothing else to run meanwhile
  }
  for (let i = 0; i < 5; i++) {
    try {
      fs.rmSync(root, { recursive: true, force: true });
      break;
    } catch {
      Atomics.wait(nap, 0, 0, 200);
    }
  }
  return killed.size;
}

/** Remove the roots under `base` whose owning run is dead (an interrupted run's leftovers). */
export async function sweepStaleRoots(base: string): Promise<{ root: string; killed: number }[]> {
  const swept: { root: string; killed: number }[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(base);
  } catch {
    return swept;
  }
  for (const n of names) {
    if (!n.startsWith(ROOT_PREFIX) || !/^\d+$/.test(n.slice(ROOT_PREFIX.length))) continue;
    const root = path.join(base, n);
    if (rootOwnerAlive(root)) continue;
    const { killed } = await removeRoot(root);
    swept.push({ root, killed: killed.length });
  }
  return swept;
}

/** This run's root (set by global setup). */
export function testRoot(): string {
  const r = process.env.FABRIK_TEST_ROOT;
  if (!r) throw new Error("FABRIK_TEST_ROOT is not set: run the tests through vitest with vitest.config.ts (its global setup creates the root)");
  return r;
}

/** A fresh folder inside this run's root (never in the system /tmp directly). */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(testRoot(), prefix));
}

/** The system temp dir the root lives in. */
export function baseTmp(): string {
  return process.env.FABRIK_TEST_BASE_TMPDIR ?? os.tmpdir();
}
