/**
 * `fabrik fleet`, `fabrik doctor` and `fabrik supervise --once` in-process, against fake drivers that fail on any
 * unexpected call: ONE probe round trip per VM, health judged over the recorded history, the fix commands, the
 * supervisor's lease keeping it off a run another supervisor holds, a cancelled run left alone.
 */
import { describe, it, expect, beforeEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { main } from "../../fabrik/cli.js";
import { memoryIo } from "../../fabrik/io.js";
import { Registry } from "../../fabrik/registry.js";
import { FakeDriver, vmInfo } from "../helpers/fake-driver.js";
import type { ProbeResponse } from "../../vm/probe-schema.js";
import type { HealthFacts } from "../../vm/health-schema.js";

let home: string;
let env: NodeJS.ProcessEnv;
const NOW = Date.now();

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-fleetcmd-"));
  env = { PATH: process.env.PATH, HOME: home, FABRIK_HOME: path.join(home, "fh"), FABRIK_CONFIG: path.join(home, "none.json") };
});

const HOME = "/home/u.guest";
function seed(runs: { vm: string; status: "running" | "done" | "cancelled" | "orphaned" }[]): number[] {
  const reg = Registry.open(path.join(home, "fh", "registry.db"));
  const ids: number[] = [];
  for (const r of runs) {
    reg.upsertVm({ name: r.vm, driver: "lima", guest_home: HOME, created_at_ms: NOW - 3_600_000, template: null });
    ids.push(
      reg.insertRunWith((id) => ({
        vm: r.vm,
        driver: "lima",
        control_dir: `${HOME}/work/${r.vm}/.runs/${id}-seq`,
        workflow_path: `${HOME}/work/${r.vm}/.runs/${id}-seq/workflow/seq.tsx`,
        smithers_run_id: `fabrik-${id}`,
        smithers_db_path: `${HOME}/work/${r.vm}/.runs/${id}-seq/.smithers/run-${id}.db`,
        engine_version: "0.32.0",
        status: r.status,
        started_at_ms: NOW - 60_000,
      })).id,
    );
  }
  reg.close();
  return ids;
}

async function run(argv: string[], drivers: { lima?: FakeDriver; local?: FakeDriver }) {
  const io = memoryIo();
  const code = await main(argv, { io, env, noExit: true, drivers });
  return { code, out: io.out(), err: io.err() };
}

function health(over: Partial<HealthFacts> = {}): HealthFacts {
  return {
    sqlite_octet_length: true,
    engines: [{ version: "0.32.0", installed: true, bun: true, bun_version: "1.4.5", problem: null }],
    disk: { path: `${HOME}/work`, free_bytes: 40 * 1024 ** 3, total_bytes: 100 * 1024 ** 3 },
    control_dirs: [],
    control_dirs_truncated: false,
    missing_control_dirs: [],
    locks: [],
    dir_sizes: [],
    errors: [],
    ...over,
  };
}

/** A probe answer: each requested run as the engine left it (`status`), owner dead, heartbeat old. */
function answer(keys: string[], h: HealthFacts | undefined, status = "running"): ProbeResponse {
  return {
    v: 1,
    tool: "bun",
    tool_version: "1.4.5",
    sqlite_version: "3.54.0",
    now_ms: Date.now(),
    discovered: [],
    ...(h ? { health: h } : {}),
    runs: keys.map((key) => ({
      key,
      errors: [],
      control: {
        exists: true, heartbeat: null, heartbeat_error: "missing", heartbeat_mtime_ms: null,
        launcher: { pid: 10, alive: false, state: null, cmdline: null }, child: null, engine: { pid: 11, alive: false, state: null, cmdline: null },
        exit_code: status === "cancelled" ? 2 : null, exit_code_garbage: false, log_size_bytes: 1, log_mtime_ms: NOW, log_blob_too_big: false, run_sh_engine: "0.32.0",
      },
      db: {
        path: `${HOME}/x.db`, exists: true, size_bytes: 4096, wal_size_bytes: 0, schema: "modern", missing_columns: [], error: null,
        run: { run_id: `fabrik-${key}`, status, workflow_name: "seq", workflow_path: null, created_at_ms: NOW - 60_000, started_at_ms: NOW - 60_000, finished_at_ms: status === "running" ? null : NOW - 50_000, heartbeat_at_ms: NOW - 55_000, runtime_owner_id: "pid:11:x", owner: { pid: 11, alive: false, state: null, cmdline: null }, error: null },
        runs_in_db: 1, by_state: { finished: 2, "in-progress": 1, pending: 3 }, total_nodes: 6, in_progress: [], last_failed: null,
        max_response_text_bytes: 1, max_error_json_bytes: 0, oversized_values: 0, nodes: null, nodes_truncated: false,
      },
    })),
  };
}

/** A probe handler: checks the request asks for health facts, answers `a`. */
function probe(a: ProbeResponse, seen?: { health?: unknown }[]) {
  return (_name: unknown, argv: unknown, opts: unknown) => {
    expect((argv as string[])[0]).toBe("sh");
    const stdin = (opts as { stdin: string | Buffer }).stdin;
    const req = JSON.parse(typeof stdin === "string" ? stdin : (require("node:zlib") as typeof import("node:zlib")).gunzipSync(stdin).toString()) as { health?: unknown };
    seen?.push(req);
    return { exitCode: 0, stdout: JSON.stringify(a) + "\n", stderr: "", durationMs: 3 };
  };
}
const noBun = () => ({ exitCode: 3, stdout: "", stderr: "fabrik-probe: no bun found\n", durationMs: 2 });
const local = () => new FakeDriver("local").expect("list", () => []);

describe("fabrik fleet (in-process)", () => {
  it("one probe per running VM, health facts in the same request; the history turns one failure into degraded, three into down", async () => {
    seed([{ vm: "vm1", status: "running" }]);
    fs.writeFileSync(path.join(home, "none.json"), JSON.stringify({ thresholds: { vm_idle_ms: 30_000 } }));
    const seen: { health?: unknown }[] = [];
    const ok = await run(["fleet", "--json"], { lima: new FakeDriver().expect("list", () => [vmInfo("vm1", { guestHome: HOME })]).expect("exec", probe(answer(["1"], health()), seen)), local: local() });
    expect(ok.code, ok.err).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.health).toMatchObject({ work_dir: `${HOME}/work`, engines_dir: `${HOME}/.fabrik/engines`, runs_roots: [`${HOME}/work/vm1/.runs`] });
    const v = JSON.parse(ok.out) as { vms: { health: string; engines: string[]; active_runs: number; idle: boolean; disk_free_bytes: number }[] };
    // The run was orphaned (engine dead): written back, so the VM has no active run, idle since the run's start (60 s > 30 s).
    expect(v.vms[0]).toMatchObject({ health: "healthy", engines: ["0.32.0"], active_runs: 0, idle: true, disk_free_bytes: 40 * 1024 ** 3 });

    const health1 = async () => {
      const r = await run(["fleet", "--json"], { lima: new FakeDriver().expect("list", () => [vmInfo("vm1", { guestHome: HOME })]).expect("exec", noBun), local: local() });
      return (JSON.parse(r.out) as { vms: { health: string; consecutive_failures: number; idle: boolean; next_command: string | null }[] }).vms[0]!;
    };
    expect(await health1()).toMatchObject({ health: "degraded", consecutive_failures: 1, idle: false, next_command: "fabrik doctor --vm vm1" });
    expect(await health1()).toMatchObject({ health: "degraded", consecutive_failures: 2 });
    expect(await health1()).toMatchObject({ health: "down", consecutive_failures: 3 });
    // --no-live judges from the stored history and never touches a VM (only the drivers' lists).
    const cached = await run(["fleet", "--no-live", "--json"], { lima: new FakeDriver().expect("list", () => [vmInfo("vm1", { guestHome: HOME })]), local: local() });
    expect((JSON.parse(cached.out) as { vms: { health: string; from_history: boolean }[] }).vms[0]).toMatchObject({ health: "down", from_history: true });
  });
});

describe("fabrik doctor (in-process)", () => {
  it("one probe for the VM; a missing engine fails with the exact fix; exit 1", async () => {
    seed([{ vm: "vm1", status: "done" }]);
    const lima = new FakeDriver()
      .expect("inspect", () => vmInfo("vm1", { guestHome: HOME }))
      .expect("exec", probe(answer([], health({ engines: [{ version: "0.5.0", installed: true, bun: true, bun_version: "1.4.5", problem: null }], control_dirs: [{ path: `${HOME}/work/vm1/.runs/9-other`, host_run_id: 9 }], missing_control_dirs: [`${HOME}/work/vm1/.runs/1-seq`] }))));
    const r = await run(["doctor", "--vm", "vm1", "--json"], { lima });
    expect(r.code).toBe(1);
    expect(lima.calls.map((c) => c.method)).toEqual(["inspect", "exec"]);
    const d = JSON.parse(r.out) as { ok: boolean; checks: { vm: string | null; name: string; status: string; fix: string | null }[] };
    const by = (n: string) => d.checks.find((c) => c.vm === "vm1" && c.name === n)!;
    expect(d.ok).toBe(false);
    expect(by("engines")).toMatchObject({ status: "fail", fix: "fabrik vm install-engine vm1 --engine 0.32.0" });
    expect(by("missing-control-dirs")).toMatchObject({ status: "warn", fix: "fabrik runs prune --id 1" });
    expect(by("unknown-control-dirs")).toMatchObject({ status: "warn", fix: "fabrik runs import --vm vm1" });
    expect(by("disk").status).toBe("ok");
  });

  it("an invalid config is a failed check, not a refusal to run", async () => {
    fs.writeFileSync(path.join(home, "none.json"), JSON.stringify({ probe: { timeout_ms: -1 } }));
    const r = await run(["doctor", "--json"], { lima: new FakeDriver().expect("list", () => []), local: local() });
    expect(r.code).toBe(1);
    const d = JSON.parse(r.out) as { checks: { name: string; status: string; fix: string | null }[] };
    expect(d.checks.find((c) => c.name === "config")).toMatchObject({ status: "fail", fix: "fabrik config unset probe.timeout_ms" });
    expect((await run(["fleet"], {})).code).toBe(3);
  });
});

describe("fabrik supervise --once (in-process)", () => {
  it("leaves a cancelled run alone and records why; never acts on a run another supervisor holds", async () => {
    const [cancelled, held] = seed([
      { vm: "vm1", status: "running" },
      { vm: "vm1", status: "orphaned" },
    ]);
    const reg = Registry.open(path.join(home, "fh", "registry.db"));
    expect(reg.acquireLease(held!, "other-supervisor", Date.now(), 600_000)).toBe(true);
    reg.close();
    const a = answer([String(cancelled), String(held)], health());
    a.runs[0]!.db!.run!.status = "cancelled";
    // Only the list and ONE probe: a resume would need more calls, which the fake refuses.
    const lima = new FakeDriver().expect("list", () => [vmInfo("vm1", { guestHome: HOME })]).expect("exec", probe(a));
    const r = await run(["supervise", "--once", "--json", "--backoff", "1s"], { lima, local: local() });
    expect(r.code, r.err).toBe(0);
    const events = r.out.trim().split("\n").map((l) => JSON.parse(l) as { type: string; run_id?: number; code?: string });
    expect(events.map((e) => e.type)).toEqual(["start", "skipped", "skipped", "pass", "stopped"]);
    expect(events.find((e) => e.run_id === cancelled)).toMatchObject({ type: "skipped", code: "CANCELLED" });
    expect(events.find((e) => e.run_id === held)).toMatchObject({ type: "skipped", code: "LEASED" });
    const after = Registry.open(path.join(home, "fh", "registry.db"));
    expect(after.runEvents(cancelled!).map((e) => e.kind)).toContain("supervise-skipped");
    expect(after.getRun(held!)!.resume_count).toBe(0);
    expect(after.leaseOf(held!)?.holder).toBe("other-supervisor");
    after.close();
  });
});
