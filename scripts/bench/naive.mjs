/**
 * The naive baseline: what a user following the guide (shared/reference/debugging-smithers-runs.md) does by
 * hand to learn one run's state — one `limactl shell` per field, in sequence, each answer read before the next
 * question (the pid must be read before it can be checked). Real calls against the same VM and run as fabrik's.
 *
 *   1 cat heartbeat.json            2 cat smithers.pid          3 kill -0 <pid>
 *   4 cat exit_code                 5 python3: run status       6 python3: node counts
 *   7 python3: in-progress nodes    8 tail -20 reports/smithers.log
 *   9 ps aux | grep -E 'smithers|bun' | grep -v grep   (the guide's process check)
 *
 * The python3 snippets travel on stdin (`limactl shell VM -- python3 - DB RUN_ID`, the guide's heredoc) and open
 * the DB read-only (`mode=ro` URI) so the baseline does not checkpoint a WAL that fabrik's probe later reads.
 */
import { LIMACTL, run } from "./lib.mjs";

const PY_OPEN = `import sqlite3, sys
db, run_id = sys.argv[1], sys.argv[2]
conn = sqlite3.connect("file:" + db + "?mode=ro", uri=True)
c = conn.cursor()
`;

const PY_RUN = `${PY_OPEN}c.execute("SELECT run_id, status FROM _smithers_runs WHERE run_id = ? ORDER BY started_at_ms DESC LIMIT 1", (run_id,))
print("Run:", c.fetchone())
conn.close()
`;

const PY_COUNTS = `${PY_OPEN}c.execute("SELECT COUNT(*), SUM(CASE WHEN state='finished' THEN 1 ELSE 0 END) FROM _smithers_nodes WHERE run_id = ?", (run_id,))
print("Progress:", c.fetchone())
conn.close()
`;

const PY_IN_PROGRESS = `${PY_OPEN}c.execute("SELECT node_id, state, last_attempt FROM _smithers_nodes WHERE run_id = ? AND state='in-progress' ORDER BY updated_at_ms DESC", (run_id,))
print("Stuck tasks:", c.fetchall())
conn.close()
`;

/**
 * Ask one run's state field by field.
 * @param env environment for limactl (LIMA_HOME, latency, call log).
 * @param vm VM name.
 * @param r `{ control_dir, db_path, smithers_run_id }`.
 * @returns `{ calls, ms, fields }` — `ms` is the wall time of the whole sequence.
 */
export async function naiveRunStatus(env, vm, r) {
  const t0 = performance.now();
  let calls = 0;
  const sh = async (argv, input) => {
    calls++;
    const res = await run(LIMACTL, ["shell", vm, "--", ...argv], { env, input, timeoutMs: 60_000 });
    return res;
  };
  const cd = r.control_dir;
  const fields = {};
  fields.heartbeat = (await sh(["cat", `${cd}/heartbeat.json`])).stdout.trim();
  const pidText = (await sh(["cat", `${cd}/smithers.pid`])).stdout.trim();
  let pid = /^\d+$/.test(pidText) ? pidText : undefined;
  if (!pid) {
    try {
      pid = String(JSON.parse(fields.heartbeat).child_pid ?? "");
    } catch {
      pid = undefined;
    }
  }
  fields.smithers_alive = (await sh(["kill", "-0", pid || "0"])).code === 0;
  const exit = await sh(["cat", `${cd}/exit_code`]);
  fields.exit_code = exit.code === 0 ? exit.stdout.trim() : "Still running";
  fields.run = (await sh(["python3", "-", r.db_path, r.smithers_run_id], PY_RUN)).stdout.trim();
  fields.progress = (await sh(["python3", "-", r.db_path, r.smithers_run_id], PY_COUNTS)).stdout.trim();
  fields.in_progress = (await sh(["python3", "-", r.db_path, r.smithers_run_id], PY_IN_PROGRESS)).stdout.trim();
  fields.log_tail = (await sh(["tail", "-20", `${cd}/reports/smithers.log`])).stdout;
  fields.processes = (await sh(["sh", "-c", "ps aux | grep -E 'smithers|bun' | grep -v grep"])).stdout;
  return { calls, ms: performance.now() - t0, fields };
}

/** Calls {@link naiveRunStatus} makes per run (fixed). */
export const NAIVE_CALLS_PER_RUN = 9;
