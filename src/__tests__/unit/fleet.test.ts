/**
 * The fleet-care rules, pure and table-driven: health over the probe history (fleet-health.ts), the supervisor's
 * decision table (supervise-rules.ts) and what prune may touch (prune-service.ts `pruneAction`); plus the registry's
 * probe history and leases in-process.
 */
import { describe, it, expect } from "vitest";
import { DOWN_AFTER_FAILURES, idleSince, isIdle, judgeVmHealth, runEndMs, runningSince } from "../../fabrik/fleet-health.js";
import { attemptsOf, backoffAfter, cancelRecorded, superviseDecision, type SuperviseOptions } from "../../fabrik/supervise-rules.js";
import { pruneAction } from "../../fabrik/prune-service.js";
import { Registry, type VmProbeRecord } from "../../fabrik/registry.js";
import type { RunObservation } from "../../vm/probe.js";

const T = 1_800_000_000_000;
let pid = 0;
function probe(ok: boolean, atMs: number, vmStatus = "Running"): VmProbeRecord {
  return { id: ++pid, vm: "v", at_ms: atMs, ok: ok ? 1 : 0, reachable: 1, vm_status: vmStatus, duration_ms: 10, error: ok ? null : "boom", facts_json: null, source: "fleet" };
}
/** Newest first, from a string like "ok fail fail" written oldest first. */
function history(seq: string, vmStatuses?: string[]): VmProbeRecord[] {
  return seq
    .split(" ")
    .filter(Boolean)
    .map((x, i) => probe(x === "ok", T + i * 1000, vmStatuses?.[i] ?? "Running"))
    .reverse();
}

describe("judgeVmHealth: never on one flaky probe", () => {
  const rows: [string, string, string, number][] = [
    ["Running", "", "unknown", 0],
    ["Running", "ok", "healthy", 0],
    ["Running", "ok fail", "degraded", 1],
    ["Running", "ok fail fail", "degraded", 2],
    ["Running", "ok fail fail fail", "down", 3],
    ["Running", "fail fail fail fail ok", "healthy", 0],
    ["Running", "ok fail ok", "healthy", 0],
    ["Stopped", "fail fail fail", "stopped", 3],
    ["Broken", "ok", "down", 0],
    ["Missing", "ok", "down", 0],
    ["Unknown", "ok", "unknown", 0],
    ["Unknown", "fail fail fail", "down", 3],
  ];
  it.each(rows)("%s with [%s] → %s (%i failures in a row)", (state, seq, health, failures) => {
    const v = judgeVmHealth(state, history(seq));
    expect(v.health).toBe(health);
    expect(v.consecutive_failures).toBe(failures);
  });
  it("down after exactly DOWN_AFTER_FAILURES", () => {
    expect(DOWN_AFTER_FAILURES).toBe(3);
    const h = history("ok fail fail");
    expect(judgeVmHealth("Running", h).last_ok_at_ms).toBe(T);
    expect(judgeVmHealth("Running", h).last_error).toBe("boom");
  });
});

describe("idleness", () => {
  it("a start is known only when a non-Running probe precedes the Running stretch", () => {
    expect(runningSince(history("ok ok", ["Running", "Running"]))).toBeNull();
    expect(runningSince(history("ok ok ok", ["Stopped", "Running", "Running"]))).toBe(T + 1000);
  });
  it("idle since the latest of the last run's end, the VM's registration and its seen start; never with an active run", () => {
    expect(idleSince({ state: "Running", activeRuns: 0, lastRunEndMs: T, vmCreatedMs: T - 5, runningSinceMs: null })).toBe(T);
    expect(idleSince({ state: "Running", activeRuns: 0, lastRunEndMs: null, vmCreatedMs: T - 5, runningSinceMs: T + 9 })).toBe(T + 9);
    expect(idleSince({ state: "Running", activeRuns: 1, lastRunEndMs: T, vmCreatedMs: T, runningSinceMs: null })).toBeNull();
    expect(idleSince({ state: "Stopped", activeRuns: 0, lastRunEndMs: T, vmCreatedMs: T, runningSinceMs: null })).toBeNull();
    expect(isIdle(T, T + 3_600_001, 3_600_000)).toBe(true);
    expect(isIdle(T, T + 3_600_000, 3_600_000)).toBe(false);
    expect(isIdle(null, T, 1)).toBe(false);
  });
  it("a run's end is finished_at, else its last resume, start or creation", () => {
    expect(runEndMs({ finished_at_ms: 4, last_resumed_at_ms: 3, started_at_ms: 2, created_at_ms: 1 })).toBe(4);
    expect(runEndMs({ finished_at_ms: null, last_resumed_at_ms: null, started_at_ms: 2, created_at_ms: 1 })).toBe(2);
  });
});

describe("superviseDecision", () => {
  const o: SuperviseOptions = { retryFailed: false, maxResumes: 3, backoffMs: 60_000, engineHeartbeatStaleMs: 30_000 };
  const live = (effective_status: string, over: Partial<{ launcher_alive: boolean | null; engine_heartbeat_age_ms: number | null; source: "live" | "cache" | "unreachable" }> = {}) => ({
    source: "live" as const,
    effective_status: effective_status as never,
    launcher_alive: false,
    engine_heartbeat_age_ms: 120_000,
    ...over,
  });
  const attempt = (at: number) => ({ kind: "supervise-resumed", at_ms: at });
  const rows: [string, ReturnType<typeof live>, { pending_json: string | null }, { kind: string; at_ms: number }[], SuperviseOptions, string][] = [
    ["unreachable VM", live("orphaned", { source: "unreachable" }), { pending_json: null }, [], o, "none"],
    ["running", live("running"), { pending_json: null }, [], o, "none"],
    ["done", live("done"), { pending_json: null }, [], o, "none"],
    ["stale (engine lives)", live("stale"), { pending_json: null }, [], o, "none"],
    ["cancelled", live("cancelled"), { pending_json: null }, [], { ...o, retryFailed: true }, "skip:CANCELLED"],
    ["orphaned after a recorded cancel", live("orphaned"), { pending_json: null }, [{ kind: "launched", at_ms: T }, { kind: "cancel-requested", at_ms: T + 5 }], o, "skip:CANCEL_REQUESTED"],
    ["orphaned, cancel before its last resume", live("orphaned"), { pending_json: null }, [{ kind: "cancel-requested", at_ms: T }, { kind: "resumed", at_ms: T + 5 }], o, "resume:1"],
    ["failed without --retry-failed", live("failed"), { pending_json: null }, [], o, "skip:FAILED_NOT_RETRIED"],
    ["failed with --retry-failed", live("failed"), { pending_json: null }, [], { ...o, retryFailed: true }, "resume:1"],
    ["orphaned", live("orphaned"), { pending_json: null }, [], o, "resume:1"],
    ["orphaned, journal open", live("orphaned"), { pending_json: "{}" }, [], o, "skip:PENDING"],
    ["orphaned, launcher alive", live("orphaned", { launcher_alive: true }), { pending_json: null }, [], o, "skip:LAUNCHER_ALIVE"],
    ["orphaned, heartbeat at the threshold", live("orphaned", { engine_heartbeat_age_ms: 30_000 }), { pending_json: null }, [], o, "skip:HEARTBEAT_FRESH"],
    ["orphaned, heartbeat just past", live("orphaned", { engine_heartbeat_age_ms: 30_001 }), { pending_json: null }, [], o, "resume:1"],
    ["orphaned, no heartbeat (legacy)", live("orphaned", { engine_heartbeat_age_ms: null }), { pending_json: null }, [], o, "resume:1"],
    ["orphaned, 3 attempts made", live("orphaned"), { pending_json: null }, [attempt(T - 9e6), attempt(T - 8e6), { kind: "supervise-failed", at_ms: T - 7e6 }], o, "skip:MAX_RESUMES"],
    ["orphaned, 1 attempt 59 s ago", live("orphaned"), { pending_json: null }, [attempt(T - 59_000)], o, "skip:BACKOFF"],
    ["orphaned, 1 attempt 60 s ago", live("orphaned"), { pending_json: null }, [attempt(T - 60_000)], o, "resume:2"],
    ["orphaned, 2 attempts, last 119 s ago", live("orphaned"), { pending_json: null }, [attempt(T - 9e6), { kind: "supervise-refused", at_ms: T - 119_000 }], o, "skip:BACKOFF"],
  ];
  it.each(rows)("%s", (_name, view, run, events, opts, want) => {
    const d = superviseDecision(view, run, events, opts, T);
    expect(d.kind === "none" ? "none" : d.kind === "skip" ? `skip:${d.code}` : `resume:${d.attempt}`).toBe(want);
  });
  it("counts attempts and backs off exponentially", () => {
    expect(attemptsOf([attempt(1), { kind: "supervise-skipped", at_ms: 5 }, { kind: "supervise-refused", at_ms: 3 }])).toEqual({ count: 2, lastAtMs: 3 });
    expect([0, 1, 2, 3].map((n) => backoffAfter(n, 10))).toEqual([0, 10, 20, 40]);
    expect(cancelRecorded([{ kind: "launched", at_ms: 1 }])).toBe(false);
  });
});

describe("pruneAction", () => {
  const live = (over: { controlExists?: boolean; dbExists?: boolean; alive?: boolean } = {}): RunObservation =>
    ({
      kind: "live",
      vmNowMs: T,
      tool: "bun",
      result: {
        key: "1",
        errors: [],
        control: { exists: over.controlExists ?? true, launcher: { pid: 9, alive: over.alive ?? false, state: null, cmdline: null }, child: null, engine: null },
        db: { exists: over.dbExists ?? true, run: null },
      },
    }) as never;
  const run = { id: 1, status: "done" as const, pending_json: null };
  const o = { leaseHeld: false, force: false, underRoot: true, vmState: "Running" };
  const view = (s: string, source: "live" | "unreachable" = "live") => ({ effective_status: s as never, source });
  const rows: [string, Parameters<typeof pruneAction>, string][] = [
    ["done", [run, view("done"), live(), o], "remove"],
    ["failed", [run, view("failed"), live(), o], "remove"],
    ["orphaned", [run, view("orphaned"), live(), o], "remove"],
    ["running (live)", [run, view("running"), live({ alive: true }), o], "keep"],
    ["unknown", [run, view("unknown"), live(), o], "keep"],
    ["a supervisor holds it", [run, view("done"), live(), { ...o, leaseHeld: true }], "keep"],
    ["journal open", [{ ...run, pending_json: "{}" }, view("done"), live(), o], "keep"],
    ["unreachable", [run, view("done", "unreachable"), { kind: "unreachable", reason: "x" }, o], "keep"],
    ["unreachable --force", [run, view("done", "unreachable"), { kind: "unreachable", reason: "x" }, { ...o, force: true }], "forget"],
    ["files gone, nothing alive", [run, view("unknown"), live({ controlExists: false, dbExists: false }), o], "forget"],
    ["files gone but a process lives", [run, view("running"), live({ controlExists: false, dbExists: false, alive: true }), o], "keep"],
    ["outside the runs root", [run, view("done"), live(), { ...o, underRoot: false }], "forget"],
  ];
  it.each(rows)("%s → %s", (_n, args, want) => expect(pruneAction(...args).action).toBe(want));
});

describe("registry: probe history and supervisor leases", () => {
  it("keeps the newest probes per VM, newest first", () => {
    const reg = Registry.openMemory();
    for (let i = 0; i < 5; i++) reg.recordVmProbe({ ...probe(i % 2 === 0, T + i), vm: "a" }, 3);
    reg.recordVmProbe({ ...probe(true, T), vm: "b" }, 3);
    expect(reg.vmProbes("a").map((p) => p.at_ms)).toEqual([T + 4, T + 3, T + 2]);
    expect(reg.vmProbes("b")).toHaveLength(1);
    expect(reg.integrityCheck()).toEqual(["ok"]);
  });
  it("one holder at a time; an expired lease can be taken; the holder renews and releases", () => {
    const reg = Registry.openMemory();
    const run = reg.insertRun({ vm: "a", driver: "local", control_dir: "/c", workflow_path: "/c/w.tsx", smithers_run_id: "r", smithers_db_path: "/c/x.db", status: "orphaned" }, T);
    expect(reg.acquireLease(run.id, "A", T, 1000)).toBe(true);
    expect(reg.acquireLease(run.id, "B", T + 999, 1000)).toBe(false);
    expect(reg.acquireLease(run.id, "A", T + 500, 1000)).toBe(true); // renewed
    expect(reg.leaseOf(run.id)).toMatchObject({ holder: "A", expires_at_ms: T + 1500 });
    expect(reg.acquireLease(run.id, "B", T + 1500, 1000)).toBe(true); // expired
    reg.releaseLease(run.id, "A"); // not the holder: nothing
    expect(reg.leaseOf(run.id)?.holder).toBe("B");
    reg.releaseLease(run.id, "B");
    expect(reg.leaseOf(run.id)).toBeUndefined();
    expect(reg.deleteRuns([run.id, 999])).toBe(1);
    expect(reg.getRun(run.id)).toBeUndefined();
  });
});
