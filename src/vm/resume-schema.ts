/**
 * The resume program's wire format (`src/vm/guest/resume.ts`, run by `runGuestResume` in
 * src/fabrik/resume-service.ts): the request on stdin ({@link ResumeRequestWire}) and the one JSON line it
 * prints ({@link GuestResultSchema}). The VM is untrusted, so the host validates the answer with zod; string
 * lengths are capped. Units: times epoch ms (VM clock), sizes bytes.
 */
import { z } from "zod";
import { RESUME_MODES, type ResumeMode } from "../core/resume-rules.js";

/** The request the resume program reads on stdin. Paths are absolute in the guest. */
export interface ResumeRequestWire {
  v: 1;
  /** Check only; change nothing (must match the wrapper's mode argument). */
  dry_run: boolean;
  host_run_id: number;
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  engine_dir: string;
  dialect: "modern" | "legacy";
  /** Override a fresh engine heartbeat (never a living process). */
  force: boolean;
  /** Truncate this run's oversized response_text/error_json values first, then VACUUM. */
  fix: boolean;
  /** `--fix`: bytes kept per value (the tail). */
  fix_limit_bytes: number;
  /** The configured engine heartbeat threshold, ms (inclusive: an age equal to it is fresh). */
  engine_heartbeat_stale_ms: number;
  /** The mode the host planned; a different one in the VM refuses with RUN_CHANGED. */
  expected_mode: ResumeMode | null;
  /** The node the host plans `retry-task` for (0.32 failed run with one failed node), or null. */
  retry_node: string | null;
  /** `<control_dir>/backups/run-<host id>-<stamp>.db`. */
  backup_path: string;
  keep_backups: number;
  /** `<control_dir>/resume-<n>.sh` (the VM takes the next free n). */
  script_path: string;
  /** The script text (required unless dry_run). */
  script: string | null;
  /** How long to wait for the resumed launcher's pids, ms (≤ 60000). */
  start_wait_ms: number;
}

const s = (max: number) => z.string().max(max);
const n = z.number();
const nn = n.nullable().default(null);
const ResetItemSchema = z.object({ node_id: s(500), iteration: nn, attempt: nn.optional(), from: s(60), to: s(60) });

const count = z.number().int().nonnegative();

/** A verified backup the guest made before changing a run's DB (resume `--fix`, `run compact`), bytes. */
export const BackupResultSchema = z.object({ path: s(4096), size_bytes: count, kept: z.array(s(4096)).max(100), removed: z.array(s(4096)).max(100) });

/** What truncating oversized values did (resume `--fix`, `run compact`): counts and bytes before and after. */
export const FixResultSchema = z.object({
  limit_bytes: count,
  rows: count,
  values: count,
  value_bytes_before: count,
  value_bytes_after: count,
  file_bytes_before: z.object({ db_bytes: count, wal_bytes: count }),
  file_bytes_after: z.object({ db_bytes: count, wal_bytes: count }).nullable(),
});

/** What the resume program prints (one JSON line). Unknown keys are dropped; missing ones default. */
export const GuestResultSchema = z.object({
  v: z.literal(1),
  ok: z.boolean(),
  dry_run: z.boolean(),
  refused: z.boolean(),
  stage: s(40),
  reasons: z.array(z.object({ code: s(60), message: s(1000), hint: s(1000).nullable().default(null) })).max(100).default([]),
  checks: z.array(z.object({ name: s(200), ok: z.boolean(), detail: s(1000).nullable().default(null) })).max(200).default([]),
  mode: z.enum(RESUME_MODES as [ResumeMode, ...ResumeMode[]]).nullable().default(null),
  retry_node: s(500).nullable().default(null),
  progress: z.object({ finished: n, total: n, by_state: z.record(s(60), n) }).nullable().default(null),
  reset: z
    .object({
      attempts: z.array(ResetItemSchema).max(100_000),
      nodes: z.array(ResetItemSchema).max(100_000),
      run: z.object({ heartbeat_at_ms: nn, runtime_owner_id: s(300).nullable().default(null) }).nullable().default(null),
      by_engine: s(500).nullable().default(null),
      applied: z.boolean(),
      counts: z.object({ attempts_cancelled: n, nodes_pending: n, run_cleared: n }).nullable().default(null),
    })
    .nullable()
    .default(null),
  backup: BackupResultSchema.nullable().default(null),
  /** Files of a failed or interrupted backup the VM could not remove (a failed backup removes its copy). */
  leftovers: z.array(s(4096)).max(100).default([]),
  fix: FixResultSchema.nullable().default(null),
  script: z.object({ path: s(4096), bytes: n }).nullable().default(null),
  pids: z.object({ launcher_pid: n, child_pid: n }).nullable().default(null),
  previous_files: z.record(s(40), s(100)).nullable().default(null),
  error: s(2000).nullable().default(null),
  now_ms: n.optional(),
});
export type GuestResult = z.infer<typeof GuestResultSchema>;
