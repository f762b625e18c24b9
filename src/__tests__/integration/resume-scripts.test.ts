/**
 * Resume scripts run for real on this host: every script planResume generates for the guide's regression cases
 * is valid bash, and the VM-side RESUME_WRAPPER (bash + the engine's real bun, as in a VM) applies the lock
 * rules. The plans themselves are unit-tested in unit/resume-plan.test.ts.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { RESUME_EXIT_LOCKED, RESUME_EXIT_NO_BUN, requestFor, resumeArgv } from "../../fabrik/resume-service.js";
import { planResume } from "../../resume/plan.js";
import { loadGuestProgram } from "../../vm/guest-programs.js";
import type { RunRecord } from "../../fabrik/registry.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run, waitFor } from "../helpers/proc.js";
import { SCRIPT_CASES, input, plan, runRecord } from "../helpers/resume-plan-fixtures.js";
import { tempDir } from "../helpers/test-root.js";

describe("planResume: the generated scripts are valid bash", () => {
  for (const c of SCRIPT_CASES) {
    it(`${c.name}: bash -n`, async () => {
      const p = c.p();
      expect(p.allowed, JSON.stringify(p.reasons)).toBe(true);
      const sh = await run("bash", ["-n"], { input: p.script! });
      expect(sh.code, sh.stderr).toBe(0);
    });
  }
});

// The VM-side wrapper run locally (bash + the repo's engine bun): the lock rules, without a VM.
const noFlock = missingPrereqs("flock");
describe.skipIf(noFlock)(titled("RESUME_WRAPPER (local bash, real bun)", noFlock), () => {
  const LOCAL_BUN = path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun");
  const root = tempDir("resume-wrap-");
  beforeAll(async () => {
    await ensureFixtures(); // installs the engines (and their bun) under .cache/engines
    expect(fs.existsSync(LOCAL_BUN), `${LOCAL_BUN} after ensureFixtures()`).toBe(true);
  }, 600_000);
  const holders: { kill: () => void }[] = [];
  afterAll(() => {
    for (const h of holders) h.kill();
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** The guest's $HOME for these runs (the program is installed under it). */
  const home = path.join(root, "home");
  fs.mkdirSync(home, { recursive: true });
  const wrapWith = async (dir: string, mode: "apply" | "dry-run", over: { bun?: string; install?: boolean; run?: Partial<RunRecord>; staleMs?: number } = {}) => {
    const p = plan({}, { run: runRecord({ control_dir: dir, workflow_path: `${dir}/workflow/seq.tsx`, smithers_db_path: `${dir}/.smithers/run-113.db`, ...over.run }) });
    const req = requestFor(p, { id: 113, dryRun: mode === "dry-run", force: false, fix: false, fixLimitBytes: 102400, yes: true }, over.staleMs ?? 30_000, mode === "dry-run");
    req.db_path = `${dir}/.smithers/run-113.db`; // the observation above names another folder's DB
    const [cmd, ...args] = resumeArgv(dir, over.bun ?? LOCAL_BUN, mode, loadGuestProgram("resume"), over.install ?? true);
    const r = await run(cmd!, args, { input: JSON.stringify(req), timeoutMs: 30_000, env: { ...process.env, HOME: home } });
    return { status: r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const wrap = (dir: string, mode: "apply" | "dry-run", bun = LOCAL_BUN) => wrapWith(dir, mode, { bun });
  const tmp = () => fs.mkdtempSync(path.join(root, "c-"));
  /** flock holding `file` in its own process group (so the test can end flock AND the sleep that inherited the lock). */
  const holdLock = async (file: string) => {
    const p = spawn("flock", [file, "sleep", "30"], { stdio: "ignore", detached: true });
    const holder = {
      kill: () => {
        try {
          process.kill(-p.pid!, "SIGKILL");
        } catch {
          /* gone */
        }
      },
    };
    holders.push(holder);
    // Held once `flock -n` on the same file fails.
    await waitFor(async () => fs.existsSync(file) && (await run("flock", ["-n", file, "true"])).code !== 0, { timeoutMs: 10_000, intervalMs: 20, what: `flock to hold ${file}` });
    return holder;
  };
  const lockFree = (file: string) =>
    waitFor(async () => (await run("flock", ["-n", file, "true"])).code === 0, { timeoutMs: 10_000, intervalMs: 50, what: `${file} to be free` });

  it("dry-run creates no lock file and answers with the VM's checks (here: no DB -> refused)", async () => {
    const dir = tmp();
    const r = await wrap(dir, "dry-run");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ v: 1, dry_run: true, refused: true });
    expect(out.reasons.map((x: { code: string }) => x.code)).toContain("DB_MISSING");
    expect(fs.readdirSync(dir)).toEqual([]);
  });
  it("a second resume while one holds resume.lock is refused (apply and dry-run)", async () => {
    const dir = tmp();
    const holder = await holdLock(path.join(dir, "resume.lock"));
    try {
      expect((await wrap(dir, "apply")).status).toBe(RESUME_EXIT_LOCKED);
      expect((await wrap(dir, "dry-run")).status).toBe(RESUME_EXIT_LOCKED);
    } finally {
      holder.kill();
    }
    // SIGKILL is asynchronous: wait until the lock is really free before the next resume.
    await lockFree(path.join(dir, "resume.lock"));
    const r = await wrap(dir, "apply");
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).refused).toBe(true);
  });
  it("a held launcher.lock refuses (a launcher or engine still lives)", async () => {
    const dir = tmp();
    const holder = await holdLock(path.join(dir, "launcher.lock"));
    try {
      const out = JSON.parse((await wrap(dir, "dry-run")).stdout);
      expect(out.checks.find((c: { name: string }) => c.name === "launcher-lock")).toMatchObject({ ok: false });
      expect(out.reasons.map((x: { code: string }) => x.code)).toContain("LAUNCHER_LOCK_HELD");
    } finally {
      holder.kill();
    }
  });
  it("a missing bun is its own exit status", async () => {
    expect((await wrap(tmp(), "apply", "/nonexistent/bun")).status).toBe(RESUME_EXIT_NO_BUN);
  });
  it("installed once: a later call sends only the hash; a lost file is exit 79 with nothing run", async () => {
    const program = loadGuestProgram("resume");
    expect((await wrapWith(tmp(), "dry-run", { install: true })).status).toBe(0);
    expect(fs.readFileSync(path.join(home, ".fabrik/guest", program.hash, "resume.js"), "utf8")).toBe(program.text);
    const r = await wrapWith(tmp(), "dry-run", { install: false });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).dry_run).toBe(true);
    fs.rmSync(path.join(home, ".fabrik/guest", program.hash), { recursive: true });
    const lost = await wrapWith(tmp(), "apply", { install: false });
    expect(lost.status).toBe(79);
    expect(lost.stdout).toBe("");
  });
  it("the VM refuses a fresh heartbeat with the planner's exact words (the same rule, configured threshold)", async () => {
    const { dir: fx, manifest } = await ensureFixtures();
    const dir = tmp();
    const db = copyFixtureDb(fx, fixtureCase(manifest, "0.32.0", "killed"));
    fs.mkdirSync(path.join(dir, ".smithers"));
    for (const f of fs.readdirSync(path.dirname(db))) fs.copyFileSync(path.join(path.dirname(db), f), path.join(dir, ".smithers", f.replace(/^run\.db/, "run-113.db")));
    fs.rmSync(path.dirname(db), { recursive: true, force: true });
    const Database = (await import("better-sqlite3")).default;
    const d = new Database(path.join(dir, ".smithers/run-113.db"));
    d.prepare("UPDATE _smithers_runs SET heartbeat_at_ms = ?").run(Date.now());
    d.close();
    const r = await wrapWith(dir, "dry-run", { run: { smithers_run_id: "fx-0.32.0-killed" }, staleMs: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { reasons: { code: string; message: string; hint: string | null }[] };
    const vmReason = out.reasons.find((x) => x.code === "HEARTBEAT_FRESH");
    const hostReason = planResume({ ...input({ heartbeatAgeMs: 0 }), thresholds: { engineHeartbeatStaleMs: 600_000 } }).reasons.find((x) => x.code === "HEARTBEAT_FRESH");
    expect(vmReason).toEqual(hostReason);
    expect(vmReason?.hint).toContain("older than 10m");
  }, 600_000);
});
