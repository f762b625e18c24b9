import { describe, it, expect } from "vitest";
import { deriveRunState, type StatusThresholds as DeriveThresholds } from "../../fabrik/status/derive.js";
import type { RunObservation as Observation } from "../../vm/probe.js";
import type { RunRecord } from "../../fabrik/registry.js";
import type { ProbeRunResult, PidFact, NodeFact } from "../../vm/probe-schema.js";

const NOW = 1_800_000_000_000;
const T: DeriveThresholds = {
  engineHeartbeatStaleMs: 30_000,
  launcherHeartbeatStaleMs: 30_000,
  dbSizeWarnBytes: 100 * 1024 * 1024,
  rowSizeWarnBytes: 100 * 1024,
  configuredEngineVersion: "0.32.0",
  taskRunningLongMs: 7_200_000,
};

function cache(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: 113,
    vm: "ralph-1",
    driver: "lima",
    label: null,
    control_dir: "/home/u/work/ralph-1/.runs/113-seq",
    workflow_path: "/home/u/work/ralph-1/.runs/113-seq/workflow/seq.tsx",
    workflow_source: null,
    input_json: "{}",
    smithers_run_id: "fabrik-113",
    smithers_db_path: "/home/u/work/ralph-1/.runs/113-seq/.smithers/run-113.db",
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

const pid = (p: number, alive: boolean, state: string | null = alive ? "S" : null): PidFact => ({ pid: p, alive, state, cmdline: null });
const node = (id: string, state: string, over: Partial<NodeFact> = {}): NodeFact => ({
  node_id: id,
  iteration: 0,
  state,
  last_attempt: 1,
  updated_at_ms: NOW - 10_000,
  label: null,
  started_at_ms: NOW - 20_000,
  error: null,
  ...over,
});

interface Facts {
  status?: string;
  schema?: "modern" | "legacy" | "unknown";
  heartbeatAgeMs?: number | null;
  owner?: PidFact | null;
  engine?: PidFact | null;
  child?: PidFact | null;
  launcher?: PidFact | null;
  launcherHbAgeMs?: number | null;
  phase?: string;
  exitCode?: number | null;
  inProgress?: NodeFact[];
  lastFailed?: NodeFact | null;
  dbExists?: boolean;
  dbError?: string | null;
  noRun?: boolean;
  controlExists?: boolean;
  dbSize?: number;
  oversized?: number | null;
  blobTooBig?: boolean;
  runSh?: string | null;
  heartbeatError?: string | null;
  dbPath?: string;
  runError?: string | null;
}

function live(f: Facts): Observation {
  const schema = f.schema ?? "modern";
  const hbAge = f.heartbeatAgeMs === undefined ? 1_000 : f.heartbeatAgeMs;
  const result: ProbeRunResult = {
    key: "113",
    control: {
      exists: f.controlExists ?? true,
      heartbeat:
        f.launcherHbAgeMs === null
          ? null
          : {
              v: 1,
              ts_ms: NOW - (f.launcherHbAgeMs ?? 2_000),
              seq: 5,
              phase: f.phase ?? "running",
              host_run_id: 113,
              smithers_run_id: "fabrik-113",
              launcher_pid: 100,
              child_pid: 101,
              engine_pid: 101,
              engine_version: "0.32.0",
              interval_s: 10,
              exit_code: null,
              launch_id: null,
            },
      heartbeat_error: f.heartbeatError ?? (f.launcherHbAgeMs === null ? "missing" : null),
      heartbeat_mtime_ms: f.launcherHbAgeMs === null ? null : NOW - (f.launcherHbAgeMs ?? 2_000),
      launcher: f.launcher === undefined ? pid(100, true) : f.launcher,
      child: f.child === undefined ? (f.engine === undefined ? pid(101, true) : f.engine) : f.child,
      engine: f.engine === undefined ? pid(101, true) : f.engine,
      exit_code: f.exitCode ?? null,
      exit_code_garbage: false,
      log_size_bytes: 1000,
      log_mtime_ms: NOW - 1000,
      log_blob_too_big: f.blobTooBig ?? false,
      run_sh_engine: f.runSh === undefined ? "0.32.0" : f.runSh,
    },
    db: {
      path: f.dbPath ?? "/home/u/work/ralph-1/.runs/113-seq/.smithers/run-113.db",
      exists: f.dbExists ?? true,
      size_bytes: f.dbSize ?? 4096,
      wal_size_bytes: 0,
      schema,
      missing_columns: schema === "legacy" ? ["heartbeat_at_ms", "runtime_owner_id"] : [],
      error: f.dbError ?? null,
      run: f.noRun
        ? null
        : {
            run_id: "fabrik-113",
            status: f.status ?? "running",
            workflow_name: "seq",
            workflow_path: null,
            created_at_ms: NOW - 3_600_000,
            started_at_ms: NOW - 3_600_000,
            finished_at_ms: null,
            heartbeat_at_ms: schema === "modern" && hbAge !== null ? NOW - hbAge : null,
            runtime_owner_id: schema === "modern" ? "pid:101:abc" : null,
            owner: schema === "modern" ? (f.owner === undefined ? (f.engine === undefined ? pid(101, true) : f.engine) : f.owner) : null,
            error: f.runError ?? null,
          },
      runs_in_db: 1,
      by_state: { finished: 142, "in-progress": (f.inProgress ?? [node("15:impl", "in-progress")]).length, pending: 41 },
      total_nodes: 184,
      in_progress: f.inProgress ?? [node("15:impl", "in-progress")],
      last_failed: f.lastFailed ?? null,
      max_response_text_bytes: 1000,
      max_error_json_bytes: 100,
      oversized_values: f.oversized === undefined ? 0 : f.oversized,
      nodes: null,
      nodes_truncated: false,
    },
    errors: [],
  };
  return { kind: "live", result, vmNowMs: NOW, tool: "bun" };
}

const dead = (p: number) => pid(p, false);
const codes = (s: ReturnType<typeof deriveRunState>) => s.diagnoses.map((d) => d.code);

describe("deriveRunState decision table", () => {
  const rows: { name: string; cache?: Partial<RunRecord>; obs: Observation; status: string; diag?: string[]; noDiag?: string[]; mismatch?: boolean }[] = [
    { name: "engine alive, heartbeat fresh → running", obs: live({}), status: "running", noDiag: ["ENGINE_STUCK"] },
    {
      name: "guide Issue 1: cache done, VM running",
      cache: { status: "done", exit_code: 0 },
      obs: live({ heartbeatAgeMs: 2_000 }),
      status: "running",
      diag: ["CACHE_SAYS_FINISHED_BUT_RUNNING"],
      mismatch: true,
    },
    {
      name: "engine alive but heartbeat 45 min old → stale (stuck)",
      obs: live({ heartbeatAgeMs: 45 * 60_000 }),
      status: "stale",
      diag: ["ENGINE_STUCK"],
    },
    {
      name: "guide Issue 3: task in-progress, no engine process → orphaned + resume",
      obs: live({ owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100), heartbeatAgeMs: 600_000, launcherHbAgeMs: 600_000 }),
      status: "orphaned",
      diag: ["TASK_IN_PROGRESS_NO_ENGINE"],
      mismatch: true,
    },
    {
      name: "engine dead even though its heartbeat is still fresh → never running",
      obs: live({ owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100), heartbeatAgeMs: 3_000 }),
      status: "orphaned",
      diag: ["TASK_IN_PROGRESS_NO_ENGINE"],
    },
    {
      name: "orphaned with nothing in progress",
      obs: live({ owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100), inProgress: [] }),
      status: "orphaned",
      diag: ["ORPHANED_NO_ENGINE"],
    },
    {
      name: "launcher exited with a code but DB still says running",
      obs: live({ owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100), exitCode: 137, phase: "exited" }),
      status: "orphaned",
      diag: ["TASK_IN_PROGRESS_NO_ENGINE", "EXITED_WITHOUT_FINISHING"],
    },
    {
      name: "heartbeat writer died while the engine lives → says so, still running",
      obs: live({ launcher: dead(100), launcherHbAgeMs: 120_000 }),
      status: "running",
      diag: ["HEARTBEAT_WRITER_DIED"],
    },
    {
      name: "launcher heartbeat stale, launcher alive, engine alive",
      obs: live({ launcherHbAgeMs: 300_000 }),
      status: "running",
      diag: ["HEARTBEAT_WRITER_DIED"],
    },
    {
      name: "zombie engine counts as alive",
      obs: live({ owner: pid(101, true, "Z"), engine: pid(101, true, "Z") }),
      status: "running",
    },
    {
      name: "legacy DB, process alive → running, missing facts listed",
      obs: live({ schema: "legacy", owner: null }),
      status: "running",
      diag: ["LEGACY_NO_ENGINE_HEARTBEAT"],
    },
    {
      name: "legacy DB, process dead → orphaned",
      obs: live({ schema: "legacy", owner: null, engine: dead(101), child: dead(101), launcher: dead(100) }),
      status: "orphaned",
      diag: ["TASK_IN_PROGRESS_NO_ENGINE", "LEGACY_NO_ENGINE_HEARTBEAT"],
    },
    {
      name: "legacy DB, no pid files, fresh heartbeat.json → running",
      obs: live({ schema: "legacy", owner: null, engine: null, child: null, launcher: null, launcherHbAgeMs: 3_000 }),
      status: "running",
    },
    {
      name: "legacy DB, no pid, no heartbeat.json → unknown",
      obs: live({ schema: "legacy", owner: null, engine: null, child: null, launcher: null, launcherHbAgeMs: null }),
      status: "unknown",
    },
    {
      name: "modern DB, no pid facts at all, stale engine heartbeat → orphaned",
      obs: live({ owner: null, engine: null, child: null, launcher: null, heartbeatAgeMs: 120_000 }),
      status: "orphaned",
    },
    { name: "finished → done", obs: live({ status: "finished", inProgress: [], exitCode: 0, engine: dead(101), launcher: dead(100) }), status: "done", mismatch: true },
    {
      name: "failed → failed with the failed node",
      obs: live({ status: "failed", inProgress: [], exitCode: 1, engine: dead(101), launcher: dead(100), lastFailed: node("step-3", "failed", { error: "boom" }) }),
      status: "failed",
      diag: ["RUN_FAILED"],
    },
    { name: "cancelled", obs: live({ status: "cancelled", inProgress: [], exitCode: 2, engine: dead(101), launcher: dead(100) }), status: "cancelled", diag: ["RUN_CANCELLED"] },
    { name: "waiting-approval", obs: live({ status: "waiting-approval", inProgress: [] }), status: "waiting-approval", diag: ["WAITING"] },
    { name: "unknown engine status", obs: live({ status: "exploded" }), status: "unknown" },
    {
      name: "guide Issue 2: blob too big in the log → --fix",
      obs: live({ status: "failed", blobTooBig: true, engine: dead(101), launcher: dead(100), inProgress: [] }),
      status: "failed",
      diag: ["BLOB_TOO_BIG"],
    },
    { name: "oversized values → --fix", obs: live({ oversized: 3 }), status: "running", diag: ["OVERSIZED_VALUES"] },
    { name: "DB over 100 MB → --fix", obs: live({ dbSize: 200 * 1024 * 1024 }), status: "running", diag: ["DB_TOO_LARGE"] },
    { name: "guide Issue 4: run.sh pins an older engine", obs: live({ runSh: "0.5.0" }), status: "running", diag: ["OLD_ENGINE_PINNED"] },
    { name: "run.sh pins a github ref", obs: live({ runSh: "github:evmts/smithers#ea5ece3" }), status: "running", diag: ["OLD_ENGINE_PINNED"] },
    { name: "DB missing, engine dead → unknown + DB_MISSING", obs: live({ dbExists: false, engine: dead(101), child: dead(101), launcher: dead(100) }), status: "unknown", diag: ["DB_MISSING"] },
    { name: "DB missing while engine starts → running", obs: live({ dbExists: false }), status: "running", diag: ["DB_MISSING"] },
    { name: "DB missing, launcher recorded failure", obs: live({ dbExists: false, engine: dead(101), child: dead(101), launcher: dead(100), exitCode: 1 }), status: "failed" },
    { name: "DB locked while engine alive", obs: live({ dbError: "locked" }), status: "running", diag: ["DB_UNREADABLE"] },
    { name: "corrupt DB, engine dead", obs: live({ dbError: "file is not a database", engine: dead(101), child: dead(101), launcher: dead(100) }), status: "unknown", diag: ["DB_UNREADABLE"] },
    { name: "unknown schema", obs: live({ schema: "unknown" }), status: "unknown", diag: ["DB_UNKNOWN_SCHEMA"] },
    { name: "run id not in the DB", obs: live({ noRun: true, engine: dead(101), child: dead(101), launcher: dead(100) }), status: "unknown", diag: ["RUN_NOT_IN_DB"] },
    { name: "corrupt heartbeat.json", obs: live({ heartbeatError: "not JSON", launcherHbAgeMs: null }), status: "running", diag: ["HEARTBEAT_UNREADABLE"] },
    { name: "workflow ignored SMITHERS_DB_PATH", obs: live({ dbPath: "/home/u/work/ralph-1/.runs/113-seq/smithers.db" }), status: "running", diag: ["DB_PATH_MOVED"] },
    {
      name: "unreachable VM → unreachable with cached values, never dead",
      cache: { status: "running", last_check_json: JSON.stringify({ current_task: "15:impl", progress: { finished: 1, total: 2, by_state: {} } }) },
      obs: { kind: "unreachable", reason: "VM ralph-1 is stopped" },
      status: "unreachable",
      diag: ["UNREACHABLE"],
    },
  ];

  for (const row of rows) {
    it(row.name, () => {
      const s = deriveRunState(cache(row.cache), row.obs, NOW, T);
      expect(s.effective_status).toBe(row.status);
      for (const c of row.diag ?? []) expect(codes(s)).toContain(c);
      for (const c of row.noDiag ?? []) expect(codes(s)).not.toContain(c);
      if (row.mismatch !== undefined) expect(s.mismatches.some((m) => m.field === "status")).toBe(row.mismatch);
      for (const d of s.diagnoses) {
        expect(d.message.length).toBeGreaterThan(0);
        if (d.next_command) expect(d.next_command).toMatch(/^fabrik /);
      }
    });
  }

  it("resume diagnoses name the exact command", () => {
    const s = deriveRunState(cache(), live({ owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100) }), NOW, T);
    const d = s.diagnoses.find((x) => x.code === "TASK_IN_PROGRESS_NO_ENGINE")!;
    expect(d.next_command).toBe("fabrik run resume --id 113");
    expect(d.message).toContain("15:impl");
    expect(s.current_task).toBe("15:impl");
    expect(s.progress).toEqual({ finished: 142, total: 184, by_state: { finished: 142, "in-progress": 1, pending: 41 } });
    expect(s.cache_status).toBe("orphaned");
    expect(s.cache_failure_reason).toMatch(/no engine process/);
  });

  it("uses the VM clock for ages, not the host clock", () => {
    const obs = live({ heartbeatAgeMs: 5_000 });
    // host clock 2 hours ahead of the VM: ages must still be 5 s
    const s = deriveRunState(cache(), obs, NOW + 7_200_000, T);
    expect(s.engine_heartbeat_age_ms).toBe(5_000);
    expect(s.effective_status).toBe("running");
  });

  it("thresholds are configurable", () => {
    const s = deriveRunState(cache(), live({ heartbeatAgeMs: 10_000 }), NOW, { ...T, engineHeartbeatStaleMs: 5_000 });
    expect(s.effective_status).toBe("stale");
  });

  it("--no-live reads only the cache", () => {
    const s = deriveRunState(cache({ status: "done", exit_code: 0 }), { kind: "none" }, NOW, T);
    expect(s.source).toBe("cache");
    expect(s.effective_status).toBe("done");
    expect(s.mismatches).toEqual([]);
  });

  it("exit code mismatch is reported", () => {
    const s = deriveRunState(cache({ status: "running" }), live({ status: "failed", exitCode: 1, engine: dead(101), launcher: dead(100), inProgress: [] }), NOW, T);
    expect(s.mismatches).toContainEqual({ field: "exit_code", cache: null, live: 1 });
    expect(s.mismatches).toContainEqual({ field: "status", cache: "running", live: "failed" });
  });
});

describe("docs/status.md", () => {
  it("prints the decision table exactly as the code has it, and lists every diagnosis", async () => {
    const fs = await import("node:fs");
    const { statusTableMarkdown } = await import("../../fabrik/status/rules.js");
    const { DIAGNOSIS_CODES } = await import("../../fabrik/status/diagnoses.js");
    const doc = fs.readFileSync(new URL("../../../docs/status.md", import.meta.url), "utf8");
    expect(doc).toContain(statusTableMarkdown());
    for (const code of DIAGNOSIS_CODES) expect(doc, code).toContain(`\`${code}\``);
  });
});

describe("exit codes", () => {
  it("an exit_code outside 0..255 is not an exit code (garbage, never cached)", () => {
    const s = deriveRunState(cache(), live({ exitCode: -1, owner: dead(101), engine: dead(101), child: dead(101), launcher: dead(100) }), NOW, T);
    expect(s.exit_code).toBeNull();
    expect(codes(s)).toContain("EXIT_CODE_UNREADABLE");
    expect(s.mismatches.some((m) => m.field === "exit_code")).toBe(false);
  });
  it("a cached exit code whose file is gone, for a run that is active again, is cleared", () => {
    const s = deriveRunState(cache({ status: "failed", exit_code: 1 }), live({}), NOW, T);
    expect(s.effective_status).toBe("running");
    expect(s.cache_clear_exit_code).toBe(true);
    expect(s.mismatches).toContainEqual({ field: "exit_code", cache: 1, live: null });
  });
  it("a finished run keeps its cached exit code when the file is missing", () => {
    const s = deriveRunState(cache({ status: "done", exit_code: 0 }), live({ status: "finished", inProgress: [], engine: dead(101), launcher: dead(100) }), NOW, T);
    expect(s.cache_clear_exit_code).toBe(false);
  });
});

describe("right after a resume", () => {
  it("an engine heartbeat cleared by the resume is not read as a stuck engine while the new launcher beats", () => {
    const obs = live({ heartbeatAgeMs: null, launcherHbAgeMs: 1_000 });
    const s = deriveRunState(cache(), obs, NOW, T);
    expect(s.effective_status).toBe("running");
    expect(codes(s)).not.toContain("ENGINE_STUCK");
  });
});
