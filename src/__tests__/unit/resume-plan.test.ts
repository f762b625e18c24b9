/**
 * planResume (pure): the guide's "Resume Creates New Runs" regression tests as tests of the generated script,
 * the progress banner with real values, the verb per dialect, and the refusal rules as a table. The same
 * scripts are checked with `bash -n`, and the VM-side wrapper run with bash and bun, in
 * integration/resume-scripts.test.ts.
 */
import { describe, it, expect } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { planResume, refusalLine, withVmChecks, backupPathFor, guestHomeFromControlDir } from "../../resume/plan.js";
import type { RunRecord } from "../../fabrik/registry.js";
import type { RunObservation as Observation } from "../../vm/probe.js";
import { renderResumePlan } from "../../fabrik/render/resume.js";
import { quote } from "shell-quote";
import { resumeArgv } from "../../fabrik/resume-service.js";
import { engineHeartbeatCheck, modeForStatus } from "../../core/resume-rules.js";
import { guestBundlePath, loadGuestProgram } from "../../vm/guest-programs.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { CD, HOME, NOW, SCRIPT_CASES, SIX, engineLine, input, legacyRun, node, nodeList, pid, plan, runRecord, type Facts } from "../helpers/resume-plan-fixtures.js";

describe("planResume: the generated script (guide regression tests)", () => {
  const cases = SCRIPT_CASES;
  for (const c of cases) {
    it(`${c.name}: never 'smithers resume', always the run id, the right verb`, () => {
      const p = c.p();
      expect(p.allowed, JSON.stringify(p.reasons)).toBe(true);
      expect(p.script).not.toBeNull();
      expect(p.script).not.toContain("smithers resume"); // ← the guide's regression test
      expect(p.script).not.toMatch(/"\$SMITHERS" resume/);
      expect(engineLine(p)).toMatch(c.verb);
      expect(engineLine(p)).toContain("fabrik-113"); // never an engine start without the run id
      expect(p.script).not.toMatch(/--input/); // a resume never starts over with the input
      expect(p.script).toContain("SMITHERS_RUN_ID=fabrik-113");
      expect(p.script).toContain("export SMITHERS_POST_FAILURE=0");
      expect(p.script).toContain("MODE=resume");
      expect(p.engine_command).toContain("fabrik-113");
    });
  }

  it("preserves task completion state: Completed: 15/18 tasks, Continuing from: 16:impl", () => {
    const ids = Array.from({ length: 18 }, (_, k) => `${k + 1}:impl`);
    const states = ids.map((_, k) => (k < 15 ? "finished" : k === 15 ? "in-progress" : "pending"));
    const p = plan({ nodes: nodeList(ids, states) });
    expect(p.script).toContain("Completed: 15/18 tasks");
    expect(p.script).toContain("Continuing from: 16:impl");
    expect(p.banner.slice(0, 2)).toEqual(["Completed: 15/18 tasks", "Continuing from: 16:impl"]);
    expect(p.progress).toMatchObject({ finished: 15, total: 18, continuing_from: { node_id: "16:impl", state: "in-progress" } });
  });

  it("continues from the first pending node when nothing was in progress, and from the retried node of a failed run", () => {
    const ids = ["a", "b", "c", "d"];
    const p1 = plan({ nodes: nodeList(ids, ["finished", "finished", "pending", "pending"]) });
    expect(p1.banner.slice(0, 2)).toEqual(["Completed: 2/4 tasks", "Continuing from: c"]);
    const p2 = plan({ status: "failed", nodes: nodeList(ids, ["finished", "failed", "pending", "pending"]) });
    expect(p2.banner.slice(0, 2)).toEqual(["Completed: 1/4 tasks", "Continuing from: b"]);
    expect(p2.retry_node).toBe("b");
    const p3 = plan({ status: "cancelled", nodes: nodeList(ids, ["finished", "finished", "cancelled", "pending"]) });
    expect(p3.banner[1]).toBe("Continuing from: c");
    const loop = plan({ nodes: [node("x", "finished", 0), node("x", "in-progress", 1, { iteration: 2 })] });
    expect(loop.banner[1]).toBe("Continuing from: x (iteration 2)");
  });
});

describe("planResume: what is reset", () => {
  it("0.32 interrupted: in-progress attempt -> cancelled, node -> pending, heartbeat/owner cleared; never failed", () => {
    const p = plan();
    expect(p.mode).toBe("continue-interrupted");
    expect(p.reset.attempts).toEqual([{ node_id: "step-3", iteration: 0, attempt: 1, from: "in-progress", to: "cancelled" }]);
    expect(p.reset.nodes).toEqual([{ node_id: "step-3", iteration: 0, from: "in-progress", to: "pending" }]);
    expect(p.reset.run).toMatchObject({ runtime_owner_id: "pid:101:abc", to: null });
    expect(JSON.stringify(p.reset)).not.toContain('"to":"failed"');
  });
  it("0.5 interrupted: the same attempt/node reset, no heartbeat/owner (the columns do not exist)", () => {
    const p = plan({ schema: "legacy" }, { run: legacyRun });
    expect(p.reset.nodes).toHaveLength(1);
    expect(p.reset.run).toBeNull();
  });
  it("failed runs: 0.32 with one failed node leaves the reset to retry-task; 0.5 resets the failed node and its attempts", () => {
    const failed = nodeList(SIX, ["finished", "finished", "failed"]);
    const modern = plan({ status: "failed", nodes: failed });
    expect(modern.mode).toBe("retry-failed");
    expect(modern.reset.attempts).toEqual([]);
    expect(modern.reset.by_engine).toContain("retry-task");
    const legacy = plan({ schema: "legacy", status: "failed", nodes: failed }, { run: legacyRun });
    expect(legacy.reset.attempts).toEqual([{ node_id: "step-3", iteration: 0, attempt: 1, from: "failed", to: "cancelled" }]);
    expect(legacy.reset.nodes).toEqual([{ node_id: "step-3", iteration: 0, from: "failed", to: "pending" }]);
    expect(legacy.retry_node).toBeNull();
  });
  it("backup in the control dir with a UTC stamp, last 3 kept; the script is resume-<count+1>.sh", () => {
    const p = plan({}, { run: runRecord({ resume_count: 2 }) });
    expect(p.backup_path).toBe(`${CD}/backups/run-113-20270115T080000.000Z.db`);
    expect(backupPathFor("/c", 7, Date.UTC(2026, 10, 21, 21, 49, 0, 123))).toBe("/c/backups/run-7-20261121T214900.123Z.db");
    expect(p.keep_backups).toBe(3);
    expect(p.script_path).toBe(`${CD}/resume-3.sh`);
  });
  it("--fix reports the oversized values; without any it warns that it will only VACUUM", () => {
    const big = plan({ oversized: { n: 2, max: 50_000_000 } }, { fix: true });
    expect(big.fix).toEqual({ limit_bytes: 102400, oversized_values: 2, max_response_text_bytes: 50_000_000, max_error_json_bytes: 0 });
    expect(big.warnings).toEqual([]);
    expect(plan({}, { fix: true }).warnings.join()).toContain("only VACUUM");
  });
  it("is pure: the same input gives the same plan", () => {
    expect(planResume(input())).toEqual(planResume(input()));
  });
  it("finds the guest home from the control dir when it is not given", () => {
    expect(guestHomeFromControlDir(CD, "ralph-1")).toBe(HOME);
    expect(guestHomeFromControlDir("/x/y", "ralph-1")).toBeNull();
    expect(plan({}, { guestHome: null }).engine_dir).toBe(`${HOME}/.fabrik/engines/0.32.0`);
  });
});

describe("planResume: refusal rules", () => {
  const alive = pid(101, true);
  const zombie = pid(101, true, "Z");
  const rows: { name: string; f: Facts; force?: boolean; run?: RunRecord; observation?: Observation; code: string | null; detail?: RegExp }[] = [
    { name: "dead engine, stale heartbeat", f: {}, code: null },
    { name: "engine owner alive", f: { owner: alive, engine: pid(101, true), child: pid(101, true) }, code: "OWNER_ALIVE" },
    { name: "engine owner alive, --force", f: { owner: alive }, force: true, code: "OWNER_ALIVE" },
    { name: "launched child alive", f: { owner: null, engine: null, child: pid(102, true) }, code: "PROCESS_ALIVE" },
    { name: "launcher alive", f: { launcher: pid(100, true) }, code: "PROCESS_ALIVE" },
    { name: "launcher alive, --force", f: { launcher: pid(100, true) }, force: true, code: "PROCESS_ALIVE" },
    { name: "zombie engine counts as alive", f: { owner: zombie }, code: "OWNER_ALIVE", detail: /zombie/ },
    { name: "zombie engine, --force", f: { owner: null, engine: zombie, child: null }, force: true, code: "PROCESS_ALIVE" },
    { name: "fresh heartbeat", f: { heartbeatAgeMs: 5_000 }, code: "HEARTBEAT_FRESH" },
    { name: "fresh heartbeat, --force", f: { heartbeatAgeMs: 5_000 }, force: true, code: null },
    // Inclusive boundary (src/core/liveness.ts): an age equal to the threshold is still fresh.
    { name: "heartbeat exactly at the limit is still fresh", f: { heartbeatAgeMs: 30_000 }, code: "HEARTBEAT_FRESH" },
    { name: "heartbeat 1 ms past the limit is stale", f: { heartbeatAgeMs: 30_001 }, code: null },
    { name: "finished run", f: { status: "finished", nodes: nodeList(SIX, SIX.map(() => "finished")) }, code: "RUN_FINISHED" },
    { name: "finished run, --force", f: { status: "finished" }, force: true, code: "RUN_FINISHED" },
    { name: "waiting run", f: { status: "waiting-approval" }, code: "RUN_NOT_RESUMABLE" },
    { name: "paused run", f: { status: "paused" }, code: "RUN_NOT_RESUMABLE" },
    { name: "continued run (continued as a new run)", f: { status: "continued" }, code: "RUN_NOT_RESUMABLE" },
    { name: "missing DB", f: { dbExists: false }, code: "DB_MISSING" },
    { name: "corrupt DB", f: { dbError: "not a database" }, code: "DB_UNREADABLE" },
    { name: "unknown schema", f: { schema: "unknown" }, code: "DB_UNKNOWN_SCHEMA" },
    { name: "run row absent", f: { noRun: true }, code: "RUN_NOT_IN_DB" },
    { name: "control dir missing", f: { controlExists: false }, code: "CONTROL_DIR_MISSING" },
    { name: "VM unreachable", f: {}, observation: { kind: "unreachable", reason: "VM ralph-1 is Stopped" }, code: "VM_UNREACHABLE" },
    { name: "unknown engine version", f: {}, run: runRecord({ engine_version: "0.1.0" }), code: "ENGINE_UNKNOWN" },
    { name: "legacy with no pid at all", f: { schema: "legacy", launcher: null, child: null, engine: null }, run: legacyRun, code: "NO_PID_FACTS" },
    { name: "legacy with no pid at all, --force", f: { schema: "legacy", launcher: null, child: null, engine: null }, run: legacyRun, force: true, code: null },
    { name: "legacy, dead pids (no heartbeat to judge)", f: { schema: "legacy" }, run: legacyRun, code: null },
    { name: "legacy DB for a 0.32 run", f: { schema: "legacy" }, code: "DB_DIALECT_MISMATCH" },
  ];
  for (const r of rows) {
    it(`${r.name} → ${r.code ?? "allowed"}`, () => {
      const p = plan(r.f, { force: r.force, run: r.run, observation: r.observation });
      if (r.code === null) {
        expect(p.allowed, JSON.stringify(p.reasons)).toBe(true);
        expect(p.reasons).toEqual([]);
        expect(p.checks.every((c) => c.ok)).toBe(true);
      } else {
        expect(p.allowed).toBe(false);
        expect(p.reasons.map((x) => x.code)).toContain(r.code);
        for (const x of p.reasons) expect(x.message.length).toBeGreaterThan(10);
        expect(p.checks.some((c) => !c.ok)).toBe(true);
        if (r.detail) expect(p.checks.filter((c) => !c.ok).map((c) => c.detail).join("\n")).toMatch(r.detail);
      }
    });
  }

  it("a living process is one reason per pid, and the refusal line names it with a hint", () => {
    const p = plan({ owner: pid(101, true), engine: pid(101, true), child: pid(101, true) });
    expect(p.reasons).toHaveLength(1);
    const line = refusalLine(p);
    expect(line.message).toBe("cannot resume run 113: the engine owner process (pid 101) is alive in VM ralph-1");
    expect(line.hint).toContain("--force never overrides a living process");
  });

  it("--force on a fresh heartbeat passes with a warning", () => {
    const p = plan({ heartbeatAgeMs: 1_000 }, { force: true });
    expect(p.checks.find((c) => c.name === "heartbeat-stale")!.detail).toContain("overridden by --force");
    expect(p.warnings.join()).toContain("--force");
  });
});

describe("withVmChecks and rendering", () => {
  it("adds the VM's checks and refusals (without duplicating a code) and recomputes allowed", () => {
    const p = plan();
    const merged = withVmChecks(p, {
      checks: [{ name: "workflow-file", ok: false, detail: "/x missing" }],
      reasons: [{ code: "WORKFLOW_MISSING", message: "the workflow file /x is missing in the VM", hint: "restore it" }],
    });
    expect(p.allowed).toBe(true);
    expect(merged.allowed).toBe(false);
    expect(merged.checks.at(-1)).toEqual({ name: "workflow-file", ok: false, detail: "/x missing", source: "vm" });
    const failed = withVmChecks(p, { failure: "exit 1" });
    expect(failed.allowed).toBe(false);
    expect(failed.reasons[0]!.code).toBe("VM_CHECK_FAILED");
  });
  it("renders checks, the reset, the backup and the FULL script", () => {
    const p = plan();
    const text = renderResumePlan(p, { tty: false, showScript: true });
    expect(text).toContain("verdict:   allowed");
    expect(text).toContain("attempt step-3 #1: in-progress -> cancelled");
    expect(text).toContain(p.backup_path);
    expect(text).toContain(p.script!.trimEnd());
    const refused = renderResumePlan(plan({ launcher: pid(100, true) }), { tty: true, showScript: false });
    expect(refused).toContain("REFUSED");
    expect(refused).toContain("✗ launcher-dead");
  });
});

describe("one set of resume rules (src/core/resume-rules.ts) for the planner and the VM", () => {
  it("the heartbeat boundary: age == threshold is fresh for the planner and for the rule the VM calls", () => {
    for (const threshold of [30_000, 2_000, 600_000]) {
      const at = planResume({ ...input({ heartbeatAgeMs: threshold }), thresholds: { engineHeartbeatStaleMs: threshold } });
      const rule = engineHeartbeatCheck({ heartbeat_at_ms: NOW - threshold, started_at_ms: NOW - 3_600_000 }, NOW, threshold, false);
      expect(rule.fresh).toBe(true);
      expect(at.reasons.find((r) => r.code === "HEARTBEAT_FRESH")).toEqual(rule.reason);
      const past = planResume({ ...input({ heartbeatAgeMs: threshold + 1 }), thresholds: { engineHeartbeatStaleMs: threshold } });
      expect(engineHeartbeatCheck({ heartbeat_at_ms: NOW - threshold - 1, started_at_ms: null }, NOW, threshold, false).fresh).toBe(false);
      expect(past.allowed, JSON.stringify(past.reasons)).toBe(true);
    }
    // The hint formats the configured threshold, never a literal 30 s.
    expect(engineHeartbeatCheck({ heartbeat_at_ms: NOW, started_at_ms: null }, NOW, 2_000, false).reason?.hint).toContain("older than 2s");
  });

  it("the VM's program is bundled from that same rule module (and the liveness rule), not a copy", () => {
    const meta = JSON.parse(fs.readFileSync(guestBundlePath("resume").replace(/\.js$/, ".meta.json"), "utf8")) as { inputs: Record<string, unknown> };
    expect(Object.keys(meta.inputs)).toEqual(expect.arrayContaining(["src/core/resume-rules.ts", "src/core/liveness.ts", "src/vm/guest/resume.ts"]));
    const src = fs.readFileSync(path.join(REPO_ROOT, "src/vm/guest/resume.ts"), "utf8");
    expect(src).toMatch(/engineHeartbeatCheck\(run, Date\.now\(\), req\.engine_heartbeat_stale_ms, req\.force\)/);
    expect(src).not.toMatch(/heartbeat_at_ms[^\n]*[<>]=?/); // no comparison of its own
  });

  it("status -> mode: `continued` and waiting runs are refused the same way everywhere", () => {
    expect(modeForStatus("continued")).toEqual({ reason: expect.objectContaining({ code: "RUN_NOT_RESUMABLE", message: "the run was continued as a new run (status continued)" }) });
    expect(plan({ status: "continued" }).reasons[0]).toEqual((modeForStatus("continued") as { reason: unknown }).reason);
  });
});

describe("RESUME_WRAPPER as text", () => {
  it("wrapper + guest program stay well under the 128 KiB single-argument limit once shell-quoted", () => {
    expect(quote(resumeArgv("/c", "/b", "apply", loadGuestProgram("resume"), true)).length).toBeLessThan(100 * 1024);
  });
});
