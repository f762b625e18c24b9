/**
 * The `ssh` driver against real OpenSSH hosts (scripts/ssh-hosts/: each its own sshd, user, home and host key, in
 * namespaces of its own; key-only login), through the built CLI:
 * - host keys: an unknown key is refused with its SHA256 fingerprint (as `ssh-keygen -lf` prints it) and the flag
 *   that accepts it; `--accept-new-host-key` records it; a CHANGED key is always refused, flag or not, until the old
 *   key is removed; a jump host's key is checked the same way;
 * - logins: key-only; an agent may authenticate but is never forwarded; a key the host does not know is refused;
 * - the machine is never managed: create/start/stop/delete say why, `vm remove` never connects;
 * - connections: `runs list` makes one connection and one probe per host, in parallel, and a dead host or one that
 *   never answers is an `unreachable` row within the deadline without holding up the others; `runs watch` keeps one
 *   connection across refreshes, reports a host that goes away, and carries on when it comes back.
 * The shared-suite scenarios (launch, resume, watch, …) run on this driver in their own files (driver-fleet.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { envFor, fabrik, json, makeTestEnv, startFabrik, waitFor, type RunningCli, type TestEnv } from "../helpers/cli.js";
import { addArgs, sshHostVm, sshWorld, SSH_HOSTS } from "../helpers/driver-fleet.js";
import { REPO_ROOT, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import * as hosts from "../../../scripts/ssh-hosts/ssh-hosts.mjs";

const skip = missingPrereqs(...SSH_HOSTS, "ssh");
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");

interface VmRow {
  name: string;
  driver: string;
  status: string;
  ssh: string | null;
  guest_home: string | null;
  errors: string[];
}
interface RunRow {
  id: number;
  vm: string;
  source: string;
  effective_status: string;
  unreachable_reason: string | null;
}

/** `ssh-keygen -lf` of a host's public key: `SHA256:…`, as OpenSSH prints it. */
async function fingerprintOf(h: hosts.SshTestHost): Promise<string> {
  const r = await run("ssh-keygen", ["-lf", path.join(h.dir, "ssh_host_ed25519_key.pub")]);
  const fp = /SHA256:\S+/.exec(r.stdout)?.[0];
  if (!fp) throw new Error(`ssh-keygen -lf: ${r.stdout} ${r.stderr}`);
  return fp;
}

describe.skipIf(skip)(titled("ssh driver against real OpenSSH hosts", skip), () => {
  let t: TestEnv;
  let world: hosts.SshWorld;
  /** This file's hosts (named `sd-…` in the worker's world), powered off at the end. */
  const mine: hosts.SshTestHost[] = [];
  const gates: Gate[] = [];
  const host = async (name: string, opts: hosts.SshHostOptions = {}, trust = true) => {
    const h = await hosts.createHost(world, name, opts);
    if (trust) hosts.trustHost(world, h);
    mine.push(h);
    await hosts.startHost(h);
    return h;
  };
  const vms = async () => json<VmRow[]>(await fabrik(t, ["vm", "list", "--json"]));
  const logins = (h: hosts.SshTestHost) => hosts.sshdActivity(h).logins;

  beforeAll(async () => {
    ({ world } = await sshWorld());
    const own = makeTestEnv("sshd-");
    fs.chmodSync(own.tmp, 0o755);
    const base = envFor(path.join(own.tmp, "fh"), path.join(own.tmp, "lh"), path.join(own.tmp, "config.json"), own.tmp);
    fs.writeFileSync(path.join(own.tmp, "config.json"), JSON.stringify({ probe: { timeout_ms: 4000 } }));
    t = { ...base, env: { ...base.env, HOME: world.home } };
    delete t.env.SSH_AUTH_SOCK;
  }, 120_000);
  afterAll(async () => {
    for (const g of gates) g.dispose();
    for (const h of mine) await hosts.stopHost(h).catch(() => undefined);
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });

  it("an unknown host key is refused with its SHA256 fingerprint; --accept-new-host-key records it; a CHANGED key is always refused", async () => {
    const h = await host("sd-keys", {}, false);
    const kh = path.join(t.tmp, "kh-keys");
    const add = (...extra: string[]) => fabrik(t, ["vm", "add", "keys", "--ssh", `${h.user}@127.0.0.1`, "--port", String(h.port), "--identity", world.key, "--known-hosts", kh, ...extra]);
    const fp = await fingerprintOf(h);

    const refused = await add();
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain(`the host key of 127.0.0.1:${h.port} is not known: ED25519 key ${fp} is not in ${kh}`);
    expect(refused.stderr).toContain("--accept-new-host-key");
    expect(fs.existsSync(kh)).toBe(false); // nothing written
    expect((await vms()).map((v) => v.name)).not.toContain("keys");

    const accepted = await add("--accept-new-host-key", "--json");
    expect(accepted.code, accepted.stderr).toBe(0);
    const j = json<{ driver: string; address: string; guest_home: string; host_key: { fingerprint: string; added: boolean }; known_hosts: string }>(accepted);
    expect(j).toMatchObject({ driver: "ssh", address: `${h.user}@127.0.0.1:${h.port}`, guest_home: h.guestHome, known_hosts: kh, host_key: { fingerprint: fp, added: true } });
    expect(fs.readFileSync(kh, "utf8")).toBe(`${hosts.knownHostsLine(h)}\n`);
    expect(accepted.stderr).toContain(`added to ${kh}`);
    const again = json<{ already_registered: boolean; host_key: { added: boolean } }>(await add("--json"));
    expect(again).toMatchObject({ already_registered: true, host_key: { added: false } });
    expect((await vms()).find((v) => v.name === "keys")).toMatchObject({ driver: "ssh", status: "Running", ssh: `${h.user}@127.0.0.1:${h.port}`, guest_home: h.guestHome });
    const other = await fabrik(t, ["vm", "add", "keys", "--ssh", `nobody@127.0.0.1`, "--port", String(h.port), "--identity", world.key, "--known-hosts", kh]);
    expect(other.code).toBe(5);
    expect(other.stderr).toMatch(/VM keys already exists \(driver ssh at /);

    // The machine is reinstalled: a new host key on the same address.
    await hosts.stopHost(h);
    await hosts.newHostKey(h);
    await hosts.startHost(h);
    const fp2 = await fingerprintOf(h);
    const before = fs.readFileSync(kh, "utf8");
    for (const r of [await fabrik(t, ["vm", "shell", "keys", "--", "true"]), await add("--accept-new-host-key")]) {
      expect(r.code, r.stderr).toBe(5);
      expect(r.stderr).toContain(`the host key of 127.0.0.1:${h.port} has CHANGED: it now presents ED25519 key ${fp2}, but ${kh} line 1 holds ${fp}`);
      expect(r.stderr).toContain(`ssh-keygen -R '[127.0.0.1]:${h.port}' -f ${kh}`);
    }
    expect(fs.readFileSync(kh, "utf8")).toBe(before);
    const list = await fabrik(t, ["vm", "list", "--json"]);
    expect(list.code).toBe(0);
    expect(json<VmRow[]>(list).find((v) => v.name === "keys")).toMatchObject({ status: "Unknown", errors: [expect.stringContaining("has CHANGED")] });
    // The documented way out: remove the old key, accept the new one.
    expect((await run("ssh-keygen", ["-R", `[127.0.0.1]:${h.port}`, "-f", kh])).code).toBe(0);
    expect((await add("--accept-new-host-key")).code).toBe(0);
    const sh = await fabrik(t, ["vm", "shell", "keys", "--", "sh", "-c", 'id -un; echo "$HOME"']);
    expect(sh.stdout).toBe(`${h.user}\n${h.guestHome}\n`);
  });

  it("logins are key-only: a key the host does not know is refused; ssh-agent may log in but is never forwarded", async () => {
    const stranger = await host("sd-stranger", { authorize: false });
    const r = await fabrik(t, addArgs(world, "stranger", stranger));
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toContain(`${stranger.user}@127.0.0.1:${stranger.port} refused our SSH login (tried ${world.key})`);
    expect((await vms()).map((v) => v.name)).not.toContain("stranger");

    // An agent holding the key, no --identity and no default keys in HOME: the agent logs in. The host would accept
    // agent forwarding, but fabrik never asks for it.
    const h = await host("sd-agent", { agentForwarding: true });
    const sock = path.join(t.tmp, "agent.sock");
    const agent = startAgent(sock);
    try {
      await waitFor(() => fs.existsSync(sock), { timeoutMs: 10_000, intervalMs: 50, what: "ssh-agent's socket" });
      expect((await run("ssh-add", [world.key], { env: { ...process.env, SSH_AUTH_SOCK: sock } })).code).toBe(0);
      const withAgent: TestEnv = { ...t, env: { ...t.env, SSH_AUTH_SOCK: sock } };
      const add = await fabrik(withAgent, ["vm", "add", "agent", "--ssh", `${h.user}@127.0.0.1`, "--port", String(h.port), "--known-hosts", world.knownHosts]);
      expect(add.code, add.stderr).toBe(0);
      const fwd = await fabrik(withAgent, ["vm", "shell", "agent", "--", "sh", "-c", 'echo "forwarded=${SSH_AUTH_SOCK:-none}"']);
      expect(fwd.stdout).toBe("forwarded=none\n");
      expect(hosts.sshdActivity(h).text).not.toMatch(/agent forwarding/i);
      // Without the agent nothing is left to log in with: a prerequisite error saying what to do.
      const none = await fabrik(t, ["vm", "shell", "agent", "--", "true"]);
      expect(none.code, none.stderr).toBe(7);
      expect(none.stderr).toMatch(/no SSH key to log in with.*ssh-keygen -t ed25519/);
    } finally {
      agent.kill("SIGKILL");
    }
  });

  it("fabrik never manages the machine: create/start/stop/delete say why; vm remove unregisters without connecting", async () => {
    const h = await host("sd-managed");
    expect((await fabrik(t, addArgs(world, "managed", h))).code).toBe(0);
    fs.writeFileSync(path.join(h.hostHome, "keep-me"), "x");
    const before = logins(h);
    for (const verb of ["start", "stop", "delete"]) {
      const r = await fabrik(t, ["vm", verb, "managed"]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`VM managed is a machine fabrik reaches over SSH (${h.user}@127.0.0.1:${h.port}): fabrik does not ${verb} it`);
      expect(r.stderr).toContain("fabrik vm remove managed");
    }
    const create = await fabrik(t, ["vm", "create", "managed2", "--driver", "ssh"]);
    expect(create.code).toBe(2);
    expect(create.stderr).toContain("fabrik vm add managed2 --ssh USER@HOST");
    const rm = await fabrik(t, ["vm", "remove", "managed"]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toBe("managed\tremoved\n");
    expect(logins(h)).toBe(before); // neither the refusals nor the removal touched the machine
    expect(hosts.runningPid(h)).toBeDefined();
    expect(fs.readFileSync(path.join(h.hostHome, "keep-me"), "utf8")).toBe("x");
    expect((await vms()).map((v) => v.name)).not.toContain("managed");
    expect((await fabrik(t, ["vm", "remove", "managed"])).code).toBe(4);
  });

  it("runs list: one connection and one probe per host, in parallel; a dead host and a silent one are unreachable rows within the deadline", async () => {
    const { dir: fxDir, manifest } = await ensureFixtures();
    const c = fixtureCase(manifest, "0.32.0", "finished");
    const names = ["sd-a", "sd-b", "sd-c", "sd-dead", "sd-silent"];
    const hs = await Promise.all(names.map(async (n) => {
      // The probe needs bun in the guest: the fixture engine's, hard-linked.
      const h = await host(n, { engines: { "0.32.0": path.join(REPO_ROOT, ".cache/engines/0.32.0") } });
      for (let i = 1; i <= 2; i++) {
        const cd = path.join(h.hostHome, "work", n, ".runs", `${i}-seq`);
        fs.mkdirSync(path.join(cd, ".smithers"), { recursive: true });
        for (const f of Object.keys(c.files)) fs.copyFileSync(path.join(fxDir, c.dir, f), path.join(cd, ".smithers", f.replace(/^run\.db/, `run-${i}.db`)));
        fs.writeFileSync(path.join(cd, "exit_code"), "0\n");
      }
      expect((await run("chown", ["-R", `${h.uid}:${h.gid}`, path.join(h.hostHome, "work")])).code).toBe(0);
      expect((await fabrik(t, addArgs(world, n, h))).code).toBe(0);
      const imp = await fabrik(t, ["runs", "import", "--vm", n, "--json"]);
      expect(imp.code, imp.stderr).toBe(0);
      expect(json<{ imported: unknown[] }>(imp).imported).toHaveLength(2);
      return h;
    }));
    const [a, b, cc, dead, silent] = hs as [hosts.SshTestHost, hosts.SshTestHost, hosts.SshTestHost, hosts.SshTestHost, hosts.SshTestHost];
    await hosts.stopHost(dead);
    // "silent": the port accepts TCP connections and never says a word (a hung machine, a black hole behind NAT).
    await hosts.stopHost(silent);
    const sockets: net.Socket[] = [];
    const hole = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => hole.listen(silent.port, "127.0.0.1", resolve));
    try {
      const before = [a, b, cc].map((h) => hosts.sshdActivity(h));
      const t0 = Date.now();
      const r = await fabrik(t, ["runs", "list", "--json", "--limit", "100"]);
      const wall = Date.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      const rows = json<RunRow[]>(r).filter((x) => names.includes(x.vm));
      const byVm = (vm: string) => rows.filter((x) => x.vm === vm);
      for (const vm of ["sd-a", "sd-b", "sd-c"]) expect(byVm(vm).map((x) => [x.source, x.effective_status])).toEqual([["live", "done"], ["live", "done"]]);
      expect(byVm("sd-dead").every((x) => x.source === "unreachable" && /ECONNREFUSED/.test(x.unreachable_reason ?? ""))).toBe(true);
      expect(byVm("sd-silent").every((x) => x.source === "unreachable")).toBe(true);
      expect(byVm("sd-silent")[0]!.unreachable_reason).toMatch(/handshake|timed out|within/i);
      expect(r.stderr).toMatch(/VM sd-dead is unreachable/);
      // Bounded by the 4 s deadline (plus fabrik's start-up on a busy machine), not by the silent host.
      expect(wall).toBeLessThan(4000 + 6000);
      // Exactly one new connection and one new channel (the probe) per live host.
      [a, b, cc].forEach((h, i) => {
        const now = hosts.sshdActivity(h);
        expect([now.logins - before[i]!.logins, now.sessions - before[i]!.sessions], h.name).toEqual([1, 1]);
      });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => hole.close(resolve));
    }
  });

  it("runs watch keeps one connection across refreshes, reports a host that goes away, and carries on when it comes back", async () => {
    const h = await sshHostVm(t, world, "sd-watch");
    mine.push(h);
    const g = new Gate();
    gates.push(g);
    const launched = await fabrik(t, ["run", "--vm", "sd-watch", "--workflow", SEQ, "--input", JSON.stringify({ tasks: 3, sleepMs: 50, ...g.input }), "--json"], { timeoutMs: 180_000 });
    expect(launched.code, launched.stderr).toBe(0);
    const id = json<{ id: number }>(launched).id;
    await g.at(1);
    const before = logins(h);
    const w: RunningCli = startFabrik(t, ["runs", "watch", "--vm", "sd-watch", "--run-id", String(id), "--interval", "0.5", "--exit-status"], { timeoutMs: 150_000 });
    const seen = (re: RegExp, what: string, stream: () => string = w.out) =>
      waitFor(() => re.test(stream()), { timeoutMs: 60_000, intervalMs: 50, what: `watch to print ${what}`, describe: () => `stdout:\n${w.out()}\nstderr:\n${w.err()}` });
    await seen(new RegExp(`run ${id} step-1 in-progress`), "step-1 running");
    // Several refreshes on the open connection.
    await new Promise((r) => setTimeout(r, 2000));
    expect(logins(h) - before).toBe(1);
    // The network goes away (sshd down: connections drop, new ones are refused); the run goes on in the machine.
    await hosts.sshdDown(h);
    await seen(/connection to VM sd-watch lost/, "the lost connection", w.err);
    await seen(new RegExp(`run ${id} VM sd-watch unreachable: .*still trying`), "the run unreachable");
    await hosts.sshdUp(h);
    await seen(/reconnected to VM sd-watch after \d+ attempts?/, "the reconnection", w.err);
    g.releaseThrough(3);
    expect(await w.exited, w.err()).toBe(0);
    expect(w.out().trim().split("\n").at(-1)).toBe(`run ${id} finished: done (exit 0)`);
    expect(w.out()).not.toMatch(/→ (orphaned|failed)/);
    expect(logins(h) - before).toBe(2); // the first connection, and the one after the outage
  });

  it("a jump host: its key is checked too, and the VM is reached through it", async () => {
    const jump = await host("sd-jump", { jumpHost: true }, false);
    const target = await host("sd-behind");
    const args = [...addArgs(world, "behind", target), "--jump", `${jump.user}@127.0.0.1:${jump.port}`];
    const refused = await fabrik(t, args);
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toContain(`the host key of 127.0.0.1:${jump.port} is not known: ED25519 key ${await fingerprintOf(jump)}`);
    hosts.trustHost(world, jump);
    const ok = await fabrik(t, [...args, "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(json<{ jump: string }>(ok).jump).toBe(`${jump.user}@127.0.0.1:${jump.port}`);
    const before = logins(jump);
    const sh = await fabrik(t, ["vm", "shell", "behind", "--", "hostname"]);
    expect(sh.stdout).toBe("sd-behind\n");
    expect(logins(jump) - before).toBe(1);
    expect((await vms()).find((v) => v.name === "behind")!.ssh).toBe(`${target.user}@127.0.0.1:${target.port} via ${jump.user}@127.0.0.1:${jump.port}`);
  });
});

/** `ssh-agent -D -a SOCK` in the foreground (killed by the test). */
function startAgent(sock: string) {
  return spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
}
