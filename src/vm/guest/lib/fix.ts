/**
 * The guide's Issue 2 fix, shared by `run resume --fix` (src/vm/guest/resume.ts) and `run compact`
 * (src/vm/guest/control.ts): truncate ONE run's oversized `response_text` / `error_json` values to their tail, in
 * one transaction, then VACUUM and checkpoint the WAL. The caller has taken (and verified) a backup first.
 *
 * Every value it writes is at most `limit` bytes, marker included, so a value it shortened is never above the
 * row-size threshold afterwards (a limit of 102 400 once produced 102 440-byte values, which kept the
 * OVERSIZED_VALUES diagnosis firing).
 */
import type { Database } from "bun:sqlite";
import { columnsOf } from "./db.js";
import { statSafe } from "./files.js";
import { num, truncatedValue } from "./text.js";

/** What the fix did (the `fix` object of the resume/compact answers). Sizes in bytes. */
export interface FixResult {
  limit_bytes: number;
  rows: number;
  values: number;
  value_bytes_before: number;
  value_bytes_after: number;
  file_bytes_before: { db_bytes: number; wal_bytes: number };
  file_bytes_after: { db_bytes: number; wal_bytes: number } | null;
}

/** Sizes of a DB's main file and WAL, bytes (0 when absent). */
export function fileSizes(p: string): { db_bytes: number; wal_bytes: number } {
  return { db_bytes: statSafe(p)?.size ?? 0, wal_bytes: statSafe(p + "-wal")?.size ?? 0 };
}

/**
 * Truncate run `runId`'s values over `limit` bytes (keep the tail), in one `BEGIN IMMEDIATE` transaction, then
 * VACUUM and `wal_checkpoint(TRUNCATE)`. `db` is a read-write connection to `dbPath`.
 * @throws the SQLite error (the transaction is rolled back; VACUUM is not reached).
 */
export function truncateOversized(db: Database, dbPath: string, runId: string, limit: number): FixResult {
  const att = columnsOf(db, "_smithers_attempts");
  const f: FixResult = { limit_bytes: limit, rows: 0, values: 0, value_bytes_before: 0, value_bytes_after: 0, file_bytes_before: fileSizes(dbPath), file_bytes_after: null };
  const cols = (["response_text", "error_json"] as const).filter((c) => att.has(c));
  // One IMMEDIATE transaction: bun:sqlite commits it, or rolls it back and rethrows.
  db.transaction(() => {
    for (const col of cols) {
      const rows = db
        .query<Record<string, unknown>>(`SELECT node_id, iteration, attempt, octet_length("${col}") AS n FROM _smithers_attempts WHERE run_id = ? AND octet_length("${col}") > ?`)
        .all(runId, limit);
      for (const r of rows) {
        const key = [runId, r.node_id, r.iteration, r.attempt] as const;
        const tail = db
          .query<{ t: Uint8Array | null }>(`SELECT substr(CAST("${col}" AS BLOB), -?) AS t FROM _smithers_attempts WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?`)
          .get(limit, ...key)?.t;
        const total = num(r.n) ?? 0;
        const value = truncatedValue(col, tail ?? new Uint8Array(0), total, limit);
        db.query(`UPDATE _smithers_attempts SET "${col}" = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?`).run(value, ...key);
        f.values++;
        f.value_bytes_before += total;
        f.value_bytes_after += Buffer.byteLength(value);
      }
      f.rows += rows.length;
    }
  }).immediate();
  db.exec("VACUUM");
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  f.file_bytes_after = fileSizes(dbPath);
  return f;
}
