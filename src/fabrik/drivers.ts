/**
 * Choosing a driver. The driver is chosen per VM at `vm create` and recorded in the registry; VMs the
 * registry does not know (e.g. Lima instances created with limactl directly) use the configured default.
 * Drivers are built lazily, on first use, so commands that never touch a VM (`--no-live`, `--help`,
 * completion of run ids) never load a driver's code (execa, zod).
 */
import path from "node:path";
import type { Config } from "./config.js";
import type { FabrikPaths } from "./paths.js";
import type { DriverName, VmDriver } from "../vm/driver.js";

/** Lazily built drivers, one per name per process. */
export class DriverSet {
  private readonly cache = new Map<DriverName, Promise<VmDriver>>();
  constructor(
    private readonly config: Config,
    private readonly paths: FabrikPaths,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** The driver called `name` (its module is imported on first use). */
  get(name: DriverName): Promise<VmDriver> {
    let d = this.cache.get(name);
    if (!d) {
      d =
        name === "lima"
          ? import("../vm/lima-driver.js").then(({ LimaDriver }) => new LimaDriver({ limactl: this.config.limactl, cacheDir: path.join(this.paths.cache), env: this.env }))
          : import("../vm/local-driver.js").then(({ LocalDriver }) => new LocalDriver(this.paths.localVms));
      this.cache.set(name, d);
    }
    return d;
  }

  /** Replace a driver (tests inject fakes that fail on unexpected calls). */
  set(name: DriverName, driver: VmDriver): void {
    this.cache.set(name, Promise.resolve(driver));
  }
}
