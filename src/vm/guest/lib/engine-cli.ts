/**
 * Running the engine's OWN command line inside the VM against a run's DB (docs/engine-verbs.md).
 *
 * How each engine finds its DB (read from the engine's source and verified by running it):
 * - 0.32 (`why`, `events`, `node`, `approve`, `deny`, `signal`, `cancel`, …): no flag and no environment variable
 *   name a DB. `findAndOpenDb()` resolves from the cwd: the "workspace root" is the nearest ancestor of the cwd
 *   that holds a `.smithers/` folder and lies strictly below $HOME (`findSmithersAnchorDir`), else the cwd itself;
 *   the DB is `<workspace root>/smithers.db` (falling back to `<root>/.smithers/smithers.db` when the first has no
 *   runs). A control dir holds `.smithers/`, so run from there it would look for `<control dir>/smithers.db`,
 *   which does not exist (fabrik's DB is `.smithers/run-N.db`). fabrik therefore runs the verb in a fresh empty
 *   folder outside any workspace (under the guest's tmp dir) holding ONE symlink, `smithers.db` → the run's DB.
 *   SQLite resolves the link, so the WAL and -shm beside the real DB are used.
 * - 0.5 (`approve`, `deny`, `cancel`, `status`, … each taking the workflow file): the verb loads the workflow,
 *   whose `createSmithers(…, { dbPath })` decides; fabrik's workflows pass `process.env.SMITHERS_DB_PATH`, so fabrik
 *   sets it, and runs the verb in the workflow's folder (its `node_modules` link resolves the engine).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { statSafe } from "./files.js";
import { cap } from "./text.js";

/** What a run of an engine verb gave. */
export interface EngineRun {
  /** Display form: `smithers <verb> <args…>`. */
  argv: string[];
  cwd: string;
  /** Exit status; null when it could not start or was killed at its deadline. */
  exit_code: number | null;
  stdout: string;
  stderr: string;
  /** Its JSON answer (0.32 `--format json`; 0.5 prints JSON), or null. */
  json: unknown;
  /** Why it did not run (spawn error, deadline), or null. */
  error: string | null;
}

/**
 * The 0.32 anchor rule (`findSmithersAnchorDir`): the nearest ancestor of `dir` holding a `.smithers/` folder,
 * strictly below `home`, not itself inside a `.smithers` tree; undefined when there is none.
 */
export function smithersAnchorDir(dir: string, home: string | undefined): string | undefined {
  let d = path.resolve(dir);
  const h = home ? path.resolve(home) : undefined;
  for (;;) {
    if (h) {
      const rel = path.relative(h, d);
      if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) return undefined;
    }
    if (!d.split(path.sep).includes(".smithers") && statSafe(path.join(d, ".smithers"))?.isDirectory()) return d;
    const parent = path.dirname(d);
    if (parent === d) return undefined;
    d = parent;
  }
}

/** The first JSON object or array in an engine's output (its structured answer), or null. */
export function engineJson(stdout: string): unknown {
  const t = stdout.trim();
  if (!t) return null;
  try {
    return JSON.parse(t);
  } catch {
    /* log lines around it: find the first line that starts a JSON document */
  }
  const lines = t.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!/^[[{]/.test(lines[i]!)) continue;
    try {
      return JSON.parse(lines.slice(i).join("\n"));
    } catch {
      /* next */
    }
  }
  return null;
}

/** Options of {@link runEngineVerb}. */
export interface EngineVerbOptions {
  /** The engine folder: `<dir>/node_modules/.bin/smithers`, bun in `<dir>/.runtime/node_modules/.bin`. */
  engineDir: string;
  dialect: "modern" | "legacy";
  /** The run's DB (0.32: linked as `smithers.db` in a scratch cwd; 0.5: `SMITHERS_DB_PATH`). */
  dbPath: string;
  /** 0.5: the workflow file (the verb's first argument is given by the caller; this sets the cwd). */
  workflowPath: string;
  /** The verb and its arguments, e.g. `["cancel", "fabrik-7", "--format", "json"]`. */
  args: string[];
  /** Deadline, ms. */
  timeoutMs: number;
}

/**
 * Run `smithers <args…>` of the run's engine against the run's DB (see the module doc for how the DB is named to
 * each engine). Never throws: a failure to start is `error`, the exit status is data.
 */
export function runEngineVerb(o: EngineVerbOptions): EngineRun {
  const smithers = path.join(o.engineDir, "node_modules", ".bin", "smithers");
  const binDir = path.join(o.engineDir, ".runtime", "node_modules", ".bin");
  const env: Record<string, string | undefined> = {
    ...process.env,
    PATH: `${binDir}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    NODE_PATH: path.join(o.engineDir, "node_modules"),
    SMITHERS_POST_FAILURE: "0",
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  };
  let cwd: string;
  let scratch: string | null = null;
  if (o.dialect === "modern") {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-engine-"));
    fs.symlinkSync(o.dbPath, path.join(scratch, "smithers.db"));
    cwd = scratch;
    // If some `.smithers/` folder above the scratch dir (below $HOME) would make it the workspace, make the
    // scratch dir $HOME for the engine: the anchor search then stops at once and the cwd is the workspace.
    if (smithersAnchorDir(scratch, process.env.HOME) !== undefined) env.HOME = scratch;
  } else {
    env.SMITHERS_DB_PATH = o.dbPath;
    cwd = path.dirname(o.workflowPath);
  }
  const display = ["smithers", ...o.args];
  try {
    const r = spawnSync(smithers, o.args, { cwd, env, encoding: "utf8", timeout: o.timeoutMs, maxBuffer: 16 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"], killSignal: "SIGKILL" });
    const stdout = typeof r.stdout === "string" ? r.stdout : "";
    const stderr = typeof r.stderr === "string" ? r.stderr : "";
    const error = r.error ? cap((r.error as Error).message, 500) : r.signal ? `killed by ${r.signal} (deadline ${o.timeoutMs} ms)` : null;
    return { argv: display, cwd, exit_code: r.status, stdout, stderr, json: engineJson(stdout), error };
  } finally {
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** The last `n` non-empty lines of an engine run's output (stderr, then stdout), for messages. */
export function outputTail(r: EngineRun, n = 4): string | null {
  const lines = `${r.stderr}\n${r.stdout}`.split("\n").map((l) => l.trimEnd()).filter((l) => l.trim());
  const t = lines.slice(-n).join(" | ");
  return t ? cap(t, 2000) : r.error;
}
