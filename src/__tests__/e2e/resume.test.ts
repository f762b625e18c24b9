/**
 * `fabrik run resume` end to end: the REAL engines (0.32.0 fully, 0.5.0 for the core kill→resume case) in a
 * stand-in Lima VM, through the built CLI. Engines are killed INSIDE the VM (`fabrik vm shell … kill -9`),
 * DB state is read inside the VM with the engine's own bun, and every refusal is checked to change nothing
 * (DB files hashed before and after).
 *
 * The engine heartbeat threshold is lowered to 2 s in the test config (thresholds.engine_heartbeat_stale_ms)
 * so a freshly killed run need not wait the real 30 s; the fresh-heartbeat rule itself is unit-tested.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { fabrik, fabrikAsync, json, makeTestEnv, standinUnavailable, stopAllStandinVms, waitFor, type CliResult, type TestEnv } from "../helpers/cli.js";

const skip = standinUnavailable();
const VM = "rs";
const HOME = "/home/root.guest";

interface LaunchJson {
  id: number;
  control_dir: string;
  db_path: string;
  smithers_run_id: string;
  engine_version: string;
}
interface ShowJson {
  effective_status: string;
  status: string;
  resume_count: number;
  current_task: string | null;
  failure_reason: string | null;
}

/** Wait (inside the VM) until node `$5` of run `$4` has an in-progress attempt in DB `$3`, then send signal `$6`. */
const SIGNAL_AT_TASK = String.raw`cd "$1" || exit 1
B="$HOME/.fabrik/engines/$2/.runtime/node_modules/.bin/bun"
s=""
for i in $(seq 1 300); do
  s=$("$B" -e 'const {Database}=require("bun:sqlite"); try { const d=new Database(process.argv[1],{readonly:true}); const r=d.query("select state from _smithers_attempts where run_id=? and node_id=? order by attempt desc").get(process.argv[2],process.argv[3]); console.log(r?r.state:""); } catch { console.log(""); }' "$3" "$4" "$5" 2>/dev/null)
  [ "$s" = in-progress ] && break
  sleep 0.1
done
[ "$s" = in-progress ] || { echo "never saw $5 in-progress" >&2; exit 1; }
if [ "$6" = STOP ]; then
  kill -STOP $(cat smithers.pid) || exit 1
else
  # The launcher runs in its own session (setsid): its process group holds the engine and its helpers.
  kill -9 -- -$(cat launcher.pid) 2>/dev/null
  kill -9 $(cat launcher.pid) $(cat smithers.pid) $(cat engine.pid 2>/dev/null) 2>/dev/null
fi
echo done
`;

/** The run rows and this run's attempts, read inside the VM with the engine's bun (read-only). */
const DB_STATE = `const { Database } = require("bun:sqlite");
const d = new Database(process.argv[1], { readonly: true });
const out = {
  runs: d.query("select run_id, status from _smithers_runs order by run_id").all(),
  attempts: d.query("select node_id, attempt, state from _smithers_attempts where run_id = ? order by node_id, attempt").all(process.argv[2]),
};
console.log(JSON.stringify(out));`;

/** A logical dump hash of a DB: schema + every row of every table in a total order (what "the same data" means). */
const DUMP_HASH = `const { Database } = require("bun:sqlite");
const { createHash } = require("node:crypto");
const d = new Database(process.argv[1], { readonly: true }); // VACUUM INTO copies are not WAL: nothing is created
const h = createHash("sha256");
let rows = 0;
for (const t of d.query("select name, sql from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name").all()) {
  h.update(t.name + "\\0" + t.sql + "\\0");
  const n = d.query("select count(*) as n from pragma_table_info(?)").get(t.name).n;
  const order = Array.from({ length: n }, (_, i) => i + 1).join(", ");
  for (const r of d.query('select * from "' + t.name.replace(/"/g, '""') + '" order by ' + order).values()) {
    h.update(JSON.stringify(r, (k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : typeof v === "bigint" ? String(v) : v)) + "\\n");
    rows++;
  }
}
console.log(JSON.stringify({ hash: h.digest("hex"), rows }));`;

describe.skipIf(skip)("run resume (real engines in a stand-in Lima VM)", () => {
  let t: TestEnv;
  const cli = (args: string[]): CliResult => fabrik(t, args, { timeoutMs: 180_000 });
  const sh = (script: string, ...args: string[]): CliResult => cli(["vm", "shell", VM, "--", "bash", "-c", script, "fabrik-test", ...args]);
  const bunIn = (version: string) => `${HOME}/.fabrik/engines/${version}/.runtime/node_modules/.bin/bun`;
  const bunEval = (version: string, code: string, ...args: string[]): string => {
    const r = cli(["vm", "shell", VM, "--", bunIn(version), "-e", code, ...args]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  const launch = (workflow: string, input: object, engine = "0.32.0"): LaunchJson => {
    const r = cli(["run", "--vm", VM, "--engine", engine, "--workflow", workflow, "--input", JSON.stringify(input), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    return json<LaunchJson>(r);
  };
  const signalAt = (run: LaunchJson, task: string, sig: "STOP" | "KILL") => {
    const r = sh(SIGNAL_AT_TASK, run.control_dir, run.engine_version, run.db_path, run.smithers_run_id, task, sig);
    expect(r.code, r.stderr).toBe(0);
  };
  const show = (id: number, live = true): ShowJson => json<ShowJson>(cli(["runs", "show", "--id", String(id), "--json", ...(live ? [] : ["--no-live"])]));
  const waitStatus = (id: number, status: string, timeoutMs = 90_000) =>
    waitFor(() => show(id).effective_status === status, { timeoutMs, intervalMs: 500, what: `run ${id} to be ${status}` });
  const dbState = (run: LaunchJson) =>
    JSON.parse(bunEval(run.engine_version, DB_STATE, run.db_path, run.smithers_run_id)) as { runs: { run_id: string; status: string }[]; attempts: { node_id: string; attempt: number; state: string }[] };
  const attemptsByNode = (run: LaunchJson): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const a of dbState(run).attempts) (out[a.node_id] ??= []).push(a.state);
    return out;
  };
  /**
   * sha256 of every file of the run's DB folder, and the folder listings: what a refusal must not change.
   * `ignoreLock`: a refusal that reached the VM leaves `resume.lock` behind (the lock file itself, which cannot
   * be removed safely); a dry-run never creates it.
   */
  const dbFiles = (run: LaunchJson, ignoreLock = false): string => {
    const r = sh(`cd "$1" && ls -A . .smithers 2>&1 | { if [ "$2" = 1 ]; then grep -vx resume.lock; else cat; fi; }; find .smithers -type f 2>/dev/null | sort | xargs -r sha256sum`, run.control_dir, ignoreLock ? "1" : "0");
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const registryFiles = (): string => {
    const h = createHash("sha256");
    for (const f of fs.readdirSync(t.fabrikHome).sort()) {
      const p = path.join(t.fabrikHome, f);
      h.update(f + "\0");
      if (fs.statSync(p).isFile()) h.update(fs.readFileSync(p));
    }
    return h.digest("hex");
  };
  const resume = (id: number, ...flags: string[]) => cli(["run", "resume", "--id", String(id), ...flags]);
  const expectRefused = (r: CliResult, msg: RegExp, code = 5) => {
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toMatch(msg);
    expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1); // one clear line with its hint
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  beforeAll(() => {
    const b = spawnSync("npm", ["run", "build"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 180_000 });
    expect(b.status, b.stderr + b.stdout).toBe(0);
    t = makeTestEnv("fabrik-resume-");
    fs.writeFileSync(t.env.FABRIK_CONFIG!, JSON.stringify({ thresholds: { engine_heartbeat_stale_ms: 2000 } }));
    const tpl = path.join(t.tmp, "tiny.yaml");
    fs.writeFileSync(tpl, 'cpus: 1\nmemory: "1GiB"\nmounts: []\n');
    const r = cli(["vm", "create", VM, "--template", tpl, "--engine", "0.32.0"]);
    expect(r.code, r.stderr).toBe(0);
  }, 300_000);
  afterAll(() => {
    if (t) stopAllStandinVms(t);
  });

  // One 0.32 run carries the core story: refused while its engine lives (stopped, so its DB stands still),
  // killed during task 3, dry-run changes nothing, two concurrent resumes (one wins), continues to the end.
  let core: LaunchJson;

  it("0.32: refuses while the engine lives, changing nothing (not even with --force)", () => {
    core = launch("examples/workflows/seq.tsx", { tasks: 6, sleepMs: 800 });
    signalAt(core, "step-3", "STOP"); // alive but frozen: its DB files cannot change under the test
    const before = dbFiles(core);
    const reg = registryFiles();
    expectRefused(resume(core.id, "--yes"), /cannot resume run \d+: the engine owner process \(pid \d+\) is alive in VM rs/);
    expectRefused(resume(core.id, "--yes", "--force"), /is alive.*--force never overrides a living process/);
    const asJson = resume(core.id, "--yes", "--json");
    expect(asJson.code).toBe(5);
    const model = json<{ allowed: boolean; applied: boolean; plan: { reasons: { code: string }[] } }>(asJson);
    expect(model.allowed).toBe(false);
    expect(model.applied).toBe(false);
    expect(model.plan.reasons.map((x) => x.code)).toContain("OWNER_ALIVE");
    const dry = resume(core.id, "--dry-run");
    expect(dry.code).toBe(5);
    expect(dry.stdout).toContain("verdict:   REFUSED");
    expect(dbFiles(core)).toBe(before);
    expect(registryFiles()).toBe(reg);
    expect(show(core.id, false).resume_count).toBe(0);
  });

  it("0.32: --dry-run of a killed run prints the plan and the full script and changes nothing", async () => {
    signalAt(core, "step-3", "KILL");
    await new Promise((r) => setTimeout(r, 2500)); // engine heartbeat older than the 2 s test threshold
    const seen = show(core.id); // live: the registry now records the run as orphaned, with the reason
    expect(seen.effective_status).toBe("orphaned");
    expect(seen.current_task).toBe("step-3");
    const before = dbFiles(core);
    expect(before).toMatch(/run-\d+\.db-wal/); // the SIGKILL left the data in the WAL
    const reg = registryFiles();
    const r = resume(core.id, "--dry-run");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("verdict:   allowed");
    expect(r.stdout).toContain("Completed: 2/6 tasks; Continuing from: step-3");
    expect(r.stdout).toContain("attempt step-3 #1: in-progress -> cancelled");
    expect(r.stdout).toContain(`${core.control_dir}/backups/run-${core.id}-`);
    expect(r.stdout).toContain(`--resume ${core.smithers_run_id} --no-post-failure`);
    expect(r.stdout).toContain("----- end of script -----");
    expect(r.stdout).not.toContain("smithers resume");
    const j = json<{ allowed: boolean; plan: { script: string; mode: string; checks: { source: string; ok: boolean }[] } }>(resume(core.id, "--dry-run", "--json"));
    expect(j.allowed).toBe(true);
    expect(j.plan.mode).toBe("continue-interrupted");
    expect(j.plan.checks.filter((c) => c.source === "vm").length).toBeGreaterThan(5); // the VM's own checks ran
    expect(j.plan.script).toContain("Continuing from: step-3");
    expect(dbFiles(core)).toBe(before); // main, -wal, -shm and the file list: byte-identical, nothing created
    expect(registryFiles()).toBe(reg);
  });

  it("0.32: two concurrent resumes — one wins, the other is refused; the SAME run continues to the end", async () => {
    const [a, b] = await Promise.all([fabrikAsync(t, ["run", "resume", "--id", String(core.id), "--yes", "--reason", "e2e"]), fabrikAsync(t, ["run", "resume", "--id", String(core.id), "--yes"])]);
    const codes = [a.code, b.code].sort();
    expect(codes, a.stderr + b.stderr).toEqual([0, 5]);
    const loser = a.code === 5 ? a : b;
    expect(loser.stderr).toMatch(/another resume of this run is in progress|is alive|launcher\.lock is held/);
    const winner = a.code === 0 ? a : b;
    expect(winner.stdout).toMatch(/resumed run \d+ in VM rs: continue an interrupted run/);
    await waitStatus(core.id, "done");
    const st = dbState(core);
    expect(st.runs).toEqual([{ run_id: core.smithers_run_id, status: "finished" }]); // the same row, no new run
    expect(attemptsByNode(core)).toEqual({
      "step-1": ["finished"],
      "step-2": ["finished"],
      "step-3": ["cancelled", "finished"],
      "step-4": ["finished"],
      "step-5": ["finished"],
      "step-6": ["finished"],
    });
    const v = show(core.id);
    expect(v.effective_status).toBe("done");
    const cached = show(core.id, false);
    expect(cached.status).toBe("done");
    expect(cached.resume_count).toBe(1);
    const log = sh(`cat "$1/reports/smithers.log"`, core.control_dir).stdout;
    expect(log).toContain("===== fabrik resume of host run");
    expect(log).toContain("Completed: 2/6 tasks");
    expect(log).toContain("Continuing from: step-3");
    const Database = (await import("better-sqlite3")).default;
    const reg = new Database(path.join(t.fabrikHome, "registry.db"), { readonly: true });
    const ev = reg.prepare("select detail_json from run_events where run_id = ? and kind = 'resumed'").all(core.id) as { detail_json: string }[];
    reg.close();
    expect(ev).toHaveLength(1);
    const detail = JSON.parse(ev[0]!.detail_json);
    expect(detail.mode).toBe("continue-interrupted");
    expect(detail.backup.path).toMatch(/\/backups\/run-\d+-\d{8}T\d{6}\.\d{3}Z\.db$/);
    expect(detail.previous_failure_reason).toMatch(/no engine process/); // kept in the history
    expect(show(core.id, false).failure_reason).toBeNull(); // and cleared on the row
    expectRefused(resume(core.id, "--yes"), /already finished/);
  });

  it("0.32 failed run: refuses a missing workflow, a missing DB and a corrupt DB (nothing changed), then retries the failed task", async () => {
    const cause = path.join(t.tmp, "cause-fixed");
    const run = launch("examples/workflows/seq.tsx", { tasks: 4, sleepMs: 100, failAt: 3, failUnlessFile: cause });
    await waitStatus(run.id, "failed");
    const wf = `${run.control_dir}/workflow/seq.tsx`;
    let before = dbFiles(run, true);

    expect(sh(`mv "$1" "$1.away"`, wf).code).toBe(0);
    expectRefused(resume(run.id, "--yes"), /workflow file .*seq\.tsx is missing in the VM/);
    expect(dbFiles(run, true)).toBe(before);
    expect(sh(`mv "$1.away" "$1"`, wf).code).toBe(0);

    expect(sh(`cd "$1" && mv .smithers .smithers.away`, run.control_dir).code).toBe(0);
    before = dbFiles(run, true);
    expectRefused(resume(run.id, "--yes"), /Smithers DB .* does not exist/);
    expectRefused(resume(run.id, "--dry-run"), /does not exist/);
    expect(dbFiles(run, true)).toBe(before); // no stray DB created

    expect(sh(`cd "$1" && mkdir .smithers && head -c 8192 /dev/urandom > "$2"`, run.control_dir, run.db_path).code).toBe(0);
    before = dbFiles(run, true);
    expectRefused(resume(run.id, "--yes"), /cannot read the Smithers DB/);
    expect(dbFiles(run, true)).toBe(before);
    expect(sh(`cd "$1" && rm -rf .smithers && mv .smithers.away .smithers`, run.control_dir).code).toBe(0);
    expect(show(run.id, false).resume_count).toBe(0);

    fs.writeFileSync(cause, "fixed\n");
    const r = resume(run.id, "--yes", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = json<{ applied: boolean; plan: { mode: string; retry_node: string; engine_command: string } }>(r);
    expect(out.applied).toBe(true);
    expect(out.plan.mode).toBe("retry-failed");
    expect(out.plan.retry_node).toBe("step-3");
    expect(out.plan.engine_command).toContain(`retry-task`);
    await waitStatus(run.id, "done");
    const byNode = attemptsByNode(run);
    expect(byNode["step-1"]).toEqual(["finished"]);
    expect(byNode["step-2"]).toEqual(["finished"]);
    expect(byNode["step-3"]!.at(-1)).toBe("finished");
    expect(byNode["step-3"]!.length).toBe(2);
    expect(byNode["step-4"]).toEqual(["finished"]);
    expect(dbState(run).runs.filter((x) => x.run_id === run.smithers_run_id)).toEqual([{ run_id: run.smithers_run_id, status: "finished" }]);
  });

  it("0.32 --fix: a 50 MB response_text is truncated, the DB shrinks, the run finishes, the backup restores the original", async () => {
    const run = launch("examples/workflows/seq.tsx", { tasks: 4, sleepMs: 600 });
    signalAt(run, "step-2", "KILL");
    // Write a 50 MB transcript into step-1's (finished) attempt, as an agent would have.
    bunEval(
      run.engine_version,
      `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1]); d.exec("PRAGMA busy_timeout = 5000");
       const big = "x".repeat(50 * 1024 * 1024) + "END-OF-TRANSCRIPT";
       d.query("update _smithers_attempts set response_text = ? where run_id = ? and node_id = 'step-1'").run(big, process.argv[2]); d.close();`,
      run.db_path,
      run.smithers_run_id,
    );
    // A reference copy taken now, the way the resume takes its backup. "Byte for byte" for a WAL DB: the
    // on-disk files are not comparable (pages sit in main or -wal depending on checkpoints, and a copy is laid
    // out afresh), so what must be identical is the logical content — the schema and every row of every
    // table, dumped in a total order and hashed.
    const ref = `${HOME}/ref-${run.id}.db`;
    bunEval(run.engine_version, `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1], { readonly: true }); d.query("VACUUM INTO ?").run(process.argv[2]); d.close();`, run.db_path, ref);
    const refDump = JSON.parse(bunEval(run.engine_version, DUMP_HASH, ref)) as { hash: string; rows: number };
    await new Promise((r) => setTimeout(r, 2500));

    const dry = resume(run.id, "--dry-run", "--fix");
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/Fix:\s+truncate .* over 102400 bytes .* largest now 5242\d{4} bytes/);

    const r = resume(run.id, "--yes", "--fix", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = json<{ vm_result: { fix: { values: number; value_bytes_before: number; file_bytes_before: { db_bytes: number; wal_bytes: number }; file_bytes_after: { db_bytes: number; wal_bytes: number } }; backup: { path: string; size_bytes: number } } }>(r);
    const fix = out.vm_result.fix;
    expect(fix.values).toBe(1);
    expect(fix.value_bytes_before).toBe(50 * 1024 * 1024 + "END-OF-TRANSCRIPT".length);
    const sizeBefore = fix.file_bytes_before.db_bytes + fix.file_bytes_before.wal_bytes;
    const sizeAfter = fix.file_bytes_after.db_bytes + fix.file_bytes_after.wal_bytes;
    expect(sizeBefore).toBeGreaterThan(50 * 1024 * 1024);
    expect(sizeAfter).toBeLessThan(2 * 1024 * 1024);
    expect(out.vm_result.backup.size_bytes).toBeGreaterThan(50 * 1024 * 1024);
    const backupDump = JSON.parse(bunEval(run.engine_version, DUMP_HASH, out.vm_result.backup.path)) as { hash: string; rows: number };
    expect(backupDump).toEqual(refDump);

    await waitStatus(run.id, "done");
    const rt = JSON.parse(
      bunEval(
        run.engine_version,
        `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1], { readonly: true });
         const r = d.query("select substr(response_text, 1, 40) as head, substr(response_text, -17) as tail, octet_length(response_text) as n from _smithers_attempts where run_id = ? and node_id = 'step-1'").get(process.argv[2]);
         console.log(JSON.stringify(r));`,
        run.db_path,
        run.smithers_run_id,
      ),
    ) as { head: string; tail: string; n: number };
    expect(rt.head).toMatch(/^\[fabrik --fix: truncated \d+ bytes\]/);
    expect(rt.tail).toBe("END-OF-TRANSCRIPT");
    expect(rt.n).toBeLessThan(102400 + 64);
    expect(attemptsByNode(run)["step-2"]).toEqual(["cancelled", "finished"]);
  });

  it("0.5: a run killed during task 3 continues the same run from task 3", async () => {
    const run = launch("examples/workflows-legacy/seq.tsx", { tasks: 6, sleepMs: 800 }, "0.5.0");
    signalAt(run, "step-3", "KILL");
    const r = resume(run.id, "--yes");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Completed: 2/6 tasks; Continuing from: step-3");
    await waitStatus(run.id, "done");
    expect(dbState(run).runs).toEqual([{ run_id: run.smithers_run_id, status: "finished" }]);
    expect(attemptsByNode(run)).toEqual({
      "step-1": ["finished"],
      "step-2": ["finished"],
      "step-3": ["cancelled", "finished"],
      "step-4": ["finished"],
      "step-5": ["finished"],
      "step-6": ["finished"],
    });
    expect(sh(`cat "$1"`, `${run.control_dir}/resume-1.sh`).stdout).toMatch(/"\$SMITHERS" run \S+ --run-id fabrik-\d+ --resume/);
  });

  it("a stopped VM is refused with exit 6", () => {
    expect(cli(["vm", "stop", VM]).code).toBe(0);
    const reg = registryFiles();
    expectRefused(resume(core.id, "--yes"), /VM rs is Stopped/, 6);
    expectRefused(resume(core.id, "--dry-run"), /VM rs is Stopped/, 6);
    expect(registryFiles()).toBe(reg);
  });
});
