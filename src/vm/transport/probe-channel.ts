/**
 * The guest probe in serve mode on ONE long-lived exec channel of an {@link SshConnection}: a status refresh is a
 * JSON line written and a JSON line read (well under a millisecond of transport cost on loopback) instead of a
 * process, a connection and a channel started per call (~100–300 ms; environment-notes.md).
 *
 * The channel runs `sh -c PROBE_WRAPPER fabrik-probe <hash> <text or ""> serve <bun candidates…>` (src/vm/probe.ts):
 * the program text is sent only when the {@link GuestInstallCache} says the VM lacks it; a channel that ends with
 * "not installed" is reopened once with the text. Requests are serialised (one at a time on the channel). A
 * dropped connection or a dead channel is re-established with the VM layer's backoff, bounded by the request's
 * deadline. Memory stays flat over any number of requests: the channel has one set of listeners for its whole
 * life, a request holds no listener of its own, and the line buffer is released after every line.
 */
import type { ClientChannel } from "ssh2";
import { VmUnavailableError } from "../../core/errors.js";
import { loadGuestProgram, type GuestInstallCache } from "../guest-programs.js";
import { NoBunError, ProbeError, isNoBunExit, isNotInstalledExit, parseProbeLine, probeArgv, probeBunCandidates } from "../probe.js";
import type { ProbeRequest, ProbeResponse } from "../probe-schema.js";
import { probeRequestWithDefaults } from "../probe-request.js";
import { retryUntil } from "../retry.js";
import { shellJoin } from "../shell-quote.js";
import { TransportLost, errorText, type SshConnection } from "./connection.js";
import { exitFromClose } from "./exec.js";

/** Largest line the probe may answer with, bytes (a response with 5000 nodes is a few MB). */
export const MAX_PROBE_LINE_BYTES = 64 * 1024 * 1024;

/** A probe channel that keeps dying on a healthy connection this many times is a probe failure. */
const MAX_CHANNEL_DEATHS = 3;

/** Probes over one connection: a queue and the current serve channel. */
export class SshProbeService {
  private channel: ProbeChannel | undefined;
  /** Tail of the queue: probes run one at a time on the one channel. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly conn: SshConnection,
    private readonly installCache: GuestInstallCache,
  ) {
    conn.onLost(() => this.channel?.markConnectionLost());
  }

  /**
   * Ask the probe one question (see SshTransport.probe for the contract).
   * @throws VmUnavailableError, NoBunError, ProbeError.
   */
  probe(req: ProbeRequest, opts: { timeoutMs: number }): Promise<ProbeResponse> {
    const deadlineAt = Date.now() + opts.timeoutMs;
    const parsed = probeRequestWithDefaults(req);
    const line = JSON.stringify(parsed);
    const candidates = probeBunCandidates(parsed);
    const run = this.queue.then(() => this.probeNow(line, candidates, deadlineAt, opts.timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** End the channel (the probe exits on stdin EOF). */
  close(reason: string): void {
    this.channel?.kill(reason);
    this.channel = undefined;
  }

  private async probeNow(line: string, candidates: string[], deadlineAt: number, timeoutMs: number): Promise<ProbeResponse> {
    const vm = this.conn.vm;
    // Waited out its deadline behind earlier probes: fail without disturbing the (healthy) channel.
    if (Date.now() >= deadlineAt) {
      throw new VmUnavailableError(vm, `VM ${vm}: the probe did not answer within ${timeoutMs} ms (earlier probes were still running)`, "the VM may be overloaded; try again");
    }
    let channelDeaths = 0;
    let lastDeath = "";
    try {
      return await retryUntil(
        async () => {
          this.conn.assertOpen();
          let ch: ProbeChannel;
          try {
            ch = await this.channelFor(candidates, deadlineAt, timeoutMs);
          } catch (err) {
            // A channel refused on a connection that is going down ("Unable to exec"): retried while time is left.
            if (err instanceof TransportLost) throw err;
            throw new Fatal(this.conn.unavailable(err, "probe", timeoutMs));
          }
          let text: string;
          try {
            text = await ch.request(line, deadlineAt);
          } catch (err) {
            if (ch.timedOut) throw new Fatal(new VmUnavailableError(vm, `VM ${vm}: the probe did not answer within ${timeoutMs} ms`, "the VM may be overloaded; try again"));
            if (this.conn.closed) throw new Fatal(err);
            lastDeath = ch.deathReason();
            if (!ch.connectionLost) {
              // The probe process ended on a healthy connection: not installed (stale cache), no bun, or a crash.
              if (isNotInstalledExit(ch.exitCode ?? -1, ch.stderrText())) {
                this.installCache.delete(vm, ch.hash);
                throw new ChannelRestart();
              }
              if (isNoBunExit(ch.exitCode ?? -1, ch.stderrText())) throw new Fatal(new NoBunError(vm, candidates));
              if (++channelDeaths >= MAX_CHANNEL_DEATHS) {
                throw new Fatal(new ProbeError(vm, `the probe keeps exiting (${lastDeath})`.slice(0, 600), { exitCode: ch.exitCode ?? undefined, stderr: ch.stderr() || undefined }));
              }
            }
            // The connection died too (connection() reconnects, with its own backoff), or the probe ended: restart.
            throw new TransportLost(lastDeath);
          }
          if (ch.installing) {
            this.installCache.add(vm, ch.hash);
            ch.installing = false;
          }
          try {
            return await parseProbeLine(vm, text);
          } catch (err) {
            if (/not JSON/.test((err as Error).message)) ch.kill("answer was not JSON");
            throw new Fatal(err);
          }
        },
        { deadlineAt, shouldRetry: (err) => !(err instanceof Fatal) },
      );
    } catch (err) {
      if (err instanceof Fatal) throw err.error;
      if (err instanceof ChannelRestart) throw new VmUnavailableError(vm, `VM ${vm}: the probe could not be installed within ${timeoutMs} ms`);
      if (!lastDeath) throw this.conn.unavailable(err, "probe", timeoutMs);
      throw new VmUnavailableError(vm, `VM ${vm}: the probe channel was lost (${lastDeath || errorText(err)}) and could not be restarted within ${timeoutMs} ms`);
    }
  }

  private async channelFor(candidates: string[], deadlineAt: number, timeoutMs: number): Promise<ProbeChannel> {
    const existing = this.channel;
    if (existing && !existing.dead) return existing;
    const client = await this.conn.connection(deadlineAt);
    const program = loadGuestProgram("probe");
    const install = !this.installCache.has(this.conn.vm, program.hash);
    const raw = await this.conn.openExec(client, shellJoin(probeArgv(program, install, "serve", candidates)), deadlineAt, timeoutMs);
    const ch = new ProbeChannel(raw, program.hash, install);
    this.channel = ch;
    return ch;
  }
}

/** Stops the retry loop with `error`. */
class Fatal extends Error {
  constructor(readonly error: unknown) {
    super(errorText(error));
  }
}
/** The channel ended because the program was not installed: reopen (now with the text) at once. */
class ChannelRestart extends Error {}

/**
 * The probe in serve mode on one exec channel: a line written, a line read. One request at a time (the
 * service serialises). Listeners are attached once; a request only sets {@link waiter}.
 */
class ProbeChannel {
  dead = false;
  /** The death was caused by the connection dropping (retry after reconnecting). */
  connectionLost = false;
  /** The last request was abandoned because its deadline passed (the channel was killed). */
  timedOut = false;
  exitCode: number | null = null;
  private reason = "";
  private parts: Buffer[] = [];
  private partBytes = 0;
  private stderrTail = "";
  private waiter: { resolve: (line: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;

  /**
   * @param hash the probe program's content hash this channel runs
   * @param installing the channel was opened with the program text (recorded as installed on the first answer)
   */
  constructor(
    private readonly ch: ClientChannel,
    readonly hash: string,
    public installing: boolean,
  ) {
    ch.on("data", (chunk: Buffer) => this.onData(chunk));
    ch.stderr.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-2000);
    });
    ch.on("exit", (code: number | null, signal?: string) => {
      this.exitCode = typeof code === "number" ? code : null;
      if (!this.reason) this.reason = typeof code === "number" ? `exit ${code}` : `signal ${signal ?? "?"}`;
    });
    ch.on("error", (err: Error) => this.kill(errorText(err)));
    ch.on("close", (code?: number | null, signal?: string) => {
      // ssh2 repeats the exit on `close`: an `exit` emitted before these listeners existed is not lost (exec.ts).
      if (!this.reason && exitFromClose(code, signal) !== undefined) {
        this.exitCode = typeof code === "number" ? code : null;
        this.reason = typeof code === "number" ? `exit ${code}` : `signal ${signal ?? "?"}`;
      }
      this.die(this.reason || "channel closed");
    });
  }

  /** The probe's stderr so far (its last 2000 characters). */
  stderrText(): string {
    return this.stderrTail;
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
