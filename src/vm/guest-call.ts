/**
 * Calling a run-level guest program (`inspect`, `control`) in a VM: ONE remote call (two only when the install
 * cache was stale), the request JSON on stdin, one JSON line back. Values travel only as positional parameters
 * of a constant wrapper; nothing is interpolated into a shell line.
 *
 * `sh -c GUEST_WRAPPER fabrik-guest <control dir> <bun> <mode> <hash> <program text or ""> <name>`:
 * - bun: the given path (the run's engine's bun) when executable, else the newest fabrik engine's bun, `~/.bun/bin/bun`,
 *   `bun` on PATH; none → exit {@link GUEST_EXIT_NO_BUN};
 * - the program is installed once per content hash ({@link guestInstallSnippet}; exit 79 when absent and not sent);
 * - mode `apply` takes `<control dir>/resume.lock` with `flock -n -o` (exit {@link GUEST_EXIT_LOCKED} when a resume
 *   or another control action of the run holds it), so changes to one run never race; `dry-run` and `read` take
 *   no lock and create nothing.
 */
import { RefusedError, RemoteError, PrerequisiteError } from "../core/errors.js";
import type { ExecResult } from "./driver.js";
import { defaultGuestInstallCache, guestInstallSnippet, loadGuestProgram, withGuestInstall, GUEST_EXIT_INSTALL_FAILED, type GuestAttempt, type GuestInstallCache, type GuestProgramName } from "./guest-programs.js";
import { isNotInstalledExit } from "./probe.js";

/** Exit status of {@link GUEST_WRAPPER} when another resume or control action of the run holds `resume.lock`. */
export const GUEST_EXIT_LOCKED = 75;
/** Exit status of {@link GUEST_WRAPPER} when no bun was found in the VM. */
export const GUEST_EXIT_NO_BUN = 76;

/** The POSIX sh wrapper (see the module doc). */
export const GUEST_WRAPPER = `C="$1" b="$2" mode="$3" h="$4" t="$5" n="$6"
if [ ! -x "$b" ]; then
  b=""
  for c in "$HOME"/.fabrik/engines/*/.runtime/node_modules/.bin/bun; do [ -x "$c" ] && b="$c"; done
  [ -n "$b" ] || [ ! -x "$HOME/.bun/bin/bun" ] || b="$HOME/.bun/bin/bun"
  [ -n "$b" ] || b="$(command -v bun 2>/dev/null)" || b=""
fi
if [ -z "$b" ]; then echo "fabrik-guest: no bun found" >&2; exit ${GUEST_EXIT_NO_BUN}; fi
${guestInstallSnippet()}
if [ "$mode" = apply ] && [ -d "$C" ]; then
  exec flock -n -o -E ${GUEST_EXIT_LOCKED} "$C/resume.lock" "$b" "$f" apply
fi
exec "$b" "$f" "$mode"
`;

/** The argv of one call; the program text is included only when `install`. */
export function guestCallArgv(name: GuestProgramName, controlDir: string, bun: string, mode: "read" | "dry-run" | "apply", hash: string, text: string): string[] {
  return ["sh", "-c", GUEST_WRAPPER, "fabrik-guest", controlDir, bun, mode, hash, text, name];
}

/** How to run a command in the VM: a driver's `exec` for one VM, or a session's. */
export type GuestExec = (argv: readonly string[], opts: { stdin: string; timeoutMs: number; signal?: AbortSignal | undefined; maxOutputBytes?: number }) => Promise<ExecResult>;

/** Options of {@link callGuestProgram}. */
export interface GuestCallOptions {
  vm: string;
  name: GuestProgramName;
  controlDir: string;
  /** The run's engine's bun (absolute, in the guest); the wrapper searches when it is not there. */
  bun: string;
  mode: "read" | "dry-run" | "apply";
  /** The request; sent as JSON on stdin. */
  request: unknown;
  /** Deadline of the call, ms. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  installCache?: GuestInstallCache | undefined;
  /** What the program is for, in messages (`cancel`, `why`). */
  what: string;
}

/**
 * Run guest program `o.name` and return its one JSON line, parsed but NOT validated (the caller validates with its
 * zod schema: the VM is untrusted).
 * @throws RefusedError (exit 5) when another resume or control action holds the run's lock; PrerequisiteError when
 *   the VM has no bun or fabrik's dist/guest bundle is missing; RemoteError for a failed install, no answer or an
 *   answer that is not JSON; driver errors (VmUnavailableError, …) unchanged.
 */
export async function callGuestProgram(exec: GuestExec, o: GuestCallOptions): Promise<{ json: unknown; exitCode: number; stderr: string }> {
  const program = loadGuestProgram(o.name);
  const stdin = JSON.stringify(o.request);
  const r = await withGuestInstall(o.installCache ?? defaultGuestInstallCache, o.vm, program, async (install): Promise<GuestAttempt<ExecResult>> => {
    const res = await exec(guestCallArgv(o.name, o.controlDir, o.bun, o.mode, program.hash, install ? program.text : ""), { stdin, timeoutMs: o.timeoutMs, signal: o.signal, maxOutputBytes: 32 * 1024 * 1024 });
    if (isNotInstalledExit(res.exitCode, res.stderr)) return { notInstalled: true };
    return { notInstalled: false, installed: res.exitCode !== GUEST_EXIT_NO_BUN && res.exitCode !== GUEST_EXIT_INSTALL_FAILED, value: res };
  });
  const tail = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
  if (r.exitCode === GUEST_EXIT_INSTALL_FAILED) throw new RemoteError(o.vm, o.what, `cannot install fabrik's ${o.name} program in the VM: ${tail}`, r.exitCode, `check the disk and $HOME/.fabrik in VM ${o.vm}`);
  if (r.exitCode === GUEST_EXIT_NO_BUN && /fabrik-guest: no bun found/.test(r.stderr)) {
    throw new PrerequisiteError(`VM ${o.vm}: no bun found for fabrik's ${o.name} program`, `\`fabrik run --vm ${o.vm} …\` installs an engine, which brings bun`);
  }
  if (r.exitCode === GUEST_EXIT_LOCKED && o.mode === "apply") {
    throw new RefusedError(`${o.what}: a resume or another change of this run is in progress`, "wait for it to finish, then try again", ["RUN_BUSY"]);
  }
  const line = r.stdout.trim().split("\n").filter((l) => l.trim().startsWith("{")).at(-1);
  if (line === undefined) throw new RemoteError(o.vm, o.what, `no answer from fabrik's ${o.name} program (exit ${r.exitCode})${tail ? `: ${tail}` : ""}`, r.exitCode);
  try {
    return { json: JSON.parse(line), exitCode: r.exitCode, stderr: r.stderr };
  } catch {
    throw new RemoteError(o.vm, o.what, `invalid answer from fabrik's ${o.name} program (exit ${r.exitCode}): ${line.slice(0, 200)}`, r.exitCode);
  }
}
