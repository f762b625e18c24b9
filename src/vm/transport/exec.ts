/**
 * Commands over an {@link SshConnection}: {@link execOverSsh} runs an argv to completion and captures its
 * output; {@link streamOverSsh} delivers stdout chunks as they come. Every remote command line is built with
 * {@link shellJoin} from an argv; nothing is interpolated.
 */
import { InterruptedError, RemoteError, VmUnavailableError } from "../../core/errors.js";
import { onAbort } from "../abort.js";
import type { ExecResult, StreamHandle } from "../driver.js";
import { RemotePidReader, STREAM_WATCHDOG, withPidPreamble } from "../remote-group.js";
import { shellJoin } from "../shell-quote.js";
import type { SshConnection } from "./connection.js";

/** Default cap on the captured stdout/stderr of {@link execOverSsh}, bytes per stream. */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** Options of {@link execOverSsh}. */
export interface SshExecOptions {
  /** Fed to the command's stdin, then EOF. Default: nothing (immediate EOF). */
  stdin?: string | Buffer | undefined;
  /** Deadline for the whole call (connect + run), ms. */
  timeoutMs: number;
  /** Abort: closes the channel and throws {@link InterruptedError}. */
  signal?: AbortSignal | undefined;
  /** Cap per output stream, bytes (default {@link DEFAULT_MAX_OUTPUT_BYTES}); beyond it the call fails. */
  maxOutputBytes?: number | undefined;
}

/** Options of {@link streamOverSsh}. */
export interface SshStreamOptions {
  onStdout(chunk: Buffer): void;
  onStderr?: ((chunk: Buffer) => void) | undefined;
  /** Deadline for (re)connecting and opening the channel, ms. Default: the connection's `reconnectBudgetMs`. */
  timeoutMs?: number | undefined;
}

/**
 * The exit status ssh2 repeats on a channel's `close` event (`close(code)`, or `close(null, signal)` for a command
 * killed by a signal, which counts as 255 like ssh; `close(undefined)` when no exit status came: the connection was
 * lost). Needed because ssh2 emits `exit` synchronously while parsing: a command that ends at once (reading no
 * stdin) can have its channel confirmation, exit-status, EOF and close parsed in ONE socket read, before the
 * awaited channel reaches the code that listens for `exit`. `close` waits for the stream's end, so it is never missed.
 */
export function exitFromClose(code: number | null | undefined, signal: string | undefined): number | undefined {
  if (typeof code === "number") return code;
  return code === null || signal !== undefined ? 255 : undefined;
}

/**
 * Run `argv` in the VM (`sh -c EXEC_PREAMBLE fabrik-exec argv…` through the guest user's login shell, quoted
 * with shellJoin) and capture its output. A command is never retried once started (it may not be idempotent);
 * only connecting and opening the channel are.
 *
 * @returns exit code (the guest's; 255 when it died of a signal, like ssh), stdout and stderr as UTF-8 (without
 *   the preamble's pid line), duration in ms.
 * @throws VmUnavailableError when the VM cannot be reached, the connection drops mid-command, or the deadline
 *   passes (the remote command and its process group are then SIGKILLed); InterruptedError on abort (same kill);
 *   RemoteError when an output stream exceeds `maxOutputBytes`.
 */
export async function execOverSsh(conn: SshConnection, argv: readonly string[], opts: SshExecOptions): Promise<ExecResult> {
  if (argv.length === 0) throw new Error("exec: empty argv");
  const vm = conn.vm;
  const what = argv[0]!;
  const started = Date.now();
  const deadlineAt = started + opts.timeoutMs;
  conn.assertOpen();
  if (opts.signal?.aborted) throw new InterruptedError();
  const ch = await conn.openChannel(shellJoin(withPidPreamble(argv)), what, deadlineAt, opts.timeoutMs);
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  /** Takes the `fabrik-pid` line out of stderr. */
  const pidLine = new RemotePidReader();
  return await new Promise<ExecResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let exitCode: number | undefined;
    let settled = false;
    let unlisten = () => undefined as void;
    const finish = (e: Error | undefined, result?: ExecResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unlisten();
      if (e) reject(e);
      else resolve(result!);
    };
    // Deadline, abort, output cap: kill the remote command through another channel and fail at once — sshd
    // only confirms the channel's close once its child has exited.
    const fail = (e: Error) => {
      if (settled) return;
      finish(e);
      ch.close();
      if (pidLine.pid !== undefined) conn.killRemote(pidLine.pid);
    };
    const timer = setTimeout(() => {
      fail(new VmUnavailableError(vm, `VM ${vm}: ${what} did not finish within ${opts.timeoutMs} ms`, "the VM may be hung; try again"));
    }, Math.max(1, deadlineAt - Date.now()));
    unlisten = onAbort(opts.signal, () => fail(new InterruptedError()));
    ch.on("data", (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > max) return fail(new RemoteError(vm, what, `output larger than ${max} bytes`));
      out.push(chunk);
    });
    ch.stderr.on("data", (data: Buffer) => {
      const chunk = pidLine.feed(data);
      if (chunk.length === 0) return;
      errBytes += chunk.length;
      if (errBytes > max) return fail(new RemoteError(vm, what, `error output larger than ${max} bytes`));
      err.push(chunk);
    });
    ch.on("exit", (code: number | null) => {
      exitCode = typeof code === "number" ? code : 255;
    });
    ch.on("close", (code?: number | null, signal?: string) => {
      exitCode ??= exitFromClose(code, signal);
      if (exitCode === undefined) {
        return finish(new VmUnavailableError(vm, `VM ${vm}: the SSH connection was lost while running ${what}`, "the command may or may not have completed; check and retry"));
      }
      err.push(pidLine.flush());
      finish(undefined, { exitCode, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), durationMs: Date.now() - started });
    });
    ch.on("error", (e: Error) => fail(e));
    if (opts.stdin !== undefined && opts.stdin.length > 0) ch.write(opts.stdin);
    ch.end();
  });
}

/**
 * Run `argv` in the VM and deliver its stdout chunks as they come, until it exits, is killed, or the
 * connection drops. Wrapped in {@link STREAM_WATCHDOG}, so the remote command ends when the channel does.
 *
 * @param onChannel called with the open channel (the transport tracks them to close them on `close()`) and
 *   returns the function to call once the channel has closed.
 * @returns a handle: `done` resolves with the exit code (255 when the connection was lost or the command
 *   was killed), `kill()` closes the channel (the watchdog then ends the remote command).
 * @throws VmUnavailableError when no connection/channel could be opened within `timeoutMs`.
 */
export async function streamOverSsh(
  conn: SshConnection,
  argv: readonly string[],
  opts: SshStreamOptions,
  onChannel: (ch: { close(): void }) => () => void,
): Promise<StreamHandle> {
  if (argv.length === 0) throw new Error("stream: empty argv");
  conn.assertOpen();
  const timeoutMs = opts.timeoutMs ?? conn.reconnectBudgetMs;
  const deadlineAt = Date.now() + timeoutMs;
  const ch = await conn.openChannel(shellJoin(["sh", "-c", STREAM_WATCHDOG, "fabrik-stream", ...argv]), argv[0]!, deadlineAt, timeoutMs);
  const closed = onChannel(ch);
  let exitCode: number | undefined;
  const done = new Promise<number>((resolve) => {
    ch.on("data", (chunk: Buffer) => opts.onStdout(chunk));
    ch.stderr.on("data", (chunk: Buffer) => opts.onStderr?.(chunk));
    ch.on("exit", (code: number | null) => {
      exitCode = typeof code === "number" ? code : 255;
    });
    ch.on("error", () => ch.close());
    ch.on("close", (code?: number | null, signal?: string) => {
      closed();
      resolve(exitCode ?? exitFromClose(code, signal) ?? 255);
    });
  });
  // The watchdog waits for EOF on stdin, so stdin stays open until kill().
  return {
    done,
    kill: () => {
      ch.end();
      ch.close();
    },
  };
}
