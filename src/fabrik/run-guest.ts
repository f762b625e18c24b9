/**
 * What the run-level commands (`runs why|nodes`, `run cancel|approve|deny|signal|compact`) need to call a guest
 * program for one run: its driver, the guest's home (from the registry, else the control dir's layout, else one
 * `inspect` call to the driver), the run's engine folder and bun, and the call itself (src/vm/guest-call.ts).
 */
import type { Context } from "./context.js";
import type { RunRecord } from "./registry.js";
import type { VmDriver } from "../vm/driver.js";
import { NotFoundError } from "../core/errors.js";
import { callGuestProgram, type GuestCallOptions } from "../vm/guest-call.js";
import { engineLayout, isSupportedEngineVersion } from "../vm/engine-recipe.js";
import { guestHomeFromControlDir } from "../resume/plan.js";

/** A run's VM as the run-level commands use it. */
export interface RunVm {
  driver: VmDriver;
  /** The guest user's home (absolute, in the guest). */
  home: string;
}

/**
 * The run's driver and guest home. The home comes from the registry or the control dir's layout
 * (`<home>/work/<vm>/.runs/<dir>`); only when neither tells is the driver asked (one `inspect`).
 * @throws NotFoundError when the VM does not exist (asked only in that last case).
 */
export async function runVm(ctx: Context, run: RunRecord): Promise<RunVm> {
  const driver = await ctx.driver(run.driver);
  const known = ctx.registry().getVm(run.vm)?.guest_home ?? guestHomeFromControlDir(run.control_dir, run.vm);
  if (known) return { driver, home: known };
  const info = await driver.inspect(run.vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${run.vm} of run ${run.id} does not exist`, "see `fabrik vm list`");
  if (!info.guestHome) throw new NotFoundError(`cannot tell the guest home of VM ${run.vm}`, "see `fabrik vm list`");
  return { driver, home: info.guestHome };
}

/** The run's engine folder and bun in the guest (the run's engine, else the one `fallbackVersion` names). */
export function runEngine(home: string, version: string | null, fallbackVersion: string): { version: string; dir: string; bun: string } {
  const v = version && isSupportedEngineVersion(version) ? version : fallbackVersion;
  const layout = engineLayout(`${home}/.fabrik/engines/${v}`);
  return { version: v, dir: layout.dir, bun: layout.bun };
}

/** Call guest program `o.name` for `run` through its driver (see callGuestProgram). */
export async function callRunGuest(ctx: Context, vm: RunVm, run: RunRecord, o: Omit<GuestCallOptions, "vm" | "installCache" | "signal" | "controlDir">): Promise<unknown> {
  const r = await callGuestProgram((argv, opts) => vm.driver.exec(run.vm, argv, opts), {
    ...o,
    vm: run.vm,
    controlDir: run.control_dir,
    signal: ctx.signal,
    installCache: await ctx.guestInstalls(),
  });
  return r.json;
}
