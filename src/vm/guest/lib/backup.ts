/**
 * A verified, consistent copy of a run's DB before anything changes it (`run compact`; the same method as the
 * resume's backup step): `VACUUM INTO` through the open connection (it includes what is in the WAL), then the copy
 * is opened read-only and must hold the run; only the newest `keep` backups of the run are kept.
 */
import fs from "node:fs";
import path from "node:path";
import { Database, constants } from "bun:sqlite";
import { sqliteUri } from "./db.js";
import { num } from "./text.js";

/** What a backup produced. Sizes in bytes. */
export interface BackupResult {
  path: string;
  size_bytes: number;
  kept: string[];
  removed: string[];
}

/**
 * Back `db` up into `backupPath` (`<control>/backups/run-<host id>-<stamp>.db`; an existing file is refused by
 * VACUUM INTO), verify it holds run `runId`, and remove the oldest `run-<hostRunId>-*.db` beyond `keep`.
 * @throws when the copy fails or does not hold the run (nothing was changed then).
 */
export function backupRunDb(db: Database, backupPath: string, runId: string, hostRunId: number, keep: number): BackupResult {
  const dir = path.dirname(backupPath);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  db.query("VACUUM INTO ?").run(backupPath);
  const size = fs.statSync(backupPath).size;
  const chk = new Database(`${sqliteUri(backupPath)}?mode=ro&immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
  let n: unknown;
  try {
    n = chk.query<{ n: unknown }>("SELECT count(*) AS n FROM _smithers_runs WHERE run_id = ?").get(runId)?.n;
  } finally {
    chk.close();
  }
  if (num(n) !== 1) throw new Error(`the backup ${backupPath} does not hold run ${runId}`);
  const prefix = `run-${hostRunId}-`;
  const all = fs.readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".db")).sort();
  const removed: string[] = [];
  for (const f of all.slice(0, Math.max(0, all.length - keep))) {
    try {
      fs.rmSync(path.join(dir, f));
      removed.push(path.join(dir, f));
    } catch {
      /* left in place */
    }
  }
  return { path: backupPath, size_bytes: size, kept: all.slice(-keep).map((f) => path.join(dir, f)), removed };
}
