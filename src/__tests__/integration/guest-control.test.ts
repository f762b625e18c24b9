/**
 * The guest programs behind the run-level commands, run for real on this host through their wrapper
 * (src/vm/guest-call.ts: sh + the engines' own bun, as in a VM) against copies of the real-engine fixture DBs:
 * `inspect` answers `runs why|nodes` for 0.32 and 0.5 (and points the 0.32 engine's own `smithers why` at the DB),
 * `control` compacts a finished run (dry-run changes nothing; values fit the limit; the backup keeps the original)
 * and refuses a run that has not ended. The end-to-end tier runs them in VMs (e2e/control.test.ts).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { callGuestProgram, type GuestExec } from "../../vm/guest-call.js";
import { MemoryGuestInstallCache } from "../../vm/guest-programs.js";
import { ControlResultSchema, InspectResultSchema, type ControlRequest, type InspectRequest } from "../../vm/control-schema.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase, type Manifest } from "../helpers/fixtures.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

const skip = missingPrereqs("flock", "bash");

describe.skipIf(skip)(titled("guest programs inspect and control (local sh, real bun, fixture DBs)", skip), () => {
  const engineDir = (v: string) => path.join(REPO_ROOT, ".cache/engines", v);
  const bunOf = (v: string) => path.join(engineDir(v), ".runtime/node_modules/.bin/bun");
  const root = tempDir("guest-control-");
  const home = path.join(root, "home");
  let fx: { dir: string; manifest: Manifest };
  beforeAll(async () => {
    fx = await ensureFixtures();
    fs.mkdirSync(home, { recursive: true });
  }, 600_000);
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  const exec: GuestExec = async (argv, opts) => {
    const [cmd, ...args] = argv;
    const r = await run(cmd!, args, { input: opts.stdin, timeoutMs: opts.timeoutMs, env: { ...process.env, HOME: home } });
    return { exitCode: r.code, stdout: r.stdout, stderr: r.stderr, durationMs: 0 };
  };
  const cache = new MemoryGuestInstallCache();
  /** A control dir holding a copy of a fixture case's DB as `.smithers/run-7.db`. */
  const controlDir = (version: string, name: "finished" | "failed" | "killed") => {
    const c = fixtureCase(fx.manifest, version, name);
    const dir = fs.mkdtempSync(path.join(root, `c-${version}-${name}-`));
    const db = copyFixtureDb(fx.dir, c);
    fs.mkdirSync(path.join(dir, ".smithers"));
    for (const f of fs.readdirSync(path.dirname(db))) fs.copyFileSync(path.join(path.dirname(db), f), path.join(dir, ".smithers", f.replace(/^run\.db/, "run-7.db")));
    fs.rmSync(path.dirname(db), { recursive: true, force: true });
    return { dir, db: path.join(dir, ".smithers/run-7.db"), runId: c.runs[0]!.runId };
  };
  const inspect = async (version: string, dir: string, db: string, runId: string, action: InspectRequest["action"]) => {
    const request: InspectRequest = { v: 1, action, smithers_run_id: runId, control_dir: dir, db_path: db, engine_dir: engineDir(version), dialect: version === "0.32.0" ? "modern" : "legacy", engine_why: true, events: 10, log_lines: 5, error_lines: 3, max_nodes: 100 };
    const r = await callGuestProgram(exec, { vm: "host", name: "inspect", controlDir: dir, bun: bunOf(version), mode: "read", request, timeoutMs: 60_000, installCache: cache, what: action });
    return InspectResultSchema.parse(r.json);
  };
  const hashDir = (d: string) =>
    fs
      .readdirSync(d)
      .sort()
      .map((f) => `${f}:${createHash("sha256").update(fs.readFileSync(path.join(d, f))).digest("hex")}`)
      .join("\n");

  for (const version of ["0.32.0", "0.5.0"]) {
    it(`${version}: why on a failed run names the node, its attempt and error, and no retries left`, async () => {
      const { dir, db, runId } = controlDir(version, "failed");
      const before = hashDir(path.join(dir, ".smithers"));
      const w = await inspect(version, dir, db, runId, "why");
      expect(w.ok, w.error ?? "").toBe(true);
      expect(w.run?.status).toBe("failed");
      expect(w.focus).toMatchObject({ node_id: "step-3", why: "failed", state: "failed" });
      expect(w.attempts.map((a) => a.state)).toEqual(["failed"]);
      expect(w.attempts[0]!.error).toMatch(/step-3 failed on purpose/);
      expect(w.retries).toBe(0);
      expect(w.retries_left).toBe(0);
      expect(w.events.map((e) => e.type)).toContain(version === "0.32.0" ? "NodeFailed" : "RunFailed");
      if (version === "0.32.0") {
        // The engine's own `why`, pointed at the copy through a scratch folder's smithers.db link.
        expect(w.engine_why?.error ?? null, JSON.stringify(w.engine_why)).toBeNull();
        expect(w.engine_why?.exit_code).toBe(0);
      } else {
        expect(w.engine_why).toBeNull();
        expect(hashDir(path.join(dir, ".smithers"))).toBe(before); // fabrik's own reads change nothing
      }
    });
    it(`${version}: nodes of a killed run, node × iteration with states and attempts`, async () => {
      const { dir, db, runId } = controlDir(version, "killed");
      const before = hashDir(path.join(dir, ".smithers"));
      const n = await inspect(version, dir, db, runId, "nodes");
      expect(n.ok, n.error ?? "").toBe(true);
      expect(n.nodes.map((x) => `${x.node_id}:${x.state}:${x.attempts}`)).toEqual(["step-1:finished:1", "step-2:finished:1", "step-3:in-progress:1", "step-4:pending:0", "step-5:pending:0", "step-6:pending:0"]);
      expect(hashDir(path.join(dir, ".smithers"))).toBe(before); // read-only: the WAL a SIGKILL left is untouched
    });
  }

  it("compact: dry-run changes nothing; the apply backs up, truncates within the limit and VACUUMs; a live status is refused", async () => {
    const { dir, db, runId } = controlDir("0.32.0", "finished");
    const Database = (await import("better-sqlite3")).default;
    const d = new Database(db);
    d.prepare("UPDATE _smithers_attempts SET response_text = ? WHERE run_id = ? AND node_id = 'step-2'").run("y".repeat(500_000) + "TAIL", runId);
    d.close();
    const request = (dryRun: boolean): ControlRequest => ({
      v: 1, action: "compact", dry_run: dryRun, host_run_id: 7, smithers_run_id: runId, control_dir: dir, db_path: db, workflow_path: `${dir}/workflow/seq.tsx`,
      engine_dir: engineDir("0.32.0"), dialect: "modern", grace_ms: 0, force: false, node: null, iteration: null, note: null, by: null, signal_name: null, data_json: null,
      correlation: null, limit_bytes: 4096, backup_path: `${dir}/backups/run-7-20261129T120000.000Z.db`, keep_backups: 3,
    });
    const call = async (dryRun: boolean) =>
      ControlResultSchema.parse((await callGuestProgram(exec, { vm: "host", name: "control", controlDir: dir, bun: bunOf("0.32.0"), mode: dryRun ? "dry-run" : "apply", request: request(dryRun), timeoutMs: 60_000, installCache: cache, what: "compact" })).json);
    const before = hashDir(path.join(dir, ".smithers"));
    const listing = fs.readdirSync(dir).sort();
    const dry = await call(true);
    expect(dry).toMatchObject({ ok: true, refused: false, dry_run: true });
    expect(dry.oversized?.values).toBe(1);
    expect(hashDir(path.join(dir, ".smithers"))).toBe(before);
    expect(fs.readdirSync(dir).sort()).toEqual(listing); // no lock file, no backup folder
    const done = await call(false);
    expect(done.ok, done.error ?? "").toBe(true);
    expect(done.fix).toMatchObject({ values: 1, limit_bytes: 4096 });
    const check = new Database(db, { readonly: true });
    const row = check.prepare("SELECT octet_length(response_text) AS n, substr(response_text, -4) AS t FROM _smithers_attempts WHERE run_id = ? AND node_id = 'step-2'").get(runId) as { n: number; t: string };
    check.close();
    expect(row.n).toBeLessThanOrEqual(4096);
    expect(row.t).toBe("TAIL");
    const backup = new Database(done.backup!.path, { readonly: true });
    expect((backup.prepare("SELECT octet_length(response_text) AS n FROM _smithers_attempts WHERE run_id = ? AND node_id = 'step-2'").get(runId) as { n: number }).n).toBe(500_004);
    backup.close();

    const killed = controlDir("0.32.0", "killed");
    const refused = ControlResultSchema.parse(
      (await callGuestProgram(exec, { vm: "host", name: "control", controlDir: killed.dir, bun: bunOf("0.32.0"), mode: "apply", request: { ...request(false), control_dir: killed.dir, db_path: killed.db, smithers_run_id: killed.runId, backup_path: `${killed.dir}/backups/run-7-20261129T120000.000Z.db` }, timeoutMs: 60_000, installCache: cache, what: "compact" })).json,
    );
    expect(refused.refused).toBe(true);
    expect(refused.reasons.map((r) => r.code)).toEqual(["RUN_NOT_ENDED"]);
    expect(fs.existsSync(path.join(killed.dir, "backups"))).toBe(false);
  }, 120_000);
});
