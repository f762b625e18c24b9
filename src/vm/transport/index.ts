/**
 * The persistent SSH transport: ONE SSH connection per VM ({@link SshConnection}: connect, reconnect with
 * backoff), carrying ONE long-lived channel to the guest probe in serve mode ({@link SshProbeService}), plus
 * channels of their own for commands and streams (exec.ts). This facade is what sessions use.
 */
import type { ExecResult, SshTarget, StreamHandle } from "../driver.js";
import { defaultGuestInstallCache, type GuestInstallCache } from "../guest-programs.js";
import type { ProbeRequest, ProbeResponse } from "../probe-schema.js";
import { SshConnection, type SshConnectionOptions } from "./connection.js";
import { execOverSsh, streamOverSsh, type SshExecOptions, type SshStreamOptions } from "./exec.js";
import { runAttached, type AttachedIo } from "./interactive.js";
import { SshProbeService } from "./probe-channel.js";

export { RECONNECT_BACKOFF, SshConnection, type PreparedConnect, type SshConnectionOptions, type SshTargetSource } from "./connection.js";
export type { AttachedIo } from "./interactive.js";
export { DEFAULT_MAX_OUTPUT_BYTES, type SshExecOptions, type SshStreamOptions } from "./exec.js";
export { EXEC_PREAMBLE, KILL_SCRIPT, STREAM_WATCHDOG } from "../remote-group.js";
export { MAX_PROBE_LINE_BYTES } from "./probe-channel.js";

/** Options of an {@link SshTransport}. */
export interface SshTransportOptions extends SshConnectionOptions {
  /** What the host believes is installed in the VM (default: the process-wide in-memory cache). */
  installCache?: GuestInstallCache | undefined;
}

/**
 * One VM's persistent SSH transport. Create it, use it for many calls, {@link close} it when done.
 * Calls may overlap: probes are serialised on the one probe channel; execs and streams get channels of
 * their own on the same connection (mind sshd's `MaxSessions`, 10 by default).
 */
export class SshTransport {
  readonly vm: string;
  private readonly conn: SshConnection;
  private readonly probes: SshProbeService;
  private readonly streams = new Set<{ close(): void }>();

  /**
   * @param vm the VM's name (for messages).
   * @param target host, port, user and identity file of the VM's sshd, used for the first connection; later
   *   connections ask `opts.targetSource` again (Lima picks a new port at every VM start).
   */
  constructor(vm: string, target: SshTarget, opts: SshTransportOptions = {}) {
    this.vm = vm;
    this.conn = new SshConnection(vm, target, opts);
    this.probes = new SshProbeService(this.conn, opts.installCache ?? defaultGuestInstallCache);
  }

  /**
   * Make sure a connection is up (connecting, with backoff, if needed) within `timeoutMs`.
   * @throws VmUnavailableError when no connection could be made in time.
   */
  async connect(opts: { timeoutMs: number }): Promise<void> {
    await this.conn.connection(Date.now() + opts.timeoutMs);
  }

  /** True while an SSH connection is up (not whether the VM is healthy). */
  get connected(): boolean {
    return this.conn.connected;
  }

  /**
   * Ask the guest probe one question over the long-lived probe channel (started on first use; the program is
   * installed in the VM on first use per content hash).
   *
   * @param req the request; sent as one JSON line.
   * @param opts.timeoutMs deadline for this request in ms, including waiting for earlier probes, reconnecting
   *   and restarting the probe channel.
   * @returns the zod-validated response (times epoch ms on the VM's clock, sizes bytes).
   * @throws VmUnavailableError when the VM cannot be reached or does not answer within the deadline;
   *   NoBunError (kind prerequisite) when the VM has no bun; ProbeError when the probe keeps exiting or answers
   *   with something that is not a valid response. The request is the host's own: its defaults are filled, it is
   *   not validated again (probe-schema.ts, probeRequestWithDefaults).
   */
  probe(req: ProbeRequest, opts: { timeoutMs: number }): Promise<ProbeResponse> {
    return this.probes.probe(req, opts);
  }

  /** Run `argv` in the VM and capture its output (see {@link execOverSsh}). */
  exec(argv: readonly string[], opts: SshExecOptions): Promise<ExecResult> {
    return execOverSsh(this.conn, argv, opts);
  }

  /** Run `argv` in the VM and stream its stdout (see {@link streamOverSsh}). */
  stream(argv: readonly string[], opts: SshStreamOptions): Promise<StreamHandle> {
    return streamOverSsh(this.conn, argv, opts, (ch) => {
      this.streams.add(ch);
      return () => this.streams.delete(ch);
    });
  }

  /** Run `argv` (or a login shell) with a terminal attached; resolves with the remote exit status (see {@link runAttached}). */
  attached(argv: readonly string[] | undefined, io: AttachedIo, opts: { cwd?: string | undefined; connectTimeoutMs: number }): Promise<number> {
    return runAttached(this.conn, argv, io, opts);
  }

  /** Close every channel and the connection. Pending calls fail; later calls throw. Idempotent. */
  close(): void {
    if (this.conn.closed) return;
    this.probes.close("transport closed");
    for (const ch of this.streams) ch.close();
    this.streams.clear();
    this.conn.close();
  }
}
