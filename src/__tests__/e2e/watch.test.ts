/**
 * Issue 6 `runs watch` end to end with the real engine in a stand-in Lima VM: non-TTY lines, --json events,
 * --exit-status for finished, failed and already-finished runs, and the TTY view through tmux (a real
 * pseudo-terminal): the task list and progress are on screen and no frame is left in the scrollback.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { FABRIK_BIN, fabrik, fabrikAsync, json, makeTestEnv, standinUnavailable, stopAllStandinVms, waitFor, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { shellQuote } from "../../vm/shell-quote.js";

const skip = standinUnavailable();
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
const hasTmux = spawnSync("tmux", ["-V"]).status === 0;

async function launch(t: TestEnv, input: object): Promise<number> {
  const r = await fabrikAsync(t, ["run", "--vm", "wv", "--workflow", SEQ, "--input", JSON.stringify(input), "--json"], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  return json<{ id: number }>(r).id;
}

describe.skipIf(skip)("runs watch", () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = makeTestEnv();
    const r = await fabrikAsync(t, ["vm", "create", "wv"], { timeoutMs: 600_000 });
    expect(r.code, r.stderr).toBe(0);
  }, 600_000);
  afterAll(() => stopAllStandinVms(t));

  it("off a TTY: one line per state change, a final line, exit 0 with --exit-status for a finished run", async () => {
    const id = await launch(t, { tasks: 6, sleepMs: 600 });
    const r = await fabrikAsync(t, ["runs", "watch", "--vm", "wv", "--run-id", String(id), "--interval", "0.5", "--exit-status"], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.at(-1)).toBe(`run ${id} finished: done (exit 0)`);
    for (let k = 1; k <= 6; k++) expect(r.stdout).toMatch(new RegExp(`run ${id} step-${k} finished`));
    expect(r.stdout).toMatch(new RegExp(`run ${id} status .* → done`));
    // one line per change: no line repeats
    const body = lines.map((l) => l.replace(/^\S+ /, ""));
    expect(new Set(body).size).toBe(body.length);
    expect(r.stderr).toContain("watching 1 run(s) in VM wv");
  });

  it("--json: NDJSON events, one object per change, ending with a final event", async () => {
    const id = await launch(t, { tasks: 3, sleepMs: 500 });
    const r = await fabrikAsync(t, ["runs", "watch", "--vm", "wv", "--run-id", String(id), "--interval", "0.5", "--json"], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; run_id: number; node_id?: string; state?: string; status?: string; exit_code?: number });
    expect(events.every((e) => e.run_id === id)).toBe(true);
    expect(events.filter((e) => e.type === "node" && e.state === "finished").map((e) => e.node_id)).toEqual(["step-1", "step-2", "step-3"]);
    expect(events.at(-1)).toMatchObject({ type: "final", status: "done", exit_code: 0 });
  });

  it("--exit-status follows a failed run, also when it had already ended before watch started", async () => {
    const id = await launch(t, { tasks: 3, sleepMs: 300, failAt: 2 });
    const r = await fabrikAsync(t, ["runs", "watch", "--vm", "wv", "--run-id", String(id), "--interval", "0.5", "--exit-status"], { timeoutMs: 120_000 });
    expect(r.code).toBe(8);
    expect(r.stdout.trim().split("\n").at(-1)).toBe(`run ${id} finished: failed (exit 1)`);
    const again = fabrik(t, ["runs", "watch", "--vm", "wv", "--run-id", String(id), "--exit-status"]);
    expect(again.code).toBe(8);
    const plain = fabrik(t, ["runs", "watch", "--vm", "wv", "--run-id", String(id)]);
    expect(plain.code).toBe(0);
  });

  it("rejects an interval under 0.5 s and a run in another VM", () => {
    expect(fabrik(t, ["runs", "watch", "--vm", "wv", "--interval", "0.1"]).code).toBe(2);
    expect(fabrik(t, ["runs", "watch", "--vm", "other", "--run-id", "1"]).stderr).toMatch(/is in VM wv/);
  });

  it.skipIf(!hasTmux)("on a TTY: draws the task list and progress in place, no frames left in the scrollback", async () => {
    const id = await launch(t, { tasks: 4, sleepMs: 1500 });
    const session = `fabrik-watch-${process.pid}`;
    // A script that sets the environment itself (a tmux server started earlier keeps its own environment).
    const script = path.join(t.tmp, "watch-in-tmux.sh");
    const exports = Object.entries({ PATH: t.env.PATH!, FABRIK_HOME: t.fabrikHome, LIMA_HOME: t.limaHome, FABRIK_CONFIG: t.env.FABRIK_CONFIG!, NO_COLOR: "1" })
      .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
      .join("\n");
    fs.writeFileSync(script, `${exports}\n${shellQuote(process.execPath)} ${shellQuote(FABRIK_BIN)} runs watch --vm wv --run-id ${id} --interval 0.5\necho WATCH-EXIT=$?\nsleep 30\n`);
    expect(spawnSync("tmux", ["new-session", "-d", "-s", session, "-x", "120", "-y", "40", `bash ${shellQuote(script)}`]).status).toBe(0);
    try {
      const screen = () => spawnSync("tmux", ["capture-pane", "-p", "-t", session], { encoding: "utf8" }).stdout;
      const mid = await waitFor(() => (/step-2\s+running/.test(screen()) ? screen() : undefined), { timeoutMs: 90_000, intervalMs: 200, what: "the live frame" }).catch((err: Error) => {
        throw new Error(`${err.message}; screen was:\n${screen()}`);
      });
      expect(mid).toContain("fabrik runs watch — VM wv");
      expect(mid).toMatch(/✓ step-1\s+finished/);
      expect(mid).toMatch(/· step-4\s+pending/);
      expect(mid).toMatch(/[█░]{30} 1\/4 \(25%\)/);
      const end = await waitFor(() => (screen().includes("WATCH-EXIT=0") ? screen() : undefined), { timeoutMs: 60_000, intervalMs: 300, what: "watch to exit" });
      expect(end).toContain(`run ${id} finished: done (exit 0)`);
      // The scrollback (history + screen) holds the final summary once and no intermediate frames.
      const all = spawnSync("tmux", ["capture-pane", "-p", "-S", "-1000", "-t", session], { encoding: "utf8" }).stdout;
      expect(all.split("fabrik runs watch — VM wv").length - 1).toBe(0);
      expect(all.match(/✓ step-1/g)?.length).toBe(1);
      expect(all.match(new RegExp(`run ${id} finished`, "g"))?.length).toBe(1);
    } finally {
      spawnSync("tmux", ["kill-session", "-t", session]);
    }
  }, 240_000);

  it("a VM that becomes unreachable shows as such; watch keeps trying until --timeout (exit 10)", async () => {
    const t2: TestEnv = t;
    const r2 = await fabrikAsync(t2, ["vm", "create", "wu", "--no-engine"], { timeoutMs: 120_000 });
    expect(r2.code, r2.stderr).toBe(0);
    const run = await fabrikAsync(t2, ["run", "--vm", "wu", "--workflow", SEQ, "--input", JSON.stringify({ tasks: 6, sleepMs: 3000 }), "--json"], { timeoutMs: 300_000 });
    expect(run.code, run.stderr).toBe(0);
    const id = json<{ id: number }>(run).id;
    const { spawn } = await import("node:child_process");
    const p = spawn(process.execPath, [FABRIK_BIN, "runs", "watch", "--vm", "wu", "--run-id", String(id), "--interval", "0.5", "--timeout", "20"], { env: t.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (c) => (out += c));
    p.stderr.on("data", (c) => (err += c));
    await waitFor(() => out.includes("in-progress"), { timeoutMs: 60_000, what: "a task to start" });
    expect(fabrik(t, ["vm", "stop", "wu"]).code).toBe(0);
    const code = await new Promise<number>((resolve) => p.on("exit", (c) => resolve(c ?? -1)));
    expect(code).toBe(10);
    expect(out).toMatch(new RegExp(`run ${id} VM wu unreachable: .*still trying`));
    expect(out).not.toMatch(/status running → (orphaned|failed)/);
    expect(err).toMatch(/timed out after 20s/);
  }, 180_000);

  it("Ctrl-C exits 130 and never touches the run", async () => {
    const id = await launch(t, { tasks: 3, sleepMs: 2000 });
    const { spawn } = await import("node:child_process");
    const p = spawn(process.execPath, [FABRIK_BIN, "runs", "watch", "--vm", "wv", "--run-id", String(id), "--interval", "0.5"], { env: t.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (c) => (out += c));
    await waitFor(() => out.includes("step-1"), { timeoutMs: 60_000, what: "watch output" });
    p.kill("SIGINT");
    const code = await new Promise<number>((resolve) => p.on("exit", (c) => resolve(c ?? -1)));
    expect(code).toBe(130);
    const v = json<{ effective_status: string }>(fabrik(t, ["runs", "show", "--id", String(id), "--json"]));
    expect(["running", "done"]).toContain(v.effective_status);
    await waitFor(() => json<{ effective_status: string }>(fabrik(t, ["runs", "show", "--id", String(id), "--json"])).effective_status === "done", { timeoutMs: 60_000, intervalMs: 1000, what: "the run to finish untouched" });
  });
});
