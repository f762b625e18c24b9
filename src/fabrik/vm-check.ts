/**
 * One health check of one VM: ONE probe round trip that reads the VM's health facts (src/vm/health-schema.ts:
 * engines, free disk, control dirs, locks) together with the live facts of the runs the caller names, records the
 * outcome in the registry's probe history (`vm_probes`, what `fabrik fleet` judges health over) and writes the
 * runs' live verdicts back to the cache (`runs-service.ts` reconcile). `fabrik doctor`, `fabrik fleet`,
 * `fabrik supervise` and `fabrik runs prune` look at VMs through here; `dryRun` reads without writing anything.
 */
import type { Context } from "./context.js";
import type { RunRecord } from "./registry.js";
import { observeVm, reconcile, type RunView } from "./runs-service.js";
import type { VmDriver, VmInfo } from "../vm/driver.js";
import type { HealthFacts, HealthRequest } from "../vm/health-schema.js";
import type { ProbeResponse } from "../vm/probe-schema.js";
import type { RunObservation } from "../vm/probe.js";
import { FabrikError } from "../core/errors.js";

/** The paths of a VM's layout fabrik relies on (all absolute in the guest). */
export interface GuestLayout {
  home: string;
  /** `~/work`: the work dir whose free space matters. */
  workDir: string;
  /** `~/work/<vm>/.runs`: where `fabrik run` puts control dirs. */
  runsRoot: string;
  /** `~/.fabrik/engines`. */
  enginesDir: string;
}

/** The layout under guest home `home` for VM `vm` (the launcher's convention, src/fabrik/launch.ts). */
export function guestLayout(home: string, vm: string): GuestLayout {
  const h = home.replace(/\/+$/, "");
  return { home: h, workDir: `${h}/work`, runsRoot: `${h}/work/${vm}/.runs`, enginesDir: `${h}/.fabrik/engines` };
}

/** What one check of a VM saw. Times epoch ms (host clock unless named `vm_…`), sizes bytes. */
export interface VmCheck {
  vm: string;
  driver: string;
  /** The driver's status (`Running`, `Stopped`, `Broken`, `Unknown`), or `Missing` when the VM does not exist. */
  state: string;
  guestHome: string | null;
  /** True when the probe answered with valid facts. */
  ok: boolean;
  /** A command ran in the VM (true even when the probe then failed, e.g. for want of bun); null when not tried. */
  reachable: boolean | null;
  /** Why the probe failed (or was not tried), else null. */
  error: string | null;
  /** What kind of failure: no bun in the VM, the probe itself failed (bad exit or output), the VM did not answer. */
  failureKind: "no-bun" | "probe" | "unreachable" | null;
  response: ProbeResponse | undefined;
  health: HealthFacts | null;
  /** VM clock minus host clock at the probe's midpoint, ms (positive: the VM is ahead); null unless ok. */
  clockSkewMs: number | null;
  durationMs: number | null;
  /** The named runs' views after the live check (cache-only views when the VM could not be asked). */
  runs: Map<number, RunView>;
  observations: Map<number, RunObservation>;
}

export interface CheckOptions {
  /** Runs of this VM to observe in the same round trip (their verdicts are written back unless `dryRun`). */
  runs?: readonly RunRecord[];
  /** Folders to measure (`runs prune`). */
  measureDirs?: readonly string[];
  /** Which command checks (recorded in the history). */
  source: "doctor" | "fleet" | "supervise" | "prune" | "evidence";
  /** Read only: no history record, no write-back. */
  dryRun?: boolean;
  /** Deadline of the probe, ms (default: the configured probe timeout, doubled: health facts walk folders). */
  timeoutMs?: number;
}

/** A short summary of a check for the history (`vm_probes.facts_json`). */
function factsSummary(c: VmCheck): string | null {
  if (!c.ok) return null;
  return JSON.stringify({
    tool_version: c.response?.tool_version ?? null,
    sqlite_version: c.response?.sqlite_version ?? null,
    clock_skew_ms: c.clockSkewMs,
    engines: c.health?.engines.filter((e) => e.installed).map((e) => e.version) ?? [],
    disk_free_bytes: c.health?.disk?.free_bytes ?? null,
  });
}

/**
 * Check one VM. Never throws for the VM's sake (a stopped, missing or unreachable VM is data); throws only when
 * `ctx.signal` aborted.
 * @param info the driver's view of the VM (from `vm list` or `inspect`), or undefined when it does not exist.
 */
export async function checkVm(ctx: Context, driver: VmDriver, vm: string, info: VmInfo | undefined, opts: CheckOptions): Promise<VmCheck> {
  const reg = ctx.registry();
  const runs = opts.runs ?? [];
  const guestHome = info?.guestHome ?? reg.getVm(vm)?.guest_home ?? null;
  const check: VmCheck = {
    vm,
    driver: driver.name,
    state: info ? info.status : "Missing",
    guestHome,
    ok: false,
    reachable: null,
    error: null,
    failureKind: null,
    response: undefined,
    health: null,
    clockSkewMs: null,
    durationMs: null,
    runs: new Map(),
    observations: new Map(),
  };
  const cachedViews = async (reason: string) => {
    for (const r of runs) {
      const obs: RunObservation = { kind: "unreachable", reason };
      check.observations.set(r.id, obs);
      check.runs.set(r.id, await reconcile(ctx, r, obs, { write: false }));
    }
  };
  if (!info || info.status !== "Running" || !guestHome) {
    check.error = !info ? `VM ${vm} does not exist` : info.status !== "Running" ? `VM ${vm} is ${info.status}` : `the guest home of VM ${vm} is unknown`;
    await cachedViews(check.error);
    return check;
  }
  const layout = guestLayout(guestHome, vm);
  const knownDirs = reg.listRuns({ vm }).map((r) => r.control_dir).filter((d) => d.startsWith("/"));
  const health: HealthRequest = {
    work_dir: layout.workDir,
    engines_dir: layout.enginesDir,
    runs_roots: [layout.runsRoot],
    known_control_dirs: [...new Set(knownDirs)].slice(0, 5000),
    measure_dirs: [...(opts.measureDirs ?? [])].slice(0, 1000),
  };
  const { probeVm } = await import("../vm/probe.js");
  let t0 = 0;
  let t1 = 0;
  let failure: unknown;
  const r = await observeVm(ctx, driver, vm, runs, {
    probe: async (req) => {
      t0 = ctx.now();
      try {
        return await probeVm(driver, vm, { ...req, health }, { timeoutMs: opts.timeoutMs ?? ctx.config.probeTimeoutMs * 2, signal: ctx.signal, installCache: await ctx.guestInstalls() });
      } catch (err) {
        failure = err;
        throw err;
      } finally {
        t1 = ctx.now();
      }
    },
  });
  check.durationMs = t1 - t0;
  check.observations = r.observations;
  if (r.response) {
    check.ok = true;
    check.reachable = true;
    check.response = r.response;
    check.health = r.response.health ?? null;
    check.clockSkewMs = Math.round(r.response.now_ms - (t0 + t1) / 2);
  } else {
    check.error = r.error ?? "the probe failed";
    const { NoBunError, ProbeError } = await import("../vm/probe.js");
    check.failureKind = failure instanceof NoBunError ? "no-bun" : failure instanceof ProbeError ? "probe" : "unreachable";
    check.reachable = check.failureKind !== "unreachable" ? true : failure instanceof FabrikError && (failure.kind === "unavailable" || failure.kind === "not-found") ? false : null;
  }
  for (const run of runs) check.runs.set(run.id, await reconcile(ctx, run, r.observations.get(run.id) ?? { kind: "none" }, { write: !opts.dryRun }));
  if (!opts.dryRun) {
    reg.recordVmProbe({
      vm,
      at_ms: t1 || ctx.now(),
      ok: check.ok ? 1 : 0,
      reachable: check.reachable === null ? null : check.reachable ? 1 : 0,
      vm_status: check.state,
      duration_ms: check.durationMs,
      error: check.error ? check.error.slice(0, 1000) : null,
      facts_json: factsSummary(check),
      source: opts.source,
    });
  }
  return check;
}
