/**
 * Acting on a run and explaining it without entering the VM (issue 13), end to end: the built CLI, the REAL engines
 * (0.32.0, and 0.5.0 where it has the concept), in the worker's stand-in Lima VM and in a local VM.
 *
 * - `run cancel` of a live run: the DB says cancelled, exit_code is written, no engine process is left, the
 *   registry and the history say so, `runs watch --exit-status` gives 9; an ended run is left alone.
 * - `run approve|deny` of a waiting gate and `run signal` (examples/workflows/gate.tsx), each suggested by the
 *   WAITING diagnosis, run with the exact command it names.
 * - `runs why` on a failed run names the node and its error; `runs nodes` lists node × iteration with sizes.
 * - `runs events` of a crashed-then-resumed run: launched → orphaned → resumed → done (and `--follow` to the end);
 *   an old pin in run.sh is diagnosed and fixed with `run resume --engine` (across dialects: refused).
 * - a reused pid: judged dead (PID_REUSED), resumed without deleting pid files, the unrelated process untouched.
 * - `run compact` of a finished run: dry-run changes nothing, the values fit the limit, the backup holds the original.
 *
 * Engines are killed and processes started INSIDE the VM (`fabrik vm shell`); the engine heartbeat threshold is 2 s
 * (test config) so a killed run is orphaned at once. Runs are held by the example workflows' gate, never by timing.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { parse as shellParse } from "shell-quote";
import { fabrik, hostPathOf, json, localVmName, startFabrik, waitEngineExit, waitFor, engineExits, type CliResult, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { workerFleet } from "../helpers/worker-fleet.js";
import { run as runProc } from "../helpers/proc.js";

const skip = missingPrereqs(...STANDIN);
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
const SEQ_05 = path.join(REPO_ROOT, "examples/workflows-legacy/seq.tsx");
const GATE = path.join(REPO_ROOT, "examples/workflows/gate.tsx");
const GATE_05 = path.join(REPO_ROOT, "examples/workflows-legacy/gate.tsx");

interface Launched {
  id: number;
  control_dir: string;
  db_path: string;
  smithers_run_id: string;
  engine_version: string;
}
interface View {
  effective_status: string;
  status: string;
  engine_run_status: string | null;
  exit_code: number | null;
  engine_alive: boolean | null;
  launcher_alive: boolean | null;
  engine_pid: number | null;
  launcher_pid: number | null;
  diagnoses: { code: string; message: string; next_command: string | null }[];
}
interface TimelineJson {
  type: string;
  source: "fabrik" | "engine";
  kind: string;
  at_ms: number;
  node: string | null;
  detail: Record<string, unknown> | null;
}

/** In the VM, in control dir `$1`: kill the launcher, its group and the engine (SIGKILL: a crash). */
const KILL_RUN = String.raw`cd "$1" || exit 1
kill -9 -- -$(cat launcher.pid) 2>/dev/null
kill -9 $(cat launcher.pid) $(cat smithers.pid) $(cat engine.pid 2>/dev/null) 2>/dev/null
echo done`;

/** The run-level commands against one VM (`vm`), with the fleet's environment. */
function suite(title: string, setup: () => Promise<{ t: TestEnv; vm: string; home: string }>, parts: { full: boolean }) {
  describe(title, () => {
    let t: TestEnv;
    let VM = "";
    let HOME = "";
    const gates: Gate[] = [];
    const gate = () => {
      const g = new Gate();
      gates.push(g);
      return g;
    };
    const cli = (args: string[], timeoutMs = 180_000): Promise<CliResult> => fabrik(t, args, { timeoutMs });
    const sh = (script: string, ...args: string[]) => cli(["vm", "shell", VM, "--", "bash", "-c", script, "fabrik-test", ...args]);
    const launch = async (workflow: string, input: object, engine = "0.32.0"): Promise<Launched> => {
      const r = await cli(["run", "--vm", VM, "--engine", engine, "--workflow", workflow, "--input", JSON.stringify(input), "--json"], 600_000);
      expect(r.code, r.stderr).toBe(0);
      return json<Launched>(r);
    };
    const show = async (id: number): Promise<View> => json<View>(await cli(["runs", "show", "--id", String(id), "--json"]));
    const waitStatus = async (id: number, status: string, timeoutMs = 90_000): Promise<View> => {
      let last: View | undefined;
      return waitFor(async () => ((last = await show(id)).effective_status === status ? last : undefined), { timeoutMs, intervalMs: 400, what: `run ${id} to be ${status}`, describe: () => JSON.stringify(last) });
    };
    /** The command a diagnosis suggests, as argv for `fabrik` (checked to be exactly `expected`). */
    const suggested = (v: View, code: string, expected: string): string[] => {
      const d = v.diagnoses.find((x) => x.code === code);
      expect(d?.next_command, JSON.stringify(v.diagnoses)).toBe(expected);
      return shellParse(d!.next_command!).map(String).slice(1);
    };
    const timeline = async (id: number, extra: string[] = []): Promise<TimelineJson[]> => {
      const r = await cli(["runs", "events", "--id", String(id), "--json", ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as TimelineJson);
    };
    const alive = async (pid: number) => (await sh(`kill -0 "$1" 2>/dev/null && echo yes || echo no`, String(pid))).stdout.trim() === "yes";
    const bun = (v = "0.32.0") => `${HOME}/.fabrik/engines/${v}/.runtime/node_modules/.bin/bun`;
    const dbQuery = async (db: string, sql: string, ...params: string[]): Promise<unknown[]> => {
      const code = `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1], { readonly: true }); console.log(JSON.stringify(d.query(process.argv[2]).all(...process.argv.slice(3))));`;
      const r = await cli(["vm", "shell", VM, "--", bun(), "-e", code, db, sql, ...params]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim()) as unknown[];
    };

    beforeAll(async () => {
      ({ t, vm: VM, home: HOME } = await setup());
    }, 900_000);
    afterAll(() => {
      for (const g of gates) g.dispose();
    });

    it("cancel of a live 0.32 run: DB cancelled, exit_code written, no engine left, registry and history updated, watch --exit-status 9", async () => {
      const g = gate();
      const run = await launch(SEQ, { tasks: 4, sleepMs: 50, ...g.input });
      await g.at(1);
      const before = await show(run.id);
      expect(before.effective_status).toBe("running");
      const noYes = await cli(["run", "cancel", "--id", String(run.id)]);
      expect(noYes.code, noYes.stderr).toBe(2);
      expect(noYes.stderr).toMatch(/pass --yes/);
      const r = await cli(["run", "cancel", "--id", String(run.id), "--yes", "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const out = json<{ applied: boolean; effective_status: string; exit_code: number; vm_result: { status_after: string; engine_calls: { argv: string[]; status: string }[]; signals: unknown[] } }>(r);
      expect(out.applied).toBe(true);
      expect(out.vm_result.status_after).toBe("cancelled");
      expect(out.vm_result.engine_calls[0]!.argv.slice(0, 2)).toEqual(["smithers", "cancel"]);
      expect(out.vm_result.signals).toEqual([]); // the engine's own cancel: fabrik signalled nothing
      expect(out.effective_status).toBe("cancelled");
      expect(out.exit_code).toBe(2);
      const v = await show(run.id);
      expect(v).toMatchObject({ effective_status: "cancelled", status: "cancelled", engine_run_status: "cancelled", exit_code: 2, engine_alive: false, launcher_alive: false });
      for (const pid of [before.engine_pid, before.launcher_pid]) if (pid) expect(await alive(pid), `pid ${pid}`).toBe(false);
      const w = await cli(["runs", "watch", "--vm", VM, "--run-id", String(run.id), "--exit-status"]);
      expect(w.code, w.stderr).toBe(9);
      const again = await cli(["run", "cancel", "--id", String(run.id), "--yes"]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/already ended \(cancelled\); nothing to cancel/);
      const cancels = (await timeline(run.id)).filter((e) => e.source === "fabrik" && e.kind === "cancel");
      expect(cancels).toHaveLength(1);
    });

    it("approve a waiting gate, then signal it, each with the command WAITING names; the run finishes", async () => {
      const run = await launch(GATE, { sleepMs: 50 });
      await waitEngineExit(t, VM, run.control_dir, 0);
      const parked = await waitStatus(run.id, "waiting-approval");
      const approve = suggested(parked, "WAITING", `fabrik run approve --id ${run.id} --node deploy`);
      const exits = engineExits(t, VM, run.control_dir);
      const a = await cli([...approve, "--by", "e2e", "--note", "ship it", "--json"]);
      expect(a.code, a.stderr).toBe(0);
      const ao = json<{ vm_result: { node: string; engine_calls: { argv: string[]; status: string }[] }; relaunch: { started: boolean } }>(a);
      expect(ao.vm_result.node).toBe("deploy");
      expect(ao.vm_result.engine_calls[0]).toMatchObject({ status: "approved" });
      expect(ao.relaunch.started).toBe(true);
      await waitEngineExit(t, VM, run.control_dir, exits);
      const event = await waitStatus(run.id, "waiting-event");
      const signal = suggested(event, "WAITING", `fabrik run signal --id ${run.id} go`);
      const exits2 = engineExits(t, VM, run.control_dir);
      const s = await cli([...signal, "--data", '{"ok":true}', "--by", "e2e"]);
      expect(s.code, s.stderr).toBe(0);
      expect(s.stdout).toMatch(/signalled run \d+/);
      await waitEngineExit(t, VM, run.control_dir, exits2);
      await waitStatus(run.id, "done");
      const approvals = (await dbQuery(run.db_path, "select node_id, status, decided_by, note from _smithers_approvals where run_id = ?", run.smithers_run_id)) as Record<string, unknown>[];
      expect(approvals).toEqual([{ node_id: "deploy", status: "approved", decided_by: "e2e", note: "ship it" }]);
      const kinds = (await timeline(run.id)).map((e) => `${e.source}:${e.kind}`);
      for (const k of ["fabrik:approve", "engine:ApprovalGranted", "fabrik:signal", "engine:RunFinished"]) expect(kinds, k).toContain(k);
    });

    it("deny a waiting gate: the workflow fails the run at the gate", async () => {
      const run = await launch(GATE, { sleepMs: 50 });
      await waitEngineExit(t, VM, run.control_dir, 0);
      await waitStatus(run.id, "waiting-approval");
      const exits = engineExits(t, VM, run.control_dir);
      const d = await cli(["run", "deny", "--id", String(run.id), "--note", "not today"]);
      expect(d.code, d.stderr).toBe(0);
      expect(d.stdout).toMatch(/denied deploy of run \d+/);
      await waitEngineExit(t, VM, run.control_dir, exits);
      await waitStatus(run.id, "failed");
      // Nothing waits any more: approve is refused with the reason, and changes nothing.
      const late = await cli(["run", "approve", "--id", String(run.id)]);
      expect(late.code).toBe(5);
      expect(late.stderr).toMatch(/has no gate waiting for an approval/);
    });

    it("cancel of a live 0.5 run: SIGTERM through the launcher, then the engine's own cancel records it", async () => {
      const g = gate();
      const run = await launch(SEQ_05, { tasks: 4, sleepMs: 50, ...g.input }, "0.5.0");
      await g.at(1);
      const r = await cli(["run", "cancel", "--id", String(run.id), "--yes", "--json"]);
      const log = () => fs.readFileSync(hostPathOf(t, VM, `${run.control_dir}/reports/smithers.log`), "utf8").split("\n").slice(-25).join("\n");
      expect(r.code, `${r.stderr}\n${r.stdout.slice(0, 3000)}\n${log()}`).toBe(0);
      const out = json<{ vm_result: { status_after: string; signals: { signal: string; role: string }[]; engine_calls: { argv: string[] }[] }; exit_code: number }>(r);
      // SIGTERM to the launcher first (it forwards it), then to the engine unless the launcher's forward already ended it.
      expect(out.vm_result.signals[0]).toMatchObject({ signal: "SIGTERM", role: "launcher" });
      expect(out.vm_result.signals.every((s) => s.signal === "SIGTERM")).toBe(true);
      expect(out.vm_result.engine_calls.map((c) => c.argv[1])).toEqual(["cancel"]);
      expect(out.vm_result.status_after).toBe("cancelled");
      expect(out.exit_code).toBe(143);
      const v = await show(run.id);
      expect(v).toMatchObject({ effective_status: "cancelled", engine_alive: false, launcher_alive: false });
      expect((await cli(["runs", "watch", "--vm", VM, "--run-id", String(run.id), "--exit-status"])).code).toBe(9);
    });

    it("events of a crashed-then-resumed run: launched → orphaned → resumed → done; an old run.sh pin is fixed with resume --engine", async () => {
      const g = gate();
      const run = await launch(SEQ, { tasks: 4, sleepMs: 50, ...g.input });
      g.releaseThrough(1);
      await g.at(2);
      expect((await sh(KILL_RUN, run.control_dir)).code).toBe(0);
      // The guide's Issue 4: run.sh pins an engine the run was not launched with.
      expect((await sh(`sed -i "s/^ENGINE_VERSION=.*/ENGINE_VERSION=0.31.0/" "$1/run.sh"`, run.control_dir)).code).toBe(0);
      const orphaned = await waitStatus(run.id, "orphaned", 30_000);
      const resumeArgs = suggested(orphaned, "OLD_ENGINE_PINNED", `fabrik run resume --id ${run.id} --engine 0.32.0`);
      const cross = await cli(["run", "resume", "--id", String(run.id), "--engine", "0.5.0", "--dry-run"]);
      expect(cross.code).toBe(5);
      expect(cross.stderr).toMatch(/speaks the legacy dialect, but the run's DB has the modern schema/);
      const dry = await cli([...resumeArgs, "--dry-run"]);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/engine: +pinned 0\.31\.0 -> 0\.32\.0 \(--engine\)/);
      g.releaseThrough(4);
      const exits = engineExits(t, VM, run.control_dir);
      const r = await cli([...resumeArgs, "--yes"]);
      expect(r.code, r.stderr).toBe(0);
      // Follow the resumed run's timeline to its end, over the persistent channel.
      const follow = startFabrik(t, ["runs", "events", "--id", String(run.id), "--follow", "--json", "--interval", "0.5"]);
      await waitEngineExit(t, VM, run.control_dir, exits);
      expect(await follow.exited, follow.err()).toBe(0);
      const followed = follow.out().trim().split("\n").map((l) => JSON.parse(l) as { type: string; status?: string });
      expect(followed.at(-1)).toMatchObject({ type: "end", status: "done" });
      const v = await show(run.id);
      expect(v.effective_status).toBe("done");
      expect(v.diagnoses.map((d) => d.code)).not.toContain("OLD_ENGINE_PINNED"); // resume-1.sh pins 0.32.0
      const all = await timeline(run.id);
      expect(all.map((e) => e.at_ms)).toEqual([...all.map((e) => e.at_ms)].sort((a, b) => a - b));
      const ours = all.filter((e) => e.source === "fabrik").map((e) => (e.kind === "status" ? `status:${String(e.detail?.to)}` : e.kind));
      const order = ["launched", "status:orphaned", "resumed", "status:done"].map((k) => ours.indexOf(k));
      expect(order.every((i) => i >= 0), ours.join(", ")).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
      const resumed = all.find((e) => e.kind === "resumed")!;
      expect(resumed.detail).toMatchObject({ engine_from: "0.31.0", engine_to: "0.32.0" });
      expect(String((resumed.detail as { backup?: { path?: string } }).backup?.path)).toMatch(/\/backups\/run-\d+-/);
      const engine = all.filter((e) => e.source === "engine");
      expect(engine.filter((e) => e.kind === "RunStarted")).toHaveLength(2); // the start and the resume
      expect(engine.filter((e) => e.kind === "NodeStarted" && e.node === "step-2")).toHaveLength(2);
      const step2 = await timeline(run.id, ["--node", "step-2"]);
      expect(step2.every((e) => e.source === "engine" && e.node === "step-2")).toBe(true);
    });

    // The rest runs the same guest programs (also run on this host by integration/guest-control.test.ts).
    if (!parts.full) return;

    it("0.5: approve a gate (needsApproval); the run continues to the end", async () => {
      const run = await launch(GATE_05, { sleepMs: 50 }, "0.5.0");
      await waitEngineExit(t, VM, run.control_dir, 0);
      const parked = await waitStatus(run.id, "waiting-approval");
      const approve = suggested(parked, "WAITING", `fabrik run approve --id ${run.id} --node deploy`);
      const exits = engineExits(t, VM, run.control_dir);
      const a = await cli(approve);
      expect(a.code, a.stderr).toBe(0);
      await waitEngineExit(t, VM, run.control_dir, exits);
      await waitStatus(run.id, "done");
      expect((await cli(["run", "signal", "--id", String(run.id), "go"])).stderr).toMatch(/has no signals|already ended/);
    });

    it("runs why on a failed run names the node and its error; runs nodes lists node × iteration with sizes", async () => {
      const run = await launch(SEQ, { tasks: 3, sleepMs: 50, failAt: 2 });
      await waitEngineExit(t, VM, run.control_dir, 0);
      await waitStatus(run.id, "failed");
      // Until the launcher has exited, the run is still settling and why suggests `runs watch` instead of a resume.
      await waitFor(async () => (await show(run.id)).launcher_alive === false, { timeoutMs: 30_000, intervalMs: 250, what: "the launcher to exit" });
      const r = await cli(["runs", "why", "--id", String(run.id), "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const w = json<{ node: { node_id: string; why: string }; attempts: { attempt: number; state: string; error: string; duration_ms: number }[]; retries: number; retries_left: number; events: TimelineJson[]; log_tail: string[]; next_command: string }>(r);
      expect(w.node).toMatchObject({ node_id: "step-2", why: "failed" });
      expect(w.attempts).toHaveLength(1);
      expect(w.attempts[0]).toMatchObject({ attempt: 1, state: "failed" });
      expect(w.attempts[0]!.error).toMatch(/step-2 failed on purpose/);
      expect(w.attempts[0]!.duration_ms).toBeGreaterThanOrEqual(0);
      expect(w.retries).toBe(0);
      expect(w.retries_left).toBe(0);
      expect(w.events.map((e) => e.kind)).toContain("NodeFailed");
      expect(w.log_tail.join("\n")).toMatch(/engine exited with code 1/);
      expect(w.next_command).toBe(`fabrik run resume --id ${run.id}`);
      const text = await cli(["runs", "why", "--id", String(run.id)]);
      expect(text.stdout).toMatch(/node: step-2 failed/);
      expect(text.stdout).toMatch(/#1 failed/);
      expect(text.stdout).toMatch(new RegExp(`next: fabrik run resume --id ${run.id}\\n`));
      const n = await cli(["runs", "nodes", "--id", String(run.id), "--json"]);
      expect(n.code, n.stderr).toBe(0);
      const rows = json<{ node_id: string; iteration: number; state: string; attempts: number; response_bytes: number | null; error_bytes: number | null }[]>(n);
      expect(rows.map((x) => [x.node_id, x.iteration, x.state, x.attempts])).toEqual([
        ["step-1", 0, "finished", 1],
        ["step-2", 0, "failed", 1],
        ["step-3", 0, "pending", 0],
      ]);
      expect(rows[1]!.error_bytes).toBeGreaterThan(0);
    });

    it("compact a finished run: dry-run changes nothing; values fit the limit; the backup keeps the original; a live run is refused", async () => {
      const run = await launch(SEQ, { tasks: 2, sleepMs: 50 });
      await waitEngineExit(t, VM, run.control_dir, 0);
      await waitStatus(run.id, "done");
      // The launcher writes exit_code, then its last heartbeat, then exits: compact wants no process of the run alive.
      await waitFor(async () => (await show(run.id)).launcher_alive === false, { timeoutMs: 30_000, intervalMs: 250, what: "the launcher to exit" });
      const big = 300_000;
      const write = `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1]); d.exec("PRAGMA busy_timeout = 5000");
        d.query("update _smithers_attempts set response_text = ? where run_id = ? and node_id = 'step-1'").run("x".repeat(${big}) + "END", process.argv[2]); d.close();`;
      expect((await cli(["vm", "shell", VM, "--", bun(), "-e", write, run.db_path, run.smithers_run_id])).code).toBe(0);
      const v = await show(run.id);
      suggested(v, "OVERSIZED_VALUES", `fabrik run compact --id ${run.id}`);
      /** Every file under the run's `.smithers/` (the DB, its -wal/-shm, the engine's execution logs), hashed. */
      const hash = () => {
        const dir = hostPathOf(t, VM, path.dirname(run.db_path));
        const walk = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
        return walk(dir).sort().map((f) => `${path.relative(dir, f)}:${createHash("sha256").update(fs.readFileSync(f)).digest("hex")}`).join("\n");
      };
      const before = hash();
      const dry = await cli(["run", "compact", "--id", String(run.id), "--dry-run"]);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/verdict: +allowed/);
      expect(dry.stdout).toMatch(/1 value\(s\) over it now/);
      expect(hash()).toBe(before);
      const r = await cli(["run", "compact", "--id", String(run.id), "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const out = json<{ vm_result: { fix: { values: number; limit_bytes: number }; backup: { path: string } } }>(r);
      expect(out.vm_result.fix).toMatchObject({ values: 1, limit_bytes: 102_400 });
      const [row] = (await dbQuery(run.db_path, "select octet_length(response_text) as n, substr(response_text, -3) as tail from _smithers_attempts where run_id = ? and node_id = 'step-1'", run.smithers_run_id)) as { n: number; tail: string }[];
      expect(row!.n).toBeLessThanOrEqual(102_400);
      expect(row!.tail).toBe("END");
      const [orig] = (await dbQuery(out.vm_result.backup.path, "select octet_length(response_text) as n from _smithers_attempts where run_id = ? and node_id = 'step-1'", run.smithers_run_id)) as { n: number }[];
      expect(orig!.n).toBe(big + 3);
      const after = await show(run.id);
      expect(after.diagnoses.map((d) => d.code)).not.toContain("OVERSIZED_VALUES");
      const events = (await timeline(run.id)).filter((e) => e.kind === "compact");
      expect(events).toHaveLength(1);

      const g = gate();
      const live = await launch(SEQ, { tasks: 2, sleepMs: 50, ...g.input });
      await g.at(1);
      const refused = await cli(["run", "compact", "--id", String(live.id)]);
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/compact works on ended runs only/);
      g.dispose();
    });
  });
}

/** The reused-pid story: judged dead, resumed with no pid file removed, the unrelated process untouched. */
function reusedPid(title: string, setup: () => Promise<{ t: TestEnv; vm: string; home: string }>) {
  describe(title, () => {
    let t: TestEnv;
    let VM = "";
    const g = new Gate();
    afterAll(() => g.dispose());
    beforeAll(async () => {
      ({ t, vm: VM } = await setup());
    }, 900_000);
    const cli = (args: string[]) => fabrik(t, args, { timeoutMs: 180_000 });
    const sh = (script: string, ...args: string[]) => cli(["vm", "shell", VM, "--", "bash", "-c", script, "fabrik-test", ...args]);

    it("a pid reused by an unrelated process is judged dead (PID_REUSED); the run is found stuck, cancelled without signalling it, and resumed", async () => {
      const r0 = await cli(["run", "--vm", VM, "--workflow", SEQ, "--input", JSON.stringify({ tasks: 3, sleepMs: 50, ...g.input }), "--json"]);
      expect(r0.code, r0.stderr).toBe(0);
      const run = json<Launched>(r0);
      g.releaseThrough(1);
      await g.at(2);
      expect((await sh(KILL_RUN, run.control_dir)).code).toBe(0);
      // An unrelated process gets the engine's pid: written where the run's pids are, as after a crash and reuse —
      // in pids.json with another start time (the launcher's record), and as an old bare-number pid file.
      // Its own session (setsid), so it outlives the shell that started it; it records its pid, then becomes `sleep 900`.
      const started = await sh(String.raw`f=$(mktemp); setsid -f bash -c 'echo $$ > "$1"; exec sleep 900' fabrik-sleeper "$f" </dev/null >/dev/null 2>&1
for i in $(seq 1 100); do [ -s "$f" ] && break; sleep 0.05; done; cat "$f"; rm -f "$f"`);
      const sleeper = Number(started.stdout.trim());
      expect(sleeper, started.stderr).toBeGreaterThan(1);
      const reuse = String.raw`cd "$1" || exit 1
read -r boot </proc/sys/kernel/random/boot_id
printf '{"v":1,"boot_id":"%s","launcher":null,"child":{"pid":%s,"start_ticks":1},"engine":{"pid":%s,"start_ticks":1}}\n' "$boot" "$2" "$2" > pids.json
echo "$2" > engine.pid; echo "$2" > smithers.pid`;
      expect((await sh(reuse, run.control_dir, String(sleeper))).code).toBe(0);
      let v = json<View>(await cli(["runs", "show", "--id", String(run.id), "--json"]));
      await waitFor(async () => (v = json<View>(await cli(["runs", "show", "--id", String(run.id), "--json"]))).effective_status === "orphaned", { timeoutMs: 30_000, intervalMs: 500, what: "orphaned", describe: () => JSON.stringify(v) });
      const reused = v.diagnoses.find((d) => d.code === "PID_REUSED");
      expect(reused?.message, JSON.stringify(v.diagnoses)).toMatch(new RegExp(`${sleeper} \\(engine\\.pid, now \`sleep 900\`: reused\\)`));
      expect(reused?.next_command).toBe(`fabrik run resume --id ${run.id}`);
      // The old pid-file format: no identity recorded, judged by the command line.
      expect((await sh(`rm -f "$1/pids.json"`, run.control_dir)).code).toBe(0);
      v = json<View>(await cli(["runs", "show", "--id", String(run.id), "--json"]));
      expect(v.effective_status).toBe("orphaned");
      expect(v.diagnoses.find((d) => d.code === "PID_REUSED")?.message).toMatch(/sleep 900`: foreign\)/);
      // Found across the fleet as stuck, and by its live status.
      const stuck = json<{ id: number }[]>(await cli(["runs", "list", "--stuck", "--json"]));
      expect(stuck.map((x) => x.id)).toContain(run.id);
      const orphans = json<{ id: number; effective_status: string }[]>(await cli(["runs", "list", "--status", "orphaned", "--json"]));
      expect(orphans.find((x) => x.id === run.id)?.effective_status).toBe("orphaned");
      // Cancel an orphaned run: the DB is marked cancelled; the process with the reused pid is never signalled.
      const c = await cli(["run", "cancel", "--id", String(run.id), "--yes", "--json"]);
      expect(c.code, c.stderr).toBe(0);
      const co = json<{ vm_result: { signals: unknown[]; status_after: string } }>(c);
      expect(co.vm_result.signals).toEqual([]);
      expect(co.vm_result.status_after).toBe("cancelled");
      // Resume proceeds with the pid files as they are (nothing deleted by hand).
      g.releaseThrough(3);
      const exits = engineExits(t, VM, run.control_dir);
      const r = await cli(["run", "resume", "--id", String(run.id), "--yes"]);
      expect(r.code, r.stderr).toBe(0);
      await waitEngineExit(t, VM, run.control_dir, exits);
      await waitFor(async () => (v = json<View>(await cli(["runs", "show", "--id", String(run.id), "--json"]))).effective_status === "done", { timeoutMs: 60_000, intervalMs: 500, what: "done", describe: () => JSON.stringify(v) });
      expect((await sh(`kill -0 "$1" && echo alive`, String(sleeper))).stdout.trim()).toBe("alive");
      await sh(`kill "$1"`, String(sleeper));
    });
  });
}

describe.skipIf(skip)(titled("run-level commands (real engines)", skip), () => {
  let fleet: Awaited<ReturnType<typeof workerFleet>> | undefined;
  let localName = "";
  const standin = async () => {
    fleet ??= await workerFleet({ thresholds: { engine_heartbeat_stale_ms: 2000 } });
    const rows = json<{ name: string; guest_home: string }[]>(await fabrik(fleet, ["vm", "list", "--json"]));
    return { t: fleet as TestEnv, vm: fleet.vm, home: rows.find((r) => r.name === fleet!.vm)!.guest_home };
  };
  /** A local VM in the fleet's FABRIK_HOME, with the stand-in VM's engine installs hard-linked in. */
  const local = async () => {
    const s = await standin();
    if (!localName) {
      localName = localVmName("ctl");
      const r = await fabrik(s.t, ["vm", "create", localName, "--driver", "local", "--no-engine"], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const rows = json<{ name: string; guest_home: string }[]>(await fabrik(s.t, ["vm", "list", "--json"]));
      const home = rows.find((x) => x.name === localName)!.guest_home;
      fs.mkdirSync(path.join(home, ".fabrik"), { recursive: true });
      const cp = await runProc("cp", ["-al", path.join(hostPathOf(s.t, s.vm, s.home), ".fabrik", "engines"), path.join(home, ".fabrik")], { timeoutMs: 120_000 });
      expect(cp.code, cp.stderr).toBe(0);
    }
    const rows = json<{ name: string; guest_home: string }[]>(await fabrik(s.t, ["vm", "list", "--json"]));
    return { t: s.t, vm: localName, home: rows.find((x) => x.name === localName)!.guest_home };
  };
  afterAll(async () => {
    if (fleet && localName) await fabrik(fleet, ["vm", "delete", "--force", localName], { timeoutMs: 60_000 });
    if (fleet) fs.rmSync(fleet.tmp, { recursive: true, force: true });
  });

  suite("in the stand-in Lima VM", standin, { full: true });
  reusedPid("in the stand-in Lima VM: a reused pid", standin);
  suite("in a local VM", local, { full: true });
  reusedPid("in a local VM: a reused pid", local);
});
