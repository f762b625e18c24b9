/**
 * Commands over an {@link SshConnection}: {@link execOverSsh} runs an argv to completion and captures its
 * output; {@link streamOverSsh} delivers stdout chunks as they come. Every remote command line is built with
 * {@link shellJoin} from an argv; nothing is interpolated.
 */
import { InterruptedError, RemoteError, VmUnavailableError } from "../../core/errors.js";
import { onAbort } from "../abort.js";
import type { ExecResult, StreamHandle } from "../driver.js";
import { shellJoin } from "../shell-quote.js";
import type { SshConnection } from "./connection.js";

/** Default cap on the captured stdout/stderr of {@link execOverSsh}, bytes per stream. */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * `sh -c STREAM_WATCHDOG fabrik-stream CMD ARGS…` runs CMD with stdin closed and kills it (SIGTERM) as soon as
 * the channel's stdin reaches EOF — which happens when the channel is closed by the host or when the SSH
 * connection dies (sshd's pipes close). Without it a `tail -F` whose reader vanished would live on in the VM
 * until its next write. The watchdog's own output goes to /dev/null so it never holds the channel open.
 * The exit status is CMD's.
 */
export const STREAM_WATCHDOG = [
  // A background list gets /dev/null as stdin (no job control), so keep the channel's stdin on fd 3.
  "exec 3<&0",
  '"$@" </dev/null 3<&- &',
  "p=$!",
  '{ cat <&3; kill -TERM "$p"; } >/dev/null 2>&1 &',
  "w=$!",
  "exec 3<&-",
  'wait "$p"; rc=$?',
  'kill "$w" 2>/dev/null',
  'exit "$rc"',
].join("\n");

/**
 * `sh -c EXEC_PREAMBLE fabrik-exec CMD ARGS…` prints `fabrik-pid <pid>` as the first stderr line, then execs CMD
 * (same pid). On a deadline or abort the transport kills that pid and its process group (sshd starts each session
 * in a new session/process group) through a second channel; the line is removed from the stderr it returns.
 * OpenSSH ignores the SSH "signal" request, so this is how a remote command is really stopped.
 */
export const EXEC_PREAMBLE = `printf 'fabrik-pid %s\\n' "$$" >&2; exec "$@"`;

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
  const ch = await conn.openChannel(shellJoin(["sh", "-c", EXEC_PREAMBLE, "fabrik-exec", ...argv]), what, deadlineAt, opts.timeoutMs);
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  let remotePid: number | undefined;
  /** stderr bytes before the `fabrik-pid` line has been seen (at most a line). */
  let head: Buffer | undefined = Buffer.alloc(0);
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
      if (remotePid !== undefined) conn.killRemote(remotePid);
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
      let chunk = data;
      if (head !== undefined) {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(10);
        if (nl < 0 && head.length < 64) return;
        const m = /^fabrik-pid (\d+)$/.exec(head.subarray(0, Math.max(nl, 0)).toString("latin1"));
        if (m) remotePid = Number(m[1]);
        chunk = m ? head.subarray(nl + 1) : head;
        head = undefined;
      }
      if (chunk.length === 0) return;
      errBytes += chunk.length;
      if (errBytes > max) return fail(new RemoteError(vm, what, `error output larger than ${max} bytes`));
      err.push(chunk);
    });
    ch.on("exit", (code: number | null) => {
      exitCode = typeof code === "number" ? code : 255;
    });
    ch.on("close", () => {
      if (exitCode === undefined) {
        return finish(new VmUnavailableError(vm, `VM ${vm}: the SSH connection was lost while running ${what}`, "the command may or may not have completed; check and retry"));
      }
      if (head !== undefined && head.length > 0) err.push(head);
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
    ch.on("close", () => {
      closed();
      resolve(exitCode ?? 255);
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
