/**
 * The run-level commands in-process, against fake drivers that fail on any unexpected call: what they refuse before
 * touching the VM, and that an ended run or a refused plan costs exactly one look (the probe) and changes nothing
 * in the VM.
 */
import { describe, it, expect, beforeEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { main } from "../../fabrik/cli.js";
import { memoryIo } from "../../fabrik/io.js";
import { Registry } from "../../fabrik/registry.js";
import { FakeDriver } from "../helpers/fake-driver.js";
import type { ProbeResponse } from "../../vm/probe-schema.js";

const NOW = Date.now();
let home: string;
let env: NodeJS.ProcessEnv;

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-ctl-"));
  env = { PATH: process.env.PATH, HOME: home, FABRIK_HOME: path.join(home, "fh"), FABRIK_CONFIG: path.join(home, "none.json") };
  const reg = Registry.open(path.join(home, "fh", "registry.db"));
  reg.upsertVm({ name: "vm1", driver: "lima", guest_home: "/home/u.guest", created_at_ms: NOW, template: null });
  reg.insertRunWith((id) => ({
    vm: "vm1",
    driver: "lima",
    control_dir: `/home/u.guest/work/vm1/.runs/${id}-seq`,
    workflow_path: `/home/u.guest/work/vm1/.runs/${id}-seq/workflow/seq.tsx`,
    smithers_run_id: `fabrik-${id}`,
    smithers_db_path: `/home/u.guest/work/vm1/.runs/${id}-seq/.smithers/run-${id}.db`,
    engine_version: "0.32.0",
    status: "running",
    started_at_ms: NOW - 60_000,
    launcher_pid: 10,
  }));
  reg.close();
});

async function run(argv: string[], lima?: FakeDriver) {
  const io = memoryIo();
  const code = await main(argv, { io, env, noExit: true, drivers: lima ? { lima } : {} });
  return { code, out: io.out(), err: io.err() };
}

/** A probe answer for run 1 with the engine's status `status` and every process dead (or the engine alive). */
function answer(status: string, engineAlive = false): ProbeResponse {
  const dead = (pid: number) => ({ pid, alive: engineAlive, state: engineAlive ? "S" : null, cmdline: engineAlive ? "bun smithers up" : null });
  return {
    v: 1,
    tool: "bun",
    tool_version: "1.4.5",
    sqlite_version: "3.54.0",
    now_ms: NOW,
    discovered: [],
    runs: [
      {
        key: "1",
        errors: [],
        control: {
          exists: true, heartbeat: null, heartbeat_error: "missing", heartbeat_mtime_ms: null, launcher: dead(10), child: dead(11), engine: dead(11),
          exit_code: status === "finished" ? 0 : null, exit_code_garbage: false, log_size_bytes: 10, log_mtime_ms: NOW, log_blob_too_big: false, run_sh_engine: "0.32.0",
        },
        db: {
          path: "/home/u.guest/work/vm1/.runs/1-seq/.smithers/run-1.db", exists: true, size_bytes: 4096, wal_size_bytes: 0, schema: "modern", missing_columns: [], error: null,
          run: {
            run_id: "fabrik-1", status, workflow_name: "seq", workflow_path: null, created_at_ms: NOW - 60_000, started_at_ms: NOW - 60_000,
            finished_at_ms: status === "finished" ? NOW - 1000 : null, heartbeat_at_ms: NOW - (engineAlive ? 1000 : 50_000), runtime_owner_id: "pid:11:x", owner: dead(11), error: null,
          },
          runs_in_db: 1, by_state: { finished: 6 }, total_nodes: 6, in_progress: [], last_failed: null, max_response_text_bytes: 10, max_error_json_bytes: 0, oversized_values: 0,
          nodes: null, nodes_truncated: false,
        },
      },
    ],
  };
}
const probe = (a: ProbeResponse) => (_vm: unknown, argv: unknown) => {
  expect((argv as string[])[0]).toBe("sh");
  expect((argv as string[])[3]).toBe("fabrik-probe"); // the probe, never the control program
  return { exitCode: 0, stdout: JSON.stringify(a) + "\n", stderr: "", durationMs: 3 };
};

describe("run cancel (in-process)", () => {
  it("without --yes and without a TTY: a usage error before anything is asked", async () => {
    const r = await run(["run", "cancel", "--id", "1"], new FakeDriver());
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/pass --yes/);
  });
  it("an ended run: says so, exit 0, one look, nothing applied in the VM and no history entry", async () => {
    const lima = new FakeDriver().expect("exec", probe(answer("finished")));
    const r = await run(["run", "cancel", "--id", "1", "--yes"], lima);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/run 1 already ended \(finished\); nothing to cancel, nothing was changed/);
    expect(lima.calls.map((c) => c.method)).toEqual(["exec"]);
    const reg = Registry.open(path.join(home, "fh", "registry.db"));
    expect(reg.runEvents(1).map((e) => e.kind)).toEqual(["status"]); // the look's own verdict, never a cancel
    reg.close();
  });
  it("--grace takes a duration with a unit", async () => {
    const r = await run(["run", "cancel", "--id", "1", "--yes", "--grace", "30"], new FakeDriver());
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--grace must be a duration with a unit/);
  });
});

describe("run compact, run signal (in-process)", () => {
  it("compact of a live run is refused after one look (exit 5), naming what works", async () => {
    const lima = new FakeDriver().expect("exec", probe(answer("running", true)));
    const r = await run(["run", "compact", "--id", "1"], lima);
    expect(r.code).toBe(5);
    expect(r.err).toMatch(/cannot compact run 1: run 1 is running; compact works on ended runs only.*fabrik run cancel --id 1/);
    expect(lima.calls.map((c) => c.method)).toEqual(["exec"]);
  });
  it("signal --data must be a JSON object, checked before the VM is asked", async () => {
    for (const data of ["[1]", "nope"]) {
      const r = await run(["run", "signal", "--id", "1", "go", "--data", data], new FakeDriver());
      expect(r.code, data).toBe(2);
      expect(r.err).toMatch(/--data/);
    }
  });
  it("approve with no waiting gate: refused after one look, the plan as JSON with --json", async () => {
    const lima = new FakeDriver().expect("exec", probe(answer("running", true)));
    const r = await run(["run", "approve", "--id", "1", "--json"], lima);
    expect(r.code).toBe(5);
    const o = JSON.parse(r.out) as { allowed: boolean; plan: { reasons: { code: string }[] } };
    expect(o.allowed).toBe(false);
    expect(o.plan.reasons.map((x) => x.code)).toEqual(["NO_WAITING_GATE"]);
  });
});
