/**
 * The `lima` driver: every call goes through the real `limactl`, exactly as lima-contract.md says.
 *
 * - `list --json` is JSON Lines (one object per instance), validated with zod.
 * - Every `shell` passes `--tty=false` and `--workdir`, flags before the instance name, argv quoted by
 *   limactl itself (it shell-quotes each argument, §2); the guest's exit code is passed through.
 * - The VM's status is checked with `list --json N` before `shell` (v2.0.3–2.0.x silently exit 0 for a
 *   stopped VM, §0.5), unless the caller recognises a stopped VM itself (`skipStatusCheck`).
 * - limactl's logrus stderr (`level=fatal msg="…"`) becomes a readable one-line error.
 * - On deadline the whole process group (limactl and its ssh child) is killed (§0.8).
 *
 * Minimum Lima: {@link MIN_LIMA_VERSION}, checked once per limactl binary with `limactl --version`
 * (cached under FABRIK_HOME keyed by the binary's path, size and mtime).
 */
import fs from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import { z } from "zod";
import { NotFoundError, PrerequisiteError, RemoteError, VmUnavailableError, InterruptedError } from "../core/errors.js";
import type { CreateOptions, ExecOptions, ExecResult, SshTarget, StreamHandle, VmDriver, VmInfo, VmStatus } from "./driver.js";
import { runProcess, streamProcess, type ProcessResult } from "./process.js";
import { compareVersions } from "./versions.js";

export { compareVersions };

/**
 * Lima 2.1.0: `shell` errors again on stopped VMs, `--tty=false`, JSON Lines list with `hostname` and no
 * `cpuType`, exit-code pass-through (lima-contract §7 recommends ≥ 2.1.0).
 */
export const MIN_LIMA_VERSION = "2.1.0";

/** One line of `limactl list --json` (lima-contract §1). Unknown keys are kept. */
export const LimaInstanceSchema = z
  .object({
    name: z.string(),
    status: z.string().optional().default(""),
    dir: z.string().optional(),
    vmType: z.string().optional(),
    arch: z.string().optional(),
    cpus: z.number().optional(),
    memory: z.number().optional(),
    disk: z.number().optional(),
    sshLocalPort: z.number().optional(),
    sshConfigFile: z.string().optional(),
    errors: z.unknown().optional(),
    config: z
      .object({
        user: z.object({ name: z.string().optional(), home: z.string().optional() }).passthrough().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
export type LimaInstance = z.infer<typeof LimaInstanceSchema>;

/** Parse `limactl list --json` output (JSON Lines; blank output = no instances). Throws on garbage. */
export function parseLimaList(stdout: string): LimaInstance[] {
  const out: LimaInstance[] = [];
  for (const line of stdout.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "") continue;
    out.push(LimaInstanceSchema.parse(JSON.parse(trimmed)));
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

function statusOf(s: string): VmStatus {
  return s === "Running" || s === "Stopped" || s === "Broken" ? s : "Unknown";
}

function toVmInfo(i: LimaInstance): VmInfo {
  const errors: string[] = [];
  if (Array.isArray(i.errors)) for (const e of i.errors) errors.push(typeof e === "string" ? e : JSON.stringify(e));
  return {
    name: i.name,
    driver: "lima",
    status: statusOf(i.status),
    guestHome: i.config?.user?.home,
    guestUser: i.config?.user?.name,
    cpus: i.cpus,
    memoryBytes: i.memory,
    diskBytes: i.disk,
    arch: i.arch,
    vmType: i.vmType,
    dir: i.dir,
    sshConfigFile: i.sshConfigFile,
    sshLocalPort: i.sshLocalPort,
    errors,
  };
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
}

export class LimaDriver implements VmDriver {
  readonly name = "lima" as const;
  private readonly limactl: string;
  private readonly cacheDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private checked: Promise<string> | undefined;
  private readonly homes = new Map<string, string>();

  constructor(opts: LimaDriverOptions) {
    this.limactl = opts.limactl;
    this.cacheDir = opts.cacheDir;
    this.env = opts.env ?? process.env;
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

  private async limactlRun(args: string[], opts: { timeoutMs: number; stdin?: string | Buffer | undefined; signal?: AbortSignal | undefined; vm?: string }): Promise<ProcessResult> {
    const bin = await this.ensureLimactl();
    const r = await runProcess(bin, args, { timeoutMs: opts.timeoutMs, stdin: opts.stdin, signal: opts.signal, env: this.env, extendEnv: false });
    if (r.spawnError) throw new PrerequisiteError(`cannot run ${bin}: ${r.spawnError.message}`, "check the Lima installation");
    if (r.aborted) throw new InterruptedError();
    if (r.timedOut) {
      throw new VmUnavailableError(opts.vm ?? "lima", `${opts.vm ? `VM ${opts.vm}: ` : ""}limactl ${args.filter((a) => !a.startsWith("--tty")).slice(0, 2).join(" ")} did not finish within ${opts.timeoutMs} ms`, "the VM may be hung; try again or `fabrik vm stop` it");
    }
    return r;
  }

  /** Turn a limactl-level failure (exit 1 + logrus fatal) into a typed error; undefined if it was not one. */
  private limaFailure(vm: string, what: string, r: ProcessResult): Error | undefined {
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
    return this.parseAndRemember(r.stdout);
  }

  private parseAndRemember(stdout: string): VmInfo[] {
    let instances: LimaInstance[];
    try {
      instances = parseLimaList(stdout);
    } catch (err) {
      throw new RemoteError("lima", "limactl list --json", `unexpected output: ${(err as Error).message}`);
    }
    const infos = instances.map(toVmInfo);
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
    return this.parseAndRemember(r.stdout).find((i) => i.name === name);
  }

  async create(opts: CreateOptions): Promise<void> {
    const args = ["--tty=false", "create", "--name", opts.name];
    if (opts.cpus !== undefined) args.push("--cpus", String(opts.cpus));
    if (opts.memoryGiB !== undefined) args.push("--memory", String(opts.memoryGiB));
    if (opts.diskGiB !== undefined) args.push("--disk", String(opts.diskGiB));
    if (!opts.template) throw new Error("lima driver: create needs a template");
    args.push(opts.template);
    const r = await this.limactlRun(args, { timeoutMs: opts.timeoutMs, vm: opts.name });
    if (r.exitCode !== 0) throw new RemoteError(opts.name, "limactl create", parseLogrusMessage(r.stderr, "fatal") ?? r.stderr.trim(), r.exitCode);
  }

  async start(name: string, opts: { timeoutMs: number }): Promise<void> {
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

  private shellArgs(name: string, argv: readonly string[], opts: { cwd?: string | undefined; env?: Record<string, string> | undefined }): string[] {
    const workdir = opts.cwd ?? this.homes.get(name) ?? "/";
    const env = Object.entries(opts.env ?? {});
    const needsEnv = env.length > 0 || (argv[0] ?? "").includes("=");
    // limactl treats leading K=V words as env assignments (§2); `env --` makes that explicit and safe.
    const command = needsEnv ? ["env", "--", ...env.map(([k, v]) => `${k}=${v}`), ...argv] : [...argv];
    return ["--tty=false", "shell", "--workdir", workdir, name, ...command];
  }

  async exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    const started = Date.now();
    await this.preflight(name, opts);
    const remaining = Math.max(1, opts.timeoutMs - (Date.now() - started));
    const r = await this.limactlRun(this.shellArgs(name, argv, opts), { timeoutMs: remaining, stdin: opts.stdin, signal: opts.signal, vm: name });
    const failure = this.limaFailure(name, argv[0] ?? "shell", r);
    if (failure) throw failure;
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, durationMs: Date.now() - started };
  }

  async stream(
    name: string,
    argv: readonly string[],
    opts: Omit<ExecOptions, "timeoutMs"> & { onStdout: (chunk: Buffer) => void; onStderr?: (chunk: Buffer) => void },
  ): Promise<StreamHandle> {
    await this.preflight(name, { skipStatusCheck: opts.skipStatusCheck, timeoutMs: 10_000 });
    const bin = await this.ensureLimactl();
    const p = streamProcess(bin, this.shellArgs(name, argv, opts), {
      env: this.env,
      extendEnv: false,
      stdin: opts.stdin,
      signal: opts.signal,
      onStdout: opts.onStdout,
      onStderr: opts.onStderr,
    });
    return { done: p.done, kill: p.kill };
  }

  async copyIn(name: string, hostPaths: readonly string[], guestDir: string, opts: { timeoutMs: number }): Promise<void> {
    await this.preflight(name, opts);
    const r = await this.limactlRun(["--tty=false", "copy", "-r", ...hostPaths, `${name}:${guestDir.endsWith("/") ? guestDir : guestDir + "/"}`], { ...opts, vm: name });
    if (r.exitCode !== 0) throw this.limaFailure(name, "limactl copy", r) ?? new RemoteError(name, "limactl copy", r.stderr.trim() || `exit ${r.exitCode}`, r.exitCode);
  }

  async copyOut(name: string, guestPath: string, hostPath: string, opts: { timeoutMs: number }): Promise<void> {
    await this.preflight(name, opts);
    const r = await this.limactlRun(["--tty=false", "copy", "-r", `${name}:${guestPath}`, hostPath], { ...opts, vm: name });
    if (r.exitCode !== 0) throw this.limaFailure(name, "limactl copy", r) ?? new RemoteError(name, "limactl copy", r.stderr.trim() || `exit ${r.exitCode}`, r.exitCode);
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
