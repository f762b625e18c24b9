/**
 * `fabrik fleet`: every VM's state, health (judged over the registry's probe history: degraded after one failed
 * probe in a row, down after three), engines, free disk, active runs and idleness. Live by default: each Running
 * VM is probed once (health facts plus its active runs, whose verdicts are written back), VMs in parallel under
 * the configured concurrency; `--no-live` judges from the stored history and the cache only.
 *
 * A Running VM that answers and has had no active run for longer than `thresholds.vm_idle_ms` is flagged idle,
 * with the command that stops it (a VM whose probes fail is not: its runs cannot be seen).
 */
import pLimit from "p-limit";
import type { Context } from "./context.js";
import { listVms, type VmListRow } from "./vm-service.js";
import { checkVm, type VmCheck } from "./vm-check.js";
import { idleSince, isIdle, judgeVmHealth, runEndMs, runningSince, type VmHealth } from "./fleet-health.js";
import { ACTIVE_RUN_STATUSES, isActiveRunStatus } from "../core/status.js";
import { NotFoundError } from "../core/errors.js";
import type { VmInfo } from "../vm/driver.js";

/** One VM in `fabrik fleet --json`. Times epoch ms (`…_ms`) and ISO-8601 (`…_at`), sizes bytes. */
export interface FleetVmView {
  name: string;
  driver: string;
  /** The driver's status: Running, Stopped, Broken, Unknown. */
  state: string;
  health: VmHealth;
  health_reason: string;
  /** Whether the last probe reached the VM (null when not probed). */
  reachable: boolean | null;
  consecutive_failures: number;
  last_probe_at: string | null;
  last_ok_at: string | null;
  last_ok_at_ms: number | null;
  last_error: string | null;
  /** Engine versions installed (complete installs). */
  engines: string[];
  /** Engine folders that are not complete installs, with the problem. */
  broken_engines: { version: string; problem: string | null }[];
  bun_version: string | null;
  sqlite_version: string | null;
  disk_free_bytes: number | null;
  disk_total_bytes: number | null;
  /** VM clock minus host clock, ms, at the last answered probe. */
  clock_skew_ms: number | null;
  active_runs: number;
  active_run_ids: number[];
  /** Since when the VM has had no active run (null: it has one, is not running, or nothing is known). */
  idle_since: string | null;
  idle_since_ms: number | null;
  idle_for_ms: number | null;
  idle: boolean;
  /** What to do about it (`fabrik doctor --vm NAME` for a degraded or down VM, `fabrik vm stop NAME` for an idle one), or null. */
  next_command: string | null;
  /** Facts from the stored history (`--no-live`, or the VM was not probed now) rather than this call. */
  from_history: boolean;
  /** When engines, versions, free disk and clock skew were read (this call, or the last probe that answered). */
  facts_at: string | null;
}

/** What `fabrik fleet --json` prints. */
export interface FleetView {
  v: 1;
  checked_at: string;
  live: boolean;
  /** The idle threshold in force, ms (config `thresholds.vm_idle_ms`). */
  vm_idle_ms: number;
  vms: FleetVmView[];
  summary: Record<VmHealth | "idle" | "total", number>;
}

export interface FleetRequest {
  vms?: string[] | undefined;
  live: boolean;
}

/** A VmInfo for `checkVm` from a `vm list` row. */
function infoOf(row: VmListRow): VmInfo {
  return {
    name: row.name,
    driver: row.driver,
    status: row.status as VmInfo["status"],
    guestHome: row.guest_home ?? undefined,
    guestUser: undefined,
    cpus: row.cpus ?? undefined,
    memoryBytes: row.memory_bytes ?? undefined,
    diskBytes: row.disk_bytes ?? undefined,
    arch: row.arch ?? undefined,
    vmType: undefined,
    dir: row.dir ?? undefined,
    sshConfigFile: undefined,
    sshLocalPort: undefined,
    errors: row.errors,
  };
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Parse a history record's facts summary (written by vm-check.ts). */
function summaryOf(json: string | null): { tool_version?: string | null; sqlite_version?: string | null; clock_skew_ms?: number | null; engines?: string[]; disk_free_bytes?: number | null } {
  if (!json) return {};
  try {
    return JSON.parse(json) as ReturnType<typeof summaryOf>;
  } catch {
    return {};
  }
}

/**
 * The fleet report. Throws NotFoundError when a VM named with `--vm` is unknown to every driver and the registry.
 * An unreachable VM is a row, never an error.
 */
export async function fleetReport(ctx: Context, req: FleetRequest): Promise<{ view: FleetView; warnings: string[] }> {
  const { rows: all, warnings } = await listVms(ctx);
  let rows = all;
  if (req.vms && req.vms.length > 0) {
    const missing = req.vms.filter((n) => !all.some((r) => r.name === n));
    if (missing.length) throw new NotFoundError(`VM ${missing.join(", ")} does not exist`, "see `fabrik vm list`");
    rows = all.filter((r) => req.vms!.includes(r.name));
  }
  const reg = ctx.registry();
  const checks = new Map<string, VmCheck>();
  if (req.live) {
    const limit = pLimit(ctx.config.probeConcurrency);
    await Promise.all(
      rows
        .filter((r) => r.status === "Running")
        .map((row) =>
          limit(async () => {
            const driver = await ctx.driver(row.driver);
            const runs = reg.listRuns({ vm: row.name, statuses: ACTIVE_RUN_STATUSES });
            checks.set(row.name, await checkVm(ctx, driver, row.name, infoOf(row), { runs, source: "fleet" }));
          }),
        ),
    );
  }
  const now = ctx.now();
  const vms: FleetVmView[] = rows.map((row) => {
    const check = checks.get(row.name);
    const history = reg.vmProbes(row.name, 100);
    const verdict = judgeVmHealth(row.status, history);
    const lastOk = history.find((p) => p.ok);
    const facts = summaryOf(lastOk?.facts_json ?? null);
    const runs = reg.listRuns({ vm: row.name });
    const active = runs.filter((r) => isActiveRunStatus(r.status));
    const ended = runs.filter((r) => !isActiveRunStatus(r.status));
    const since = idleSince({
      state: row.status,
      activeRuns: active.length,
      lastRunEndMs: ended.length ? Math.max(...ended.map(runEndMs)) : null,
      vmCreatedMs: reg.getVm(row.name)?.created_at_ms ?? null,
      runningSinceMs: runningSince(history),
    });
    // Idle only when the VM answered: a VM whose probes fail may have active runs fabrik cannot see.
    const idle = verdict.health === "healthy" && isIdle(since, now, ctx.config.vmIdleMs);
    const health = check?.health ?? null;
    const sick = verdict.health === "degraded" || verdict.health === "down";
    return {
      name: row.name,
      driver: row.driver,
      state: row.status,
      health: verdict.health,
      health_reason: verdict.reason,
      reachable: check ? check.reachable : history[0] ? (history[0].reachable === null ? null : history[0].reachable === 1) : null,
      consecutive_failures: verdict.consecutive_failures,
      last_probe_at: iso(verdict.last_probe_at_ms),
      last_ok_at: iso(verdict.last_ok_at_ms),
      last_ok_at_ms: verdict.last_ok_at_ms,
      last_error: verdict.last_error,
      engines: health ? health.engines.filter((e) => e.installed).map((e) => e.version) : (facts.engines ?? []),
      broken_engines: health ? health.engines.filter((e) => !e.installed).map((e) => ({ version: e.version, problem: e.problem })) : [],
      bun_version: check?.response?.tool_version ?? facts.tool_version ?? null,
      sqlite_version: check?.response?.sqlite_version ?? facts.sqlite_version ?? null,
      disk_free_bytes: health?.disk?.free_bytes ?? facts.disk_free_bytes ?? null,
      disk_total_bytes: health?.disk?.total_bytes ?? null,
      clock_skew_ms: check?.clockSkewMs ?? facts.clock_skew_ms ?? null,
      active_runs: active.length,
      active_run_ids: active.map((r) => r.id).sort((a, b) => a - b),
      idle_since: iso(since),
      idle_since_ms: since,
      idle_for_ms: since === null ? null : Math.max(0, now - since),
      idle,
      next_command: sick ? `fabrik doctor --vm ${row.name}` : idle ? `fabrik vm stop ${row.name}` : null,
      from_history: !check,
      facts_at: check?.ok ? iso(now) : iso(verdict.last_ok_at_ms),
    };
  });
  const summary: FleetView["summary"] = { total: vms.length, healthy: 0, degraded: 0, down: 0, stopped: 0, unknown: 0, idle: 0 };
  for (const v of vms) {
    summary[v.health]++;
    if (v.idle) summary.idle++;
  }
  return { view: { v: 1, checked_at: new Date(now).toISOString(), live: req.live, vm_idle_ms: ctx.config.vmIdleMs, vms, summary }, warnings };
}
