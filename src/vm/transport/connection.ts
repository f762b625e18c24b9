/**
 * ONE SSH connection to a VM (the `ssh2` library, loaded lazily), re-established with exponential backoff
 * ({@link RECONNECT_BACKOFF} through {@link retryUntil}) when it drops; the number of attempts is bounded by the
 * deadline of the operation that needs the connection. Losses and recoveries are reported through `onNotice`
 * (`connection to VM x lost (reason); reconnecting…`, `reconnected to VM x after N attempts`).
 *
 * - Coordinates come from the driver's {@link SshTarget} (Lima's `ssh.config`, lima-contract §3). Lima picks a
 *   new SSH port at every VM start, so with a {@link SshTargetSource} the coordinates are asked for again before
 *   every connection attempt after the first (a reconnect after a VM restart dials the new port, not the old
 *   one). Without a {@link SshConnectionOptions.prepareConnect} hook the host key is not checked, exactly as Lima's
 *   own config says (`StrictHostKeyChecking no`, `UserKnownHostsFile /dev/null`): the target is Lima's forwarded
 *   port on 127.0.0.1. The `ssh` driver passes a hook that verifies host keys against known_hosts (host-keys.ts),
 *   authenticates with its keys or agent (never forwarding it) and dials through a jump host.
 * - Channels are opened with a command line the caller built with shellJoin from an argv.
 *
 * This folder is the only place that opens SSH connections (style.md §4).
 */
import fs from "node:fs";
import type { Client, ClientChannel, ConnectConfig } from "ssh2";
import { FabrikError, VmUnavailableError } from "../../core/errors.js";
import type { SshTarget } from "../driver.js";
import { killArgv } from "../remote-group.js";
import { retryUntil } from "../retry.js";
import { shellJoin } from "../shell-quote.js";

export { RECONNECT_BACKOFF } from "../retry.js";

/**
 * Where a VM's sshd is NOW (the lima driver: `driver.sshTarget(vm)`, which reads the VM's `ssh.config` again), or
 * undefined when the VM offers no SSH at the moment (stopped). Called before every connection attempt but the
 * first; a call that throws or returns undefined counts as a failed attempt (retried with backoff).
 */
export type SshTargetSource = () => Promise<SshTarget | undefined>;

/** Options of a connection (and of the transport built on it). */
export interface SshConnectionOptions {
  /**
   * Asked for fresh coordinates before every connection attempt after the first (see {@link SshTargetSource}).
   * Without it the target given to the constructor is dialled for ever.
   */
  targetSource?: SshTargetSource | undefined;
  /** Called with one-line human notices (connection lost / reconnected). The CLI prints them on stderr. */
  onNotice?: ((msg: string) => void) | undefined;
  /** Deadline of one connection attempt (TCP + SSH handshake + auth), ms. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /** Time allowed to (re)connect for operations without a deadline of their own (streams), ms. Default 60000. */
  reconnectBudgetMs?: number | undefined;
  /** SSH keepalive period, ms (3 unanswered keepalives = connection lost). Default 5000. */
  keepaliveIntervalMs?: number | undefined;
  /**
   * Called before every connection attempt (within its deadline, `timeoutMs`): settings merged over the defaults
   * (host verifier, authentication, a jump host's socket). A {@link FabrikError} it throws, other than kind
   * `unavailable`, ends the attempts at once (e.g. a refused jump-host key). Default: none (Lima's loopback VMs).
   */
  prepareConnect?: ((timeoutMs: number) => Promise<PreparedConnect>) | undefined;
}

/** What {@link SshConnectionOptions.prepareConnect} returns for one attempt. */
export interface PreparedConnect {
  /** Merged over the connection's own ssh2 settings. With `authHandler` set, the target's identity file is not read. */
  config: Partial<ConnectConfig>;
  /**
   * After a failed attempt: the error to report instead of ssh2's (e.g. the refused host key, with its fingerprint),
   * or undefined to keep ssh2's error and retry. An error returned here ends the attempts at once.
   * `reconnecting`: a connection was up before in this process.
   */
  explain?: ((err: Error, reconnecting: boolean) => Error | undefined) | undefined;
  /** Called once when this attempt's connection is gone (or never came up): free what prepare made. */
  release?: (() => void) | undefined;
}

/** A failure to open a channel on a connection that is going down: nothing ran yet, so it may be retried. */
export class TransportLost extends Error {}

/** A connect failure that retrying cannot fix (see {@link PreparedConnect.explain}); carries the error to report. */
class FatalConnect extends Error {
  constructor(readonly error: Error) {
    super(error.message);
  }
}

/** An error as one line, with its code (`ECONNREFUSED: …`) or ssh2 level (`timed out: …`). */
export function errorText(err: unknown): string {
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

/** One VM's SSH connection. Create it, open channels on it, {@link close} it when done. */
export class SshConnection {
  readonly vm: string;
  readonly reconnectBudgetMs: number;
  /** The coordinates last used (or given); refreshed from {@link targetSource} before each later attempt. */
  private target: SshTarget;
  private readonly targetSource: SshTargetSource | undefined;
  /** True until the first connection attempt: the constructor's target is fresh, use it once as is. */
  private targetFresh = true;
  private readonly onNotice: (msg: string) => void;
  private readonly connectTimeoutMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly prepareConnect: SshConnectionOptions["prepareConnect"];
  private readonly lostListeners = new Set<() => void>();

  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  /** Why the last connection ended unexpectedly; set until a new connection is up. */
  private lostReason: string | undefined;
  private lostAnnounced = false;
  /** True once a connection has been up (so later connects are re-connects). */
  private everConnected = false;
  private closedFlag = false;
  private privateKey: { file: string; key: Buffer } | undefined;

  constructor(vm: string, target: SshTarget, opts: SshConnectionOptions = {}) {
    this.vm = vm;
    this.target = target;
    this.targetSource = opts.targetSource;
    this.onNotice = opts.onNotice ?? (() => {});
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.reconnectBudgetMs = opts.reconnectBudgetMs ?? 60_000;
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? 5_000;
    this.prepareConnect = opts.prepareConnect;
  }

  /** True while an SSH connection is up (not whether the VM is healthy). */
  get connected(): boolean {
    return this.client !== undefined;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Call `fn` whenever an established connection drops. Returns the unsubscribe function. */
  onLost(fn: () => void): () => void {
    this.lostListeners.add(fn);
    return () => this.lostListeners.delete(fn);
  }

  /** @throws VmUnavailableError once {@link close} was called. */
  assertOpen(): void {
    if (this.closedFlag) throw new VmUnavailableError(this.vm, `VM ${this.vm}: the SSH transport is closed`);
  }

  /** A VmUnavailableError for a connect/open failure (already-typed errors pass through). */
  unavailable(err: unknown, what: string, timeoutMs: number): Error {
    if (err instanceof FabrikError) return err; // typed already: unavailable, remote, interrupted, a refused host key …
    return new VmUnavailableError(this.vm, `VM ${this.vm}: ${what}: cannot open an SSH channel within ${timeoutMs} ms: ${errorText(err)}`, "is the VM running? see `fabrik vm list`");
  }

  /**
   * The live connection, or a new one. Reconnects with backoff until `deadlineAt` (epoch ms); a connect already
   * in flight is shared.
   * @throws VmUnavailableError with the attempt count and last error.
   */
  connection(deadlineAt: number): Promise<Client> {
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
    let lastError: unknown;
    const exhausted = new Error("deadline reached");
    /** A failure retrying cannot fix (see PreparedConnect): reported as it is. */
    let fatal: Error | undefined;
    try {
      const c = await retryUntil(
        async () => {
          this.assertOpen();
          const remaining = deadlineAt - Date.now();
          if (remaining <= 0) throw exhausted;
          attempts++;
          try {
            return await this.connectOnce(Math.min(this.connectTimeoutMs, remaining), reconnecting);
          } catch (err) {
            if (err instanceof FatalConnect) fatal = err.error;
            throw err;
          }
        },
        {
          deadlineAt,
          onFailedAttempt: (err) => {
            if (err !== exhausted) lastError = err;
          },
          shouldRetry: (err) => err !== exhausted && !this.closedFlag && !(err instanceof FatalConnect),
        },
      );
      if (reconnecting) this.onNotice(`reconnected to VM ${this.vm} after ${attempts} attempt${attempts === 1 ? "" : "s"}`);
      this.client = c;
      this.everConnected = true;
      this.lostReason = undefined;
      this.lostAnnounced = false;
      return c;
    } catch {
      if (this.closedFlag) throw new VmUnavailableError(this.vm, `VM ${this.vm}: the SSH transport is closed`);
      if (fatal) throw fatal;
    }
    const where = `${this.target.user}@${this.target.host}:${this.target.port}`;
    throw new VmUnavailableError(
      this.vm,
      `VM ${this.vm}: cannot ${reconnecting ? "reconnect" : "connect"} over SSH to ${where} (${attempts} attempt${attempts === 1 ? "" : "s"}${lastError ? `, last: ${errorText(lastError)}` : ""})`,
      "is the VM running? see `fabrik vm list`",
    );
  }

  private readKey(target: SshTarget): Buffer {
    if (this.privateKey?.file !== target.identityFile) {
      try {
        this.privateKey = { file: target.identityFile, key: fs.readFileSync(target.identityFile) };
      } catch (err) {
        throw new VmUnavailableError(this.vm, `VM ${this.vm}: cannot read the SSH identity ${target.identityFile}: ${errorText(err)}`);
      }
    }
    return this.privateKey.key;
  }

  /**
   * The coordinates for the next attempt: the constructor's on the first attempt, then the source's answer
   * (within `timeoutMs`), so a VM restarted on a new port is found.
   * @throws Error when the source has no target (VM stopped), fails, or does not answer in time.
   */
  private async nextTarget(timeoutMs: number): Promise<SshTarget> {
    if (this.targetFresh || !this.targetSource) {
      this.targetFresh = false;
      return this.target;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no SSH coordinates within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const t = await Promise.race([this.targetSource(), late]);
      if (!t) throw new Error("the VM offers no SSH coordinates (is it running?)");
      this.target = t;
      return t;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One connection attempt within `timeoutMs` (asking for fresh coordinates first); resolves once authenticated.
   * Throws {@link FatalConnect} to stop retrying.
   */
  private async connectOnce(timeoutMs: number, reconnecting: boolean): Promise<Client> {
    const startedAt = Date.now();
    const target = await this.nextTarget(timeoutMs);
    timeoutMs = Math.max(1, timeoutMs - (Date.now() - startedAt));
    let prepared: PreparedConnect | undefined;
    try {
      prepared = await this.prepareConnect?.(timeoutMs);
    } catch (err) {
      throw err instanceof FabrikError && err.kind !== "unavailable" ? new FatalConnect(err) : err;
    }
    let key: Buffer | undefined;
    try {
      key = prepared?.config.authHandler ? undefined : this.readKey(target);
    } catch (err) {
      prepared?.release?.();
      throw err;
    }
    const { Client: ClientClass } = await import("ssh2");
    return await new Promise<Client>((resolve, reject) => {
      const c = new ClientClass();
      let ready = false;
      let lastError: Error | undefined;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        prepared?.release?.();
      };
      const fail = (err: Error) => {
        release();
        const explained = prepared?.explain?.(err, reconnecting);
        reject(explained ? new FatalConnect(explained) : err);
      };
      const timer = setTimeout(() => {
        lastError = new Error(`no SSH handshake within ${timeoutMs} ms`);
        c.end();
        c.destroy();
      }, timeoutMs + 500);
      c.on("ready", () => {
        clearTimeout(timer);
        if (this.closedFlag) {
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
        if (!ready) return fail(lastError ?? new Error("connection closed during the SSH handshake"));
        release();
        this.connectionClosed(c, lastError);
      });
      try {
        c.connect({
          host: target.host,
          port: target.port,
          username: target.user,
          privateKey: key,
          readyTimeout: timeoutMs,
          keepaliveInterval: this.keepaliveIntervalMs,
          keepaliveCountMax: 3,
          // Without prepareConnect, no hostVerifier: like Lima's `StrictHostKeyChecking no` to its forwarded 127.0.0.1 port.
          ...prepared?.config,
        });
      } catch (err) {
        // A setting ssh2 refuses before dialling (e.g. a key it cannot parse).
        clearTimeout(timer);
        fail(err as Error);
      }
    });
  }

  private connectionClosed(c: Client, err: Error | undefined): void {
    if (this.client !== c) return;
    this.client = undefined;
    this.lostReason = err ? errorText(err) : "connection closed by the VM";
    for (const fn of [...this.lostListeners]) fn();
  }

  /**
   * Open an exec channel for `command` on `conn` before `deadlineAt`.
   * @throws TransportLost when the connection refuses the channel; VmUnavailableError past the deadline.
   */
  openExec(conn: Client, command: string, deadlineAt: number, timeoutMs: number): Promise<ClientChannel> {
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

  /**
   * Connect if needed and open an exec channel for `command` before `deadlineAt`. Opening is retried (with
   * backoff) when the channel is refused by a connection that is going down — nothing has run yet then.
   * @param what the command's name, for messages.
   * @throws VmUnavailableError
   */
  async openChannel(command: string, what: string, deadlineAt: number, timeoutMs: number): Promise<ClientChannel> {
    try {
      return await retryUntil(
        async () => {
          this.assertOpen();
          return await this.openExec(await this.connection(deadlineAt), command, deadlineAt, timeoutMs);
        },
        { deadlineAt, shouldRetry: (err) => err instanceof TransportLost && !this.closedFlag },
      );
    } catch (err) {
      throw this.unavailable(err, what, timeoutMs);
    }
  }

  /** Best effort: SIGKILL a remote pid and its process group through another channel (remote-group.ts). Never throws. */
  killRemote(pid: number): void {
    const c = this.client;
    if (!c || this.closedFlag) return;
    this.openExec(c, shellJoin(killArgv(pid)), Date.now() + 5_000, 5_000).then(
      (ch) => {
        ch.on("close", () => undefined);
        ch.on("error", () => undefined);
        ch.end();
        ch.resume();
      },
      () => undefined,
    );
  }

  /** Close the connection. Later calls throw; a connect in flight ends itself once it sees `closed`. Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    const c = this.client;
    this.client = undefined;
    c?.end();
  }
}
