/**
 * The end-to-end suites run every scenario on each VM driver they can reach through the built CLI: `lima` (the
 * stand-in limactl, helpers/worker-fleet.ts) and `ssh` (real OpenSSH hosts, scripts/ssh-hosts/). A suite does
 * `describe.each(E2E_DRIVERS)` and gets a {@link DriverFleet}: the worker's shared VM of that driver with the engines
 * installed, plus what differs between drivers — where a guest file is on this machine, how to make another VM, how
 * to power one off and on, and how fabrik words an unreachable VM of that driver.
 *
 * The ssh fleet (one per vitest worker, `<root>/sshfleet-<pool>/`, shared by the worker's files like the Lima one):
 * a world (client key, known_hosts, a HOME for fabrik so the real `~/.ssh` is never read or written), a FABRIK_HOME
 * that has the VM registered with `vm add`, and the host `e2e` whose `~/.fabrik/engines/{0.32.0,0.5.0}` are hard links
 * of the fixture engines in `.cache/engines` (the engine install itself is exercised on the Lima fleet and in
 * ssh-driver.test.ts). Each host is its own user, home, host key and sshd, in its own namespaces.
 *
 * `FABRIK_E2E_DRIVERS=lima` (or `ssh`) limits the suites to one driver; the default is both.
 */
import fs from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { envFor, fabrik, guestHome as standinGuestHome, hostPathOf, json, makeTestEnv, type TestEnv } from "./cli.js";
import { REPO_ROOT, ensureFixtures } from "./fixtures.js";
import { STANDIN, missingPrereqs, type Prereq } from "./prereq.js";
import { tempDir, testRoot } from "./test-root.js";
import { copyEngines, workerFleet } from "./worker-fleet.js";
import * as hosts from "../../../scripts/ssh-hosts/ssh-hosts.mjs";

export type E2eDriver = "lima" | "ssh";

/** The drivers the parametrised suites run on (`FABRIK_E2E_DRIVERS`, comma-separated; default both). */
export const E2E_DRIVERS: readonly E2eDriver[] = (process.env.FABRIK_E2E_DRIVERS ?? "lima,ssh")
  .split(",")
  .map((d) => d.trim())
  .filter((d): d is E2eDriver => d === "lima" || d === "ssh");

/** What the ssh fleet needs from the machine (root for namespaces and users, sshd, ssh-keygen). */
export const SSH_HOSTS: Prereq[] = ["root", "sshd", "unshare", "ssh-keygen", "tar"];

/** The reason a driver's suite is skipped here (or false); under CI=true a missing prerequisite fails instead. */
export function driverSkip(driver: E2eDriver): string | false {
  return driver === "lima" ? missingPrereqs(...STANDIN) : missingPrereqs(...SSH_HOSTS);
}

/** A worker's shared VM of one driver, and the driver-specific operations a scenario needs. */
export interface DriverFleet extends TestEnv {
  driver: E2eDriver;
  /** The shared VM (engines 0.32.0 and 0.5.0 available). */
  vm: string;
  /** The guest user's home in `vm` (read from `vm list --json`, never hardcoded). */
  guestHome(vm?: string): Promise<string>;
  /** Where a guest path of `vm` is on this machine (tests read VM files there only to wait cheaply). */
  hostPath(vm: string, guestPath: string): string;
  /** Make another VM of this driver for this file, with the engines (Lima: created; ssh: a new host, registered). */
  addVm(name: string): Promise<void>;
  /** Get rid of a VM made by {@link addVm} (Lima: deleted; ssh: host powered off and unregistered). */
  dropVm(name: string): Promise<void>;
  /** Power a VM off (Lima: `vm stop --force`; ssh: the host loses power, as `vm stop` refuses ssh VMs). */
  powerOff(vm: string): Promise<void>;
  /** Power it on again (same address, same host key). */
  powerOn(vm: string): Promise<void>;
  /** How fabrik words a powered-off VM of this driver (in unreachable reasons and refusals). */
  offline: RegExp;
  /** Another FABRIK_HOME that knows the fleet's VMs `vms` (ssh VMs must be registered there too). */
  otherHome(name: string, vms: string[]): Promise<TestEnv>;
}

/** The worker's shared VM of `driver`; `config` is this file's fabrik config. */
export function driverFleet(driver: E2eDriver, config: Record<string, unknown> = {}): Promise<DriverFleet> {
  return driver === "lima" ? limaFleet(config) : sshFleet(config);
}

async function limaFleet(config: Record<string, unknown>): Promise<DriverFleet> {
  const f = await workerFleet(config);
  const fleet: DriverFleet = {
    ...f,
    driver: "lima",
    // From `limactl list --json` (config.user.home), which also lets hostPathOf map this VM's guest paths.
    guestHome: (vm = f.vm) => standinGuestHome(f, vm),
    hostPath: (vm, p) => hostPathOf(f, vm, p),
    async addVm(name) {
      const r = await fabrik(f, ["vm", "create", name, "--no-engine"], { timeoutMs: 600_000 });
      expect(r.code, r.stderr).toBe(0);
      await copyEngines(f, f.vm, name);
    },
    async dropVm(name) {
      await fabrik(f, ["vm", "delete", "--force", name]);
    },
    async powerOff(vm) {
      const r = await fabrik(f, ["vm", "stop", "--force", vm]);
      expect(r.code, r.stderr).toBe(0);
    },
    async powerOn(vm) {
      const r = await fabrik(f, ["vm", "start", vm], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
    },
    offline: /is Stopped|stopped/,
    async otherHome(name) {
      const fh = tempDir(`${name}-`);
      return { ...f, fabrikHome: fh, env: { ...f.env, FABRIK_HOME: fh } };
    },
  };
  return fleet;
}

/** The fixture engines (`.cache/engines/<v>`), built by make-fixtures when missing: hard-linked into ssh hosts. */
async function fixtureEngines(): Promise<Record<string, string>> {
  await ensureFixtures();
  const out: Record<string, string> = {};
  for (const v of ["0.32.0", "0.5.0"]) {
    const dir = path.join(REPO_ROOT, ".cache", "engines", v);
    if (!fs.existsSync(path.join(dir, ".fabrik-engine.json"))) throw new Error(`no fixture engine at ${dir} (scripts/make-fixtures.mjs installs it)`);
    out[v] = dir;
  }
  return out;
}

/** The ssh world of this worker (`<root>/sshfleet-<pool>/world`). */
export async function sshWorld(): Promise<{ dir: string; world: hosts.SshWorld }> {
  const dir = path.join(testRoot(), `sshfleet-${process.env.VITEST_POOL_ID ?? "0"}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return { dir, world: await hosts.createWorld(path.join(dir, "world")) };
}

/** `vm add NAME` for test host `h` of `world` (identity and known_hosts of the world); returns the CLI result. */
export function addArgs(world: hosts.SshWorld, name: string, h: hosts.SshTestHost, extra: string[] = []): string[] {
  return ["vm", "add", name, "--ssh", `${h.user}@127.0.0.1`, "--port", String(h.port), "--identity", world.key, "--known-hosts", world.knownHosts, ...extra];
}

/** Create (if new), trust and start host `name` of `world` with the fixture engines; register it in `t` as VM `name`. */
export async function sshHostVm(t: TestEnv, world: hosts.SshWorld, name: string, opts: hosts.SshHostOptions = {}): Promise<hosts.SshTestHost> {
  let h = hosts.loadHost(world, name);
  if (!h) {
    h = await hosts.createHost(world, name, { engines: await fixtureEngines(), ...opts });
    hosts.trustHost(world, h);
  }
  await hosts.startHost(h);
  const r = await fabrik(t, addArgs(world, name, h), { timeoutMs: 60_000 });
  expect(r.code, `vm add ${name}: ${r.stderr}`).toBe(0);
  return h;
}

async function sshFleet(config: Record<string, unknown>): Promise<DriverFleet> {
  const { dir, world } = await sshWorld();
  const own = makeTestEnv("file-");
  // Workflows in the guest (its own user) read files the test puts here (e.g. resume's `failUnlessFile`).
  fs.chmodSync(own.tmp, 0o755);
  const configFile = path.join(own.tmp, "config.json");
  fs.writeFileSync(configFile, JSON.stringify(config));
  const base = envFor(path.join(dir, "fh"), path.join(own.tmp, "lh"), configFile, own.tmp);
  const t: TestEnv = { ...base, env: { ...base.env, HOME: world.home } };
  const vm = "e2e";
  const ready = path.join(dir, "ready");
  if (!fs.existsSync(ready)) {
    await sshHostVm(t, world, vm);
    // One probe now (as `vm create` leaves a Lima fleet's FABRIK_HOME with its cache): installs the probe in the VM
    // and creates FABRIK_HOME/cache, so that tests hashing FABRIK_HOME see only what their own commands change.
    const r = await fabrik(t, ["runs", "import", "--vm", vm]);
    expect(r.code, `runs import --vm ${vm}: ${r.stderr}`).toBe(0);
    fs.writeFileSync(ready, new Date().toISOString());
  } else {
    await hosts.startHost(hosts.loadHost(world, vm)!); // a previous file may have powered it off
  }
  const host = (name: string) => {
    const h = hosts.loadHost(world, name);
    if (!h) throw new Error(`no test host ${name}`);
    return h;
  };
  const fleet: DriverFleet = {
    ...t,
    driver: "ssh",
    vm,
    guestHome: async (name = vm) => host(name).guestHome,
    hostPath: (name, p) => hosts.hostPathOf(host(name), p),
    async addVm(name) {
      await sshHostVm(t, world, name);
    },
    async dropVm(name) {
      const h = hosts.loadHost(world, name);
      if (h) await hosts.stopHost(h);
      await fabrik(t, ["vm", "remove", "--force", name]);
    },
    powerOff: (name) => hosts.stopHost(host(name)),
    powerOn: (name) => hosts.startHost(host(name)),
    offline: /cannot connect over SSH to .*ECONNREFUSED/,
    async otherHome(name, vms) {
      const fh = tempDir(`${name}-`);
      const other: TestEnv = { ...t, fabrikHome: fh, env: { ...t.env, FABRIK_HOME: fh } };
      for (const v of vms) {
        const r = await fabrik(other, addArgs(world, v, host(v)));
        expect(r.code, r.stderr).toBe(0);
      }
      return other;
    },
  };
  // helpers/cli.ts hostPathOf() (and the engine-exit waits built on it) go through this.
  fleet.hostPathFn = fleet.hostPath;
  return fleet;
}
