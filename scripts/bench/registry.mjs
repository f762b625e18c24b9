/**
 * Registries of many cached runs for the list benches: fabrik creates the file (its own schema, through
 * `fabrik runs list --no-live`), then N rows are inserted in one transaction with better-sqlite3. Rows look like
 * what `runs import` and live checks leave: 50 VMs, paths as fabrik lays them out, every status, a
 * `last_check_json` summary whose values vary per run (task, progress, DB size, a failure for failed runs).
 */
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { REPO, fabrik } from "./lib.mjs";

const require = createRequire(path.join(REPO, "package.json"));

/** The columns `runs list` reads (src/fabrik/registry.ts RUN_LIST_COLUMNS), for the sqlite3 baseline. */
export const LIST_COLUMNS =
  "id, vm, driver, label, control_dir, workflow_path, smithers_run_id, smithers_db_path, engine_version, status, exit_code, failure_reason, " +
  "created_at_ms, started_at_ms, finished_at_ms, last_check_at_ms, last_check_json, resume_count, launcher_pid, engine_pid";

/** The query `runs list --no-live --limit N` runs, for the sqlite3 baseline (same rows, same order). */
export const listSql = (limit) => `SELECT ${LIST_COLUMNS} FROM runs ORDER BY created_at_ms DESC, id DESC LIMIT ${limit}`;

const STATUSES = ["done", "failed", "running", "orphaned", "stale", "cancelled", "waiting-approval", "done", "done", "failed"];

/**
 * A FABRIK_HOME at `home` whose registry holds `n` runs. Returns the registry's path.
 * @throws when fabrik cannot create the registry.
 */
export async function makeRegistry(home, n, env) {
  fs.mkdirSync(home, { recursive: true });
  const r = await fabrik(["runs", "list", "--no-live"], { env: { ...env, FABRIK_HOME: home } });
  if (r.code !== 0) throw new Error(`fabrik runs list --no-live (creating the registry) exited ${r.code}: ${r.stderr.slice(-400)}`);
  const file = path.join(home, "registry.db");
  const Database = require("better-sqlite3");
  const db = new Database(file);
  const ins = db.prepare(
    `INSERT INTO runs (vm, driver, label, control_dir, workflow_path, smithers_run_id, smithers_db_path, engine_version, status, exit_code,
       failure_reason, created_at_ms, started_at_ms, finished_at_ms, updated_at_ms, last_check_at_ms, last_check_status, last_check_json,
       resume_count, launcher_pid, engine_pid, imported)
     VALUES (?, 'lima', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
  );
  const t0 = Date.now() - n * 60_000;
  db.transaction(() => {
    for (let i = 1; i <= n; i++) {
      const vm = `vm${String(i % 50).padStart(2, "0")}`;
      const status = STATUSES[i % STATUSES.length];
      const cd = `/home/ralph.guest/work/${vm}/.runs/${i}-seq`;
      const created = t0 + i * 60_000;
      const total = 6 + (i % 180);
      const finished = status === "done" ? total : i % total;
      const failed = status === "failed" ? 1 : 0;
      const summary = {
        engine_run_status: status === "done" ? "finished" : status === "orphaned" || status === "stale" ? "running" : status === "waiting-approval" ? "waiting-approval" : status,
        current_task: status === "done" ? null : `${(i % 40) + 1}:impl`,
        progress: { total, finished, failed, in_progress: status === "running" ? 1 : 0, pending: total - finished - failed, skipped: 0 },
        db_size_bytes: 40_960 + (i % 997) * 4096,
        last_failed: failed ? { node_id: `${i % 40}:impl`, iteration: 0, attempt: 2, error: `step ${i % 40} failed: exit code 1` } : null,
        effective_status: status,
        exit_code: status === "done" ? 0 : failed ? 1 : null,
        tool: "bun",
      };
      ins.run(
        vm,
        i % 7 === 0 ? `nightly ${i}` : null,
        cd,
        `/home/ralph.guest/work/${vm}/workflows/seq.tsx`,
        `fabrik-${i}`,
        `${cd}/.smithers/run-${i}.db`,
        i % 3 === 0 ? "0.5.0" : "0.32.0",
        status,
        summary.exit_code,
        failed ? `step ${i % 40} failed: exit code 1` : null,
        created,
        created + 1000,
        status === "done" || failed ? created + 3_600_000 : null,
        created + 3_700_000,
        created + 3_700_000,
        status,
        JSON.stringify(summary),
        i % 5 === 0 ? 1 : 0,
        100_000 + (i % 30_000),
        status === "running" ? 100_002 + (i % 30_000) : null,
      );
    }
  })();
  db.close();
  return file;
}
