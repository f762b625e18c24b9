/**
 * Real-engine fixture databases for tests, made by `scripts/make-fixtures.mjs` (see that script's header for
 * the cases and how they are produced).
 *
 * Caching: the output lives in `<repo>/.cache/fixtures/<key>/`, where `<key>` is a hash of the script and the
 * example workflows it runs (FIXTURE_INPUTS). A test process runs the script at most once, only when that
 * folder has no `manifest.json` (the script writes it last, and the folder is renamed into place only after
 * the script succeeds). A lock folder `<key>.lock` (holding the owner's pid; taken over when that pid is dead)
 * keeps concurrent test processes from building the same fixtures twice. Engines are installed by the script
 * into `<repo>/.cache/engines` once. Set `FABRIK_FIXTURES_REBUILD=1` to force one rebuild per process.
 *
 * Never open a fixture DB in place, not even read-only: SQLite adds `-wal`/`-shm` files beside a clean WAL
 * DB on any open. Use {@link copyFixtureDb} and open the copy.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is `src/__tests__/helpers/fixtures.ts`). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Files whose content decides the fixture cache key (repo-relative). */
export const FIXTURE_INPUTS = [
  "scripts/make-fixtures.mjs",
  "examples/workflows/seq.tsx",
  "examples/workflows/loop.tsx",
  "examples/workflows-legacy/seq.tsx",
  "examples/workflows-legacy/loop.tsx",
] as const;

/** Engine versions the fixtures cover. */
export const FIXTURE_ENGINES = ["0.32.0", "0.5.0"] as const;
export type FixtureEngineVersion = (typeof FIXTURE_ENGINES)[number];

/** Case names; `multi` exists for 0.32.0 only. */
export type FixtureCaseName = "finished" | "failed" | "killed" | "resumed" | "multi";

/** The DB files a case may hold. */
export type FixtureFileName = "run.db" | "run.db-wal" | "run.db-shm";

/** Expected (and verified at creation) state of one node: its state and its attempts' states by attempt number. */
export interface FixtureNode {
  nodeId: string;
  iteration: number;
  state: string;
  attempts: string[];
}

/** One run inside a fixture DB. */
export interface FixtureRun {
  runId: string;
  /** `<Workflow name>`: "seq" or "loop". */
  workflow: string;
  /** Repo-relative path of the example workflow that ran. */
  workflowFile: string;
  input: Record<string, unknown>;
  /** `_smithers_runs.status` at the end of the case. */
  status: string;
  nodes: FixtureNode[];
}

/** One case: `<dir>/<engineVersion>/<case>/run.db` (+ `-wal`/`-shm` as the engine left them). */
export interface FixtureCase {
  engineVersion: FixtureEngineVersion;
  dialect: "modern" | "legacy";
  case: FixtureCaseName;
  /** Folder relative to the fixtures dir. */
  dir: string;
  /** Main DB file relative to the fixtures dir. */
  db: string;
  /** Every DB file present, with its size and sha256. */
  files: Partial<Record<FixtureFileName, { size: number; sha256: string }>>;
  /** Whether `run.db-wal` holds frames (size > 32-byte header). */
  walHasData: boolean;
  /** Whether the WAL is expected to hold data (true only for `killed`). */
  walExpected: boolean;
  runs: FixtureRun[];
  /** `killed` only: which process was the engine and what was killed. */
  engine?: {
    launchedPid: number;
    processTree: number[];
    enginePid: number;
    engineIsLaunchedProcess: boolean;
    /** True when the DB records the owner pid (0.32 `runtime_owner_id`). */
    ownerRecorded: boolean;
  };
  /** `resumed` only: the case whose run it continued (same run id). */
  resumedFrom?: FixtureCaseName;
  /** Commands (and the 0.32 state reset) that produced the case. */
  steps: unknown[];
}

/** `<dir>/manifest.json`. */
export interface Manifest {
  schemaVersion: 1;
  generator: string;
  bunVersion: string;
  engines: Record<
    string,
    { version: string; dialect: "modern" | "legacy"; packageJson: Record<string, unknown>; workflowsDir: string }
  >;
  cases: Record<string, Partial<Record<FixtureCaseName, FixtureCase>>>;
}

/** Hash (16 hex chars) of FIXTURE_INPUTS: the cache key. */
export function fixturesKey(): string {
  const h = createHash("sha256");
  for (const rel of FIXTURE_INPUTS) {
    h.update(rel).update("\0").update(fs.readFileSync(path.join(REPO_ROOT, rel))).update("\0");
  }
  return h.digest("hex").slice(0, 16);
}

const fixturesRoot = () => path.join(REPO_ROOT, ".cache", "fixtures");

function readManifest(dir: string): Manifest | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest;
    const complete = FIXTURE_ENGINES.every((v) => m.cases[v]?.finished && m.cases[v]?.killed && m.cases[v]?.resumed);
    return m.schemaVersion === 1 && complete ? m : undefined;
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lockDir, "pid"), "utf8"));
      } catch {
        /* being created */
      }
      const mtime = fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      const stale = Number.isInteger(owner) && owner > 0 ? !pidAlive(owner) : Date.now() - mtime > 10_000;
      if (stale) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - started > 15 * 60_000) throw new Error(`timed out waiting for ${lockDir}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

function runScript(outDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "scripts/make-fixtures.mjs"), "--out", outDir], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`make-fixtures.mjs exited ${code ?? signal}\n${output.split("\n").slice(-40).join("\n")}`));
    });
  });
}

async function build(): Promise<{ dir: string; manifest: Manifest }> {
  const key = fixturesKey();
  const root = fixturesRoot();
  const dir = path.join(root, key);
  const force = process.env.FABRIK_FIXTURES_REBUILD === "1";
  if (!force) {
    const m = readManifest(dir);
    if (m) return { dir, manifest: m };
  }
  fs.mkdirSync(root, { recursive: true });
  return withLock(`${dir}.lock`, async () => {
    if (!force) {
      const m = readManifest(dir);
      if (m) return { dir, manifest: m };
    }
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    try {
      await runScript(tmp);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    // Fixtures of other (outdated) keys are no longer reachable: drop them.
    for (const name of fs.readdirSync(root)) {
      if (/^[0-9a-f]{16}$/.test(name) && name !== key) fs.rmSync(path.join(root, name), { recursive: true, force: true });
    }
    const m = readManifest(dir);
    if (!m) throw new Error(`make-fixtures.mjs produced no complete manifest in ${dir}`);
    return { dir, manifest: m };
  });
}

let pending: Promise<{ dir: string; manifest: Manifest }> | undefined;

/**
 * The fixture folder and its manifest, building them (once per process, under a lock) when the cached
 * output for the current script/examples is missing. First build on a fresh machine installs both engines
 * (~10-15 s) and runs them (~15 s); later calls cost a file read.
 */
export async function ensureFixtures(): Promise<{ dir: string; manifest: Manifest }> {
  pending ??= build();
  try {
    return await pending;
  } catch (e) {
    pending = undefined;
    throw e;
  }
}

/** One case of the manifest; throws when it does not exist. */
export function fixtureCase(manifest: Manifest, version: string, name: FixtureCaseName): FixtureCase {
  const c = manifest.cases[version]?.[name];
  if (!c) throw new Error(`no fixture case ${version}/${name}`);
  return c;
}

/**
 * Copy a case's DB files (all that exist, byte for byte) into a fresh temp folder and return the path of the
 * copied `run.db`. Open the copy, never the fixture itself. The caller may delete `path.dirname(result)`.
 */
export function copyFixtureDb(dir: string, c: FixtureCase): string {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `fabrik-fx-${c.engineVersion}-${c.case}-`));
  for (const f of Object.keys(c.files)) fs.copyFileSync(path.join(dir, c.dir, f), path.join(tmp, f));
  return path.join(tmp, "run.db");
}
