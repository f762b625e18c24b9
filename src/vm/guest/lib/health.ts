/**
 * A VM's health facts, gathered inside the VM by the probe when the request asks for them (`health`, wire
 * format: src/vm/health-schema.ts): bun's SQLite features, the engines installed, free disk in the work dir,
 * the control dirs under the runs roots (and which known ones are gone), lock files and who holds them, and
 * folder sizes. Read-only: nothing is created or changed (locks are looked up in /proc/locks, not taken).
 */
import fs from "node:fs";
import path from "node:path";
import { Database } from "bun:sqlite";
import type { ControlDirFact, EngineFact, HealthFacts, LockFact } from "../../health-schema.js";
import { isDir, readSmallText, statSafe } from "./files.js";
import { pidFact } from "./proc.js";
import { cap, errorText, int } from "./text.js";

const MAX_CONTROL_DIRS = 5000;
const MAX_LOCKS = 2000;
/** Entries walked in all when measuring folders; beyond it a folder's size is reported unknown. */
const MAX_WALK_ENTRIES = 500_000;

/** The health request as the guest reads it (the host validated it with zod). */
export interface HealthReq {
  work_dir: string;
  engines_dir: string;
  runs_roots: string[];
  known_control_dirs: string[];
  measure_dirs: string[];
}

/** Read the `health` part of a probe request; null when absent or not an object. */
export function healthRequest(x: unknown): HealthReq | null {
  if (!x || typeof x !== "object" || Array.isArray(x)) return null;
  const src = x as Record<string, unknown>;
  const abs = (v: unknown): string | null => (typeof v === "string" && v.startsWith("/") && !v.includes("\0") && v.length <= 4096 ? v : null);
  const list = (v: unknown, max: number): string[] => (Array.isArray(v) ? v.map(abs).filter((p): p is string => p !== null).slice(0, max) : []);
  const work = abs(src.work_dir);
  const engines = abs(src.engines_dir);
  if (!work || !engines) return null;
  return { work_dir: work, engines_dir: engines, runs_roots: list(src.runs_roots, 20), known_control_dirs: list(src.known_control_dirs, 5000), measure_dirs: list(src.measure_dirs, 1000) };
}

function hasOctetLength(): boolean {
  const db = new Database(":memory:");
  try {
    return db.query<{ n: number }>("SELECT octet_length('abc') AS n").get()?.n === 3;
  } catch {
    return false;
  } finally {
    db.close();
  }
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return statSafe(p)?.isFile() ?? false;
  } catch {
    return false;
  }
}

function engines(dir: string, errs: string[]): EngineFact[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") errs.push(cap(`engines: ${errorText(e)}`, 500) ?? "");
    return [];
  }
  const out: EngineFact[] = [];
  for (const name of names) {
    const d = path.join(dir, name);
    if (name.startsWith(".") || !isDir(d) || out.length >= 100) continue;
    const markerText = readSmallText(path.join(d, ".fabrik-engine.json"), 4096);
    let bunVersion: string | null = null;
    if (markerText) {
      try {
        const m = JSON.parse(markerText) as Record<string, unknown>;
        bunVersion = typeof m.bun_version === "string" ? cap(m.bun_version, 40) : null;
      } catch {
        /* a garbage marker is reported below */
      }
    }
    const smithers = statSafe(path.join(d, "node_modules", ".bin", "smithers")) !== null;
    const bun = isExecutable(path.join(d, ".runtime", "node_modules", ".bin", "bun"));
    const problem = !markerText ? "no install marker (.fabrik-engine.json): the install did not finish" : !smithers ? "the smithers bin is missing (node_modules/.bin/smithers)" : !bun ? "its bun is missing (.runtime/node_modules/.bin/bun)" : null;
    out.push({ version: cap(name, 100) ?? "", installed: problem === null, bun, bun_version: bunVersion, problem });
  }
  return out;
}

function disk(workDir: string, errs: string[]): HealthFacts["disk"] {
  let p = workDir;
  while (!statSafe(p) && p !== path.dirname(p)) p = path.dirname(p);
  try {
    const s = fs.statfsSync(p);
    return { path: cap(p, 4096) ?? "", free_bytes: Math.max(0, Math.trunc(Number(s.bavail) * Number(s.bsize))), total_bytes: Math.max(0, Math.trunc(Number(s.blocks) * Number(s.bsize))) };
  } catch (e) {
    errs.push(cap(`disk: ${errorText(e)}`, 500) ?? "");
    return null;
  }
}

function controlDirs(roots: string[], errs: string[]): { dirs: ControlDirFact[]; truncated: boolean } {
  const dirs: ControlDirFact[] = [];
  let truncated = false;
  for (const root of roots) {
    let names: string[];
    try {
      names = fs.readdirSync(root).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") errs.push(cap(`${root}: ${errorText(e)}`, 500) ?? "");
      continue;
    }
    for (const name of names) {
      const d = path.join(root, name);
      if (!isDir(d)) continue;
      if (!statSafe(path.join(d, "run.sh")) && !isDir(path.join(d, ".smithers")) && !isDir(path.join(d, "reports"))) continue;
      if (dirs.length >= MAX_CONTROL_DIRS) {
        truncated = true;
        break;
      }
      let hostRunId: number | null = null;
      const meta = readSmallText(path.join(d, "fabrik-run.json"));
      if (meta) {
        try {
          hostRunId = int((JSON.parse(meta) as Record<string, unknown>).host_run_id);
        } catch {
          /* unreadable meta: no id */
        }
      }
      dirs.push({ path: cap(d, 4096) ?? "", host_run_id: hostRunId });
    }
  }
  return { dirs, truncated };
}

/** /proc/locks as `inode → pid` for FLOCK/POSIX/OFD locks (null when unreadable). */
function procLocks(): Map<number, number> | null {
  const text = readSmallText("/proc/locks", 4 * 1024 * 1024);
  if (text === null) return null;
  const out = new Map<number, number>();
  for (const line of text.split("\n")) {
    // `1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF` (a `->` line is a waiter: skipped)
    const m = /^\d+:\s+(?:FLOCK|POSIX|OFDLCK|LEASE)\s+\S+\s+\S+\s+(-?\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line);
    if (m) out.set(Number(m[2]), Number(m[1]));
  }
  return out;
}

/** Whether `file` is locked: /proc/locks by inode, else `flock -n` (exit 75 = held). */
function lockFact(file: string, kind: LockFact["kind"], table: Map<number, number> | null): LockFact | null {
  const st = statSafe(file);
  if (!st || !st.isFile()) return null;
  let held = false;
  let pid: number | null = null;
  if (table) {
    const p = table.get(st.ino);
    if (p !== undefined) {
      held = true;
      pid = p > 0 ? p : null;
    }
  } else {
    // node:child_process is loaded here only (a few ms of bun's start-up that most probes never need).
    const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
    const r = spawnSync("flock", ["-n", "-E", "75", file, "true"], { stdio: "ignore", timeout: 5000 });
    held = r.status === 75;
  }
  const holder = pid !== null ? pidFact(pid) : null;
  return { path: cap(file, 4096) ?? "", kind, held, holder_pid: pid, holder_cmdline: holder?.alive ? holder.cmdline : null };
}

function locks(dirs: string[], enginesDir: string): LockFact[] {
  const table = procLocks();
  const out: LockFact[] = [];
  const add = (f: LockFact | null) => {
    if (f && out.length < MAX_LOCKS) out.push(f);
  };
  for (const d of dirs) {
    add(lockFact(path.join(d, "launcher.lock"), "launcher", table));
    add(lockFact(path.join(d, "resume.lock"), "resume", table));
  }
  try {
    for (const n of fs.readdirSync(enginesDir).sort()) if (n.endsWith(".lock")) add(lockFact(path.join(enginesDir, n), "engine-install", table));
  } catch {
    /* no engines dir */
  }
  return out;
}

function measure(dirs: string[]): HealthFacts["dir_sizes"] {
  let budget = MAX_WALK_ENTRIES;
  const walk = (p: string): number | null => {
    const st = (() => {
      try {
        return fs.lstatSync(p);
      } catch {
        return null;
      }
    })();
    if (!st) return 0;
    if (--budget < 0) return null;
    if (!st.isDirectory()) return st.isFile() ? st.size : 0;
    let total = 0;
    let names: string[];
    try {
      names = fs.readdirSync(p);
    } catch {
      return total;
    }
    for (const n of names) {
      const s = walk(path.join(p, n));
      if (s === null) return null;
      total += s;
    }
    return total;
  };
  return dirs.map((d) => ({ path: cap(d, 4096) ?? "", bytes: statSafe(d) ? walk(d) : null }));
}

/** Gather the health facts for `req` (never throws: problems go to `errors`). */
export function healthFacts(req: HealthReq): HealthFacts {
  const errs: string[] = [];
  const step = <T>(what: string, fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (e) {
      if (errs.length < 20) errs.push(cap(`${what}: ${errorText(e)}`, 500) ?? "");
      return fallback;
    }
  };
  const cd = step("control dirs", () => controlDirs(req.runs_roots, errs), { dirs: [], truncated: false });
  const lockDirs = [...new Set([...cd.dirs.map((d) => d.path), ...req.known_control_dirs.filter((d) => isDir(d))])];
  return {
    sqlite_octet_length: step("octet_length", hasOctetLength, false),
    engines: step("engines", () => engines(req.engines_dir, errs), []),
    disk: step("disk", () => disk(req.work_dir, errs), null),
    control_dirs: cd.dirs,
    control_dirs_truncated: cd.truncated,
    missing_control_dirs: req.known_control_dirs.filter((d) => !isDir(d)).map((d) => cap(d, 4096) ?? ""),
    locks: step("locks", () => locks(lockDirs, req.engines_dir), []),
    dir_sizes: step("sizes", () => measure(req.measure_dirs), []),
    errors: errs.slice(0, 20),
  };
}
