/**
 * The persistent SSH transport: ONE SSH connection per VM (the `ssh2` library, loaded lazily), carrying ONE
 * long-lived channel to the guest probe in serve mode. A status refresh is then a JSON line written and a
 * JSON line read on an open channel (well under a millisecond of transport cost on loopback) instead of a
 * process, a connection and a channel started per call (~100–300 ms; environment-notes.md).
 *
 * - Coordinates come from the driver's {@link SshTarget} (Lima's `ssh.config`, lima-contract §3). The host
 *   key is not checked, exactly as Lima's own config says (`StrictHostKeyChecking no`,
 *   `UserKnownHostsFile /dev/null`): the target is Lima's forwarded port on 127.0.0.1.
 * - Every remote command line is built with {@link shellJoin} from an argv; nothing is interpolated.
 * - A dropped connection or a dead probe channel is re-established with exponential backoff
 *   ({@link RECONNECT_BACKOFF}: 100 ms doubling to 5 s); the number of attempts is bounded by the deadline of
 *   the request that needs the connection. Losses and recoveries are reported through `onNotice`
 *   (`connection to VM x lost (reason); reconnecting…`, `reconnected to VM x after N attempts`).
 * - Memory stays flat over any number of requests: the probe channel has one set of listeners for its whole
 *   life, a request holds no listener of its own, and the line buffer is released after every line.
 *
 * This module is the only place that opens SSH connections (style.md §4).
 */
import fs from "node:fs";
import type { Client, ClientChannel } from "ssh2";
import { InterruptedError, RemoteError, VmUnavailableError } from "../core/errors.js";
import type { ExecResult, SshTarget, StreamHandle } from "./driver.js";
import { ProbeRequestSchema, ProbeResponseSchema, type ProbeRequest, type ProbeResponse } from "./probe-schema.js";
import { shellJoin } from "./shell-quote.js";
import { loadGuestProbe, PROBE_EXIT_NO_TOOL, PROBE_WRAPPER, ProbeError } from "./probe.js";

/** Reconnect backoff: first delay, factor, cap (ms). */
export const RECONNECT_BACKOFF = { firstMs: 100, factor: 2, maxMs: 5_000 } as const;

/** Largest line the probe may answer with, bytes (a response with 5000 nodes is a few MB). */
export const MAX_PROBE_LINE_BYTES = 64 * 1024 * 1024;

/** Default cap on the captured stdout/stderr of {@link SshTransport.exec}, bytes per stream. */
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

/**
 * `sh -c KILL_SCRIPT fabrik-kill PID`: SIGKILL PID and the process group it leads. The group goes through the
 * external `kill` (procps/util-linux/busybox), because dash's builtin accepts neither `--` nor a negative pid.
 */
export const KILL_SCRIPT = `kill -s KILL "$1" 2>/dev/null; env kill -s KILL -- "-$1" 2>/dev/null; exit 0`;

export interface SshTransportOptions {
  /** Called with one-line human notices (connection lost / reconnected). The CLI prints them on stderr. */
  onNotice?: (msg: string) => void;
  /** Deadline of one connection attempt (TCP + SSH handshake + auth), ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Time allowed to (re)connect for operations without a deadline of their own ({@link SshTransport.stream}), ms. Default 60000. */
  reconnectBudgetMs?: number;
  /** SSH keepalive period, ms (3 unanswered keepalives = connection lost). Default 5000. */
  keepaliveIntervalMs?: number;
}

/** Options of {@link SshTransport.exec}. */
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

/** Options of {@link SshTransport.stream}. */
export interface SshStreamOptions {
  onStdout(chunk: Buffer): void;
  onStderr?: ((chunk: Buffer) => void) | undefined;
  /** Deadline for (re)connecting and opening the channel, ms. Default: the transport's `reconnectBudgetMs`. */
  timeoutMs?: number | undefined;
}

/** A failure of the transport itself (connection or channel), as opposed to a remote command's result. */
class TransportLost extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const level = (err as { level?: string }).level;
    const msg = err.message || String(err);
    if (code && !msg.includes(code)) return `${code}: ${msg}`;
    if (level === "client-timeout") return `timed out: ${msg}`;
    return msg;
  }
  return String(err);
}

/**
 * One VM's persistent SSH transport. Create it, use it for many calls, {@link close} it when done.
 * Calls may overlap: probes are serialised on the one probe channel; execs and streams get channels of
 * their own on the same connection (mind sshd's `MaxSessions`, 10 by default).
 */
export class SshTransport {
  readonly vm: string;
  private readonly target: SshTarget;
  private readonly onNotice: (msg: string) => void;
  private readonly connectTimeoutMs: number;
  private readonly reconnectBudgetMs: number;
  private readonly keepaliveIntervalMs: number;

  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  /** Why the last connection ended unexpectedly; set until a new connection is up. */
  private lostReason: string | undefined;
  private lostAnnounced = false;
  /** True once a connection has been up (so later connects are re-connects). */
  private everConnected = false;
  private closed = false;
  private privateKey: Buffer | undefined;

  private probeChannel: ProbeChannel | undefined;
  /** Tail of the probe queue: probes run one at a time on the one channel. */
  private probeQueue: Promise<unknown> = Promise.resolve();
  private readonly streams = new Set<ClientChannel>();

  /**
   * @param vm the VM's name (for messages).
   * @param target host, port, user and identity file of the VM's sshd.
   */
  constructor(vm: string, target: SshTarget, opts: SshTransportOptions = {}) {
    this.vm = vm;
    this.target = target;
    this.onNotice = opts.onNotice ?? (() => {});
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.reconnectBudgetMs = opts.reconnectBudgetMs ?? 60_000;
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? 5_000;
  }

  /**
   * Make sure a connection is up (connecting, with backoff, if needed) within `timeoutMs`.
   * @throws VmUnavailableError when no connection could be made in time.
   */
  async connect(opts: { timeoutMs: number }): Promise<void> {
    await this.connection(Date.now() + opts.timeoutMs);
  }

  /** True while an SSH connection is up (not whether the VM is healthy). */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /**
   * Ask the guest probe one question over the long-lived probe channel (started on first use).
   *
   * @param req the request; sent as one JSON line.
   * @param opts.timeoutMs deadline for this request in ms, including waiting for earlier probes, reconnecting
   *   and restarting the probe channel.
   * @returns the zod-validated response (times epoch ms on the VM's clock, sizes bytes).
   * @throws VmUnavailableError when the VM cannot be reached or does not answer within the deadline;
   *   ProbeError when the probe cannot start (no bun or python3), keeps exiting, or answers with something
   *   that is not a valid response. An invalid request is a caller bug and throws the ZodError.
   */
  probe(req: ProbeRequest, opts: { timeoutMs: number }): Promise<ProbeResponse> {
    const deadlineAt = Date.now() + opts.timeoutMs;
    const line = JSON.stringify(ProbeRequestSchema.parse(req));
    const run = this.probeQueue.then(() => this.probeNow(line, deadlineAt, opts.timeoutMs));
    this.probeQueue = run.catch(() => undefined);
    return run;
  }

  private async probeNow(line: string, deadlineAt: number, timeoutMs: number): Promise<ProbeResponse> {
    // Waited out its deadline behind earlier probes: fail without disturbing the (healthy) channel.
    if (Date.now() >= deadlineAt) {
      throw new VmUnavailableError(this.vm, `VM ${this.vm}: the probe did not answer within ${timeoutMs} ms (earlier probes were still running)`, "the VM may be overloaded; try again");
    }
    let channelDeaths = 0;
    let delay: number = RECONNECT_BACKOFF.firstMs;
    for (;;) {
      this.assertOpen();
      let ch: ProbeChannel;
      try {
        ch = await this.probeChannelFor(deadlineAt, timeoutMs);
      } catch (err) {
        // A channel refused on a connection that is going down ("Unable to exec"): try again while time is left.
        if (err instanceof TransportLost && Date.now() + delay < deadlineAt) {
          await sleep(delay);
          delay = Math.min(delay * RECONNECT_BACKOFF.factor, RECONNECT_BACKOFF.maxMs);
          continue;
        }
        throw this.unavailable(err, `probe`, timeoutMs);
      }
      let text: string;
      try {
        text = await ch.request(line, deadlineAt);
      } catch (err) {
        if (ch.timedOut) {
          throw new VmUnavailableError(this.vm, `VM ${this.vm}: the probe did not answer within ${timeoutMs} ms`, "the VM may be overloaded; try again");
        }
        if (this.closed) throw err;
        // The channel died under the request. If the connection died too, reconnect (backoff inside
        // connection()); if only the probe process ended, restart it — but a probe that keeps dying on a
        // healthy connection is a probe failure, not a transport one.
        if (!ch.connectionLost) {
          if (ch.exitCode === PROBE_EXIT_NO_TOOL && /no bun or python3/.test(ch.stderr())) {
            throw new ProbeError(this.vm, "no bun or python3 in the VM", {
              exitCode: PROBE_EXIT_NO_TOOL,
              stderr: ch.stderr(),
              hint: `install an engine with fabrik (it brings bun), or install python3 in VM ${this.vm}`,
            });
          }
          channelDeaths++;
          if (channelDeaths >= 3) {
            throw new ProbeError(this.vm, `the probe keeps exiting (${ch.deathReason()})`.slice(0, 600), { exitCode: ch.exitCode ?? undefined, stderr: ch.stderr() || undefined });
          }
        }
        if (Date.now() + delay >= deadlineAt) {
          throw new VmUnavailableError(this.vm, `VM ${this.vm}: the probe channel was lost (${ch.deathReason()}) and could not be restarted within ${timeoutMs} ms`);
        }
        await sleep(delay);
        delay = Math.min(delay * RECONNECT_BACKOFF.factor, RECONNECT_BACKOFF.maxMs);
        continue;
      }
      return this.parseProbeLine(text, ch);
    }
  }

  private parseProbeLine(text: string, ch: ProbeChannel): ProbeResponse {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      ch.kill("answer was not JSON");
      throw new ProbeError(this.vm, `invalid probe output: not JSON: ${text.slice(0, 120)}`);
    }
    const parsed = ProbeResponseSchema.safeParse(json);
    if (!parsed.success) {
      // Serve mode answers a request it cannot read with {"v":1,"error":"bad request: …"}.
      const err = (json as { error?: unknown } | null)?.error;
      if (typeof err === "string") throw new ProbeError(this.vm, `probe: ${err}`.slice(0, 600));
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
        .join("; ");
      throw new ProbeError(this.vm, `invalid probe output: ${issues}`.slice(0, 600));
    }
    return parsed.data;
  }

  private async probeChannelFor(deadlineAt: number, timeoutMs: number): Promise<ProbeChannel> {
    const existing = this.probeChannel;
    if (existing && !existing.dead) return existing;
    const conn = await this.connection(deadlineAt);
    const { js, py } = loadGuestProbe();
    // FABRIK_PROBE_SERVE=1: one request per stdin line → one response per stdout line, until stdin closes.
    const command = shellJoin(["env", "FABRIK_PROBE_SERVE=1", "sh", "-c", PROBE_WRAPPER, "fabrik-probe", js, py]);
    const raw = await this.openExec(conn, command, deadlineAt, timeoutMs);
    const ch = new ProbeChannel(raw);
    this.probeChannel = ch;
    return ch;
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
  async exec(argv: readonly string[], opts: SshExecOptions): Promise<ExecResult> {
    if (argv.length === 0) throw new Error("exec: empty argv");
    const started = Date.now();
    const deadlineAt = started + opts.timeoutMs;
    this.assertOpen();
    if (opts.signal?.aborted) throw new InterruptedError();
    const ch = await this.openChannel(shellJoin(["sh", "-c", EXEC_PREAMBLE, "fabrik-exec", ...argv]), argv[0]!, deadlineAt, opts.timeoutMs);
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
      const finish = (err: Error | undefined, result?: ExecResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(result!);
      };
      // Deadline, abort, output cap: kill the remote command through another channel and fail at once — sshd
      // only confirms the channel's close once its child has exited.
      const fail = (e: Error) => {
        if (settled) return;
        finish(e);
        ch.close();
        if (remotePid !== undefined) this.killRemote(remotePid);
      };
      const timer = setTimeout(() => {
        fail(new VmUnavailableError(this.vm, `VM ${this.vm}: ${argv[0]} did not finish within ${opts.timeoutMs} ms`, "the VM may be hung; try again"));
      }, Math.max(1, deadlineAt - Date.now()));
      const onAbort = () => fail(new InterruptedError());
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      ch.on("data", (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > max) return fail(new RemoteError(this.vm, argv[0]!, `output larger than ${max} bytes`));
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
        if (errBytes > max) return fail(new RemoteError(this.vm, argv[0]!, `error output larger than ${max} bytes`));
        err.push(chunk);
      });
      ch.on("exit", (code: number | null) => {
        exitCode = typeof code === "number" ? code : 255;
      });
      ch.on("close", () => {
        if (exitCode === undefined) {
          return finish(new VmUnavailableError(this.vm, `VM ${this.vm}: the SSH connection was lost while running ${argv[0]}`, "the command may or may not have completed; check and retry"));
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
   * Connect if needed and open an exec channel for `command` before `deadlineAt`. Opening is retried (with
   * backoff) when the channel is refused by a connection that is going down — nothing has run yet then.
   * @throws VmUnavailableError
   */
  private async openChannel(command: string, what: string, deadlineAt: number, timeoutMs: number): Promise<ClientChannel> {
    let delay: number = RECONNECT_BACKOFF.firstMs;
    for (;;) {
      this.assertOpen();
      try {
        const conn = await this.connection(deadlineAt);
        return await this.openExec(conn, command, deadlineAt, timeoutMs);
      } catch (err) {
        if (!(err instanceof TransportLost) || Date.now() + delay >= deadlineAt) throw this.unavailable(err, what, timeoutMs);
      }
      await sleep(delay);
      delay = Math.min(delay * RECONNECT_BACKOFF.factor, RECONNECT_BACKOFF.maxMs);
    }
  }

  /** Best effort: SIGKILL a remote command started by {@link exec} (and its process group). Never throws. */
  private killRemote(pid: number): void {
    const c = this.client;
    if (!c || this.closed) return;
    this.openExec(c, shellJoin(["sh", "-c", KILL_SCRIPT, "fabrik-kill", String(pid)]), Date.now() + 5_000, 5_000).then(
      (ch) => {
        ch.on("close", () => undefined);
        ch.on("error", () => undefined);
        ch.end();
        ch.resume();
      },
      () => undefined,
    );
  }

  /**
   * Run `argv` in the VM and deliver its stdout chunks as they come, until it exits, is killed, or the
   * connection drops. Wrapped in {@link STREAM_WATCHDOG}, so the remote command ends when the channel does.
   *
   * @returns a handle: `done` resolves with the exit code (255 when the connection was lost or the command
   *   was killed), `kill()` closes the channel (the watchdog then ends the remote command).
   * @throws VmUnavailableError when no connection/channel could be opened within `timeoutMs`.
   */
  async stream(argv: readonly string[], opts: SshStreamOptions): Promise<StreamHandle> {
    if (argv.length === 0) throw new Error("stream: empty argv");
    this.assertOpen();
    const timeoutMs = opts.timeoutMs ?? this.reconnectBudgetMs;
    const deadlineAt = Date.now() + timeoutMs;
    const ch = await this.openChannel(shellJoin(["sh", "-c", STREAM_WATCHDOG, "fabrik-stream", ...argv]), argv[0]!, deadlineAt, timeoutMs);
    this.streams.add(ch);
    let exitCode: number | undefined;
    const done = new Promise<number>((resolve) => {
      ch.on("data", (chunk: Buffer) => opts.onStdout(chunk));
      ch.stderr.on("data", (chunk: Buffer) => opts.onStderr?.(chunk));
      ch.on("exit", (code: number | null) => {
        exitCode = typeof code === "number" ? code : 255;
      });
      ch.on("error", () => ch.close());
      ch.on("close", () => {
        this.streams.delete(ch);
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

  /** Close every channel and the connection. Pending calls fail; later calls throw. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.probeChannel?.kill("transport closed");
    this.probeChannel = undefined;
    for (const ch of this.streams) ch.close();
    this.streams.clear();
    const c = this.client;
    this.client = undefined;
    c?.end();
    // A connect in flight ends itself once it sees `closed` (see connectOnce).
  }

  private assertOpen(): void {
    if (this.closed) throw new VmUnavailableError(this.vm, `VM ${this.vm}: the SSH transport is closed`);
  }

  /** A VmUnavailableError for a connect/open failure (already-typed errors pass through). */
  private unavailable(err: unknown, what: string, timeoutMs: number): Error {
    if (err instanceof VmUnavailableError || err instanceof RemoteError || err instanceof InterruptedError) return err;
    return new VmUnavailableError(this.vm, `VM ${this.vm}: ${what}: cannot open an SSH channel within ${timeoutMs} ms: ${errorText(err)}`, "is the VM running? see `fabrik vm list`");
  }

  /**
   * The live connection, or a new one. Reconnects with exponential backoff until `deadlineAt` (epoch ms); a
   * connect already in flight is shared. Throws VmUnavailableError with the attempt count and last error.
   */
  private connection(deadlineAt: number): Promise<Client> {
    this.assertOpen();
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connectWithBackoff(deadlineAt).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectWithBackoff(deadlineAt: number): Promise<Client> {
    const reconnecting = this.everConnected;
    if (reconnecting && !this.lostAnnounced) {
      this.lostAnnounced = true;
      this.onNotice(`connection to VM ${this.vm} lost (${this.lostReason ?? "closed"}); reconnecting…`);
    }
    let attempts = 0;
    let delay: number = RECONNECT_BACKOFF.firstMs;
    let lastError: unknown;
    for (;;) {
      this.assertOpen();
      const remaining = deadlineAt - Date.now();
      if (remaining <= 0) break;
      attempts++;
      try {
        const c = await this.connectOnce(Math.min(this.connectTimeoutMs, remaining));
        if (reconnecting) this.onNotice(`reconnected to VM ${this.vm} after ${attempts} attempt${attempts === 1 ? "" : "s"}`);
        this.client = c;
        this.everConnected = true;
        this.lostReason = undefined;
        this.lostAnnounced = false;
        return c;
      } catch (err) {
        lastError = err;
      }
      if (Date.now() + delay >= deadlineAt) break;
      await sleep(delay);
      delay = Math.min(delay * RECONNECT_BACKOFF.factor, RECONNECT_BACKOFF.maxMs);
    }
    const where = `${this.target.user}@${this.target.host}:${this.target.port}`;
    throw new VmUnavailableError(
      this.vm,
      `VM ${this.vm}: cannot ${reconnecting ? "reconnect" : "connect"} over SSH to ${where} (${attempts} attempt${attempts === 1 ? "" : "s"}${lastError ? `, last: ${errorText(lastError)}` : ""})`,
      "is the VM running? see `fabrik vm list`",
    );
  }

  private readKey(): Buffer {
    if (!this.privateKey) {
      try {
        this.privateKey = fs.readFileSync(this.target.identityFile);
      } catch (err) {
        throw new VmUnavailableError(this.vm, `VM ${this.vm}: cannot read the SSH identity ${this.target.identityFile}: ${errorText(err)}`);
      }
    }
    return this.privateKey;
  }

  /** One connection attempt within `timeoutMs`; resolves once authenticated. */
  private async connectOnce(timeoutMs: number): Promise<Client> {
    const key = this.readKey();
    const { Client: ClientClass } = await import("ssh2");
    return await new Promise<Client>((resolve, reject) => {
      const c = new ClientClass();
      let ready = false;
      let lastError: Error | undefined;
      const timer = setTimeout(() => {
        lastError = new Error(`no SSH handshake within ${timeoutMs} ms`);
        c.end();
        c.destroy();
      }, timeoutMs + 500);
      c.on("ready", () => {
        clearTimeout(timer);
        if (this.closed) {
          c.end();
          return reject(new VmUnavailableError(this.vm, `VM ${this.vm}: the SSH transport is closed`));
        }
        ready = true;
        resolve(c);
      });
      c.on("error", (err: Error) => {
        lastError = err;
      });
      c.on("close", () => {
        clearTimeout(timer);
        if (!ready) return reject(lastError ?? new Error("connection closed during the SSH handshake"));
        this.connectionClosed(c, lastError);
      });
      c.connect({
        host: this.target.host,
        port: this.target.port,
        username: this.target.user,
        privateKey: key,
        readyTimeout: timeoutMs,
        keepaliveInterval: this.keepaliveIntervalMs,
        keepaliveCountMax: 3,
        // No hostVerifier: like Lima's `StrictHostKeyChecking no` to its forwarded 127.0.0.1 port.
      });
    });
  }

  private connectionClosed(c: Client, err: Error | undefined): void {
    if (this.client !== c) return;
    this.client = undefined;
    this.lostReason = err ? errorText(err) : "connection closed by the VM";
    this.probeChannel?.markConnectionLost();
  }

  /** Open an exec channel within the deadline. Throws TransportLost-style errors (caller maps them). */
  private openExec(conn: Client, command: string, deadlineAt: number, timeoutMs: number): Promise<ClientChannel> {
    return new Promise<ClientChannel>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new VmUnavailableError(this.vm, `VM ${this.vm}: no SSH channel within ${timeoutMs} ms`));
      }, Math.max(1, deadlineAt - Date.now()));
      try {
        conn.exec(command, (err, ch) => {
          clearTimeout(timer);
          if (settled) {
            ch?.close();
            return;
          }
          settled = true;
          if (err) return reject(new TransportLost(errorText(err)));
          resolve(ch);
        });
      } catch (err) {
        clearTimeout(timer);
        settled = true;
        reject(new TransportLost(errorText(err)));
      }
    });
  }
}

/**
 * The probe in serve mode on one exec channel: a line written, a line read. One request at a time (the
 * transport serialises). Listeners are attached once; a request only sets {@link waiter}.
 */
class ProbeChannel {
  dead = false;
  /** The death was caused by the connection dropping (retry after reconnecting). */
  connectionLost = false;
  /** The last request was abandoned because its deadline passed (the channel was killed). */
  timedOut = false;
  exitCode: number | null = null;
  private reason = "";
  private readonly ch: ClientChannel;
  private parts: Buffer[] = [];
  private partBytes = 0;
  private stderrTail = "";
  private waiter: { resolve: (line: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;

  constructor(ch: ClientChannel) {
    this.ch = ch;
    ch.on("data", (chunk: Buffer) => this.onData(chunk));
    ch.stderr.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-2000);
    });
    ch.on("exit", (code: number | null, signal?: string) => {
      this.exitCode = typeof code === "number" ? code : null;
      if (!this.reason) this.reason = typeof code === "number" ? `exit ${code}` : `signal ${signal ?? "?"}`;
    });
    ch.on("error", (err: Error) => this.kill(errorText(err)));
    ch.on("close", () => this.die(this.reason || "channel closed"));
  }

  /** The last lines of the probe's stderr (≤ 500 chars). */
  stderr(): string {
    return this.stderrTail.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
  }

  /** What ended the channel, with the probe's last stderr words. */
  deathReason(): string {
    const err = this.stderr();
    return err ? `${this.reason}: ${err.slice(0, 300)}` : this.reason;
  }

  /** Send one request line; resolves with the next response line. Rejects if the channel dies or the deadline passes. */
  request(line: string, deadlineAt: number): Promise<string> {
    if (this.dead) return Promise.reject(new TransportLost(this.deathReason()));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.timedOut = true;
        this.kill("request timed out");
      }, Math.max(1, deadlineAt - Date.now()));
      this.waiter = { resolve, reject, timer };
      this.ch.write(line + "\n");
    });
  }

  markConnectionLost(): void {
    this.connectionLost = true;
    this.die("connection lost");
  }

  /** End the channel (the probe exits on stdin EOF) and fail a pending request. */
  kill(reason: string): void {
    if (!this.reason) this.reason = reason;
    try {
      this.ch.end();
      this.ch.close();
    } catch {
      /* already closed */
    }
    this.die(reason);
  }

  private die(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    if (!this.reason) this.reason = reason;
    this.parts = [];
    this.partBytes = 0;
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(new TransportLost(this.deathReason()));
    }
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      const line = this.parts.length === 0 ? piece.toString("utf8") : Buffer.concat([...this.parts, piece]).toString("utf8");
      this.parts = [];
      this.partBytes = 0;
      start = nl + 1;
      this.deliver(line);
      if (this.dead) return;
    }
    if (start < chunk.length) {
      this.partBytes += chunk.length - start;
      if (this.partBytes > MAX_PROBE_LINE_BYTES) return this.kill(`answer longer than ${MAX_PROBE_LINE_BYTES} bytes`);
      this.parts.push(Buffer.from(chunk.subarray(start)));
    }
  }

  private deliver(line: string): void {
    // Noise that is not a JSON object (e.g. something a shell startup file printed) is skipped.
    if (!line.trimStart().startsWith("{")) return;
    const w = this.waiter;
    if (!w) {
      // Output nobody asked for: the channel is out of step; drop it (the next request restarts it).
      this.kill("unexpected output from the probe");
      return;
    }
    this.waiter = undefined;
    clearTimeout(w.timer);
    w.resolve(line);
  }
}
