/**
 * fabrik's configuration: a JSON file validated by zod, overridden by `FABRIK_*` environment variables,
 * overridden by flags (precedence flag > env > file > built-in default).
 */
import fs from "node:fs";
import type { z } from "zod";
import { ConfigError } from "../core/errors.js";
import { DRIVER_NAMES, type DriverName } from "../vm/driver.js";

/** Built-in defaults, each with the source of its value. */
export const DEFAULTS = {
  /** Driver for `vm create` when none is given. */
  driver: "lima" as DriverName,
  /** Engine version for new runs (smithers-engine.md: 0.32.0 is current). */
  engineVersion: "0.32.0",
  /** Deadline for one probe round trip to one VM, ms (issue: per-VM deadline, default 5 s). */
  probeTimeoutMs: 5_000,
  /**
   * VMs probed at once by `runs list` (one session per VM, so Lima's per-VM MaxSessions of 10 is not the
   * limit; host CPU is: `npm run bench` measured 10 VMs at cap 8 in two waves vs one at cap 10+).
   */
  probeConcurrency: 16,
  /** Engine rule: a `running` run whose last sign of life is older than this is stale/orphaned (RUN_HEARTBEAT_STALE_MS = 30 s). */
  engineHeartbeatStaleMs: 30_000,
  /** The launcher rewrites heartbeat.json every 10 s; three missed beats = stale. */
  launcherHeartbeatStaleMs: 30_000,
  /** The launcher's heartbeat.json period, seconds. */
  launcherHeartbeatIntervalS: 10,
  /** Guide Issue 2: a DB above 100 MB is a sign of oversized transcripts. */
  dbSizeWarnBytes: 100 * 1024 * 1024,
  /** Guide: the engine's truncation fix caps responseText/errorJson at 100 KB; larger rows are oversized. */
  rowSizeWarnBytes: 100 * 1024,
  /** Deadline for short remote commands (mkdir, write a file), ms. */
  remoteTimeoutMs: 30_000,
  /** Deadline for installing an engine into a VM, ms (a cold bun install downloads ~700 MB of packages). */
  engineInstallTimeoutMs: 15 * 60_000,
};

export type { DriverName };

function configFileSchema(z: typeof import("zod").z) {
  return z
  .object({
    driver: z.enum(DRIVER_NAMES).optional(),
    engine: z
      .object({
        version: z.string().min(1).optional(),
        /** A folder visible inside VMs used as bun/npm download cache for engine installs. */
        cache_dir: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    probe: z
      .object({
        timeout_ms: z.number().int().positive().optional(),
        concurrency: z.number().int().positive().max(64).optional(),
      })
      .strict()
      .optional(),
    thresholds: z
      .object({
        engine_heartbeat_stale_ms: z.number().int().positive().optional(),
        launcher_heartbeat_stale_ms: z.number().int().positive().optional(),
        db_size_warn_bytes: z.number().int().positive().optional(),
        row_size_warn_bytes: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    launcher: z.object({ heartbeat_interval_s: z.number().int().min(1).max(3600).optional() }).strict().optional(),
    lima: z.object({ limactl: z.string().min(1).optional() }).strict().optional(),
  })
  .strict();
}

export type ConfigFile = z.infer<ReturnType<typeof configFileSchema>>;

/** The effective configuration every command reads. */
export interface Config {
  driver: DriverName;
  engineVersion: string;
  engineCacheDir: string | undefined;
  probeTimeoutMs: number;
  probeConcurrency: number;
  engineHeartbeatStaleMs: number;
  launcherHeartbeatStaleMs: number;
  launcherHeartbeatIntervalS: number;
  dbSizeWarnBytes: number;
  rowSizeWarnBytes: number;
  limactl: string;
  /** Where the values came from, for `fabrik config` style debugging. */
  file: string;
}

/**
 * Read and validate the config file; a missing file is an empty config (and zod is not even loaded).
 * Throws {@link ConfigError}.
 */
export async function readConfigFile(file: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, "fix its permissions");
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`, "fix or remove the file");
  }
  const { z } = await import("zod");
  const parsed = configFileSchema(z).safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "(top level)";
    throw new ConfigError(`config file ${file} is invalid at ${where}: ${issue?.message}`, "fix or remove the file");
  }
  return parsed.data;
}

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`environment variable ${name}=${JSON.stringify(v)} is not a positive integer`, `unset it or give a number`);
  return n;
}

/** Flags that override the config (undefined = not given). */
export interface ConfigFlags {
  driver?: DriverName | undefined;
  engine?: string | undefined;
}

/**
 * Merge file, environment and flags (flag > env > file > default).
 * Env: FABRIK_DRIVER, FABRIK_ENGINE, FABRIK_ENGINE_CACHE_DIR, FABRIK_PROBE_TIMEOUT_MS,
 * FABRIK_PROBE_CONCURRENCY, FABRIK_LIMACTL. Throws {@link ConfigError} on invalid values.
 */
export async function resolveConfig(file: string, env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): Promise<Config> {
  const cf = await readConfigFile(file);
  const envDriver = env.FABRIK_DRIVER;
  if (envDriver !== undefined && envDriver !== "" && envDriver !== "lima" && envDriver !== "local") {
    throw new ConfigError(`FABRIK_DRIVER=${JSON.stringify(envDriver)} is not a driver`, "use lima or local");
  }
  return {
    driver: flags.driver ?? ((envDriver || undefined) as DriverName | undefined) ?? cf.driver ?? DEFAULTS.driver,
    engineVersion: flags.engine ?? (env.FABRIK_ENGINE || undefined) ?? cf.engine?.version ?? DEFAULTS.engineVersion,
    engineCacheDir: (env.FABRIK_ENGINE_CACHE_DIR || undefined) ?? cf.engine?.cache_dir,
    probeTimeoutMs: envInt(env, "FABRIK_PROBE_TIMEOUT_MS") ?? cf.probe?.timeout_ms ?? DEFAULTS.probeTimeoutMs,
    probeConcurrency: envInt(env, "FABRIK_PROBE_CONCURRENCY") ?? cf.probe?.concurrency ?? DEFAULTS.probeConcurrency,
    engineHeartbeatStaleMs: cf.thresholds?.engine_heartbeat_stale_ms ?? DEFAULTS.engineHeartbeatStaleMs,
    launcherHeartbeatStaleMs: cf.thresholds?.launcher_heartbeat_stale_ms ?? DEFAULTS.launcherHeartbeatStaleMs,
    launcherHeartbeatIntervalS: cf.launcher?.heartbeat_interval_s ?? DEFAULTS.launcherHeartbeatIntervalS,
    dbSizeWarnBytes: cf.thresholds?.db_size_warn_bytes ?? DEFAULTS.dbSizeWarnBytes,
    rowSizeWarnBytes: cf.thresholds?.row_size_warn_bytes ?? DEFAULTS.rowSizeWarnBytes,
    limactl: (env.FABRIK_LIMACTL || undefined) ?? cf.lima?.limactl ?? "limactl",
    file,
  };
}
