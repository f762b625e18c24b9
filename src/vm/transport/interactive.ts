/**
 * A command (or a login shell) in the VM with this process's terminal attached: `fabrik vm shell` on a driver whose
 * VMs are reached over the persistent transport (the `ssh` driver). stdin is streamed to the remote side and its
 * end is passed on (heredocs and pipes work); stdout and stderr stay separate unless a pseudo-terminal is used,
 * which happens only when both stdin and stdout are terminals (as `ssh` decides with `-t`/`-T`).
 * The result is the remote exit status; 255 when the command died of a signal or the connection was lost (ssh's).
 */
import type { ClientChannel } from "ssh2";
import { shellJoin } from "../shell-quote.js";
import type { SshConnection } from "./connection.js";
import { exitFromClose } from "./exec.js";

/** The terminal to attach (the process's own by default). */
export interface AttachedIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number; on(ev: "resize", fn: () => void): unknown; off(ev: "resize", fn: () => void): unknown };
  stderr: NodeJS.WritableStream;
}

/**
 * Run `argv` (or the user's login shell when undefined) on `conn` with `io` attached.
 * @param cwd guest working directory (absolute); default the guest home.
 * @param connectTimeoutMs deadline for (re)connecting and opening the channel, ms.
 * @returns the remote exit status (255 for a signal or a lost connection).
 * @throws VmUnavailableError when no connection or channel could be opened in time.
 */
export async function runAttached(conn: SshConnection, argv: readonly string[] | undefined, io: AttachedIo, opts: { cwd?: string | undefined; connectTimeoutMs: number }): Promise<number> {
  const deadlineAt = Date.now() + opts.connectTimeoutMs;
  const client = await conn.connection(deadlineAt);
  const tty = Boolean(io.stdin.isTTY && io.stdout.isTTY);
  const window = () => ({ rows: io.stdout.rows ?? 24, cols: io.stdout.columns ?? 80, height: 0, width: 0, term: process.env.TERM ?? "xterm-256color" });
  // The command: argv as one quoted line, or a login shell; `cd` first when a working directory is asked for.
  const body = argv && argv.length > 0 ? shellJoin(argv) : 'exec "${SHELL:-/bin/sh}" -l';
  const command = opts.cwd ? `cd ${shellJoin([opts.cwd])} || exit 1; ${body}` : body;
  const ch = await new Promise<ClientChannel>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SSH channel within ${opts.connectTimeoutMs} ms`)), Math.max(1, deadlineAt - Date.now()));
    client.exec(command, tty ? { pty: window() } : {}, (err, channel) => {
      clearTimeout(timer);
      if (err) reject(conn.unavailable(err, argv?.[0] ?? "shell", opts.connectTimeoutMs));
      else resolve(channel);
    });
  });
  return await new Promise<number>((resolve) => {
    let code: number | undefined;
    const wasRaw = tty && io.stdin.setRawMode ? true : false;
    if (wasRaw) io.stdin.setRawMode!(true);
    const onResize = () => ch.setWindow(window().rows, window().cols, 0, 0);
    if (tty) io.stdout.on("resize", onResize);
    const onData = (chunk: Buffer) => ch.write(chunk);
    const onEnd = () => ch.end();
    io.stdin.on("data", onData);
    io.stdin.on("end", onEnd);
    io.stdin.resume();
    ch.on("data", (chunk: Buffer) => io.stdout.write(chunk));
    ch.stderr.on("data", (chunk: Buffer) => io.stderr.write(chunk));
    ch.on("exit", (c: number | null) => {
      code = typeof c === "number" ? c : 255;
    });
    ch.on("close", (c?: number | null, signal?: string) => {
      code ??= exitFromClose(c, signal);
      io.stdin.off("data", onData);
      io.stdin.off("end", onEnd);
      io.stdin.pause();
      if (wasRaw) io.stdin.setRawMode!(false);
      if (tty) io.stdout.off("resize", onResize);
      resolve(code ?? 255);
    });
  });
}
