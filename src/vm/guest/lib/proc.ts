/**
 * Process facts inside the VM: is a pid alive (signal 0; EPERM means alive; a zombie is alive, as the engine
 * counts it), its state letter and command line from /proc, pid files, and the engine's owner id.
 */
import type { PidFact } from "../../probe-schema.js";
import { isNotTheRunsProcess, judgePidIdentity, parseProcStat, type RecordedPidIdentity } from "../../../core/pid-identity.js";
import { pidExists } from "../../../core/pid-exists.js";
import { readCapped, readSmallText } from "./files.js";
import { cap, int } from "./text.js";

/** Characters kept of a command line (the wire cap of `PidFact.cmdline`). */
const CMDLINE_CHARS = 200;

/** This machine's boot id (`/proc/sys/kernel/random/boot_id`), read once; null when unreadable. */
let bootIdCache: string | null | undefined;
export function currentBootId(): string | null {
  if (bootIdCache === undefined) bootIdCache = readSmallText("/proc/sys/kernel/random/boot_id", 256)?.trim() || null;
  return bootIdCache;
}

/** The parent pid from `/proc/<pid>/stat`, or null. */
function parentPid(pid: number): number | null {
  const st = readSmallText(`/proc/${pid}/stat`, 4096);
  const m = st ? /^\s*\S+\s+(\d+)/.exec(st.slice(st.lastIndexOf(")") + 1)) : null;
  return m?.[1] ? Number(m[1]) : null;
}

/** What {@link pidFact} returns: the wire's {@link PidFact} plus notes for the guest's own messages. */
export type GuestPidFact = PidFact & { note: string | null; identity_reason: string | null };

/**
 * Liveness of `pid` inside this machine AS THE RUN'S PROCESS, with its /proc state and command line when alive.
 * A pid that answers signal 0 but is proven to be another process (src/core/pid-identity.ts: start time or boot id
 * differ from `recorded`, or — with nothing recorded — a command line that is not bun, smithers or the launcher)
 * is reported dead, with `identity` saying why and `cmdline` naming the process that has the pid now.
 * @param self pids that must not count as the process looked for (this program and its ancestors: a stale pid
 *   file may point at one of them after pid reuse); such a pid is reported dead with a `note`.
 * @param recorded what the launcher recorded for this pid (`pids.json`), or null (an older pid file).
 * @returns null for a value that is not a positive pid (≤ 2^31-1).
 */
export function pidFact(pid: unknown, self?: ReadonlySet<number>, recorded: RecordedPidIdentity | null = null): GuestPidFact | null {
  const p = int(pid);
  if (p === null || p <= 0 || p > 0x7fffffff) return null;
  if (self?.has(p)) return { pid: p, alive: false, state: null, cmdline: null, identity: null, note: "pid belongs to this program's own process", identity_reason: null };
  if (!pidExists(p)) return { pid: p, alive: false, state: null, cmdline: null, identity: null, note: null, identity_reason: null };
  const stat = readSmallText(`/proc/${p}/stat`, 4096);
  const parsed = stat ? parseProcStat(stat) : { comm: null, state: null, start_ticks: null };
  let cmdline: string | null = null;
  try {
    const r = readCapped(`/proc/${p}/cmdline`, 4096);
    cmdline = r ? r.buf.toString("utf8").replace(/\0/g, " ").trim() : null;
  } catch {
    /* unreadable: no cmdline */
  }
  const j = judgePidIdentity(recorded, { start_ticks: parsed.start_ticks, boot_id: currentBootId(), cmdline, comm: parsed.comm });
  return {
    pid: p,
    alive: !isNotTheRunsProcess(j.verdict),
    state: parsed.state ? parsed.state.slice(0, 4) : null,
    cmdline: cmdline ? cap(cmdline, CMDLINE_CHARS) : null,
    identity: j.verdict,
    note: null,
    identity_reason: j.reason,
  };
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

/** `pids.json` (launcher contract): the boot id and each pid's recorded start time. */
export interface PidsFile {
  boot_id: string | null;
  launcher: { pid: number; start_ticks: number | null } | null;
  child: { pid: number; start_ticks: number | null } | null;
  engine: { pid: number; start_ticks: number | null } | null;
}

/** Read `<controlDir>/pids.json`; null when absent or not the expected shape (never throws). */
export function readPidsFile(controlDir: string): PidsFile | null {
  const text = readSmallText(`${controlDir}/pids.json`, 8192);
  if (text === null) return null;
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return null;
  }
  if (!j || typeof j !== "object" || Array.isArray(j)) return null;
  const src = j as Record<string, unknown>;
  const entry = (x: unknown): PidsFile["launcher"] => {
    if (!x || typeof x !== "object") return null;
    const e = x as Record<string, unknown>;
    const pid = int(e.pid);
    const ticks = int(e.start_ticks);
    return pid !== null && pid > 0 ? { pid, start_ticks: ticks !== null && ticks >= 0 ? ticks : null } : null;
  };
  return { boot_id: typeof src.boot_id === "string" && src.boot_id ? src.boot_id.slice(0, 100) : null, launcher: entry(src.launcher), child: entry(src.child), engine: entry(src.engine) };
}

/** What the launcher recorded for `pid` (any role in `pids.json`), or null when it recorded nothing for it. */
export function recordedIdentity(file: PidsFile | null, pid: number | null): RecordedPidIdentity | null {
  if (!file || pid === null) return null;
  for (const e of [file.launcher, file.child, file.engine]) if (e && e.pid === pid) return { start_ticks: e.start_ticks, boot_id: file.boot_id };
  return null;
}

/** One of the run's processes as the control program sees it: its role(s) and the identity judgement. */
export type RunProcess = GuestPidFact & { role: string };

/**
 * The run's processes: the pids in `launcher.pid`, `smithers.pid`, `engine.pid` and heartbeat.json, and the DB's
 * owner pid (0.32) — each judged against `pids.json` (src/core/pid-identity.ts), one entry per distinct pid.
 * @param ownerId `_smithers_runs.runtime_owner_id` (`pid:<pid>:<uuid>`), or null.
 * @param self pids never to count (this program and its ancestors).
 */
export function runProcesses(controlDir: string, ownerId: string | null, self?: ReadonlySet<number>): RunProcess[] {
  const pids = readPidsFile(controlDir);
  let hb: Record<string, unknown> = {};
  try {
    const j: unknown = JSON.parse(readSmallText(`${controlDir}/heartbeat.json`) ?? "null");
    if (j && typeof j === "object" && !Array.isArray(j)) hb = j as Record<string, unknown>;
  } catch {
    /* no heartbeat */
  }
  const roles = new Map<number, string[]>();
  const add = (pid: unknown, role: string) => {
    const p = int(pid);
    if (p === null || p <= 0) return;
    const list = roles.get(p) ?? [];
    if (!list.includes(role)) list.push(role);
    roles.set(p, list);
  };
  const file = (name: string) => {
    try {
      const v = readPidFile(`${controlDir}/${name}`);
      return typeof v === "number" ? v : null;
    } catch {
      return null;
    }
  };
  add(file("launcher.pid"), "launcher");
  add(hb.launcher_pid, "launcher");
  add(file("smithers.pid"), "child");
  add(hb.child_pid, "child");
  add(file("engine.pid"), "engine");
  add(hb.engine_pid, "engine");
  add(ownerPid(ownerId), "owner");
  const out: RunProcess[] = [];
  for (const [pid, r] of roles) {
    const f = pidFact(pid, self, recordedIdentity(pids, pid));
    if (f) out.push({ ...f, role: r.join("+") });
  }
  return out;
}
