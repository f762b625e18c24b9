/**
 * Real OpenSSH hosts for tests and benchmarks of fabrik's `ssh` driver (root only; Node builtins only).
 *
 * A "host" is an OpenSSH sshd on 127.0.0.1:<its own port>, running in a pid/mount/uts namespace of its own
 * (`host-init.sh` is its pid 1), with:
 * - its own user (a uid that exists nowhere else: the namespace sees a copy of /etc/passwd and /etc/group with
 *   that user added) and its own home, `/home/<user>` inside the host, which is the folder `<host dir>/home` here;
 * - its own ed25519 host key; key-only login (`PasswordAuthentication no`, `UsePAM no`, `AllowUsers <user>`,
 *   `StrictModes yes`), the world's client key in `~/.ssh/authorized_keys`; no agent or X11 forwarding;
 *   TCP forwarding only for hosts made to be jump hosts;
 * - `LogLevel VERBOSE` to `<host dir>/sshd.log`: one `Accepted publickey` line per connection and one
 *   `Starting session` line per channel, which is how tests and the bench count what fabrik did.
 *
 * Powering a host off SIGKILLs its `unshare` parent (`--kill-child`): every process of the host dies at once and its
 * connections drop, like pulling the plug. Starting it again keeps its port, home, user and (unless asked) host key.
 *
 * Used by src/__tests__/helpers/ssh-fleet.ts (e2e) and scripts/bench/ssh-scale.mjs (the 50-host benchmark).
 */
import { spawn, spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const HOST_INIT = path.join(HERE, "host-init.sh");
export const SSHD = process.env.FABRIK_TEST_SSHD || "/usr/sbin/sshd";

/** Why test hosts cannot run here, or undefined. */
export function sshHostsUnavailable() {
  if (process.getuid?.() !== 0) return "test SSH hosts need root (namespaces, a user per host)";
  if (!fs.existsSync(SSHD)) return `no sshd at ${SSHD} (apt-get install openssh-server)`;
  for (const tool of ["unshare", "ssh-keygen"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is missing`;
  }
  return undefined;
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err.trim()}`))));
  });
}

/** The kernel's ephemeral port range (outgoing connections take their local ports from it). */
function ephemeralRange() {
  try {
    const [lo, hi] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    /* not Linux */
  }
  return [32768, 60999];
}

function bindable(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * A free TCP port on 127.0.0.1 BELOW the ephemeral range: a host keeps its port across restarts, and a port in the
 * ephemeral range could meanwhile be the local end of some outgoing connection (sshd could then not bind it).
 * Random, and checked by binding it (another process could still take it; tests tolerate that).
 */
export async function freePort() {
  const [lo] = ephemeralRange();
  const min = 10_000;
  const max = Math.max(min + 1000, lo - 1);
  for (let i = 0; i < 200; i++) {
    const port = randomInt(min, max);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${min}..${max}`);
}

/** Resolves once 127.0.0.1:port answers with an SSH banner; rejects after `timeoutMs`. */
export async function waitForBanner(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, "127.0.0.1");
      const t = setTimeout(() => {
        sock.destroy();
        resolve(false);
      }, 1000);
      sock.once("data", (d) => {
        clearTimeout(t);
        sock.destroy();
        resolve(d.toString("latin1").startsWith("SSH-"));
      });
      sock.once("error", () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`no SSH banner on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A world of test hosts under `dir`: a client key pair (`client/id_ed25519`), an empty known_hosts file
 * (`client/known_hosts`) and a HOME for fabrik (`client/home`, so nothing touches the real `~/.ssh`).
 */
export async function createWorld(dir) {
  const client = path.join(dir, "client");
  // The world is traversable (a bare host's tools live in it); only the client's files are private.
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(path.join(client, "home"), { recursive: true, mode: 0o700 });
  const key = path.join(client, "id_ed25519");
  if (!fs.existsSync(key)) await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fabrik-test-client", "-f", key]);
  const knownHosts = path.join(client, "known_hosts");
  if (!fs.existsSync(knownHosts)) fs.writeFileSync(knownHosts, "", { mode: 0o600 });
  return { dir, key, knownHosts, home: path.join(client, "home"), clientPub: fs.readFileSync(`${key}.pub`, "utf8") };
}

function passwdWithUser(user, uid, gid, home) {
  const passwd = fs.readFileSync("/etc/passwd", "utf8").replace(/\n?$/, "\n") + `${user}:*:${uid}:${gid}:fabrik test host:${home}:/bin/bash\n`;
  const group = fs.readFileSync("/etc/group", "utf8").replace(/\n?$/, "\n") + `${user}:x:${gid}:\n`;
  return { passwd, group };
}

function sshdConfig(h, opts) {
  const lines = [
    `# fabrik test host ${h.name} (scripts/ssh-hosts/ssh-hosts.mjs)`,
    `Port ${h.port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${h.dir}/ssh_host_ed25519_key`,
    `PidFile ${h.dir}/sshd.pid`,
    "AuthorizedKeysFile .ssh/authorized_keys",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "PermitRootLogin no",
    `AllowUsers ${h.user}`,
    "StrictModes yes",
    `AllowAgentForwarding ${opts.agentForwarding ? "yes" : "no"}`,
    `AllowTcpForwarding ${opts.jumpHost ? "yes" : "no"}`,
    "X11Forwarding no",
    "PermitTunnel no",
    "PrintMotd no",
    "PrintLastLog no",
    "UseDNS no",
    "MaxStartups 200",
    "LogLevel VERBOSE",
  ];
  // A bare machine: its sessions see only a few tools (no node, npm or bun), as on a fresh server.
  if (opts.bare) lines.push(`SetEnv PATH=${h.dir}/bare-bin`);
  return lines.join("\n") + "\n";
}

/**
 * Create (not start) host `name` in `world`.
 * @param opts.engines `{ "0.32.0": <engine install dir>, … }` hard-linked into `~/.fabrik/engines/<v>` (same filesystem).
 * @param opts.bare sessions get a PATH with sh, bash and coreutils-like tools only: no node, npm, bun.
 * @param opts.port the port (default: a free one); it stays the host's across restarts.
 * @param opts.jumpHost allow TCP forwarding (a jump host).
 * @param opts.agentForwarding let sshd accept agent forwarding (to show the client never asks for it).
 * @param opts.authorize put the world's client key in authorized_keys (default true).
 */
export async function createHost(world, name, opts = {}) {
  const dir = path.join(world.dir, "hosts", name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const uid = randomInt(100_000, 1_000_000_000);
  const user = `fh-${name}`.slice(0, 31);
  const guestHome = `/home/${user}`;
  const h = { name, dir, user, uid, gid: uid, guestHome, hostHome: path.join(dir, "home"), port: opts.port ?? (await freePort()), opts: { bare: Boolean(opts.bare), jumpHost: Boolean(opts.jumpHost), agentForwarding: Boolean(opts.agentForwarding) }, hostKeyPub: "" };
  const { passwd, group } = passwdWithUser(user, uid, uid, guestHome);
  fs.writeFileSync(path.join(dir, "passwd"), passwd, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, "group"), group, { mode: 0o644 });
  await newHostKey(h);
  // The home: owned by the user, .ssh 0700, authorized_keys 0600 (StrictModes yes checks all of it).
  const ssh = path.join(h.hostHome, ".ssh");
  fs.mkdirSync(ssh, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(ssh, "authorized_keys"), opts.authorize === false ? "" : world.clientPub, { mode: 0o600 });
  const fab = path.join(h.hostHome, ".fabrik");
  fs.mkdirSync(path.join(fab, "engines"), { recursive: true, mode: 0o755 });
  for (const p of [h.hostHome, ssh, path.join(ssh, "authorized_keys"), fab, path.join(fab, "engines")]) fs.chownSync(p, uid, uid);
  fs.chmodSync(h.hostHome, 0o755);
  for (const [version, src] of Object.entries(opts.engines ?? {})) {
    // Hard links: the same files as the source install (read-only to the user: engines are never written after install).
    await run("cp", ["-al", src, path.join(fab, "engines", version)]);
  }
  if (opts.bare) makeBareBin(h);
  fs.writeFileSync(path.join(dir, "sshd_config"), sshdConfig(h, opts), { mode: 0o644 });
  saveHost(h);
  return h;
}

/** Persist `h` (`<host dir>/host.json`): a host outlives the process that created it (e.g. a test file's worker). */
function saveHost(h) {
  fs.writeFileSync(path.join(h.dir, "host.json"), JSON.stringify(h, null, 1) + "\n");
}

/** Host `name` of `world` as created (and last started) by any process; undefined when it was never created. */
export function loadHost(world, name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(world.dir, "hosts", name, "host.json"), "utf8"));
  } catch {
    return undefined;
  }
}

/** Make `h` a bare machine (sessions see no node, npm or bun) or a normal one again; takes effect at its next start. */
export function setBare(h, bare) {
  h.opts = { ...h.opts, bare };
  if (bare) makeBareBin(h);
  fs.writeFileSync(path.join(h.dir, "sshd_config"), sshdConfig(h, h.opts), { mode: 0o644 });
  saveHost(h);
}

function makeBareBin(h) {
  const bin = path.join(h.dir, "bare-bin");
  if (fs.existsSync(bin)) return;
  fs.mkdirSync(bin, { recursive: true });
  for (const t of ["sh", "bash", "cat", "mkdir", "mv", "rm", "ln", "chmod", "date", "dirname", "basename", "uname", "tar", "tail", "setsid", "flock", "kill", "env", "sleep", "ls", "head", "printf"]) {
    const found = spawnSync("sh", ["-c", `command -v ${t}`], { encoding: "utf8" }).stdout.trim();
    if (found.startsWith("/")) fs.symlinkSync(found, path.join(bin, t));
  }
}

/** The pid of `h`'s unshare (its power switch) when the host is running, else undefined. */
export function runningPid(h) {
  let pid;
  try {
    pid = Number(fs.readFileSync(path.join(h.dir, "unshare.pid"), "utf8"));
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmd.includes(HOST_INIT) && cmd.includes(h.dir)) return pid;
  } catch {
    /* not running */
  }
  return undefined;
}

/** Give `h` a new ed25519 host key (as a reinstalled machine would have). */
export async function newHostKey(h) {
  const key = path.join(h.dir, "ssh_host_ed25519_key");
  fs.rmSync(key, { force: true });
  fs.rmSync(`${key}.pub`, { force: true });
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `fabrik-test-host-${h.name}`, "-f", key]);
  h.hostKeyPub = fs.readFileSync(`${key}.pub`, "utf8").trim();
  if (fs.existsSync(path.join(h.dir, "host.json"))) saveHost(h);
}

/** The known_hosts line for `h` (`[127.0.0.1]:port ssh-ed25519 AAAA…`). */
export function knownHostsLine(h) {
  const [type, b64] = h.hostKeyPub.split(/\s+/);
  return `[127.0.0.1]:${h.port} ${type} ${b64}`;
}

/** Append `h`'s host key to the world's known_hosts (what a user does after checking the fingerprint). */
export function trustHost(world, h) {
  fs.appendFileSync(world.knownHosts, knownHostsLine(h) + "\n");
}

/** Start (power on) `h` and wait for its SSH banner. A running host is left alone. */
export async function startHost(h, { timeoutMs = 15_000 } = {}) {
  if (runningPid(h)) return;
  const sshdTest = spawnSync(SSHD, ["-t", "-f", path.join(h.dir, "sshd_config")], { encoding: "utf8" });
  if (sshdTest.status !== 0) throw new Error(`sshd rejected ${h.dir}/sshd_config: ${sshdTest.stderr.trim()}`);
  // `detached` puts unshare in a session of its own (no setsid(1): it would fork, and the pid would not be unshare's).
  const child = spawn(
    "unshare",
    ["--kill-child=SIGKILL", "--pid", "--mount", "--uts", "--fork", "--mount-proc", "--propagation", "private", "/bin/bash", HOST_INIT, h.dir, h.user, h.guestHome, SSHD, h.name],
    { detached: true, stdio: "ignore" },
  );
  child.unref();
  fs.writeFileSync(path.join(h.dir, "unshare.pid"), String(child.pid));
  try {
    await waitForBanner(h.port, timeoutMs);
  } catch (err) {
    const log = fs.existsSync(path.join(h.dir, "init.log")) ? fs.readFileSync(path.join(h.dir, "init.log"), "utf8") : "";
    throw new Error(`${err.message}${log ? `\n${log}` : ""}`);
  }
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Power `h` off: SIGKILL its unshare, which SIGKILLs the host's pid 1 and so every process of the host. */
export async function stopHost(h, { timeoutMs = 10_000 } = {}) {
  const pid = runningPid(h);
  if (pid) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  // Down once the namespace's last process is gone and the port closed.
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!runningPid(h) && !(await portOpen(h.port))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`host ${h.name} (port ${h.port}) did not go down within ${timeoutMs} ms`);
}

/** Pids of the processes in `h`'s pid namespace whose command is sshd (the listener and every session). */
function sshdPids(h) {
  const init = runningPid(h);
  if (!init) return [];
  let ns;
  try {
    // unshare's child is the host's pid 1; its pid namespace is the host's.
    const child = fs.readFileSync(`/proc/${init}/task/${init}/children`, "utf8").trim().split(/\s+/)[0];
    ns = fs.readlinkSync(`/proc/${child}/ns/pid`);
  } catch {
    return [];
  }
  const out = [];
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/pid`) !== ns) continue;
      if (fs.readFileSync(`/proc/${e}/comm`, "utf8").trim() === "sshd") out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * A network outage of `h`: its sshd (listener and sessions) is killed and kept down, so every connection drops and
 * new ones are refused, while everything else on the host (runs, engines) goes on. {@link sshdUp} ends it.
 */
export async function sshdDown(h, { timeoutMs = 10_000 } = {}) {
  fs.writeFileSync(path.join(h.dir, "sshd.hold"), "");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const pid of sshdPids(h)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    if (sshdPids(h).length === 0 && !(await portOpen(h.port))) return;
    if (Date.now() > deadline) throw new Error(`sshd of host ${h.name} did not stay down`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** End the outage {@link sshdDown} made: sshd starts again (same port and key); resolves once it answers. */
export async function sshdUp(h, { timeoutMs = 15_000 } = {}) {
  fs.rmSync(path.join(h.dir, "sshd.hold"), { force: true });
  await waitForBanner(h.port, timeoutMs);
}

/** Synchronous power-off of hosts (exit handlers). */
export function stopAllSync(hosts) {
  for (const h of hosts) {
    const pid = runningPid(h);
    try {
      if (pid) process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

/** What `h`'s sshd logged so far: connections accepted and sessions (channels) started, for counting. */
export function sshdActivity(h) {
  let text = "";
  try {
    text = fs.readFileSync(path.join(h.dir, "sshd.log"), "utf8");
  } catch {
    /* none yet */
  }
  const lines = text.split("\n");
  return {
    logins: lines.filter((l) => l.includes("Accepted publickey for ")).length,
    sessions: lines.filter((l) => /Starting session: (command|shell)/.test(l)).length,
    forwards: lines.filter((l) => /direct-tcpip|forwarded to/i.test(l)).length,
    text,
  };
}

/** The host path of a guest path of `h` (`/home/<user>/x` → `<host dir>/home/x`); other paths are the same here. */
export function hostPathOf(h, guestPath) {
  if (guestPath === h.guestHome || guestPath.startsWith(`${h.guestHome}/`)) return path.join(h.hostHome, guestPath.slice(h.guestHome.length));
  return guestPath;
}
