/**
 * planResume (pure): the guide's "Resume Creates New Runs" regression tests as tests of the generated script,
 * the progress banner with real values, the verb per dialect, and the refusal rules as a table.
 */
import { afterAll, describe, it, expect } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { quote } from "shell-quote";
import { planResume, refusalLine, withVmChecks, backupPathFor, guestHomeFromControlDir, type PlanInput, type ResumePlan } from "../../resume/plan.js";
import type { RunRecord } from "../../fabrik/registry.js";
import type { RunObservation as Observation } from "../../vm/probe.js";
import { renderResumePlan } from "../../fabrik/render/resume.js";
import type { DbFacts, NodeFact, PidFact, ProbeRunResult } from "../../vm/probe-schema.js";
import { RESUME_EXIT_LOCKED, RESUME_EXIT_NO_BUN, requestFor, resumeArgv } from "../../fabrik/resume-service.js";
import { engineHeartbeatCheck, modeForStatus } from "../../core/resume-rules.js";
import { guestBundlePath, loadGuestProgram } from "../../vm/guest-programs.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";

const NOW = 1_800_000_000_000;
const HOME = "/home/u";
const CD = `${HOME}/work/ralph-1/.runs/113-seq`;
const WF = `${CD}/workflow/seq.tsx`;

function runRecord(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: 113,
    vm: "ralph-1",
    driver: "lima",
    label: null,
    control_dir: CD,
    workflow_path: WF,
    workflow_source: null,
    input_json: "{}",
    smithers_run_id: "fabrik-113",
    smithers_db_path: `${CD}/.smithers/run-113.db`,
    engine_version: "0.32.0",
    status: "running",
    exit_code: null,
    failure_reason: null,
    created_at_ms: NOW - 3_600_000,
    started_at_ms: NOW - 3_600_000,
    finished_at_ms: null,
    updated_at_ms: NOW - 60_000,
    last_check_at_ms: null,
    last_check_status: null,
    last_check_json: null,
    resume_count: 0,
    last_resumed_at_ms: null,
    launcher_pid: 100,
    engine_pid: null,
    imported: 0,
    pending_json: null,
    ...over,
  };
}

const pid = (p: number, alive: boolean, state: string | null = alive ? "S" : null): PidFact => ({ pid: p, alive, state, cmdline: alive ? "bun smithers up" : null });
const node = (id: string, state: string, i: number, over: Partial<NodeFact> = {}): NodeFact => ({
  node_id: id,
  iteration: 0,
  state,
  last_attempt: state === "pending" ? null : 1,
  updated_at_ms: NOW - 100_000 + i,
  label: null,
  started_at_ms: state === "pending" ? null : NOW - 100_000 + i,
  error: state === "failed" ? "boom" : null,
  ...over,
});

/** `ids` in execution order; `states[k]` for node k. */
function nodeList(ids: string[], states: string[]): NodeFact[] {
  return ids.map((id, k) => node(id, states[k] ?? "pending", k));
}

interface Facts {
  status?: string;
  schema?: "modern" | "legacy" | "unknown";
  heartbeatAgeMs?: number | null;
  owner?: PidFact | null;
  engine?: PidFact | null;
  child?: PidFact | null;
  launcher?: PidFact | null;
  nodes?: NodeFact[];
  dbExists?: boolean;
  dbError?: string | null;
  noRun?: boolean;
  controlExists?: boolean;
  oversized?: { n: number; max: number };
  runError?: string | null;
}

const SIX = ["step-1", "step-2", "step-3", "step-4", "step-5", "step-6"];
const KILLED = nodeList(SIX, ["finished", "finished", "in-progress"]);

function observe(f: Facts = {}): Observation {
  const schema = f.schema ?? "modern";
  const nodes = f.nodes ?? KILLED;
  const byState: Record<string, number> = {};
  for (const n of nodes) byState[n.state] = (byState[n.state] ?? 0) + 1;
  const hbAge = f.heartbeatAgeMs === undefined ? 600_000 : f.heartbeatAgeMs;
  const owner = f.owner === undefined ? (schema === "modern" ? pid(101, false) : null) : f.owner;
  const db: DbFacts = {
    path: `${CD}/.smithers/run-113.db`,
    exists: f.dbExists ?? true,
    size_bytes: 4096,
    wal_size_bytes: 500_000,
    schema,
    missing_columns: [],
    error: f.dbError ?? null,
    run: f.noRun
      ? null
      : {
          run_id: "fabrik-113",
          status: f.status ?? "running",
          workflow_name: "seq",
          workflow_path: WF,
          created_at_ms: NOW - 3_600_000,
          started_at_ms: NOW - 3_600_000,
          finished_at_ms: null,
          heartbeat_at_ms: schema === "modern" && hbAge !== null ? NOW - hbAge : null,
          runtime_owner_id: schema === "modern" && owner ? `pid:${owner.pid}:abc` : null,
          owner,
          error: f.runError ?? null,
        },
    runs_in_db: 1,
    by_state: byState,
    total_nodes: nodes.length,
    in_progress: nodes.filter((n) => n.state === "in-progress"),
    last_failed: nodes.filter((n) => n.state === "failed").at(-1) ?? null,
    max_response_text_bytes: f.oversized?.max ?? 10,
    max_error_json_bytes: 0,
    oversized_values: f.oversized?.n ?? 0,
    nodes,
    nodes_truncated: false,
  };
  const result: ProbeRunResult = {
    key: "113",
    control: {
      exists: f.controlExists ?? true,
      heartbeat: null,
      heartbeat_error: "missing",
      heartbeat_mtime_ms: null,
      launcher: f.launcher === undefined ? pid(100, false) : f.launcher,
      child: f.child === undefined ? pid(101, false) : f.child,
      engine: f.engine === undefined ? pid(101, false) : f.engine,
      exit_code: null,
      exit_code_garbage: false,
      log_size_bytes: 100,
      log_mtime_ms: NOW - 1000,
      log_blob_too_big: false,
      run_sh_engine: "0.32.0",
    },
    db: f.dbExists === false ? { ...db, run: null, size_bytes: null, nodes: null } : db,
    errors: [],
  };
  return { kind: "live", result, vmNowMs: NOW, tool: "bun" };
}

function input(f: Facts = {}, over: Partial<PlanInput> & { force?: boolean; fix?: boolean; run?: RunRecord } = {}): PlanInput {
  return {
    run: over.run ?? runRecord(),
    observation: over.observation ?? observe(f),
    options: { force: over.force ?? false, fix: over.fix ?? false, fixLimitBytes: 100 * 1024 },
    thresholds: { engineHeartbeatStaleMs: 30_000 },
    now: NOW,
    guestHome: over.guestHome === undefined ? HOME : over.guestHome,
    heartbeatIntervalS: 10,
    launchId: "resume-0123456789abcdef",
  };
}

const plan = (f: Facts = {}, over: Parameters<typeof input>[1] = {}) => planResume(input(f, over));
const legacyRun = runRecord({ engine_version: "0.5.0" });
/** The line of the script that starts the engine. */
const engineLine = (p: ResumePlan) => p.script!.split("\n").find((l) => l.startsWith('"$SMITHERS"'))!;

describe("planResume: the generated script (guide regression tests)", () => {
  const cases: { name: string; p: () => ResumePlan; verb: RegExp }[] = [
    { name: "0.32 interrupted", p: () => plan(), verb: /^"\$SMITHERS" up \S+seq\.tsx --resume fabrik-113 --no-post-failure <\/dev\/null &$/ },
    { name: "0.32 cancelled", p: () => plan({ status: "cancelled", nodes: nodeList(SIX, ["finished", "finished", "cancelled"]) }), verb: /^"\$SMITHERS" up \S+ --resume fabrik-113 --no-post-failure/ },
    {
      name: "0.32 failed (one failed node): retry-task",
      p: () => plan({ status: "failed", nodes: nodeList(SIX, ["finished", "finished", "failed"]) }),
      verb: /^"\$SMITHERS" retry-task \S+seq\.tsx --run-id fabrik-113 --node-id step-3 <\/dev\/null &$/,
    },
    {
      name: "0.32 failed (two failed nodes): reset + up --resume",
      p: () => plan({ status: "failed", nodes: nodeList(SIX, ["finished", "failed", "failed"]) }),
      verb: /^"\$SMITHERS" up \S+ --resume fabrik-113 --no-post-failure/,
    },
    { name: "0.5 interrupted", p: () => plan({ schema: "legacy" }, { run: legacyRun }), verb: /^"\$SMITHERS" run \S+seq\.tsx --run-id fabrik-113 --resume <\/dev\/null &$/ },
    { name: "0.5 failed", p: () => plan({ schema: "legacy", status: "failed", nodes: nodeList(SIX, ["finished", "finished", "failed"]) }, { run: legacyRun }), verb: /^"\$SMITHERS" run \S+ --run-id fabrik-113 --resume/ },
  ];
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
      const sh = spawnSync("bash", ["-n"], { input: p.script!, encoding: "utf8" });
      expect(sh.status, sh.stderr).toBe(0);
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

// The VM-side wrapper run locally (bash + the repo's engine bun): the lock rules, without a VM.
const LOCAL_BUN = path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun");
describe.skipIf(!fs.existsSync(LOCAL_BUN))("RESUME_WRAPPER (local bash, real bun)", () => {
  const made: string[] = [];
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-resume-wrap-"));
    made.push(d);
    return d;
  };
  /** The guest's $HOME for these runs (the program is installed under it). */
  const home = tmp();
  afterAll(() => {
    for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  });
  const wrapWith = (dir: string, mode: "apply" | "dry-run", over: { bun?: string; install?: boolean; run?: Partial<RunRecord>; staleMs?: number } = {}) => {
    const p = plan({}, { run: runRecord({ control_dir: dir, workflow_path: `${dir}/workflow/seq.tsx`, smithers_db_path: `${dir}/.smithers/run-113.db`, ...over.run }) });
    const req = requestFor(p, { id: 113, dryRun: mode === "dry-run", force: false, fix: false, fixLimitBytes: 102400, yes: true }, over.staleMs ?? 30_000, mode === "dry-run");
    req.db_path = `${dir}/.smithers/run-113.db`; // the observation above names another folder's DB
    const [cmd, ...args] = resumeArgv(dir, over.bun ?? LOCAL_BUN, mode, loadGuestProgram("resume"), over.install ?? true);
    return spawnSync(cmd!, args, { input: JSON.stringify(req), encoding: "utf8", timeout: 30_000, env: { ...process.env, HOME: home } });
  };
  const wrap = (dir: string, mode: "apply" | "dry-run", bun = LOCAL_BUN) => wrapWith(dir, mode, { bun });
  const holdLock = async (file: string) => {
    // Its own process group, so the test can end flock AND the sleep that inherited the lock.
    const p = spawn("flock", [file, "sleep", "30"], { stdio: "ignore", detached: true });
    for (let i = 0; i < 100 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    return { kill: () => process.kill(-p.pid!, "SIGKILL") };
  };

  it("dry-run creates no lock file and answers with the VM's checks (here: no DB -> refused)", () => {
    const dir = tmp();
    const r = wrap(dir, "dry-run");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ v: 1, dry_run: true, refused: true });
    expect(out.reasons.map((x: { code: string }) => x.code)).toContain("DB_MISSING");
    expect(fs.readdirSync(dir)).toEqual([]);
  });
  it("a second resume while one holds resume.lock is refused (apply and dry-run)", async () => {
    const dir = tmp();
    const holder = await holdLock(path.join(dir, "resume.lock"));
    try {
      expect(wrap(dir, "apply").status).toBe(RESUME_EXIT_LOCKED);
      expect(wrap(dir, "dry-run").status).toBe(RESUME_EXIT_LOCKED);
    } finally {
      holder.kill();
    }
    // SIGKILL is asynchronous: wait until the lock is really free before the next resume.
    for (let i = 0; i < 100 && spawnSync("flock", ["-n", path.join(dir, "resume.lock"), "true"]).status !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = wrap(dir, "apply");
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).refused).toBe(true);
  });
  it("a held launcher.lock refuses (a launcher or engine still lives)", async () => {
    const dir = tmp();
    const holder = await holdLock(path.join(dir, "launcher.lock"));
    try {
      const out = JSON.parse(wrap(dir, "dry-run").stdout);
      expect(out.checks.find((c: { name: string }) => c.name === "launcher-lock")).toMatchObject({ ok: false });
      expect(out.reasons.map((x: { code: string }) => x.code)).toContain("LAUNCHER_LOCK_HELD");
    } finally {
      holder.kill();
    }
  });
  it("a missing bun is its own exit status", () => {
    expect(wrap(tmp(), "apply", "/nonexistent/bun").status).toBe(RESUME_EXIT_NO_BUN);
  });
  it("wrapper + guest program stay well under the 128 KiB single-argument limit once shell-quoted", () => {
    expect(quote(resumeArgv("/c", "/b", "apply", loadGuestProgram("resume"), true)).length).toBeLessThan(100 * 1024);
  });
  it("installed once: a later call sends only the hash; a lost file is exit 79 with nothing run", () => {
    const program = loadGuestProgram("resume");
    expect(wrapWith(tmp(), "dry-run", { install: true }).status).toBe(0);
    expect(fs.readFileSync(path.join(home, ".fabrik/guest", program.hash, "resume.js"), "utf8")).toBe(program.text);
    const r = wrapWith(tmp(), "dry-run", { install: false });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).dry_run).toBe(true);
    fs.rmSync(path.join(home, ".fabrik/guest", program.hash), { recursive: true });
    const lost = wrapWith(tmp(), "apply", { install: false });
    expect(lost.status).toBe(79);
    expect(lost.stdout).toBe("");
  });
  it("the VM refuses a fresh heartbeat with the planner's exact words (the same rule, configured threshold)", async () => {
    const { dir: fx, manifest } = await ensureFixtures();
    const dir = tmp();
    const db = copyFixtureDb(fx, fixtureCase(manifest, "0.32.0", "killed"));
    fs.mkdirSync(path.join(dir, ".smithers"));
    for (const f of fs.readdirSync(path.dirname(db))) fs.copyFileSync(path.join(path.dirname(db), f), path.join(dir, ".smithers", f.replace(/^run\.db/, "run-113.db")));
    fs.rmSync(path.dirname(db), { recursive: true, force: true });
    const Database = (await import("better-sqlite3")).default;
    const d = new Database(path.join(dir, ".smithers/run-113.db"));
    d.prepare("UPDATE _smithers_runs SET heartbeat_at_ms = ?").run(Date.now());
    d.close();
    const r = wrapWith(dir, "dry-run", { run: { smithers_run_id: "fx-0.32.0-killed" }, staleMs: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { reasons: { code: string; message: string; hint: string | null }[] };
    const vmReason = out.reasons.find((x) => x.code === "HEARTBEAT_FRESH");
    const hostReason = planResume({ ...input({ heartbeatAgeMs: 0 }), thresholds: { engineHeartbeatStaleMs: 600_000 } }).reasons.find((x) => x.code === "HEARTBEAT_FRESH");
    expect(vmReason).toEqual(hostReason);
    expect(vmReason?.hint).toContain("older than 10m");
  }, 600_000);
});
