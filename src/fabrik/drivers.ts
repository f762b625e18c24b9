/**
 * Choosing a driver. The driver is chosen per VM at `vm create` (or `vm add` for ssh machines) and recorded in the
 * registry; VMs the registry does not know (e.g. Lima instances created with limactl directly) use the configured
 * default. Drivers are built lazily, on first use, so commands that never touch a VM (`--no-live`, `--help`,
 * completion of run ids) never load a driver's code (execa, zod, ssh2).
 */
import path from "node:path";
import type { Config } from "./config.js";
import type { FabrikPaths } from "./paths.js";
import type { Registry, VmRecord } from "./registry.js";
import type { DriverName, VmDriver } from "../vm/driver.js";
import type { GuestInstallCache } from "../vm/guest-programs.js";
import type { SshVm, SshVmDirectory } from "../vm/ssh-driver.js";

/** What the drivers may read from the command's context (all lazy). */
export interface DriverSources {
  /** The registry (the ssh driver's directory of machines). */
  registry: () => Registry;
  /** The guest-program install cache shared by fabrik processes. */
  guestInstalls: () => Promise<GuestInstallCache>;
}

/** An ssh VM as the driver sees it, from its registry row (undefined for other drivers or an incomplete row). */
export function sshVmOf(rec: VmRecord | undefined): SshVm | undefined {
  if (!rec || rec.driver !== "ssh" || !rec.ssh_host || !rec.ssh_port || !rec.ssh_user) return undefined;
  let jump: SshVm["host"]["jump"] = null;
  if (rec.ssh_jump) {
    const m = /^(.+)@(\[[^\]]+\]|[^:]+):(\d+)$/.exec(rec.ssh_jump);
    if (m) jump = { user: m[1]!, host: m[2]!.replace(/^\[(.*)\]$/, "$1"), port: Number(m[3]) };
  }
  return {
    name: rec.name,
    guestHome: rec.guest_home,
    host: { host: rec.ssh_host, port: rec.ssh_port, user: rec.ssh_user, identityFile: rec.ssh_identity ?? null, knownHostsFile: rec.ssh_known_hosts ?? null, jump },
  };
}

/** Lazily built drivers, one per name per process. */
export class DriverSet {
  private readonly cache = new Map<DriverName, Promise<VmDriver>>();
  constructor(
    private readonly config: Config,
    private readonly paths: FabrikPaths,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly sources?: DriverSources,
  ) {}

  /** The driver called `name` (its module is imported on first use). */
  get(name: DriverName): Promise<VmDriver> {
    let d = this.cache.get(name);
    if (!d) {
      d = this.build(name);
      this.cache.set(name, d);
    }
    return d;
  }

  private build(name: DriverName): Promise<VmDriver> {
    switch (name) {
      case "lima":
        return import("../vm/lima-driver.js").then(({ LimaDriver }) => new LimaDriver({ limactl: this.config.limactl, cacheDir: path.join(this.paths.cache), env: this.env }));
      case "local":
        return import("../vm/local-driver.js").then(({ LocalDriver }) => new LocalDriver(this.paths.localVms));
      case "ssh":
        return import("../vm/ssh-driver.js").then(({ SshDriver }) => {
          const src = this.sources;
          const vms: SshVmDirectory = {
            get: (n) => (src ? sshVmOf(src.registry().getVm(n)) : undefined),
            list: () => (src ? src.registry().listVms().flatMap((r) => sshVmOf(r) ?? []) : []),
          };
          return new SshDriver({ vms, env: this.env, installCache: src?.guestInstalls, connectTimeoutMs: Math.min(this.config.probeTimeoutMs, 10_000) });
        });
    }
  }

  /** Replace a driver (tests inject fakes that fail on unexpected calls). */
  set(name: DriverName, driver: VmDriver): void {
    this.cache.set(name, Promise.resolve(driver));
  }

  /** Release what the drivers built so far hold open (the ssh driver's connections). */
  async close(): Promise<void> {
    for (const d of this.cache.values()) (await d.catch(() => undefined))?.close?.();
  }
}
