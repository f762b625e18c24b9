/**
 * Installing the Smithers engine into a VM: `~/.fabrik/engines/<version>/` in the guest, following the
 * recipe in `engine-recipe.ts` (bun from the npm registry, or the VM's own bun ≥ 1.3; then `bun install`
 * of a package.json that pins the engine and its overrides). Idempotent (a marker file written last),
 * serialised by a lock, and run through the VM's own package access.
 */
import { PrerequisiteError, UserError } from "../core/errors.js";
import type { VmDriver } from "./driver.js";
import { BUN_VERSION, UnknownEngineVersionError, engineDialect, engineLayout, enginePackageJson, type EngineDialect, type EngineLayout } from "./engine-recipe.js";

/** Engine folders live under `<guest home>/.fabrik/engines/<version>`. */
export function engineDir(guestHome: string, version: string): string {
  return `${guestHome}/.fabrik/engines/${version}`;
}

/**
 * Validate an engine version and return its dialect; throws a {@link UserError} naming the supported
 * versions for anything else (the CLI's face of {@link UnknownEngineVersionError}).
 */
export function requireEngineDialect(version: string): EngineDialect {
  try {
    return engineDialect(version);
  } catch (err) {
    if (err instanceof UnknownEngineVersionError) {
      throw new UserError(err.message, "pass --engine with a supported version, or fix `engine.version` in the config file");
    }
    throw err;
  }
}

/**
 * The install script (bash, constant text): all values arrive as positional parameters, the package.json on
 * stdin. `$1` engine dir, `$2` engine version, `$3` bun version, `$4` cache dir ("" = none).
 * Exit codes: 0 installed (prints the marker JSON), 17 no bun and no npm in the VM, 18 bun install via npm
 * failed, 19 `bun install` failed, 20 engine binary missing after install.
 */
export const ENGINE_INSTALL_SCRIPT = String.raw`set -u
dir="$1"; version="$2"; bun_version="$3"; cache="$4"
marker="$dir/.fabrik-engine.json"
if [ -s "$marker" ]; then cat "$marker"; exit 0; fi
mkdir -p "$dir" || exit 1
exec 9>"$dir.lock"
if command -v flock >/dev/null 2>&1; then flock -w 900 9 || { echo "timed out waiting for another engine install" >&2; exit 1; }; fi
if [ -s "$marker" ]; then cat "$marker"; exit 0; fi
if [ -n "$cache" ]; then export npm_config_cache="$cache/npm" BUN_INSTALL_CACHE_DIR="$cache/bun"; fi
cat > "$dir/package.json.tmp" && mv "$dir/package.json.tmp" "$dir/package.json" || exit 1
bindir="$dir/.runtime/node_modules/.bin"
if [ ! -x "$bindir/bun" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing bun $bun_version from the npm registry" >&2
    npm install --prefix "$dir/.runtime" --no-audit --no-fund --loglevel=error "bun@$bun_version" >&2 || exit 18
  elif command -v bun >/dev/null 2>&1; then
    mkdir -p "$bindir" && ln -sf "$(command -v bun)" "$bindir/bun" || exit 1
  else
    echo "neither bun nor npm is installed in the VM" >&2; exit 17
  fi
fi
[ -x "$bindir/bun" ] || { echo "bun is not executable at $bindir/bun" >&2; exit 18; }
echo "installing smithers-orchestrator $version" >&2
( cd "$dir" && "$bindir/bun" install --no-progress >&2 ) || exit 19
[ -x "$dir/node_modules/.bin/smithers" ] || { echo "smithers binary missing after install" >&2; exit 20; }
bunv="$("$bindir/bun" --version 2>/dev/null)"
printf '{"v":1,"engine_version":"%s","bun_version":"%s","installed_at_ms":%s}\n' "$version" "$bunv" "$(date +%s%3N)" > "$marker.tmp" && mv "$marker.tmp" "$marker"
cat "$marker"
`;

/** What {@link ensureEngine} reports. */
export interface EngineInstall {
  version: string;
  dialect: EngineDialect;
  layout: EngineLayout;
  /** True when this call installed it; false when it was already there. */
  fresh: boolean;
  durationMs: number;
}

/**
 * Make sure engine `version` is installed in the VM (idempotent; concurrent installs wait on a lock).
 * @throws UserError for an unknown version; PrerequisiteError when the VM has no bun/npm or the install fails.
 */
export async function ensureEngine(
  driver: VmDriver,
  vm: string,
  guestHome: string,
  version: string,
  opts: { cacheDir?: string | undefined; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<EngineInstall> {
  const dialect = requireEngineDialect(version);
  const layout = engineLayout(engineDir(guestHome, version));
  const started = Date.now();
  const r = await driver.exec(vm, ["bash", "-c", ENGINE_INSTALL_SCRIPT, "fabrik-engine-install", layout.dir, version, BUN_VERSION, opts.cacheDir ?? ""], {
    stdin: JSON.stringify(enginePackageJson(version), null, 2) + "\n",
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    cwd: guestHome,
  });
  if (r.exitCode !== 0) {
    const tail = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 400);
    const what =
      r.exitCode === 17
        ? "the VM has neither bun nor npm"
        : r.exitCode === 18
          ? "installing bun from the npm registry failed"
          : r.exitCode === 19
            ? "`bun install` of the engine failed (is the npm registry reachable from the VM?)"
            : `exit ${r.exitCode}`;
    const hint =
      r.exitCode === 17
        ? `install Node.js ≥ 18 with npm (Debian/Ubuntu: \`apt-get install nodejs npm\`) or bun ≥ 1.3 (https://bun.sh) in VM ${vm}, then retry`
        : "check the VM's network and disk, then retry; see `fabrik vm shell " + vm + "`";
    throw new PrerequisiteError(`cannot install engine ${version} in VM ${vm}: ${what}${tail ? `: ${tail}` : ""}`, hint);
  }
  const fresh = r.stderr.includes("installing smithers-orchestrator");
  return { version, dialect, layout, fresh, durationMs: Date.now() - started };
}
