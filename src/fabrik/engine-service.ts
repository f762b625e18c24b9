/**
 * `fabrik vm install-engine`: install (or repair) an engine in a VM with the same recipe `vm create` and `fabrik
 * run` use (src/vm/engine.ts: idempotent, a marker written last, serialised by a lock). The fix `fabrik doctor`
 * names for a missing engine, a missing bun, or a SQLite without octet_length.
 */
import type { Context } from "./context.js";
import { requireVm } from "./context.js";
import { guestHomeOf } from "./vm-service.js";
import { VmUnavailableError } from "../core/errors.js";

/** What `vm install-engine --json` prints. */
export interface EngineInstallView {
  vm: string;
  engine_version: string;
  /** True when this call installed it; false when it was already installed. */
  fresh: boolean;
  duration_ms: number;
  engine_dir: string;
}

/**
 * Install `version` in `vm` unless a complete install is there.
 * @throws NotFoundError (no such VM), VmUnavailableError (not running), UserError (unsupported version),
 *   PrerequisiteError (the VM has neither bun nor npm, or the install failed).
 */
export async function installEngine(ctx: Context, vm: string, version: string): Promise<EngineInstallView> {
  const { driver } = await requireVm(ctx, vm);
  const info = await driver.inspect(vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (info && info.status !== "Running") throw new VmUnavailableError(vm, `VM ${vm} is ${info.status}`, `start it with \`fabrik vm start ${vm}\``);
  const home = info?.guestHome ?? (await guestHomeOf(ctx, vm));
  const [{ ensureEngine }, { DEFAULTS }] = await Promise.all([import("../vm/engine.js"), import("./config.js")]);
  ctx.io.stderr.write(`==> installing engine ${version} in ${vm}\n`);
  const r = await ensureEngine(driver, vm, home, version, { cacheDir: ctx.config.engineCacheDir, timeoutMs: DEFAULTS.engineInstallTimeoutMs, signal: ctx.signal });
  return { vm, engine_version: version, fresh: r.fresh, duration_ms: r.durationMs, engine_dir: r.layout.dir };
}
