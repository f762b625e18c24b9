/**
 * The one interface every VM driver implements. fabrik's domain code talks to VMs only through it.
 *
 * Drivers:
 * - `lima` (`lima-driver.ts`): a Lima instance, driven through `limactl` (lima-contract.md).
 * - `local` (`local-driver.ts`): a folder on this host posing as a VM (no isolation), same in-VM layout.
 * - `ssh` (`ssh-driver.ts`): an existing Linux machine reached over SSH, registered with `vm add` (never created,
 *   started or stopped by fabrik), same in-VM layout.
 */

/** The drivers fabrik has (the `--driver` values, recorded per VM in the registry). */
export const DRIVER_NAMES = ["lima", "local", "ssh"] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

/** VM status in Lima's words (lima-contract §1): Running, Stopped, Broken; Unknown when it cannot be told. */
export type VmStatus = "Running" | "Stopped" | "Broken" | "Unknown";

/** What a driver knows about one VM. Sizes in bytes. */
export interface VmInfo {
  name: string;
  driver: DriverName;
  status: VmStatus;
  /** The guest user's home directory (Lima: `.config.user.home`). */
  guestHome: string | undefined;
  guestUser: string | undefined;
  cpus: number | undefined;
  memoryBytes: number | undefined;
  diskBytes: number | undefined;
  arch: string | undefined;
  vmType: string | undefined;
  /** Host directory holding the instance. */
  dir: string | undefined;
  sshConfigFile: string | undefined;
  sshLocalPort: number | undefined;
  /** Problems reported for this VM (e.g. Broken reasons). */
  errors: string[];
}

/** Options for one command in a VM. */
export interface ExecOptions {
  /** Bytes or text fed to the command's stdin; stdin is closed (EOF) after it. Default: empty. */
  stdin?: string | Buffer | undefined;
  /** Working directory in the guest (absolute). Default: the guest home. */
  cwd?: string | undefined;
  /** Extra environment variables for the command. */
  env?: Record<string, string> | undefined;
  /**
   * Deadline in ms. On expiry the command is ended on every driver the same way (`remote-group.ts`): the host-side
   * process group is killed, and the command's process group IN the guest is killed through a second call; then
   * VmUnavailableError is thrown. The kill call may add up to 10 s to the deadline.
   */
  timeoutMs: number;
  /** Abort (Ctrl-C): ends the command like the deadline does, then throws InterruptedError. */
  signal?: AbortSignal | undefined;
  /**
   * Skip the "is it Running?" pre-check (Lima: `list --json N` before `shell`, lima-contract §0.5).
   * Only for callers that recognise a stopped VM from the error themselves (the probe), to stay at one call.
   */
  skipStatusCheck?: boolean | undefined;
  /** Cap on captured stdout and stderr, bytes each (default 64 MiB); beyond it the command is ended and RemoteError thrown. */
  maxOutputBytes?: number | undefined;
}

/** Outcome of a command in a VM: the guest's exit code is data, not an exception. */
export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** A long-running command whose stdout is streamed (e.g. `tail -F` for attach). */
export interface StreamHandle {
  /** Resolves with the exit code when the command ends (or is killed). */
  done: Promise<number>;
  /**
   * End the command: the host-side process group, and the guest process group through a second call. The guest
   * command also ends by itself when the host side dies (it watches its stdin, `STREAM_WATCHDOG`).
   */
  kill(): void;
}

export interface CreateOptions {
  name: string;
  /** Template file on the host (Lima YAML); the local driver records it only. */
  template?: string | undefined;
  cpus?: number | undefined;
  /** GiB */
  memoryGiB?: number | undefined;
  /** GiB */
  diskGiB?: number | undefined;
  timeoutMs: number;
}

/** Where to reach a VM's sshd (from Lima's `ssh.config`). */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  identityFile: string;
}

export interface VmDriver {
  readonly name: DriverName;
  /** All VMs this driver knows, with status. */
  list(opts: { timeoutMs: number }): Promise<VmInfo[]>;
  /** One VM, or undefined if it does not exist. */
  inspect(name: string, opts: { timeoutMs: number }): Promise<VmInfo | undefined>;
  create(opts: CreateOptions): Promise<void>;
  /** Start an existing VM; never creates one. Throws NotFoundError when it does not exist. */
  start(name: string, opts: { timeoutMs: number }): Promise<void>;
  stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void>;
  delete(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void>;
  /**
   * Run argv (no shell) in the VM, as its own process group there. Throws NotFoundError if missing,
   * VmUnavailableError if stopped or past the deadline, InterruptedError on abort, RemoteError past the output cap.
   */
  exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult>;
  /** Run argv and stream its stdout chunks to `onStdout` until it exits or is killed. */
  stream(name: string, argv: readonly string[], opts: Omit<ExecOptions, "timeoutMs"> & { onStdout: (chunk: Buffer) => void; onStderr?: (chunk: Buffer) => void }): Promise<StreamHandle>;
  /**
   * Copy host files/folders into the guest directory `guestDir` (created by the caller): each lands at
   * `guestDir/<basename>`, a folder merging into an existing one; symlinks are copied as symlinks. The same on every
   * driver, whatever copy tools the VM has (never rsync/scp semantics).
   */
  copyIn(name: string, hostPaths: readonly string[], guestDir: string, opts: { timeoutMs: number }): Promise<void>;
  /**
   * Copy a guest file or folder to host path `hostPath`: the copy IS `hostPath` (a folder merges into an existing
   * folder, a file replaces a file; a file onto a folder or the reverse fails). The same on every driver.
   */
  copyOut(name: string, guestPath: string, hostPath: string, opts: { timeoutMs: number }): Promise<void>;
  /** An interactive shell (or command) with the terminal attached; resolves with the guest's exit code. */
  shell(name: string, argv: readonly string[] | undefined, opts: { cwd?: string | undefined }): Promise<number>;
  /** SSH coordinates for the persistent transport, or undefined when the driver has no SSH path. */
  sshTarget(name: string): Promise<SshTarget | undefined>;
  /** Release what the driver holds open (the `ssh` driver's connections). Optional; called when a command ends. */
  close?(): void;
}
