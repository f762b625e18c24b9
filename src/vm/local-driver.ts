/**
 * The `local` driver: a "VM" that is a folder on this host — no isolation, same interface and the same
 * in-VM layout as a Lima guest (a guest home with `work/<vm>/.runs/…` and `.fabrik/engines/…`).
 *
 * Layout: `$FABRIK_HOME/local-vms/<name>/vm.json` (state, with the VM's random id) and `…/<name>/home/` (the guest
 * home). Commands run as host processes with HOME set to the guest home and `FABRIK_LOCAL_VM=<name>` plus
 * `FABRIK_LOCAL_VM_ID=<id>` in their environment; `stop` is a power-off: it SIGKILLs every process that carries
 * THIS VM's id — never a process of a same-named VM of another FABRIK_HOME (each home gives its VMs their own ids).
 *
 * Commands end the way they do on every driver (`remote-group.ts`): each runs as its own process group that
 * announces its pid, and a deadline or abort kills that group through a second call (`sh -c KILL_SCRIPT`), besides
 * killing the local process group. Copies have the lima driver's semantics (see {@link LocalDriver.copyOut}).
 */
import fs from "node:fs";
import os from "node:os";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { spawn } from "node:child_process";
import { z } from "zod";
import { InterruptedError, NotFoundError, RefusedError, RemoteError, VmUnavailableError } from "../core/errors.js";
import type { CreateOptions, ExecOptions, ExecResult, SshTarget, StreamHandle, VmDriver, VmInfo } from "./driver.js";
import { runProcess, streamProcess } from "./process.js";
import { assertVmName } from "./names.js";
import { RemotePidReader, killArgv, streamWithPidPreamble, withPidPreamble } from "./remote-group.js";

/** The shell that runs the preamble, the kill script and the stream watchdog. */
const SH = "/bin/sh";

const LocalVmStateSchema = z.object({
  name: z.string(),
  /** Random id given at create (or at the first start of a VM made before ids existed): the process tag. */
  id: z.string().regex(/^[0-9a-f-]{36}$/).optional(),
  status: z.enum(["Running", "Stopped"]),
  created_at_ms: z.number(),
  cpus: z.number().optional(),
  memory_gib: z.number().optional(),
  disk_gib: z.number().optional(),
  template: z.string().nullable().optional(),
});
type LocalVmState = z.infer<typeof LocalVmStateSchema>;

/** The environment variable naming the local VM a process belongs to (informative). */
export const LOCAL_VM_TAG = "FABRIK_LOCAL_VM";
/** The environment variable carrying the VM's id: what `stop` matches. */
export const LOCAL_VM_ID_TAG = "FABRIK_LOCAL_VM_ID";

export class LocalDriver implements VmDriver {
  readonly name = "local" as const;
  private readonly root: string;

  /** @param root folder holding the local VMs (`$FABRIK_HOME/local-vms`). */
  constructor(root: string) {
    this.root = root;
  }

  private dir(name: string): string {
    return path.join(this.root, name);
  }

  /** The guest home of a local VM (absolute host path). */
  guestHome(name: string): string {
    return path.join(this.dir(name), "home");
  }

  private readState(name: string): LocalVmState | undefined {
    try {
      return LocalVmStateSchema.parse(JSON.parse(fs.readFileSync(path.join(this.dir(name), "vm.json"), "utf8")));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      // An unreadable vm.json: report the VM as stopped rather than hide it (vm list shows it; start rewrites it).
      return { name, status: "Stopped", created_at_ms: 0, template: null, id: undefined };
    }
  }

  private writeState(state: LocalVmState): void {
    const file = path.join(this.dir(state.name), "vm.json");
    fs.writeFileSync(file + ".tmp", JSON.stringify(state, null, 2));
    fs.renameSync(file + ".tmp", file);
  }

  private info(name: string, state: LocalVmState): VmInfo {
    return {
      name,
      driver: "local",
      status: state.status,
      guestHome: this.guestHome(name),
      guestUser: os.userInfo().username,
      cpus: state.cpus ?? os.cpus().length,
      memoryBytes: state.memory_gib !== undefined ? state.memory_gib * 1024 ** 3 : undefined,
      diskBytes: state.disk_gib !== undefined ? state.disk_gib * 1024 ** 3 : undefined,
      arch: os.arch() === "x64" ? "x86_64" : os.arch(),
      vmType: "local",
      dir: this.dir(name),
      sshConfigFile: undefined,
      sshLocalPort: undefined,
      errors: [],
    };
  }

  async list(): Promise<VmInfo[]> {
    let names: string[];
    try {
      names = fs.readdirSync(this.root).filter((n) => !n.startsWith(".") && !n.startsWith("_")).sort();
    } catch {
      return [];
    }
    const out: VmInfo[] = [];
    for (const n of names) {
      const s = this.readState(n);
      if (s) out.push(this.info(n, s));
    }
    return out;
  }

  async inspect(name: string): Promise<VmInfo | undefined> {
    const s = this.readState(name);
    return s ? this.info(name, s) : undefined;
  }

  async create(opts: CreateOptions): Promise<void> {
    assertVmName(opts.name);
    fs.mkdirSync(this.root, { recursive: true });
    try {
      fs.mkdirSync(this.dir(opts.name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new RefusedError(`VM ${opts.name} already exists`, "pick another name or `fabrik vm delete` it first");
      throw err;
    }
    fs.mkdirSync(this.guestHome(opts.name), { mode: 0o700 });
    this.writeState({
      name: opts.name,
      id: randomUUID(),
      status: "Stopped",
      created_at_ms: Date.now(),
      cpus: opts.cpus,
      memory_gib: opts.memoryGiB,
      disk_gib: opts.diskGiB,
      template: opts.template ?? null,
    });
  }

  private must(name: string): LocalVmState {
    const s = this.readState(name);
    if (!s) throw new NotFoundError(`VM ${name} does not exist`, "see `fabrik vm list`, or create it with `fabrik vm create --driver local`");
    return s;
  }

  async start(name: string): Promise<void> {
    const s = this.must(name);
    if (s.status !== "Running" || !s.id) this.writeState({ ...s, id: s.id ?? randomUUID(), status: "Running" });
  }

  async stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    const s = this.must(name);
    if (s.status !== "Running" && !opts.force) throw new VmUnavailableError(name, `VM ${name} is already stopped`);
    if (s.id) await killTagged(s.id, opts.timeoutMs);
    this.writeState({ ...s, status: "Stopped" });
  }

  async delete(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    const s = this.readState(name);
    if (!s) return;
    if (s.status === "Running") {
      if (!opts.force) throw new RefusedError(`VM ${name} is running`, `stop it first (\`fabrik vm stop ${name}\`) or pass --force`);
      if (s.id) await killTagged(s.id, opts.timeoutMs);
    }
    fs.rmSync(this.dir(name), { recursive: true, force: true });
  }

  private env(name: string, extra?: Record<string, string>): Record<string, string> {
    const home = this.guestHome(name);
    const id = this.readState(name)?.id;
    return {
      ...hostNetworkEnv(process.env),
      HOME: home,
      USER: os.userInfo().username,
      LOGNAME: os.userInfo().username,
      SHELL: "/bin/bash",
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      LANG: process.env.LANG ?? "C.UTF-8",
      TMPDIR: process.env.TMPDIR ?? "/tmp",
      [LOCAL_VM_TAG]: name,
      ...(id ? { [LOCAL_VM_ID_TAG]: id } : {}),
      ...extra,
    };
  }

  private running(name: string, skip?: boolean): void {
    if (skip) {
      const s = this.readState(name);
      if (!s) throw new NotFoundError(`VM ${name} does not exist`, "see `fabrik vm list`");
      if (s.status !== "Running") throw new VmUnavailableError(name, `VM ${name} is stopped`, `start it with \`fabrik vm start ${name}\``);
      return;
    }
    const s = this.must(name);
    if (s.status !== "Running") throw new VmUnavailableError(name, `VM ${name} is stopped`, `start it with \`fabrik vm start ${name}\``);
  }

  /** Kill "guest" pid `pid` and its process group through a second call, as on every driver. Never throws. */
  private async killRemote(name: string, pid: number): Promise<void> {
    await runProcess(SH, killArgv(pid).slice(1), { env: this.env(name), extendEnv: false, timeoutMs: 10_000 });
  }

  async exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    this.running(name, opts.skipStatusCheck);
    if (argv.length === 0) throw new Error("exec: empty argv");
    const pidLine = new RemotePidReader();
    const stderr: Buffer[] = [];
    const r = await runProcess(SH, withPidPreamble(argv).slice(1), {
      stdin: opts.stdin,
      cwd: opts.cwd ?? this.guestHome(name),
      env: this.env(name, opts.env),
      extendEnv: false,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      maxOutputBytes: opts.maxOutputBytes,
      onStderr: (c) => stderr.push(pidLine.feed(c)),
    });
    stderr.push(pidLine.flush());
    if ((r.aborted || r.timedOut || r.outputCapped) && pidLine.pid !== undefined) await this.killRemote(name, pidLine.pid);
    if (r.aborted) throw new InterruptedError();
    if (r.timedOut) throw new VmUnavailableError(name, `VM ${name}: ${argv[0]} did not finish within ${opts.timeoutMs} ms`);
    if (r.outputCapped) throw new RemoteError(name, argv[0]!, `output larger than ${opts.maxOutputBytes} bytes`);
    if (r.spawnError) {
      // As a shell would: a missing working directory → 1 (the shell itself could not start there).
      const code = r.spawnError.code === "ENOENT" && opts.cwd && !fs.existsSync(opts.cwd) ? 1 : 127;
      return { exitCode: code, stdout: "", stderr: `${argv[0]}: ${r.spawnError.message}\n`, durationMs: r.durationMs };
    }
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: Buffer.concat(stderr).toString("utf8"), durationMs: r.durationMs };
  }

  /** Stream `argv`'s stdout; it runs under the stream watchdog and is killed (group, second call) on `kill()`. */
  async stream(
    name: string,
    argv: readonly string[],
    opts: Omit<ExecOptions, "timeoutMs"> & { onStdout: (chunk: Buffer) => void; onStderr?: (chunk: Buffer) => void },
  ): Promise<StreamHandle> {
    this.running(name, opts.skipStatusCheck);
    if (argv.length === 0) throw new Error("stream: empty argv");
    const pidLine = new RemotePidReader();
    const p = streamProcess(SH, streamWithPidPreamble(argv).slice(1), {
      cwd: opts.cwd ?? this.guestHome(name),
      env: this.env(name, opts.env),
      extendEnv: false,
      stdin: opts.stdin,
      keepStdinOpen: true,
      signal: opts.signal,
      onStdout: opts.onStdout,
      onStderr: (c) => {
        const rest = pidLine.feed(c);
        if (rest.length > 0) opts.onStderr?.(rest);
      },
    });
    let killed = false;
    const kill = () => {
      if (killed) return;
      killed = true;
      p.kill();
      if (pidLine.pid !== undefined) void this.killRemote(name, pidLine.pid);
    };
    return { done: p.done, kill };
  }

  /** Copy host paths into `guestDir`: each lands at `guestDir/<basename>`, a folder merging into an existing one. */
  async copyIn(name: string, hostPaths: readonly string[], guestDir: string): Promise<void> {
    this.running(name);
    for (const p of hostPaths) {
      try {
        fs.cpSync(p, path.join(guestDir, path.basename(p)), { recursive: true, errorOnExist: false, verbatimSymlinks: true });
      } catch (err) {
        throw new RemoteError(name, "copy", (err as Error).message);
      }
    }
  }

  /**
   * Copy `guestPath` to `hostPath`: the copy IS `hostPath` (a folder merges into an existing folder, a file replaces
   * a file; a file onto a folder or the reverse fails) — the lima driver's semantics.
   */
  async copyOut(name: string, guestPath: string, hostPath: string): Promise<void> {
    this.running(name);
    try {
      fs.cpSync(guestPath, hostPath, { recursive: true, verbatimSymlinks: true });
    } catch (err) {
      throw new RemoteError(name, "copy", (err as Error).message);
    }
  }

  async shell(name: string, argv: readonly string[] | undefined, opts: { cwd?: string | undefined }): Promise<number> {
    this.running(name);
    const [cmd, ...args] = argv && argv.length > 0 ? argv : ["/bin/bash", "-l"];
    return await new Promise<number>((resolve) => {
      const child = spawn(cmd!, args, { stdio: "inherit", cwd: opts.cwd ?? this.guestHome(name), env: this.env(name) });
      child.on("error", () => resolve(127));
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
    });
  }

  async sshTarget(): Promise<SshTarget | undefined> {
    return undefined;
  }
}

/**
 * The host's network settings that a local "VM" shares with the host (it IS the host's network):
 * proxy variables, extra CA bundles (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE/DIR) and npm's registry/CA config.
 * Everything else of the host environment stays out, as with a real VM.
 */
export function hostNetworkEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (/^(https?_proxy|no_proxy|all_proxy)$/i.test(k) || /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR)$/.test(k) || /^npm_config_(registry|cafile|ca|strict_ssl|proxy|https_proxy|noproxy|fetch_retries|fetch_retry_mintimeout|fetch_retry_maxtimeout|fetch_timeout)$/i.test(k)) {
      out[k] = v;
    }
  }
  return out;
}

/** Pids of host processes tagged with local VM id `id` (reads /proc/<pid>/environ). */
export function taggedPids(id: string): number[] {
  const tag = Buffer.from(`${LOCAL_VM_ID_TAG}=${id}\0`);
  const out: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      const env = fs.readFileSync(`/proc/${e}/environ`);
      if (env.indexOf(tag) === 0 || env.indexOf(Buffer.concat([Buffer.from("\0"), tag])) >= 0) out.push(pid);
    } catch {
      /* gone or not ours */
    }
  }
  return out;
}

async function killTagged(id: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = taggedPids(id);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
