/**
 * One stand-in Lima VM with the engine installed, per vitest worker, shared by the end-to-end files that run
 * in that worker (one after another), so the VM and its engine installs are paid once per worker instead of
 * once per file.
 *
 * Engine 0.32.0 is installed ONCE PER RUN by fabrik itself, in a local-driver VM (the "engine seed", host
 * paths: bun hard-links the packages out of the shared cache, ~4 s), and given to each worker's VM as hard
 * links. Installing it inside a stand-in VM copies all ~800 MB instead (the shared cache is outside the VM's
 * guest-home bind mount, and hard links cannot cross mounts: ~25 s, mostly system CPU, and as long again to
 * delete). Engine 0.5.0 is still installed by fabrik inside the VM, on first use through the lima driver.
 *
 * It lives in `<root>/fleet-<VITEST_POOL_ID>/` (FABRIK_HOME `fh`, LIMA_HOME `lh`): a file's module state does
 * not survive vitest's per-file isolation, the folder does. FABRIK_HOME is shared too, because fabrik names a
 * run's control dir after its host id (`~/work/<vm>/.runs/<id>-seq`): two registries using one VM would hand out
 * the same ids. Each file gets its own config file and scratch folder. Files that stop the VM leave it stopped;
 * the next {@link workerFleet} call starts it again (its guest home, engines included, persists).
 *
 * Global teardown powers the VM off with everything else in the run's root.
 */
import fs from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { REPO_ROOT } from "./fixtures.js";
import { envFor, fabrik, guestUserOf, json, limactl, localVmName, makeTestEnv, type TestEnv } from "./cli.js";
import { run, sleep } from "./proc.js";
import { tempDir, testRoot } from "./test-root.js";

export interface Fleet extends TestEnv {
  /** The shared VM (engine 0.32.0 installed). */
  vm: string;
}

export const FLEET_VM = "e2e";

/**
 * The worker's shared VM, created on first use and started if a previous file stopped it. `config` is this
 * file's fabrik config (written to its own FABRIK_CONFIG).
 */
export async function workerFleet(config: Record<string, unknown> = {}): Promise<Fleet> {
  const pool = process.env.VITEST_POOL_ID ?? "0";
  const dir = path.join(testRoot(), `fleet-${pool}`);
  fs.mkdirSync(dir, { recursive: true });
  const own = makeTestEnv("file-"); // this file's scratch folder (and an unused private LIMA_HOME)
  const configFile = path.join(own.tmp, "config.json");
  fs.writeFileSync(configFile, JSON.stringify(config));
  const t = envFor(path.join(dir, "fh"), path.join(dir, "lh"), configFile, own.tmp);
  t.env.FABRIK_ENGINE_CACHE_DIR = await guestPkgCache(await standinGuestUid());
  const ready = path.join(dir, "ready");
  if (!fs.existsSync(ready)) {
    const seed = await engineSeed();
    const r = await fabrik(t, ["vm", "create", FLEET_VM, "--no-engine"], { timeoutMs: 600_000 });
    expect(r.code, `creating the worker's shared VM: ${r.stderr}`).toBe(0);
    await copyEnginesFrom(seed, path.join(t.limaHome, FLEET_VM, "guest-home"), (await guestUserOf(t, FLEET_VM)).uid);
    fs.writeFileSync(ready, new Date().toISOString());
  } else {
    const rows = json<{ name: string; status: string }[]>(await fabrik(t, ["vm", "list", "--json"]));
    const row = rows.find((x) => x.name === FLEET_VM);
    if (row?.status !== "Running") {
      const r = await fabrik(t, ["vm", "start", FLEET_VM], { timeoutMs: 120_000 });
      expect(r.code, `starting the worker's shared VM (was ${row?.status}): ${r.stderr}`).toBe(0);
    }
  }
  return { ...t, vm: FLEET_VM };
}

/**
 * The run's engine seed: a local-driver VM whose engine 0.32.0 fabrik installed (`vm create --driver local`).
 * Created by the first worker that needs it, under a lock; returns its guest home.
 */
async function engineSeed(): Promise<string> {
  const dir = path.join(testRoot(), "engine-seed");
  const lock = `${dir}.lock`;
  const ready = path.join(dir, "ready");
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (fs.existsSync(ready)) return fs.readFileSync(ready, "utf8");
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // The worker holding the lock died (its file failed hard): take it over.
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lock, "pid"), "utf8"));
      } catch {
        /* being created, or just released */
      }
      if (Number.isInteger(owner) && owner > 0 && !fs.existsSync(`/proc/${owner}`)) {
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} (another worker creating the engine seed)`);
      await sleep(200);
    }
  }
  try {
    if (fs.existsSync(ready)) return fs.readFileSync(ready, "utf8");
    const t = envFor(path.join(dir, "fh"), path.join(dir, "lh"), path.join(dir, "config.json"), dir);
    const name = localVmName("engine-seed");
    const r = await fabrik(t, ["vm", "create", name, "--driver", "local"], { timeoutMs: 600_000 });
    expect(r.code, `creating the engine seed (a local VM with engine 0.32.0): ${r.stderr}`).toBe(0);
    const home = path.join(t.fabrikHome, "local-vms", name, "home");
    expect(fs.existsSync(path.join(home, ".fabrik", "engines", "0.32.0", ".fabrik-engine.json")), `engine marker in ${home}`).toBe(true);
    fs.writeFileSync(ready, home);
    return home;
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * Hard-link the engine installs under guest home `fromHome` into guest home `toHome` (host paths), owned by the
 * guest user `uid` as if that user had installed them. Hard links share their inode, so the source's files change
 * owner too: every stand-in VM has the same guest user, and the seed's local VM runs as root, which reads anything.
 */
async function copyEnginesFrom(fromHome: string, toHome: string, uid: number): Promise<void> {
  const src = path.join(fromHome, ".fabrik", "engines");
  const dst = path.join(toHome, ".fabrik");
  fs.mkdirSync(dst, { recursive: true });
  const r = await run("cp", ["-al", src, dst], { timeoutMs: 120_000 });
  expect(r.code, `cp -al ${src} ${dst}: ${r.stderr}`).toBe(0);
  const c = await run("chown", ["-R", `${uid}:${uid}`, dst], { timeoutMs: 120_000 });
  expect(c.code, `chown -R ${uid} ${dst}: ${c.stderr}`).toBe(0);
}

/** A second registry (FABRIK_HOME) in this file's scratch folder, for tests that import runs elsewhere. */
export function otherHome(t: TestEnv, name: string): TestEnv {
  const fh = tempDir(`${name}-`);
  return { ...t, fabrikHome: fh, env: { ...t.env, FABRIK_HOME: fh } };
}

/**
 * Give stand-in VM `to` the engine installs of VM `from` (same LIMA_HOME) as hard links: exactly what
 * `fabrik run` would install there (the same recipe, marker included), without paying ~10 s of npm and bun
 * per extra VM. The install path itself is exercised by the engine seed and the first 0.5.0 run in a VM.
 */
export async function copyEngines(t: TestEnv, from: string, to: string): Promise<void> {
  await copyEnginesFrom(path.join(t.limaHome, from, "guest-home"), path.join(t.limaHome, to, "guest-home"), (await guestUserOf(t, to)).uid);
}

let guestUid: Promise<number> | undefined;

/**
 * The uid of the stand-in's guest user, asked from the stand-in itself (a throw-away instance's `config.user.uid`
 * in a scratch LIMA_HOME), so the package cache can be given to that user before the first VM exists.
 */
export function standinGuestUid(): Promise<number> {
  guestUid ??= (async () => {
    const scratch = makeTestEnv("guest-uid-");
    const tpl = path.join(scratch.tmp, "probe.yaml");
    fs.writeFileSync(tpl, "cpus: 1\n");
    const c = await limactl(scratch, ["--tty=false", "create", "--name", "probe", tpl]);
    if (c.code !== 0) throw new Error(`limactl create (to learn the guest user): ${c.stderr}`);
    const uid = (await guestUserOf(scratch, "probe")).uid;
    fs.rmSync(scratch.tmp, { recursive: true, force: true });
    return uid;
  })();
  return guestUid;
}

/**
 * The package cache engine installs use inside stand-in VMs (`engine.cache_dir`): the guest user runs npm and bun
 * there, and it is not root, so it gets a cache of its own that it owns (`.cache/shared-pkg-cache-uid<uid>`,
 * persistent like SHARED_PKG_CACHE, which local VMs — host processes — keep using).
 */
export async function guestPkgCache(uid: number): Promise<string> {
  const dir = path.join(REPO_ROOT, ".cache", `shared-pkg-cache-uid${uid}`);
  fs.mkdirSync(dir, { recursive: true });
  if (fs.statSync(dir).uid !== uid) {
    const r = await run("chown", ["-R", `${uid}:${uid}`, dir], { timeoutMs: 120_000 });
    expect(r.code, `chown -R ${uid} ${dir}: ${r.stderr}`).toBe(0);
  }
  return dir;
}
