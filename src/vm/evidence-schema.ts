/**
 * The evidence program's wire format (`src/vm/guest/evidence.ts`, run by `fabrik runs evidence`,
 * src/fabrik/evidence-service.ts): the request on stdin ({@link EvidenceRequestWire}) and the one JSON line it
 * prints ({@link EvidenceResultSchema}). The VM is untrusted: the answer is validated with zod, strings capped.
 * Units: sizes in bytes.
 */
import { z } from "zod";

/** What the evidence program reads on stdin. Paths are absolute in the guest. */
export interface EvidenceRequestWire {
  v: 1;
  /** The run's control dir (run.sh, heartbeat.json, pid files, the log), or null for a bare-DB run. */
  control_dir: string | null;
  /** The run's Smithers DB, or null when unknown. */
  db_path: string | null;
  smithers_run_id: string;
  /** A NEW folder under `$HOME/.fabrik/tmp/` (`evidence-…`) the program writes into (the host fetches and removes it). */
  out_dir: string;
  /** Lines kept of the log's end. */
  log_lines: number;
  /** Bytes read at most from the log's end. */
  log_max_bytes: number;
  /** The snapshot's budget: above it big values are cut to `truncate_value_bytes`, and if it is still above, it is left out. */
  snapshot_max_bytes: number;
  /** When cutting: bytes kept of each big value (its end). */
  truncate_value_bytes: number;
  /** Values to mask wherever they appear (the run input's secrets, the host's secret environment). Never logged. */
  known_secrets: string[];
}

const s = (max: number) => z.string().max(max);
const n = z.number().int().nonnegative();

/** One file the program wrote into `out_dir`. */
export const EvidenceFileSchema = z.object({
  /** Path relative to `out_dir` (`files/run.sh`, `log-tail.txt`, `snapshot.db`). */
  name: s(300),
  /** Where it came from in the guest. */
  source: s(4096),
  bytes: n,
  /** What was cut to fit, or null. */
  cut: s(500).nullable(),
});
export type EvidenceFile = z.infer<typeof EvidenceFileSchema>;

export const EvidenceResultSchema = z.object({
  v: z.literal(1),
  ok: z.boolean(),
  error: s(2000).nullable(),
  files: z.array(EvidenceFileSchema).max(200),
  /** Control-dir files that were looked for but are absent. */
  missing: z.array(s(300)).max(100),
  snapshot: z
    .object({
      name: s(300).nullable(),
      source_db: s(4096),
      source_db_bytes: n.nullable(),
      source_wal_bytes: n.nullable(),
      /** Size of the (masked, vacuumed) snapshot; null when it was left out. */
      bytes: n.nullable(),
      /** Row counts per table, read from the snapshot (before anything was cut). */
      tables: z.record(s(300), n),
      integrity: s(500).nullable(),
      cut: s(500).nullable(),
    })
    .nullable(),
  /** What was masked, by rule (`known`, `key`, a token shape's name). */
  masked: z.record(s(60), n),
  /** How many secret values the guest found in environments (its own, the run's live processes). */
  env_secrets: n,
  runtime: z.object({ bun: s(100), sqlite: s(40) }),
});
export type EvidenceResult = z.infer<typeof EvidenceResultSchema>;
