/**
 * Is a living pid still the run's process? ONE judgement, pure, shared by the guest probe, the guest resume
 * re-check and the guest control program (cancel), so they cannot disagree about which process is the run's.
 *
 * A pid in a pid file can be reused: after a crash the kernel hands the number to another process, and after a
 * VM reboot every pid starts over. The launcher therefore records, beside each pid, the process's start time
 * (`/proc/<pid>/stat` field 22, clock ticks since boot) and the boot id (`/proc/sys/kernel/random/boot_id`) in
 * `pids.json` (launcher contract v1, docs/launcher-contract.md). A living pid is the run's process only when both
 * still match. Pid files written before that (a bare number and no `pids.json` entry) are judged by the command
 * line: a process that is not bun, smithers or the launcher (`bash …/run.sh`, `bash …/resume-N.sh`) is not the
 * run's.
 *
 * fabrik never signals a process whose identity is not `verified` or `plausible`.
 */

/** What the launcher recorded for one pid (`pids.json`). */
export interface RecordedPidIdentity {
  /** `/proc/<pid>/stat` field 22 when the launcher saw the process: start time in clock ticks since boot. */
  start_ticks: number | null;
  /** `/proc/sys/kernel/random/boot_id` at that time. */
  boot_id: string | null;
}

/** What the guest reads about a living pid now. */
export interface CurrentPidIdentity {
  start_ticks: number | null;
  boot_id: string | null;
  /** `/proc/<pid>/cmdline` with NULs as spaces (empty for a zombie), or null when unreadable. */
  cmdline: string | null;
  /** `/proc/<pid>/stat` field 2 without the parentheses (the executable's name; kept by zombies), or null. */
  comm: string | null;
}

/**
 * The verdict on a living pid:
 * - `verified`: start time and boot id match what the launcher recorded — the run's process;
 * - `plausible`: nothing was recorded (an older pid file), and its command line is bun, smithers or the launcher;
 * - `reused`: the start time differs — another process got the pid after the run's died;
 * - `rebooted`: the boot id differs — the VM rebooted since the pid was recorded;
 * - `foreign`: nothing recorded, and its command line is something else (e.g. `sleep 600`);
 * - `unknown`: /proc could not be read (the process is treated as the run's for liveness, never signalled).
 */
export type PidIdentityVerdict = "verified" | "plausible" | "reused" | "rebooted" | "foreign" | "unknown";

export const PID_IDENTITY_VERDICTS: readonly PidIdentityVerdict[] = ["verified", "plausible", "reused", "rebooted", "foreign", "unknown"];

/** Verdicts under which a living pid is NOT the run's process (so the run's process is dead). */
export function isNotTheRunsProcess(v: PidIdentityVerdict | null | undefined): boolean {
  return v === "reused" || v === "rebooted" || v === "foreign";
}

/** Verdicts under which fabrik may signal the pid (cancel): proven by the recorded identity, or by the command line for old pid files. */
export function maySignal(v: PidIdentityVerdict | null | undefined): boolean {
  return v === "verified" || v === "plausible";
}

/** A command line (or executable name) of one of the run's processes: bun, smithers, or the launcher script. */
const RUN_PROCESS = /(^|[/\s])(bun|smithers)(\s|$)|\/node_modules\/\.bin\/smithers\b|\/smithers-orchestrator\/|(^|\/)(run|resume-\d+)\.sh(\s|$)/;

/** True when a command line or executable name looks like one of the run's processes (see {@link RUN_PROCESS}). */
export function looksLikeRunProcess(cmdline: string | null, comm: string | null): boolean {
  if (cmdline && RUN_PROCESS.test(cmdline)) return true;
  // A zombie has an empty command line; its executable name remains (`bun`, `bash` for a launcher is too vague).
  if ((!cmdline || cmdline.trim() === "") && comm) return comm === "bun" || comm.startsWith("smithers");
  return false;
}

/** Judge a living pid (see {@link PidIdentityVerdict}). Pure. */
export function judgePidIdentity(recorded: RecordedPidIdentity | null, current: CurrentPidIdentity): { verdict: PidIdentityVerdict; reason: string } {
  if (recorded && (recorded.start_ticks !== null || recorded.boot_id !== null)) {
    if (recorded.boot_id && current.boot_id && recorded.boot_id !== current.boot_id) {
      return { verdict: "rebooted", reason: `the VM rebooted since the pid was recorded (boot id ${current.boot_id.slice(0, 8)}…, recorded ${recorded.boot_id.slice(0, 8)}…)` };
    }
    if (recorded.start_ticks !== null && current.start_ticks !== null) {
      return recorded.start_ticks === current.start_ticks
        ? { verdict: "verified", reason: "start time and boot id match the launcher's record" }
        : { verdict: "reused", reason: `another process has the pid now (started at tick ${current.start_ticks}, the run's at ${recorded.start_ticks})` };
    }
    if (current.start_ticks === null && current.cmdline === null && current.comm === null) return { verdict: "unknown", reason: "/proc is unreadable for this pid" };
  }
  if (current.cmdline === null && current.comm === null) return { verdict: "unknown", reason: "/proc is unreadable for this pid" };
  return looksLikeRunProcess(current.cmdline, current.comm)
    ? { verdict: "plausible", reason: "no recorded identity; its command line is bun, smithers or the launcher" }
    : { verdict: "foreign", reason: "no recorded identity, and its command line is not bun, smithers or the launcher" };
}

/** Parse `/proc/<pid>/stat`: the executable name (field 2), the state letter (field 3) and the start time (field 22). */
export function parseProcStat(stat: string): { comm: string | null; state: string | null; start_ticks: number | null } {
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  if (open < 0 || close < open) return { comm: null, state: null, start_ticks: null };
  const fields = stat.slice(close + 1).trim().split(/\s+/);
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  const ticks = fields[19] !== undefined && /^[0-9]{1,20}$/.test(fields[19]) ? Number(fields[19]) : null;
  return { comm: stat.slice(open + 1, close), state: fields[0] ?? null, start_ticks: ticks !== null && Number.isSafeInteger(ticks) ? ticks : null };
}
