/**
 * Inputs for planResume tests (shared by unit/resume-plan.test.ts, which checks the plans as data and text, and
 * integration/resume-scripts.test.ts, which checks the generated scripts with bash): a run record, probe
 * observations built from a few facts, and the script cases of the guide's regression tests.
 */
import { planResume, type PlanInput, type ResumePlan } from "../../resume/plan.js";
import type { RunRecord } from "../../fabrik/registry.js";
import type { RunObservation as Observation } from "../../vm/probe.js";
import type { DbFacts, NodeFact, PidFact, ProbeRunResult } from "../../vm/probe-schema.js";

export const NOW = 1_800_000_000_000;
export const HOME = "/home/u";
export const CD = `${HOME}/work/ralph-1/.runs/113-seq`;
export const WF = `${CD}/workflow/seq.tsx`;

export function runRecord(over: Partial<RunRecord> = {}): RunRecord {
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

export const pid = (p: number, alive: boolean, state: string | null = alive ? "S" : null): PidFact => ({ pid: p, alive, state, cmdline: alive ? "bun smithers up" : null });
export const node = (id: string, state: string, i: number, over: Partial<NodeFact> = {}): NodeFact => ({
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
export function nodeList(ids: string[], states: string[]): NodeFact[] {
  return ids.map((id, k) => node(id, states[k] ?? "pending", k));
}

export interface Facts {
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

export const SIX = ["step-1", "step-2", "step-3", "step-4", "step-5", "step-6"];
export const KILLED = nodeList(SIX, ["finished", "finished", "in-progress"]);

export function observe(f: Facts = {}): Observation {
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

export function input(f: Facts = {}, over: Partial<PlanInput> & { force?: boolean; fix?: boolean; run?: RunRecord } = {}): PlanInput {
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

export const plan = (f: Facts = {}, over: Parameters<typeof input>[1] = {}) => planResume(input(f, over));
export const legacyRun = runRecord({ engine_version: "0.5.0" });
/** The line of the script that starts the engine. */
export const engineLine = (p: ResumePlan) => p.script!.split("\n").find((l) => l.startsWith('"$SMITHERS"'))!;

/** The plans whose scripts the guide's regression tests check: each must resume THE run, with the right verb. */
export const SCRIPT_CASES: { name: string; p: () => ResumePlan; verb: RegExp }[] = [
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
