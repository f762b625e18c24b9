/**
 * The pure side of the run-level commands: planning cancel / approve / deny / signal / compact from one observation
 * (src/resume/control-plan.ts), the one next command of `runs why`, the merged timeline, and the helpers the guest
 * programs use to point the engine's CLI at a run's DB and to read the current launch's log.
 */
import { describe, it, expect } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { planControl } from "../../resume/control-plan.js";
import { clockOffsetMs, engineTimelineEvent, fabrikTimelineEvent, mergeTimeline, pickNextCommand, type WhyView } from "../../fabrik/inspect-service.js";
import { engineJson, smithersAnchorDir } from "../../vm/guest/lib/engine-cli.js";
import { blobTooBigInCurrentLaunch } from "../../vm/guest/lib/log.js";
import { modeForStatus } from "../../core/resume-rules.js";
import type { RunObservation } from "../../vm/probe.js";
import type { PidFact } from "../../vm/probe-schema.js";
import { HOME, NOW, SIX, node, nodeList, observe, pid, runRecord, type Facts } from "../helpers/resume-plan-fixtures.js";

const live = (f: Facts, tweak?: (o: Extract<RunObservation, { kind: "live" }>) => void): RunObservation => {
  const o = observe(f) as Extract<RunObservation, { kind: "live" }>;
  tweak?.(o);
  return o;
};
const opts = { guestHome: HOME, now: NOW };
const codes = (p: { reasons: { code: string }[] }) => p.reasons.map((r) => r.code);
const running: Facts = { heartbeatAgeMs: 1_000, owner: pid(101, true), engine: pid(101, true), child: pid(101, true), launcher: pid(100, true) };
const gate = (o: Extract<RunObservation, { kind: "live" }>, state = "waiting-approval", ids = ["deploy"]) => {
  o.result.db!.waiting = ids.map((id, i) => node(id, state, i, { last_attempt: null }));
};

describe("planControl: cancel", () => {
  it("a live run is allowed; the engine's command is known", () => {
    const p = planControl("cancel", runRecord(), live(running), opts);
    expect(p.allowed).toBe(true);
    expect(p.ended).toBe(false);
    expect(p.engine_dir).toBe(`${HOME}/.fabrik/engines/0.32.0`);
  });
  it("an ended run is `ended`: nothing to do (and not allowed, so nothing is applied)", () => {
    for (const status of ["finished", "failed", "cancelled"]) {
      const p = planControl("cancel", runRecord(), live({ status, nodes: nodeList(SIX, SIX.map(() => "finished")) }), opts);
      expect(p.ended, status).toBe(true);
      expect(p.allowed).toBe(false);
      expect(p.reasons).toEqual([]);
    }
  });
  it("an orphaned run is allowed (marked cancelled); one whose 0.32 owner pid now belongs to another process is refused", () => {
    expect(planControl("cancel", runRecord(), live({}), opts).allowed).toBe(true);
    const reused: PidFact = { pid: 101, alive: false, state: "S", cmdline: "sleep 600", identity: "reused" };
    const p = planControl("cancel", runRecord(), live({ owner: reused, engine: reused, child: reused }), opts);
    expect(codes(p)).toEqual(["OWNER_PID_REUSED"]);
    expect(p.reasons[0]!.hint).toContain("fabrik run resume --id 113");
  });
  it("an unreachable VM, a missing DB, a run not in the DB are refused with their reason", () => {
    expect(codes(planControl("cancel", runRecord(), { kind: "unreachable", reason: "VM stopped" }, opts))).toEqual(["VM_UNREACHABLE"]);
    expect(codes(planControl("cancel", runRecord(), live({ dbExists: false }), opts))).toContain("DB_MISSING");
    expect(codes(planControl("cancel", runRecord(), live({ noRun: true }), opts))).toContain("RUN_NOT_IN_DB");
  });
});

describe("planControl: approve, deny, signal", () => {
  const parked = (f: Facts = {}) => ({ status: "waiting-approval", nodes: [node("build", "finished", 0), node("deploy", "waiting-approval", 1)], ...f });
  it("the one waiting gate is picked; the run is started again when no engine lives", () => {
    const p = planControl("approve", runRecord(), live(parked(), (o) => gate(o)), opts);
    expect(p).toMatchObject({ allowed: true, node: "deploy", iteration: 0, relaunch: true });
    const withEngine = planControl("deny", runRecord(), live(parked(running), (o) => gate(o)), opts);
    expect(withEngine).toMatchObject({ allowed: true, relaunch: false });
  });
  it("no gate, an unknown --node, several gates: refused with the reason", () => {
    expect(codes(planControl("approve", runRecord(), live(parked()), opts))).toEqual(["NO_WAITING_GATE"]);
    expect(planControl("approve", runRecord(), live(parked(), (o) => gate(o)), { ...opts, node: "ship" }).reasons[0]!.message).toMatch(/node ship of run 113 is not waiting.*\(waiting: deploy\)/);
    expect(codes(planControl("approve", runRecord(), live(parked(), (o) => gate(o, "waiting-approval", ["a", "b"])), opts))).toEqual(["AMBIGUOUS_GATE"]);
    expect(planControl("approve", runRecord(), live(parked(), (o) => gate(o, "waiting-approval", ["a", "b"])), { ...opts, node: "b" })).toMatchObject({ allowed: true, node: "b" });
  });
  it("signal: 0.32 only, a waiting-event run only", () => {
    const ev = (o: Extract<RunObservation, { kind: "live" }>) => gate(o, "waiting-event", ["go"]);
    expect(planControl("signal", runRecord(), live({ status: "waiting-event" }, ev), { ...opts, signalName: "go" }).allowed).toBe(true);
    expect(codes(planControl("signal", runRecord({ engine_version: "0.5.0" }), live({ schema: "legacy", owner: null, status: "waiting-approval" }), opts))).toEqual(["ENGINE_HAS_NO_SIGNALS"]);
    expect(codes(planControl("signal", runRecord(), live(running), opts))).toEqual(["NOT_WAITING_EVENT"]);
    expect(codes(planControl("signal", runRecord(), live({ status: "finished" }), opts))).toEqual(["RUN_ENDED"]);
  });
});

describe("planControl: compact", () => {
  it("an ended, quiet run is allowed, with its backup path", () => {
    const p = planControl("compact", runRecord(), live({ status: "finished", nodes: nodeList(SIX, SIX.map(() => "finished")) }), { ...opts, limitBytes: 4096 });
    expect(p.allowed).toBe(true);
    expect(p.backup_path).toMatch(/\/backups\/run-113-\d{8}T\d{6}\.\d{3}Z\.db$/);
    expect(p.oversized?.limit_bytes).toBe(4096);
  });
  it("a live run says cancel first; an interrupted one says resume --fix; a settling launcher waits", () => {
    const liveP = planControl("compact", runRecord(), live(running), opts);
    expect(codes(liveP)).toEqual(["RUN_NOT_ENDED", "PROCESS_ALIVE"]);
    expect(liveP.reasons[0]!.hint).toContain("fabrik run cancel --id 113");
    expect(planControl("compact", runRecord(), live({}), opts).reasons[0]!.hint).toContain("fabrik run resume --id 113 --fix");
    expect(codes(planControl("compact", runRecord(), live({ status: "finished", launcher: pid(100, true) }), opts))).toEqual(["PROCESS_ALIVE"]);
  });
});

describe("modeForStatus after a decision", () => {
  it("a parked run continues only after fabrik recorded a decision", () => {
    expect("reason" in modeForStatus("waiting-approval")).toBe(true);
    expect(modeForStatus("waiting-event", { afterDecision: true })).toEqual({ mode: "continue-waiting" });
    expect(modeForStatus("running", { afterDecision: true })).toEqual({ mode: "continue-interrupted" });
  });
});

describe("runs why: one next command", () => {
  const base = { id: 7, effective_status: "failed", engine_blockers: [] as WhyView["engine_blockers"], node: null };
  it("the most severe diagnosis's command; never `runs why` itself; a named signal wins for a parked run", () => {
    expect(pickNextCommand({ ...base, diagnoses: [{ code: "OVERSIZED_VALUES", severity: "warning", message: "", next_command: "fabrik run compact --id 7" }, { code: "RUN_FAILED", severity: "error", message: "", next_command: "fabrik run resume --id 7" }] })).toBe("fabrik run resume --id 7");
    expect(pickNextCommand({ ...base, effective_status: "running", diagnoses: [{ code: "TASK_RUNNING_LONG", severity: "warning", message: "", next_command: "fabrik runs why --id 7" }] })).toBe("fabrik run attach --id 7");
    expect(pickNextCommand({ ...base, effective_status: "done", diagnoses: [] })).toBeNull();
    expect(
      pickNextCommand({
        ...base,
        effective_status: "waiting-event",
        node: { node_id: "wait-deploy", iteration: 0, state: "waiting-event", label: null, why: "waiting" },
        engine_blockers: [{ kind: "waiting-event", node_id: "wait-deploy", reason: "waiting for signal", unblocker: "smithers signal …", signal_name: "deploy.ready" }],
        diagnoses: [{ code: "WAITING", severity: "info", message: "", next_command: "fabrik runs why --id 7" }],
      }),
    ).toBe("fabrik run signal --id 7 deploy.ready");
  });
});

describe("the timeline", () => {
  it("merges fabrik's and the engine's events by time (engine times moved by a real clock offset only)", () => {
    expect(clockOffsetMs(1_000_000, 1_000_300, 1_000_100)).toBe(0); // within the call's own duration: noise
    expect(clockOffsetMs(1_000_000, 1_000_300, 940_150)).toBe(60_000);
    const ours = [fabrikTimelineEvent({ id: 1, run_id: 7, at_ms: 1_000, kind: "launched", detail_json: JSON.stringify({ launcher_pid: 5, engine_version: "0.32.0" }) }), fabrikTimelineEvent({ id: 2, run_id: 7, at_ms: 5_000, kind: "status", detail_json: JSON.stringify({ from: "running", to: "orphaned" }) })];
    const engine = [engineTimelineEvent({ seq: 0, ts_ms: 1_500 - 60_000, type: "RunStarted", node_id: null, iteration: null, attempt: null, detail: null }, 60_000), engineTimelineEvent({ seq: 3, ts_ms: 2_000 - 60_000, type: "NodeFailed", node_id: "step-2", iteration: 0, attempt: 1, detail: "boom" }, 60_000)];
    const m = mergeTimeline(ours, engine);
    expect(m.map((e) => `${e.source}:${e.kind}`)).toEqual(["fabrik:launched", "engine:RunStarted", "engine:NodeFailed", "fabrik:status"]);
    expect(m[2]!.text).toBe("step-2 (attempt 1): boom");
    expect(m[3]!.text).toMatch(/^running → orphaned/);
    expect(m[0]!.text).toBe("launcher pid 5; engine 0.32.0");
  });
});

describe("guest helpers", () => {
  it("the 0.32 anchor rule: the nearest .smithers/ below $HOME, else none", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-anchor-"));
    try {
      const home = path.join(root, "home");
      const control = path.join(home, "work", "vm", ".runs", "7-seq");
      fs.mkdirSync(path.join(control, ".smithers", "sub"), { recursive: true });
      fs.mkdirSync(path.join(root, "scratch"), { recursive: true });
      expect(smithersAnchorDir(control, home)).toBe(control);
      expect(smithersAnchorDir(path.join(control, ".smithers", "sub"), home)).toBe(control); // never inside a .smithers tree
      expect(smithersAnchorDir(path.join(root, "scratch"), home)).toBeUndefined(); // outside $HOME: no anchor
      expect(smithersAnchorDir(home, home)).toBeUndefined(); // $HOME itself is never an anchor
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
  it("finds the engine's JSON answer among log lines", () => {
    expect(engineJson('{"status":"approved"}')).toEqual({ status: "approved" });
    expect(engineJson('[12:00] INFO grant\n{\n  "runId": "r",\n  "status": "cancel-requested"\n}\n')).toEqual({ runId: "r", status: "cancel-requested" });
    expect(engineJson("no json here")).toBeNull();
  });
  it("\"string or blob too big\" counts only in the current launch's part of the log", () => {
    const old = "[fabrik 10:00:00] ===== fabrik run 7 (smithers run fabrik-7) =====\n✗ Run failed: string or blob too big\n";
    const resumed = `${old}[fabrik 11:00:00] ===== fabrik resume of host run 7 (smithers run fabrik-7) =====\n[00:00:01] ✓ step-3 (attempt 2)\n`;
    expect(blobTooBigInCurrentLaunch(Buffer.from(old))).toBe(true);
    expect(blobTooBigInCurrentLaunch(Buffer.from(resumed))).toBe(false);
    expect(blobTooBigInCurrentLaunch(Buffer.from(`${resumed}✗ Run failed: string or blob too big\n`))).toBe(true);
  });
});
