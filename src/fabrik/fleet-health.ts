/**
 * Judging a VM's health and idleness: PURE (the probe history and times are passed in, `now` injected). `fabrik
 * fleet` reads the registry's probe history (`vm_probes`, newest first) and the VM's runs, and asks these.
 *
 * Health is judged over the history, never on one flaky probe: a Running VM whose last probe answered is
 * `healthy`; one failed probe in a row makes it `degraded`, {@link DOWN_AFTER_FAILURES} in a row `down`.
 */
import type { RunRecord, VmProbeRecord } from "./registry.js";

/** A VM's health, as `fabrik fleet` reports it. */
export const VM_HEALTHS = ["healthy", "degraded", "down", "stopped", "unknown"] as const;
export type VmHealth = (typeof VM_HEALTHS)[number];

/** Consecutive failed probes from which a Running VM is `degraded`. */
export const DEGRADED_AFTER_FAILURES = 1;
/** Consecutive failed probes from which a Running VM is `down`. */
export const DOWN_AFTER_FAILURES = 3;

/** What {@link judgeVmHealth} concluded. Times epoch ms (host clock). */
export interface HealthVerdict {
  health: VmHealth;
  /** Why, in one line. */
  reason: string;
  /** Failed probes in a row, newest first, up to the last one that answered. */
  consecutive_failures: number;
  last_probe_at_ms: number | null;
  last_ok_at_ms: number | null;
  last_error: string | null;
}

/**
 * The decision table (first match wins):
 * | state                | history                                   | health    |
 * |----------------------|-------------------------------------------|-----------|
 * | Stopped              | any                                       | stopped   |
 * | Missing, Broken      | any                                       | down      |
 * | Running (or Unknown) | no probe recorded                         | unknown   |
 * | Running (or Unknown) | ≥ DOWN_AFTER_FAILURES failures in a row   | down      |
 * | Running (or Unknown) | ≥ DEGRADED_AFTER_FAILURES failures in a row | degraded |
 * | Running              | last probe answered                       | healthy   |
 * | Unknown              | last probe answered                       | unknown   |
 * @param state the driver's status now (`Running`, `Stopped`, `Broken`, `Unknown`, or `Missing`)
 * @param history the VM's probes, newest first
 */
export function judgeVmHealth(state: string, history: readonly VmProbeRecord[]): HealthVerdict {
  let failures = 0;
  for (const p of history) {
    if (p.ok) break;
    failures++;
  }
  const lastOk = history.find((p) => p.ok);
  const base = {
    consecutive_failures: failures,
    last_probe_at_ms: history[0]?.at_ms ?? null,
    last_ok_at_ms: lastOk?.at_ms ?? null,
    last_error: failures > 0 ? (history[0]?.error ?? null) : null,
  };
  if (state === "Stopped") return { ...base, health: "stopped", reason: "the VM is stopped" };
  if (state === "Missing") return { ...base, health: "down", reason: "the VM no longer exists" };
  if (state === "Broken") return { ...base, health: "down", reason: "the driver reports the VM as Broken" };
  if (history.length === 0) return { ...base, health: "unknown", reason: "never probed" };
  if (failures >= DOWN_AFTER_FAILURES) return { ...base, health: "down", reason: `the last ${failures} probes failed` };
  if (failures >= DEGRADED_AFTER_FAILURES) return { ...base, health: "degraded", reason: `the last ${failures === 1 ? "probe" : `${failures} probes`} failed (down after ${DOWN_AFTER_FAILURES} in a row)` };
  if (state === "Running") return { ...base, health: "healthy", reason: "the last probe answered" };
  return { ...base, health: "unknown", reason: `the driver reports the VM as ${state}` };
}

/**
 * Since when fabrik has seen the VM Running without a break: the oldest probe of the newest unbroken stretch of
 * `Running` records, but only when an older record shows another state (a start was seen); otherwise null (the
 * start time is unknown). Epoch ms (host clock).
 */
export function runningSince(history: readonly VmProbeRecord[]): number | null {
  let since: number | null = null;
  for (const p of history) {
    if (p.vm_status === "Running") {
      since = p.at_ms;
      continue;
    }
    return since;
  }
  return null;
}

/**
 * Since when a VM has had no active run (epoch ms), or null when it has one, is not Running, or nothing is
 * known: the latest of the last run's end, the VM's registration, and the VM's last seen start.
 */
export function idleSince(i: { state: string; activeRuns: number; lastRunEndMs: number | null; vmCreatedMs: number | null; runningSinceMs: number | null }): number | null {
  if (i.state !== "Running" || i.activeRuns > 0) return null;
  const known = [i.lastRunEndMs, i.vmCreatedMs, i.runningSinceMs].filter((x): x is number => x !== null && Number.isFinite(x));
  return known.length ? Math.max(...known) : null;
}

/** A Running VM with no active run for longer than `idleMs` (config `thresholds.vm_idle_ms`) is idle. */
export function isIdle(since: number | null, now: number, idleMs: number): boolean {
  return since !== null && now - since > idleMs;
}

/**
 * When a run stopped keeping its VM busy (epoch ms): its end (`finished_at_ms`), else its last resume, start or
 * creation (an orphaned run's death is not recorded: its last known start stands in). Used for idleness and for
 * `runs prune --older-than`.
 */
export function runEndMs(r: Pick<RunRecord, "finished_at_ms" | "last_resumed_at_ms" | "started_at_ms" | "created_at_ms">): number {
  return r.finished_at_ms ?? r.last_resumed_at_ms ?? r.started_at_ms ?? r.created_at_ms;
}
