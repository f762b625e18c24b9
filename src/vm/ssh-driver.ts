/**
 * The `ssh` driver: an existing Linux machine fabrik reaches over SSH (a cloud VM, a server, a colleague's Lima VM
 * through its ssh.config), registered with `fabrik vm add NAME --ssh USER@HOST`. fabrik never creates, starts,
 * stops or deletes such a machine; everything else is the same contract as the other drivers: the same in-VM layout
 * (`~/work/<vm>/.runs/…`, `~/.fabrik/engines/…`), the engine install, the launcher, the probe and resume.
 *
 * - ONE ssh2 connection per VM per process ({@link SshTransport}: reconnect with backoff, a long-lived probe channel,
 *   exec with a remote kill of the process group on deadline), reused by every call of a command and, through
 *   {@link SshDriver.sessionTransport}, by watch and attach across refreshes.
 * - Host keys are verified on every connection (also reconnects, also the jump host) against the VM's known_hosts
 *   file (default `~/.ssh/known_hosts`): an unknown key is refused with its SHA256 fingerprint unless `vm add` was
 *   told `--accept-new-host-key`; a changed key is always refused (transport/host-keys.ts).
 * - Authentication: the VM's `--identity` key, else the default keys (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`),
 *   then ssh-agent (`SSH_AUTH_SOCK`) if there is one. The agent is never forwarded.
 * - A jump host (`--jump USER@HOST[:PORT]`) is dialled first (its key verified the same way); the VM's connection
 *   runs inside a `direct-tcpip` channel of it. One jump connection serves every VM behind it.
 * - A per-VM cap on concurrent command and stream channels ({@link DEFAULT_CHANNELS_PER_VM}; sshd's `MaxSessions` is
 *   10 by default, and the probe channel and a kill channel need room too). Waiting for a channel counts against
 *   the call's deadline: every call has one.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AgentAuthMethod, ConnectConfig, ParsedKey, PublicKeyAuthMethod } from "ssh2";
import type { Readable } from "node:stream";
import { InterruptedError, NotFoundError, PrerequisiteError, RemoteError, UsageError, UserError, VmUnavailableError } from "../core/errors.js";
import type { CreateOptions, ExecOptions, ExecResult, SshTarget, StreamHandle, VmDriver, VmInfo } from "./driver.js";
import { defaultGuestInstallCache, type GuestInstallCache } from "./guest-programs.js";
import { SshConnection, SshTransport, type PreparedConnect } from "./transport/index.js";
import { errorText } from "./transport/connection.js";
import { hostKeyVerifier, knownKeyTypes, preferredHostKeyAlgorithms, readKnownHosts, type HostKeyOutcome } from "./transport/host-keys.js";
import { onAbort } from "./abort.js";
import { shellQuote } from "./shell-quote.js";

/** `user@host:port`: where an SSH server is. */
export interface SshAddress {
  user: string;
  host: string;
  port: number;
}

/** How to reach one machine: its address and the files that authenticate it and us. */
export interface SshHost extends SshAddress {
  /** Private key file; null: the default keys and the agent. */
  identityFile: string | null;
  /** known_hosts file checked (and appended to by `--accept-new-host-key`); null: `~/.ssh/known_hosts`. */
  knownHostsFile: string | null;
  /** Jump host the connection goes through (its key is checked against the same known_hosts file), or null. */
  jump: SshAddress | null;
}

/** A registered ssh VM. */
export interface SshVm {
  name: string;
  host: SshHost;
  /** The guest user's home, recorded by `vm add`. */
  guestHome: string | null;
}

/** Where the driver finds its VMs (the registry, through fabrik/drivers.ts). */
export interface SshVmDirectory {
  get(name: string): SshVm | undefined;
  list(): SshVm[];
}

/** Options of {@link SshDriver}. */
export interface SshDriverOptions {
  vms: SshVmDirectory;
  /** For `HOME` (default keys and known_hosts) and `SSH_AUTH_SOCK`. Default: process.env. */
  env?: NodeJS.ProcessEnv | undefined;
  /** What the host believes is installed in each VM (the probe channel's program). Default: in-memory. */
  installCache?: (() => Promise<GuestInstallCache>) | undefined;
  /** Cap on concurrent command/stream channels per VM. Default {@link DEFAULT_CHANNELS_PER_VM}. */
  channelsPerVm?: number | undefined;
  /** Deadline of one connection attempt, ms. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /** Cap on VMs checked at once by `list`. Default 16. */
  listConcurrency?: number | undefined;
}

/** Concurrent command and stream channels per VM: sshd's default MaxSessions (10) minus the probe and a kill channel. */
export const DEFAULT_CHANNELS_PER_VM = 8;

/** The default keys tried when a VM has no `--identity`, in OpenSSH's order (`~/.ssh/…`). */
export const DEFAULT_IDENTITY_NAMES = ["id_ed25519", "id_ecdsa", "id_rsa"] as const;

const ADDRESS = /^(?:([A-Za-z0-9._][A-Za-z0-9._-]{0,63})@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?$/;

/**
 * Parse `USER@HOST[:PORT]` (`HOST` a name, an IPv4 address or a bracketed IPv6 address). Without a user, `defaultUser`;
 * without a port, `defaultPort`. Names start with a letter or digit, so nothing parses as an ssh option.
 * @throws UsageError naming the flag.
 */
export function parseSshAddress(text: string, opts: { flag: string; defaultUser: string; defaultPort?: number | undefined; allowPort: boolean }): SshAddress {
  const m = ADDRESS.exec(text.trim());
  const port = m?.[3] === undefined ? (opts.defaultPort ?? 22) : Number(m[3]);
  if (!m || (m[3] !== undefined && !opts.allowPort) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`${opts.flag} ${JSON.stringify(text)} is not ${opts.allowPort ? "USER@HOST[:PORT]" : "USER@HOST"}`, `e.g. ${opts.flag} ubuntu@build-1.example.com${opts.allowPort ? ":2222" : " (the port goes in --port)"}`);
  }
  const host = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!;
  return { user: m[1] ?? opts.defaultUser, host, port };
}

/** `user@host:port` (IPv6 hosts in brackets). */
export function formatSshAddress(a: SshAddress): string {
  return `${a.user}@${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

/** The address column of `vm list`: `user@host:port`, plus ` via user@jump:port`. */
export function describeSshHost(h: SshHost): string {
  return h.jump ? `${formatSshAddress(h)} via ${formatSshAddress(h.jump)}` : formatSshAddress(h);
}

/** The known_hosts file a host is checked against. */
export function knownHostsFileOf(h: Pick<SshHost, "knownHostsFile">, env: NodeJS.ProcessEnv): string {
  return h.knownHostsFile ?? path.join(env.HOME ?? os.homedir(), ".ssh", "known_hosts");
}

/** The `fabrik vm add` command that registers (or re-checks) `name` at `h`, values quoted for a POSIX shell. */
export function addCommand(name: string, h: SshHost): string {
  // Words of safe characters stay bare (readable); anything else goes through the one quoting function.
  const q = (v: string) => (/^[A-Za-z0-9@%+=:,./_-]+$/.test(v) ? v : shellQuote(v));
  const parts = ["fabrik", "vm", "add", q(name), "--ssh", q(`${h.user}@${h.host.includes(":") ? `[${h.host}]` : h.host}`)];
  if (h.port !== 22) parts.push("--port", String(h.port));
  if (h.identityFile) parts.push("--identity", q(h.identityFile));
  if (h.knownHostsFile) parts.push("--known-hosts", q(h.knownHostsFile));
  if (h.jump) parts.push("--jump", q(formatSshAddress(h.jump)));
  return parts.join(" ");
}

/** What `vm add` learns about a machine in its one preflight call. Paths are the guest's; sizes none. */
export interface SshMachineFacts {
  home: string;
  /** `uname -sm` (e.g. `Linux x86_64`). */
  uname: string;
  /** Tools fabrik needs in the guest that are missing (bash, tar, tail, setsid, flock). */
  missing: string[];
  /** bun the probe would use (an engine's, `~/.bun/bin/bun` or on PATH), or null. */
  bun: string | null;
  node: string | null;
  npm: string | null;
}

/** The guest tools fabrik's scripts run (the launcher, launch, follow, kill). */
export const REQUIRED_GUEST_TOOLS = ["bash", "tar", "tail", "setsid", "flock", "kill"] as const;

/** `sh` program printing `key=value` lines: the facts of {@link SshMachineFacts} (POSIX sh; values never interpolated). */
export const PREFLIGHT_SCRIPT = `printf 'home=%s\\n' "$HOME"
printf 'uname=%s\\n' "$(uname -sm 2>/dev/null)"
for t in ${REQUIRED_GUEST_TOOLS.join(" ")}; do command -v "$t" >/dev/null 2>&1 || printf 'missing=%s\\n' "$t"; done
b=""
for c in "$HOME"/.fabrik/engines/*/.runtime/node_modules/.bin/bun "$HOME/.bun/bin/bun"; do [ -z "$b" ] && [ -x "$c" ] && b="$c"; done
[ -n "$b" ] || b="$(command -v bun 2>/dev/null)" || b=""
printf 'bun=%s\\n' "$b"
printf 'node=%s\\n' "$(command -v node 2>/dev/null)"
printf 'npm=%s\\n' "$(command -v npm 2>/dev/null)"
`;

/**
 * Parse what {@link PREFLIGHT_SCRIPT} printed (the machine is untrusted: lengths capped, paths must be absolute).
 * @throws RemoteError when the output makes no sense.
 */
export function parsePreflight(vm: string, stdout: string): SshMachineFacts {
  const facts: SshMachineFacts = { home: "", uname: "", missing: [], bun: null, node: null, npm: null };
  for (const line of stdout.split("\n").slice(0, 100)) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).slice(0, 1024);
    const pathOrNull = value.startsWith("/") ? value : null;
    if (key === "home") facts.home = value;
    else if (key === "uname") facts.uname = value.slice(0, 200);
    else if (key === "missing" && (REQUIRED_GUEST_TOOLS as readonly string[]).includes(value)) facts.missing.push(value);
    else if (key === "bun") facts.bun = pathOrNull;
    else if (key === "node") facts.node = pathOrNull;
    else if (key === "npm") facts.npm = pathOrNull;
  }
  if (!facts.home.startsWith("/") || facts.home.length < 2) throw new RemoteError(vm, "preflight", `the machine did not report an absolute home directory (got ${JSON.stringify(facts.home.slice(0, 80))})`);
  return facts;
}

/** Argv that runs `argv` in `cwd` with `env` added (an argv again: nothing interpolated). */
export function remoteArgv(argv: readonly string[], opts: { cwd?: string | undefined; env?: Record<string, string> | undefined }): string[] {
  let out = [...argv];
  const env = Object.entries(opts.env ?? {});
  if (env.length > 0 || (out[0] ?? "").includes("=")) out = ["env", "--", ...env.map(([k, v]) => `${k}=${v}`), ...out];
  if (opts.cwd) out = ["sh", "-c", 'cd "$1" || exit 1; shift; exec "$@"', "fabrik-cd", opts.cwd, ...out];
  return out;
}

/** A counting semaphore whose waits have deadlines: the per-VM channel cap. */
class ChannelSlots {
  private used = 0;
  private readonly waiters: { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  constructor(readonly size: number) {}

  /** Take a slot before `deadlineAt`; resolves with its release function. Rejects with `onTimeout()` when none frees in time. */
  acquire(deadlineAt: number, onTimeout: () => Error, signal?: AbortSignal): Promise<() => void> {
    const release = once(() => {
      this.used--;
      const next = this.waiters.shift();
      if (next) {
        clearTimeout(next.timer);
        this.used++;
        next.resolve();
      }
    });
    if (this.used < this.size) {
      this.used++;
      return Promise.resolve(release);
    }
    return new Promise<() => void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          unlisten();
          resolve(release);
        },
        reject: (e: Error) => {
          unlisten();
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          clearTimeout(waiter.timer);
          reject(e);
        },
        timer: setTimeout(() => waiter.reject(onTimeout()), Math.max(1, deadlineAt - Date.now())),
      };
      const unlisten = onAbort(signal, () => waiter.reject(new InterruptedError()));
      this.waiters.push(waiter);
    });
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/** Parsed private keys and the agent: how we authenticate. */
interface Credentials {
  keys: { file: string; key: ParsedKey }[];
  agent: string | undefined;
  /** For messages: what was offered. */
  offered: string;
}

/** One VM's connection and channel cap. */
interface VmLink {
  transport: SshTransport;
  slots: ChannelSlots;
  notices: Set<(msg: string) => void>;
}

export class SshDriver implements VmDriver {
  readonly name = "ssh" as const;
  private readonly vms: SshVmDirectory;
  private readonly env: NodeJS.ProcessEnv;
  private readonly installCache: () => Promise<GuestInstallCache>;
  private readonly channelsPerVm: number;
  private readonly connectTimeoutMs: number;
  private readonly listConcurrency: number;
  private readonly links = new Map<string, VmLink>();
  private readonly jumps = new Map<string, SshConnection>();
  private readonly credentials = new Map<string, Credentials>();

  constructor(opts: SshDriverOptions) {
    this.vms = opts.vms;
    this.env = opts.env ?? process.env;
    this.installCache = opts.installCache ?? (async () => defaultGuestInstallCache);
    this.channelsPerVm = opts.channelsPerVm ?? DEFAULT_CHANNELS_PER_VM;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.listConcurrency = opts.listConcurrency ?? 16;
  }

  // ------------------------------------------------------------------------------------ connections

  private must(name: string): SshVm {
    const vm = this.vms.get(name);
    if (!vm) throw new NotFoundError(`VM ${name} is not a registered ssh VM`, "see `fabrik vm list`; register a machine with `fabrik vm add NAME --ssh USER@HOST`");
    return vm;
  }

  /** Keys and agent for `h` (read once per process). @throws UserError/PrerequisiteError. */
  private async credentialsFor(h: Pick<SshHost, "identityFile">): Promise<Credentials> {
    const id = h.identityFile ?? "";
    const cached = this.credentials.get(id);
    if (cached) return cached;
    // ssh2 is CommonJS: `utils` is reachable through the default export only.
    const ssh2 = await import("ssh2");
    const utils = ssh2.utils ?? (ssh2 as unknown as { default: typeof ssh2 }).default.utils;
    const agent = this.env.SSH_AUTH_SOCK || undefined;
    const keys: Credentials["keys"] = [];
    const parse = (text: Buffer): ParsedKey | Error => {
      const k = utils.parseKey(text);
      return Array.isArray(k) ? (k[0] as ParsedKey) : k;
    };
    if (h.identityFile) {
      let text: Buffer;
      try {
        text = fs.readFileSync(h.identityFile);
      } catch (err) {
        throw new UserError(`cannot read the SSH identity ${h.identityFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, "pass --identity with a readable private key file");
      }
      const k = parse(text);
      if (k instanceof Error) {
        if (!agent) {
          throw new PrerequisiteError(
            `cannot use the SSH identity ${h.identityFile}: ${k.message}`,
            /passphrase|encrypted/i.test(k.message) ? `load it into ssh-agent (\`ssh-add ${h.identityFile}\`) and set SSH_AUTH_SOCK; fabrik never asks for passphrases` : "pass --identity with an OpenSSH private key",
          );
        }
      } else keys.push({ file: h.identityFile, key: k });
    } else {
      const dir = path.join(this.env.HOME ?? os.homedir(), ".ssh");
      for (const n of DEFAULT_IDENTITY_NAMES) {
        const file = path.join(dir, n);
        let text: Buffer;
        try {
          text = fs.readFileSync(file);
        } catch {
          continue;
        }
        const k = parse(text);
        if (!(k instanceof Error)) keys.push({ file, key: k }); // an encrypted default key is left to the agent
      }
    }
    if (keys.length === 0 && !agent) {
      throw new PrerequisiteError(
        `no SSH key to log in with: no --identity, no usable ${DEFAULT_IDENTITY_NAMES.map((n) => `~/.ssh/${n}`).join(", ")}, and no ssh-agent (SSH_AUTH_SOCK)`,
        "pass --identity FILE, or create a key with `ssh-keygen -t ed25519` and add its .pub to ~/.ssh/authorized_keys on the machine",
      );
    }
    const offered = [...keys.map((k) => k.file), ...(agent ? ["ssh-agent"] : [])].join(", ");
    const c = { keys, agent, offered };
    this.credentials.set(id, c);
    return c;
  }

  /**
   * The per-attempt connect settings for `addr` (the VM or its jump host): host-key verification, keys and agent
   * (never forwarded), and the socket through the jump host. See transport/connection.ts PreparedConnect.
   */
  private prepareFor(vmName: string, h: SshHost, addr: SshAddress, opts: { acceptNew: boolean; onHostKey?: (o: HostKeyOutcome) => void; viaJump: boolean }) {
    return async (timeoutMs: number): Promise<PreparedConnect> => {
      const cred = await this.credentialsFor(h);
      const knownHostsFile = knownHostsFileOf(h, this.env);
      const acceptHint = `accept it with \`${addCommand(vmName, h)} --accept-new-host-key\``;
      const verifier = hostKeyVerifier(vmName, addr.host, addr.port, { knownHostsFile, acceptNew: opts.acceptNew, acceptHint });
      let known: string[] = [];
      try {
        known = knownKeyTypes(readKnownHosts(knownHostsFile), addr.host, addr.port);
      } catch (err) {
        throw new UserError(`cannot read known_hosts file ${knownHostsFile}: ${errorText(err)}`, "pass --known-hosts with a readable file");
      }
      const authHandler: (PublicKeyAuthMethod | AgentAuthMethod)[] = [
        ...cred.keys.map((k) => ({ type: "publickey" as const, username: addr.user, key: k.key })),
        ...(cred.agent ? [{ type: "agent" as const, username: addr.user, agent: cred.agent }] : []),
      ];
      const config: Partial<ConnectConfig> = {
        hostVerifier: (key: Buffer) => {
          const ok = verifier.verify(key);
          const outcome = verifier.outcome();
          if (ok && outcome) opts.onHostKey?.(outcome);
          return ok;
        },
        authHandler: authHandler as ConnectConfig["authHandler"],
        agentForward: false,
        algorithms: { serverHostKey: preferredHostKeyAlgorithms(known) as never },
      };
      let release: (() => void) | undefined;
      if (opts.viaJump && h.jump) {
        const sock = await this.dialThroughJump(vmName, h, timeoutMs);
        config.sock = sock;
        release = () => sock.destroy();
      }
      const where = `${formatSshAddress(addr)}${opts.viaJump && h.jump ? ` via ${formatSshAddress(h.jump)}` : ""}`;
      return {
        config,
        release,
        explain: (err, reconnecting) => {
          const refused = verifier.refusal();
          if (refused) return refused;
          const level = (err as { level?: string }).level;
          if (level === "client-authentication") {
            return new VmUnavailableError(
              vmName,
              `VM ${vmName}: ${addr.user}@${addr.host}:${addr.port} refused our SSH login (tried ${cred.offered || "nothing"})`,
              `add the public key to ~${addr.user}/.ssh/authorized_keys on ${addr.host}, or pass --identity with the right key`,
            );
          }
          const code = (err as NodeJS.ErrnoException).code;
          if (!reconnecting && (code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENOTFOUND" || code === "EAI_AGAIN")) {
            // A machine that is down or a name that does not resolve: retrying within one command does not help.
            return new VmUnavailableError(vmName, `VM ${vmName}: cannot connect over SSH to ${where}: ${errorText(err)}`, `is the machine up and sshd listening on port ${addr.port}?`);
          }
          return undefined;
        },
      };
    };
  }

  /** A `direct-tcpip` channel from `h.jump` to `h`, over the (shared) jump connection. */
  private async dialThroughJump(vmName: string, h: SshHost, timeoutMs: number): Promise<Readable> {
    const j = h.jump!;
    const key = `${formatSshAddress(j)}|${h.identityFile ?? ""}|${knownHostsFileOf(h, this.env)}`;
    let conn = this.jumps.get(key);
    if (!conn) {
      const jumpHost: SshHost = { ...j, identityFile: h.identityFile, knownHostsFile: h.knownHostsFile, jump: null };
      conn = new SshConnection(`${vmName} (jump host ${formatSshAddress(j)})`, { host: j.host, port: j.port, user: j.user, identityFile: h.identityFile ?? "" }, {
        connectTimeoutMs: this.connectTimeoutMs,
        prepareConnect: this.prepareFor(vmName, jumpHost, j, { acceptNew: false, viaJump: false }),
      });
      this.jumps.set(key, conn);
    }
    const client = await conn.connection(Date.now() + timeoutMs);
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new VmUnavailableError(vmName, `VM ${vmName}: the jump host ${formatSshAddress(j)} opened no channel to ${h.host}:${h.port} within ${timeoutMs} ms`)), timeoutMs);
      client.forwardOut("127.0.0.1", 0, h.host, h.port, (err, stream) => {
        clearTimeout(timer);
        if (err) reject(new VmUnavailableError(vmName, `VM ${vmName}: the jump host ${formatSshAddress(j)} cannot reach ${h.host}:${h.port}: ${errorText(err)}`));
        else resolve(stream);
      });
    });
  }

  /** The VM's link (connection + channel cap), created on first use. */
  private async link(vm: SshVm): Promise<VmLink> {
    const existing = this.links.get(vm.name);
    if (existing) return existing;
    const notices = new Set<(msg: string) => void>();
    const link: VmLink = {
      transport: new SshTransport(vm.name, this.target(vm.host), {
        connectTimeoutMs: this.connectTimeoutMs,
        installCache: await this.installCache(),
        onNotice: (msg) => {
          for (const fn of notices) fn(msg);
        },
        prepareConnect: this.prepareFor(vm.name, vm.host, vm.host, { acceptNew: false, viaJump: true }),
      }),
      slots: new ChannelSlots(this.channelsPerVm),
      notices,
    };
    this.links.set(vm.name, link);
    return link;
  }

  private target(h: SshHost): SshTarget {
    return { host: h.host, port: h.port, user: h.user, identityFile: h.identityFile ?? "" };
  }

  /** Take a channel slot of `name` before `deadlineAt`. */
  private async slot(name: string, link: VmLink, deadlineAt: number, timeoutMs: number, signal?: AbortSignal): Promise<() => void> {
    return await link.slots.acquire(
      deadlineAt,
      () => new VmUnavailableError(name, `VM ${name}: no free SSH channel within ${timeoutMs} ms (all ${link.slots.size} in use)`, "too many commands at once on this VM; try again"),
      signal,
    );
  }

  /**
   * Connect to a machine that is not registered yet (`vm add`), with `--accept-new-host-key` if asked, and read
   * its facts in one call. Closes the connection before returning.
   * @returns the facts and what was concluded about the host key.
   * @throws HostKeyError (kind refused) for an unknown key without `acceptNew`, a changed or revoked key;
   *   VmUnavailableError when it cannot be reached or refuses the login; UserError/PrerequisiteError for our keys.
   */
  async checkMachine(name: string, host: SshHost, opts: { acceptNewHostKey: boolean; timeoutMs: number }): Promise<{ facts: SshMachineFacts; hostKey: HostKeyOutcome | undefined }> {
    let hostKey: HostKeyOutcome | undefined;
    const transport = new SshTransport(name, this.target(host), {
      connectTimeoutMs: this.connectTimeoutMs,
      prepareConnect: this.prepareFor(name, host, host, { acceptNew: opts.acceptNewHostKey, viaJump: true, onHostKey: (o) => (hostKey = o) }),
    });
    try {
      const r = await transport.exec(["sh", "-c", PREFLIGHT_SCRIPT, "fabrik-preflight"], { timeoutMs: opts.timeoutMs });
      if (r.exitCode !== 0) throw new RemoteError(name, "preflight", r.stderr.trim().slice(0, 300) || `exit ${r.exitCode}`, r.exitCode);
      return { facts: parsePreflight(name, r.stdout), hostKey };
    } finally {
      transport.close();
    }
  }

  /**
   * The VM's persistent transport, for a session (watch, attach) that probes and follows over it: the same
   * connection every other call of this process uses. `onNotice` receives connection lost/reconnected notices
   * until `release()`; releasing never closes the shared connection ({@link close} does).
   */
  async sessionTransport(name: string, onNotice: (msg: string) => void): Promise<{ transport: SshTransport; release: () => void }> {
    const link = await this.link(this.must(name));
    link.notices.add(onNotice);
    return { transport: link.transport, release: once(() => link.notices.delete(onNotice)) };
  }

  /** Close every connection (jump hosts too). Later calls open new ones. */
  close(): void {
    for (const l of this.links.values()) l.transport.close();
    for (const j of this.jumps.values()) j.close();
    this.links.clear();
    this.jumps.clear();
  }

  // ------------------------------------------------------------------------------------ VmDriver

  private info(vm: SshVm, status: VmInfo["status"], errors: string[]): VmInfo {
    return {
      name: vm.name,
      driver: "ssh",
      status,
      guestHome: vm.guestHome ?? undefined,
      guestUser: vm.host.user,
      cpus: undefined,
      memoryBytes: undefined,
      diskBytes: undefined,
      arch: undefined,
      vmType: "ssh",
      dir: undefined,
      sshConfigFile: undefined,
      sshLocalPort: vm.host.port,
      errors,
    };
  }

  /** Every registered ssh VM, each checked by connecting (in parallel, capped): Running, or Unknown with the reason. */
  async list(opts: { timeoutMs: number }): Promise<VmInfo[]> {
    const vms = this.vms.list();
    const out: VmInfo[] = new Array(vms.length);
    let next = 0;
    const worker = async () => {
      while (next < vms.length) {
        const i = next++;
        const vm = vms[i]!;
        try {
          await (await this.link(vm)).transport.connect({ timeoutMs: opts.timeoutMs });
          out[i] = this.info(vm, "Running", []);
        } catch (err) {
          out[i] = this.info(vm, "Unknown", [errorText(err)]);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.listConcurrency, vms.length) }, worker));
    return out;
  }

  /**
   * A registered VM, reachable: `Running`. Undefined when not registered.
   * @throws VmUnavailableError when it cannot be reached within `timeoutMs`; HostKeyError (refused) for a bad host key.
   */
  async inspect(name: string, opts: { timeoutMs: number }): Promise<VmInfo | undefined> {
    const vm = this.vms.get(name);
    if (!vm) return undefined;
    await (await this.link(vm)).transport.connect({ timeoutMs: opts.timeoutMs });
    return this.info(vm, "Running", []);
  }

  async create(opts: CreateOptions): Promise<void> {
    throw new UsageError(
      `the ssh driver does not create machines: ${opts.name} must already exist and run sshd`,
      `register it with \`fabrik vm add ${opts.name} --ssh USER@HOST\``,
    );
  }

  private notManaged(name: string, verb: string): UsageError {
    const vm = this.vms.get(name);
    const where = vm ? ` (${describeSshHost(vm.host)})` : "";
    return new UsageError(
      `VM ${name} is a machine fabrik reaches over SSH${where}: fabrik does not ${verb} it, it only runs workflows there`,
      `${verb} it where it is managed; \`fabrik vm remove ${name}\` unregisters it without touching the machine`,
    );
  }

  async start(name: string): Promise<void> {
    throw this.notManaged(name, "start");
  }

  async stop(name: string): Promise<void> {
    throw this.notManaged(name, "stop");
  }

  async delete(name: string): Promise<void> {
    throw this.notManaged(name, "delete");
  }

  /**
   * Run argv in the VM over the VM's one connection: a channel of its own (waiting for a free one counts against
   * the deadline). The guest's exit code is data. On deadline or abort the remote command's process group is killed.
   * @throws VmUnavailableError (unreachable, lost mid-command, deadline), InterruptedError, HostKeyError, NotFoundError.
   */
  async exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    const vm = this.must(name);
    if (argv.length === 0) throw new Error("exec: empty argv");
    const started = Date.now();
    const deadlineAt = started + opts.timeoutMs;
    const link = await this.link(vm);
    const release = await this.slot(name, link, deadlineAt, opts.timeoutMs, opts.signal);
    try {
      const remaining = Math.max(1, deadlineAt - Date.now());
      const r = await link.transport.exec(remoteArgv(argv, opts), { stdin: opts.stdin, timeoutMs: remaining, signal: opts.signal, maxOutputBytes: opts.maxOutputBytes });
      return { ...r, durationMs: Date.now() - started };
    } finally {
      release();
    }
  }

  /**
   * Stream argv's stdout until it exits or `kill()`; the remote command ends when the channel does (transport's
   * watchdog). Holds one channel slot while it runs. `stdin` is not supported (the watchdog owns it).
   */
  async stream(
    name: string,
    argv: readonly string[],
    opts: Omit<ExecOptions, "timeoutMs"> & { onStdout: (chunk: Buffer) => void; onStderr?: (chunk: Buffer) => void },
  ): Promise<StreamHandle> {
    const vm = this.must(name);
    const link = await this.link(vm);
    const budget = this.connectTimeoutMs * 2;
    const release = await this.slot(name, link, Date.now() + budget, budget, opts.signal);
    let h: StreamHandle;
    try {
      h = await link.transport.stream(remoteArgv(argv, opts), { onStdout: opts.onStdout, onStderr: opts.onStderr, timeoutMs: budget });
    } catch (err) {
      release();
      throw err;
    }
    const unlisten = onAbort(opts.signal, () => h.kill());
    void h.done.finally(() => {
      unlisten();
      release();
    });
    return h;
  }

  /** Copy host files/folders into `guestDir` (which exists): a tar stream on a command's stdin, one per host folder. */
  async copyIn(name: string, hostPaths: readonly string[], guestDir: string, opts: { timeoutMs: number }): Promise<void> {
    const tar = await import("tar");
    // Each path goes in under its own name (as `cp -r a/b dir` puts `b` in `dir`), grouped by the folder it is in.
    const byDir = new Map<string, string[]>();
    for (const p of hostPaths) {
      const abs = path.resolve(p);
      byDir.set(path.dirname(abs), [...(byDir.get(path.dirname(abs)) ?? []), path.basename(abs)]);
    }
    for (const [dir, names] of byDir) {
      const chunks: Buffer[] = [];
      for await (const c of tar.c({ cwd: dir, portable: true }, names) as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
      const r = await this.exec(name, ["tar", "-x", "-C", guestDir, "-f", "-"], { stdin: Buffer.concat(chunks), timeoutMs: opts.timeoutMs });
      if (r.exitCode !== 0) throw new RemoteError(name, "tar -x", r.stderr.trim().slice(0, 300) || `exit ${r.exitCode}`, r.exitCode);
    }
  }

  /** Copy a guest file or folder to `hostPath` (base64 of a tar stream: the command path carries text). */
  async copyOut(name: string, guestPath: string, hostPath: string, opts: { timeoutMs: number }): Promise<void> {
    const r = await this.exec(name, ["sh", "-c", 'cd "$(dirname "$1")" && tar -c -f - -- "$(basename "$1")" | base64', "fabrik-copy-out", guestPath], { timeoutMs: opts.timeoutMs });
    if (r.exitCode !== 0) throw new RemoteError(name, "tar -c", r.stderr.trim().slice(0, 300) || `exit ${r.exitCode}`, r.exitCode);
    const tar = await import("tar");
    const staging = fs.mkdtempSync(path.join(path.dirname(path.resolve(hostPath)), ".fabrik-copy-"));
    try {
      const archive = Buffer.from(r.stdout.replace(/\s+/g, ""), "base64");
      await new Promise<void>((resolve, reject) => {
        const x = tar.x({ cwd: staging, preservePaths: false });
        x.on("error", reject);
        x.on("close", () => resolve());
        x.end(archive);
      });
      const [entry] = fs.readdirSync(staging);
      if (!entry) throw new RemoteError(name, "tar -c", `nothing to copy at ${guestPath}`);
      fs.renameSync(path.join(staging, entry), hostPath);
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  /** `vm shell`: argv (or a login shell) with this process's terminal attached; the guest's exit status. */
  async shell(name: string, argv: readonly string[] | undefined, opts: { cwd?: string | undefined }): Promise<number> {
    const link = await this.link(this.must(name));
    return await link.transport.attached(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }, { cwd: opts.cwd, connectTimeoutMs: this.connectTimeoutMs * 2 });
  }

  /**
   * Undefined on purpose: a bare target would let a session open a second connection WITHOUT this driver's host-key
   * verification. Sessions borrow the driver's own transport through {@link sessionTransport} instead.
   */
  async sshTarget(): Promise<SshTarget | undefined> {
    return undefined;
  }
}
