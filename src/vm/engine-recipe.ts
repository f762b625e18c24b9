/**
 * How fabrik installs the Smithers engine (npm package `smithers-orchestrator`) into a folder, and which CLI
 * dialect each supported engine version speaks. Pure data and pure functions: no I/O, no runtime deps.
 *
 * Sources of the facts: `shared/reference/smithers-engine.md` (verified against the real engine), plus
 * the measurements below, taken on the build machine (Debian 12, Node 20.20, npm 11.19, 2 cores, the npm
 * registry as the only reachable package source) while writing this module and `scripts/make-fixtures.mjs`.
 *
 * ## Installing an engine into a fresh folder `<dir>` (npm registry only; verified for 0.32.0 and 0.5.0)
 *
 * 1. bun, from the npm registry (the binary ships inside `@oven/bun-linux-x64`, an optional dependency of
 *    `bun`; the `bun` package's postinstall links it):
 *      `npm install --prefix <dir>/.runtime --no-audit --no-fund bun@<BUN_VERSION>`
 *    → `<dir>/.runtime/node_modules/.bin/bun`. (npm 11 warns "install scripts not yet covered by
 *    allowScripts"; the script still runs.)
 * 2. Write `<dir>/package.json` = `enginePackageJson(version)`.
 * 3. `cd <dir> && <dir>/.runtime/node_modules/.bin/bun install`
 *    → `<dir>/node_modules/.bin/smithers` (and `<dir>/bun.lock`). bun reports "Blocked 1 postinstall"
 *    for `@smithers-orchestrator/jj-linux-x64` on 0.32.0: harmless, that script only chmods `bin/jj`, which
 *    the tarball already ships executable. Do NOT use `bunx`/`npx smithers-orchestrator@…`: they cannot
 *    apply `overrides` and 0.32.0 then fails.
 * 4. Run the engine with bun on PATH (the bin is `#!/usr/bin/env bun`; Node cannot run the .ts/.tsx sources):
 *      `PATH=<dir>/.runtime/node_modules/.bin:$PATH <dir>/node_modules/.bin/smithers …`
 * 5. Write an "installed" marker file last, so a half-finished install is never mistaken for a good one.
 *
 * ## Shared caches and measured times
 * Env `npm_config_cache=<cache>/npm` (npm) and `BUN_INSTALL_CACHE_DIR=<cache>/bun` (bun). With the bun cache
 * on the same filesystem as `<dir>`, bun hard-links package files out of the cache (a file in two
 * installs shows link count 3: cache + both installs), so a second engine folder costs little time or disk.
 *
 * | step                          | cold (empty caches)                     | warm (shared caches, new folder) |
 * |-------------------------------|-----------------------------------------|----------------------------------|
 * | `npm install … bun@1.4.5`     | 3.4–5.0 s                               | 2.8–4.2 s: npm start-up and bun's postinstall dominate; the cache barely helps |
 * | `bun install`, engine 0.32.0  | 3.6–7.2 s (752 packages; node_modules 697 MB; bun cache ~725 MB) | 1.2–1.8 s |
 * | `bun install`, engine 0.5.0   | 1.5 s alone (141 packages, 102 MB, cache 12 MB); 0.3–0.4 s after 0.32.0 filled the cache | 0.1–0.2 s |
 * (Five cold and four warm measurements, 2026-11; the cold spread is registry latency.) So a fresh folder with a
 * warm cache is ready in ~5 s (0.32.0), of which ~4 s is the npm step for bun: share one bun between engine
 * folders, or copy/hard-link `.runtime`, if that matters.
 *
 * ## How a workflow outside the engine folder finds `smithers-orchestrator` and `zod`
 * Verified for 0.32.0 and 0.5.0 with bun auto-install disabled (`bunfig.toml` in the run's cwd, which was
 * also the workflow's folder: `[install]` / `auto = "disable"`): a `node_modules` SYMLINK in the workflow's
 * folder pointing at `<dir>/node_modules` resolves both packages (and the JSX runtime
 * `smithers-orchestrator/jsx-runtime`).
 * Without it the run fails at load: 0.32 `Cannot find package 'zod' imported from …/wf.tsx`,
 * 0.5 `Cannot find module 'smithers-orchestrator/jsx-dev-runtime' from '…/wf.tsx'`. That is why
 * `enginePackageJson` lists `zod` itself: workflows import it, so it must sit at `<dir>/node_modules/zod`
 * rather than depend on hoisting.
 *
 * ## Which process is the engine (launching `<dir>/node_modules/.bin/smithers up|run …`)
 * - 0.32.0: the bin (`smithers-orchestrator/src/bin/smithers.js`) looks for the project-local install
 *   nearest the workflow file (then the cwd) and re-executes THAT as a child (`spawn(bun, [localBin, …])`,
 *   stdio inherited) unless its realpath is the bin itself. With the `node_modules` symlink above pointing
 *   at the same `<dir>`, realpaths match: the pid you launch IS the engine (`_smithers_runs.runtime_owner_id`
 *   = `pid:<launched pid>:<uuid>`, verified). If the workflow's nearest `node_modules` is a different
 *   install (even an identical copy in another folder), the launched pid is only a wrapper and the engine
 *   is its child (verified: owner pid = the child's). Kill the process group, or read the owner pid.
 * - 0.5.0: the bin is `src/cli/index.ts` with no delegation: the launched pid is always the engine. 0.5
 *   records no owner pid in the DB.
 */

/** Engine versions fabrik knows how to install and drive, newest first. Anything else is refused. */
export const SUPPORTED_ENGINES = ["0.32.0", "0.5.0"] as const;

/** One of {@link SUPPORTED_ENGINES}. */
export type SupportedEngineVersion = (typeof SUPPORTED_ENGINES)[number];

/** The engine fabrik installs when the user names none: the current release, 0.32.0. */
export const DEFAULT_ENGINE_VERSION = "0.32.0" satisfies SupportedEngineVersion;

/**
 * The CLI and DB dialect an engine version speaks. Decided only by {@link engineDialect}.
 */
export type EngineDialect =
  /**
   * Engine 0.32.x. Start AND resume with the verb `up`: `smithers up WF --run-id ID --input JSON`,
   * resume `smithers up WF --resume ID` (same as `--run-id ID --resume true`). `_smithers_runs` has
   * `heartbeat_at_ms` (refreshed every 1 s) and `runtime_owner_id` (`pid:<pid>:<uuid>`); resume refuses while
   * the heartbeat is fresh (`RUN_STILL_RUNNING`, exit 4) or the owner pid lives (`RUN_OWNER_ALIVE`, exit 1).
   * Pass `--no-post-failure` to `up` (or env `SMITHERS_POST_FAILURE=0`, which also covers `retry-task`,
   * whose parser rejects the flag): otherwise a failed run launches a model-driven "autopsy" workflow.
   */
  | "modern"
  /**
   * Engine 0.5.x. Verb `run` (also `resume`, `status`, … each taking the workflow file): start
   * `smithers run WF --run-id ID --input JSON`, resume `smithers run WF --run-id ID --resume`.
   * `_smithers_runs` has NO heartbeat and NO owner columns (nothing marks a dead run; no lock: never
   * resume while the old process may live). No `--no-post-failure` flag (no autopsy to suppress).
   */
  | "legacy";

/** Thrown by {@link engineDialect} (and the other version-taking functions) for an unsupported version. */
export class UnknownEngineVersionError extends Error {
  /** The version string that was asked for, as given. */
  readonly version: string;
  /** The versions that would have been accepted ({@link SUPPORTED_ENGINES}). */
  readonly supported: readonly string[];

  constructor(version: string) {
    super(
      `unknown Smithers engine version ${JSON.stringify(version)}: supported versions are ${SUPPORTED_ENGINES.join(", ")}`,
    );
    this.name = "UnknownEngineVersionError";
    this.version = version;
    this.supported = SUPPORTED_ENGINES;
  }
}

/** True when `version` is exactly one of {@link SUPPORTED_ENGINES}. */
export function isSupportedEngineVersion(version: string): version is SupportedEngineVersion {
  return (SUPPORTED_ENGINES as readonly string[]).includes(version);
}

/**
 * The dialect of an engine version: `"0.32.0"` → `"modern"`, `"0.5.0"` → `"legacy"`. The single place
 * the dialect is decided. Only exact supported versions are accepted (no ranges, no `v` prefix).
 * @throws UnknownEngineVersionError for anything else.
 */
export function engineDialect(version: string): EngineDialect {
  switch (version) {
    case "0.32.0":
      return "modern";
    case "0.5.0":
      return "legacy";
    default:
      throw new UnknownEngineVersionError(version);
  }
}

/**
 * The bun release used to run (and install) every engine: 1.4.5, installed from the npm registry as
 * `bun@1.4.5`. Both engines require bun >= 1.3 (`engines.bun` in their package.json); every fact in this
 * module and `smithers-engine.md` was observed with bun 1.4.x, and 1.4.5 is the release all fixtures,
 * examples and timings above were produced with.
 */
export const BUN_VERSION = "1.4.5";

/** The npm package name of the engine. */
export const ENGINE_PACKAGE_NAME = "smithers-orchestrator";

/**
 * The `zod` version added to each engine folder so workflows' `import { z } from "zod"` resolves at
 * `<dir>/node_modules/zod`. 4.6.7 is what bun resolves for both engines' own ranges (0.32.0: `^4.4.3`,
 * 0.5.0: `^4.3.6`), so the workflow and the engine share one zod copy.
 */
export const ENGINE_ZOD_VERSION = "4.6.7";

/**
 * `overrides` that engine 0.32.0 needs (from `smithers-engine.md`): without the first, every command crashes
 * with `Cannot find module 'effect/crypto/Aead'`; the other two replace exact versions 0.32.0 pins that the
 * reachable registry lacks. Engine 0.5.0 installs cleanly with no overrides (verified: 141 packages).
 */
export const ENGINE_0_32_OVERRIDES: Readonly<Record<string, string>> = Object.freeze({
  "@effect/platform-node-shared": "4.0.0-beta.102",
  "@tanstack/electric-db-collection": "0.3.15",
  "@vectorize-io/hindsight-client": "0.9.1",
});

/** Shape of the package.json written into an engine folder (see {@link enginePackageJson}). */
export interface EnginePackageJson {
  /** `fabrik-engine-<version>`. */
  name: string;
  /** Always true: the folder is never published. */
  private: true;
  description: string;
  /** `smithers-orchestrator` pinned exactly to the version, and `zod` pinned to {@link ENGINE_ZOD_VERSION}. */
  dependencies: Record<string, string>;
  /** Present for 0.32.0 only: {@link ENGINE_0_32_OVERRIDES}. */
  overrides?: Record<string, string>;
}

/**
 * The package.json for the per-version engine folder: `smithers-orchestrator` pinned exactly, `zod` so
 * workflows can import it, and for 0.32.0 the {@link ENGINE_0_32_OVERRIDES}. Returns a fresh object;
 * serialise it with `JSON.stringify(pkg, null, 2)`.
 * @throws UnknownEngineVersionError for an unsupported version.
 */
export function enginePackageJson(version: string): EnginePackageJson {
  const dialect = engineDialect(version);
  const pkg: EnginePackageJson = {
    name: `fabrik-engine-${version}`,
    private: true,
    description: `Smithers engine ${version} installed by fabrik`,
    dependencies: {
      [ENGINE_PACKAGE_NAME]: version,
      zod: ENGINE_ZOD_VERSION,
    },
  };
  if (dialect === "modern") pkg.overrides = { ...ENGINE_0_32_OVERRIDES };
  return pkg;
}

/** Paths inside an engine folder `<dir>` (POSIX, as on the VM). */
export interface EngineLayout {
  /** `<dir>`: holds package.json, node_modules, bun.lock. */
  dir: string;
  /** `<dir>/.runtime`: the npm prefix bun is installed into. */
  runtimeDir: string;
  /** `<dir>/.runtime/node_modules/.bin`: put first on PATH when running the engine. */
  binDir: string;
  /** `<dir>/.runtime/node_modules/.bin/bun`. */
  bun: string;
  /** `<dir>/node_modules`: what a workflow folder's `node_modules` symlink points at. */
  nodeModules: string;
  /** `<dir>/node_modules/.bin/smithers`: the engine CLI. */
  smithers: string;
  /** `<dir>/.fabrik-engine.json`: written last by an install; its absence means "not installed". */
  marker: string;
}

/** The layout of an engine folder `<dir>` (trailing slashes on `dir` are ignored). */
export function engineLayout(dir: string): EngineLayout {
  const base = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
  const runtimeDir = `${base}/.runtime`;
  const binDir = `${runtimeDir}/node_modules/.bin`;
  return {
    dir: base,
    runtimeDir,
    binDir,
    bun: `${binDir}/bun`,
    nodeModules: `${base}/node_modules`,
    smithers: `${base}/node_modules/.bin/smithers`,
    marker: `${base}/.fabrik-engine.json`,
  };
}

/** One command of an install plan: run `argv` in `cwd` with `env` added to the environment. */
export interface InstallStep {
  /** What the step does, for progress output. */
  title: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

/**
 * The commands that install engine `version` into `dir`, in order (the recipe in this file's header). The
 * caller writes `<dir>/package.json` = {@link enginePackageJson} before the second step and the marker after
 * the last. `cacheDir`, when given, is shared by every install (`<cacheDir>/npm`, `<cacheDir>/bun`).
 * @throws UnknownEngineVersionError for an unsupported version.
 */
export function engineInstallPlan(dir: string, version: string, cacheDir?: string): InstallStep[] {
  engineDialect(version);
  const layout = engineLayout(dir);
  const cacheEnv: Record<string, string> = cacheDir
    ? { npm_config_cache: `${cacheDir}/npm`, BUN_INSTALL_CACHE_DIR: `${cacheDir}/bun` }
    : {};
  return [
    {
      title: `install bun ${BUN_VERSION}`,
      argv: ["npm", "install", "--prefix", layout.runtimeDir, "--no-audit", "--no-fund", `bun@${BUN_VERSION}`],
      cwd: layout.dir,
      env: cacheEnv,
    },
    {
      title: `install smithers-orchestrator ${version}`,
      argv: [layout.bun, "install"],
      cwd: layout.dir,
      env: cacheEnv,
    },
  ];
}
