// End-to-end tests for the limactl stand-in (scripts/limactl-standin/limactl).
// The stand-in turns Linux namespaces into "VMs" (own pid space, mounts, guest home, sshd),
// so these tests need root and OpenSSH's sshd. Each run uses a private temporary LIMA_HOME
// and SIGKILLs every VM init it started in afterAll. Every command runs asynchronously.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { STANDIN, missingPrereqs, onPath, titled } from "../helpers/prereq.js";
import { spawn } from "node:child_process";
import { run, sleep, waitFor } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

const STANDIN_DIR = fileURLToPath(new URL("../../../scripts/limactl-standin/", import.meta.url));
const LIMACTL = path.join(STANDIN_DIR, "limactl");

const SKIP = missingPrereqs(...STANDIN);
const TITLE = titled("limactl stand-in", SKIP);

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

let limaHome = "";
let workDir = "";

/**
 * The guest user the stand-in models (Lima's guest user is the host user; as root, which Lima refuses, the stand-in
 * takes the user who ran sudo, else Lima's fallback user `lima`, uid 1000: pkg/osutil/user.go:92-96).
 */
const GUEST = (() => {
  const su = process.env.SUDO_USER;
  if (process.getuid?.() !== 0) return { name: os.userInfo().username, uid: process.getuid!() };
  if (su && su !== "root" && Number(process.env.SUDO_UID) > 0) return { name: su, uid: Number(process.env.SUDO_UID) };
  return { name: "lima", uid: 1000 };
})();
const GUEST_HOME = `/home/${GUEST.name}.guest`;
/** Debian's PATH for a non-root login shell (/etc/profile): no sbin. */
const DEBIAN_USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LIMA_HOME: limaHome,
    PATH: `${STANDIN_DIR}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    LIMACTL_STANDIN_LATENCY_MS: "",
    LIMACTL_STANDIN_CALL_LOG: "",
    LIMACTL_STANDIN_VERSION: "",
    ...extra,
  };
}

async function limactl(args: string[], opts: { input?: string; env?: Record<string, string>; timeout?: number } = {}): Promise<Run> {
  const e = env(opts.env);
  // `limactl` resolved on the test's PATH (the stand-in first), as a user would run it.
  const r = await run("limactl", args, { env: e, input: opts.input ?? "", timeoutMs: opts.timeout ?? 30_000, cwd: workDir });
  return { status: r.signal ? null : r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: r.ms };
}

function sh(inst: string, script: string, opts: { input?: string } = {}): Promise<Run> {
  return limactl(["--tty=false", "shell", "--workdir", "/", inst, "bash", "-c", script], opts);
}

async function ssh(inst: string, command: string, extra: string[] = []): Promise<Run> {
  const cfg = path.join(limaHome, inst, "ssh.config");
  const r = await run("ssh", ["-F", cfg, ...extra, `lima-${inst}`, command], { timeoutMs: 20_000 });
  return { status: r.signal ? null : r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: r.ms };
}

async function listJson(names: string[] = []): Promise<Record<string, any>[]> {
  const r = await limactl(["list", "--json", ...names]);
  return r.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, any>);
}

/** arr[i], failing the test when it is missing */
function at<T>(arr: readonly T[], i: number): T {
  const v = arr[i];
  if (v === undefined) throw new Error(`missing element ${i} in ${JSON.stringify(arr)}`);
  return v;
}

async function inspect(name: string): Promise<Record<string, any>> {
  return at(await listJson([name]), 0);
}

function pidAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** host pids whose argv matches `pred` */
function findProcs(pred: (argv: string[]) => boolean): number[] {
  const res: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (pred(argv) && pidAlive(Number(d))) res.push(Number(d));
    } catch {
      // gone
    }
  }
  return res;
}

async function killAllVMs(): Promise<void> {
  if (!limaHome || !fs.existsSync(limaHome)) return;
  for (const name of fs.readdirSync(limaHome)) {
    const dir = path.join(limaHome, name);
    const sock = path.join(dir, "ssh.sock");
    if (fs.existsSync(sock)) await run("ssh", ["-o", `ControlPath=${sock}`, "-O", "exit", "x"], { timeoutMs: 5000 });
    for (const f of ["qemu.pid", "ha.pid"]) {
      try {
        const pid = Number(fs.readFileSync(path.join(dir, f), "utf8").trim());
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (pid > 0 && argv.includes(dir)) process.kill(pid, "SIGKILL");
      } catch {
        // not running
      }
    }
  }
  // any init still around for this LIMA_HOME (e.g. a start that was interrupted)
  for (const pid of findProcs((argv) => argv.some((a) => a.endsWith("vm-init.sh")) && argv.some((a) => a.startsWith(limaHome)))) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

const TEMPLATE = `# tiny template for the limactl stand-in tests
minimumLimaVersion: "2.0.0"
cpus: 1
memory: "1GiB"
disk: "2GiB"
containerd:
  system: false
  user: false
provision:
- mode: system
  script: |
    #!/bin/bash
    cpus: 99
`;

describe.skipIf(SKIP)(TITLE, () => {
  beforeAll(() => {
    limaHome = tempDir("lima-standin-");
    workDir = tempDir("lima-standin-work-");
    fs.writeFileSync(path.join(workDir, "tiny.yaml"), TEMPLATE);
    fs.writeFileSync(path.join(workDir, "bravo.yaml"), TEMPLATE);
  });

  afterAll(async () => {
    await killAllVMs();
    await sleep(100);
    for (const d of [limaHome, workDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it("prints its version and honours LIMACTL_STANDIN_VERSION", async () => {
    const r = await limactl(["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("limactl version 2.2.0\n");
    const old = await limactl(["--version"], { env: { LIMACTL_STANDIN_VERSION: "1.0.0" } });
    expect(old.stdout).toBe("limactl version 1.0.0\n");
  });

  it("adds LIMACTL_STANDIN_LATENCY_MS and appends to LIMACTL_STANDIN_CALL_LOG", async () => {
    const base = (await limactl(["--version"])).ms;
    const slow = await limactl(["--version"], { env: { LIMACTL_STANDIN_LATENCY_MS: "700" } });
    expect(slow.status).toBe(0);
    expect(slow.ms).toBeGreaterThanOrEqual(700);
    expect(slow.ms).toBeGreaterThan(base);

    const logFile = path.join(workDir, "calls.jsonl");
    await limactl(["--version"], { env: { LIMACTL_STANDIN_CALL_LOG: logFile } });
    await limactl(["list", "--json", "a b"], { env: { LIMACTL_STANDIN_CALL_LOG: logFile } });
    const lines = fs.readFileSync(logFile, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    const calls = lines.map((l) => JSON.parse(l) as { ts: string; argv: string[] });
    expect(at(calls, 0).argv).toEqual(["--version"]);
    expect(at(calls, 1).argv).toEqual(["list", "--json", "a b"]);
    expect(Number.isNaN(Date.parse(at(calls, 0).ts))).toBe(false);
  });

  it("reports no instances on an empty LIMA_HOME", async () => {
    const r = await limactl(["list", "--json"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('level=warning msg="No instance found. Run `limactl create` to create an instance."');
  });

  it("rejects unknown flags and reports errors logrus-style", async () => {
    const r = await limactl(["list", "--bogus"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^time="[^"]+Z" level=fatal msg="unknown flag: --bogus"\n$/);
    const j = await limactl(["--log-format", "json", "shell", "nope", "true"]);
    expect(j.status).toBe(1);
    const line = JSON.parse(j.stderr.trim()) as Record<string, string>;
    expect(Object.keys(line)).toEqual(["level", "msg", "time"]);
    expect(line.level).toBe("fatal");
    expect(line.msg).toBe("instance `nope` does not exist, run `limactl create nope` to create a new instance");
  });

  it("creates instances from a template file", async () => {
    // name derived from the file name
    const b = await limactl(["--tty=false", "create", "./bravo.yaml"]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toBe("");
    expect(b.stderr).toContain("Run `limactl start bravo` to start the instance.");

    const a = await limactl(["create", "--tty=false", "--name", "alpha", "--cpus", "2", "tiny.yaml"]);
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout).toBe("");
    expect(fs.readFileSync(path.join(limaHome, "alpha", "lima.yaml"), "utf8")).toContain('memory: "1GiB"');
    expect(fs.readFileSync(path.join(limaHome, "alpha", "lima-version"), "utf8")).toBe("v2.2.0");

    const again = await limactl(["create", "--name", "alpha", "tiny.yaml"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('level=fatal msg="instance `alpha` already exists"');

    const bad = await limactl(["create", "--name", "no/slash", "tiny.yaml"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("is not a valid identifier");

    const stdinNoName = await limactl(["create", "-"], { input: TEMPLATE });
    expect(stdinNoName.status).toBe(1);
    expect(stdinNoName.stderr).toContain("must pass instance name with --name when reading template from stdin");
  });

  it("lists instances as JSON Lines in Lima's shape and order", async () => {
    const r = await limactl(["list", "--json"]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\{"name":"alpha",/);
    expect(lines[1]).toMatch(/^\{"name":"bravo",/);
    const objs = lines.map((l) => JSON.parse(l) as Record<string, any>);
    const a = at(objs, 0);
    const b = at(objs, 1);
    const realHome = fs.realpathSync(limaHome);
    expect(Object.keys(a)).toEqual([
      "name", "hostname", "status", "dir", "vmType", "arch", "cpus", "memory", "disk",
      "sshConfigFile", "config", "sshAddress", "protected", "limaVersion",
      "HostOS", "HostArch", "LimaHome", "IdentityFile",
    ]);
    expect(a).toMatchObject({
      name: "alpha",
      hostname: "lima-alpha",
      status: "Stopped",
      dir: path.join(realHome, "alpha"),
      vmType: "qemu",
      arch: os.machine(),
      cpus: 2,
      memory: 1024 ** 3,
      disk: 2 * 1024 ** 3,
      sshConfigFile: path.join(realHome, "alpha", "ssh.config"),
      sshAddress: "127.0.0.1",
      protected: false,
      limaVersion: "v2.2.0",
      HostOS: "linux",
      LimaHome: realHome,
      IdentityFile: path.join(realHome, "_config", "user"),
    });
    expect(a.config.user).toEqual({ name: GUEST.name, comment: expect.any(String), home: GUEST_HOME, shell: "/bin/bash", uid: GUEST.uid });
    expect(a.config).toMatchObject({ vmType: "qemu", cpus: 2, memory: "1GiB", disk: "2GiB", ssh: { localPort: 0 } });
    expect(b.cpus).toBe(1); // the `cpus: 99` inside the provision script is not a top-level key

    // named: argument order; --format json == --json; {{json .}} too
    expect((await listJson(["bravo", "alpha"])).map((o) => o.name)).toEqual(["bravo", "alpha"]);
    expect((await limactl(["list", "--format", "json"])).stdout).toBe(r.stdout);
    expect((await limactl(["list", "--format", "{{json .}}"])).stdout).toBe(r.stdout);

    const miss = await limactl(["list", "--json", "alpha", "nope"]);
    expect(miss.status).toBe(1);
    expect(miss.stdout).toMatch(/^\{"name":"alpha",.*\}\n$/);
    expect(miss.stderr).toContain('level=warning msg="No instance matching nope found."');
    expect(miss.stderr).toContain('level=fatal msg="unmatched instances"');

    const table = await limactl(["list"]);
    expect(at(table.stdout.split("\n"), 0).split(/\s+/)).toEqual(["NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR"]);
  });

  it("refuses to shell into a stopped instance", async () => {
    const r = await limactl(["--tty=false", "shell", "--workdir", "/", "alpha", "true"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('level=fatal msg="instance `alpha` is stopped, run `limactl start alpha` to start the instance"');
  });

  it("starts both instances", async () => {
    for (const name of ["alpha", "bravo"]) {
      const r = await limactl(["--tty=false", "start", "--timeout", "30s", name], { timeout: 40_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`READY. Run \`limactl shell ${name}\` to open the shell.`);
      const o = await inspect(name);
      expect(o.status).toBe("Running");
      expect(o.hostAgentPID).toBeGreaterThan(0);
      expect(o.driverPID).toBeGreaterThan(0);
      expect(o.sshLocalPort).toBeGreaterThan(0);
      expect(pidAlive(o.driverPID)).toBe(true);
      const cfgPath = path.join(limaHome, name, "ssh.config");
      expect(fs.statSync(cfgPath).mode & 0o777).toBe(0o600);
      const cfg = fs.readFileSync(cfgPath, "utf8");
      expect(cfg).toContain(`Host lima-${name}\n`);
      expect(cfg).toContain(`  ControlPath "${path.join(fs.realpathSync(limaHome), name, "ssh.sock")}"\n`);
      expect(cfg).toContain(`  Hostname 127.0.0.1\n  Port ${o.sshLocalPort}\n`);
    }
    const again = await limactl(["start", "alpha"]);
    expect(again.status).toBe(0);
    expect(again.stderr).toContain("The instance `alpha` is already running.");
  }, 90_000);

  it("passes exit codes, stdout/stderr and stdin through", async () => {
    const hi = await limactl(["shell", "alpha", "echo", "hi"]);
    expect(hi).toMatchObject({ status: 0, stdout: "hi\n", stderr: "" });

    expect((await sh("alpha", "exit 42")).status).toBe(42);
    expect((await sh("alpha", "kill -9 $$")).status).toBe(255);

    const streams = await sh("alpha", "echo out; echo err >&2");
    expect(streams.stdout).toBe("out\n");
    expect(streams.stderr).toBe("err\n");

    const cat = await sh("alpha", "cat; echo done", { input: "line1\nline2\n" });
    expect(cat.stdout).toBe("line1\nline2\ndone\n");

    const heredoc = await limactl(["--tty=false", "shell", "--workdir", "/tmp", "alpha", "bash", "-s"], {
      input: 'echo "from stdin in $(pwd)"\nexit 3\n',
    });
    expect(heredoc.stdout).toBe("from stdin in /tmp\n");
    expect(heredoc.status).toBe(3);

    // one argument with a space is one word, like real Lima
    const oneWord = await limactl(["shell", "alpha", "echo hi"]);
    expect(oneWord.status).toBe(127);
    expect(oneWord.stderr).toContain("command not found");

    // a literal `--` right after the instance name is dropped
    expect((await limactl(["shell", "alpha", "--", "echo", "dd"])).stdout).toBe("dd\n");
  });

  it("preserves argv exactly (shellescape quoting)", async () => {
    const args = ["a b", "it's", "$HOME", "x;y", "l1\nl2", "", '"dq"', "*", "`id`", "back\\slash", "a=b"];
    const r = await limactl(["shell", "alpha", "printf", "<%s>\\n", ...args]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(args.map((a) => `<${a}>\n`).join(""));
  });

  it("treats leading K=V args as environment assignments", async () => {
    const r = await limactl(["shell", "alpha", "FOO=x y", "BAR=$1;'q'", "bash", "-c", 'printf "%s|%s|%s" "$FOO" "$BAR" "$HOME"']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`x y|$1;'q'|${GUEST_HOME}`);
  });

  it("honours --workdir and otherwise starts in the guest home", async () => {
    expect((await limactl(["shell", "--workdir", "/tmp", "alpha", "pwd"])).stdout).toBe("/tmp\n");
    expect((await limactl(["shell", "alpha", "pwd"])).stdout).toBe(`${GUEST_HOME}\n`);
    const missing = await limactl(["shell", "--workdir", "/does/not/exist", "alpha", "pwd"]);
    expect(missing.status).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain("cd: /does/not/exist: No such file or directory");
    const env = await sh("alpha", 'printf "%s %s %s %s %s" "$HOME" "$USER" "$SHELL" "$PATH" "$LANG"');
    expect(env.stdout).toBe(`${GUEST_HOME} ${GUEST.name} /bin/bash ${DEBIAN_USER_PATH} C.UTF-8`);
  });

  it("isolates processes and guest homes between VMs", async () => {
    const started = await sh("alpha", "setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo $!");
    expect(started.status, started.stderr).toBe(0);
    const pid = Number(started.stdout.trim());
    expect(pid).toBeGreaterThan(1);

    expect((await sh("alpha", `kill -0 ${pid} && ps -eo args`)).stdout).toContain("sleep 1000");
    expect((await sh("bravo", "ps -eo args")).stdout).not.toContain("sleep 1000");
    const probe = `if kill -0 ${pid} 2>/dev/null && grep -q sleep /proc/${pid}/cmdline; then echo visible; else echo invisible; fi`;
    expect((await sh("bravo", probe)).stdout).toBe("invisible\n");
    expect((await sh("alpha", probe)).stdout).toBe("visible\n");
    // pid 1 of each VM is its own init
    expect((await sh("alpha", "tr '\\0' ' ' < /proc/1/cmdline")).stdout).toContain(path.join(fs.realpathSync(limaHome), "alpha"));
    expect((await sh("bravo", "tr '\\0' ' ' < /proc/1/cmdline")).stdout).toContain(path.join(fs.realpathSync(limaHome), "bravo"));

    expect((await sh("alpha", "echo alpha-was-here > ~/who && cat ~/who")).stdout).toBe("alpha-was-here\n");
    const bravoWho = await sh("bravo", "cat ~/who");
    expect(bravoWho.status).not.toBe(0);
    expect(fs.readFileSync(path.join(limaHome, "alpha", "guest-home", "who"), "utf8")).toBe("alpha-was-here\n");
    expect(fs.existsSync(path.join(limaHome, "bravo", "guest-home", "who"))).toBe(false);
    expect(fs.existsSync(`${GUEST_HOME}/who`)).toBe(false); // not on the host
    expect((await sh("alpha", "hostname")).stdout).toBe("lima-alpha\n");
  });

  it("serves ssh inside the VM via ssh.config", async () => {
    const ok = await ssh("alpha", "echo ok");
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toBe("ok\n");
    // the session lands in alpha: it sees alpha's init as pid 1 and alpha's processes only
    const inside = await ssh("alpha", "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -eo args; echo HOME=$HOME");
    expect(inside.stdout).toContain("vm-init.sh");
    expect(inside.stdout).toContain(path.join(fs.realpathSync(limaHome), "alpha"));
    expect(inside.stdout).toContain("sleep 1000");
    expect(inside.stdout).toContain(`HOME=${GUEST_HOME}`);
    const other = await ssh("bravo", "ps -eo args");
    expect(other.status).toBe(0);
    expect(other.stdout).not.toContain("sleep 1000");
    // the multiplexed master socket lives where ssh.config says
    expect(fs.existsSync(path.join(limaHome, "alpha", "ssh.sock"))).toBe(true);
  });

  // ---- Where Lima differs from what a tool would assume (issue 12, lima-contract §10): each one modelled. ----

  it("[issue 12, point 5] the guest user is not root: Lima's user, passwordless sudo, Debian's PATH, LANG from PAM", async () => {
    const r = await sh("alpha", 'id -u; id -un; id -gn; echo "$HOME|$PATH|$LANG"; sudo -n id -u; getent passwd "$(id -un)" | cut -d: -f6,7; stat -c %U ~');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${GUEST.uid}\n${GUEST.name}\n${GUEST.name}\n${GUEST_HOME}|${DEBIAN_USER_PATH}|C.UTF-8\n0\n${GUEST_HOME}:/bin/bash\n${GUEST.name}\n`);
    // Lima's boot script keeps the pre-v2.1 home name as a symlink
    expect((await sh("alpha", `readlink /home/${GUEST.name}.linux`)).stdout).toBe(`${GUEST.name}.guest\n`);
    expect((await sh("alpha", "hostname -f 2>/dev/null || hostname")).stdout.trim()).toMatch(/^lima-alpha/);
  });

  it("[issue 12, point 5] /tmp is the guest's own", async () => {
    const hostFile = path.join(os.tmpdir(), `host-only-${process.pid}`);
    fs.writeFileSync(hostFile, "host\n");
    try {
      expect((await sh("alpha", `test -e ${hostFile} && echo seen || echo unseen`)).stdout).toBe("unseen\n");
      expect((await sh("alpha", "echo guest > /tmp/guest-only && cat /tmp/guest-only")).stdout).toBe("guest\n");
      expect(fs.existsSync("/tmp/guest-only")).toBe(false);
      expect((await sh("bravo", "test -e /tmp/guest-only && echo seen || echo unseen")).stdout).toBe("unseen\n");
    } finally {
      fs.rmSync(hostFile, { force: true });
    }
  });

  it("[issue 12, point 3] killing `limactl shell` on the host does not end the guest command", async () => {
    const marker = `standin-orphan-${process.pid}`;
    const child = spawn("limactl", ["--tty=false", "shell", "--workdir", "/", "alpha", "bash", "-c", `exec -a ${marker} sleep 300`], {
      env: env(),
      detached: true,
      stdio: "ignore",
    });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    const inGuest = async () => (await sh("alpha", `ps -eo args | grep -c '^${marker}'`)).stdout.trim() === "1";
    await waitFor(inGuest, { timeoutMs: 20_000, intervalMs: 100, what: `${marker} in the guest` });
    process.kill(-child.pid!, "SIGKILL"); // limactl and its ssh, as a driver's deadline would
    await exited;
    await sleep(500);
    expect(await inGuest()).toBe(true); // still running in the guest (lima cmd/limactl/shell.go:487-494)
    expect((await sh("alpha", `pkill -f '^${marker}'; echo done`)).stdout).toBe("done\n");
  });

  it("[issue 12, point 4] sshd allows 10 sessions on the shared ControlMaster connection", async () => {
    const results = await Promise.all(Array.from({ length: 14 }, () => sh("alpha", "sleep 1.5; echo ok")));
    for (const r of results) expect(r.stdout).toBe("ok\n"); // ssh falls back to a new connection …
    const refused = results.filter((r) => r.stderr.includes("Session open refused by peer"));
    expect(refused.length).toBeGreaterThan(0); // … after the master's sshd refused the session
    expect(refused.length).toBeLessThanOrEqual(14 - 9);
  });

  it("[issue 12, point 2] copy -r picks rsync when host and guest have it, with Lima's trailing slashes", async () => {
    if (!onPath("rsync")) throw new Error("this test needs rsync on the host");
    const out = path.join(workDir, "rsync-out");
    fs.mkdirSync(out);
    // pkg/copytool/rsync.go:155-166: with -r every path gets a trailing `/`, so a single file fails (exit 23)
    const file = await limactl(["copy", "-r", "alpha:who", path.join(out, "who.txt")]);
    expect(file.status).toBe(23);
    expect(file.stderr).toMatch(/rsync/);
    // --backend=scp keeps scp's meaning
    const scp = await limactl(["copy", "--backend=scp", "-r", "alpha:who", path.join(out, "who.txt")]);
    expect(scp.status, scp.stderr).toBe(0);
    expect(fs.readFileSync(path.join(out, "who.txt"), "utf8")).toBe("alpha-was-here\n");
    // without rsync on the host, --backend=rsync is refused (copytool.go newRsyncTool)
    const bin = path.join(workDir, "bin-without-rsync");
    fs.mkdirSync(bin);
    for (const tool of ["node", "ssh"]) fs.symlinkSync(`/usr/bin/${tool}`, path.join(bin, tool));
    const noRsync = await limactl(["copy", "--backend=rsync", "alpha:who", path.join(out, "x")], { env: { PATH: `${STANDIN_DIR}:${bin}` } });
    expect(noRsync.status).toBe(1);
    expect(noRsync.stderr).toContain("rsync not found on host");
  });

  it("[issue 12, point 6] `errors` in list --json are Go error values, with their text in the stderr warning", async () => {
    // a directory without lima.yaml: *fs.PathError
    fs.mkdirSync(path.join(limaHome, "probe"));
    // a garbage pid file: *strconv.NumError (Err is an errors.New value: {})
    fs.mkdirSync(path.join(limaHome, "numerr"));
    fs.writeFileSync(path.join(limaHome, "numerr", "lima.yaml"), TEMPLATE);
    fs.writeFileSync(path.join(limaHome, "numerr", "ha.pid"), "abc\n");
    // a host agent without its driver: errors.New → {}
    fs.mkdirSync(path.join(limaHome, "halfway"));
    fs.writeFileSync(path.join(limaHome, "halfway", "lima.yaml"), TEMPLATE);
    const realDir = path.join(fs.realpathSync(limaHome), "halfway");
    const agent = spawn("bash", ["-c", "sleep 300; exit 0", "unshare", realDir], { detached: true, stdio: "ignore" });
    const cmdline = () => (fs.existsSync(`/proc/${agent.pid}/cmdline`) ? fs.readFileSync(`/proc/${agent.pid}/cmdline`, "utf8") : "");
    await waitFor(() => cmdline().includes(realDir), { timeoutMs: 10_000, intervalMs: 20, what: "the fake host agent to run" });
    fs.writeFileSync(path.join(limaHome, "halfway", "ha.pid"), `${agent.pid}\n`);
    try {
      const r = await limactl(["list", "--json", "halfway", "numerr", "probe"]);
      expect(r.status, r.stderr).toBe(0);
      const [halfway, numerr, probe] = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>);
      expect(halfway).toMatchObject({ name: "halfway", status: "Broken", errors: [{}] });
      expect(numerr).toMatchObject({ name: "numerr", status: "Broken", errors: [{ Func: "Atoi", Num: "abc", Err: {} }] });
      expect(probe).toMatchObject({ name: "probe", status: "Broken", errors: [{ Op: "open", Path: path.join(fs.realpathSync(limaHome), "probe", "lima.yaml"), Err: 2 }] });
      expect(r.stderr).toContain('msg="instance `halfway` has errors" errors="[host agent is running but driver is not]"');
      expect(r.stderr).toContain('msg="instance `numerr` has errors" errors="[strconv.Atoi: parsing \\"abc\\": invalid syntax]"');
      expect(r.stderr).toContain(`msg="instance \`probe\` has errors" errors="[open ${path.join(fs.realpathSync(limaHome), "probe", "lima.yaml")}: no such file or directory]"`);
    } finally {
      // Its whole group (detached: bash and the sleep it forked), or the sleep outlives the test.
      process.kill(-agent.pid!, "SIGKILL");
      for (const n of ["probe", "numerr", "halfway"]) fs.rmSync(path.join(limaHome, n), { recursive: true, force: true });
    }
  });

  it("[issue 12, point 7] names are checked against macOS's 104-byte socket paths when the host is a Mac", async () => {
    const home = fs.realpathSync(limaHome);
    const n = 105 - (home.length + 2 + "ssh.sock.1234567890123456".length); // too long for 104, fine for 108
    const name = `m${"x".repeat(n - 1)}`;
    const mac = await limactl(["--tty=false", "create", "--name", name, "tiny.yaml"], { env: { LIMACTL_STANDIN_HOST_OS: "darwin" } });
    expect(mac.status).toBe(1);
    expect(mac.stderr).toContain(`instance name \`${name}\` too long`);
    expect(mac.stderr).toContain("must be less than UNIX_PATH_MAX=104 characters, but is 105");
    const linux = await limactl(["--tty=false", "create", "--name", name, "tiny.yaml"]);
    expect(linux.status, linux.stderr).toBe(0);
    expect((await limactl(["delete", name])).status).toBe(0);
  });

  it("restarts the sshd listener after it is killed", async () => {
    const cfg = path.join(fs.realpathSync(limaHome), "bravo", "sshd_config");
    const listeners = () => findProcs((argv) => argv.join(" ").includes(cfg) && argv.join(" ").includes("[listener]"));
    const before = listeners();
    expect(before).toHaveLength(1);
    process.kill(at(before, 0), "SIGKILL");
    const fresh = ["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=3"];
    let r: Run | undefined;
    const deadline = Date.now() + 30_000;
    do {
      await sleep(100);
      r = await ssh("bravo", "echo back", fresh);
    } while (r.status !== 0 && Date.now() < deadline);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("back\n");
    const after = listeners();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);
  });

  it("copies files and directories with real scp and rsync, Lima's way", async () => {
    const src = path.join(workDir, "src");
    fs.mkdirSync(path.join(src, "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "a.txt"), "file a\n");
    fs.writeFileSync(path.join(src, "sub", "b.txt"), "file b\n");

    let r = await limactl(["copy", path.join(src, "a.txt"), "alpha:incoming.txt"]);
    expect(r.status, r.stderr).toBe(0);
    expect((await sh("alpha", "cat ~/incoming.txt")).stdout).toBe("file a\n");
    expect(fs.readFileSync(path.join(limaHome, "alpha", "guest-home", "incoming.txt"), "utf8")).toBe("file a\n");

    r = await limactl(["copy", "--backend=scp", src, "alpha:tree"]);
    expect(r.status).not.toBe(0); // scp: a directory needs -r

    r = await limactl(["cp", "-r", src, "alpha:tree"]);
    expect(r.status, r.stderr).toBe(0);
    expect((await sh("alpha", "cd ~/tree && find . -type f | sort && cat sub/b.txt")).stdout).toBe("./a.txt\n./sub/b.txt\nfile b\n");

    const back = path.join(workDir, "back");
    fs.mkdirSync(back);
    r = await limactl(["copy", "alpha:who", path.join(back, "who.txt")]);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(back, "who.txt"), "utf8")).toBe("alpha-was-here\n");

    // scp nests a directory copied into an existing one; rsync (auto, with rsync on both sides) merges it
    r = await limactl(["copy", "--backend=scp", "-r", `alpha:${GUEST_HOME}/tree`, back]);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(back, "tree", "sub", "b.txt"), "utf8")).toBe("file b\n");
    const merged = path.join(workDir, "merged");
    fs.mkdirSync(merged);
    r = await limactl(["copy", "-r", `alpha:${GUEST_HOME}/tree`, merged]);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(merged).sort()).toEqual(["a.txt", "sub"]);

    r = await limactl(["copy", "alpha:no-such-file", back]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("No such file or directory");

    r = await limactl(["copy", path.join(src, "a.txt"), "nope:x"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("instance `nope` does not exist, run `limactl create nope` to create a new instance");
  });

  it("stops a VM: status Stopped, all its processes gone", async () => {
    const o = await inspect("alpha");
    const initPid = o.driverPID as number;
    const haPid = o.hostAgentPID as number;
    const sleepers = findProcs((argv) => argv[0] === "sleep" && argv[1] === "1000");
    expect(sleepers.length).toBeGreaterThan(0);

    const r = await limactl(["--tty=false", "stop", "alpha"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(pidAlive(initPid)).toBe(false);
    expect(pidAlive(haPid)).toBe(false);
    for (const p of sleepers) expect(pidAlive(p)).toBe(false);
    const realDir = path.join(fs.realpathSync(limaHome), "alpha");
    expect(findProcs((argv) => argv.some((a) => a === realDir || a.includes(`${realDir}/`)))).toEqual([]);
    const after = await inspect("alpha");
    expect(after.status).toBe("Stopped");
    expect(after.driverPID).toBeUndefined();
    expect(fs.existsSync(path.join(limaHome, "alpha", "ha.pid"))).toBe(false);
    expect(fs.existsSync(path.join(limaHome, "alpha", "ssh.sock"))).toBe(false);

    const again = await limactl(["stop", "alpha"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("expected status `Running`, got `Stopped` (maybe use `limactl stop -f`?)");

    const shellStopped = await limactl(["shell", "alpha", "true"]);
    expect(shellStopped.status).toBe(1);
    expect(shellStopped.stderr).toContain("instance `alpha` is stopped, run `limactl start alpha` to start the instance");

    const copyStopped = await limactl(["copy", "alpha:who", workDir]);
    expect(copyStopped.status).toBe(1);
    expect(copyStopped.stderr).toContain("instance `alpha` is stopped, run `limactl start alpha` to start the instance");
  });

  it("keeps the guest home across stop/start (shell --start)", async () => {
    const r = await limactl(["--tty=false", "shell", "--start", "alpha", "cat", "who"], { timeout: 40_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("alpha-was-here\n");
    expect((await inspect("alpha")).status).toBe("Running");
    // a fresh boot: the old sleeper is gone
    expect((await sh("alpha", "ps -eo args")).stdout).not.toContain("sleep 1000");
  }, 60_000);

  it("reports missing instances like Lima", async () => {
    const shell = await limactl(["shell", "nope", "true"]);
    expect(shell.status).toBe(1);
    expect(shell.stderr).toContain('level=fatal msg="instance `nope` does not exist, run `limactl create nope` to create a new instance"');
    const stop = await limactl(["stop", "nope"]);
    expect(stop.status).toBe(1);
    expect(stop.stderr).toContain(`open ${path.join(fs.realpathSync(limaHome), "nope", "lima.yaml")}: no such file or directory`);
    const del = await limactl(["delete", "nope"]);
    expect(del.status).toBe(0);
    expect(del.stderr).toContain('level=warning msg="Ignoring non-existent instance `nope`"');
  });

  it("[issue 12, point 1] start of a missing name creates it from template:default, as Lima does", async () => {
    const r = await limactl(["--tty=false", "start", "newbie"], { timeout: 40_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("Creating an instance `newbie` from template:default (Not from template:newbie)");
    expect(r.stderr).toContain("This form is deprecated. Use `limactl create --name=newbie template:default` instead");
    expect(r.stderr).toContain("READY.");
    expect((await inspect("newbie")).status).toBe("Running");
    expect(fs.readFileSync(path.join(limaHome, "newbie", "lima.yaml"), "utf8")).toContain("template:_default/mounts");
    // the host home is mounted read-only, as template:_default/mounts does
    const m = await sh("newbie", `findmnt -no OPTIONS ${JSON.stringify(os.homedir())}`);
    expect(m.stdout).toMatch(/^ro\b/);
    expect((await limactl(["delete", "-f", "newbie"])).status).toBe(0);
  }, 60_000);

  it("deletes instances (running ones only with -f)", async () => {
    const bravoInit = (await inspect("bravo")).driverPID as number;
    const refused = await limactl(["delete", "bravo"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("failed to delete instance `bravo`: expected status `Stopped`, got `Running`");
    expect(pidAlive(bravoInit)).toBe(true);

    const forced = await limactl(["delete", "-f", "bravo"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stdout).toBe("");
    expect(forced.stderr).toContain(`Deleted \`bravo\` (\`${path.join(fs.realpathSync(limaHome), "bravo")}\`)`);
    expect(pidAlive(bravoInit)).toBe(false);
    expect(fs.existsSync(path.join(limaHome, "bravo"))).toBe(false);

    expect((await limactl(["stop", "alpha"])).status).toBe(0);
    const del = await limactl(["delete", "alpha"]);
    expect(del.status, del.stderr).toBe(0);
    const list = await limactl(["list", "--json"]);
    expect(list.stdout).toBe("");
    expect(list.stderr).toContain("No instance found.");
  });
});
