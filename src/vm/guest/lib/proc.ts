/**
 * Process facts inside the VM: is a pid alive (signal 0; EPERM means alive; a zombie is alive, as the engine
 * counts it), its state letter and command line from /proc, pid files, and the engine's owner id.
 */
import type { PidFact } from "../../probe-schema.js";
import { readCapped, readSmallText } from "./files.js";
import { cap, int } from "./text.js";

/** Characters kept of a command line (the wire cap of `PidFact.cmdline`). */
const CMDLINE_CHARS = 200;

/** The process state letter (R, S, Z, …) from `/proc/<pid>/stat`, or null. */
function procState(pid: number): string | null {
  const st = readSmallText(`/proc/${pid}/stat`, 4096);
  const m = st ? /^\s*(\S+)/.exec(st.slice(st.lastIndexOf(")") + 1)) : null;
  return m?.[1] ? m[1].slice(0, 4) : null;
}

/** The parent pid from `/proc/<pid>/stat`, or null. */
function parentPid(pid: number): number | null {
  const st = readSmallText(`/proc/${pid}/stat`, 4096);
  const m = st ? /^\s*\S+\s+(\d+)/.exec(st.slice(st.lastIndexOf(")") + 1)) : null;
  return m?.[1] ? Number(m[1]) : null;
}

/**
 * Liveness of `pid` inside this machine, with its /proc state and command line when alive.
 * @param self pids that must not count as the process looked for (this program and its ancestors: a stale pid
 *   file may point at one of them after pid reuse); such a pid is reported dead with a `note`.
 * @returns null for a value that is not a positive pid (≤ 2^31-1).
 */
export function pidFact(pid: unknown, self?: ReadonlySet<number>): (PidFact & { note: string | null }) | null {
  const p = int(pid);
  if (p === null || p <= 0 || p > 0x7fffffff) return null;
  if (self?.has(p)) return { pid: p, alive: false, state: null, cmdline: null, note: "pid belongs to this program's own process" };
  let alive: boolean;
  try {
    process.kill(p, 0);
    alive = true;
  } catch (e) {
    alive = (e as NodeJS.ErrnoException).code === "EPERM";
  }
  let state: string | null = null;
  let cmdline: string | null = null;
  if (alive) {
    state = procState(p);
    try {
      const r = readCapped(`/proc/${p}/cmdline`, 4096);
      const c = r ? r.buf.toString("utf8").replace(/\0/g, " ").trim() : "";
      cmdline = c ? cap(c, CMDLINE_CHARS) : null;
    } catch {
      /* unreadable: no cmdline */
    }
  }
  return { pid: p, alive, state, cmdline, note: null };
}

/**
 * A pid file: the pid, null when the file is absent, "garbage" when it holds anything but a positive integer.
 * @throws fs errors other than ENOENT.
 */
export function readPidFile(p: string): number | "garbage" | null {
  const r = readCapped(p, 4096);
  if (!r) return null;
  const t = r.buf.toString("utf8").trim();
  return /^[0-9]{1,10}$/.test(t) && Number(t) > 0 ? Number(t) : "garbage";
}

/** The pid in an engine owner id `pid:<pid>:<uuid>` (`_smithers_runs.runtime_owner_id`, 0.32), or null. */
export function ownerPid(owner: unknown): number | null {
  const m = typeof owner === "string" ? /^pid:([0-9]{1,10}):/.exec(owner) : null;
  return m?.[1] ? Number(m[1]) : null;
}

/** This process and its ancestors (up to 64 levels), read from /proc. */
export function ancestorPids(): Set<number> {
  const out = new Set<number>([process.pid]);
  let pid: number | null = process.pid;
  for (let i = 0; i < 64 && pid !== null && pid > 1; i++) {
    pid = parentPid(pid);
    if (pid !== null) out.add(pid);
  }
  return out;
}
