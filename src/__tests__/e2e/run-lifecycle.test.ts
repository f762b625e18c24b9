/**
 * Issues 3 and 4 end to end, with the REAL engine in VMs of each driver (stand-in Lima VMs, real SSH hosts) and a
 * local VM, through the built CLI: launch, the launcher contract's files, a failing run, SIGTERM to the launcher, a
 * SIGKILLed engine that `runs show` must call orphaned, a powered-off VM that must show as unreachable, `runs list`
 * over several VMs with one powered off, and `runs import`.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { disposeTestEnv, fabrik, hostPathOf, json, localVmName, makeTestEnv, waitEngineExit, waitFor, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { titled } from "../helpers/prereq.js";
import { E2E_DRIVERS, driverFleet, driverSkip, type DriverFleet } from "../helpers/driver-fleet.js";
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
const SEQ_LEGACY = path.join(REPO_ROOT, "examples/workflows-legacy/seq.tsx");

interface Launched {
  id: number;
  vm: string;
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  engine_version: string;
}
interface View {
  id: number;
  status: string;
  effective_status: string;
  source: string;
  engine_run_status: string | null;
  current_task: string | null;
  progress: { finished: number; total: number; by_state: Record<string, number> } | null;
  exit_code: number | null;
  engine_alive: boolean | null;
  launcher_alive: boolean | null;
  heartbeat_age_ms: number | null;
  mismatches: { field: string; cache: unknown; live: unknown }[];
  diagnoses: { code: string; message: string; next_command: string | null }[];
  cache_updated: boolean;
  last_failed: { node_id: string; error: string | null } | null;
  unreachable_reason: string | null;
  smithers_run_id: string;
  db_size_bytes: number | null;
  checked_at: string | null;
}

async function guest(t: TestEnv, vm: string, script: string): Promise<{ code: number; out: string }> {
  const r = await fabrik(t, ["vm", "shell", vm, "--", "bash", "-c", script]);
  return { code: r.code, out: r.stdout };
}

async function launch(t: TestEnv, vm: string, wf: string, input: object, extra: string[] = []): Promise<Launched> {
  const r = await fabrik(t, ["run", "--vm", vm, "--workflow", wf, "--input", JSON.stringify(input), "--json", ...extra], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  return json<Launched>(r);
}

const show = async (t: TestEnv, id: number, extra: string[] = []) => json<View>(await fabrik(t, ["runs", "show", "--id", String(id), "--json", ...extra]));

/** Wait until the run's engine has exited (its log says so), then until `runs show` calls the run over. */
async function waitDone(t: TestEnv, run: Launched, timeoutMs = 90_000): Promise<View> {
  await waitEngineExit(t, run.vm, run.control_dir, 0, timeoutMs);
  const id = run.id;
  let last: View | undefined;
  return waitFor(
    async () => {
      const v = (last = await show(t, id));
      // The engine records its outcome a moment before it exits and the launcher writes exit_code.
      const over = ["done", "failed", "cancelled", "orphaned"].includes(v.effective_status);
      return over && (v.exit_code !== null || v.launcher_alive === false) ? v : undefined;
    },
    { timeoutMs, intervalMs: 300, what: `run ${id} to end`, describe: () => JSON.stringify(last) },
  );
}

describe.each(E2E_DRIVERS)("runs in %s VMs with the real engine", (driver) => {
  const skip = driverSkip(driver);
  // The worker's shared VM (engine installed once per worker) plays w1; W2 and W3 are this file's own.
  let t: DriverFleet;
  let W1 = "";
  let HOME = "";
  const W2 = "lc-w2";
  const W3 = "lc-w3";
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  beforeAll(async () => {
    if (skip) return;
    t = await driverFleet(driver);
    W1 = t.vm;
    HOME = await t.guestHome();
    for (const vm of [W2, W3]) await t.addVm(vm);
  }, 600_000);
  afterAll(async () => {
    for (const g of gates) g.dispose();
    if (!t) return;
    for (const vm of [W2, W3]) await t.dropVm(vm);
    fs.rmSync(t.tmp, { recursive: true, force: true });
  });
  describe.skipIf(skip)(titled(`${driver} driver`, skip), () => {
    it("launches a 6-task run that finishes; the control dir honours the launcher contract", async () => {
      const g = gate();
      const run = await launch(t, W1, SEQ, { tasks: 6, sleepMs: 50, ...g.input });
      expect(run).toMatchObject({ vm: W1, smithers_run_id: `fabrik-${run.id}`, engine_version: "0.32.0" });
      expect(run.control_dir).toBe(`${HOME}/work/${W1}/.runs/${run.id}-seq`);
      expect(run.db_path).toBe(`${run.control_dir}/.smithers/run-${run.id}.db`);
      // heartbeat.json is fresh while it runs and names both pids (the gate holds the run in step-1 meanwhile).
      // Wait on the host's view of the guest home (cheap), then read it through the VM.
      await g.at(1);
      const hbOk = (text: string) => {
        const h = JSON.parse(text) as Record<string, unknown>;
        return h.engine_pid !== null && h.phase === "running" ? h : undefined;
      };
      const hbFile = hostPathOf(t, W1, `${run.control_dir}/heartbeat.json`);
      await waitFor(() => hbOk(fs.readFileSync(hbFile, "utf8")), { timeoutMs: 30_000, intervalMs: 100, what: "heartbeat.json with the engine pid" });
      const gh = await guest(t, W1, `cat ${run.control_dir}/heartbeat.json`);
      expect(gh.code).toBe(0);
      const hb = hbOk(gh.out)!;
      expect(hb, gh.out).toBeDefined();
      expect(hb).toMatchObject({ v: 1, host_run_id: run.id, smithers_run_id: run.smithers_run_id, engine_version: "0.32.0" });
      expect(typeof hb.launcher_pid).toBe("number");
      expect(typeof hb.engine_pid).toBe("number");
      expect(Date.now() - Number(hb.ts_ms)).toBeLessThan(30_000);
      g.releaseThrough(6);
      const done = await waitDone(t, run);
      expect(done.effective_status).toBe("done");
      expect(done.engine_run_status).toBe("finished");
      expect(done.progress).toMatchObject({ finished: 6, total: 6 });
      expect(done.exit_code).toBe(0);
      expect((await guest(t, W1, `cat ${run.control_dir}/exit_code`)).out.trim()).toBe("0");
      expect((await guest(t, W1, `grep -c 'ENGINE_VERSION=0.32.0' ${run.control_dir}/run.sh`)).out.trim()).toBe("1");
      const log = (await guest(t, W1, `cat ${run.control_dir}/reports/smithers.log`)).out;
      expect(log).toContain(`===== fabrik run ${run.id}`);
      expect(log).toMatch(/step-6/);
      // The registry row holds control dir, DB path, both ids, engine version, and now the outcome.
      const cached = await show(t, run.id, ["--no-live"]);
      expect(cached).toMatchObject({ status: "done", exit_code: 0, source: "cache", smithers_run_id: `fabrik-${run.id}` });
    });

    it("a failing run leaves exit_code 1 and the failed node", async () => {
      const run = await launch(t, W1, SEQ, { tasks: 4, sleepMs: 50, failAt: 2 });
      const v = await waitDone(t, run);
      expect(v.effective_status).toBe("failed");
      expect(v.exit_code).toBe(1);
      expect(v.last_failed?.node_id).toBe("step-2");
      expect(v.last_failed?.error).toContain("failed on purpose");
      expect(v.diagnoses.map((d) => d.code)).toContain("RUN_FAILED");
    });

    it("SIGTERM to the launcher still writes exit_code (the engine cancels)", async () => {
      const g = gate();
      const run = await launch(t, W1, SEQ, { tasks: 6, sleepMs: 50, ...g.input });
      await g.at(1); // a task has started, and the run cannot end before the test lets it
      expect((await guest(t, W1, `kill -TERM $(cat ${run.control_dir}/launcher.pid)`)).code).toBe(0);
      await waitEngineExit(t, W1, run.control_dir, 0, 30_000);
      const code = (await guest(t, W1, `cat ${run.control_dir}/exit_code`)).out.trim();
      expect(code).toBe("2");
      const v = await show(t, run.id);
      expect(v.effective_status).toBe("cancelled");
    });

    it("a SIGKILLed engine is orphaned, not running: names the stuck task, the mismatch and the next command", async () => {
      const g = gate();
      const run = await launch(t, W1, SEQ, { tasks: 6, sleepMs: 50, ...g.input });
      g.release(1, 2);
      await g.at(3);
      expect((await guest(t, W1, `kill -9 $(cat ${run.control_dir}/engine.pid)`)).code).toBe(0);
      await waitEngineExit(t, W1, run.control_dir, 0, 30_000); // the launcher noticed and wrote exit_code
      expect((await guest(t, W1, `cat ${run.control_dir}/exit_code`)).out.trim()).not.toBe("");
      const v = await show(t, run.id);
      expect(v.effective_status).toBe("orphaned");
      expect(v.engine_run_status).toBe("running");
      expect(v.engine_alive).toBe(false);
      expect(v.current_task).toBe("step-3");
      // The mismatch shows the live verdict (orphaned), not a mapped cache word.
      expect(v.mismatches).toContainEqual({ field: "status", cache: "running", live: "orphaned" });
      expect(v.cache_updated).toBe(true);
      const stuck = v.diagnoses.find((d) => d.code === "TASK_IN_PROGRESS_NO_ENGINE")!;
      expect(stuck.message).toContain("step-3");
      expect(stuck.next_command).toBe(`fabrik run resume --id ${run.id}`);
      const text = (await fabrik(t, ["runs", "show", "--id", String(run.id)])).stdout;
      expect(text).toContain("=== VM Status (Source of Truth) ===");
      expect(text).toContain("effective_status: orphaned");
      expect(text).toContain("current_task: step-3");
      expect(text).toMatch(/progress: 2\/6 \(33%\)/);
      expect(text).toContain(`next: fabrik run resume --id ${run.id}`);
    });

    it("engine 0.5 (legacy dialect): a run finishes and is judged without an engine heartbeat", async () => {
      const run = await launch(t, W1, SEQ_LEGACY, { tasks: 3, sleepMs: 50 }, ["--engine", "0.5.0"]);
      expect(run.engine_version).toBe("0.5.0");
      const v = await waitDone(t, run);
      expect(v.effective_status).toBe("done");
      expect(v.progress).toMatchObject({ finished: 3, total: 3 });
      expect(v.exit_code).toBe(0);
      const failing = await launch(t, W1, SEQ_LEGACY, { tasks: 3, sleepMs: 50, failAt: 2 }, ["--engine", "0.5.0"]);
      const f = await waitDone(t, failing);
      expect(f.effective_status).toBe("failed");
      expect(f.exit_code).toBe(1);
      expect(f.last_failed?.node_id).toBe("step-2");
    });

    it("runs list over three VMs with one stopped still lists the others live; the stopped one is unreachable with cached values", async () => {
      const [a, b] = await Promise.all([launch(t, W2, SEQ, { tasks: 2, sleepMs: 50 }), launch(t, W3, SEQ, { tasks: 2, sleepMs: 50 })]);
      await waitDone(t, a);
      await waitDone(t, b);
      await t.powerOff(W3);
      const r = await fabrik(t, ["runs", "list", "--json", "--limit", "100"]);
      expect(r.code).toBe(0);
      const views = json<View[]>(r);
      const byId = new Map(views.map((v) => [v.id, v]));
      expect(byId.get(a.id)).toMatchObject({ source: "live", effective_status: "done" });
      expect(byId.get(b.id)).toMatchObject({ source: "unreachable", effective_status: "unreachable", status: "done" });
      expect(byId.get(b.id)!.unreachable_reason).toMatch(t.offline);
      expect(byId.get(b.id)!.progress).toMatchObject({ finished: 2, total: 2 });
      expect(views.filter((v) => v.source === "live").length).toBeGreaterThanOrEqual(2);
      expect(r.stderr.match(new RegExp(`VM ${W3} is unreachable`, "g"))?.length).toBe(1);
      const s = await show(t, b.id);
      expect(s.effective_status).toBe("unreachable");
      expect(s.diagnoses[0]!.code).toBe("UNREACHABLE");
      const cached = json<View[]>(await fabrik(t, ["runs", "list", "--vm", W3, "--no-live", "--json"]));
      expect(cached.length).toBeGreaterThan(0);
      expect(cached.every((x) => x.source === "cache")).toBe(true);
      // table off a TTY: TSV with SOURCE and CHECKED columns
      const table = (await fabrik(t, ["runs", "list"])).stdout.split("\n")[0]!;
      expect(table.split("\t")).toEqual(expect.arrayContaining(["ID", "VM", "STATUS", "SOURCE", "CHECKED"]));
    });

    it("bad input: no phantom rows, nothing half-written in the VM", async () => {
      const before = (await fabrik(t, ["runs", "list", "--no-live", "--json", "--limit", "1000"])).stdout;
      const cases: { args: string[]; code: number; msg: RegExp }[] = [
        { args: ["run", "--vm", W1, "--workflow", "/nonexistent/wf.tsx"], code: 4, msg: /workflow file .* does not exist/ },
        { args: ["run", "--vm", W1, "--workflow", SEQ, "--input", "{bad json"], code: 2, msg: /--input is not valid JSON/ },
        { args: ["run", "--vm", W1, "--workflow", SEQ, "--input", "@/nonexistent.json"], code: 2, msg: /cannot read input file/ },
        { args: ["run", "--vm", W1, "--workflow", SEQ, "--input", "[1,2]"], code: 2, msg: /--input must be a JSON object/ },
        { args: ["run", "--vm", "ghost", "--workflow", SEQ], code: 4, msg: /VM ghost does not exist/ },
        { args: ["run", "--vm", W3, "--workflow", SEQ], code: 6, msg: driver === "lima" ? new RegExp(`${W3} is Stopped`) : t.offline },
        { args: ["run", "--vm", W1, "--workflow", SEQ, "--engine", "0.3.0"], code: 2, msg: /--engine "0\.3\.0" is not an engine version fabrik supports/ },
        { args: ["run", "--workflow", SEQ], code: 2, msg: /missing --vm/ },
        { args: ["runs", "show", "--id", "999999"], code: 4, msg: /run 999999 does not exist/ },
        { args: ["runs", "show", "--id", "abc"], code: 2, msg: /./ },
      ];
      for (const c of cases) {
        const r = await fabrik(t, c.args);
        expect(r.code, `${c.args.join(" ")} → ${r.stderr}`).toBe(c.code);
        expect(r.stderr).toMatch(c.msg);
        expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
      }
      expect((await fabrik(t, ["runs", "list", "--no-live", "--json", "--limit", "1000"])).stdout).toBe(before);
    });

    it("runs import: another registry adopts the VM's runs; importing twice does not duplicate", async () => {
      const own = json<View[]>(await fabrik(t, ["runs", "list", "--no-live", "--json", "--vm", W1, "--limit", "1000"]));
      const other = await t.otherHome("fh-other", [W1]);
      const first = await fabrik(other, ["runs", "import", "--vm", W1, "--json"]);
      expect(first.code, first.stderr).toBe(0);
      const r1 = json<{ imported: View[]; already_registered: unknown[] }>(first);
      // The six runs launched in w1 above (finished, failed, SIGTERMed, SIGKILLed, two on 0.5) each have a DB.
      expect(own.length).toBeGreaterThanOrEqual(6);
      expect(r1.imported.length).toBeGreaterThanOrEqual(6);
      expect(r1.imported.every((v) => v.source === "live")).toBe(true);
      expect(r1.imported.map((v) => v.effective_status)).toEqual(expect.arrayContaining(["done", "failed", "orphaned"]));
      const second = json<{ imported: View[]; already_registered: unknown[] }>(await fabrik(other, ["runs", "import", "--vm", W1, "--json"]));
      expect(second.imported).toEqual([]);
      expect(second.already_registered.length).toBe(r1.imported.length);
      const listed = json<View[]>(await fabrik(other, ["runs", "list", "--no-live", "--json", "--limit", "1000"]));
      expect(listed.length).toBe(r1.imported.length);
    });

    it("a control dir that already exists is refused and the row is failed, not running", async () => {
      const rows = json<View[]>(await fabrik(t, ["runs", "list", "--no-live", "--json", "--limit", "1"]));
      const nextId = (rows[0]?.id ?? 0) + 1;
      expect((await guest(t, W1, `mkdir -p ~/work/${W1}/.runs/${nextId}-seq && echo keep > ~/work/${W1}/.runs/${nextId}-seq/precious`)).code).toBe(0);
      const r = await fabrik(t, ["run", "--vm", W1, "--workflow", SEQ]);
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/already exists/);
      expect((await guest(t, W1, `cat ~/work/${W1}/.runs/${nextId}-seq/precious`)).out).toBe("keep\n");
      const row = await show(t, nextId, ["--no-live"]);
      expect(row.status).toBe("failed");
    });
  });
});

describe("runs in a local VM with the real engine", () => {
  let t: TestEnv;
  let LOC = "";
  const g = new Gate();
  beforeAll(async () => {
    t = makeTestEnv();
    LOC = localVmName("loc"); // unique to this run: local VMs are told apart by name only
    const r = await fabrik(t, ["vm", "create", LOC, "--driver", "local"], { timeoutMs: 600_000 });
    expect(r.code, r.stderr).toBe(0);
  }, 600_000);
  afterAll(async () => {
    g.dispose();
    await disposeTestEnv(t);
  });

  it("launches, finishes, and SIGKILL mid-run is orphaned", async () => {
    const run = await launch(t, LOC, SEQ, { tasks: 6, sleepMs: 50 });
    const v = await waitDone(t, run);
    expect(v).toMatchObject({ effective_status: "done", exit_code: 0 });
    expect(v.progress).toMatchObject({ finished: 6, total: 6 });
    const k = await launch(t, LOC, SEQ, { tasks: 6, sleepMs: 50, ...g.input });
    g.release(1, 2);
    await g.at(3);
    const home = path.join(t.fabrikHome, "local-vms", LOC, "home");
    const cd = k.control_dir;
    expect(cd.startsWith(home)).toBe(true);
    process.kill(Number(fs.readFileSync(path.join(cd, "engine.pid"), "utf8")), "SIGKILL");
    process.kill(Number(fs.readFileSync(path.join(cd, "launcher.pid"), "utf8")), "SIGKILL");
    // This container's pid 1 reaps orphans lazily; a zombie counts as alive (as the engine counts it).
    let last: View | undefined;
    const o = await waitFor(
      async () => {
        const v = (last = await show(t, k.id));
        return v.effective_status === "orphaned" ? v : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: "the killed run to be orphaned", describe: () => JSON.stringify(last) },
    );
    expect(o.current_task).toBe("step-3");
    expect(o.diagnoses.map((d) => d.code)).toContain("TASK_IN_PROGRESS_NO_ENGINE");
  });

  it("run --follow streams the log until the run ends", async () => {
    const r = await fabrik(t, ["run", "--vm", LOC, "--workflow", SEQ, "--input", JSON.stringify({ tasks: 3, sleepMs: 50 }), "--follow"], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const id = Number(r.stdout.split("\n")[0]);
    expect(id).toBeGreaterThan(0);
    expect(r.stdout).toContain(`===== fabrik run ${id}`);
    expect(r.stdout).toMatch(/step-3/);
    expect(r.stdout).toContain("engine exited with code 0");
    expect(r.stderr).toContain(`run ${id} finished: done (exit 0)`);
  });

  it("an engine install that cannot reach the registry fails cleanly: exit 7, no row", async () => {
    const before = json<View[]>(await fabrik(t, ["runs", "list", "--no-live", "--json", "--limit", "100"]));
    const r = await fabrik(
      { ...t, env: { ...t.env, npm_config_registry: "http://127.0.0.1:9/", npm_config_fetch_retries: "0", FABRIK_ENGINE_CACHE_DIR: path.join(t.tmp, "empty-cache") } },
      ["run", "--vm", LOC, "--workflow", SEQ, "--engine", "0.5.0"],
      { timeoutMs: 300_000 },
    );
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/cannot install engine 0\.5\.0/);
    const after = json<View[]>(await fabrik(t, ["runs", "list", "--no-live", "--json", "--limit", "100"]));
    expect(after.map((x) => x.id)).toEqual(before.map((x) => x.id));
  });
});
