// End-to-end tests of the persistent SSH transport (src/vm/transport/) and VmSession (src/vm/session.ts)
// against a stand-in Lima VM's REAL OpenSSH sshd (scripts/limactl-standin). Needs root (namespaces) and sshd.
// One VM per file, in a private LIMA_HOME; it is powered off in afterAll.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import vm from "node:vm";
import { SshTransport } from "../../vm/transport/index.js";
import { openVmSession, type FileFollower } from "../../vm/session.js";
import { LimaDriver, parseSshConfig } from "../../vm/lima-driver.js";
import { probeVm } from "../../vm/probe.js";
import { MemoryGuestInstallCache, loadGuestProgram } from "../../vm/guest-programs.js";
import type { SshTarget } from "../../vm/driver.js";
import type { ProbeRequest } from "../../vm/probe-schema.js";
import { VmUnavailableError } from "../../core/errors.js";
import { attachRun } from "../helpers/attach.js";
import { createContext } from "../../fabrik/context.js";
import { memoryIo } from "../../fabrik/io.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";
import { ensureFixtures } from "../helpers/fixtures.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const STANDIN_DIR = path.join(REPO, "scripts/limactl-standin");
const VM = "sshtr";

const SKIP = missingPrereqs(...STANDIN, "tail");

let limaHome = "";
let target: SshTarget;
let driver: LimaDriver;
const cleanups: Array<() => void> = [];

async function limactl(args: string[], timeout = 60_000): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run("limactl", args, { env: process.env, timeoutMs: timeout });
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
}

function procArgv(pid: string): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** The sshd processes serving the VM: its listener and every per-connection sshd (same pid namespace). */
function sshdPids(): number[] {
  const dir = path.join(limaHome, VM);
  const init = fs.readFileSync(path.join(dir, "qemu.pid"), "utf8").trim();
  const ns = fs.readlinkSync(`/proc/${init}/ns/pid`);
  const cfg = path.join(dir, "sshd_config");
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const argv = procArgv(d);
    const listener = argv.includes(cfg) && argv.includes("[listener]");
    let sameNs = false;
    try {
      sameNs = fs.readlinkSync(`/proc/${d}/ns/pid`) === ns;
    } catch {
      /* gone */
    }
    if (listener || (sameNs && argv.startsWith("sshd:"))) out.push(Number(d));
  }
  return out;
}

function killSshd(): number {
  const pids = sshdPids();
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  return pids.length;
}

/**
 * Run a shell script detached in the guest (its own session, started through `limactl shell`), so that killing the
 * VM's sshd does not end it; resolves with its exit code, read from a status file it leaves in the guest home.
 */
async function detachedInGuest(script: string, ...args: string[]): Promise<number> {
  const status = `.writer-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const wrapped = `( ${script} ); echo $? > "$HOME/${status}.tmp" && mv "$HOME/${status}.tmp" "$HOME/${status}"`;
  const r = await limactl(["--tty=false", "shell", "--workdir", "/", VM, "sh", "-c", 'setsid sh -c "$0" "$@" </dev/null >/dev/null 2>&1 &', wrapped, "writer", ...args]);
  if (r.status !== 0) throw new Error(`cannot start the writer in the guest: ${r.stderr}`);
  const file = path.join(limaHome, VM, "guest-home", status);
  const end = Date.now() + 60_000;
  while (!fs.existsSync(file)) {
    if (Date.now() > end) throw new Error(`the guest writer did not finish within 60 s (${file})`);
    await sleep(50);
  }
  return Number(fs.readFileSync(file, "utf8").trim());
}

function rssMb(): number {
  return process.memoryUsage().rss / 1024 / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll an async condition every 100 ms until it holds or `timeoutMs` passes. */
async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The guest user (from `limactl list --json`: not root, as on Lima) and its home. */
let guest = { uid: 0, home: "" };

/**
 * A folder in the VM's guest home, owned by the guest user: `guest` is its path in the VM, `host` the same folder on
 * this host (the stand-in keeps the guest home in `$LIMA_HOME/<vm>/guest-home`). The VM's /tmp is its own, and
 * LIMA_HOME is not the guest user's, so test files shared with the guest live here.
 */
function guestFolder(sub: string): { guest: string; host: string } {
  const host = path.join(limaHome, VM, "guest-home", sub);
  fs.mkdirSync(host, { recursive: true });
  let d = host;
  while (d.startsWith(path.join(limaHome, VM, "guest-home") + "/")) {
    fs.chownSync(d, guest.uid, guest.uid);
    d = path.dirname(d);
  }
  return { guest: `${guest.home}/${sub}`, host };
}

/** Write a file into a {@link guestFolder}, owned by the guest user. */
function writeGuestFile(hostPath: string, text: string): void {
  fs.writeFileSync(hostPath, text);
  fs.chownSync(hostPath, guest.uid, guest.uid);
}

function request(controlDir: string): ProbeRequest {
  return { v: 1, runs: [{ key: "7", control_dir: controlDir, db_path: null, smithers_run_id: null }] };
}

describe.skipIf(SKIP)(titled("ssh transport against a stand-in VM's sshd", SKIP), () => {
  let controlDir = "";

  beforeAll(async () => {
    limaHome = fs.realpathSync(tempDir("sshtr-"));
    process.env.LIMA_HOME = limaHome;
    process.env.PATH = `${STANDIN_DIR}:${process.env.PATH ?? "/usr/bin:/bin"}`;
    const tpl = path.join(limaHome, "tiny.yaml");
    fs.writeFileSync(tpl, 'cpus: 1\nmemory: "1GiB"\n');
    let r = await limactl(["--tty=false", "create", "--name", VM, tpl]);
    expect(r.status, r.stderr).toBe(0);
    r = await limactl(["--tty=false", "start", VM]);
    expect(r.status, r.stderr).toBe(0);
    const t = parseSshConfig(fs.readFileSync(path.join(limaHome, VM, "ssh.config"), "utf8"));
    expect(t).toBeDefined();
    target = t!;
    driver = new LimaDriver({ limactl: "limactl", cacheDir: path.join(limaHome, "_fabrik-cache") });
    const user = (JSON.parse((await limactl(["list", "--json", VM])).stdout) as { config: { user: { uid: number; home: string } } }).config.user;
    guest = { uid: user.uid, home: user.home };
    expect(guest.uid).not.toBe(0);
    // Give the guest the repo's bun where the probe wrapper looks for an engine's bun (a VM without bun cannot
    // probe). The fixture engines (installed once under .cache/engines) bring it.
    await ensureFixtures();
    const engines = path.join(REPO, ".cache/engines");
    const candidates = [
      path.join(REPO, "node_modules/bun/bin/bun.exe"),
      ...(fs.existsSync(engines) ? fs.readdirSync(engines).map((v) => path.join(engines, v, ".runtime/node_modules/bun/bin/bun.exe")) : []),
    ];
    const bun = candidates.find((c) => fs.existsSync(c));
    expect(bun, `a bun among ${candidates.join(", ")}`).toBeDefined();
    if (bun) {
      // A hard link (a copy across filesystems), not a symlink: the checkout may live under /tmp, which the guest
      // does not see (its /tmp is its own), so a link to the host's path would dangle in the VM.
      const binDir = guestFolder(".fabrik/engines/test/.runtime/node_modules/.bin").host;
      const dest = path.join(binDir, "bun");
      try {
        fs.linkSync(bun, dest);
      } catch {
        fs.copyFileSync(bun, dest);
      }
      fs.chmodSync(dest, 0o755);
    }
    // A control dir the probe can look at, in the guest home.
    const ctl = guestFolder("ctl/reports");
    controlDir = path.dirname(ctl.guest);
    writeGuestFile(path.join(path.dirname(ctl.host), "exit_code"), "0\n");
    writeGuestFile(path.join(ctl.host, "smithers.log"), "hello\n");
  }, 600_000);

  afterAll(async () => {
    for (const c of cleanups) c();
    if (!limaHome) return;
    await run("ssh", ["-o", `ControlPath=${path.join(limaHome, VM, "ssh.sock")}`, "-O", "exit", "x"], { timeoutMs: 5000 });
    await limactl(["stop", "-f", VM], 30_000);
    for (const f of ["qemu.pid", "ha.pid"]) {
      try {
        process.kill(Number(fs.readFileSync(path.join(limaHome, VM, f), "utf8")), "SIGKILL");
      } catch {
        /* gone */
      }
    }
    fs.rmSync(limaHome, { recursive: true, force: true });
  });

  it("answers probes over one open channel (mean refresh printed) and matches a fresh limactl-shell probe", async () => {
    const t = new SshTransport(VM, target);
    cleanups.push(() => t.close());
    const first = await t.probe(request(controlDir), { timeoutMs: 20_000 });
    expect(first.runs[0]?.key).toBe("7");
    expect(first.runs[0]?.control?.exit_code).toBe(0);
    expect(first.runs[0]?.control?.log_size_bytes).toBe(6);

    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const r = await t.probe(request(controlDir), { timeoutMs: 5_000 });
      expect(r.runs.length).toBe(1);
    }
    const channelMean = (performance.now() - t0) / n;

    const m = 5;
    const t1 = performance.now();
    for (let i = 0; i < m; i++) {
      const r = await probeVm(driver, VM, request(controlDir), { timeoutMs: 20_000 });
      expect(r.runs[0]?.control?.exit_code).toBe(0);
    }
    const freshMean = (performance.now() - t1) / m;
    console.log(
      `[ssh-transport] probe tool=${first.tool}: mean refresh over the open channel ${channelMean.toFixed(2)} ms (${n} requests); ` +
        `fresh \`limactl shell\` probe ${freshMean.toFixed(0)} ms (${m} calls)`,
    );
    t.close();
    await expect(t.probe(request(controlDir), { timeoutMs: 1000 })).rejects.toBeInstanceOf(VmUnavailableError);
  });

  it("the serve channel installs the probe once per content hash; a stale install cache costs one restart", async () => {
    const program = loadGuestProgram("probe");
    const installed = path.join(limaHome, VM, "guest-home/.fabrik/guest", program.hash, "probe.js");
    fs.rmSync(path.dirname(installed), { recursive: true, force: true }); // the VM "lost" it
    const cache = new MemoryGuestInstallCache();
    cache.add(VM, program.hash); // …but the host believes it is there
    const t = new SshTransport(VM, target, { installCache: cache });
    cleanups.push(() => t.close());
    const r = await t.probe(request(controlDir), { timeoutMs: 20_000 });
    expect(r.runs[0]?.control?.exit_code).toBe(0);
    expect(fs.readFileSync(installed, "utf8")).toBe(program.text);
    expect(cache.has(VM, program.hash)).toBe(true);
    t.close();
    // A fresh channel now sends no program: still answers.
    const again = new SshTransport(VM, target, { installCache: cache });
    cleanups.push(() => again.close());
    expect((await again.probe(request(controlDir), { timeoutMs: 20_000 })).runs[0]?.key).toBe("7");
    again.close();
  });

  it("execs argv exactly (quoting, stdin, exit codes) and enforces deadlines", async () => {
    const t = new SshTransport(VM, target);
    cleanups.push(() => t.close());
    const hostile = ["a b", "'q'", '"dq"', "$HOME", "`id`", "x;y", "*", "", "tab\there", "new\nline"];
    const r = await t.exec(["sh", "-c", 'for a in "$@"; do printf "[%s]" "$a"; done; cat', "argv0", ...hostile], { stdin: "from stdin", timeoutMs: 10_000 });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(hostile.map((h) => `[${h}]`).join("") + "from stdin");
    expect((await t.exec(["sh", "-c", "echo oops >&2; exit 7"], { timeoutMs: 10_000 })).exitCode).toBe(7);
    expect((await t.exec(["sh", "-c", "echo oops >&2; exit 7"], { timeoutMs: 10_000 })).stderr).toBe("oops\n");
    expect((await t.exec(["hostname"], { timeoutMs: 10_000 })).stdout.trim()).toBe(`lima-${VM}`);
    const started = Date.now();
    await expect(t.exec(["sleep", "31"], { timeoutMs: 500 })).rejects.toBeInstanceOf(VmUnavailableError);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The deadline killed the remote command too (an SSH "signal" request), not only the local wait.
    let left = "1";
    const gone = async () => {
      left = (await t.exec(["sh", "-c", "ps -eo args | grep -c '^sleep 31$' || true"], { timeoutMs: 5_000 })).stdout.trim();
      return left === "0";
    };
    await waitUntil(gone, 20_000, "the remote `sleep 31` to be killed");
    expect(left).toBe("0");
    t.close();
  });

  it("keeps a fast command's exit status when its whole channel arrives in one read (no false `connection lost`)", async () => {
    // A relay that hands sshd's bytes to the client in batches, every 300 ms: a command that reads no stdin and ends
    // at once then has its channel confirmation, exit-status, EOF and close parsed in ONE read, before the awaited
    // channel reaches exec's listeners (ssh2 emits `exit` synchronously). The exit must still be seen.
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      let held: Buffer[] = [];
      const flush = setInterval(() => {
        if (held.length === 0) return;
        client.write(Buffer.concat(held));
        held = [];
      }, 300);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => {
          clearInterval(flush);
          sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      upstream.on("data", (d: Buffer) => held.push(d));
      client.pipe(upstream);
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      relay.close();
    });
    const t = new SshTransport(VM, { ...target, host: "127.0.0.1", port: (relay.address() as net.AddressInfo).port });
    cleanups.push(() => t.close());
    for (let i = 0; i < 3; i++) {
      expect((await t.exec(["true"], { timeoutMs: 20_000 })).exitCode).toBe(0);
      expect((await t.exec(["sh", "-c", "echo out; exit 7"], { timeoutMs: 20_000 })).exitCode).toBe(7);
    }
    let out = "";
    const h = await t.stream(["sh", "-c", "echo streamed; exit 3"], { onStdout: (c) => (out += c.toString()) });
    expect(await h.done).toBe(3);
    expect(out).toBe("streamed\n");
    t.close();
  });

  it("streams stdout, and kill() ends the remote command (watchdog)", async () => {
    const t = new SshTransport(VM, target);
    cleanups.push(() => t.close());
    let out = "";
    const h = await t.stream(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"], { onStdout: (c) => (out += c.toString()) });
    expect(await h.done).toBe(0);
    expect(out).toBe("1\n2\n3\n");

    const marker = `fabrik-stream-marker-${process.pid}`;
    let got = "";
    const h2 = await t.stream(["sh", "-c", `echo ${marker}; exec sleep 1000`], { onStdout: (c) => (got += c.toString()) });
    await waitFor(() => got.includes(marker), 5_000, "stream output");
    const alive = () => t.exec(["sh", "-c", "ps -eo args | grep -c '^sleep 1000$' || true"], { timeoutMs: 5_000 });
    expect((await alive()).stdout.trim()).toBe("1");
    h2.kill();
    await h2.done;
    let left = "1";
    await waitUntil(async () => (left = (await alive()).stdout.trim()) === "0", 20_000, "the streamed `sleep 1000` to be killed");
    expect(left).toBe("0");
    t.close();
  });

  it("reconnects after sshd (listener and per-connection processes) is killed mid-stream; followFile loses and repeats no byte", async () => {
    const notices: string[] = [];
    const session = await openVmSession(driver, VM, { preferSsh: true, onNotice: (m) => notices.push(m) });
    cleanups.push(() => session.close());
    expect(session.kind).toBe("ssh");

    const folder = guestFolder("follow");
    const file = `${folder.guest}/numbered.log`;
    const hostFile = path.join(folder.host, "numbered.log");
    writeGuestFile(hostFile, "line 0 (before following)\n");
    const received: Buffer[] = [];
    let lastOffset = 0;
    const follower: FileFollower = await session.followFile(file, 0, (chunk, newOffset) => {
      received.push(Buffer.from(chunk));
      expect(newOffset).toBe(lastOffset + chunk.length);
      lastOffset = newOffset;
    });

    // The writer runs detached in the guest (started through `limactl shell`), so killing sshd does not stop it.
    const lines = 4000;
    const writerDone = detachedInGuest('i=1; while [ $i -le "$2" ]; do echo "line $i of the numbered log"; i=$((i+1)); if [ $((i % 50)) -eq 0 ]; then sleep 0.02; fi; done >> "$1"', file, String(lines));

    // Probe once so the probe channel is open too, then kill every sshd of the VM twice while the log grows.
    await session.probe(request(controlDir), { timeoutMs: 10_000 });
    await waitFor(() => lastOffset > 2_000, 10_000, "some followed bytes");
    expect(killSshd()).toBeGreaterThanOrEqual(2);
    await sleep(1_200);
    await waitFor(() => notices.some((n) => /reconnected/.test(n)), 15_000, "a reconnect notice");
    const r = await session.probe(request(controlDir), { timeoutMs: 10_000 });
    expect(r.runs[0]?.control?.exit_code).toBe(0);
    expect(killSshd()).toBeGreaterThanOrEqual(2);

    expect(await writerDone).toBe(0);
    const expected = fs.readFileSync(hostFile);
    await waitFor(() => lastOffset >= expected.length, 30_000, "the follower to catch up");
    await sleep(300);
    const got = Buffer.concat(received);
    follower.stop();
    await follower.done;
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
    expect(follower.offset).toBe(expected.length);
    expect(follower.restarts).toBeGreaterThanOrEqual(1);
    expect(notices.some((n) => n.startsWith(`connection to VM ${VM} lost (`) && n.endsWith("reconnecting…"))).toBe(true);
    expect(notices.some((n) => /^reconnected to VM \S+ after \d+ attempts?$/.test(n))).toBe(true);
    console.log(`[ssh-transport] followed ${expected.length} bytes exactly once across ${follower.restarts} restart(s); notices: ${JSON.stringify(notices)}`);
    session.close();
  });

  it("attachRun over SSH prints every line exactly once across sshd kills, then the outcome", async () => {
    const fabrikHome = path.join(limaHome, "fabrik-home");
    const env = { ...process.env, FABRIK_HOME: fabrikHome, FABRIK_CONFIG: path.join(fabrikHome, "config.json") };
    const io = memoryIo();
    const ctx = await createContext({ io, env });
    cleanups.push(() => ctx.close());
    const reports = guestFolder("attach-ctl/reports");
    const dir = path.dirname(reports.guest);
    const log = path.join(reports.host, "smithers.log");
    writeGuestFile(log, "begin\n");
    const rec = ctx.registry().insertRun({
      vm: VM,
      driver: "lima",
      control_dir: dir,
      workflow_path: path.join(dir, "workflow", "wf.tsx"),
      smithers_run_id: "fabrik-1",
      smithers_db_path: path.join(dir, ".smithers", "run-1.db"),
      status: "running",
    });
    const attached = attachRun(ctx, { id: rec.id, tail: 50, follow: true, exitStatus: true });
    await waitFor(() => io.out().includes("begin\n"), 20_000, "the tail");
    const lines = 3000;
    const writerDone = detachedInGuest(
      'i=1; while [ $i -le "$2" ]; do echo "attach line $i"; i=$((i+1)); if [ $((i % 100)) -eq 0 ]; then sleep 0.05; fi; done >> "$1/reports/smithers.log"; echo 1 > "$1/exit_code"',
      dir,
      String(lines),
    );
    await waitFor(() => io.out().length > 5_000, 20_000, "followed output");
    expect(killSshd()).toBeGreaterThanOrEqual(2);
    await waitFor(() => /reconnected/.test(io.err()), 20_000, "a reconnect");
    expect(killSshd()).toBeGreaterThanOrEqual(2);
    expect(await writerDone).toBe(0);
    const code = await attached;
    expect(code).toBe(8); // exit_code 1, no DB → failed → RUN_FAILED
    expect(io.out()).toBe(fs.readFileSync(log, "utf8"));
    expect(io.err()).toMatch(new RegExp(`fabrik: connection to VM ${VM} lost \\(.*\\); reconnecting…`));
    expect(io.err()).toMatch(/fabrik: reconnected to VM \S+ after \d+ attempts?/);
    expect(io.err().trim().split("\n").at(-1)).toBe(`fabrik: run ${rec.id} finished: failed (exit 1)`);
    console.log(`[ssh-transport] attach over SSH: ${lines + 1} lines exactly once; stderr: ${JSON.stringify(io.err())}`);
  });

  it("keeps memory flat over 2500 probe requests", async () => {
    const t = new SshTransport(VM, target);
    cleanups.push(() => t.close());
    for (let i = 0; i < 500; i++) await t.probe(request(controlDir), { timeoutMs: 5_000 });
    const ch = (t as unknown as { probes: { channel: { ch: NodeJS.EventEmitter & { stderr: NodeJS.EventEmitter } } } }).probes.channel.ch;
    const listeners = () => [ch.listenerCount("data"), ch.listenerCount("close"), ch.stderr.listenerCount("data")].join(",");
    const listenersBefore = listeners();
    // A real full GC before each reading, so the numbers show retained memory rather than garbage not yet collected.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as (() => void) | undefined;
    gc?.();
    const heapStart = process.memoryUsage().heapUsed / 1048576;
    const start = rssMb();
    const n = 2500;
    const t0 = performance.now();
    let mid = 0;
    for (let i = 0; i < n; i++) {
      await t.probe(request(controlDir), { timeoutMs: 5_000 });
      if (i === n / 2) {
        gc?.();
        mid = rssMb();
      }
    }
    const ms = performance.now() - t0;
    gc?.();
    const end = rssMb();
    const heapEnd = process.memoryUsage().heapUsed / 1048576;
    console.log(
      `[ssh-transport] RSS ${start.toFixed(1)} MB → ${mid.toFixed(1)} MB (half-way) → ${end.toFixed(1)} MB, heap ${heapStart.toFixed(1)} → ${heapEnd.toFixed(1)} MB over ${n} probes ` +
        `(mean ${(ms / n).toFixed(2)} ms${gc ? ", gc before each reading" : ", no --expose-gc"})`,
    );
    expect(listeners()).toBe(listenersBefore);
    expect(end - start).toBeLessThan(30);
    t.close();
  });
});
