/**
 * The probe's wire format: what the host asks (`ProbeRequest`, JSON on the probe's stdin) and what the VM
 * answers (`ProbeResponse`, JSON on stdout). The VM is untrusted, so the host validates every answer with
 * these zod schemas; strings are length-capped here as well as in the guest.
 *
 * Units: times are epoch ms on the VM's clock (`now_ms` is that clock at probe time, so ages are computed
 * without host/VM skew), sizes are bytes.
 */
import { z } from "zod";
import { HealthFactsSchema, HealthRequestSchema } from "./health-schema.js";
import { PID_IDENTITY_VERDICTS, type PidIdentityVerdict } from "../core/pid-identity.js";

// zod compiles a fast path for each object schema (`new Function`) at its first parse: worth it for a long-lived
// parser, not for a command that parses one answer and exits (~15 ms of a `runs show`). Global, and set before any
// schema is used; a watch loop's later parses cost well under a millisecond either way.
z.config({ jitless: true });

/** Probe wire-format version (both directions). */
export const PROBE_VERSION = 1;

const str = (max: number) => z.string().max(max);
const int = z.number().int();
const nint = int.nullable();
const ms = z.number().int().nonnegative().nullable();

/** One run to look at. */
export const ProbeRunRequestSchema = z.object({
  /** Echoed back: the host run id as a string, or a discovery key. */
  key: str(200),
  /** Absolute control dir in the guest, or null (a bare DB import). */
  control_dir: str(4096).nullable(),
  /** Absolute DB path, or null to look for it (control dir's `.smithers/*.db`, `smithers.db` candidates). */
  db_path: str(4096).nullable(),
  /** The run to read from the DB; null = the most recently started run in it. */
  smithers_run_id: str(200).nullable(),
  /** Also return the engine's events of this run (`runs events`, `runs events --follow`); absent/null: none. */
  events: z
    .object({
      /** Only events after this seq (following); null: the last `limit` events. */
      after_seq: int.nullable(),
      limit: int.positive().max(100_000),
      /** Only events whose payload names this node id. */
      node: str(500).nullable(),
      /** Only events at or after this time, epoch ms on the VM clock. */
      since_ms: int.nonnegative().nullable(),
      /** Include agent chunks, token counts, tool calls, frames, heartbeats. */
      raw: z.boolean(),
    })
    .nullable()
    .optional(),
});
export type ProbeRunRequest = z.infer<typeof ProbeRunRequestSchema>;

export const ProbeRequestSchema = z.object({
  v: z.literal(PROBE_VERSION),
  runs: z.array(ProbeRunRequestSchema).max(1000),
  /** Also return the run's node list (for watch), at most `max_nodes` rows. */
  nodes: z.boolean().default(false),
  max_nodes: int.positive().max(5000).default(500),
  /** Byte size above which a response_text/error_json value counts as oversized (default 100 KB). */
  row_size_warn_bytes: int.positive().default(100 * 1024),
  /** List control dirs under these roots (for `runs import`). */
  discover_roots: z.array(str(4096)).max(20).default([]),
  /** Characters kept of error messages. */
  error_chars: int.positive().max(4000).default(500),
  /** Also gather the VM's health facts (src/vm/health-schema.ts: engines, disk, control dirs, locks) in this round trip. */
  health: HealthRequestSchema.optional(),
});
export type ProbeRequest = z.input<typeof ProbeRequestSchema>;
/** A request with every field present: what goes on the wire. */
export type ProbeRequestFull = z.output<typeof ProbeRequestSchema>;

export { probeRequestWithDefaults } from "./probe-request.js";

/**
 * A pid and whether the RUN'S process with that pid lives inside the VM (signal 0; a zombie counts as alive, as the
 * engine counts it). A pid that answers but is proven to be another process (src/core/pid-identity.ts) is `alive:
 * false` with `identity` `reused`, `rebooted` or `foreign`, and `state`/`cmdline` of the process that has it now.
 */
export const PidFactSchema = z.object({
  pid: int.positive(),
  alive: z.boolean(),
  /** Process state letter from /proc (R, S, Z, …) when the pid answers and /proc is readable. */
  state: str(4).nullable(),
  /** First 200 chars of the command line, when readable. */
  cmdline: str(200).nullable(),
  /** Whose process answers to the pid (null when nothing answers): see PidIdentityVerdict. */
  identity: z.enum(PID_IDENTITY_VERDICTS as [PidIdentityVerdict, ...PidIdentityVerdict[]]).nullable().optional(),
});
export type PidFact = z.infer<typeof PidFactSchema>;

/** What the launcher left in the control dir. */
export const ControlFactsSchema = z.object({
  exists: z.boolean(),
  /** heartbeat.json parsed (only known fields kept), or null when missing/garbage. */
  heartbeat: z
    .object({
      v: int.nullable(),
      ts_ms: ms,
      seq: nint,
      phase: str(40).nullable(),
      host_run_id: nint,
      smithers_run_id: str(200).nullable(),
      launcher_pid: nint,
      child_pid: nint,
      engine_pid: nint,
      engine_version: str(100).nullable(),
      interval_s: z.number().nullable(),
      exit_code: nint,
      /** The launch (run.sh or resume-N.sh) that writes this heartbeat: the id fabrik journalled before starting it. */
      launch_id: str(100).nullable(),
    })
    .nullable(),
  /** Why heartbeat.json could not be used ("missing", "not JSON", "too large"), or null. */
  heartbeat_error: str(300).nullable(),
  heartbeat_mtime_ms: ms,
  launcher: PidFactSchema.nullable(),
  child: PidFactSchema.nullable(),
  engine: PidFactSchema.nullable(),
  /** exit_code file: the integer, or null when absent. */
  exit_code: nint,
  /** exit_code present but not an integer. */
  exit_code_garbage: z.boolean(),
  log_size_bytes: int.nonnegative().nullable(),
  log_mtime_ms: ms,
  /** "string or blob too big" appears in the last 256 KiB of the log (guide Issue 2). */
  log_blob_too_big: z.boolean(),
  /** Engine version pinned in run.sh (`ENGINE_VERSION=` or an `smithers-orchestrator@X` / `#ref` mention). */
  run_sh_engine: str(200).nullable(),
});
export type ControlFacts = z.infer<typeof ControlFactsSchema>;

export const DbRunSchema = z.object({
  run_id: str(200),
  status: str(60),
  workflow_name: str(300).nullable(),
  workflow_path: str(4096).nullable(),
  created_at_ms: ms,
  started_at_ms: ms,
  finished_at_ms: ms,
  /** 0.32 only; null when the column is missing or empty. */
  heartbeat_at_ms: ms,
  runtime_owner_id: str(300).nullable(),
  /** The pid in `pid:<pid>:<uuid>`, checked inside the VM. */
  owner: PidFactSchema.nullable(),
  /** error_json's message, truncated. */
  error: str(4000).nullable(),
});
export type DbRun = z.infer<typeof DbRunSchema>;

export const NodeFactSchema = z.object({
  node_id: str(500),
  iteration: int,
  state: str(60),
  last_attempt: nint,
  updated_at_ms: ms,
  label: str(500).nullable(),
  /** For in-progress nodes: the attempt's start time. */
  started_at_ms: ms,
  /** For failed nodes: the attempt's error message, truncated. */
  error: str(4000).nullable(),
});
export type NodeFact = z.infer<typeof NodeFactSchema>;

export const DbFactsSchema = z.object({
  path: str(4096),
  exists: z.boolean(),
  size_bytes: int.nonnegative().nullable(),
  wal_size_bytes: int.nonnegative().nullable(),
  /** `modern` (0.32: heartbeat/owner columns), `legacy` (0.5: neither), `unknown` (no _smithers_runs). */
  schema: z.enum(["modern", "legacy", "unknown"]),
  /** Columns fabrik looks for that this DB lacks (e.g. heartbeat_at_ms, runtime_owner_id). */
  missing_columns: z.array(str(100)).max(50),
  /** Open/read error ("locked", "not a database", …), or null. */
  error: str(500).nullable(),
  run: DbRunSchema.nullable(),
  /** Number of runs in this DB (several runs may share one DB). */
  runs_in_db: nint,
  /** Node counts by state for THIS run id only (iterations counted as separate nodes). */
  by_state: z.record(str(60), int.nonnegative()),
  total_nodes: int.nonnegative(),
  /** In-progress nodes, most recently started first (at most 20). */
  in_progress: z.array(NodeFactSchema).max(20),
  last_failed: NodeFactSchema.nullable(),
  /** Nodes parked on an approval, an event or a timer (`waiting-*` states), most recently updated first (at most 20). */
  waiting: z.array(NodeFactSchema).max(20).optional(),
  /** Largest value sizes in bytes, read without reading the values (octet_length); null when unknown. */
  max_response_text_bytes: int.nonnegative().nullable(),
  max_error_json_bytes: int.nonnegative().nullable(),
  /** Values above `row_size_warn_bytes` in this run; null when unknown. */
  oversized_values: int.nonnegative().nullable(),
  /** The run's nodes (only when asked with `nodes: true`), in execution order. */
  nodes: z.array(NodeFactSchema).max(5000).nullable(),
  nodes_truncated: z.boolean(),
});
export type DbFacts = z.infer<typeof DbFactsSchema>;

/** One of the engine's own events (`_smithers_events`), as a line's worth of facts. Times: VM clock, epoch ms. */
export const EventFactSchema = z.object({
  seq: int,
  ts_ms: ms,
  /** The engine's event type: RunStarted, NodeStarted, NodeFailed, ApprovalGranted, RunFinished, … */
  type: str(100),
  node_id: str(500).nullable(),
  iteration: nint,
  attempt: nint,
  /** Status, error message, decision… from the payload, truncated. */
  detail: str(500).nullable(),
});
export type EventFact = z.infer<typeof EventFactSchema>;

export const ProbeRunResultSchema = z.object({
  key: str(200),
  control: ControlFactsSchema.nullable(),
  db: DbFactsSchema.nullable(),
  /** The run's engine events, oldest first (only when the request asked for them). */
  events: z.array(EventFactSchema).max(100_000).nullable().optional(),
  /** More events matched than the request's limit. */
  events_truncated: z.boolean().optional(),
  /** Probe-level problems for this run (never fatal to the whole probe). */
  errors: z.array(str(500)).max(20),
});
export type ProbeRunResult = z.infer<typeof ProbeRunResultSchema>;

export const DiscoveredRunSchema = z.object({
  control_dir: str(4096),
  /** fabrik-run.json content if present (host id, smithers run id, engine version). */
  meta: z
    .object({
      host_run_id: nint.optional(),
      smithers_run_id: str(200).nullable().optional(),
      engine_version: str(100).nullable().optional(),
      db_path: str(4096).nullable().optional(),
      workflow: str(500).nullable().optional(),
    })
    .nullable(),
  /** DB files found under the control dir (`.smithers/*.db`, `smithers.db`). */
  db_paths: z.array(str(4096)).max(20),
  /** Run ids found in those DBs (first DB), most recent first. */
  run_ids: z.array(str(200)).max(100),
  workflow_path: str(4096).nullable(),
});
export type DiscoveredRun = z.infer<typeof DiscoveredRunSchema>;

export const ProbeResponseSchema = z.object({
  v: z.literal(PROBE_VERSION),
  /** What ran the probe: always `bun` (bun:sqlite, SQLite ≥ 3.43 with octet_length); kept for the wire's sake. */
  tool: z.literal("bun"),
  tool_version: str(100),
  sqlite_version: str(40),
  /** The VM's clock at probe time, epoch ms. */
  now_ms: int.positive(),
  runs: z.array(ProbeRunResultSchema).max(1000),
  discovered: z.array(DiscoveredRunSchema).max(1000),
  /** The VM's health facts, when the request asked for them. */
  health: HealthFactsSchema.optional(),
});
export type ProbeResponse = z.infer<typeof ProbeResponseSchema>;
