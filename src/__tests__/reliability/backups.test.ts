/**
 * Reliability: the backup a resume takes before it changes a run's DB (defect 6; docs/reliability.md, "Backups").
 *
 * The guest program `resume` runs here exactly as in a VM — the VM-side wrapper (bash, flock) and the engine's
 * real bun — on a copy of a real 0.32 run DB killed mid-task (the fixtures), in a control dir of its own. The
 * resumed "engine" is a stub script that only records its pids, so no engine runs.
 *
 * - killed during VACUUM INTO: the DB is untouched, the half-written copy never carries a backup's name, and the
 *   next resume removes it (and its -journal) and succeeds;
 * - a DB with a corrupt interior page: no backup, no junk file left, the DB untouched, the reset not applied;
 * - junk with newer names (a 0-byte copy, a truncated copy with its -journal, a truncated copy alone) never
 *   pushes verified backups out of "last 3 kept";
 * - a backup keeps the DB's mode (0600).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { resumeArgv } from "../../fabrik/resume-service.js";
import { loadGuestProgram } from "../../vm/guest-programs.js";
import type { ResumeRequestWire } from "../../vm/resume-schema.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase, type FixtureCase } from "../helpers/fixtures.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run, waitFor } from "../helpers/proc.js";
import { sha256File, treeHashes } from "../helpers/reliability.js";
import { tempDir } from "../helpers/test-root.js";

const skip = missingPrereqs("flock", "bash");
const BUN = path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun");
const ENGINE_DIR = path.join(REPO_ROOT, ".cache/engines/0.32.0");
const RUN_ID = "fx-0.32.0-killed";
/** The resumed "engine": records its pids the way run.sh does, and ends. */
const STUB_SCRIPT = "#!/bin/bash\necho $$ > launcher.pid\necho $$ > smithers.pid\nexit 0\n";

interface GuestAnswer {
  ok: boolean;
  stage: string;
  error: string | null;
  refused: boolean;
  reasons: { code: string; message: string }[];
  leftovers: string[];
  backup: { path: string; size_bytes: number; kept: string[]; removed: string[] } | null;
  reset: { applied: boolean } | null;
}

describe.skipIf(skip)(titled("reliability: resume backups (guest program, real bun, real run DB)", skip), () => {
  const root = tempDir("backups-");
  const home = path.join(root, "home");
  let fixturesDir = "";
  let killed: FixtureCase;
  let stamp = 0;

  beforeAll(async () => {
    const { dir, manifest } = await ensureFixtures();
    fixturesDir = dir;
    killed = fixtureCase(manifest, "0.32.0", "killed");
    expect(fs.existsSync(BUN), BUN).toBe(true);
    fs.mkdirSync(home, { recursive: true });
  }, 600_000);
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  /**
   * A control dir holding the killed run's DB (checkpointed into one file, mode 0600, owner pid dead), its
   * workflow file, and `prepare(db)` applied to the DB with better-sqlite3 first.
   */
  async function controlDir(prepare?: (db: import("better-sqlite3").Database) => void): Promise<{ dir: string; db: string }> {
    const dir = fs.mkdtempSync(path.join(root, "c-"));
    const src = copyFixtureDb(fixturesDir, killed);
    fs.mkdirSync(path.join(dir, ".smithers"));
    fs.mkdirSync(path.join(dir, "workflow"));
    fs.copyFileSync(path.join(REPO_ROOT, "examples/workflows/seq.tsx"), path.join(dir, "workflow/seq.tsx"));
    for (const f of fs.readdirSync(path.dirname(src))) fs.copyFileSync(path.join(path.dirname(src), f), path.join(dir, ".smithers", f.replace(/^run\.db/, "run-113.db")));
    fs.rmSync(path.dirname(src), { recursive: true, force: true });
    const db = path.join(dir, ".smithers/run-113.db");
    const Database = (await import("better-sqlite3")).default;
    const d = new Database(db);
    d.prepare("UPDATE _smithers_runs SET runtime_owner_id = ? WHERE run_id = ?").run(`pid:${deadPid()}:fixture`, RUN_ID); // the DB owner is not alive
    prepare?.(d);
    d.pragma("wal_checkpoint(TRUNCATE)");
    d.close(); // the last connection: the WAL is folded into the main file and removed
    fs.chmodSync(db, 0o600);
    return { dir, db };
  }

  /** A pid no process has now (searched down from the kernel's pid_max). */
  function deadPid(): number {
    const max = Number(fs.readFileSync("/proc/sys/kernel/pid_max", "utf8").trim());
    for (let p = max - 1; p > 1; p--) if (!fs.existsSync(`/proc/${p}`)) return p;
    return 999_999;
  }

  function request(dir: string, db: string): ResumeRequestWire {
    // Stamps grow with each call, like the host's clock-based backup names.
    const s = new Date(Date.UTC(2026, 0, 1) + ++stamp * 1000).toISOString().replace(/[-:]/g, "");
    return {
      v: 1,
      dry_run: false,
      host_run_id: 113,
      smithers_run_id: RUN_ID,
      control_dir: dir,
      db_path: db,
      workflow_path: path.join(dir, "workflow/seq.tsx"),
      engine_dir: ENGINE_DIR,
      dialect: "modern",
      force: false,
      fix: false,
      fix_limit_bytes: 102_400,
      engine_heartbeat_stale_ms: 30_000,
      expected_mode: null,
      retry_node: null,
      backup_path: path.join(dir, "backups", `run-113-${s}.db`),
      keep_backups: 3,
      script_path: path.join(dir, "resume-1.sh"),
      script: STUB_SCRIPT,
      start_wait_ms: 10_000,
    };
  }

  /** Run the VM-side wrapper in apply mode, as fabrik does in a VM; its one JSON line. */
  async function apply(dir: string, db: string): Promise<GuestAnswer> {
    const [cmd, ...args] = resumeArgv(dir, BUN, "apply", loadGuestProgram("resume"), true);
    const r = await run(cmd!, args, { input: JSON.stringify(request(dir, db)), timeoutMs: 120_000, env: { ...process.env, HOME: home } });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as GuestAnswer;
  }

  const backups = (dir: string) => (fs.existsSync(path.join(dir, "backups")) ? fs.readdirSync(path.join(dir, "backups")).sort() : []);
  const finishedBackups = (dir: string) => backups(dir).filter((n) => /^run-113-[0-9A-Za-z.]+\.db$/.test(n));
  async function attemptStates(db: string): Promise<string[]> {
    const Database = (await import("better-sqlite3")).default;
    const copy = `${db}.inspect`;
    fs.copyFileSync(db, copy);
    const d = new Database(copy, { readonly: true });
    try {
      return (d.prepare("SELECT state FROM _smithers_attempts WHERE run_id = ? ORDER BY node_id, attempt").all(RUN_ID) as { state: string }[]).map((r) => r.state);
    } finally {
      d.close();
      fs.rmSync(copy);
    }
  }
  async function integrity(p: string): Promise<string> {
    const Database = (await import("better-sqlite3")).default;
    const d = new Database(p, { readonly: true });
    try {
      return String(d.pragma("integrity_check", { simple: true }));
    } finally {
      d.close();
    }
  }

  it("killed during VACUUM INTO: the DB is untouched, the partial copy never counts, the next resume cleans it up", async () => {
    // ~200 MB of transcript, so the copy takes long enough to be caught in the middle.
    const { dir, db } = await controlDir((d) => {
      d.exec("CREATE TABLE transcript_filler (x BLOB)");
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      const ins = d.prepare("INSERT INTO transcript_filler VALUES (?)");
      d.transaction(() => {
        for (let i = 0; i < 200; i++) ins.run(chunk);
      })();
    });
    const dbHash = sha256File(db);
    const before = await attemptStates(db);
    const [cmd, ...args] = resumeArgv(dir, BUN, "apply", loadGuestProgram("resume"), true);
    const child = spawn(cmd!, args, { env: { ...process.env, HOME: home }, stdio: ["pipe", "ignore", "ignore"], detached: true });
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
    child.stdin.end(JSON.stringify(request(dir, db)));
    // Inside VACUUM INTO: the copy and its journal both exist. Then power off (SIGKILL the whole group).
    await waitFor(() => backups(dir).some((n) => n.endsWith("-journal")), { timeoutMs: 60_000, intervalMs: 5, what: "VACUUM INTO to be under way", describe: () => backups(dir).join(", ") });
    process.kill(-child.pid!, "SIGKILL");
    await exited;
    expect(finishedBackups(dir)).toEqual([]); // nothing with a backup's name: rotation cannot count it
    expect(backups(dir).some((n) => n.endsWith(".partial"))).toBe(true);
    expect(sha256File(db)).toBe(dbHash);
    expect(await attemptStates(db)).toEqual(before);

    const again = await apply(dir, db);
    expect(again.error).toBeNull();
    expect(again.ok).toBe(true);
    expect(again.leftovers).toEqual([]);
    expect(backups(dir)).toEqual([path.basename(again.backup!.path)]); // the partial copy and its journal are gone
    expect(again.backup!.kept).toEqual([again.backup!.path]);
    expect(fs.statSync(again.backup!.path).mode & 0o777).toBe(0o600);
    expect(await integrity(again.backup!.path)).toBe("ok");
  }, 180_000);

  it("a DB with a corrupt interior page: no backup, no junk, the DB and the run untouched, the error says so", async () => {
    let root = 0;
    const { dir, db } = await controlDir((d) => {
      d.exec("CREATE TABLE filler (k INTEGER PRIMARY KEY, v TEXT)");
      const ins = d.prepare("INSERT INTO filler (v) VALUES (?)");
      d.transaction(() => {
        for (let i = 0; i < 4000; i++) ins.run(`row ${i} `.repeat(8));
      })();
      root = (d.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'filler'").get() as { rootpage: number }).rootpage;
    });
    // The filler table's root is an interior b-tree page (type 0x05): scramble its cell pointers.
    const pageSize = fs.readFileSync(db).readUInt16BE(16);
    const fd = fs.openSync(db, "r+");
    const page = Buffer.alloc(pageSize);
    fs.readSync(fd, page, 0, pageSize, (root - 1) * pageSize);
    expect(page[0]).toBe(0x05);
    page.fill(0xee, 12, 200);
    fs.writeSync(fd, page, 0, pageSize, (root - 1) * pageSize);
    fs.closeSync(fd);
    const dbHash = sha256File(db);
    const before = await attemptStates(db);
    const tree = treeHashes(dir);

    const out = await apply(dir, db);
    expect(out.ok).toBe(false);
    expect(out.stage).toBe("backup");
    // Either VACUUM INTO trips over the page, or it copies it and the integrity check of the copy catches it.
    expect(out.error).toMatch(/^cannot back the DB up \((corrupt: |the backup failed its integrity check: ).*\); the partial copy was removed$/);
    expect(out.error).not.toContain("\n");
    expect(out.leftovers).toEqual([]);
    expect(out.backup).toBeNull();
    expect(out.reset?.applied).toBe(false);
    expect(backups(dir)).toEqual([]); // not even a 0-byte file
    expect(sha256File(db)).toBe(dbHash);
    expect(await attemptStates(db)).toEqual(before);
    // Apart from the empty backups folder and resume.lock (the wrapper's lock file), the control dir is as it was.
    expect(treeHashes(dir, /^(backups|resume\.lock)$/)).toEqual(tree);
  }, 120_000);

  it("junk with newer names never pushes verified backups out of the last 3 kept", async () => {
    const { dir, db } = await controlDir();
    const b = path.join(dir, "backups");
    fs.mkdirSync(b, { mode: 0o700 });
    const verified = ["run-113-20250101T000000.000Z.db", "run-113-20250102T000000.000Z.db", "run-113-20250103T000000.000Z.db"];
    for (const v of verified) fs.copyFileSync(db, path.join(b, v));
    const whole = fs.readFileSync(db);
    fs.writeFileSync(path.join(b, "run-113-29990101T000000.000Z.db"), ""); // a VACUUM INTO that failed at once
    fs.writeFileSync(path.join(b, "run-113-29990102T000000.000Z.db"), whole.subarray(0, 8192)); // killed mid-copy…
    fs.writeFileSync(path.join(b, "run-113-29990102T000000.000Z.db-journal"), Buffer.alloc(512)); // …with its journal
    fs.writeFileSync(path.join(b, "run-113-29990103T000000.000Z.db"), whole.subarray(0, whole.length - 4096)); // cut short
    fs.writeFileSync(path.join(b, ".run-113-29990104T000000.000Z.db.partial"), whole.subarray(0, 4096));
    fs.writeFileSync(path.join(b, "run-7-20250101T000000.000Z.db"), ""); // another run's file: not ours to touch

    const out = await apply(dir, db);
    expect(out.error).toBeNull();
    const fresh = path.basename(out.backup!.path);
    expect(out.backup!.kept.map((p) => path.basename(p))).toEqual([verified[1], verified[2], fresh]);
    expect(out.backup!.removed.map((p) => path.basename(p))).toEqual([verified[0]]);
    expect(backups(dir)).toEqual([verified[1], verified[2], fresh, "run-7-20250101T000000.000Z.db"].sort());
  }, 120_000);
});
