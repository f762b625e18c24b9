/**
 * Reliability: fabrik itself dies (docs/reliability.md, "fabrik killed, fabrik crowded").
 *
 * - SIGKILL of a fabrik command at random points (the OOM killer, a closed laptop, `kill -9`): `run` (launch),
 *   `run resume --yes`, `runs list` (a live list writes every run it checked back to the registry), `runs import`
 *   and `config set`. Only the fabrik process is killed — what it started in the VM goes on, as it would. After
 *   every kill: the registry passes `PRAGMA integrity_check` and lost nothing (every run still there, whole; the
 *   control dirs and DBs of finished runs byte-identical), the config file is the old or the new one, never half,
 *   and the next command tells the truth and settles the journal (a launch or resume the VM did apply is recorded;
 *   one it did not apply changed nothing and the next resume works).
 * - 20 fabrik processes at once on one registry (live list write-backs, imports, config sets, shows): every one
 *   ends with exit 0, no SQLITE_BUSY / "database is locked" reaches anyone, integrity_check is ok, no row and no
 *   config key is lost.
 *
 * The kill points are drawn from a seeded PRNG over the measured duration of the same command (the seed is
 * printed; `FABRIK_RELIABILITY_SEED=<n>` replays a run), plus one point per command set by an event: when its
 * guest program (the probe, the import's reads, the resume's apply, the launch script) is running in the VM. A kill
 * that comes after the command already ended does not count: the point is drawn again, earlier, so every case
 * really kills a running fabrik.
 *
 * Real parts: the built CLI, a local-driver VM with the real 0.32 engine (examples/workflows/seq.tsx, gated).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { FABRIK_BIN, disposeTestEnv, fabrik, json, localVmName, makeTestEnv, waitFor, type CliResult, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { run, sleep } from "../helpers/proc.js";
import { DB_DUMP_HASH, guestHomeOf, registryDump, registryIntegrity, treeHashes, waitEngineExitIn } from "../helpers/reliability.js";

const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
/** Kill points per command. */
const POINTS = 3;
const SEED = Number(process.env.FABRIK_RELIABILITY_SEED ?? Date.now() % 1_000_000);

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Launched {
  id: number;
  control_dir: string;
  db_path: string;
  smithers_run_id: string;
}
interface RunRow {
  id: number;
  vm: string;
  control_dir: string;
  smithers_run_id: string;
  smithers_db_path: string;
  status: string;
  resume_count: number;
  pending_json: string | null;
  launcher_pid: number | null;
}

/** `pid`'s parent, or 0. */
function ppidOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

/** Live (not zombie) processes whose ancestors include `root`, with their command lines. */
function descendantsOf(root: number): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    let cur = pid;
    for (let i = 0; i < 32 && cur > 1; i++) {
      cur = ppidOf(cur);
      if (cur === root) {
        if (alive(pid)) out.push({ pid, cmdline: cmdlineOf(pid) });
        break;
      }
    }
  }
  return out;
}

function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** How a killed command ended: whether the SIGKILL landed while it ran, and what it had started by then. */
interface Killed {
  /** The SIGKILL ended it (false: it exited on its own first, the kill point came too late). */
  killed: boolean;
  code: number | null;
  afterMs: number;
  /** Its descendants at the moment of the kill (they live on: only fabrik is killed). */
  children: { pid: number; cmdline: string }[];
  /** With an event: the child process whose command line matched, seen running just before the kill. */
  matched?: { pid: number; cmdline: string } | undefined;
  stderr: string;
}

describe("reliability: fabrik SIGKILLed at random points, and 20 at once (local driver, real engine)", () => {
  let t: TestEnv;
  let LOC = "";
  let home = "";
  let bun = "";
  let scratch = "";
  const rnd = prng(SEED);
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  /** Finished runs: their control dirs (DB inside) must never change again. */
  const finished: Launched[] = [];
  let finishedTrees: Record<string, Record<string, string>> = {};
  /** A run held at task 2: live, so a live list has something to write back. */
  let held: Launched;
  let heldGate: Gate;

  const cli = (args: string[], timeoutMs = 120_000): Promise<CliResult> => fabrik(t, args, { timeoutMs });
  const launch = async (input: object): Promise<Launched> => {
    const r = await cli(["run", "--vm", LOC, "--workflow", SEQ, "--input", JSON.stringify(input), "--json"], 300_000);
    expect(r.code, r.stderr).toBe(0);
    return json<Launched>(r);
  };
  const rows = async (): Promise<RunRow[]> => (await registryDump(t.fabrikHome)).runs as unknown as RunRow[];
  const show = async (id: number) => json<{ effective_status: string; status: string; resume_count: number }>(await cli(["runs", "show", "--id", String(id), "--json"]));
  const dbData = async (db: string): Promise<{ hash: string; rows: number }> => {
    const r = await run(bun, ["-e", DB_DUMP_HASH, db], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`dump of ${db}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim()) as { hash: string; rows: number };
  };

  /**
   * Run `fabrik args` and SIGKILL it `delayMs` after it started, or (`when`) as soon as one of its child processes'
   * command lines matches — an event, e.g. "the VM is being asked to apply". Frozen first, so its children can be listed.
   */
  async function killAt(args: string[], delayMs: number, when?: RegExp): Promise<Killed> {
    const started = Date.now();
    const p = spawn(process.execPath, [FABRIK_BIN, ...args], { env: t.env, cwd: REPO_ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let matched: Killed["matched"];
    p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    let ended = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      p.on("exit", (code, signal) => {
        ended = true;
        resolve({ code, signal });
      }),
    );
    if (when) {
      const seen = async () => {
        for (;;) {
          if (ended) return;
          const m = descendantsOf(p.pid!).find((c) => when.test(c.cmdline));
          if (m) return void (matched = m);
          await sleep(5);
        }
      };
      await Promise.race([seen(), exited, sleep(120_000)]);
    } else await Promise.race([sleep(delayMs), exited]);
    let children: Killed["children"] = [];
    if (!ended) {
      p.kill("SIGSTOP");
      children = descendantsOf(p.pid!);
      p.kill("SIGKILL");
    }
    const { code, signal } = await exited;
    return { killed: signal === "SIGKILL", code, afterMs: Date.now() - started, children, matched, stderr };
  }

  /**
   * SIGKILL `fabrik args()` at a random point of its measured duration `durationMs`; drawn again, earlier, when the
   * command had already ended (up to 6 times). Returns the kill (it always landed) after what it started in the VM
   * has ended.
   */
  async function killSomewhere(what: string, args: () => string[], durationMs: number, i: number, onMissed?: () => Promise<void>, when?: RegExp): Promise<Killed> {
    let delay = Math.round(durationMs * ((i + rnd()) / POINTS));
    for (let attempt = 0; attempt < 6; attempt++) {
      const k = await killAt(args(), delay, when);
      if (k.killed) {
        const point = when ? `when ${when.source} ran` : `point ${delay} ms of ~${durationMs} ms`;
        console.log(`[kills] seed ${SEED}: ${what} #${i} SIGKILLed after ${k.afterMs} ms (${point}); children: ${k.children.map((c) => c.cmdline.replace(/\s+/g, " ").slice(0, 80)).join(" | ") || "none"}`);
        if (when) expect(k.matched, `${what}: killed once ${when.source} ran`).toBeDefined();
        // What fabrik started (a guest program, the launch script) goes on: wait for it, except the detached launcher.
        const guest = k.children.filter((c) => !/^\S*bash \S+\/run\.sh /.test(c.cmdline));
        await waitFor(() => guest.every((c) => !alive(c.pid)), { timeoutMs: 120_000, intervalMs: 50, what: `what ${what} started to end`, describe: () => guest.map((c) => `${c.pid} ${c.cmdline}`).join("\n") });
        return k;
      }
      expect(k.code, `${what}: exited ${k.code} before the kill point: ${k.stderr}`).toBe(0);
      await onMissed?.();
      delay = Math.floor(delay / 2);
    }
    throw new Error(`${what}: the command always ended before its kill point (seed ${SEED})`);
  }

  /** Time one run of `fabrik args`, which must succeed. */
  async function measure(args: string[]): Promise<number> {
    const started = Date.now();
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(0);
    return Date.now() - started;
  }

  /** What must hold after any kill: a sound registry, every run still there and whole, finished runs untouched. */
  async function nothingLost(before: RunRow[], what: string): Promise<RunRow[]> {
    expect(await registryIntegrity(t.fabrikHome), `${what}: integrity_check`).toBe("ok");
    expect(fs.existsSync(path.join(t.fabrikHome, "registry.db-journal")), `${what}: a rollback journal left`).toBe(false);
    const after = await rows();
    const whole = (r: RunRow) => ({ id: r.id, vm: r.vm, control_dir: r.control_dir, smithers_run_id: r.smithers_run_id, smithers_db_path: r.smithers_db_path });
    const ids = new Set(after.map((r) => r.id));
    for (const r of before) {
      expect(ids.has(r.id), `${what}: run ${r.id} lost from the registry`).toBe(true);
      expect(whole(after.find((x) => x.id === r.id)!), `${what}: run ${r.id}`).toEqual(whole(r));
    }
    for (const f of finished) expect(treeHashes(f.control_dir), `${what}: the control dir (DB included) of finished run ${f.id}`).toEqual(finishedTrees[f.control_dir]);
    return after;
  }

  /** Remove the finished runs from the registry (rows and events), so that `runs import` has them to register again. */
  async function forget(): Promise<void> {
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(path.join(t.fabrikHome, "registry.db"));
    try {
      db.transaction(() => {
        for (const f of finished) {
          db.prepare("DELETE FROM run_events WHERE run_id IN (SELECT id FROM runs WHERE smithers_run_id = ?)").run(f.smithers_run_id);
          db.prepare("DELETE FROM runs WHERE smithers_run_id = ?").run(f.smithers_run_id);
        }
      })();
    } finally {
      db.close();
    }
  }

  /** The engine of run `r` and its launcher group, killed (a crash mid-task); waits for `orphaned`. */
  async function crash(r: Launched): Promise<void> {
    const launcher = readPid(path.join(r.control_dir, "launcher.pid"));
    for (const pid of [launcher && -launcher, launcher, readPid(path.join(r.control_dir, "smithers.pid")), readPid(path.join(r.control_dir, "engine.pid"))]) {
      try {
        if (pid) process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    let last: unknown;
    await waitFor(async () => ((last = await show(r.id)) as { effective_status: string }).effective_status === "orphaned", { timeoutMs: 60_000, intervalMs: 300, what: `run ${r.id} to be orphaned`, describe: () => JSON.stringify(last) });
    // A resume refuses while the engine's heartbeat is younger than the stale threshold (2 s here): wait until its
    // dry run (which changes nothing) would go ahead.
    let dry: CliResult | undefined;
    await waitFor(async () => (dry = await cli(["run", "resume", "--id", String(r.id), "--dry-run"])).code === 0, { timeoutMs: 30_000, intervalMs: 500, what: `run ${r.id} to be resumable`, describe: () => dry?.stderr ?? "" });
  }

  beforeAll(async () => {
    t = makeTestEnv("kills-");
    fs.writeFileSync(t.env.FABRIK_CONFIG!, JSON.stringify({ thresholds: { engine_heartbeat_stale_ms: 2000 } }));
    // fabrik's own temporary files (a launch's staging folder) go here, where the test can see what a kill leaves.
    scratch = path.join(t.tmp, "tmpdir");
    fs.mkdirSync(scratch);
    t.env.TMPDIR = scratch;
    LOC = localVmName("kill");
    const c = await fabrik(t, ["vm", "create", LOC, "--driver", "local"], { timeoutMs: 600_000 });
    expect(c.code, c.stderr).toBe(0);
    home = await guestHomeOf(t, LOC);
    bun = path.join(home, ".fabrik/engines/0.32.0/.runtime/node_modules/.bin/bun");
    for (let i = 0; i < 2; i++) {
      const r = await launch({ tasks: 2, sleepMs: 20 });
      await waitEngineExitIn(path.join(r.control_dir, "reports/smithers.log"));
      await waitFor(async () => (await show(r.id)).effective_status === "done", { timeoutMs: 60_000, intervalMs: 300, what: `run ${r.id} to be done` });
      await waitFor(() => !alive(readPid(path.join(r.control_dir, "launcher.pid")) ?? 0), { timeoutMs: 60_000, intervalMs: 100, what: `run ${r.id}'s launcher to end` });
      finished.push(r);
    }
    finishedTrees = Object.fromEntries(finished.map((f) => [f.control_dir, treeHashes(f.control_dir)]));
    heldGate = gate();
    held = await launch({ tasks: 3, sleepMs: 20, ...heldGate.input });
    heldGate.release(1);
    await heldGate.at(2);
  }, 900_000);

  afterAll(async () => {
    for (const g of gates) g.dispose();
    await disposeTestEnv(t);
  });

  it("runs list (live write-back) SIGKILLed at random points: registry sound, nothing lost, the next list is right", async () => {
    const args = ["runs", "list", "--json"];
    const d = await measure(args);
    for (let i = 0; i <= POINTS; i++) {
      const before = await rows();
      await killSomewhere("runs list", () => args, d, i, undefined, i === POINTS ? /\.fabrik\/guest\// : undefined);
      await nothingLost(before, `runs list #${i}`);
      const list = json<{ id: number; status: string }[]>(await cli(args));
      expect(list.map((r) => r.id).sort()).toEqual(before.map((r) => r.id).sort());
      for (const f of finished) expect(list.find((r) => r.id === f.id)?.status).toBe("done");
      expect(list.find((r) => r.id === held.id)?.status).toBe("running");
    }
  }, 600_000);

  it("runs import SIGKILLed at random points: every run comes back exactly once, nothing else changes", async () => {
    // Forget the finished runs, so the import has rows to write; the kill lands somewhere in that work.
    const args = ["runs", "import", "--vm", LOC, "--json"];
    await forget();
    const d = await measure(args);
    for (let i = 0; i <= POINTS; i++) {
      await forget();
      const before = await rows();
      await killSomewhere("runs import", () => args, d, i, async () => forget(), i === POINTS ? /\.fabrik\/guest\// : undefined);
      const after = await nothingLost(before, `runs import #${i}`);
      for (const f of finished) expect(after.filter((r) => r.smithers_run_id === f.smithers_run_id).length, `run ${f.smithers_run_id} after the kill`).toBeLessThanOrEqual(1);
      const next = await cli(args);
      expect(next.code, next.stderr).toBe(0);
      const all = await rows();
      for (const f of finished) {
        const mine = all.filter((r) => r.smithers_run_id === f.smithers_run_id);
        expect(mine, `run ${f.smithers_run_id} after the next import`).toHaveLength(1);
        expect(mine[0]!.control_dir).toBe(f.control_dir);
        expect((await show(mine[0]!.id)).effective_status).toBe("done");
      }
    }
  }, 600_000);

  it("config set SIGKILLed at random points: the file is the old or the new one, never half; nothing left behind", async () => {
    const file = t.env.FABRIK_CONFIG!;
    const d = await measure(["config", "set", "probe.timeout_ms", "5000"]);
    let value = 5000;
    for (let i = 0; i < POINTS; i++) {
      const old = fs.readFileSync(file, "utf8");
      const next = ++value;
      const before = await rows();
      const k = await killSomewhere("config set", () => ["config", "set", "probe.timeout_ms", String(next)], d, i);
      expect(k.killed).toBe(true);
      const now = fs.readFileSync(file, "utf8");
      const parsed = JSON.parse(now) as { probe?: { timeout_ms?: number }; thresholds?: unknown };
      expect([JSON.parse(old).probe?.timeout_ms, next], `config set #${i}: ${now}`).toContain(parsed.probe?.timeout_ms);
      expect(parsed.thresholds, "the other keys").toEqual({ engine_heartbeat_stale_ms: 2000 });
      await nothingLost(before, `config set #${i}`);
      const get = await cli(["config", "get", "probe.timeout_ms"]);
      expect(get.code, get.stderr).toBe(0);
      expect(get.stdout.trim()).toBe(String(parsed.probe?.timeout_ms));
      const left = fs.readdirSync(path.dirname(file)).filter((n) => n.startsWith(`${path.basename(file)}.tmp`));
      // A kill between the write and the rename leaves the temporary file: the next set removes it... or not.
      if (left.length) console.log(`[kills] config set #${i} left ${left.join(", ")}`);
      for (const n of left) fs.rmSync(path.join(path.dirname(file), n));
      value = parsed.probe?.timeout_ms ?? value;
    }
  }, 300_000);

  it("run (launch) SIGKILLed at random points: what the VM started is recorded and finishes; what it did not is never called running", async () => {
    const input = JSON.stringify({ tasks: 1, sleepMs: 20 });
    const args = ["run", "--vm", LOC, "--workflow", SEQ, "--input", input, "--json"];
    const d = await measure(args);
    for (let i = 0; i <= POINTS; i++) {
      const before = await rows();
      const maxId = Math.max(...before.map((r) => r.id));
      // A launch that went through before its kill point is a run like the others (checked below).
      await killSomewhere("run", () => args, d, i, undefined, i === POINTS ? /fabrik-launch/ : undefined);
      const after = await nothingLost(before, `run #${i}`);
      const fresh = after.filter((r) => r.id > maxId);
      expect(fresh.length, `run #${i}: rows added`).toBeLessThanOrEqual(POINTS * 6);
      for (const r of fresh) {
        const started = fs.existsSync(path.join(r.control_dir, "launcher.pid"));
        if (started) {
          // The VM started it: the engine runs to the end, and the next live look records the launch.
          await waitEngineExitIn(path.join(r.control_dir, "reports/smithers.log"));
          let v: { effective_status: string; status: string } | undefined;
          await waitFor(async () => (v = await show(r.id)).effective_status === "done", { timeoutMs: 60_000, intervalMs: 300, what: `launched run ${r.id} to be done`, describe: () => JSON.stringify(v) });
          const row = (await rows()).find((x) => x.id === r.id)!;
          expect(row.status, `run #${i}: run ${r.id} in the cache`).toBe("done");
          expect(row.pending_json, `run #${i}: run ${r.id}'s launch is settled`).toBeNull();
        } else {
          // Nothing was started: it must not be called running or done, and nothing of it runs.
          const v = await show(r.id);
          console.log(`[kills] run #${i}: run ${r.id} never started in the VM: ${v.effective_status} (cache ${v.status})`);
          expect(["running", "done", "finished"]).not.toContain(v.effective_status);
        }
      }
      const staging = fs.readdirSync(scratch).filter((n) => n.startsWith("fabrik-launch-"));
      if (staging.length) console.log(`[kills] run #${i}: left its staging folder ${staging.join(", ")} in TMPDIR (the next launch removes it)`);
    }
    // A killed launch leaves its staging folder (the run's input, secrets included); the next launch removes it.
    const next = await launch({ tasks: 1, sleepMs: 20 });
    expect(fs.readdirSync(scratch).filter((n) => n.startsWith("fabrik-launch-")), "staging folders of killed launches").toEqual([]);
    await waitEngineExitIn(path.join(next.control_dir, "reports/smithers.log"));
  }, 900_000);

  it("run resume --yes SIGKILLed at random points: the DB untouched or reset and running, never half; the journal settles; the next resume works", async () => {
    const g = gate();
    const r = await launch({ tasks: 3, sleepMs: 20, ...g.input });
    g.release(1, 2);
    await g.at(3);
    await crash(r);
    const args = ["run", "resume", "--id", String(r.id), "--yes"];
    // The resume's duration, measured on its dry run (the --yes path does that and more).
    const d = 2 * (await measure(["run", "resume", "--id", String(r.id), "--dry-run"]));
    let applied = 0;
    let journalledOnly = 0;
    for (let i = 0; i <= POINTS; i++) {
      let before: RunRow[] = [];
      let row0 = {} as RunRow;
      let data0 = { hash: "", rows: 0 };
      let launcher0: number | undefined;
      const baseline = async () => {
        before = await rows();
        row0 = before.find((x) => x.id === r.id)!;
        data0 = await dbData(r.db_path);
        launcher0 = readPid(path.join(r.control_dir, "launcher.pid"));
        g.forget(3);
      };
      await baseline();
      // The last point: when the VM is being asked to apply it (the journal is written, the VM goes on without fabrik).
      await killSomewhere("run resume --yes", () => args, d, i, async () => {
        // It went through before the kill point: the resumed engine is at task 3; crash it again, start over.
        await g.at(3);
        await crash(r);
        await baseline();
      }, i === POINTS ? /resume\.js apply/ : undefined);
      await nothingLost(before, `run resume #${i}`);
      const row1 = (await rows()).find((x) => x.id === r.id)!;
      const launcher1 = readPid(path.join(r.control_dir, "launcher.pid"));
      if (launcher1 !== launcher0) {
        // The VM applied it: the engine went back to task 3, and the next live look records the resume.
        applied++;
        await g.at(3);
        let v: { resume_count: number; effective_status: string } | undefined;
        await waitFor(async () => (v = await show(r.id)).resume_count === row0.resume_count + 1, { timeoutMs: 60_000, intervalMs: 300, what: `run resume #${i}: the resume to be recorded`, describe: () => JSON.stringify(v) });
        expect(v!.effective_status).toBe("running");
        expect((await rows()).find((x) => x.id === r.id)!.pending_json).toBeNull();
        await crash(r);
      } else {
        // Not applied: the DB's data is exactly as before, the run is still orphaned, the count unchanged.
        if (row1.pending_json) journalledOnly++;
        expect(await dbData(r.db_path), `run resume #${i}: the DB`).toEqual(data0);
        const v = await show(r.id);
        expect(v.effective_status).toBe("orphaned");
        expect(v.resume_count).toBe(row0.resume_count);
      }
    }
    console.log(`[kills] run resume: ${applied} kill(s) the VM applied anyway, ${journalledOnly} after the journal only, ${POINTS + 1 - applied - journalledOnly} before it`);
    expect(applied, "the kill while the VM applies it (the last point) is applied by the VM").toBeGreaterThanOrEqual(1);
    // The next resume works, and the run ends.
    g.releaseThrough(3);
    const ok = await cli(args);
    expect(ok.code, ok.stderr).toBe(0);
    await waitFor(async () => (await show(r.id)).effective_status === "done", { timeoutMs: 120_000, intervalMs: 300, what: "the resumed run to finish" });
    const final = (await rows()).find((x) => x.id === r.id)!;
    expect(final.pending_json).toBeNull();
    expect(final.status).toBe("done");
  }, 900_000);

  it("20 fabrik processes at once on one registry: all exit 0, no SQLITE_BUSY, integrity ok, no row or key lost", async () => {
    // The five imports race to register the same two runs (the finished ones, forgotten first).
    await forget();
    const before = await rows();
    const keys = ["thresholds.task_running_long_ms", "thresholds.vm_idle_ms", "thresholds.db_size_warn_bytes", "probe.timeout_ms", "launcher.heartbeat_interval_s"] as const;
    const values = ["7200001", "3600001", "104857601", "5001", "9"];
    const jobs: string[][] = [];
    for (let i = 0; i < 5; i++) {
      jobs.push(["runs", "list", "--json"]);
      jobs.push(["runs", "import", "--vm", LOC, "--json"]);
      jobs.push(["config", "set", keys[i]!, values[i]!]);
      jobs.push(["runs", "show", "--id", String(held.id), "--json"]);
    }
    const spans: { start: number; end: number }[] = [];
    const results = await Promise.all(
      jobs.map(async (a) => {
        const start = Date.now();
        const r = await cli(a, 120_000);
        spans.push({ start, end: Date.now() });
        return { a, r };
      }),
    );
    // They really overlapped: the last one started before the first one ended.
    expect(Math.max(...spans.map((s) => s.start))).toBeLessThan(Math.min(...spans.map((s) => s.end)));
    for (const { a, r } of results) {
      expect(r.code, `${a.join(" ")}: ${r.stderr}`).toBe(0);
      expect(r.stderr + r.stdout, a.join(" ")).not.toMatch(/SQLITE_BUSY|database is locked|SQLITE_LOCKED/i);
    }
    await nothingLost(before, "20 at once");
    // Five imports at once registered every run of the VM exactly once (and those already known, not again).
    const all = await rows();
    const sids = [...new Set([...before.map((r) => r.smithers_run_id), ...finished.map((f) => f.smithers_run_id)])];
    for (const sid of sids) expect(all.filter((r) => r.smithers_run_id === sid), `run ${sid}`).toHaveLength(1);
    expect(all).toHaveLength(sids.length);
    const config = JSON.parse(fs.readFileSync(t.env.FABRIK_CONFIG!, "utf8")) as Record<string, Record<string, number>>;
    keys.forEach((k, i) => {
      const [a, b] = k.split(".") as [string, string];
      expect(config[a]?.[b], `config key ${k} after 5 concurrent sets of different keys: ${JSON.stringify(config)}`).toBe(Number(values[i]));
    });
  }, 300_000);
});
