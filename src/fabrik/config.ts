/**
 * fabrik's configuration: one table of settings ({@link SETTINGS}), each with its key in the JSON file, its
 * environment variable and flag (if any), its default and the source of that default. A value comes from, in
 * order: a flag > the environment (`FABRIK_*`) > the file (`FABRIK_CONFIG`, else `~/.config/fabrik/config.json`)
 * > the default; {@link resolveConfig} records which, for `fabrik config list --explain`.
 *
 * The file is validated with a zod schema built from the same table (zod is loaded only when a file exists).
 */
import fs from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { ConfigError, UsageError } from "../core/errors.js";
import { pidExists } from "../core/pid-exists.js";
import { DRIVER_NAMES, type DriverName } from "../vm/driver.js";

/** Built-in values that are not settings (deadlines of fixed operations). */
export const DEFAULTS = {
  /** Deadline for short remote commands (mkdir, write a file), ms. */
  remoteTimeoutMs: 30_000,
  /** Deadline for installing an engine into a VM, ms (a cold bun install downloads ~700 MB of packages). */
  engineInstallTimeoutMs: 15 * 60_000,
};

export type { DriverName };

/** The effective configuration every command reads. Durations in ms unless named `…S`; sizes in bytes. */
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
  taskRunningLongMs: number;
  vmIdleMs: number;
  limactl: string;
  /** The config file these values were read from (it may not exist). */
  file: string;
  /** Where each setting's value came from, by key. */
  sources: Record<SettingKey, SettingSource>;
}

/** Where a value came from. */
export interface SettingSource {
  source: "flag" | "env" | "file" | "default";
  /** `--engine`, `FABRIK_ENGINE=…`, the file's path, or "built-in". */
  detail: string;
}

type Kind = { type: "int"; min: number; max?: number } | { type: "string" } | { type: "enum"; values: readonly string[] };

/** One setting. */
export interface Setting {
  /** Dotted key: the path in the JSON file (`probe.timeout_ms`). */
  key: string;
  field: keyof Omit<Config, "file" | "sources">;
  kind: Kind;
  /** The built-in value (undefined: unset by default). */
  default: string | number | undefined;
  env?: string;
  flag?: "driver" | "engine";
  /** What it does, with its unit and the source of the default. */
  describe: string;
}

/** Every setting fabrik has, once. */
export const SETTINGS = [
  { key: "driver", field: "driver", kind: { type: "enum", values: DRIVER_NAMES }, default: "lima", env: "FABRIK_DRIVER", flag: "driver", describe: "driver for `vm create` when none is given" },
  { key: "engine.version", field: "engineVersion", kind: { type: "string" }, default: "0.32.0", env: "FABRIK_ENGINE", flag: "engine", describe: "engine version for new runs (smithers-engine.md: 0.32.0 is current)" },
  { key: "engine.cache_dir", field: "engineCacheDir", kind: { type: "string" }, default: undefined, env: "FABRIK_ENGINE_CACHE_DIR", describe: "a folder visible inside VMs used as the bun/npm download cache of engine installs" },
  { key: "probe.timeout_ms", field: "probeTimeoutMs", kind: { type: "int", min: 1 }, default: 5_000, env: "FABRIK_PROBE_TIMEOUT_MS", describe: "deadline of one probe round trip to one VM, ms" },
  {
    key: "probe.concurrency",
    field: "probeConcurrency",
    kind: { type: "int", min: 1, max: 64 },
    default: 16,
    env: "FABRIK_PROBE_CONCURRENCY",
    describe: "VMs probed at once by `runs list` (one session per VM; host CPU is the limit: `npm run bench`)",
  },
  {
    key: "thresholds.engine_heartbeat_stale_ms",
    field: "engineHeartbeatStaleMs",
    kind: { type: "int", min: 1 },
    default: 30_000,
    describe: "a running run whose engine heartbeat is older than this is stale/orphaned, ms (engine rule RUN_HEARTBEAT_STALE_MS)",
  },
  { key: "thresholds.launcher_heartbeat_stale_ms", field: "launcherHeartbeatStaleMs", kind: { type: "int", min: 1 }, default: 30_000, describe: "heartbeat.json older than this is stale, ms (three missed 10 s beats)" },
  { key: "thresholds.db_size_warn_bytes", field: "dbSizeWarnBytes", kind: { type: "int", min: 1 }, default: 100 * 1024 * 1024, describe: "a run DB (+ WAL) over this many bytes is diagnosed DB_TOO_LARGE (guide Issue 2: 100 MB)" },
  {
    key: "thresholds.row_size_warn_bytes",
    field: "rowSizeWarnBytes",
    kind: { type: "int", min: 1 },
    default: 100 * 1024,
    describe: "a response_text/error_json value over this many bytes is oversized (the engine's truncation fix: 100 KB)",
  },
  { key: "thresholds.task_running_long_ms", field: "taskRunningLongMs", kind: { type: "int", min: 1 }, default: 2 * 3_600_000, describe: "an attempt in progress longer than this is diagnosed TASK_RUNNING_LONG, ms (2 h)" },
  { key: "thresholds.vm_idle_ms", field: "vmIdleMs", kind: { type: "int", min: 1 }, default: 3_600_000, describe: "a running VM with no active run for longer than this is flagged idle, ms (1 h)" },
  { key: "launcher.heartbeat_interval_s", field: "launcherHeartbeatIntervalS", kind: { type: "int", min: 1, max: 3600 }, default: 10, describe: "how often run.sh rewrites heartbeat.json, seconds" },
  { key: "lima.limactl", field: "limactl", kind: { type: "string" }, default: "limactl", env: "FABRIK_LIMACTL", describe: "the limactl command or path" },
] as const satisfies readonly Setting[];

export type SettingKey = (typeof SETTINGS)[number]["key"];

/** The setting called `key`, or a usage error listing the keys. */
export function settingOf(key: string): Setting {
  const s = (SETTINGS as readonly Setting[]).find((x) => x.key === key);
  if (!s) throw new UsageError(`unknown setting ${JSON.stringify(key)}`, `settings: ${SETTINGS.map((x) => x.key).join(", ")}`);
  return s;
}

/** The zod schema of the config file, built from {@link SETTINGS} (nested objects, strict: unknown keys are errors). */
function configFileSchema(zod: typeof import("zod").z): z.ZodType<ConfigFile> {
  const leaf = (k: Kind) =>
    k.type === "int"
      ? (k.max !== undefined ? zod.number().int().min(k.min).max(k.max) : zod.number().int().min(k.min)).optional()
      : k.type === "enum"
        ? zod.enum(k.values as [string, ...string[]]).optional()
        : zod.string().min(1).optional();
  const tree: Record<string, unknown> = {};
  for (const s of SETTINGS as readonly Setting[]) {
    const parts = s.key.split(".");
    let node = tree;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts.at(-1)!] = leaf(s.kind);
  }
  const build = (node: Record<string, unknown>): z.ZodTypeAny =>
    zod.object(Object.fromEntries(Object.entries(node).map(([k, v]) => [k, v instanceof zod.ZodType ? v : build(v as Record<string, unknown>).optional()]))).strict();
  return build(tree) as unknown as z.ZodType<ConfigFile>;
}

/** The config file's content: nested objects of setting values. */
export type ConfigFile = { [k: string]: string | number | ConfigFile | undefined };

function getPath(obj: ConfigFile, key: string): string | number | undefined {
  let node: unknown = obj;
  for (const p of key.split(".")) node = node && typeof node === "object" ? (node as Record<string, unknown>)[p] : undefined;
  return typeof node === "string" || typeof node === "number" ? node : undefined;
}

/**
 * A regular file's text. Opened without blocking, so a FIFO (or a device) in its place is an error (code
 * `ENOTREG`) instead of a hang waiting for a writer.
 * @throws the fs error (ENOENT, EACCES, EISDIR, …) or ENOTREG.
 */
function readRegularFile(file: string): string {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    if (!fs.fstatSync(fd).isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: "ENOTREG" });
    return fs.readFileSync(fd, "utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read and validate the config file; a missing file is an empty config (and zod is not even loaded).
 * Throws {@link ConfigError} naming the file and the bad key.
 */
export async function readConfigFile(file: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = readRegularFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    if ((err as NodeJS.ErrnoException).code === "ENOTREG") throw new ConfigError(`config file ${file} is not a regular file`, "point FABRIK_CONFIG at a JSON file, or remove it");
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, "fix its permissions");
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`, "fix or remove the file");
  }
  return validateConfigFile(file, data);
}

async function validateConfigFile(file: string, data: unknown): Promise<ConfigFile> {
  const { z: zod } = await import("zod");
  const parsed = configFileSchema(zod).safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "(top level)";
    throw new ConfigError(`config file ${file} is invalid at ${where}: ${issue?.message}`, "fix or remove the file; see `fabrik config list --explain`");
  }
  return parsed.data;
}

/** A value typed by a user (env, `config set`) for a setting: validated against its kind. Throws `fail(message)`. */
function parseValue(s: Setting, raw: string, fail: (message: string) => never): string | number {
  if (s.kind.type === "int") {
    const n = Number(raw);
    if (!/^(0|[1-9][0-9]*)$/.test(raw) || !Number.isSafeInteger(n) || n < s.kind.min || (s.kind.max !== undefined && n > s.kind.max)) {
      fail(`${s.key} must be a whole number${s.kind.max !== undefined ? ` from ${s.kind.min} to ${s.kind.max}` : ` ≥ ${s.kind.min}`}, got ${JSON.stringify(raw)}`);
    }
    return n;
  }
  if (s.kind.type === "enum" && !s.kind.values.includes(raw)) fail(`${s.key} must be one of ${s.kind.values.join(", ")}, got ${JSON.stringify(raw)}`);
  if (raw === "") fail(`${s.key} must not be empty`);
  return raw;
}

/** Flags that override the config (undefined = not given). */
export interface ConfigFlags {
  driver?: DriverName | undefined;
  engine?: string | undefined;
}

/**
 * Merge file, environment and flags (flag > env > file > default), recording each value's source.
 * Throws {@link ConfigError} on an invalid file or environment value.
 */
export async function resolveConfig(file: string, env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): Promise<Config> {
  const cf = await readConfigFile(file);
  const out: Record<string, unknown> = { file, sources: {} };
  const sources = out.sources as Record<string, SettingSource>;
  for (const s of SETTINGS as readonly Setting[]) {
    const flag = s.flag ? flags[s.flag] : undefined;
    const envRaw = s.env ? env[s.env] : undefined;
    let value: string | number | undefined;
    if (flag !== undefined) {
      value = flag;
      sources[s.key] = { source: "flag", detail: `--${s.flag}` };
    } else if (envRaw !== undefined && envRaw !== "") {
      value = parseValue(s, envRaw, (m) => {
        throw new ConfigError(`environment variable ${s.env}=${JSON.stringify(envRaw)} is invalid: ${m}`, `unset it or fix it`);
      });
      sources[s.key] = { source: "env", detail: s.env! };
    } else if (getPath(cf, s.key) !== undefined) {
      value = getPath(cf, s.key);
      sources[s.key] = { source: "file", detail: file };
    } else {
      value = s.default;
      sources[s.key] = { source: "default", detail: "built-in" };
    }
    out[s.field] = value;
  }
  return out as unknown as Config;
}

/** One row of `fabrik config list`. */
export interface SettingView {
  key: string;
  value: string | number | null;
  source: SettingSource["source"];
  /** The env variable's name, the file, or `built-in`. */
  source_detail: string;
  default: string | number | null;
  env: string | null;
  describe: string;
}

/** Every setting with its value and source. */
export function settingViews(c: Config): SettingView[] {
  return (SETTINGS as readonly Setting[]).map((s) => ({
    key: s.key,
    value: (c[s.field] as string | number | undefined) ?? null,
    source: c.sources[s.key as SettingKey].source,
    source_detail: c.sources[s.key as SettingKey].detail,
    default: s.default ?? null,
    env: s.env ?? null,
    describe: s.describe,
  }));
}

/**
 * `config set KEY VALUE` (or unset with `value` undefined): validate with the same schema, then write the file
 * atomically (a temporary file in the same folder, mode 0600, renamed over it). Returns the new file content.
 * Throws UsageError for an unknown key or a bad value; ConfigError when the existing file is invalid or unwritable.
 */
export async function writeSetting(file: string, key: string, value: string | undefined): Promise<ConfigFile> {
  const s = settingOf(key);
  const parsed = value === undefined ? undefined : parseValue(s, value, (m) => {
    throw new UsageError(m, `see \`fabrik config list --explain\``);
  });
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`cannot write config file ${file}: ${(err as Error).message}`, "check the folder's permissions", { cause: err });
  }
  // Read, change, write under the file's lock: two `config set`s at once must both land (each rewrites the file).
  return withConfigLock(file, async () => {
    const current = structuredClone(await readConfigFile(file));
    const parts = s.key.split(".");
    let node: ConfigFile = current;
    for (const p of parts.slice(0, -1)) node = (node[p] && typeof node[p] === "object" ? node[p] : (node[p] = {})) as ConfigFile;
    if (parsed === undefined) delete node[parts.at(-1)!];
    else node[parts.at(-1)!] = parsed;
    // Drop objects left empty by an unset.
    const prune = (o: ConfigFile): void => {
      for (const [k, v] of Object.entries(o)) if (v && typeof v === "object") (prune(v), Object.keys(v).length === 0 && delete o[k]);
    };
    prune(current);
    await validateConfigFile(file, current);
    try {
      const tmp = `${file}.tmp-${process.pid}`;
      fs.writeFileSync(tmp, JSON.stringify(current, null, 2) + "\n", { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch (err) {
      throw new ConfigError(`cannot write config file ${file}: ${(err as Error).message}`, "check the folder's permissions", { cause: err });
    }
    return current;
  });
}

/** How long {@link withConfigLock} waits for another `config set` to finish, ms. */
const CONFIG_LOCK_WAIT_MS = 10_000;

/**
 * Run `fn` holding `<file>.lock`: a file created exclusively (O_EXCL) holding the holder's pid, removed afterwards.
 * A lock whose holder is gone (a `config set` that was SIGKILLed) is taken over. Waits up to
 * {@link CONFIG_LOCK_WAIT_MS}; throws ConfigError naming the holder's pid when it is still held then, or when the lock
 * cannot be created at all (the folder is not writable).
 */
async function withConfigLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + CONFIG_LOCK_WAIT_MS;
  for (;;) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(lock, "wx", 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new ConfigError(`cannot lock config file ${file}: ${(err as Error).message}`, "check the folder's permissions", { cause: err });
    }
    if (fd !== undefined) {
      try {
        fs.writeSync(fd, `${process.pid}\n`);
      } finally {
        fs.closeSync(fd);
      }
      try {
        return await fn();
      } finally {
        fs.rmSync(lock, { force: true });
      }
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(lock, "utf8").trim());
    } catch {
      continue; // released meanwhile
    }
    if (Number.isInteger(holder) && holder > 0 && !pidExists(holder)) {
      // The holder died holding it (a SIGKILLed `config set`): remove it, under a second exclusive file so that two
      // takers cannot both remove it (the second would remove the first one's fresh lock). Nothing in between waits.
      const takeover = `${lock}.takeover`;
      try {
        fs.closeSync(fs.openSync(takeover, "wx", 0o600));
      } catch {
        // Another taker is at it; a takeover file left by a taker killed right there is removed after a while.
        const age = Date.now() - (fs.statSync(takeover, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
        if (age > 2_000) fs.rmSync(takeover, { force: true });
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        if (Number(fs.readFileSync(lock, "utf8").trim()) === holder) fs.rmSync(lock, { force: true });
        fs.rmSync(`${file}.tmp-${holder}`, { force: true });
      } catch {
        /* released meanwhile */
      } finally {
        fs.rmSync(takeover, { force: true });
      }
      continue;
    }
    if (Date.now() > deadline) throw new ConfigError(`config file ${file} is locked by another fabrik (pid ${Number.isNaN(holder) ? "unknown" : holder}, ${lock})`, "wait for it to finish; remove the lock file if no fabrik is running");
    await new Promise((r) => setTimeout(r, 20));
  }
}
