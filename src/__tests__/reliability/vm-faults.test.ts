/**
 * Reliability: the VM goes away under a command that follows it (docs/reliability.md, "VM faults").
 *
 * - A VM restart mid-watch and mid-attach (defect 4): Lima picks a new SSH port at every start, so a transport that
 *   keeps dialling the port it saw first never finds the VM again. The old port is held by a listener that drops
 *   every connection (as if another VM or service had taken it), so the test fails for a transport that does not
 *   read the VM's ssh.config again, however the kernel picks ports.
 * - sshd killed mid-watch, mid-attach and mid-list, and kept down (the VM's init, which restarts sshd like systemd,
 *   frozen meanwhile): watch and attach notice the loss and reconnect once sshd is back, the list ends within its
 *   deadline with the run's cached row marked unreachable, the cache keeps its values, the run finishes, attach's
 *   output is the log byte for byte, and the next list is live again.
 *
 * Real parts: the worker's stand-in VM (helpers/worker-fleet.ts), its real sshd, the real 0.32 engine held at a
 * gate (examples/workflows/seq.tsx).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import type net from "node:net";
import { fabrik, json, startFabrik, waitFor, type RunningCli } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { expectClean, guestHomeOf, holdPort, hostPathIn, registryDump, registryIntegrity, sshPortOf } from "../helpers/reliability.js";

/** The pid namespace of process `pid` (`pid:[…]`), or undefined when it is gone. */
function pidNs(pid: number | string): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** Every live sshd process (listener and sessions: `sshd`, `sshd-session`, …) in the pid namespace `ns`. */
function sshdsIn(ns: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (/^sshd/.test(comm) && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z" && pidNs(d) === ns) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
import { workerFleet, type Fleet } from "../helpers/worker-fleet.js";

const skip = missingPrereqs(...STANDIN);
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");

function printed(c: RunningCli, re: RegExp, what: string, timeoutMs = 90_000) {
  return waitFor(() => re.test(c.out()), { timeoutMs, intervalMs: 50, what, describe: () => `stdout:\n${c.out().slice(-3000)}\nstderr:\n${c.err().slice(-3000)}` });
}

describe.skipIf(skip)(titled("reliability: VM faults under watch, attach and list", skip), () => {
  let t: Fleet;
  let VM = "";
  let home = "";
  const gates: Gate[] = [];
  const held: net.Server[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  const launch = async (input: object): Promise<{ id: number; control_dir: string }> => {
    const r = await fabrik(t, ["run", "--vm", VM, "--workflow", SEQ, "--input", JSON.stringify(input), "--json"], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    return json<{ id: number; control_dir: string }>(r);
  };

  beforeAll(async () => {
    // A 2 s engine heartbeat threshold: a run whose engine died with the VM is judged at once after the restart.
    t = await workerFleet({ thresholds: { engine_heartbeat_stale_ms: 2000 } });
    VM = t.vm;
    home = await guestHomeOf(t, VM);
  }, 600_000);
  afterAll(async () => {
    for (const s of held) s.close();
    for (const g of gates) g.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });

  it("defect 4: watch and attach recover from a VM restart on a NEW SSH port (the old one taken), and tell the truth", async () => {
    const g = gate();
    const run = await launch({ tasks: 4, sleepMs: 50, ...g.input });
    g.release(1);
    await g.at(2);
    const watch = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(run.id), "--interval", "0.5", "--timeout", "150"], { timeoutMs: 200_000 });
    const attach = startFabrik(t, ["run", "attach", "--id", String(run.id), "--tail", "100000", "--exit-status"], { timeoutMs: 200_000 });
    try {
      await printed(watch, new RegExp(`run ${run.id} step-2 in-progress`), "watch to show step-2 running");
      await waitFor(() => /\(ssh\)/.test(watch.err()) && attach.out().length > 0, { timeoutMs: 30_000, what: "watch on SSH and attach printing", describe: () => watch.err() + attach.err() });
      const oldPort = await sshPortOf(t, VM);
      expect(oldPort).toBeDefined();
      expect((await fabrik(t, ["vm", "stop", "--force", VM])).code).toBe(0);
      held.push(await holdPort(oldPort!)); // the old port now answers, but is not the VM
      const started = await fabrik(t, ["vm", "start", VM], { timeoutMs: 120_000 });
      expect(started.code, started.stderr).toBe(0);
      const newPort = await sshPortOf(t, VM);
      expect(newPort).toBeDefined();
      expect(newPort).not.toBe(oldPort);

      // The engine died with the VM: both must find the VM on its new port and report how the run ended.
      const [wCode, aCode] = await Promise.all([watch.exited, attach.exited]);
      expect(wCode, `watch stderr:\n${watch.err()}`).toBe(0);
      expect(watch.out()).toMatch(new RegExp(`run ${run.id} (ended without finishing|finished): \\w+`));
      expect(watch.err()).toMatch(new RegExp(`reconnected to VM ${VM}`));
      expect(watch.err()).not.toMatch(/timed out/);
      expect(aCode, `attach stderr:\n${attach.err()}`).toBe(10); // --exit-status: ended without finishing
      expect(attach.err()).toMatch(new RegExp(`reconnected to VM ${VM}`));
      expect(attach.err().trim().split("\n").at(-1)).toMatch(new RegExp(`fabrik: run ${run.id} ended without finishing: \\w+`));
      // Every byte of the log exactly once, nothing from the VM unfiltered.
      const log = fs.readFileSync(hostPathIn(t, VM, home, `${run.control_dir}/reports/smithers.log`), "utf8");
      expect(attach.out()).toBe(log);
      expectClean(watch.out() + watch.err(), "watch");
      expectClean(attach.err(), "attach stderr");
    } finally {
      watch.kill("SIGKILL");
      attach.kill("SIGKILL");
      g.dispose();
      // Leave the worker's shared VM running for the files that follow.
      if ((await sshPortOf(t, VM)) === undefined) await fabrik(t, ["vm", "start", VM], { timeoutMs: 120_000 });
    }
  }, 300_000);

  it("sshd killed mid-watch, mid-attach and mid-list, kept down, then back: bounded, truthful, recovered, the log byte-identical", async () => {
    const g = gate();
    const run = await launch({ tasks: 3, sleepMs: 50, ...g.input });
    g.release(1);
    await g.at(2);
    const id = String(run.id);
    const watch = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", id, "--interval", "0.5", "--timeout", "150"], { timeoutMs: 200_000 });
    const attach = startFabrik(t, ["run", "attach", "--id", id, "--tail", "100000", "--exit-status"], { timeoutMs: 200_000 });
    const init = Number(fs.readFileSync(path.join(t.limaHome, VM, "qemu.pid"), "utf8").trim());
    const ns = pidNs(init)!;
    let frozen = false;
    try {
      await printed(watch, new RegExp(`run ${id} step-2 in-progress`), "watch to show step-2 running");
      await waitFor(() => /\(ssh\)/.test(watch.err()) && attach.out().length > 0, { timeoutMs: 30_000, what: "watch on SSH and attach printing", describe: () => watch.err() + attach.err() });
      const cached = (await registryDump(t.fabrikHome)).runs!.find((x) => (x as { id: number }).id === run.id) as { status: string };
      expect(cached.status).toBe("running");

      // sshd down and kept down: the VM's init (sshd's supervisor) frozen, every sshd of the VM killed.
      const sshds = sshdsIn(ns);
      expect(sshds.length, "the VM's sshd processes").toBeGreaterThan(0);
      process.kill(init, "SIGSTOP");
      frozen = true;
      for (const pid of sshds) process.kill(pid, "SIGKILL");
      await waitFor(() => sshdsIn(ns).length === 0, { timeoutMs: 10_000, intervalMs: 20, what: "every sshd of the VM to be gone" });
      // watch and attach both see the connection go.
      await waitFor(() => /lost/.test(watch.err()) && /lost/.test(attach.err()), { timeoutMs: 60_000, intervalMs: 50, what: "watch and attach to notice the lost connection", describe: () => `watch:\n${watch.err()}\nattach:\n${attach.err()}` });

      // Mid-list: bounded by the probe deadline, the run's row from the cache, marked unreachable, one warning.
      const started = Date.now();
      const list = await fabrik(t, ["runs", "list", "--json"], { timeoutMs: 90_000 });
      const ms = Date.now() - started;
      console.log(`[vm-faults] runs list with sshd down: exit ${list.code} in ${ms} ms`);
      expect(list.code, list.stderr).toBe(0);
      expect(ms, "runs list with sshd down ends within its deadline").toBeLessThan(45_000);
      const row = json<{ id: number; status: string; effective_status: string; unreachable_reason: string | null }[]>(list).find((x) => x.id === run.id);
      expect(row, list.stdout).toMatchObject({ status: "running", effective_status: "unreachable" });
      expect(row!.unreachable_reason).toBeTruthy();
      expect(list.stderr).toMatch(new RegExp(`VM ${VM}`));
      expectClean(list.stdout + list.stderr, "runs list");
      const after = (await registryDump(t.fabrikHome)).runs!.find((x) => (x as { id: number }).id === run.id) as { status: string };
      expect(after.status, "the cache keeps its value").toBe("running");
    } finally {
      if (frozen) process.kill(init, "SIGCONT"); // sshd comes back (its supervisor restarts it)
    }
    try {
      await waitFor(() => sshdsIn(ns).length > 0, { timeoutMs: 30_000, intervalMs: 50, what: "sshd to be back" });
      g.releaseThrough(3);
      const [wCode, aCode] = await Promise.all([watch.exited, attach.exited]);
      expect(wCode, `watch stderr:\n${watch.err()}`).toBe(0);
      expect(watch.out().trim().split("\n").at(-1)).toMatch(new RegExp(`run ${id} finished: done`));
      expect(watch.err()).toMatch(new RegExp(`reconnected to VM ${VM}`));
      expect(aCode, `attach stderr:\n${attach.err()}`).toBe(0);
      expect(attach.err()).toMatch(new RegExp(`reconnected to VM ${VM}`));
      const log = fs.readFileSync(hostPathIn(t, VM, home, `${run.control_dir}/reports/smithers.log`), "utf8");
      expect(attach.out()).toBe(log);
      expectClean(watch.out() + watch.err(), "watch");
      expectClean(attach.err(), "attach stderr");
      // The next list is live again and tells the end.
      const list = json<{ id: number; status: string; effective_status: string }[]>(await fabrik(t, ["runs", "list", "--json"]));
      expect(list.find((x) => x.id === run.id)).toMatchObject({ effective_status: "done" });
      expect(await registryIntegrity(t.fabrikHome)).toBe("ok");
      const cached = (await registryDump(t.fabrikHome)).runs!.find((x) => (x as { id: number }).id === run.id) as { status: string };
      expect(cached.status).toBe("done");
    } finally {
      watch.kill("SIGKILL");
      attach.kill("SIGKILL");
      g.dispose();
    }
  }, 300_000);
});
