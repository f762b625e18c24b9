/**
 * Running a local process with a deadline: the building block of both drivers, on plain `node:child_process`
 * (no wrapper library: a `limactl shell` call is on every probe's path, so spawning costs only what the OS needs).
 *
 * The child is started detached (its own process group and session) so that on deadline, abort or an output cap
 * the WHOLE group is killed — `limactl shell` does not forward signals to its `ssh` child (lima-contract §0.8), so
 * killing only limactl would leave ssh running. Killing the host side never ends a command inside a Lima guest:
 * that is the drivers' job (`remote-group.ts`, a second call).
 *
 * Every process group still alive when this process exits is SIGKILLed on the way out, so an interrupted fabrik
 * leaves no limactl or ssh behind.
 *
 * Parked calls: `fabrik/prestart.ts` runs the real command code in a small bundle of its own before the CLI bundle
 * loads, with {@link parkProcesses} on: `runProcess` then starts the process and parks it instead of waiting. The
 * CLI's own, identical `runProcess` call later adopts the running process (same command, arguments, working
 * directory, environment and stdin bytes) instead of starting a second one: it gets the output printed so far, and
 * its deadline, abort signal and output cap apply from the adoption on. Anything not adopted is killed at exit.
 */
import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import { Readable } from "node:stream";
import { onAbort } from "./abort.js";

/** Default cap on captured output, bytes per stream. */
export const DEFAULT_MAX_PROCESS_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * How long to wait for the output pipes to close after the process exited, ms. Something outside the group may
 * hold them: an OpenSSH ControlMaster is handed a mux client's stdin/stdout/stderr (fd passing) and keeps them until
 * the REMOTE command ends — so after a killed `limactl shell` the pipes stay open for as long as the guest command
 * runs (until the driver's kill call ends it). A daemon that forgot to close stdout would do the same.
 */
const PIPE_GRACE_MS = 1_000;

/** What a child's stdin is fed: bytes, or a stream of bytes (piped); stdin is closed after it. */
export type ProcessInput = string | Buffer | AsyncIterable<Uint8Array>;

export interface ProcessOptions {
  /** Written (or piped) to stdin, which is then closed (EOF). Default: empty (immediate EOF). */
  stdin?: ProcessInput | undefined;
  cwd?: string | undefined;
  env?: Record<string, string | undefined> | undefined;
  /** false: the child sees only `env`. Default true (`process.env` plus `env`). */
  extendEnv?: boolean | undefined;
  /** Deadline in ms; on expiry the process group is SIGKILLed and `timedOut` is set. */
  timeoutMs: number;
  /** Abort: the process group is SIGKILLed and `aborted` is set. */
  signal?: AbortSignal | undefined;
  /** Max captured bytes per stream (default {@link DEFAULT_MAX_PROCESS_OUTPUT_BYTES}); beyond it the group is killed and `outputCapped` set. */
  maxOutputBytes?: number | undefined;
  /** Receives stdout chunks as they arrive INSTEAD of capturing them (`stdout` is then ""; the cap still applies). */
  onStdout?: ((chunk: Buffer) => void) | undefined;
  /** Sees every stderr chunk as it arrives (it is captured as well). */
  onStderr?: ((chunk: Buffer) => void) | undefined;
}

export interface ProcessResult {
  /** The exit code; 128 + n when killed by signal n; 127 when it could not be started. */
  exitCode: number;
  /** stdout as UTF-8 ("" with `onStdout`). */
  stdout: string;
  stderr: string;
  durationMs: number;
  /** True when the deadline killed it. */
  timedOut: boolean;
  /** True when the abort signal killed it. */
  aborted: boolean;
  /** True when an output stream passed `maxOutputBytes` (the group was killed). */
  outputCapped: boolean;
  /** Set when the executable could not be started (e.g. ENOENT). */
  spawnError: NodeJS.ErrnoException | undefined;
  /** The signal that ended the process, if any. */
  signal: string | undefined;
}

/** Process groups started here and not yet reaped: killed when this process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function track(pid: number | undefined): void {
  if (pid === undefined) return;
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const g of liveGroups) killGroup(g);
    });
  }
}

/** SIGKILL process group `pid` (falls back to the process alone). Never throws. */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
}

function childEnv(opts: { env?: Record<string, string | undefined> | undefined; extendEnv?: boolean | undefined }): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = opts.extendEnv === false ? {} : { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** The exit code a shell would report: the code, or 128 + the signal's number. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal) return 128 + (os.constants.signals[signal] ?? 0);
  return 1;
}

type ExitStatus = { code: number | null; signal: NodeJS.Signals | null };

/**
 * Resolves once the child exited and its pipes closed (or {@link PIPE_GRACE_MS} after the exit, when an escaped
 * grandchild keeps a pipe open: the streams are then destroyed). Rejects with the spawn error. `parked`: what an
 * adopted child did before it was adopted (its events then are not seen here).
 */
function whenDone(child: ChildProcess, parked?: ParkedProcess): Promise<ExitStatus> {
  return new Promise((resolve, reject) => {
    if (parked?.error !== undefined) return reject(parked.error);
    if (parked?.closed !== undefined) return resolve(parked.exit ?? parked.closed);
    let exited: ExitStatus | undefined;
    let grace: NodeJS.Timeout | undefined;
    const onExit = ({ code, signal }: ExitStatus) => {
      exited = { code, signal };
      grace = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve(exited!);
      }, PIPE_GRACE_MS);
      grace.unref();
    };
    child.once("error", (err) => {
      if (exited === undefined) reject(err);
    });
    if (parked?.exit !== undefined) onExit(parked.exit);
    else child.once("exit", (code, signal) => onExit({ code, signal }));
    child.once("close", (code, signal) => {
      clearTimeout(grace);
      resolve(exited ?? { code, signal });
    });
  });
}

// ------------------------------------------------------------------------------------------------ parked calls

/** A process started by a parking instance of this module and not adopted yet (see the module comment). */
interface ParkedProcess {
  cmd: string;
  args: readonly string[];
  cwd: string | undefined;
  env: NodeJS.ProcessEnv;
  stdin: Buffer;
  child: ChildProcess;
  /**
   * Output read before the adoption. It must be read: Node resumes (and so discards) the output streams of an exited
   * child that nobody listens to (child_process `flushStdio`).
   */
  stdout: Buffer[];
  stderr: Buffer[];
  /** Stop collecting (the adopter listens from now on). */
  release: () => void;
  /** Set when the child exited, closed, or failed to start before it was adopted. */
  exit?: ExitStatus;
  closed?: ExitStatus;
  error?: NodeJS.ErrnoException;
}

/** The parked processes, shared by every copy of this module in the process (prestart.cjs and fabrik.cjs each bundle one). */
const PARKED = Symbol.for("fabrik.process.parked");
function parkedProcesses(): ParkedProcess[] {
  const g = globalThis as { [PARKED]?: ParkedProcess[] };
  return (g[PARKED] ??= []);
}

let parking = false;
let exitHookInstalledForParked = false;

/**
 * From now on, until the returned function is called, `runProcess` in this copy of the module starts its process,
 * parks it for an identical `runProcess` call to adopt, and returns a promise that never settles (prestart.ts runs
 * command code only up to its calls). Parked processes nobody adopted are SIGKILLed (group) when this process exits
 * ({@link discardParkedProcesses}).
 */
export function parkProcesses(): () => void {
  parking = true;
  if (!exitHookInstalledForParked) {
    exitHookInstalledForParked = true;
    process.on("exit", () => void discardParkedProcesses());
  }
  return () => {
    parking = false;
  };
}

/** How many parked processes wait for adoption (in the whole process). */
export function parkedProcessCount(): number {
  return parkedProcesses().length;
}

/** SIGKILL (group) every parked process nobody adopted and forget it; returns how many. */
export function discardParkedProcesses(): number {
  const gone = parkedProcesses().splice(0);
  for (const p of gone) {
    p.release();
    killGroup(p.child.pid);
  }
  return gone.length;
}

/** True in a copy of this module that parks its processes (a prestart): there is no answer to prepare for. */
export function isParkingProcesses(): boolean {
  return parking;
}

function stdinBytes(input: ProcessInput | undefined): Buffer | undefined {
  if (input === undefined) return Buffer.alloc(0);
  if (typeof input === "string") return Buffer.from(input, "utf8");
  return Buffer.isBuffer(input) ? input : undefined;
}

function sameEnv(a: NodeJS.ProcessEnv, b: NodeJS.ProcessEnv): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

function park(cmd: string, args: readonly string[], opts: ProcessOptions): Promise<ProcessResult> {
  const stdin = stdinBytes(opts.stdin);
  if (stdin === undefined) return new Promise(() => undefined); // a streamed stdin cannot be compared: not started
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { detached: true, cwd: opts.cwd, env: childEnv(opts), stdio: ["pipe", "pipe", "pipe"] });
  } catch {
    return new Promise(() => undefined);
  }
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const onOut = (c: Buffer) => out.push(c);
  const onErr = (c: Buffer) => err.push(c);
  child.stdout!.on("data", onOut);
  child.stderr!.on("data", onErr);
  const release = () => {
    child.stdout!.off("data", onOut);
    child.stderr!.off("data", onErr);
  };
  const p: ParkedProcess = { cmd, args: [...args], cwd: opts.cwd, env: childEnv(opts), stdin, child, stdout: out, stderr: err, release };
  child.once("error", (e) => (p.error = e));
  child.once("exit", (code, signal) => (p.exit = { code, signal }));
  child.once("close", (code, signal) => (p.closed = { code, signal }));
  // It does not keep this process alive until it is adopted.
  child.unref();
  feedStdin(child, stdin);
  parkedProcesses().push(p);
  return new Promise(() => undefined);
}

/** Take the parked process identical to this call, if any. */
function adopt(cmd: string, args: readonly string[], opts: ProcessOptions): ParkedProcess | undefined {
  const table = parkedProcesses();
  if (table.length === 0) return undefined;
  const stdin = stdinBytes(opts.stdin);
  if (stdin === undefined) return undefined;
  const env = childEnv(opts);
  const i = table.findIndex(
    (p) => p.cmd === cmd && p.cwd === opts.cwd && p.args.length === args.length && p.args.every((a, j) => a === args[j]) && p.stdin.equals(stdin) && sameEnv(p.env, env),
  );
  if (i < 0) return undefined;
  const [p] = table.splice(i, 1);
  p!.child.ref();
  return p;
}

function feedStdin(child: ChildProcess, input: ProcessInput | undefined, keepOpen = false): void {
  const stdin = child.stdin;
  if (!stdin) return;
  stdin.on("error", () => undefined); // EPIPE: the child did not read all of it
  if (input !== undefined && typeof input !== "string" && !Buffer.isBuffer(input)) {
    const source = Readable.from(input);
    source.on("error", () => stdin.destroy());
    source.pipe(stdin, { end: !keepOpen });
    return;
  }
  if (input !== undefined && input.length > 0) stdin.write(input);
  if (!keepOpen) stdin.end();
}

/**
 * Run `cmd args` to completion (or deadline, abort, output cap) and capture its output. Never throws: a
 * non-zero exit, a kill and a failed start are all in the result.
 */
export async function runProcess(cmd: string, args: readonly string[], opts: ProcessOptions): Promise<ProcessResult> {
  if (parking) return park(cmd, args, opts);
  const started = Date.now();
  let timedOut = false;
  let aborted = false;
  let outputCapped = false;
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_PROCESS_OUTPUT_BYTES;
  const failed = (err: NodeJS.ErrnoException): ProcessResult => ({
    exitCode: 127,
    stdout: "",
    stderr: String(err.message ?? err),
    durationMs: Date.now() - started,
    timedOut,
    aborted,
    outputCapped,
    spawnError: err,
    signal: undefined,
  });
  const parked = adopt(cmd, args, opts);
  let child: ChildProcess;
  try {
    child = parked?.child ?? spawn(cmd, args, { detached: true, cwd: opts.cwd, env: childEnv(opts), stdio: ["pipe", "pipe", "pipe"] });
  } catch (err) {
    return failed(err as NodeJS.ErrnoException);
  }
  track(child.pid);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let outBytes = 0;
  let errBytes = 0;
  const cap = () => {
    outputCapped = true;
    killGroup(child.pid);
  };
  const onOut = (c: Buffer) => {
    outBytes += c.length;
    if (outBytes > max) return cap();
    if (opts.onStdout) opts.onStdout(c);
    else out.push(c);
  };
  const onErr = (c: Buffer) => {
    opts.onStderr?.(c);
    errBytes += c.length;
    if (errBytes > max) return cap();
    err.push(c);
  };
  if (parked) {
    // What it printed before, in order, then the rest as it comes (all synchronous: no chunk can slip between).
    parked.release();
    for (const c of parked.stdout) onOut(c);
    for (const c of parked.stderr) onErr(c);
  }
  child.stdout!.on("data", onOut);
  child.stderr!.on("data", onErr);
  if (!parked) feedStdin(child, opts.stdin);
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, opts.timeoutMs);
  // One fan-out registration per call, removed below: many concurrent calls share the command's one signal.
  const unlisten = onAbort(opts.signal, () => {
    aborted = true;
    killGroup(child.pid);
  });
  try {
    const { code, signal } = await whenDone(child, parked);
    return {
      exitCode: exitCodeOf(code, signal),
      stdout: Buffer.concat(out).toString("utf8"),
      stderr: Buffer.concat(err).toString("utf8"),
      durationMs: Date.now() - started,
      timedOut,
      aborted,
      outputCapped,
      spawnError: undefined,
      signal: signal ?? undefined,
    };
  } catch (e) {
    return failed(e as NodeJS.ErrnoException);
  } finally {
    clearTimeout(timer);
    unlisten();
    if (child.pid !== undefined) liveGroups.delete(child.pid);
  }
}

/** A streamed process: stdout chunks are delivered as they arrive. */
export interface StreamedProcess {
  /** Resolves with the exit code (128 + n for signal n, 127 when it could not be started). */
  done: Promise<number>;
  /** SIGKILL the process group. Idempotent. */
  kill(): void;
}

/** Start `cmd args` and stream stdout/stderr chunks to callbacks until it exits or is killed. */
export function streamProcess(
  cmd: string,
  args: readonly string[],
  opts: {
    cwd?: string | undefined;
    env?: Record<string, string | undefined> | undefined;
    extendEnv?: boolean | undefined;
    /** Written (or piped) to stdin, which is then closed, unless `keepStdinOpen`. */
    stdin?: ProcessInput | undefined;
    /** Keep stdin open until the process ends (a watchdog on the other side waits for its EOF). */
    keepStdinOpen?: boolean | undefined;
    signal?: AbortSignal | undefined;
    onStdout: (chunk: Buffer) => void;
    onStderr?: ((chunk: Buffer) => void) | undefined;
  },
): StreamedProcess {
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { detached: true, cwd: opts.cwd, env: childEnv(opts), stdio: ["pipe", "pipe", "pipe"] });
  } catch {
    return { done: Promise.resolve(127), kill: () => undefined };
  }
  track(child.pid);
  child.stdout!.on("data", (c: Buffer) => opts.onStdout(c));
  child.stderr!.on("data", (c: Buffer) => opts.onStderr?.(c));
  feedStdin(child, opts.stdin, opts.keepStdinOpen);
  const kill = () => killGroup(child.pid);
  const unlisten = onAbort(opts.signal, kill);
  const done = whenDone(child).then(
    ({ code, signal }) => exitCodeOf(code, signal),
    () => 127,
  );
  // Removed when the process ends, so a follow loop's many restarts leave nothing on the signal.
  void done.finally(() => {
    unlisten();
    child.stdin?.destroy();
    if (child.pid !== undefined) liveGroups.delete(child.pid);
  });
  return { done, kill };
}
