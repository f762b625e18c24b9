/**
 * One stand-in Lima VM with the engine installed, per vitest worker, shared by the end-to-end files that run
 * in that worker (one after another), so the VM and its engine installs (0.32.0 at creation, 0.5.0 on first
 * use) are paid once per worker instead of once per file.
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
import { envFor, fabrik, guestUserOf, json, limactl, makeTestEnv, type TestEnv } from "./cli.js";
import { run } from "./proc.js";
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
    const r = await fabrik(t, ["vm", "create", FLEET_VM], { timeoutMs: 600_000 });
    expect(r.code, `creating the worker's shared VM: ${r.stderr}`).toBe(0);
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

/** A second registry (FABRIK_HOME) in this file's scratch folder, for tests that import runs elsewhere. */
export function otherHome(t: TestEnv, name: string): TestEnv {
  const fh = tempDir(`${name}-`);
  return { ...t, fabrikHome: fh, env: { ...t.env, FABRIK_HOME: fh } };
}

/**
 * Give stand-in VM `to` the engine installs of VM `from` (same LIMA_HOME) as hard links: exactly what
 * `fabrik run` would install there (the same recipe, marker included), without paying ~10 s of npm and bun
 * per extra VM. The install path itself is exercised by the fleet VM's creation and its first 0.5.0 run.
 */
export async function copyEngines(t: TestEnv, from: string, to: string): Promise<void> {
  const src = path.join(t.limaHome, from, "guest-home", ".fabrik", "engines");
  const dst = path.join(t.limaHome, to, "guest-home", ".fabrik");
  fs.mkdirSync(dst, { recursive: true });
  const r = await run("cp", ["-al", src, dst], { timeoutMs: 120_000 });
  expect(r.code, `cp -al ${src} ${dst}: ${r.stderr}`).toBe(0);
  const user = await guestUserOf(t, to);
  fs.chownSync(dst, user.uid, user.uid);
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
