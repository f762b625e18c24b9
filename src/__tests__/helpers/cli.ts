/**
 * Running the built `fabrik` binary in end-to-end tests, with the Lima stand-in first on PATH and
 * FABRIK_HOME / LIMA_HOME folders inside this run's temp root. Every command runs asynchronously (see
 * proc.ts: a synchronous spawn starves vitest's worker RPC). Engine installs inside test VMs share one package
 * cache (`.cache/shared-pkg-cache`) so each VM's `bun install` is a hard-link copy, not a download.
 *
 * The tests never build: `npm test` builds first, and {@link assertBuilt} fails with a clear message when
 * `dist/` is missing or older than the sources.
 */
import { expect } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./fixtures.js";
import { run, waitFor, type ProcResult } from "./proc.js";
import { tempDir, testRoot } from "./test-root.js";

export { waitFor, sleep } from "./proc.js";

export const STANDIN_DIR = path.join(REPO_ROOT, "scripts", "limactl-standin");
export const LIMACTL = path.join(STANDIN_DIR, "limactl");
/**
 * The fabrik under test: this checkout's build, or `FABRIK_TEST_BIN` (another checkout's `bin/fabrik.js`), to show
 * that a reliability test fails on a build from before its fix (docs/reliability.md, "Failing before the fix").
 */
export const FABRIK_BIN = process.env.FABRIK_TEST_BIN ?? path.join(REPO_ROOT, "bin", "fabrik.js");
export const SHARED_PKG_CACHE = path.join(REPO_ROOT, ".cache", "shared-pkg-cache");

let built = false;
/** Throw unless `dist/` holds a build at least as new as every source file under src/ (tests never build). */
export function assertBuilt(): void {
  if (built || process.env.FABRIK_TEST_BIN) return;
  const cli = path.join(REPO_ROOT, "dist", "cli", "fabrik.cjs");
  const distTime = fs.statSync(cli, { throwIfNoEntry: false })?.mtimeMs;
  if (distTime === undefined) throw new Error("dist/ is missing: run `npm run build` first (`npm test` does)");
  const newest = (dir: string): { file: string; t: number } => {
    let best = { file: "", t: 0 };
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name === "__tests__") continue;
        const b = newest(p);
        if (b.t > best.t) best = b;
      } else if (e.name.endsWith(".ts")) {
        const t = fs.statSync(p).mtimeMs;
        if (t > best.t) best = { file: p, t };
      }
    }
    return best;
  };
  const src = newest(path.join(REPO_ROOT, "src"));
  if (src.t > distTime) throw new Error(`dist/ is older than ${path.relative(REPO_ROOT, src.file)}: run \`npm run build\` first (\`npm test\` does)`);
  built = true;
}

export interface TestEnv {
  env: NodeJS.ProcessEnv;
  fabrikHome: string;
  limaHome: string;
  /** A folder of this environment's own (config file, templates, scratch). */
  tmp: string;
  /** Where a VM's guest path is on this machine, when the driver is not the stand-in (helpers/driver-fleet.ts). */
  hostPathFn?: ((vm: string, guestPath: string) => string) | undefined;
}

/**
 * The environment for FABRIK_HOME `fabrikHome`, LIMA_HOME `limaHome`, config file `config`.
 *
 * Stand-in VMs of this LIMA_HOME get this run's temp root as a writable Lima mount (`_config/override.yaml`, as a
 * Lima user would share a folder): their /tmp is their own, and the mount is how they see test folders such as a
 * {@link Gate}'s at the same path as the host.
 */
export function envFor(fabrikHome: string, limaHome: string, config: string, tmp: string): TestEnv {
  fs.mkdirSync(limaHome, { recursive: true });
  fs.mkdirSync(path.join(limaHome, "_config"), { recursive: true });
  const override = path.join(limaHome, "_config", "override.yaml");
  if (!fs.existsSync(override)) fs.writeFileSync(override, `mounts:\n- location: ${JSON.stringify(testRoot())}\n  writable: true\n`);
  fs.mkdirSync(SHARED_PKG_CACHE, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${STANDIN_DIR}:${process.env.PATH}`,
    FABRIK_HOME: fabrikHome,
    FABRIK_CONFIG: config,
    LIMA_HOME: limaHome,
    FABRIK_ENGINE_CACHE_DIR: SHARED_PKG_CACHE,
    // One compile cache for the run's every FABRIK_HOME (src/fabrik/compile-cache.ts): without it each of the
    // hundreds of short-lived homes compiles the 1.7 MB bundle again (~60 ms of CPU per kind of command per home).
    NODE_COMPILE_CACHE: path.join(testRoot(), "compile-cache"),
    NO_COLOR: "1",
  };
  delete env.FORCE_COLOR;
  return { env, fabrikHome, limaHome, tmp };
}

/** A fresh FABRIK_HOME and LIMA_HOME inside this run's root, the stand-in first on PATH, no colour. */
export function makeTestEnv(prefix = "e2e-"): TestEnv {
  assertBuilt();
  const tmp = tempDir(prefix);
  // Keep LIMA_HOME short: socket paths under it must stay < 108 chars.
  return envFor(path.join(tmp, "fh"), path.join(tmp, "lh"), path.join(tmp, "config.json"), tmp);
}

/**
 * A VM name for a LOCAL-driver VM that is unique to this test run. Local VMs are tagged by name only
 * (`FABRIK_LOCAL_VM=<name>` in the process environment), so `fabrik vm stop NAME` kills the processes of
 * every local VM called NAME on the machine, also another run's (see the report on local-driver.ts).
 */
export function localVmName(base: string): string {
  return `${base}-${path.basename(testRoot()).replace(/^fabrik-test-/, "")}`;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built fabrik (asynchronously: the worker's event loop keeps running). */
export async function fabrik(t: TestEnv, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  assertBuilt();
  const r: ProcResult = await run(process.execPath, [FABRIK_BIN, ...args], { env: opts.env ?? t.env, input: opts.input ?? "", timeoutMs: opts.timeoutMs ?? 120_000, cwd: REPO_ROOT });
  if (process.env.FABRIK_TEST_CALL_LOG) fs.appendFileSync(process.env.FABRIK_TEST_CALL_LOG, JSON.stringify({ file: expect.getState().testPath?.split("__tests__/")[1], test: expect.getState().currentTestName, args }) + "\n");
  return { code: r.timedOut ? 124 : r.code, stdout: r.stdout, stderr: r.timedOut ? `${r.stderr}\n[test] fabrik ${args.join(" ")} killed after ${opts.timeoutMs ?? 120_000} ms` : r.stderr };
}

/** JSON from stdout, or a test failure that shows stderr. */
export function json<T = unknown>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`expected JSON on stdout (exit ${r.code}); stdout=${r.stdout.slice(0, 500)} stderr=${r.stderr.slice(0, 2000)}`);
  }
}

/** Run the stand-in limactl with this environment. */
export function limactl(t: TestEnv, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ProcResult> {
  return run(LIMACTL, args, { env: t.env, input: opts.input, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Stop (power off) every stand-in VM under the environment's LIMA_HOME. */
export async function stopAllStandinVms(t: TestEnv | undefined): Promise<void> {
  if (!t) return;
  let names: string[] = [];
  try {
    names = fs.readdirSync(t.limaHome).filter((n) => !n.startsWith("_") && !n.startsWith("."));
  } catch {
    return;
  }
  await Promise.all(names.map((n) => limactl(t, ["stop", "-f", n], { timeoutMs: 30_000 })));
}

/** Power off every local VM under the environment's FABRIK_HOME. */
export async function stopAllLocalVms(t: TestEnv | undefined): Promise<void> {
  if (!t) return;
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(t.fabrikHome, "local-vms"));
  } catch {
    return;
  }
  for (const n of names) await fabrik(t, ["vm", "stop", "--force", n], { timeoutMs: 30_000 });
}

/** afterAll: power off the environment's VMs and remove its folder (global teardown would, but disk adds up). */
export async function disposeTestEnv(t: TestEnv | undefined): Promise<void> {
  if (!t) return;
  await stopAllStandinVms(t);
  await stopAllLocalVms(t);
  fs.rmSync(t.tmp, { recursive: true, force: true });
}

/** Poll `fabrik runs show --json` until `pred` holds; the failure names the last view. */
export async function waitForView<V>(t: TestEnv, id: number, pred: (v: V) => boolean, what: string, timeoutMs = 90_000): Promise<V> {
  let last: V | undefined;
  return waitFor(
    async () => {
      const r = await fabrik(t, ["runs", "show", "--id", String(id), "--json"]);
      last = json<V>(r);
      return pred(last) ? last : undefined;
    },
    { timeoutMs, intervalMs: 300, what: `run ${id}: ${what}`, describe: () => JSON.stringify(last, null, 1)?.slice(0, 3000) ?? "(no view)" },
  );
}

export interface RunningCli {
  out(): string;
  err(): string;
  /** Resolves with the exit code (128 + n for signal n). */
  exited: Promise<number>;
  kill(signal?: NodeJS.Signals): void;
}

/** Start a long-running fabrik command (watch, attach, …) whose output the test follows while it runs. */
export function startFabrik(t: TestEnv, args: string[], opts: { timeoutMs?: number } = {}): RunningCli {
  assertBuilt();
  const p = spawn(process.execPath, [FABRIK_BIN, ...args], { env: t.env, cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  p.stdout.on("data", (c: Buffer) => (out += c.toString()));
  p.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 180_000);
  const exited = new Promise<number>((resolve) =>
    p.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal === "SIGKILL" ? 137 : signal === "SIGINT" ? 130 : 128));
    }),
  );
  return { out: () => out, err: () => err, exited, kill: (s = "SIGTERM") => p.kill(s) };
}

/** A stand-in VM's guest user as `limactl list --json` reports it (`config.user`). */
export interface GuestUser {
  name: string;
  uid: number;
  /** The guest home (`config.user.home`), e.g. `/home/lima.guest`. */
  home: string;
}

/** Guest users of stand-in VMs, learnt from `limactl list --json`, by `<LIMA_HOME>/<vm>`. */
const guestUsers = new Map<string, GuestUser>();

/**
 * The guest user of stand-in VM `vm` (name, uid, home), from `limactl list --json vm` — never assumed: the stand-in
 * models Lima's guest user, which is not root. Remembered per VM, so {@link hostPathOf} can map paths afterwards.
 */
export async function guestUserOf(t: TestEnv, vm: string): Promise<GuestUser> {
  const key = path.join(t.limaHome, vm);
  const known = guestUsers.get(key);
  if (known) return known;
  const r = await limactl(t, ["list", "--json", vm]);
  if (r.code !== 0) throw new Error(`limactl list --json ${vm}: exit ${r.code}: ${r.stderr}`);
  const user = (JSON.parse(r.stdout.trim().split("\n")[0]!) as { config?: { user?: { name?: string; uid?: number; home?: string } } }).config?.user;
  if (!user?.name || user.uid === undefined || !user.home) throw new Error(`limactl list --json ${vm} has no config.user: ${r.stdout.slice(0, 500)}`);
  const u = { name: user.name, uid: user.uid, home: user.home };
  guestUsers.set(key, u);
  return u;
}

/** The guest home of stand-in VM `vm` (see {@link guestUserOf}). */
export async function guestHome(t: TestEnv, vm: string): Promise<string> {
  return (await guestUserOf(t, vm)).home;
}

/**
 * Where a VM's file is on this host: a stand-in VM's guest home is the folder `$LIMA_HOME/<vm>/guest-home`
 * (bind-mounted inside the VM), and a local VM's paths are host paths already. Tests read VM files this way
 * only to WAIT cheaply (a file appears); what they assert about a VM they read through fabrik. For a stand-in VM,
 * call {@link guestUserOf} (or {@link guestHome}) once first: the guest home is learnt from limactl, not assumed.
 */
export function hostPathOf(t: TestEnv, vm: string, guestPath: string): string {
  if (t.hostPathFn) return t.hostPathFn(vm, guestPath);
  const standin = fs.existsSync(path.join(t.limaHome, vm, "lima.yaml"));
  if (!standin) return guestPath;
  const home = guestUsers.get(path.join(t.limaHome, vm))?.home;
  if (!home) throw new Error(`hostPathOf: the guest home of stand-in VM ${vm} is not known yet: await guestHome(t, ${JSON.stringify(vm)}) first`);
  if (guestPath === home || guestPath.startsWith(`${home}/`)) return path.join(t.limaHome, vm, "guest-home", guestPath.slice(home.length));
  return guestPath;
}

/** How many times the launcher has logged the engine's exit in a run's log (one per launch or resume). */
export function engineExits(t: TestEnv, vm: string, controlDir: string): number {
  try {
    const log = fs.readFileSync(hostPathOf(t, vm, `${controlDir}/reports/smithers.log`), "utf8");
    return log.match(/engine exited with code -?\d+/g)?.length ?? 0;
  } catch {
    return 0;
  }
}

/**
 * Wait until the launcher has logged more than `after` engine exits (an event on a file, cheap to watch from
 * the host), so a test then asks fabrik about the run once instead of polling the CLI all along.
 */
export async function waitEngineExit(t: TestEnv, vm: string, controlDir: string, after = 0, timeoutMs = 120_000): Promise<void> {
  if (fs.existsSync(path.join(t.limaHome, vm, "lima.yaml"))) await guestUserOf(t, vm);
  const log = hostPathOf(t, vm, `${controlDir}/reports/smithers.log`);
  await waitFor(() => engineExits(t, vm, controlDir) > after, {
    timeoutMs,
    intervalMs: 100,
    what: `the engine of ${controlDir} to exit (more than ${after} "engine exited" line(s) in ${log})`,
    describe: () => {
      try {
        return fs.readFileSync(log, "utf8").split("\n").slice(-30).join("\n");
      } catch (e) {
        return String(e);
      }
    },
  });
}
