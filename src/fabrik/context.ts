/**
 * The per-invocation context every command handler receives: resolved paths, config, the terminal, drivers
 * (built on first use), the registry (opened on first use) and the clock.
 *
 * Handlers do not write stdout through it: they return a result that `cli.ts` renders. `io.stderr` is for
 * progress UIs (listr2) and prompts only.
 */
import path from "node:path";
import { resolveConfig, type Config, type ConfigFlags } from "./config.js";
import { processIo, type ColorMode, type Io } from "./io.js";
import { resolvePaths, type FabrikPaths } from "./paths.js";
import type { Registry } from "./registry.js";
import { DriverSet } from "./drivers.js";
import type { DriverName, VmDriver } from "../vm/driver.js";
import type { GuestInstallCache } from "../vm/guest-programs.js";
import { ConfigError, NotFoundError } from "../core/errors.js";

export interface Context {
  io: Io;
  paths: FabrikPaths;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** Epoch ms; injected so tests control time. */
  now: () => number;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
  /** The driver called `name`, built on first use. */
  driver(name: DriverName): Promise<VmDriver>;
  /** Which guest programs are installed in which VM, shared by fabrik processes (`$FABRIK_HOME/cache/guest-installs.json`). */
  guestInstalls(): Promise<GuestInstallCache>;
  /** The registry, opened on first call (better-sqlite3 is loaded then). */
  registry(): Registry;
  /** Release resources (the drivers' connections, the registry). */
  close(): void;
  /**
   * Why the config file or environment could not be used, for commands built with `lenientConfig` (`fabrik
   * doctor`): they then run on the built-in defaults and report this. Undefined otherwise.
   */
  configProblem?: ConfigError | undefined;
}

export interface ContextOptions {
  json?: boolean;
  color?: ColorMode;
  flags?: ConfigFlags;
  env?: NodeJS.ProcessEnv;
  io?: Io;
  now?: () => number;
  signal?: AbortSignal;
  /** Drivers to use instead of the real ones (tests inject fakes). */
  drivers?: Partial<Record<DriverName, VmDriver>>;
  /** An unusable config file or environment is not fatal: defaults are used and the error kept as `configProblem`. */
  lenientConfig?: boolean;
}

/** Build the context for one command. Throws ConfigError on a bad config file, env or FABRIK_HOME. */
export async function createContext(opts: ContextOptions = {}): Promise<Context> {
  const env = opts.env ?? process.env;
  const paths = resolvePaths(env);
  let configProblem: ConfigError | undefined;
  let config: Config;
  try {
    config = await resolveConfig(paths.config, env, opts.flags ?? {});
  } catch (err) {
    if (!opts.lenientConfig || !(err instanceof ConfigError)) throw err;
    configProblem = err;
    // Without the file (the environment may be fine), else without either.
    const noFile = path.join(paths.home, ".no-config-file.json");
    config = await resolveConfig(noFile, env, opts.flags ?? {}).catch(() => resolveConfig(noFile, {}, opts.flags ?? {}));
  }
  const io = opts.io ? { ...opts.io, json: opts.json ?? opts.io.json } : processIo({ color: opts.color ?? "auto", json: opts.json ?? false, env });
  let registry: Registry | undefined;
  let installs: Promise<GuestInstallCache> | undefined;
  const { Registry: RegistryClass } = await import("./registry.js");
  const openRegistry = () => (registry ??= RegistryClass.open(paths.registry, { home: paths.home }));
  const guestInstalls = () =>
    (installs ??= import("../vm/guest-programs.js").then(({ FileGuestInstallCache }) => new FileGuestInstallCache(path.join(paths.cache, "guest-installs.json"))));
  const drivers = new DriverSet(config, paths, env, { registry: openRegistry, guestInstalls });
  for (const [name, d] of Object.entries(opts.drivers ?? {})) if (d) drivers.set(name as DriverName, d);
  return {
    io,
    paths,
    config,
    env,
    now: opts.now ?? Date.now,
    signal: opts.signal ?? new AbortController().signal,
    driver: (name) => drivers.get(name),
    guestInstalls,
    registry: openRegistry,
    close() {
      void drivers.close();
      registry?.close();
      registry = undefined;
    },
    configProblem,
  };
}

/**
 * The driver for a VM: the one recorded in the registry, else the configured default.
 * Returns the driver and whether the VM is known to the registry.
 */
export async function driverFor(ctx: Context, vm: string): Promise<{ driver: VmDriver; name: DriverName; known: boolean }> {
  const rec = ctx.registry().getVm(vm);
  const name = rec?.driver ?? ctx.config.driver;
  return { driver: await ctx.driver(name), name, known: rec !== undefined };
}

/** Resolve a VM that must exist: registry first, then the drivers. Throws NotFoundError. */
export async function requireVm(ctx: Context, vm: string): Promise<{ driver: VmDriver; name: DriverName }> {
  const { driver, name, known } = await driverFor(ctx, vm);
  if (known) return { driver, name };
  const info = await driver.inspect(vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${vm} does not exist`, "see `fabrik vm list`, or create it with `fabrik vm create`");
  return { driver, name };
}
