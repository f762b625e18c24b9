/**
 * The wire of the two guest programs behind the run-level commands:
 * - `inspect` (src/vm/guest/inspect.ts, read-only): `runs why`, `runs nodes` — the guide's schema queries, the
 *   attempts of the node that blocks the run, the last events and log lines, and (0.32) the engine's own `why`;
 * - `control` (src/vm/guest/control.ts, the apply kind): `run cancel`, `run approve|deny`, `run signal`,
 *   `run compact` — the engine's own verbs run against the run's DB, signals only to proven processes, and the
 *   Issue 2 fix with a verified backup first.
 *
 * Each reads one request (JSON on stdin) and prints ONE JSON line; the VM is untrusted, so the host validates the
 * answer with these zod schemas (strings capped). Units: times epoch ms on the VM clock, durations ms, sizes bytes.
 */
import { z } from "zod";
import { PidFactSchema, EventFactSchema } from "./probe-schema.js";
import { BackupResultSchema, FixResultSchema } from "./resume-schema.js";

const s = (max: number) => z.string().max(max);
const int = z.number().int();
const nint = int.nullable();
const ms = int.nonnegative().nullable();

// ---- inspect ----------------------------------------------------------------------------------------------

/** What `inspect` is asked. Paths are absolute in the guest. */
export interface InspectRequest {
  v: 1;
  action: "why" | "nodes";
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  /** The engine folder (`~/.fabrik/engines/<v>`): its `smithers` runs the engine's own `why` (0.32). */
  engine_dir: string | null;
  dialect: "modern" | "legacy" | null;
  /** `why`: also run the engine's own `smithers why ID --format json` (0.32 only). */
  engine_why: boolean;
  /** `why`: last events and last log lines to return. */
  events: number;
  log_lines: number;
  /** `why`: lines kept of each attempt's error message. */
  error_lines: number;
  /** `nodes`: at most this many node rows. */
  max_nodes: number;
}

/** One node × iteration, as the guide's schema queries show it (`runs nodes`). */
export const NodeRowSchema = z.object({
  node_id: s(500),
  iteration: int,
  state: s(60),
  label: s(500).nullable(),
  /** Attempts recorded for this node × iteration. */
  attempts: int.nonnegative(),
  last_attempt: nint,
  last_attempt_state: s(60).nullable(),
  last_started_at_ms: ms,
  last_finished_at_ms: ms,
  /** octet_length of the last attempt's response_text / error_json (the values are never read), bytes. */
  response_bytes: int.nonnegative().nullable(),
  error_bytes: int.nonnegative().nullable(),
  /** Sum over all attempts of both sizes, bytes. */
  total_bytes: int.nonnegative().nullable(),
});
export type NodeRow = z.infer<typeof NodeRowSchema>;

/** One attempt of the node `runs why` explains. */
export const AttemptRowSchema = z.object({
  attempt: int,
  state: s(60),
  started_at_ms: ms,
  finished_at_ms: ms,
  /** The error message's first lines (`error_lines`), when the attempt has one. */
  error: s(4000).nullable(),
  response_bytes: int.nonnegative().nullable(),
  error_bytes: int.nonnegative().nullable(),
});
export type AttemptRow = z.infer<typeof AttemptRowSchema>;

export const InspectResultSchema = z.object({
  v: z.literal(1),
  ok: z.boolean(),
  error: s(2000).nullable().default(null),
  now_ms: int.positive(),
  /** The run row: status and error (null when not in the DB). */
  run: z.object({ status: s(60), error: s(4000).nullable(), started_at_ms: ms, finished_at_ms: ms, heartbeat_at_ms: ms }).nullable().default(null),
  schema: z.enum(["modern", "legacy", "unknown"]).nullable().default(null),
  /** `nodes`: every node × iteration in execution order. */
  nodes: z.array(NodeRowSchema).max(5000).default([]),
  nodes_truncated: z.boolean().default(false),
  /** `why`: the node that blocks the run, and why it was picked. */
  focus: z
    .object({
      node_id: s(500),
      iteration: int,
      state: s(60),
      label: s(500).nullable(),
      /** `waiting` (parked on an approval/event/timer), `in-progress`, `failed`, `next` (the first pending node). */
      why: z.enum(["waiting", "in-progress", "failed", "next"]),
    })
    .nullable()
    .default(null),
  attempts: z.array(AttemptRowSchema).max(1000).default([]),
  /** `retries` of the focus node's task (the engine's attempt meta), null when unknown or unlimited. */
  retries: nint.default(null),
  /** Attempts left before the engine gives up (retries + 1 − failed attempts), null when unknown. */
  retries_left: nint.default(null),
  events: z.array(EventFactSchema).max(1000).default([]),
  log_tail: z.array(s(2000)).max(1000).default([]),
  /** The engine's own `smithers why` (0.32), as it answered, or why it did not. */
  engine_why: z
    .object({
      argv: z.array(s(4096)).max(20),
      exit_code: nint,
      /** Its JSON answer's blockers (kind, node, reason, the engine's unblocker), capped. */
      blockers: z
        .array(z.object({ kind: s(60).nullable(), node_id: s(500).nullable(), reason: s(1000).nullable(), unblocker: s(1000).nullable(), signal_name: s(300).nullable() }))
        .max(50),
      summary: s(1000).nullable(),
      error: s(1000).nullable(),
    })
    .nullable()
    .default(null),
});
export type InspectResult = z.infer<typeof InspectResultSchema>;

// ---- control ----------------------------------------------------------------------------------------------

/** What `control` is asked. Paths are absolute in the guest. */
export interface ControlRequest {
  v: 1;
  action: "cancel" | "approve" | "deny" | "signal" | "compact";
  dry_run: boolean;
  host_run_id: number;
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  engine_dir: string;
  dialect: "modern" | "legacy";
  /** cancel: how long the engine may take to stop, ms; `force`: then SIGKILL the run's (proven) processes. */
  grace_ms: number;
  force: boolean;
  /** approve/deny: the gate (null: the one waiting gate); its iteration (null: the waiting one's). */
  node: string | null;
  iteration: number | null;
  note: string | null;
  by: string | null;
  /** signal: its name, its payload (a JSON object's text) and correlation id. */
  signal_name: string | null;
  data_json: string | null;
  correlation: string | null;
  /** compact: bytes kept per value; where the backup goes; backups kept. */
  limit_bytes: number;
  backup_path: string | null;
  keep_backups: number;
}

/** A signal the program sent (only ever to a pid proven to be the run's). */
export const SignalSentSchema = z.object({ pid: int.positive(), role: s(100), signal: s(20), at_ms: int.nonnegative() });

/** An engine verb the program ran in the VM, and what it said. */
export const EngineCallSchema = z.object({
  /** Display form (`smithers cancel fabrik-7 --format json`). */
  argv: z.array(s(4096)).max(40),
  cwd: s(4096),
  exit_code: nint,
  /** Its JSON answer's `status` (`cancel-requested`, `cancelled`, `approved`, `signalled`, …), when it printed one. */
  status: s(100).nullable(),
  /** Last lines of its stderr/stdout when it failed. */
  output_tail: s(2000).nullable(),
});
export type EngineCall = z.infer<typeof EngineCallSchema>;

export const ControlResultSchema = z.object({
  v: z.literal(1),
  action: z.enum(["cancel", "approve", "deny", "signal", "compact"]),
  ok: z.boolean(),
  dry_run: z.boolean(),
  refused: z.boolean(),
  /** Where it stopped: request, check, engine, wait, kill, backup, fix, done. */
  stage: s(40),
  reasons: z.array(z.object({ code: s(60), message: s(1000), hint: s(1000).nullable().default(null) })).max(50).default([]),
  checks: z.array(z.object({ name: s(200), ok: z.boolean(), detail: s(1000).nullable().default(null) })).max(100).default([]),
  /** The run's engine status before and after. */
  status_before: s(60).nullable().default(null),
  status_after: s(60).nullable().default(null),
  /** The node decided (approve/deny) and its iteration. */
  node: s(500).nullable().default(null),
  iteration: nint.default(null),
  engine_calls: z.array(EngineCallSchema).max(10).default([]),
  signals: z.array(SignalSentSchema).max(20).default([]),
  /** The run's processes at the end (pid, alive, identity). */
  processes: z.array(PidFactSchema.extend({ role: s(100) })).max(20).default([]),
  /** exit_code at the end, and whether fabrik wrote it (the launcher was gone). */
  exit_code: nint.default(null),
  exit_code_written: z.boolean().default(false),
  /** compact: the verified backup and what the truncation did. */
  backup: BackupResultSchema.nullable().default(null),
  fix: FixResultSchema.nullable().default(null),
  /** compact dry-run: what would change. */
  oversized: z.object({ values: int, max_response_text_bytes: nint, max_error_json_bytes: nint, db_bytes: int, wal_bytes: int }).nullable().default(null),
  error: s(2000).nullable().default(null),
  now_ms: int.positive(),
});
export type ControlResult = z.infer<typeof ControlResultSchema>;
