/**
 * Running a local process with a deadline: the building block of both drivers.
 *
 * The child is started detached (its own process group) so that on deadline or abort the WHOLE group
 * is killed — `limactl shell` does not forward signals to its `ssh` child (lima-contract §0.8), so
 * killing only limactl would leave ssh and the remote command running.
 */
import { execa, type ResultPromise } from "execa";
import { onAbort } from "./abort.js";

export interface ProcessOptions {
  stdin?: string | Buffer | undefined;
  cwd?: string | undefined;
  env?: Record<string, string | undefined> | undefined;
  /** false: the child sees only `env` (plus nothing else). Default true. */
  extendEnv?: boolean | undefined;
  /** Deadline in ms. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Max captured bytes per stream (default 64 MiB). */
  maxOutputBytes?: number | undefined;
}

export interface ProcessResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** True when the deadline killed it. */
  timedOut: boolean;
  /** True when the abort signal killed it. */
  aborted: boolean;
  /** Set when the executable could not be started (e.g. ENOENT). */
  spawnError: NodeJS.ErrnoException | undefined;
  /** The signal that ended the process, if any. */
  signal: string | undefined;
}

function killGroup(pid: number | undefined): void {
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

/** Run `cmd args` to completion (or deadline) and capture its output. Never throws for a non-zero exit. */
export async function runProcess(cmd: string, args: readonly string[], opts: ProcessOptions): Promise<ProcessResult> {
  const started = Date.now();
  let timedOut = false;
  let aborted = false;
  let child: ResultPromise<{ detached: true }>;
  try {
    child = execa(cmd, args, {
      detached: true,
      reject: false,
      input: opts.stdin ?? "",
      cwd: opts.cwd,
      env: opts.env,
      extendEnv: opts.extendEnv ?? true,
      maxBuffer: opts.maxOutputBytes ?? 64 * 1024 * 1024,
      stripFinalNewline: false,
      encoding: "utf8",
      cleanup: true,
    }) as ResultPromise<{ detached: true }>;
  } catch (err) {
    return {
      exitCode: 127,
      stdout: "",
      stderr: String(err),
      durationMs: Date.now() - started,
      timedOut,
      aborted,
      spawnError: err as NodeJS.ErrnoException,
      signal: undefined,
    };
  }
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
    const result = await child;
    const spawnError =
      result.failed && result.exitCode === undefined && !result.signal && (result.cause as NodeJS.ErrnoException | undefined)?.code
        ? (result.cause as NodeJS.ErrnoException)
        : undefined;
    return {
      exitCode: result.exitCode ?? (result.signal ? 128 + signalNumber(result.signal) : 1),
      stdout: typeof result.stdout === "string" ? result.stdout : "",
      stderr: typeof result.stderr === "string" ? result.stderr : "",
      durationMs: Date.now() - started,
      timedOut,
      aborted,
      spawnError,
      signal: result.signal ?? undefined,
    };
  } finally {
    clearTimeout(timer);
    unlisten();
  }
}

function signalNumber(sig: string): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return table[sig] ?? 0;
}

/** A streamed process: stdout chunks are delivered as they arrive. */
export interface StreamedProcess {
  done: Promise<number>;
  kill(): void;
}

/** Start `cmd args` and stream stdout/stderr chunks to callbacks. */
export function streamProcess(
  cmd: string,
  args: readonly string[],
  opts: {
    cwd?: string | undefined;
    env?: Record<string, string | undefined> | undefined;
    extendEnv?: boolean | undefined;
    stdin?: string | Buffer | undefined;
    signal?: AbortSignal | undefined;
    onStdout: (chunk: Buffer) => void;
    onStderr?: ((chunk: Buffer) => void) | undefined;
  },
): StreamedProcess {
  const child = execa(cmd, args, {
    detached: true,
    reject: false,
    input: opts.stdin ?? "",
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: opts.extendEnv ?? true,
    buffer: false,
    encoding: "buffer",
    cleanup: true,
  });
  child.stdout?.on("data", (c: Buffer) => opts.onStdout(c));
  child.stderr?.on("data", (c: Buffer) => opts.onStderr?.(c));
  const kill = () => killGroup(child.pid);
  const unlisten = onAbort(opts.signal, kill);
  const done = child.then(
    (r) => r.exitCode ?? (r.signal ? 128 + signalNumber(r.signal) : 1),
    () => 1,
  );
  // Removed when the process ends, so a follow loop's many restarts leave nothing on the signal.
  void done.finally(unlisten);
  return { done, kill };
}
