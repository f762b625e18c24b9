/**
 * Issue 2 walkthrough, through the built CLI: two VMs with the real `lima` driver against the stand-in
 * limactl, then the same with `--driver local`, then two real SSH hosts with the `ssh` driver; plus the bad-input
 * tables.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { disposeTestEnv, fabrik, guestHome, guestUserOf, json, localVmName, makeTestEnv, type TestEnv } from "../helpers/cli.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { SSH_HOSTS, addArgs, sshWorld } from "../helpers/driver-fleet.js";
import * as hosts from "../../../scripts/ssh-hosts/ssh-hosts.mjs";

const skip = missingPrereqs(...STANDIN);
const sshSkip = missingPrereqs(...SSH_HOSTS);

/** Alive and not a zombie (this machine's pid 1 reaps orphans lazily). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

interface VmRow {
  name: string;
  driver: string;
  status: string;
  guest_home: string | null;
  active_runs: number;
}

describe.skipIf(skip)(titled("vm walkthrough (lima driver, stand-in limactl)", skip), () => {
  let t: TestEnv;
  beforeAll(() => {
    t = makeTestEnv();
  });
  afterAll(() => disposeTestEnv(t));

  it("creates two VMs and lists them (table and --json)", async () => {
    for (const n of ["alpha", "beta"]) {
      const r = await fabrik(t, ["vm", "create", n, "--no-engine"]);
      expect(r.stderr).toContain(`create and start lima VM ${n}`);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${n}\n`);
    }
    const table = await fabrik(t, ["vm", "list"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\tSTATUS\tDRIVER/);
    expect(lines.slice(1).map((l) => l.split("\t").slice(0, 3))).toEqual([
      ["alpha", "Running", "lima"],
      ["beta", "Running", "lima"],
    ]);
    const rows = json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
    expect(rows.map((r) => [r.name, r.status, r.driver, r.active_runs])).toEqual([
      ["alpha", "Running", "lima", 0],
      ["beta", "Running", "lima", 0],
    ]);
    // The guest home is the guest user's, as limactl reports it; that user is not root (as on Lima).
    const user = await guestUserOf(t, "alpha");
    expect(user.uid).not.toBe(0);
    expect(rows[0]!.guest_home).toBe(user.home);
    expect(user.home).toBe(`/home/${user.name}.guest`);
    expect((await fabrik(t, ["vm", "list", "-q"])).stdout).toBe("alpha\nbeta\n");
  });

  it("passes the guest's exit code and stdin through vm shell", async () => {
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "exit 7"])).code).toBe(7);
    const r = await fabrik(t, ["vm", "shell", "alpha", "--", "tr", "a-z", "A-Z"], { input: "hello stdin\n" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("HELLO STDIN\n");
    const q = await fabrik(t, ["vm", "shell", "alpha", "--", "printf", "%s|", "a b", "$HOME", "it's"]);
    expect(q.stdout).toBe("a b|$HOME|it's|");
  });

  it("keeps VMs apart: a process in one is invisible from the other", async () => {
    const start = await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"]);
    const pid = start.stdout.trim();
    expect(pid).toMatch(/^\d+$/);
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "kill", "-0", pid])).code).toBe(0);
    expect((await fabrik(t, ["vm", "shell", "beta", "--", "kill", "-0", pid])).code).not.toBe(0);
    const psBeta = await fabrik(t, ["vm", "shell", "beta", "--", "ps", "-eo", "pid,args"]);
    expect(psBeta.stdout).not.toContain("sleep 300");
    const psAlpha = await fabrik(t, ["vm", "shell", "alpha", "--", "ps", "-eo", "pid,args"]);
    expect(psAlpha.stdout).toContain("sleep 300");
    // Separate guest homes with the same path.
    await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "echo a > ~/marker"]);
    const home = await guestHome(t, "alpha");
    expect(await guestHome(t, "beta")).toBe(home);
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "cat", `${home}/marker`])).stdout).toBe("a\n");
    expect((await fabrik(t, ["vm", "shell", "beta", "--", "cat", `${home}/marker`])).code).not.toBe(0);
  });

  it("stops one VM (Stopped, its processes gone) and deletes it", async () => {
    const r = await fabrik(t, ["vm", "stop", "alpha"]);
    expect(r.code).toBe(0);
    const rows = json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
    expect(rows.find((x) => x.name === "alpha")!.status).toBe("Stopped");
    const sh = await fabrik(t, ["vm", "shell", "alpha", "--", "true"]);
    expect(sh.code).toBe(6);
    expect(sh.stderr).toMatch(/VM alpha is Stopped.*fabrik vm start alpha/);
    expect((await fabrik(t, ["vm", "delete", "alpha"])).code).toBe(0);
    expect(json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"])).map((x) => x.name)).toEqual(["beta"]);
    expect(fs.existsSync(path.join(t.limaHome, "alpha"))).toBe(false);
  });

  it("vm stop carries on past failures and reports them all", async () => {
    const r = await fabrik(t, ["vm", "stop", "nope", "beta"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("nope");
    expect(r.stdout).toContain("beta\tstopped");
    expect(json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]))[0]!.status).toBe("Stopped");
  });

  it("bad input: one clear line, documented exit code, nothing changed", async () => {
    const before = (await fabrik(t, ["vm", "list", "--json"])).stdout;
    const cases: { args: string[]; code: number; msg: RegExp; env?: NodeJS.ProcessEnv }[] = [
      { args: ["vm", "create", "bad name!", "--no-engine"], code: 2, msg: /invalid VM name/ },
      { args: ["vm", "shell", "ghost", "--", "true"], code: 4, msg: /VM ghost does not exist/ },
      { args: ["vm", "shell", "beta", "--", "true"], code: 6, msg: /beta is Stopped/ },
      { args: ["vm", "create", "gamma", "--no-engine"], code: 7, msg: /limactl not found/, env: { ...t.env, PATH: "/usr/bin:/bin" } },
      { args: ["vm", "create", "gamma", "--no-engine"], code: 7, msg: /Lima 1\.0\.0 is too old/, env: { ...t.env, LIMACTL_STANDIN_VERSION: "1.0.0", FABRIK_HOME: path.join(t.tmp, "fh-old") } },
      { args: ["vm", "list"], code: 2, msg: /unknown|Unknown/, env: undefined },
      { args: ["vm", "create", "gamma", "--template", "/nonexistent.yaml"], code: 1, msg: /cannot read template/ },
      // `limactl start typo` would CREATE typo from template:default (lima cmd/limactl/start.go:316-322), as the
      // stand-in does: fabrik checks first and creates nothing.
      { args: ["vm", "start", "typo"], code: 4, msg: /VM typo does not exist/ },
    ];
    cases[5]!.args = ["vm", "list", "--bogus"];
    for (const c of cases) {
      const r = await fabrik(t, c.args, { env: c.env });
      expect(r.code, `${c.args.join(" ")}: ${r.stderr}`).toBe(c.code);
      expect(r.stderr).toMatch(c.msg);
      expect(r.stderr).not.toMatch(/\n\s+at /); // never a stack trace
    }
    fs.writeFileSync(path.join(t.tmp, "config.json"), "{ corrupt");
    const cfg = await fabrik(t, ["vm", "list"]);
    expect(cfg.code).toBe(3);
    expect(cfg.stderr).toContain("config.json");
    fs.rmSync(path.join(t.tmp, "config.json"));
    expect((await fabrik(t, ["vm", "list", "--json"])).stdout).toBe(before);
    expect(fs.existsSync(path.join(t.limaHome, "gamma"))).toBe(false);
    expect(fs.existsSync(path.join(t.limaHome, "typo"))).toBe(false);
  });

  it("a name too long for Lima's socket paths on macOS is refused before limactl creates anything", async () => {
    // $LIMA_HOME/<name>/ssh.sock.1234567890123456 must stay under 104 bytes on macOS (lima
    // pkg/osutil/osutil_others.go:14), 108 on Linux (osutil_linux.go:12); pick a name between the two limits.
    const home = fs.realpathSync(t.limaHome);
    const n = 105 - (home.length + 1 + 1 + "ssh.sock.1234567890123456".length);
    expect(n).toBeGreaterThan(3);
    const name = `m${"x".repeat(n - 1)}`;
    const calls = path.join(t.tmp, "calls-darwin.jsonl");
    const mac = { ...t.env, LIMACTL_STANDIN_HOST_OS: "darwin", LIMACTL_STANDIN_CALL_LOG: calls };
    const r = await fabrik(t, ["vm", "create", name, "--no-engine"], { env: mac });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/too long for Lima.*104/);
    const argvs = fs.readFileSync(calls, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { argv: string[] }).argv);
    expect(argvs.some((a) => a.includes("create"))).toBe(false);
    expect(fs.existsSync(path.join(t.limaHome, name))).toBe(false);
    // The same name fits Linux's limit.
    const linux = await fabrik(t, ["vm", "create", name, "--no-engine"]);
    expect(linux.code, linux.stderr).toBe(0);
    expect((await fabrik(t, ["vm", "delete", "--force", name])).code).toBe(0);
  });
});

describe("vm walkthrough (local driver)", () => {
  let t: TestEnv;
  // Unique to this run: local VMs are told apart by name only (see localVmName).
  let L1 = "";
  let L2 = "";
  beforeAll(() => {
    t = makeTestEnv();
    L1 = localVmName("l1");
    L2 = localVmName("l2");
  });
  afterAll(() => disposeTestEnv(t));

  it("create, list, shell, stop, delete", async () => {
    for (const n of [L1, L2]) expect((await fabrik(t, ["vm", "create", n, "--driver", "local", "--no-engine"])).code).toBe(0);
    const rows = json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
    expect(rows.map((r) => [r.name, r.status, r.driver])).toEqual([
      [L1, "Running", "local"],
      [L2, "Running", "local"],
    ]);
    expect(rows[0]!.guest_home).toBe(path.join(t.fabrikHome, "local-vms", L1, "home"));
    // Shell completion through the real binary offers live VM names.
    expect((await fabrik(t, ["--get-yargs-completions", "vm", "shell", ""])).stdout.split("\n")).toEqual(expect.arrayContaining([L1, L2]));
    expect((await fabrik(t, ["vm", "shell", L1, "--", "bash", "-c", "exit 5"])).code).toBe(5);
    expect((await fabrik(t, ["vm", "shell", L1, "--", "cat"], { input: "via stdin" })).stdout).toBe("via stdin");
    expect((await fabrik(t, ["vm", "shell", L1, "--", "bash", "-c", "echo $HOME"])).stdout.trim()).toBe(rows[0]!.guest_home);
    // stop is a power-off: processes of the VM die
    const pid = (await fabrik(t, ["vm", "shell", L1, "--", "bash", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"])).stdout.trim();
    expect(running(Number(pid))).toBe(true);
    expect((await fabrik(t, ["vm", "stop", L1])).code).toBe(0);
    expect(running(Number(pid))).toBe(false);
    expect(json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]))[0]!.status).toBe("Stopped");
    expect((await fabrik(t, ["vm", "shell", L1, "--", "true"])).code).toBe(6);
    expect((await fabrik(t, ["vm", "start", L1])).code).toBe(0);
    expect((await fabrik(t, ["vm", "delete", L1])).code).toBe(5); // running: refuses without --force
    expect((await fabrik(t, ["vm", "delete", "--force", L1])).code).toBe(0);
    expect(json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"])).map((r) => r.name)).toEqual([L2]);
  });
});

describe("local VMs of the same name in two FABRIK_HOMEs", () => {
  // Local-VM processes are tagged with the VM's own id (kept in its FABRIK_HOME), so `fabrik vm stop NAME` in
  // one FABRIK_HOME never kills the processes of a same-named local VM of another (it used to match the name).
  let a: TestEnv;
  let b: TestEnv;
  beforeAll(() => {
    a = makeTestEnv();
    b = makeTestEnv();
  });
  afterAll(async () => {
    await disposeTestEnv(a);
    await disposeTestEnv(b);
  });

  it("stopping one does not kill the other's processes", async () => {
    const name = localVmName("twin");
    for (const t of [a, b]) expect((await fabrik(t, ["vm", "create", name, "--driver", "local", "--no-engine"])).code).toBe(0);
    const pid = Number((await fabrik(a, ["vm", "shell", name, "--", "bash", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"])).stdout.trim());
    expect(running(pid)).toBe(true);
    expect((await fabrik(b, ["vm", "stop", name])).code).toBe(0);
    expect(running(pid), `vm stop ${name} in another FABRIK_HOME killed pid ${pid} of this one`).toBe(true);
    // Its own FABRIK_HOME's stop does kill it (and leaves nothing for the teardown).
    expect((await fabrik(a, ["vm", "stop", name])).code).toBe(0);
    expect(running(pid)).toBe(false);
  });
});

describe.skipIf(sshSkip)(titled("vm walkthrough (ssh driver, real OpenSSH hosts)", sshSkip), () => {
  // Two machines, each its own sshd, user, home and host key: added, listed, used, powered off, removed.
  let t: TestEnv;
  let world: hosts.SshWorld;
  const hs: hosts.SshTestHost[] = [];
  beforeAll(async () => {
    ({ world } = await sshWorld());
    const base = makeTestEnv();
    t = { ...base, env: { ...base.env, HOME: world.home } };
    for (const n of ["wk-alpha", "wk-beta"]) {
      const h = await hosts.createHost(world, n);
      hosts.trustHost(world, h);
      await hosts.startHost(h);
      hs.push(h);
    }
  }, 120_000);
  afterAll(async () => {
    for (const h of hs) await hosts.stopHost(h).catch(() => undefined);
    await disposeTestEnv(t);
  });

  it("adds two machines and lists them (table and --json) with their driver and address", async () => {
    for (const [i, n] of ["alpha", "beta"].entries()) {
      const r = await fabrik(t, addArgs(world, n, hs[i]!));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${n}\n`);
      expect(r.stderr).toContain(`registered VM ${n} (ssh ${hs[i]!.user}@127.0.0.1:${hs[i]!.port}`);
    }
    const table = await fabrik(t, ["vm", "list"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\tSTATUS\tDRIVER\tSSH/);
    expect(lines.slice(1).map((l) => l.split("\t").slice(0, 4))).toEqual([
      ["alpha", "Running", "ssh", `${hs[0]!.user}@127.0.0.1:${hs[0]!.port}`],
      ["beta", "Running", "ssh", `${hs[1]!.user}@127.0.0.1:${hs[1]!.port}`],
    ]);
    const rows = json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
    expect(rows.map((r) => [r.name, r.status, r.driver, r.guest_home, r.active_runs])).toEqual([
      ["alpha", "Running", "ssh", hs[0]!.guestHome, 0],
      ["beta", "Running", "ssh", hs[1]!.guestHome, 0],
    ]);
    expect((await fabrik(t, ["vm", "list", "-q"])).stdout).toBe("alpha\nbeta\n");
  });

  it("passes the guest's exit code, stdin and argv through vm shell", async () => {
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "exit 7"])).code).toBe(7);
    const r = await fabrik(t, ["vm", "shell", "alpha", "--", "tr", "a-z", "A-Z"], { input: "hello stdin\n" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("HELLO STDIN\n");
    const q = await fabrik(t, ["vm", "shell", "alpha", "--", "printf", "%s|", "a b", "$HOME", "it's"]);
    expect(q.stdout).toBe("a b|$HOME|it's|");
    expect((await fabrik(t, ["vm", "shell", "alpha", "--workdir", "/tmp", "--", "pwd"])).stdout).toBe("/tmp\n");
  });

  it("keeps machines apart: own user, home and processes", async () => {
    const who = async (vm: string) => (await fabrik(t, ["vm", "shell", vm, "--", "sh", "-c", 'echo "$(id -un) $HOME"'])).stdout.trim();
    expect(await who("alpha")).toBe(`${hs[0]!.user} ${hs[0]!.guestHome}`);
    expect(await who("beta")).toBe(`${hs[1]!.user} ${hs[1]!.guestHome}`);
    const pid = (await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"])).stdout.trim();
    expect(pid).toMatch(/^\d+$/);
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "kill", "-0", pid])).code).toBe(0);
    expect((await fabrik(t, ["vm", "shell", "beta", "--", "ps", "-eo", "args"])).stdout).not.toContain("sleep 300");
    await fabrik(t, ["vm", "shell", "alpha", "--", "bash", "-c", "echo a > ~/marker"]);
    expect((await fabrik(t, ["vm", "shell", "beta", "--", "cat", "marker"])).code).not.toBe(0);
    // A machine of the ssh driver is not powered off by anyone: the test ends what it started there.
    expect((await fabrik(t, ["vm", "shell", "alpha", "--", "kill", pid])).code).toBe(0);
  });

  it("a powered-off machine is Unknown (with the reason) and refused with exit 6; vm remove unregisters it", async () => {
    await hosts.stopHost(hs[0]!);
    const rows = json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
    expect(rows.find((x) => x.name === "alpha")).toMatchObject({ status: "Unknown", errors: [expect.stringMatching(/ECONNREFUSED/)] });
    expect(rows.find((x) => x.name === "beta")!.status).toBe("Running");
    const sh = await fabrik(t, ["vm", "shell", "alpha", "--", "true"]);
    expect(sh.code).toBe(6);
    expect(sh.stderr).toMatch(/VM alpha: cannot connect over SSH to .*ECONNREFUSED.*is the machine up/);
    expect((await fabrik(t, ["vm", "remove", "alpha"])).code).toBe(0);
    expect(json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"])).map((x) => x.name)).toEqual(["beta"]);
  });

  it("bad input: one clear line, documented exit code, nothing changed", async () => {
    const before = (await fabrik(t, ["vm", "list", "--json"])).stdout;
    const closed = await hosts.freePort();
    const key = ["--identity", world.key, "--known-hosts", world.knownHosts];
    const cases: { args: string[]; code: number; msg: RegExp }[] = [
      { args: ["vm", "add", "bad name!", "--ssh", "u@127.0.0.1"], code: 2, msg: /invalid VM name/ },
      { args: ["vm", "add", "gamma"], code: 2, msg: /Missing required argument: ssh/ },
      { args: ["vm", "add", "gamma", "--ssh", "u@h;id"], code: 2, msg: /--ssh "u@h;id" is not USER@HOST/ },
      { args: ["vm", "add", "gamma", "--ssh=-oProxyCommand=id"], code: 2, msg: /is not USER@HOST/ },
      { args: ["vm", "add", "gamma", "--ssh", "u@127.0.0.1", "--port", "70000"], code: 2, msg: /--port must be a TCP port/ },
      { args: ["vm", "add", "gamma", "--ssh", "u@127.0.0.1", "--jump", "j@h:0"], code: 2, msg: /--jump "j@h:0" is not USER@HOST\[:PORT\]/ },
      { args: ["vm", "add", "gamma", "--ssh", "u@127.0.0.1", "--port", String(closed), ...key], code: 6, msg: /cannot connect over SSH to u@127\.0\.0\.1:\d+: .*ECONNREFUSED/ },
      { args: ["vm", "add", "gamma", "--ssh", "u@127.0.0.1", "--identity", "/nonexistent/key"], code: 1, msg: /cannot read the SSH identity \/nonexistent\/key/ },
      { args: ["vm", "add", "beta", "--ssh", "other@127.0.0.1", "--port", String(hs[1]!.port), ...key], code: 5, msg: /VM beta already exists/ },
      { args: ["vm", "remove", "ghost"], code: 4, msg: /VM ghost is not registered/ },
    ];
    for (const c of cases) {
      const r = await fabrik(t, c.args);
      expect(r.code, `${c.args.join(" ")}: ${r.stderr}`).toBe(c.code);
      expect(r.stderr).toMatch(c.msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect((await fabrik(t, ["vm", "list", "--json"])).stdout).toBe(before);
  });
});
