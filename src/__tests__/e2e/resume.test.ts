/**
 * `fabrik run resume` end to end: the REAL engines (0.32.0 fully, 0.5.0 for the core kill→resume case) in a VM of
 * each driver (a stand-in Lima VM, a real SSH host), through the built CLI. Engines are killed INSIDE the VM (`fabrik vm shell … kill -9`),
 * DB state is read inside the VM with the engine's own bun, and every refusal is checked to change nothing
 * (DB files hashed before and after).
 *
 * The engine heartbeat threshold is lowered to 2 s in the test config (thresholds.engine_heartbeat_stale_ms)
 * so a freshly killed run need not wait the real 30 s; the fresh-heartbeat rule itself is unit-tested.
 *
 * Runs are held by a gate (examples/workflows/seq.tsx `gateDir`): the test waits until task N has started
 * (`at-N`), then stops or kills the engine, so the signal always lands inside task N; a resumed task waits for
 * its release too. The VM is the worker's shared one (helpers/worker-fleet.ts).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { engineExits, fabrik, hostPathOf, json, waitEngineExit, waitFor, type CliResult } from "../helpers/cli.js";
import { DB_DUMP_HASH } from "../helpers/reliability.js";
import { Gate } from "../helpers/gate.js";
import { titled } from "../helpers/prereq.js";
import { E2E_DRIVERS, driverFleet, driverSkip, type DriverFleet } from "../helpers/driver-fleet.js";

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

/** In the VM, in control dir `$1`: freeze the engine (`STOP`) or kill the launcher, its group and the engine (`KILL`). */
const SIGNAL_RUN = String.raw`cd "$1" || exit 1
if [ "$2" = STOP ]; then
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

describe.each(E2E_DRIVERS)("run resume (real engines in a %s VM)", (driver) => {
  const skip = driverSkip(driver);
  let t: DriverFleet;
  let VM = "";
  let HOME = "";
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  const cli = (args: string[]): Promise<CliResult> => fabrik(t, args, { timeoutMs: 180_000 });
  const sh = (script: string, ...args: string[]): Promise<CliResult> => cli(["vm", "shell", VM, "--", "bash", "-c", script, "fabrik-test", ...args]);
  const bunIn = (version: string) => `${HOME}/.fabrik/engines/${version}/.runtime/node_modules/.bin/bun`;
  const bunEval = async (version: string, code: string, ...args: string[]): Promise<string> => {
    const r = await cli(["vm", "shell", VM, "--", bunIn(version), "-e", code, ...args]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  const launch = async (workflow: string, input: object, engine = "0.32.0"): Promise<LaunchJson> => {
    const r = await cli(["run", "--vm", VM, "--engine", engine, "--workflow", workflow, "--input", JSON.stringify(input), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    return json<LaunchJson>(r);
  };
  /** Freeze (`STOP`) or kill (`KILL`) the run's engine, inside the VM. */
  const signalRun = async (run: LaunchJson, sig: "STOP" | "KILL") => {
    const r = await sh(SIGNAL_RUN, run.control_dir, sig);
    expect(r.code, r.stderr).toBe(0);
  };
  /** Let tasks 1..n-1 finish, wait until task n runs, then signal the engine: the signal lands inside task n. */
  const signalAt = async (run: LaunchJson, g: Gate, n: number, sig: "STOP" | "KILL") => {
    g.releaseThrough(n - 1);
    await g.at(n);
    await signalRun(run, sig);
  };
  const show = async (id: number, live = true): Promise<ShowJson> => json<ShowJson>(await cli(["runs", "show", "--id", String(id), "--json", ...(live ? [] : ["--no-live"])]));
  const waitStatus = (id: number, status: string, timeoutMs = 90_000) => {
    let last: ShowJson | undefined;
    return waitFor(async () => (last = await show(id)).effective_status === status, { timeoutMs, intervalMs: 500, what: `run ${id} to be ${status}`, describe: () => JSON.stringify(last) });
  };
  /** Wait until the run's engine exits for the (`after`+1)-th time (its log says so), then until fabrik calls it `status`. */
  const waitEnded = async (run: LaunchJson, status: string, after: number) => {
    await waitEngineExit(t, VM, run.control_dir, after);
    await waitStatus(run.id, status);
  };
  const dbState = async (run: LaunchJson) =>
    JSON.parse(await bunEval(run.engine_version, DB_STATE, run.db_path, run.smithers_run_id)) as { runs: { run_id: string; status: string }[]; attempts: { node_id: string; attempt: number; state: string }[] };
  const attemptsByNode = async (run: LaunchJson): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const a of (await dbState(run)).attempts) (out[a.node_id] ??= []).push(a.state);
    return out;
  };
  /**
   * The control dir's listing (and its `.smithers` folder's) and the sha256 of every file under `.smithers`:
   * what a refusal must not change. Read from the host, where the stand-in VM's guest home lives (the same
   * files, without a CLI round trip per look). `ignoreLock`: a refusal that reached the VM leaves `resume.lock`
   * behind (the lock file itself, which cannot be removed safely); a dry-run never creates it.
   */
  const dbFiles = async (run: LaunchJson, ignoreLock = false): Promise<string> => {
    const dir = hostPathOf(t, VM, run.control_dir);
    const list = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).sort() : [`(no ${path.basename(d)})`]);
    const top = list(dir).filter((n) => !(ignoreLock && n === "resume.lock"));
    const lines = [".:", ...top, "", ".smithers:", ...list(path.join(dir, ".smithers")), ""];
    const walk = (d: string): string[] =>
      fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.isFile() ? [path.join(d, e.name)] : [])) : [];
    for (const f of walk(path.join(dir, ".smithers")).sort()) lines.push(`${createHash("sha256").update(fs.readFileSync(f)).digest("hex")}  ${path.relative(dir, f)}`);
    return lines.join("\n");
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

  beforeAll(async () => {
    if (skip) return;
    t = await driverFleet(driver, { thresholds: { engine_heartbeat_stale_ms: 2000 } });
    VM = t.vm;
    HOME = await t.guestHome();
  }, 600_000);
  afterAll(() => {
    for (const g of gates) g.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });
  describe.skipIf(skip)(titled(`${driver} driver`, skip), () => {

    // One 0.32 run carries the core story: refused while its engine lives (stopped, so its DB stands still),
    // killed during task 3, dry-run changes nothing, two concurrent resumes (one wins), continues to the end.
    let core: LaunchJson;
    let coreGate: Gate;

    it("0.32: refuses while the engine lives, changing nothing (not even with --force)", async () => {
      coreGate = gate();
      core = await launch("examples/workflows/seq.tsx", { tasks: 6, sleepMs: 50, ...coreGate.input });
      await signalAt(core, coreGate, 3, "STOP"); // alive but frozen: its DB files cannot change under the test
      // The launcher records the engine's pid (engine.pid) a moment after the engine claims the run: wait for it.
      await waitFor(() => fs.existsSync(hostPathOf(t, VM, `${core.control_dir}/engine.pid`)), { timeoutMs: 30_000, intervalMs: 100, what: "the launcher to write engine.pid" });
      const before = await dbFiles(core);
      const reg = registryFiles();
      expectRefused(await resume(core.id, "--yes"), new RegExp(`cannot resume run \\d+: the engine owner process \\(pid \\d+\\) is alive in VM ${VM}`));
      expectRefused(await resume(core.id, "--yes", "--force"), /is alive.*--force never overrides a living process/);
      const asJson = await resume(core.id, "--yes", "--json");
      expect(asJson.code).toBe(5);
      const model = json<{ allowed: boolean; applied: boolean; plan: { reasons: { code: string }[] } }>(asJson);
      expect(model.allowed).toBe(false);
      expect(model.applied).toBe(false);
      expect(model.plan.reasons.map((x) => x.code)).toContain("OWNER_ALIVE");
      const dry = await resume(core.id, "--dry-run");
      expect(dry.code).toBe(5);
      expect(dry.stdout).toContain("verdict:   REFUSED");
      expect(await dbFiles(core)).toBe(before);
      expect(registryFiles()).toBe(reg);
      expect((await show(core.id, false)).resume_count).toBe(0);
    });

    it("0.32: --dry-run of a killed run prints the plan and the full script and changes nothing", async () => {
      await signalRun(core, "KILL"); // the engine was frozen inside step-3
      // Once the engine heartbeat is older than the 2 s test threshold, a live look calls the run orphaned and
      // the registry records it, with the reason.
      let seen = await show(core.id);
      await waitFor(async () => (seen = await show(core.id)).effective_status === "orphaned", { timeoutMs: 30_000, intervalMs: 500, what: "the killed run to be orphaned", describe: () => JSON.stringify(seen) });
      expect(seen.effective_status).toBe("orphaned");
      expect(seen.current_task).toBe("step-3");
      const before = await dbFiles(core);
      expect(before).toMatch(/run-\d+\.db-wal/); // the SIGKILL left the data in the WAL
      const reg = registryFiles();
      const r = await resume(core.id, "--dry-run");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("verdict:   allowed");
      expect(r.stdout).toContain("Completed: 2/6 tasks; Continuing from: step-3");
      expect(r.stdout).toContain("attempt step-3 #1: in-progress -> cancelled");
      expect(r.stdout).toContain(`${core.control_dir}/backups/run-${core.id}-`);
      expect(r.stdout).toContain(`--resume ${core.smithers_run_id} --no-post-failure`);
      expect(r.stdout).toContain("----- end of script -----");
      expect(r.stdout).not.toContain("smithers resume");
      const j = json<{ allowed: boolean; plan: { script: string; mode: string; checks: { source: string; ok: boolean }[] } }>(await resume(core.id, "--dry-run", "--json"));
      expect(j.allowed).toBe(true);
      expect(j.plan.mode).toBe("continue-interrupted");
      expect(j.plan.checks.filter((c) => c.source === "vm").length).toBeGreaterThan(5); // the VM's own checks ran
      expect(j.plan.script).toContain("Continuing from: step-3");
      expect(await dbFiles(core)).toBe(before); // main, -wal, -shm and the file list: byte-identical, nothing created
      expect(registryFiles()).toBe(reg);
    });

    it("0.32: two concurrent resumes — one wins, the other is refused; the SAME run continues to the end", async () => {
      coreGate.releaseThrough(6); // the resumed step-3 (attempt 2) and the rest may finish
      const exits = engineExits(t, VM, core.control_dir);
      const [a, b] = await Promise.all([fabrik(t, ["run", "resume", "--id", String(core.id), "--yes", "--reason", "e2e"]), fabrik(t, ["run", "resume", "--id", String(core.id), "--yes"])]);
      const codes = [a.code, b.code].sort();
      expect(codes, a.stderr + b.stderr).toEqual([0, 5]);
      const loser = a.code === 5 ? a : b;
      expect(loser.stderr).toMatch(/another resume of this run is in progress|is alive|launcher\.lock is held/);
      const winner = a.code === 0 ? a : b;
      expect(winner.stdout).toMatch(new RegExp(`resumed run \\d+ in VM ${VM}: continue an interrupted run`));
      await waitEnded(core, "done", exits);
      const st = await dbState(core);
      expect(st.runs).toEqual([{ run_id: core.smithers_run_id, status: "finished" }]); // the same row, no new run
      expect(await attemptsByNode(core)).toEqual({
        "step-1": ["finished"],
        "step-2": ["finished"],
        "step-3": ["cancelled", "finished"],
        "step-4": ["finished"],
        "step-5": ["finished"],
        "step-6": ["finished"],
      });
      const v = await show(core.id);
      expect(v.effective_status).toBe("done");
      const cached = await show(core.id, false);
      expect(cached.status).toBe("done");
      expect(cached.resume_count).toBe(1);
      const log = (await sh(`cat "$1/reports/smithers.log"`, core.control_dir)).stdout;
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
      expect((await show(core.id, false)).failure_reason).toBeNull(); // and cleared on the row
      expectRefused(await resume(core.id, "--yes"), /already finished/);
    });

    it("0.32 failed run: refuses a missing workflow, a missing DB and a corrupt DB (nothing changed), then retries the failed task", async () => {
      // The guest reads this path through the test root's mount; its user is not root, so the folder must be readable.
      const causeDir = path.join(t.tmp, "cause");
      fs.mkdirSync(causeDir, { mode: 0o755 });
      fs.chmodSync(t.tmp, 0o755);
      const cause = path.join(causeDir, "cause-fixed");
      const run = await launch("examples/workflows/seq.tsx", { tasks: 4, sleepMs: 50, failAt: 3, failUnlessFile: cause });
      await waitEnded(run, "failed", 0);
      const wf = `${run.control_dir}/workflow/seq.tsx`;
      let before = await dbFiles(run, true);

      expect((await sh(`mv "$1" "$1.away"`, wf)).code).toBe(0);
      expectRefused(await resume(run.id, "--yes"), /workflow file .*seq\.tsx is missing in the VM/);
      expect(await dbFiles(run, true)).toBe(before);
      expect((await sh(`mv "$1.away" "$1"`, wf)).code).toBe(0);

      expect((await sh(`cd "$1" && mv .smithers .smithers.away`, run.control_dir)).code).toBe(0);
      before = await dbFiles(run, true);
      expectRefused(await resume(run.id, "--yes"), /Smithers DB .* does not exist/);
      expectRefused(await resume(run.id, "--dry-run"), /does not exist/);
      expect(await dbFiles(run, true)).toBe(before); // no stray DB created

      expect((await sh(`cd "$1" && mkdir .smithers && head -c 8192 /dev/urandom > "$2"`, run.control_dir, run.db_path)).code).toBe(0);
      before = await dbFiles(run, true);
      expectRefused(await resume(run.id, "--yes"), /cannot read the Smithers DB/);
      expect(await dbFiles(run, true)).toBe(before);
      expect((await sh(`cd "$1" && rm -rf .smithers && mv .smithers.away .smithers`, run.control_dir)).code).toBe(0);
      expect((await show(run.id, false)).resume_count).toBe(0);

      fs.writeFileSync(cause, "fixed\n");
      const exits = engineExits(t, VM, run.control_dir);
      const r = await resume(run.id, "--yes", "--json");
      expect(r.code, r.stderr).toBe(0);
      const out = json<{ applied: boolean; plan: { mode: string; retry_node: string; engine_command: string } }>(r);
      expect(out.applied).toBe(true);
      expect(out.plan.mode).toBe("retry-failed");
      expect(out.plan.retry_node).toBe("step-3");
      expect(out.plan.engine_command).toContain(`retry-task`);
      await waitEnded(run, "done", exits);
      const byNode = await attemptsByNode(run);
      expect(byNode["step-1"]).toEqual(["finished"]);
      expect(byNode["step-2"]).toEqual(["finished"]);
      expect(byNode["step-3"]!.at(-1)).toBe("finished");
      expect(byNode["step-3"]!.length).toBe(2);
      expect(byNode["step-4"]).toEqual(["finished"]);
      expect((await dbState(run)).runs.filter((x) => x.run_id === run.smithers_run_id)).toEqual([{ run_id: run.smithers_run_id, status: "finished" }]);
    });

    it("0.32 --fix: a 50 MB response_text is truncated, the DB shrinks, the run finishes, the backup restores the original", async () => {
      const g = gate();
      const run = await launch("examples/workflows/seq.tsx", { tasks: 4, sleepMs: 50, ...g.input });
      await signalAt(run, g, 2, "KILL");
      // Write a 50 MB transcript into step-1's (finished) attempt, as an agent would have.
      await bunEval(
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
      await bunEval(run.engine_version, `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1], { readonly: true }); d.query("VACUUM INTO ?").run(process.argv[2]); d.close();`, run.db_path, ref);
      const refDump = JSON.parse(await bunEval(run.engine_version, DB_DUMP_HASH, ref)) as { hash: string; rows: number };
      await waitStatus(run.id, "orphaned", 30_000); // engine heartbeat older than the 2 s test threshold
      g.releaseThrough(4); // the resumed step-2 (attempt 2) and the rest may finish

      const dry = await resume(run.id, "--dry-run", "--fix");
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/Fix:\s+truncate .* over 102400 bytes .* largest now 5242\d{4} bytes/);

      const exits = engineExits(t, VM, run.control_dir);
      const r = await resume(run.id, "--yes", "--fix", "--json");
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
      const backupDump = JSON.parse(await bunEval(run.engine_version, DB_DUMP_HASH, out.vm_result.backup.path)) as { hash: string; rows: number };
      expect(backupDump).toEqual(refDump);

      await waitEnded(run, "done", exits);
      const rt = JSON.parse(
        await bunEval(
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
      expect((await attemptsByNode(run))["step-2"]).toEqual(["cancelled", "finished"]);
    });

    it("0.5: a run killed during task 3 continues the same run from task 3", async () => {
      const g = gate();
      const run = await launch("examples/workflows-legacy/seq.tsx", { tasks: 6, sleepMs: 50, ...g.input }, "0.5.0");
      await signalAt(run, g, 3, "KILL");
      g.releaseThrough(6); // the resumed step-3 (attempt 2) and the rest may finish
      const exits = engineExits(t, VM, run.control_dir);
      const r = await resume(run.id, "--yes");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("Completed: 2/6 tasks; Continuing from: step-3");
      await waitEnded(run, "done", exits);
      expect((await dbState(run)).runs).toEqual([{ run_id: run.smithers_run_id, status: "finished" }]);
      expect(await attemptsByNode(run)).toEqual({
        "step-1": ["finished"],
        "step-2": ["finished"],
        "step-3": ["cancelled", "finished"],
        "step-4": ["finished"],
        "step-5": ["finished"],
        "step-6": ["finished"],
      });
      expect((await sh(`cat "$1"`, `${run.control_dir}/resume-1.sh`)).stdout).toMatch(/"\$SMITHERS" run \S+ --run-id fabrik-\d+ --resume/);
    });

    it("a powered-off VM is refused with exit 6", async () => {
      await t.powerOff(VM);
      const reg = registryFiles();
      const offline = driver === "lima" ? new RegExp(`VM ${VM} is Stopped`) : t.offline;
      expectRefused(await resume(core.id, "--yes"), offline, 6);
      expectRefused(await resume(core.id, "--dry-run"), offline, 6);
      expect(registryFiles()).toBe(reg);
    });
  });
});
