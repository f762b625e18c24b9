/**
 * The `lima` driver: every call goes through the real `limactl`, exactly as lima-contract.md says.
 *
 * - `list --json` is JSON Lines (one object per instance), validated with zod. `errors` come in two shapes:
 *   strings, or Go error structs (`{}` / `{"Op":…,"Path":…,"Err":2}`) — see `lima-schema.ts` (limaErrorTexts).
 * - Every `shell` passes `--tty=false` and `--workdir`, flags before the instance name, argv quoted by
 *   limactl itself (it shell-quotes each argument, §2); the guest's exit code is passed through.
 * - The VM's status is checked with `list --json N` before `shell` (v2.0.3–2.0.x silently exit 0 for a
 *   stopped VM, §0.5), unless the caller recognises a stopped VM itself (`skipStatusCheck`).
 * - `start` checks that the VM exists first: `limactl start NAME` CREATES a missing NAME from template:default
 *   (lima `cmd/limactl/start.go:316-322`).
 * - Every command runs as a process group in the guest that announces its pid; on deadline or abort the host
 *   side (limactl and its ssh) is killed AND the guest group is killed through a second `limactl shell`
 *   (`remote-group.ts`): killing `limactl shell` alone leaves the guest command running (lima-contract §10).
 * - At most {@link MAX_SHELLS_PER_VM} `limactl shell` calls per VM run at once in this process: they all share
 *   one ControlMaster connection, and sshd allows 10 sessions per connection.
 * - Copies stream a tar through `limactl shell` (never `limactl copy`, whose result depends on whether rsync is
 *   installed on both sides, lima `pkg/copytool/copytool.go:70-90`).
 * - Names are checked against the host's socket-path limit before `create` ({@link limaSocketPathProblem}).
 * - limactl's logrus stderr (`level=fatal msg="…"`) becomes a readable one-line error.
 *
 * Minimum Lima: {@link MIN_LIMA_VERSION}, checked once per limactl binary with `limactl --version`
 * (cached under FABRIK_HOME keyed by the binary's path, size and mtime).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { NotFoundError, PrerequisiteError, RemoteError, UsageError, VmUnavailableError, InterruptedError } from "../core/errors.js";
import type { CreateOptions, ExecOptions, ExecResult, SshTarget, StreamHandle, VmDriver, VmInfo } from "./driver.js";
import type { LimaInstance } from "./lima-schema.js";
import { limaSocketPathProblem } from "./names.js";
import { runProcess, streamProcess, type ProcessInput, type ProcessResult } from "./process.js";
import { RemotePidReader, killArgv, streamWithPidPreamble, withPidPreamble } from "./remote-group.js";
import { compareVersions } from "./versions.js";

export { compareVersions };

/**
 * Lima 2.1.0: `shell` errors again on stopped VMs, `--tty=false`, JSON Lines list with `hostname` and no
 * `cpuType`, exit-code pass-through (lima-contract §7 recommends ≥ 2.1.0).
 */
export const MIN_LIMA_VERSION = "2.1.0";

/**
 * At most this many `limactl shell` calls (execs, streams, copies) per VM at once, in one fabrik process. Lima runs
 * every `limactl shell` over the instance's ONE ControlMaster connection (`ssh.sock`), and Debian's sshd allows 10
 * sessions per connection (`MaxSessions`); the master is opened before provisioning, so raising the limit in a
 * template does not reach it (lima-contract §10). 8 leaves room for the kill call and a user's own `limactl shell`.
 * A remote command keeps its session until it exits, which is one more reason to kill timed-out ones.
 */
export const MAX_SHELLS_PER_VM = 8;

/** Deadline of the second call that kills a timed-out or aborted guest command, ms. */
const REMOTE_KILL_TIMEOUT_MS = 10_000;

/**
 * The `errors` field of each `instance \`N\` has errors` warning limactl printed on stderr (logrus text format), by
 * instance name. Values are Go's `fmt.Sprint` of the error slice, `[e1 e2]`, without the brackets.
 */
export function parseListErrorWarnings(stderr: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stderr.split("\n")) {
    const m = /level=warning msg="instance [`\\"]+([^`"\\]+)[`\\"]+ has errors"/.exec(line);
    if (!m) continue;
    const f = /\berrors="((?:[^"\\]|\\.)*)"/.exec(line) ?? /\berrors=(\S+)/.exec(line);
    if (!f) continue;
    const text = f[1]!.replace(/\\(.)/g, "$1").replace(/^\[(.*)\]$/s, "$1").trim();
    if (text) out.set(m[1]!, text);
  }
  return out;
}

/** The `msg` of limactl's last logrus line at `level` (or any level), unescaped; undefined if none. */
export function parseLogrusMessage(stderr: string, level?: "fatal" | "error" | "warning" | "info"): string | undefined {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    const m = /level=(\w+)\s+msg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (m && (level === undefined || m[1] === level)) return m[2]!.replace(/\\(.)/g, "$1");
    const j = /^\{.*"level":"(\w+)".*\}$/.exec(line.trim());
    if (j) {
      try {
        const obj = JSON.parse(line) as { level?: string; msg?: string };
        if (level === undefined || obj.level === level) return obj.msg;
      } catch {
        /* not JSON */
      }
    }
    const tty = /^(FATA|ERRO|WARN|INFO)\[\d+\]\s+(.*)$/.exec(line);
    if (tty) {
      const lv = { FATA: "fatal", ERRO: "error", WARN: "warning", INFO: "info" }[tty[1] as "FATA"];
      if (level === undefined || lv === level) return tty[2];
    }
  }
  return undefined;
}

/** Parse `limactl version 2.2.0` → `2.2.0`; undefined for anything else. */
export function parseLimaVersion(stdout: string): string | undefined {
  const m = /limactl version v?(\d+\.\d+\.\d+[^\s]*)/.exec(stdout);
  return m?.[1];
}

/** Find an executable on PATH (or accept a path). */
function which(cmd: string, env: NodeJS.ProcessEnv): string | undefined {
  if (cmd.includes("/")) return fs.existsSync(cmd) ? path.resolve(cmd) : undefined;
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, cmd);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export interface LimaDriverOptions {
  /** limactl command or path (config `lima.limactl`, env FABRIK_LIMACTL). */
  limactl: string;
  /** Folder for the version-check cache (FABRIK_HOME/cache). */
  cacheDir: string;
  env?: NodeJS.ProcessEnv;
  /** The host OS whose socket-path limit applies (default `process.platform`). */
  platform?: NodeJS.Platform | undefined;
}

/**
 * A counting semaphore for the `limactl shell` sessions of one VM ({@link MAX_SHELLS_PER_VM}). Waiters are served
 * in order; a waiter gives up at its deadline or on abort.
 */
class SessionSlots {
  private active = 0;
  private readonly waiting: { grant: () => void }[] = [];

  constructor(private readonly max: number) {}

  /** In use right now (for tests and messages). */
  get inUse(): number {
    return this.active;
  }

  /**
   * Wait for a free session. Returns the function that frees it (call it exactly once).
   * @throws VmUnavailableError when none frees up within `timeoutMs`; InterruptedError on abort.
   */
  async acquire(vm: string, timeoutMs: number, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw new InterruptedError();
    if (this.active < this.max) {
      this.active++;
      return this.releaser();
    }
    return await new Promise<() => void>((resolve, reject) => {
      const entry = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          this.active++;
          resolve(this.releaser());
        },
      };
      const leave = (err: Error) => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        signal?.removeEventListener("abort", onAbort);
        reject(err);
      };
      const onAbort = () => {
        clearTimeout(timer);
        leave(new InterruptedError());
      };
      const timer = setTimeout(
        () => leave(new VmUnavailableError(vm, `VM ${vm}: all ${this.max} shell sessions stayed busy for ${timeoutMs} ms`, "too many commands at once in this VM; try again")),
        Math.max(1, timeoutMs),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
      this.waiting.shift()?.grant();
    };
  }
}

/** Session slots per VM, shared by every LimaDriver of this process (keyed by LIMA_HOME and name). */
const sessionSlots = new Map<string, SessionSlots>();

/** What one `limactl shell` call in {@link LimaDriver} returns: the process result, stderr without the pid line. */
interface ShellOutcome {
  r: ProcessResult;
  stderr: string;
  /** The guest pid of the command (its process group), once announced. */
  remotePid: number | undefined;
}

export class LimaDriver implements VmDriver {
  readonly name = "lima" as const;
  private readonly limactl: string;
  private readonly cacheDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly platform: NodeJS.Platform;
  private checked: Promise<string> | undefined;
  private readonly homes = new Map<string, string>();

  constructor(opts: LimaDriverOptions) {
    this.limactl = opts.limactl;
    this.cacheDir = opts.cacheDir;
    this.env = opts.env ?? process.env;
    this.platform = opts.platform ?? process.platform;
  }

  /**
   * Resolve limactl and check its version (≥ {@link MIN_LIMA_VERSION}); cached per binary.
   * Throws {@link PrerequisiteError} when missing or too old.
   */
  ensureLimactl(): Promise<string> {
    this.checked ??= this.checkLimactl();
    return this.checked;
  }

  private async checkLimactl(): Promise<string> {
    const bin = which(this.limactl, this.env);
    if (!bin) {
      throw new PrerequisiteError(
        `limactl not found on PATH (looked for ${JSON.stringify(this.limactl)})`,
        `install Lima >= ${MIN_LIMA_VERSION} (https://lima-vm.io), set FABRIK_LIMACTL, or use --driver local`,
      );
    }
    const st = fs.statSync(bin);
    const key = `${bin}:${st.size}:${st.mtimeMs}`;
    const cacheFile = path.join(this.cacheDir, "limactl-version.json");
    let version: string | undefined;
    try {
      const cached = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as { key?: string; version?: string };
      if (cached.key === key && typeof cached.version === "string") version = cached.version;
    } catch {
      /* no cache */
    }
    if (!version) {
      const r = await runProcess(bin, ["--version"], { timeoutMs: 10_000, env: this.env, extendEnv: false });
      version = parseLimaVersion(r.stdout);
      if (!version) {
        throw new PrerequisiteError(`cannot tell the version of ${bin}: ${JSON.stringify((r.stdout + r.stderr).trim().slice(0, 200))}`, `install Lima >= ${MIN_LIMA_VERSION}`);
      }
      if (compareVersions(version, MIN_LIMA_VERSION) >= 0) {
        try {
          fs.mkdirSync(this.cacheDir, { recursive: true });
          fs.writeFileSync(cacheFile, JSON.stringify({ key, version }));
        } catch {
          /* cache is best effort */
        }
      }
    }
    if (compareVersions(version, MIN_LIMA_VERSION) < 0) {
      throw new PrerequisiteError(`Lima ${version} is too old: fabrik needs limactl >= ${MIN_LIMA_VERSION}`, "upgrade Lima (https://lima-vm.io/docs/installation/)");
    }
    return bin;
  }

  /**
   * LIMA_HOME as Lima computes it: `$LIMA_HOME`, else `~/.lima`, symlinks resolved when it exists
   * (lima `pkg/limatype/dirnames/dirnames.go:25-42`).
   */
  limaHome(): string {
    const dir = path.resolve(this.env.LIMA_HOME || path.join(this.env.HOME || os.homedir(), ".lima"));
    try {
      return fs.realpathSync(dir);
    } catch {
      return dir;
    }
  }

  private slots(name: string): SessionSlots {
    const key = `${this.limaHome()}\0${name}`;
    let s = sessionSlots.get(key);
    if (!s) {
      s = new SessionSlots(MAX_SHELLS_PER_VM);
      sessionSlots.set(key, s);
    }
    return s;
  }

  /** `limactl shell` sessions of VM `name` this process has open right now (≤ {@link MAX_SHELLS_PER_VM}). */
  shellsInUse(name: string): number {
    return sessionSlots.get(`${this.limaHome()}\0${name}`)?.inUse ?? 0;
  }

  private async limactlRun(args: string[], opts: { timeoutMs: number; stdin?: string | Buffer | undefined; signal?: AbortSignal | undefined; vm?: string }): Promise<ProcessResult> {
    const bin = await this.ensureLimactl();
    const r = await runProcess(bin, args, { timeoutMs: opts.timeoutMs, stdin: opts.stdin, signal: opts.signal, env: this.env, extendEnv: false });
    this.checkRan(bin, args, r, opts);
    return r;
  }

  /** Throw for a limactl that did not run to completion (not started, aborted, past its deadline). */
  private checkRan(bin: string, args: readonly string[], r: ProcessResult, opts: { timeoutMs: number; vm?: string | undefined }): void {
    if (r.spawnError) throw new PrerequisiteError(`cannot run ${bin}: ${r.spawnError.message}`, "check the Lima installation");
    if (r.aborted) throw new InterruptedError();
    if (r.timedOut) {
      throw new VmUnavailableError(opts.vm ?? "lima", `${opts.vm ? `VM ${opts.vm}: ` : ""}limactl ${args.filter((a) => !a.startsWith("--tty")).slice(0, 2).join(" ")} did not finish within ${opts.timeoutMs} ms`, "the VM may be hung; try again or `fabrik vm stop` it");
    }
  }

  /** Turn a limactl-level failure (exit 1 + logrus fatal) into a typed error; undefined if it was not one. */
  private limaFailure(vm: string, what: string, r: { exitCode: number; stderr: string }): Error | undefined {
    if (r.exitCode !== 1) return undefined;
    const msg = parseLogrusMessage(r.stderr, "fatal");
    if (msg === undefined) return undefined;
    if (/does not exist|no such file or directory/.test(msg)) {
      return new NotFoundError(`VM ${vm} does not exist (limactl: ${msg})`, "see `fabrik vm list`, or create it with `fabrik vm create`");
    }
    if (/is stopped|expected status .Running., got .Stopped./.test(msg)) {
      return new VmUnavailableError(vm, `VM ${vm} is stopped`, `start it with \`fabrik vm start ${vm}\``);
    }
    return new RemoteError(vm, what, msg, r.exitCode);
  }

  async list(opts: { timeoutMs: number }): Promise<VmInfo[]> {
    const r = await this.limactlRun(["list", "--json"], opts);
    if (r.exitCode !== 0) throw new RemoteError("lima", "limactl list", parseLogrusMessage(r.stderr) ?? r.stderr.trim(), r.exitCode);
    return this.parseAndRemember(r.stdout, r.stderr);
  }

  private async parseAndRemember(stdout: string, stderr: string): Promise<VmInfo[]> {
    const { parseLimaList, toVmInfo } = await import("./lima-schema.js");
    let instances: LimaInstance[];
    try {
      instances = parseLimaList(stdout);
    } catch (err) {
      throw new RemoteError("lima", "limactl list --json", `unexpected output: ${(err as Error).message}`);
    }
    const warnings = parseListErrorWarnings(stderr);
    const infos = instances.map((i) => toVmInfo(i, warnings));
    for (const i of infos) if (i.guestHome) this.homes.set(i.name, i.guestHome);
    return infos;
  }

  async inspect(name: string, opts: { timeoutMs: number }): Promise<VmInfo | undefined> {
    const r = await this.limactlRun(["list", "--json", name], { ...opts, vm: name });
    if (r.exitCode !== 0) {
      const msg = parseLogrusMessage(r.stderr) ?? "";
      if (/unmatched instances|No instance matching/.test(r.stderr + msg)) return undefined;
      throw new RemoteError(name, "limactl list", msg || r.stderr.trim(), r.exitCode);
    }
    return (await this.parseAndRemember(r.stdout, r.stderr)).find((i) => i.name === name);
  }

  /**
   * Lima's own LIMA_HOME (symlinks resolved) and host OS, from `limactl info` (`limaHome`, `hostOS`; lima-contract
   * §3), or this process's view of them when `limactl info` cannot say.
   */
  private async hostFacts(timeoutMs: number): Promise<{ limaHome: string; hostOS: NodeJS.Platform }> {
    const fallback = { limaHome: this.limaHome(), hostOS: this.platform };
    try {
      const r = await this.limactlRun(["info"], { timeoutMs });
      if (r.exitCode !== 0) return fallback;
      const { LimaInfoSchema } = await import("./lima-schema.js");
      const info = LimaInfoSchema.parse(JSON.parse(r.stdout));
      return { limaHome: info.limaHome ?? fallback.limaHome, hostOS: (info.hostOS as NodeJS.Platform | undefined) ?? fallback.hostOS };
    } catch (err) {
      if (err instanceof PrerequisiteError || err instanceof InterruptedError) throw err;
      return fallback;
    }
  }

  /**
   * @throws UsageError when the name would make Lima's socket paths too long on this host: checked before limactl
   *   creates anything, with Lima's real LIMA_HOME and host OS (macOS 104 bytes, Linux 108; lima
   *   `pkg/instance/create.go:38-43`).
   */
  async create(opts: CreateOptions): Promise<void> {
    const host = await this.hostFacts(Math.min(opts.timeoutMs, 30_000));
    const tooLong = limaSocketPathProblem(opts.name, host.limaHome, host.hostOS);
    if (tooLong) throw new UsageError(`VM name ${JSON.stringify(opts.name)} is too long for Lima here: ${tooLong}`, "pick a shorter name (or a shorter LIMA_HOME)");
    const args = ["--tty=false", "create", "--name", opts.name];
    if (opts.cpus !== undefined) args.push("--cpus", String(opts.cpus));
    if (opts.memoryGiB !== undefined) args.push("--memory", String(opts.memoryGiB));
    if (opts.diskGiB !== undefined) args.push("--disk", String(opts.diskGiB));
    if (!opts.template) throw new Error("lima driver: create needs a template");
    args.push(opts.template);
    const r = await this.limactlRun(args, { timeoutMs: opts.timeoutMs, vm: opts.name });
    if (r.exitCode !== 0) throw new RemoteError(opts.name, "limactl create", parseLogrusMessage(r.stderr, "fatal") ?? r.stderr.trim(), r.exitCode);
  }

  /**
   * Start an existing VM. Never creates one: `limactl start NAME` for a missing NAME creates it from
   * template:default (lima `cmd/limactl/start.go:316-322`), so existence is checked first.
   * @throws NotFoundError when the VM does not exist.
   */
  async start(name: string, opts: { timeoutMs: number }): Promise<void> {
    const info = await this.inspect(name, { timeoutMs: Math.min(opts.timeoutMs, 30_000) });
    if (!info) throw new NotFoundError(`VM ${name} does not exist`, "see `fabrik vm list`, or create it with `fabrik vm create`");
    const seconds = Math.max(1, Math.floor(opts.timeoutMs / 1000));
    const r = await this.limactlRun(["--tty=false", "start", "--timeout", `${seconds}s`, name], { timeoutMs: opts.timeoutMs + 10_000, vm: name });
    if (r.exitCode !== 0) throw this.limaFailure(name, "limactl start", r) ?? new RemoteError(name, "limactl start", parseLogrusMessage(r.stderr) ?? r.stderr.trim(), r.exitCode);
  }

  async stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    const args = ["--tty=false", "stop", ...(opts.force ? ["-f"] : []), name];
    const r = await this.limactlRun(args, { timeoutMs: opts.timeoutMs, vm: name });
    if (r.exitCode !== 0) {
      const msg = parseLogrusMessage(r.stderr, "fatal") ?? r.stderr.trim();
      if (/no such file or directory|does not exist/.test(msg)) throw new NotFoundError(`VM ${name} does not exist`, "see `fabrik vm list`");
      if (/got .Stopped./.test(msg)) throw new VmUnavailableError(name, `VM ${name} is already stopped`);
      throw new RemoteError(name, "limactl stop", msg, r.exitCode);
    }
  }

  async delete(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    const args = ["--tty=false", "delete", ...(opts.force ? ["-f"] : []), name];
    const r = await this.limactlRun(args, { timeoutMs: opts.timeoutMs, vm: name });
    if (r.exitCode !== 0) throw new RemoteError(name, "limactl delete", parseLogrusMessage(r.stderr, "fatal") ?? r.stderr.trim(), r.exitCode);
    this.homes.delete(name);
  }

  private async preflight(name: string, opts: { skipStatusCheck?: boolean | undefined; timeoutMs: number }): Promise<void> {
    if (opts.skipStatusCheck) return;
    const info = await this.inspect(name, { timeoutMs: opts.timeoutMs });
    if (!info) throw new NotFoundError(`VM ${name} does not exist`, "see `fabrik vm list`, or create it with `fabrik vm create`");
    if (info.status !== "Running") {
      throw new VmUnavailableError(name, `VM ${name} is ${info.status}`, info.status === "Stopped" ? `start it with \`fabrik vm start ${name}\`` : "see `limactl list` and the instance's ha.stderr.log");
    }
  }

  /** `limactl --tty=false shell --workdir W NAME CMD…`; `env` travels as `env K=V…` in front of the command. */
  private shellArgs(name: string, argv: readonly string[], opts: { cwd?: string | undefined; env?: Record<string, string> | undefined }): string[] {
    const workdir = opts.cwd ?? this.homes.get(name) ?? "/";
    const env = Object.entries(opts.env ?? {});
    const command = env.length > 0 ? ["env", "--", ...env.map(([k, v]) => `${k}=${v}`), ...argv] : [...argv];
    return ["--tty=false", "shell", "--workdir", workdir, name, ...command];
  }

  /**
   * Kill guest pid `pid` and its process group through a second `limactl shell` (remote-group.ts). It does not wait
   * for a session slot: it is what frees one. Best effort, never throws.
   */
  private async killRemote(name: string, pid: number): Promise<void> {
    try {
      const bin = await this.ensureLimactl();
      await runProcess(bin, ["--tty=false", "shell", "--workdir", "/", name, ...killArgv(pid)], { timeoutMs: REMOTE_KILL_TIMEOUT_MS, env: this.env, extendEnv: false });
    } catch {
      /* best effort */
    }
  }

  /**
   * One `limactl shell` running `argv` as a guest process group that announces its pid, in a session slot. On
   * deadline, abort or output cap the host side is killed, then the guest group through a second call, and the
   * matching error is thrown.
   */
  private async shellRun(
    name: string,
    argv: readonly string[],
    opts: {
      cwd?: string | undefined;
      env?: Record<string, string> | undefined;
      stdin?: ProcessInput | undefined;
      timeoutMs: number;
      signal?: AbortSignal | undefined;
      maxOutputBytes?: number | undefined;
      onStdout?: ((chunk: Buffer) => void) | undefined;
      started: number;
    },
  ): Promise<ShellOutcome> {
    const bin = await this.ensureLimactl();
    const release = await this.slots(name).acquire(name, Math.max(1, opts.timeoutMs - (Date.now() - opts.started)), opts.signal);
    try {
      const remaining = Math.max(1, opts.timeoutMs - (Date.now() - opts.started));
      const pidLine = new RemotePidReader();
      const stderr: Buffer[] = [];
      const args = this.shellArgs(name, withPidPreamble(argv), opts);
      const r = await runProcess(bin, args, {
        timeoutMs: remaining,
        stdin: opts.stdin,
        signal: opts.signal,
        env: this.env,
        extendEnv: false,
        maxOutputBytes: opts.maxOutputBytes,
        onStdout: opts.onStdout,
        onStderr: (c) => stderr.push(pidLine.feed(c)),
      });
      stderr.push(pidLine.flush());
      const what = argv[0] ?? "shell";
      if ((r.timedOut || r.aborted || r.outputCapped) && pidLine.pid !== undefined) await this.killRemote(name, pidLine.pid);
      if (r.outputCapped) throw new RemoteError(name, what, `output larger than ${opts.maxOutputBytes ?? "the cap of"} bytes`);
      if (r.timedOut) {
        throw new VmUnavailableError(name, `VM ${name}: ${what} did not finish within ${opts.timeoutMs} ms`, "the VM may be hung; try again or `fabrik vm stop` it");
      }
      this.checkRan(bin, args, r, { timeoutMs: remaining, vm: name });
      return { r, stderr: Buffer.concat(stderr).toString("utf8"), remotePid: pidLine.pid };
    } finally {
      release();
    }
  }

  async exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    if (argv.length === 0) throw new Error("exec: empty argv");
    const started = Date.now();
    await this.preflight(name, opts);
    const { r, stderr } = await this.shellRun(name, argv, { ...opts, started });
    const failure = this.limaFailure(name, argv[0]!, { exitCode: r.exitCode, stderr });
    if (failure) throw failure;
    return { exitCode: r.exitCode, stdout: r.stdout, stderr, durationMs: Date.now() - started };
  }

  /**
   * Stream `argv`'s stdout. The guest command runs under the stream watchdog (it ends when this side's stdin pipe
   * closes, e.g. when fabrik dies) and as a process group killed through a second call on `kill()` or abort.
   */
  async stream(
    name: string,
    argv: readonly string[],
    opts: Omit<ExecOptions, "timeoutMs"> & { onStdout: (chunk: Buffer) => void; onStderr?: (chunk: Buffer) => void },
  ): Promise<StreamHandle> {
    if (argv.length === 0) throw new Error("stream: empty argv");
    await this.preflight(name, { skipStatusCheck: opts.skipStatusCheck, timeoutMs: 10_000 });
    const bin = await this.ensureLimactl();
    const release = await this.slots(name).acquire(name, 30_000, opts.signal);
    const pidLine = new RemotePidReader();
    let killed = false;
    const p = streamProcess(bin, this.shellArgs(name, streamWithPidPreamble(argv), opts), {
      env: this.env,
      extendEnv: false,
      stdin: opts.stdin,
      keepStdinOpen: true,
      onStdout: opts.onStdout,
      onStderr: (c) => {
        const rest = pidLine.feed(c);
        if (rest.length > 0) opts.onStderr?.(rest);
      },
    });
    const kill = () => {
      if (killed) return;
      killed = true;
      p.kill();
      if (pidLine.pid !== undefined) void this.killRemote(name, pidLine.pid);
    };
    const unlisten = opts.signal ? (opts.signal.addEventListener("abort", kill, { once: true }), () => opts.signal!.removeEventListener("abort", kill)) : () => undefined;
    const done = p.done.finally(() => {
      unlisten();
      release();
      const rest = pidLine.flush();
      if (rest.length > 0) opts.onStderr?.(rest);
    });
    return { done, kill };
  }

  /**
   * Copy host files/folders into guest folder `guestDir`: each lands at `guestDir/<basename>`, a folder merging
   * into an existing one. A tar streamed through `limactl shell` (symlinks stay symlinks), not `limactl copy`,
   * whose result depends on rsync being installed on both sides (lima `pkg/copytool/copytool.go:70-90`,
   * `pkg/copytool/rsync.go:155-166`).
   */
  async copyIn(name: string, hostPaths: readonly string[], guestDir: string, opts: { timeoutMs: number }): Promise<void> {
    const started = Date.now();
    await this.preflight(name, opts);
    const tar = await import("tar");
    for (const p of hostPaths) {
      const abs = path.resolve(p);
      if (!fs.existsSync(abs)) throw new RemoteError(name, "copy", `${p}: no such file or directory`);
      const archive = tar.c({ cwd: path.dirname(abs), portable: true }, [path.basename(abs)]) as unknown as AsyncIterable<Uint8Array>;
      const { r, stderr } = await this.shellRun(name, ["tar", "-x", "-o", "-f", "-", "-C", guestDir], { stdin: archive, timeoutMs: opts.timeoutMs, started });
      const failure = this.limaFailure(name, "copy", { exitCode: r.exitCode, stderr });
      if (failure) throw failure;
      if (r.exitCode !== 0) throw new RemoteError(name, "copy", stderr.trim() || `tar exited ${r.exitCode}`, r.exitCode);
    }
  }

  /**
   * Copy guest file or folder `guestPath` to host path `hostPath`: the copy IS `hostPath` (a folder merges into an
   * existing folder, a file replaces an existing file; a file onto a folder or the reverse fails), as the local
   * driver does. A tar streamed through `limactl shell`, not `limactl copy` (see {@link copyIn}).
   */
  async copyOut(name: string, guestPath: string, hostPath: string, opts: { timeoutMs: number }): Promise<void> {
    const started = Date.now();
    await this.preflight(name, opts);
    const base = path.posix.basename(guestPath.replace(/\/+$/, "")) || "/";
    const parent = path.posix.dirname(guestPath.replace(/\/+$/, "")) || "/";
    const dest = path.resolve(hostPath);
    const staging = fs.mkdtempSync(path.join(path.dirname(dest), ".fabrik-copy-"));
    try {
      // The archive goes to a file as it arrives (no size limit in memory), then is unpacked beside the target.
      const archive = path.join(staging, "archive.tar");
      const fd = fs.openSync(archive, "w", 0o600);
      let outcome: ShellOutcome;
      try {
        outcome = await this.shellRun(name, ["tar", "-c", "-f", "-", "-C", parent, "--", base], {
          timeoutMs: opts.timeoutMs,
          started,
          maxOutputBytes: Number.MAX_SAFE_INTEGER,
          onStdout: (c) => fs.writeSync(fd, c),
        });
      } finally {
        fs.closeSync(fd);
      }
      const { r, stderr } = outcome;
      const failure = this.limaFailure(name, "copy", { exitCode: r.exitCode, stderr });
      if (failure) throw failure;
      if (r.exitCode !== 0) throw new RemoteError(name, "copy", stderr.trim() || `tar exited ${r.exitCode}`, r.exitCode);
      const tar = await import("tar");
      fs.mkdirSync(path.join(staging, "x"));
      try {
        await tar.x({ file: archive, cwd: path.join(staging, "x") });
        fs.cpSync(path.join(staging, "x", base), dest, { recursive: true, verbatimSymlinks: true });
      } catch (err) {
        throw new RemoteError(name, "copy", `${guestPath} → ${hostPath}: ${(err as Error).message}`);
      }
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  async shell(name: string, argv: readonly string[] | undefined, opts: { cwd?: string | undefined }): Promise<number> {
    await this.preflight(name, { timeoutMs: 30_000 });
    const bin = await this.ensureLimactl();
    const args = ["shell", "--workdir", opts.cwd ?? this.homes.get(name) ?? "/", name, ...(argv ?? [])];
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(bin, args, { stdio: "inherit", env: this.env });
      child.on("error", reject);
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
    });
  }

  async sshTarget(name: string): Promise<SshTarget | undefined> {
    const info = await this.inspect(name, { timeoutMs: 10_000 });
    if (!info?.sshConfigFile || info.status !== "Running") return undefined;
    let text: string;
    try {
      text = fs.readFileSync(info.sshConfigFile, "utf8");
    } catch {
      return undefined;
    }
    return parseSshConfig(text);
  }
}

/** Read host, port, user and identity from a Lima `ssh.config` (lima-contract §3); undefined if incomplete. */
export function parseSshConfig(text: string): SshTarget | undefined {
  const get = (key: string) => {
    const m = new RegExp(`^\\s*${key}\\s+(.+?)\\s*$`, "mi").exec(text);
    return m ? m[1]!.replace(/^"(.*)"$/, "$1") : undefined;
  };
  const host = get("Hostname");
  const port = Number(get("Port"));
  const user = get("User");
  const identityFile = get("IdentityFile");
  if (!host || !Number.isInteger(port) || port <= 0 || !user || !identityFile) return undefined;
  return { host, port, user, identityFile };
}
