/**
 * The guest probe (dist/guest/probe.js, bundled from src/vm/guest/probe.ts, with the real bun) against REAL engine
 * DBs (the fixtures of scripts/make-fixtures.mjs, always through byte-for-byte copies) and hand-made control
 * dirs. Every answer is validated with ProbeResponseSchema. (The python fallback probe was retired: bun is present
 * wherever an engine ran.)
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProbeResponseSchema, type DbFacts, type ProbeRequest, type ProbeResponse, type ProbeRunRequest } from "../../vm/probe-schema.js";
import { guestBundlePath } from "../../vm/guest-programs.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase, type FixtureCaseName, type Manifest } from "../helpers/fixtures.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

// Built by the vitest global setup (src/__tests__/setup/build-guest.ts) when missing or stale.
const PROBE_JS = guestBundlePath("probe");

let dir = "";
let manifest: Manifest;
let bun = "";
const temps: string[] = [];
const children: number[] = [];

beforeAll(async () => {
  ({ dir, manifest } = await ensureFixtures());
  for (const v of ["0.32.0", "0.5.0"]) {
    const b = path.join(REPO_ROOT, ".cache/engines", v, ".runtime/node_modules/.bin/bun");
    if (fs.existsSync(b)) {
      bun = b;
      break;
    }
  }
  if (!bun) throw new Error("no bun under .cache/engines (ensureFixtures installs it)");
}, 600_000);

afterAll(() => {
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  for (const t of temps) fs.rmSync(t, { recursive: true, force: true });
});

function tmpDir(tag: string): string {
  const t = tempDir(`probe-${tag}-`);
  temps.push(t);
  return t;
}

/** A copy of a fixture case's DB files; returns the copied run.db path. */
function fixtureCopy(version: string, name: FixtureCaseName): string {
  const p = copyFixtureDb(dir, fixtureCase(manifest, version, name));
  temps.push(path.dirname(p));
  return p;
}

type Tool = "bun";

async function runProbeRaw(tool: Tool, input: string, args: string[] = []): Promise<{ stdout: string; stderr: string; status: number | null; ms: number }> {
  const t0 = performance.now();
  expect(tool).toBe("bun");
  const r = await run(bun, [PROBE_JS, ...args], { input, timeoutMs: 30_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.signal ? null : r.code, ms: performance.now() - t0 };
}

async function probe(tool: Tool, request: ProbeRequest): Promise<ProbeResponse & { ms: number; rawStdout: string }> {
  const r = await runProbeRaw(tool, JSON.stringify(request));
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  expect(r.stdout.endsWith("\n")).toBe(true);
  expect(r.stdout.trimEnd().split("\n")).toHaveLength(1);
  const res = ProbeResponseSchema.parse(JSON.parse(r.stdout));
  expect(res.tool).toBe(tool);
  return { ...res, ms: r.ms, rawStdout: r.stdout };
}

function runReq(p: Partial<ProbeRunRequest> & { key?: string }): ProbeRunRequest {
  return { key: p.key ?? "k", control_dir: p.control_dir ?? null, db_path: p.db_path ?? null, smithers_run_id: p.smithers_run_id ?? null };
}

/** Probe one DB (nodes list on) and return its DbFacts plus the run's errors. */
async function probeDb(tool: Tool, dbPath: string, runId: string | null = null, extra: Partial<ProbeRequest> = {}) {
  const res = await probe(tool, { v: 1, nodes: true, runs: [runReq({ db_path: dbPath, smithers_run_id: runId })], ...extra });
  const run = res.runs[0];
  if (!run?.db) throw new Error("no db facts");
  return { db: run.db, errors: run.errors, res };
}

function hashes(d: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(d).sort()) out[f] = createHash("sha256").update(fs.readFileSync(path.join(d, f))).digest("hex");
  return out;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The probe reads real sizes with octet_length (bun's SQLite ≥ 3.43). */
function expectSizes(_tool: Tool, db: DbFacts, check: (d: { rt: number; ej: number; over: number }) => void) {
  expect(db.max_response_text_bytes).not.toBeNull();
  check({ rt: db.max_response_text_bytes ?? -1, ej: db.max_error_json_bytes ?? -1, over: db.oversized_values ?? -1 });
}

const steps = (states: string[]) => states.map((state, i) => ({ node_id: `step-${i + 1}`, state }));

const TOOLS: Tool[] = ["bun"];

describe.each(TOOLS)("probe (%s) on real engine DBs", (tool) => {
  for (const version of ["0.32.0", "0.5.0"]) {
    const modern = version === "0.32.0";

    it(`${version} finished: status finished, 6 finished nodes, schema ${modern ? "modern" : "legacy"}`, async () => {
      const p = fixtureCopy(version, "finished");
      const { db, errors } = await probeDb(tool, p);
      expect(errors).toEqual([]);
      expect(db.exists).toBe(true);
      expect(db.error).toBeNull();
      expect(db.path).toBe(p);
      expect(db.size_bytes).toBe(fs.statSync(p).size);
      expect(db.run?.run_id).toBe(`fx-${version}-finished`);
      expect(db.run?.status).toBe("finished");
      expect(db.run?.workflow_name).toBe("seq");
      expect(db.run?.finished_at_ms).toBeGreaterThan(0);
      expect(db.runs_in_db).toBe(1);
      expect(db.by_state).toEqual({ finished: 6 });
      expect(db.total_nodes).toBe(6);
      expect(db.in_progress).toEqual([]);
      expect(db.last_failed).toBeNull();
      expect(db.nodes?.map((n) => ({ node_id: n.node_id, state: n.state }))).toEqual(steps(Array(6).fill("finished")));
      expect(db.nodes?.every((n) => n.last_attempt === 1 && (n.started_at_ms ?? 0) > 0)).toBe(true);
      expect(db.nodes_truncated).toBe(false);
      if (modern) {
        expect(db.schema).toBe("modern");
        expect(db.missing_columns).toEqual([]);
      } else {
        expect(db.schema).toBe("legacy");
        expect(db.missing_columns).toEqual(expect.arrayContaining(["heartbeat_at_ms", "runtime_owner_id"]));
        expect(db.run?.heartbeat_at_ms).toBeNull();
        expect(db.run?.runtime_owner_id).toBeNull();
        expect(db.run?.owner).toBeNull();
      }
      expectSizes(tool, db, ({ over }) => expect(over).toBe(0));
      // A clean (checkpointed) DB is read with immutable=1: no -wal/-shm appear beside it.
      expect(fs.readdirSync(path.dirname(p))).toEqual(["run.db"]);
    });

    it(`${version} failed: last_failed is step-3 with the attempt's error message`, async () => {
      const { db, errors } = await probeDb(tool, fixtureCopy(version, "failed"));
      expect(errors).toEqual([]);
      expect(db.run?.status).toBe("failed");
      expect(db.by_state).toEqual({ finished: 2, failed: 1, pending: 3 });
      expect(db.last_failed).toMatchObject({ node_id: "step-3", state: "failed", last_attempt: 1, error: "step-3 failed on purpose (failAt=3)" });
      if (modern) expect(db.run?.error).toMatch(/^Task failed: step-3/);
      expect(db.nodes?.find((n) => n.node_id === "step-3")?.error).toBe("step-3 failed on purpose (failAt=3)");
      expect(db.nodes?.find((n) => n.node_id === "step-2")?.error).toBeNull();
      expectSizes(tool, db, ({ ej }) => expect(ej).toBeGreaterThan(100));
      // error_chars truncates
      const short = (await probeDb(tool, fixtureCopy(version, "failed"), null, { error_chars: 6 })).db;
      expect(short.last_failed?.error).toBe("step-3");
    });

    it(`${version} killed (raw files as SIGKILL left them): running, step-3 in progress, files unchanged`, async () => {
      const c = fixtureCase(manifest, version, "killed");
      const p = fixtureCopy(version, "killed");
      const before = hashes(path.dirname(p));
      expect(Object.keys(before)).toEqual(["run.db", "run.db-shm", "run.db-wal"]);
      expect(fs.statSync(p).size).toBeLessThanOrEqual(8192); // the data is in -wal
      const { db, errors } = await probeDb(tool, p);
      expect(hashes(path.dirname(p))).toEqual(before);
      expect(errors).toEqual([]);
      expect(db.error).toBeNull();
      expect(db.wal_size_bytes).toBe(fs.statSync(`${p}-wal`).size);
      expect(db.run?.status).toBe("running");
      expect(db.run?.finished_at_ms).toBeNull();
      expect(db.by_state).toEqual({ finished: 2, "in-progress": 1, pending: 3 });
      expect(db.in_progress).toHaveLength(1);
      expect(db.in_progress[0]).toMatchObject({ node_id: "step-3", iteration: 0, state: "in-progress", last_attempt: 1, error: null });
      expect(db.in_progress[0]?.started_at_ms).toBeGreaterThanOrEqual(db.run?.started_at_ms ?? Infinity);
      expect(db.nodes?.map((n) => ({ node_id: n.node_id, state: n.state }))).toEqual(
        steps(["finished", "finished", "in-progress", "pending", "pending", "pending"]),
      );
      if (modern) {
        expect(db.run?.heartbeat_at_ms).toBeGreaterThan(0);
        const enginePid = c.engine?.enginePid ?? -1;
        expect(db.run?.runtime_owner_id).toMatch(new RegExp(`^pid:${enginePid}:`));
        expect(db.run?.owner?.pid).toBe(enginePid);
        expect(db.run?.owner?.alive).toBe(pidAlive(enginePid));
      } else {
        expect(db.run?.owner).toBeNull();
      }
    });

    it(`${version} resumed: the same run finished, step-3 on attempt 2`, async () => {
      const { db } = await probeDb(tool, fixtureCopy(version, "resumed"));
      expect(db.run?.run_id).toBe(`fx-${version}-killed`);
      expect(db.run?.status).toBe("finished");
      expect(db.by_state).toEqual({ finished: 6 });
      expect(db.nodes?.find((n) => n.node_id === "step-3")?.last_attempt).toBe(2);
    });
  }

  it("0.32.0 multi: three runs in one DB, probed in one call, counts per run id only", async () => {
    const p = fixtureCopy("0.32.0", "multi");
    const ids = ["fx-0.32.0-multi-a", "fx-0.32.0-multi-b", "fx-0.32.0-multi-loop", "no-such-run"];
    const res = await probe(tool, { v: 1, runs: ids.map((id) => runReq({ key: id, db_path: p, smithers_run_id: id })) });
    expect(res.runs.map((r) => r.key)).toEqual(ids);
    const [a, b, loop, none] = res.runs.map((r) => r.db);
    expect(a?.run?.run_id).toBe(ids[0]);
    expect(a?.by_state).toEqual({ finished: 3 });
    expect(b?.run?.status).toBe("failed");
    expect(b?.by_state).toEqual({ finished: 1, failed: 1, pending: 1 });
    expect(b?.last_failed?.node_id).toBe("step-2");
    expect(loop?.by_state).toEqual({ finished: 4 }); // tick x3 iterations + done
    expect(loop?.total_nodes).toBe(4);
    for (const d of [a, b, loop]) expect(d?.runs_in_db).toBe(3);
    expect(none?.run).toBeNull();
    expect(none?.total_nodes).toBe(0);
    expect(res.runs[3]?.errors.join(" ")).toMatch(/not found/);
    expect(a?.nodes).toBeNull(); // only with nodes: true

    // smithers_run_id null: the most recently started run
    const check = new Database(fixtureCopy("0.32.0", "multi"), { readonly: true });
    const latest = check.prepare("SELECT run_id FROM _smithers_runs ORDER BY started_at_ms DESC LIMIT 1").get() as { run_id: string };
    check.close();
    expect((await probeDb(tool, p)).db.run?.run_id).toBe(latest.run_id);
  });

  it("loop iterations are separate nodes, in execution order", async () => {
    const { db } = await probeDb(tool, fixtureCopy("0.32.0", "multi"), "fx-0.32.0-multi-loop");
    expect(db.nodes?.map((n) => `${n.node_id}#${n.iteration}`)).toEqual(["tick#0", "tick#1", "tick#2", "done#0"]);
    const limited = (await probeDb(tool, fixtureCopy("0.32.0", "multi"), "fx-0.32.0-multi-loop", { max_nodes: 2 })).db;
    expect(limited.nodes).toHaveLength(2);
    expect(limited.nodes_truncated).toBe(true);
  });

  it("a missing DB: exists false, and no file is created", async () => {
    const d = tmpDir("missing");
    const p = path.join(d, "nope.db");
    const { db } = await probeDb(tool, p);
    expect(db).toMatchObject({ path: p, exists: false, error: null, run: null, size_bytes: null });
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it("a garbage file and an empty file as DB: db.error / schema unknown, no crash", async () => {
    const d = tmpDir("garbage");
    const g = path.join(d, "garbage.db");
    fs.writeFileSync(g, "this is not a sqlite database\n".repeat(300));
    fs.writeFileSync(path.join(d, "empty.db"), "");
    const garbage = (await probe(tool, { v: 1, runs: [runReq({ key: "g", db_path: g })] })).runs[0]?.db;
    expect(garbage?.exists).toBe(true);
    expect(garbage?.error).toMatch(/not a database/);
    const empty = (await probe(tool, { v: 1, runs: [runReq({ key: "e", db_path: path.join(d, "empty.db") })] })).runs[0];
    expect(empty?.db).toMatchObject({ exists: true, schema: "unknown", run: null, error: null });
    expect(empty?.errors.join(" ")).toMatch(/no _smithers_runs/);
    expect(fs.readdirSync(d).sort()).toEqual(["empty.db", "garbage.db"]);
  });

  it("a locked DB gives db.error 'locked' (not a hang)", async () => {
    const p = fixtureCopy("0.32.0", "finished");
    const w = new Database(p);
    try {
      w.pragma("locking_mode = EXCLUSIVE");
      w.exec("BEGIN EXCLUSIVE");
      w.exec("UPDATE _smithers_runs SET status = status");
      const t0 = performance.now();
      const { db } = await probeDb(tool, p);
      expect(db.error).toBe("locked");
      expect(performance.now() - t0).toBeLessThan(10_000);
    } finally {
      w.exec("ROLLBACK");
      w.close();
    }
  });

  it("a node id with ANSI escapes and shell metacharacters survives intact", async () => {
    const p = fixtureCopy("0.32.0", "failed");
    const evil = "\u001b[31mstep-3\u001b[0m; rm -rf / `id` $(whoami) 'q' \"dq\" \\ \n\tend \u2603 \ud83d\ude00";
    const w = new Database(p);
    w.prepare("UPDATE _smithers_nodes SET node_id = ?, label = ? WHERE node_id = 'step-3'").run(evil, evil);
    w.prepare("UPDATE _smithers_attempts SET node_id = ? WHERE node_id = 'step-3'").run(evil);
    w.close();
    const { db, res } = await probeDb(tool, p);
    expect(res.rawStdout.trimEnd().split("\n")).toHaveLength(1);
    expect(res.rawStdout).not.toContain("\u001b");
    expect(db.last_failed?.node_id).toBe(evil);
    expect(db.last_failed?.label).toBe(evil);
    expect(db.last_failed?.error).toBe("step-3 failed on purpose (failAt=3)");
    expect(db.nodes?.[2]?.node_id).toBe(evil);
  });

  it("control dir: corrupt heartbeat.json, exit_code, log, run.sh engine pin, DB lookup", async () => {
    const cd = tmpDir("ctl");
    fs.mkdirSync(path.join(cd, ".smithers"));
    fs.mkdirSync(path.join(cd, "reports"));
    fs.copyFileSync(fixtureCopy("0.32.0", "failed"), path.join(cd, ".smithers", "run-7.db"));
    fs.writeFileSync(path.join(cd, "heartbeat.json"), '{"v":1,"ts_ms":17952974');
    fs.writeFileSync(path.join(cd, "exit_code"), "1\n");
    fs.writeFileSync(path.join(cd, "run.sh"), "#!/usr/bin/env bash\n# engine: smithers-orchestrator@0.32.0\nCONTROL_DIR='/x'\nENGINE_VERSION='0.32.0'\n");
    // "string or blob too big" early in the log only: outside the last 256 KiB, so not reported
    fs.writeFileSync(path.join(cd, "reports", "smithers.log"), "✗ Run failed: string or blob too big\n" + "x".repeat(300 * 1024) + "\n");
    const r1 = (await probe(tool, { v: 1, runs: [runReq({ key: "7", control_dir: cd, smithers_run_id: "fx-0.32.0-failed" })] })).runs[0];
    expect(r1?.control).toMatchObject({
      exists: true,
      heartbeat: null,
      heartbeat_error: "not JSON",
      exit_code: 1,
      exit_code_garbage: false,
      log_size_bytes: fs.statSync(path.join(cd, "reports", "smithers.log")).size,
      log_blob_too_big: false,
      run_sh_engine: "0.32.0",
      launcher: null,
      child: null,
      engine: null,
    });
    expect(r1?.control?.heartbeat_mtime_ms).toBeGreaterThan(0);
    expect(r1?.db?.path).toBe(path.join(cd, ".smithers", "run-7.db"));
    expect(r1?.db?.run?.status).toBe("failed");

    // Second round: heartbeat with wrong types, garbage exit_code, the error at the end of the log,
    // a github ref in run.sh, db_path pointing nowhere while the workflow wrote ./smithers.db.
    fs.rmSync(path.join(cd, ".smithers"), { recursive: true });
    fs.copyFileSync(fixtureCopy("0.32.0", "finished"), path.join(cd, "smithers.db"));
    fs.writeFileSync(
      path.join(cd, "heartbeat.json"),
      JSON.stringify({ v: 1, ts_ms: 5, seq: "7", phase: 42, host_run_id: 7, smithers_run_id: "x".repeat(500), engine_pid: 2147483647, interval_s: 2.5, exit_code: null, extra: { a: 1 } }),
    );
    fs.writeFileSync(path.join(cd, "exit_code"), "killed?\n");
    fs.appendFileSync(path.join(cd, "reports", "smithers.log"), "SQLiteError: string or blob too big\n");
    fs.writeFileSync(path.join(cd, "run.sh"), 'bun add "smithers-orchestrator@github:evmts/smithers#ea5ece3"\n');
    const missing = path.join(cd, ".smithers", "run-7.db");
    const r2 = (await probe(tool, { v: 1, runs: [runReq({ key: "7", control_dir: cd, db_path: missing })] })).runs[0];
    expect(r2?.control?.heartbeat).toEqual({
      v: 1,
      ts_ms: 5,
      seq: null,
      phase: null,
      host_run_id: 7,
      smithers_run_id: "x".repeat(200),
      launcher_pid: null,
      child_pid: null,
      engine_pid: 2147483647,
      engine_version: null,
      interval_s: 2.5,
      exit_code: null,
      launch_id: null,
    });
    expect(r2?.control?.heartbeat_error).toBeNull();
    expect(r2?.control?.engine).toMatchObject({ pid: 2147483647, alive: false }); // from the heartbeat
    expect(r2?.control?.exit_code).toBeNull();
    expect(r2?.control?.exit_code_garbage).toBe(true);
    expect(r2?.control?.log_blob_too_big).toBe(true);
    expect(r2?.control?.run_sh_engine).toBe("github:evmts/smithers#ea5ece3");
    expect(r2?.db?.path).toBe(path.join(cd, "smithers.db"));
    expect(r2?.db?.run?.status).toBe("finished");
    expect(r2?.errors.join(" ")).toMatch(/db_path .* is missing; found/);

    // Too big a heartbeat, and a control dir that does not exist.
    fs.writeFileSync(path.join(cd, "heartbeat.json"), " ".repeat(70 * 1024));
    const r3 = await probe(tool, { v: 1, runs: [runReq({ key: "a", control_dir: cd }), runReq({ key: "b", control_dir: path.join(cd, "nope") })] });
    expect(r3.runs[0]?.control?.heartbeat_error).toMatch(/too large/);
    expect(r3.runs[1]?.control?.exists).toBe(false);
    expect(r3.runs[1]?.db?.exists).toBe(false);
  });

  it("pid liveness inside the machine: live sleep, dead pid, zombie (alive, state Z)", async () => {
    const cd = tmpDir("pids");
    const live = spawn("sleep", ["30"], { stdio: "ignore" });
    children.push(live.pid ?? 0);
    const dead = await run("sh", ["-c", "echo $$"]);
    const deadPid = Number(dead.stdout.trim());
    // The parent forks `sleep 0.1` and then becomes `sleep 30`, which never reaps it: a zombie.
    const parent = spawn("sh", ["-c", "sleep 0.1 & exec sleep 30"], { stdio: "ignore" });
    children.push(parent.pid ?? 0);
    const zombie = await waitForZombieChild(parent.pid ?? 0);
    fs.writeFileSync(path.join(cd, "launcher.pid"), `${live.pid}\n`);
    fs.writeFileSync(path.join(cd, "smithers.pid"), `${zombie}\n`);
    fs.writeFileSync(path.join(cd, "engine.pid"), `${deadPid}\n`);
    // Without the launcher's record (pids.json), a living pid is the run's only if it looks like bun, smithers or
    // run.sh: `sleep 30` is another process that has the number (core/pid-identity.ts).
    const unrecorded = (await probe(tool, { v: 1, runs: [runReq({ control_dir: cd })] })).runs[0]?.control;
    expect(unrecorded?.launcher).toMatchObject({ pid: live.pid, alive: false, identity: "foreign", cmdline: "sleep 30" });
    // With the launcher's record (start time and boot id), the same pids are the run's.
    const ticks = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]);
    const bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const rec = (pid: number) => ({ pid, start_ticks: ticks(pid) });
    fs.writeFileSync(path.join(cd, "pids.json"), JSON.stringify({ v: 1, boot_id: bootId, launcher: rec(live.pid!), child: rec(zombie), engine: null }) + "\n");
    const c = (await probe(tool, { v: 1, runs: [runReq({ control_dir: cd })] })).runs[0]?.control;
    expect(c?.launcher).toMatchObject({ pid: live.pid, alive: true, identity: "verified", cmdline: "sleep 30" });
    expect(c?.launcher?.state).toMatch(/^[SR]$/);
    expect(c?.child).toMatchObject({ pid: zombie, alive: true, state: "Z", cmdline: null });
    expect(c?.engine).toMatchObject({ pid: deadPid, alive: pidAlive(deadPid) });
    fs.writeFileSync(path.join(cd, "engine.pid"), "not-a-pid");
    const r = (await probe(tool, { v: 1, runs: [runReq({ control_dir: cd })] })).runs[0];
    expect(r?.control?.engine).toBeNull();
    expect(r?.errors).toContain("engine.pid: not a pid");
  });

  it("discover_roots lists control dirs with meta, DBs and run ids", async () => {
    const root = tmpDir("disc");
    const a = path.join(root, "12-seq");
    fs.mkdirSync(path.join(a, ".smithers"), { recursive: true });
    fs.mkdirSync(path.join(a, "workflow"));
    fs.writeFileSync(path.join(a, "run.sh"), "ENGINE_VERSION='0.32.0'\n");
    fs.writeFileSync(path.join(a, "workflow", "seq.tsx"), "");
    fs.copyFileSync(fixtureCopy("0.32.0", "multi"), path.join(a, ".smithers", "run-12.db"));
    fs.writeFileSync(
      path.join(a, "fabrik-run.json"),
      JSON.stringify({ v: 1, host_run_id: 12, smithers_run_id: "fabrik-12", vm: "x", engine_version: "0.32.0", workflow: "seq.tsx", db_path: path.join(a, ".smithers", "run-12.db") }),
    );
    const b = path.join(root, "13-old");
    fs.mkdirSync(path.join(b, "reports"), { recursive: true });
    fs.mkdirSync(path.join(root, "not-a-run"));
    fs.writeFileSync(path.join(root, "file.txt"), "");
    const res = await probe(tool, { v: 1, runs: [], discover_roots: [root, path.join(root, "missing")] });
    expect(res.discovered.map((d) => d.control_dir)).toEqual([a, b]);
    const [da, db] = res.discovered;
    expect(da?.meta).toEqual({ host_run_id: 12, smithers_run_id: "fabrik-12", engine_version: "0.32.0", workflow: "seq.tsx", db_path: path.join(a, ".smithers", "run-12.db") });
    expect(da?.db_paths).toEqual([path.join(a, ".smithers", "run-12.db")]);
    expect([...(da?.run_ids ?? [])].sort()).toEqual(["fx-0.32.0-multi-a", "fx-0.32.0-multi-b", "fx-0.32.0-multi-loop"]);
    expect(da?.workflow_path).toMatch(/\.tsx$/);
    expect(db).toEqual({ control_dir: b, meta: null, db_paths: [], run_ids: [], workflow_path: null });
  });

  it("--serve: one response line per request line until stdin closes", async () => {
    const p = fixtureCopy("0.32.0", "finished");
    const line = JSON.stringify({ v: 1, runs: [runReq({ db_path: p })] });
    const r = await runProbeRaw(tool, `${line}\n\n${line}\nnot json\n`, ["--serve"]);
    expect(r.status).toBe(0);
    const out = r.stdout.trimEnd().split("\n");
    expect(out).toHaveLength(3);
    for (const l of out.slice(0, 2)) expect(ProbeResponseSchema.parse(JSON.parse(l)).runs[0]?.db?.run?.status).toBe("finished");
    expect(JSON.parse(out[2] ?? "")).toMatchObject({ v: 1, error: expect.stringMatching(/bad request/) });
  });

  it("a bad request exits 2 with a message on stderr", async () => {
    const r = await runProbeRaw(tool, '{"v":99}');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/unsupported probe version/);
  });
});

describe("probe on a DB with a 50 MB response_text", () => {
  let big = "";
  beforeAll(() => {
    big = fixtureCopy("0.32.0", "finished");
    const w = new Database(big);
    w.prepare(
      `INSERT INTO _smithers_attempts (run_id, node_id, iteration, attempt, state, started_at_ms, finished_at_ms, error_json, response_text, cached, meta_json)
       SELECT run_id, node_id, iteration, 2, 'finished', started_at_ms + 1, finished_at_ms + 1, NULL, ?, 0, '{}' FROM _smithers_attempts WHERE node_id = 'step-1'`,
    ).run("x".repeat(50_000_000));
    w.pragma("wal_checkpoint(TRUNCATE)");
    w.close();
  }, 60_000);

  it.each(TOOLS)("%s: the size comes from octet_length (bun) without reading the value", async (tool) => {
    const { db, res } = await probeDb(tool, big, null, { row_size_warn_bytes: 100 * 1024 });
    console.log(`probe (${tool}) on a ${(fs.statSync(big).size / 1e6).toFixed(1)} MB DB with a 50 MB response_text: ${res.ms.toFixed(0)} ms wall (process start included)`);
    expect(db.error).toBeNull();
    expect(db.by_state).toEqual({ finished: 6 });
    expect(db.nodes?.[0]).toMatchObject({ node_id: "step-1", last_attempt: 2 }); // the latest attempt row
    expectSizes(tool, db, ({ rt, over }) => {
      expect(rt).toBe(50_000_000);
      expect(over).toBe(1);
    });
  });
});

/** Find the zombie child of `parent` (scan /proc for ppid, wait for state Z). */
async function waitForZombieChild(parent: number): Promise<number> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    for (const name of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      let stat: string;
      try {
        stat = fs.readFileSync(`/proc/${name}/stat`, "latin1");
      } catch {
        continue;
      }
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) === parent && rest[0] === "Z") return Number(name);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no zombie child of ${parent} appeared`);
}
