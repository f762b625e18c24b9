/**
 * Issue 6 `runs watch` end to end with the real engine in a VM of each driver (the worker's shared stand-in Lima VM,
 * the worker's shared SSH host; the refreshes of one watch go over ONE connection to it): non-TTY
 * lines, --json events, --exit-status for finished, failed and already-finished runs, and the TTY view through
 * tmux (a real pseudo-terminal): the task list and progress are on screen and no frame is left in the
 * scrollback. Runs are held by a gate (examples/workflows/seq.tsx `gateDir`): each task waits until the test
 * releases it, so what watch must see is on screen when the test looks, however slow the machine.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { FABRIK_BIN, fabrik, json, startFabrik, waitEngineExit, waitFor, type RunningCli } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { E2E_DRIVERS, driverFleet, driverSkip, type DriverFleet } from "../helpers/driver-fleet.js";
import { shellQuote } from "../../vm/shell-quote.js";
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");

/** Wait until the watch output matches `re`; the failure shows what watch printed. */
function seen(w: RunningCli, re: RegExp, what: string, timeoutMs = 60_000) {
  return waitFor(() => re.test(w.out()), { timeoutMs, intervalMs: 50, what: `watch to print ${what} (${re})`, describe: () => `stdout:\n${w.out()}\nstderr:\n${w.err()}` });
}

describe.each(E2E_DRIVERS)("runs watch (%s driver)", (driver) => {
  const skip = driverSkip(driver);
  const noTmux = skip ? skip : missingPrereqs("tmux");
  let t: DriverFleet;
  let VM = "";
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  async function launch(input: object): Promise<number> {
    const r = await fabrik(t, ["run", "--vm", VM, "--workflow", SEQ, "--input", JSON.stringify(input), "--json"], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    return json<{ id: number }>(r).id;
  }
  beforeAll(async () => {
    if (skip) return;
    t = await driverFleet(driver);
    VM = t.vm;
  }, 600_000);
  afterAll(() => {
    for (const g of gates) g.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });
  describe.skipIf(skip)(titled(`${driver} driver`, skip), () => {

    it("off a TTY: one line per state change, a final line, exit 0 with --exit-status for a finished run", async () => {
      const g = gate();
      const id = await launch({ tasks: 6, sleepMs: 50, ...g.input });
      const w = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--interval", "0.5", "--exit-status"], { timeoutMs: 120_000 });
      // Let one task finish at a time, after watch has shown the previous one.
      await seen(w, new RegExp(`run ${id} step-1 in-progress`), "step-1 running");
      for (let k = 1; k <= 6; k++) {
        g.release(k);
        await seen(w, new RegExp(`run ${id} step-${k} finished`), `step-${k} finished`);
      }
      expect(await w.exited, w.err()).toBe(0);
      const lines = w.out().trim().split("\n");
      expect(lines.at(-1)).toBe(`run ${id} finished: done (exit 0)`);
      for (let k = 1; k <= 6; k++) expect(w.out()).toMatch(new RegExp(`run ${id} step-${k} finished`));
      expect(w.out()).toMatch(new RegExp(`run ${id} status .* → done`));
      // one line per change: no line repeats
      const body = lines.map((l) => l.replace(/^\S+ /, ""));
      expect(new Set(body).size).toBe(body.length);
      expect(w.err()).toContain(`watching 1 run(s) in VM ${VM}`);
    });

    it("--json: NDJSON events, one object per change, ending with a final event", async () => {
      const g = gate();
      const id = await launch({ tasks: 3, sleepMs: 50, ...g.input });
      const w = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--interval", "0.5", "--json"], { timeoutMs: 120_000 });
      await seen(w, /"node_id": ?"step-1"/, "an event for step-1");
      for (let k = 1; k <= 3; k++) {
        g.release(k);
        await seen(w, new RegExp(`"node_id": ?"step-${k}",(.*)"state": ?"finished"`), `step-${k} finished`);
      }
      expect(await w.exited, w.err()).toBe(0);
      const events = w.out().trim().split("\n").map((l) => JSON.parse(l) as { type: string; run_id: number; node_id?: string; state?: string; status?: string; exit_code?: number });
      expect(events.every((e) => e.run_id === id)).toBe(true);
      expect(events.filter((e) => e.type === "node" && e.state === "finished").map((e) => e.node_id)).toEqual(["step-1", "step-2", "step-3"]);
      expect(events.at(-1)).toMatchObject({ type: "final", status: "done", exit_code: 0 });
    });

    it("--exit-status follows a failed run, also when it had already ended before watch started", async () => {
      const id = await launch({ tasks: 3, sleepMs: 50, failAt: 2 });
      const r = await fabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--interval", "0.5", "--exit-status"], { timeoutMs: 120_000 });
      expect(r.code).toBe(8);
      expect(r.stdout.trim().split("\n").at(-1)).toBe(`run ${id} finished: failed (exit 1)`);
      const again = await fabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--exit-status"]);
      expect(again.code).toBe(8);
      const plain = await fabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id)]);
      expect(plain.code).toBe(0);
    });

    it("rejects an interval under 0.5 s and a run in another VM", async () => {
      expect((await fabrik(t, ["runs", "watch", "--vm", VM, "--interval", "0.1"])).code).toBe(2);
      expect((await fabrik(t, ["runs", "watch", "--vm", "other", "--run-id", "1"])).stderr).toMatch(new RegExp(`is in VM ${VM}`));
    });

    it.skipIf(noTmux)(titled("on a TTY: draws the task list and progress in place, no frames left in the scrollback", noTmux), async () => {
      const g = gate();
      const id = await launch({ tasks: 4, sleepMs: 50, ...g.input });
      // A private tmux server (socket in this file's folder): nothing shared with a user's tmux, nothing left in /tmp.
      const sock = path.join(t.tmp, "tmux.sock");
      const tmux = (...args: string[]) => run("tmux", ["-S", sock, ...args], { timeoutMs: 10_000 });
      const session = "watch";
      const script = path.join(t.tmp, "watch-in-tmux.sh");
      const exports = Object.entries({ PATH: t.env.PATH!, HOME: t.env.HOME!, FABRIK_HOME: t.fabrikHome, LIMA_HOME: t.limaHome, FABRIK_CONFIG: t.env.FABRIK_CONFIG!, NO_COLOR: "1", TMPDIR: t.env.TMPDIR ?? "/tmp" })
        .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
        .join("\n");
      fs.writeFileSync(script, `${exports}\n${shellQuote(process.execPath)} ${shellQuote(FABRIK_BIN)} runs watch --vm ${VM} --run-id ${id} --interval 0.5\necho WATCH-EXIT=$?\nsleep 30\n`);
      expect((await tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", `bash ${shellQuote(script)}`)).code).toBe(0);
      try {
        const screen = async () => (await tmux("capture-pane", "-p", "-t", session)).stdout;
        g.release(1); // step-1 finishes, step-2 is held: the frame to check stays on screen
        let last = "";
        const mid = await waitFor(async () => ((last = await screen()), /step-2\s+running/.test(last) ? last : undefined), {
          timeoutMs: 90_000,
          intervalMs: 200,
          what: "the live frame",
          describe: () => `screen was:\n${last}`,
        });
        expect(mid).toContain(`fabrik runs watch — VM ${VM}`);
        expect(mid).toMatch(/✓ step-1\s+finished/);
        expect(mid).toMatch(/· step-4\s+pending/);
        expect(mid).toMatch(/[█░]{30} 1\/4 \(25%\)/);
        g.release(2, 3, 4);
        const end = await waitFor(async () => ((last = await screen()), last.includes("WATCH-EXIT=0") ? last : undefined), { timeoutMs: 60_000, intervalMs: 300, what: "watch to exit", describe: () => `screen was:\n${last}` });
        expect(end).toContain(`run ${id} finished: done (exit 0)`);
        // The scrollback (history + screen) holds the final summary once and no intermediate frames.
        const all = (await tmux("capture-pane", "-p", "-S", "-1000", "-t", session)).stdout;
        expect(all.split(`fabrik runs watch — VM ${VM}`).length - 1).toBe(0);
        expect(all.match(/✓ step-1/g)?.length).toBe(1);
        expect(all.match(new RegExp(`run ${id} finished`, "g"))?.length).toBe(1);
      } finally {
        await tmux("kill-server");
      }
    }, 240_000);

    it("a VM that becomes unreachable shows as such; watch keeps trying until --timeout (exit 10)", async () => {
      const g = gate();
      const id = await launch({ tasks: 6, sleepMs: 50, ...g.input });
      const w = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--interval", "0.5", "--timeout", "20"], { timeoutMs: 120_000 });
      try {
        await seen(w, /in-progress/, "a task to start");
        // Lima: `vm stop --force` (the watched run is active); ssh: the host loses power.
        await t.powerOff(VM);
        const code = await w.exited;
        expect(code).toBe(10);
        expect(w.out()).toMatch(new RegExp(`run ${id} VM ${VM} unreachable: .*still trying`));
        expect(w.out()).not.toMatch(/status running → (orphaned|failed)/);
        expect(w.err()).toMatch(/timed out after 20s/);
      } finally {
        // The worker's shared VM: power it on again for the tests (and files) that follow.
        await t.powerOn(VM);
      }
    }, 180_000);

    it("Ctrl-C exits 130 and never touches the run", async () => {
      const g = gate();
      const id = await launch({ tasks: 3, sleepMs: 50, ...g.input });
      const w = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(id), "--interval", "0.5"]);
      await seen(w, /step-1/, "step-1");
      w.kill("SIGINT");
      expect(await w.exited).toBe(130);
      // The gate holds the run in step-1: it must still be running, untouched.
      const v = json<{ effective_status: string }>(await fabrik(t, ["runs", "show", "--id", String(id), "--json"]));
      expect(v.effective_status).toBe("running");
      g.releaseThrough(3);
      await waitEngineExit(t, VM, json<{ control_dir: string }>(await fabrik(t, ["runs", "show", "--id", String(id), "--json", "--no-live"])).control_dir);
      await waitFor(async () => json<{ effective_status: string }>(await fabrik(t, ["runs", "show", "--id", String(id), "--json"])).effective_status === "done", { timeoutMs: 60_000, intervalMs: 1000, what: "the run to finish untouched" });
    });
  });
});
