/**
 * The baselines a user would really script, each making the same number of remote calls as fabrik (or the same
 * probes), run against the same VMs, runs and injected latency:
 *
 * - {@link bashRunStatus}: ONE `limactl shell VM -- bash -c SCRIPT` that gathers what the guide's manual steps
 *   gather for one run (heartbeat.json, smithers.pid + `kill -0`, exit_code, the run's status, node counts and
 *   in-progress nodes through python3's sqlite3, the log tail, the process list) — fabrik's `runs show`;
 * - {@link pythonFleetStatus}: ONE `limactl shell VM -- python3 -c SCRIPT RUNS_JSON` per VM, all VMs in parallel,
 *   each reporting every run of its VM (heartbeat, pid files alive, exit_code, run status, node counts,
 *   in-progress nodes, last failed attempt) — fabrik's `runs list` over a fleet;
 * - {@link xargsLocalProbes}: fabrik's own guest probe (bun + the installed probe.js), one per local VM with that
 *   VM's request on stdin, run by `xargs -P16` — fabrik's `runs list` over local VMs, minus fabrik.
 *
 * Every python3 connection opens the DB read-only (`mode=ro` URI), like the probe, so no baseline checkpoints a WAL
 * that the next measurement reads.
 */
import fs from "node:fs";
import path from "node:path";
import { LIMACTL, run } from "./lib.mjs";

/** The bash program of {@link bashRunStatus}: `bash -c BASH_STATUS run-status CONTROL_DIR DB RUN_ID`. */
export const BASH_STATUS = `cd_="$1" db="$2" run="$3"
echo "== heartbeat"; cat "$cd_/heartbeat.json" 2>/dev/null || echo "missing"
pid=$(cat "$cd_/smithers.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "smithers: alive ($pid)"; else echo "smithers: not running (\${pid:-no pid file})"; fi
echo "== exit_code"; cat "$cd_/exit_code" 2>/dev/null || echo "Still running"
echo "== database"
python3 - "$db" "$run" <<'PY'
import sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
c = conn.cursor()
c.execute("SELECT run_id, status FROM _smithers_runs WHERE run_id = ? ORDER BY started_at_ms DESC LIMIT 1", (sys.argv[2],))
print("Run:", c.fetchone())
c.execute("SELECT COUNT(*), SUM(CASE WHEN state='finished' THEN 1 ELSE 0 END) FROM _smithers_nodes WHERE run_id = ?", (sys.argv[2],))
print("Progress:", c.fetchone())
c.execute("SELECT node_id, state, last_attempt FROM _smithers_nodes WHERE run_id = ? AND state='in-progress'", (sys.argv[2],))
print("Stuck tasks:", c.fetchall())
conn.close()
PY
echo "== log"; tail -20 "$cd_/reports/smithers.log" 2>/dev/null
echo "== processes"; ps aux | grep -E 'smithers|bun' | grep -v grep || true
`;

/**
 * One run's state in ONE call (see {@link BASH_STATUS}).
 * @param r `{ control_dir, db_path, smithers_run_id }` of the run.
 * @returns `{ ms, stdout }`; throws when the call fails or prints no run row.
 */
export async function bashRunStatus(env, vm, r) {
  const res = await run(LIMACTL, ["shell", vm, "--", "bash", "-c", BASH_STATUS, "run-status", r.control_dir, r.db_path, r.smithers_run_id], { env, timeoutMs: 60_000 });
  if (res.code !== 0 || !/^Run: \('/m.test(res.stdout)) throw new Error(`bash baseline on ${vm} exited ${res.code}: ${(res.stderr || res.stdout).slice(-400)}`);
  return { ms: res.ms, stdout: res.stdout };
}

/** The python3 program of {@link pythonFleetStatus}: `python3 -c PY_FLEET RUNS_JSON` → one JSON document. */
export const PY_FLEET = `import json, os, sqlite3, sys
def text(p):
    try:
        with open(p) as f: return f.read().strip()
    except OSError: return None
def alive(p):
    t = text(p)
    if not t or not t.isdigit(): return None
    try:
        os.kill(int(t), 0); return True
    except ProcessLookupError: return False
    except PermissionError: return True
out = []
for r in json.loads(sys.argv[1]):
    cd = r["control_dir"]; row = {"key": r["key"]}
    hb = text(cd + "/heartbeat.json")
    try: row["heartbeat"] = json.loads(hb) if hb else None
    except ValueError: row["heartbeat"] = "garbage"
    row["launcher_alive"] = alive(cd + "/launcher.pid"); row["smithers_alive"] = alive(cd + "/smithers.pid"); row["engine_alive"] = alive(cd + "/engine.pid")
    row["exit_code"] = text(cd + "/exit_code")
    try:
        conn = sqlite3.connect("file:" + r["db_path"] + "?mode=ro", uri=True); c = conn.cursor(); rid = r["smithers_run_id"]
        c.execute("SELECT status FROM _smithers_runs WHERE run_id = ?", (rid,)); s = c.fetchone(); row["run_status"] = s[0] if s else None
        c.execute("SELECT state, COUNT(*) FROM _smithers_nodes WHERE run_id = ? GROUP BY state", (rid,)); row["nodes"] = dict(c.fetchall())
        c.execute("SELECT node_id, last_attempt FROM _smithers_nodes WHERE run_id = ? AND state = 'in-progress'", (rid,)); row["in_progress"] = c.fetchall()
        c.execute("SELECT node_id, attempt, substr(error_json, 1, 500) FROM _smithers_attempts WHERE run_id = ? AND state = 'failed' ORDER BY finished_at_ms DESC LIMIT 1", (rid,)); row["last_failed"] = c.fetchone()
        conn.close()
    except sqlite3.Error as e: row["db_error"] = str(e)
    out.append(row)
print(json.dumps(out))
`;

/**
 * Every run of every VM, one python3 call per VM, all VMs at once.
 * @param byVm Map vm → runs `{ id, control_dir, db_path, smithers_run_id }`.
 * @returns `{ ms, rows }` (rows: runs reported); throws when a call fails or reports the wrong number of runs.
 */
export async function pythonFleetStatus(env, byVm) {
  const t0 = performance.now();
  const counts = await Promise.all(
    [...byVm].map(async ([vm, runs]) => {
      const arg = JSON.stringify(runs.map((r) => ({ key: String(r.id), control_dir: r.control_dir, db_path: r.db_path, smithers_run_id: r.smithers_run_id })));
      const res = await run(LIMACTL, ["shell", vm, "--", "python3", "-c", PY_FLEET, arg], { env, timeoutMs: 60_000 });
      if (res.code !== 0) throw new Error(`python3 baseline on ${vm} exited ${res.code}: ${res.stderr.slice(-400)}`);
      const rows = JSON.parse(res.stdout.trim().split("\n").at(-1));
      if (rows.length !== runs.length || rows.some((x) => x.db_error || !x.run_status)) throw new Error(`python3 baseline on ${vm}: ${res.stdout.slice(0, 400)}`);
      return rows.length;
    }),
  );
  return { ms: performance.now() - t0, rows: counts.reduce((a, b) => a + b, 0) };
}

/**
 * The same probes fabrik's `runs list` makes over local VMs, run by `xargs -P16`: per VM, `bun <its installed
 * probe.js>` with HOME set to the VM's guest home and that VM's request (the JSON fabrik sends, from
 * `requests`) on stdin. Each answer goes to a file and is checked afterwards.
 * @param jobs `[{ vm, home, probeJs, request }]` (request: the JSON object).
 * @returns `{ ms, runs }` (runs: run results the answers hold).
 */
export async function xargsLocalProbes(bun, jobs, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const lines = jobs.map((j, i) => {
    const req = path.join(dir, `${i}.req.json`);
    fs.writeFileSync(req, JSON.stringify(j.request));
    const fields = [j.home, j.probeJs, req, path.join(dir, `${i}.out.json`)];
    if (fields.some((f) => /\s/.test(f))) throw new Error(`xargs baseline: a path with a blank: ${fields.join(" ")}`);
    return fields.join(" ");
  });
  const list = path.join(dir, "jobs.txt");
  fs.writeFileSync(list, lines.join("\n") + "\n");
  // One probe per line "HOME PROBE_JS REQUEST ANSWER": HOME=<home> bun <probe.js> < <request> > <answer>.
  const res = await run("xargs", ["-P16", "-L1", "-a", list, "sh", "-c", 'HOME="$1" exec "$0" "$2" < "$3" > "$4"', bun], { timeoutMs: 120_000 });
  if (res.code !== 0) throw new Error(`xargs baseline exited ${res.code}: ${res.stderr.slice(-400)}`);
  let runs = 0;
  for (let i = 0; i < jobs.length; i++) {
    const ans = JSON.parse(fs.readFileSync(path.join(dir, `${i}.out.json`), "utf8"));
    runs += ans.runs.filter((r) => r.db?.run).length;
  }
  return { ms: res.ms, runs };
}
