/**
 * A VM session: how a command talks to ONE VM over time (attach, watch). It hides which path is used:
 *
 * - `ssh`: the persistent {@link SshTransport} (one connection, one long-lived probe channel), when the
 *   caller prefers it and the driver offers SSH coordinates (`driver.sshTarget`, Lima's ssh.config, read again
 *   before every reconnect) — or, for a driver that owns its VMs' transports (the `ssh` driver,
 *   {@link TransportOwner}), that very transport, borrowed: the command's one connection to the VM serves its
 *   probes, refreshes and follows, and outlives the session;
 * - `driver`: the driver's own command path — {@link probeVm} for probes, `driver.stream` for following,
 *   `driver.exec` for commands. The `local` driver has no SSH, so it always uses this path; a Lima VM whose
 *   sshd cannot be reached at open time falls back to it too (with a notice).
 *
 * {@link VmSession.followFile} survives dropped connections: it counts the bytes it has delivered and, when
 * its stream ends for any reason other than `stop()`, restarts `tail -c +<offset+1> -F -- <path>` (an argv,
 * quoted by the transport/driver, never interpolated) from exactly that offset. Chunks still arriving from
 * an ended stream are dropped (the new stream re-reads them), so no byte is repeated or lost.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { ExecResult, VmDriver, StreamHandle } from "./driver.js";
import { InterruptedError, NotFoundError, VmUnavailableError } from "../core/errors.js";
import { onAbort } from "./abort.js";
import type { GuestInstallCache } from "./guest-programs.js";
import type { ProbeRequest, ProbeResponse } from "./probe-schema.js";
import { probeVm } from "./probe.js";
import { RECONNECT_BACKOFF, backoffDelayMs, retryUntil } from "./retry.js";
import { SshTransport } from "./transport/index.js";

/** Options of {@link VmSession.exec}. */
export interface SessionExecOptions {
  /** Fed to stdin, then EOF. */
  stdin?: string | Buffer | undefined;
  /** Deadline for the whole call, ms. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Cap per output stream, bytes (default 64 MiB). */
  maxOutputBytes?: number | undefined;
}

/** Options of {@link VmSession.followFile}. */
export interface FollowOptions {
  /** Stops following when aborted (like `stop()`). */
  signal?: AbortSignal | undefined;
  /**
   * How long following may stay broken (stream ended, no new one could be started), ms, before `done`
   * rejects with VmUnavailableError. Default 60000.
   */
  reconnectBudgetMs?: number | undefined;
}

/** A running {@link VmSession.followFile}. */
export interface FileFollower {
  /** File offset of the next byte to deliver (= fromOffset + bytes delivered), bytes. */
  readonly offset: number;
  /** How many times the stream was restarted after ending unexpectedly. */
  readonly restarts: number;
  /** Stop following. No `onData` call happens after this returns. Idempotent. */
  stop(): void;
  /** Resolves once stopped; rejects (VmUnavailableError/NotFoundError) when following cannot be re-established. */
  readonly done: Promise<void>;
}

export interface VmSession {
  /** Which path this session uses. */
  readonly kind: "ssh" | "driver";
  readonly vm: string;
  /**
   * One probe round trip (the wire format of probe-schema.ts).
   * @throws VmUnavailableError (unreachable / deadline), ProbeError (probe failed or answered garbage), InterruptedError.
   */
  probe(req: ProbeRequest, opts: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<ProbeResponse>;
  /** Run argv in the VM; the guest's exit code is data. Throws like `VmDriver.exec`. */
  exec(argv: readonly string[], opts: SessionExecOptions): Promise<ExecResult>;
  /**
   * Follow `path` from byte `fromOffset` (0 = the beginning), delivering every byte exactly once, in order:
   * `onData(chunk, newOffset)` where `newOffset` is the offset just past `chunk`. Resolves once the first
   * stream runs. A missing file is waited for (tail -F). A truncated file is not detected (logs are append-only).
   * @throws VmUnavailableError / NotFoundError when the first stream cannot be started.
   */
  followFile(path: string, fromOffset: number, onData: (chunk: Buffer, newOffset: number) => void, opts?: FollowOptions): Promise<FileFollower>;
  /** Stop all followers and close the connection. Idempotent. */
  close(): void;
}

export interface OpenVmSessionOptions {
  /** Use the persistent SSH transport when the driver offers it. */
  preferSsh: boolean;
  /** One-line notices for the user (connection lost/reconnected, SSH fallback); the CLI prints them on stderr. */
  onNotice?: ((msg: string) => void) | undefined;
  /** Aborting it stops followers and fails calls in flight with InterruptedError. */
  signal?: AbortSignal | undefined;
  /** Deadline of the first SSH connection, ms (default 5000); on failure the session falls back to the driver. */
  connectTimeoutMs?: number | undefined;
  /** What the host believes is installed in the VM (default: the process-wide in-memory cache). */
  installCache?: GuestInstallCache | undefined;
}

/**
 * A driver that owns a persistent transport per VM (the `ssh` driver): a session borrows it instead of opening a
 * connection of its own (which would also bypass the driver's host-key verification). `onNotice` gets connection
 * lost/reconnected notices until `release()`, which never closes the transport.
 */
export interface TransportOwner {
  sessionTransport(vm: string, onNotice: (msg: string) => void): Promise<{ transport: SshTransport; release: () => void }>;
}

function ownsTransports(d: VmDriver): d is VmDriver & TransportOwner {
  return typeof (d as Partial<TransportOwner>).sessionTransport === "function";
}

/** The `tail` argv that prints `path` from byte `offset` (0-based) on and keeps following it (also across re-creation). */
export function tailFromArgv(path: string, offset: number): string[] {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`bad offset ${offset}`);
  return ["tail", "-c", `+${offset + 1}`, "-F", "--", path];
}

/**
 * Open a session to `vm`. With `preferSsh` and a driver that returns SSH coordinates, connects once (to fail
 * over to the driver path early rather than mid-command); otherwise uses the driver.
 */
export async function openVmSession(driver: VmDriver, vm: string, opts: OpenVmSessionOptions): Promise<VmSession> {
  const notice = opts.onNotice ?? (() => {});
  if (opts.preferSsh && ownsTransports(driver)) {
    // No connect check: the transport reconnects (within each call's deadline) when the VM comes back.
    const { transport, release } = await driver.sessionTransport(vm, notice);
    return new SshSession(vm, transport, opts.signal, notice, release);
  }
  if (opts.preferSsh) {
    let target;
    try {
      target = await driver.sshTarget(vm);
    } catch {
      target = undefined; // the driver path will report the VM's problem in its own words
    }
    if (target) {
      // Every reconnect reads the VM's coordinates again: a VM restarted by Lima listens on a new SSH port.
      const transport = new SshTransport(vm, target, {
        onNotice: notice,
        connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
        installCache: opts.installCache,
        targetSource: () => driver.sshTarget(vm),
      });
      try {
        await transport.connect({ timeoutMs: opts.connectTimeoutMs ?? 5_000 });
        return new SshSession(vm, transport, opts.signal, notice, () => transport.close());
      } catch (err) {
        transport.close();
        notice(`cannot use SSH for VM ${vm} (${(err as Error).message}); using the ${driver.name} driver instead`);
      }
    }
  }
  return new DriverSession(vm, driver, opts.signal, notice, opts.installCache);
}

/** Reject with InterruptedError when one of `signals` aborts first (one fan-out registration each, removed when settled). */
function abortable<T>(p: Promise<T>, ...signals: (AbortSignal | undefined)[]): Promise<T> {
  if (signals.some((s) => s?.aborted)) return Promise.reject(new InterruptedError());
  if (!signals.some((s) => s)) return p;
  return new Promise<T>((resolve, reject) => {
    const offs = signals.map((s) => onAbort(s, () => reject(new InterruptedError())));
    const done = () => offs.forEach((off) => off());
    p.then(
      (v) => {
        done();
        resolve(v);
      },
      (e: unknown) => {
        done();
        reject(e as Error);
      },
    );
  });
}

/** Start one stream of `argv`; `budgetMs` is how long the starter may spend (re)connecting. */
type StartStream = (argv: string[], onStdout: (chunk: Buffer) => void, budgetMs: number) => Promise<StreamHandle>;

/** A stream that ran at least this long before ending counts as healthy: the next restart waits the shortest delay. */
const HEALTHY_STREAM_MS = 5_000;

/**
 * The follow loop shared by both session kinds. Each stream gets a generation number; a chunk from a stream
 * that is no longer current is dropped, because its successor starts exactly at the offset delivered so far.
 */
async function startFollower(
  vm: string,
  path: string,
  fromOffset: number,
  onData: (chunk: Buffer, newOffset: number) => void,
  start: StartStream,
  opts: FollowOptions,
  sessionSignal: AbortSignal | undefined,
  followers: Set<FileFollower>,
  /** Called when a stream ended by itself and following resumes (not called for the first start). */
  onInterrupted: (why: string) => void,
): Promise<FileFollower> {
  const budgetMs = opts.reconnectBudgetMs ?? 60_000;
  let offset = fromOffset;
  let restarts = 0;
  let generation = 0;
  let stopped = false;
  let current: StreamHandle | undefined;
  const stopCtl = new AbortController();

  const startGen = async (budget: number): Promise<StreamHandle> => {
    const gen = ++generation;
    const handle = await start(
      tailFromArgv(path, offset),
      (chunk) => {
        if (stopped || gen !== generation || chunk.length === 0) return;
        offset += chunk.length;
        onData(chunk, offset);
      },
      budget,
    );
    return handle;
  };

  const stop = () => {
    if (stopped) return;
    stopped = true;
    generation++;
    stopCtl.abort();
    current?.kill();
  };
  if (opts.signal?.aborted || sessionSignal?.aborted) throw new InterruptedError();
  const offs = [onAbort(opts.signal, stop), onAbort(sessionSignal, stop)];
  const cleanup = () => offs.forEach((off) => off());

  try {
    current = await startGen(budgetMs);
  } catch (err) {
    cleanup();
    throw err;
  }
  if (stopped) current.kill(); // stopped (aborted) while the first stream was starting

  const loop = async (): Promise<void> => {
    /** Streams that ended within HEALTHY_STREAM_MS of starting, in a row: the first wait grows with them. */
    let quickEnds = 0;
    for (;;) {
      const runningSince = Date.now();
      const code = await current!.done;
      current = undefined;
      if (stopped) return;
      // Ended by itself: connection dropped, sshd or limactl killed, tail failed. Older chunks are dropped from here.
      generation++;
      onInterrupted(`following ${path} on VM ${vm} stopped (exit ${code}); resuming at byte ${offset}`);
      quickEnds = Date.now() - runningSince > HEALTHY_STREAM_MS ? 0 : quickEnds + 1;
      const brokenSince = Date.now();
      try {
        await sleep(backoffDelayMs(RECONNECT_BACKOFF, quickEnds - 1), undefined, { signal: stopCtl.signal });
        const h = await retryUntil(() => startGen(Math.max(1_000, budgetMs - (Date.now() - brokenSince))), {
          deadlineAt: brokenSince + budgetMs,
          shouldRetry: (err) => !(err instanceof NotFoundError) && !stopped,
          signal: stopCtl.signal,
        });
        if (stopped) {
          h.kill();
          return;
        }
        current = h;
        restarts++;
      } catch (err) {
        if (stopped) return;
        throw err instanceof VmUnavailableError || err instanceof NotFoundError
          ? err
          : new VmUnavailableError(vm, `VM ${vm}: following ${path} broke and could not be resumed: ${(err as Error).message}`);
      }
    }
  };

  let follower: FileFollower;
  const done = loop().finally(() => {
    cleanup();
    followers.delete(follower);
  });
  follower = {
    get offset() {
      return offset;
    },
    get restarts() {
      return restarts;
    },
    stop,
    done,
  };
  followers.add(follower);
  // Keep an unobserved rejection from crashing the process; callers that care await `done`.
  done.catch(() => undefined);
  return follower;
}

class SshSession implements VmSession {
  readonly kind = "ssh" as const;
  private readonly followers = new Set<FileFollower>();

  constructor(
    readonly vm: string,
    private readonly transport: SshTransport,
    private readonly signal: AbortSignal | undefined,
    private readonly notice: (msg: string) => void,
    /** Ends this session's hold on the transport: closes it when the session opened it, only detaches when borrowed. */
    private readonly release: () => void,
  ) {}

  probe(req: ProbeRequest, opts: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<ProbeResponse> {
    return abortable(this.transport.probe(req, { timeoutMs: opts.timeoutMs }), opts.signal, this.signal);
  }

  exec(argv: readonly string[], opts: SessionExecOptions): Promise<ExecResult> {
    return this.transport.exec(argv, { ...opts, signal: opts.signal ?? this.signal });
  }

  followFile(path: string, fromOffset: number, onData: (chunk: Buffer, newOffset: number) => void, opts: FollowOptions = {}): Promise<FileFollower> {
    const start: StartStream = (argv, onStdout, budgetMs) => this.transport.stream(argv, { onStdout, timeoutMs: budgetMs });
    // A lost connection is announced by the transport itself; say something only when it was not that.
    const interrupted = (why: string) => {
      if (this.transport.connected) this.notice(why);
    };
    return startFollower(this.vm, path, fromOffset, onData, start, opts, this.signal, this.followers, interrupted);
  }

  close(): void {
    for (const f of [...this.followers]) f.stop();
    this.release();
  }
}

class DriverSession implements VmSession {
  readonly kind = "driver" as const;
  private readonly followers = new Set<FileFollower>();

  constructor(
    readonly vm: string,
    private readonly driver: VmDriver,
    private readonly signal: AbortSignal | undefined,
    private readonly notice: (msg: string) => void,
    private readonly installCache: GuestInstallCache | undefined,
  ) {}

  probe(req: ProbeRequest, opts: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<ProbeResponse> {
    return probeVm(this.driver, this.vm, req, { timeoutMs: opts.timeoutMs, signal: opts.signal ?? this.signal, installCache: this.installCache });
  }

  exec(argv: readonly string[], opts: SessionExecOptions): Promise<ExecResult> {
    return this.driver.exec(this.vm, argv, { ...opts, signal: opts.signal ?? this.signal });
  }

  followFile(path: string, fromOffset: number, onData: (chunk: Buffer, newOffset: number) => void, opts: FollowOptions = {}): Promise<FileFollower> {
    const start: StartStream = (argv, onStdout) => this.driver.stream(this.vm, argv, { onStdout });
    return startFollower(this.vm, path, fromOffset, onData, start, opts, this.signal, this.followers, this.notice);
  }

  close(): void {
    for (const f of [...this.followers]) f.stop();
  }
}
