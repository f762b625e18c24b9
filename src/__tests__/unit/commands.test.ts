/**
 * In-process command tests: `main()` with captured io and fake drivers that fail on any unexpected call.
 */
import { describe, it, expect, beforeEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { main } from "../../fabrik/cli.js";
import { completeValues } from "../../fabrik/completion.js";
import { memoryIo } from "../../fabrik/io.js";
import { Registry } from "../../fabrik/registry.js";
import { VmUnavailableError } from "../../core/errors.js";
import { FakeDriver, vmInfo } from "../helpers/fake-driver.js";
import type { ProbeResponse } from "../../vm/probe-schema.js";

let home: string;
let env: NodeJS.ProcessEnv;
const NOW = Date.now();

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-cmd-"));
  env = { PATH: process.env.PATH, HOME: home, FABRIK_HOME: path.join(home, "fh"), FABRIK_CONFIG: path.join(home, "none.json") };
});

function seed(runs: { vm: string; status?: "running" | "done" | "failed"; failureReason?: (id: number) => string }[]): void {
  const reg = Registry.open(path.join(home, "fh", "registry.db"));
  for (const r of runs) {
    reg.upsertVm({ name: r.vm, driver: "lima", guest_home: "/home/u.guest", created_at_ms: NOW, template: null });
    reg.insertRunWith((id) => ({
      vm: r.vm,
      driver: "lima",
      control_dir: `/home/u.guest/work/${r.vm}/.runs/${id}-seq`,
      workflow_path: `/home/u.guest/work/${r.vm}/.runs/${id}-seq/workflow/seq.tsx`,
      smithers_run_id: `fabrik-${id}`,
      smithers_db_path: `/home/u.guest/work/${r.vm}/.runs/${id}-seq/.smithers/run-${id}.db`,
      engine_version: "0.32.0",
      status: r.status ?? "running",
      ...(r.failureReason ? { failure_reason: r.failureReason(id) } : {}),
      started_at_ms: NOW - 60_000,
      launcher_pid: 10,
    }));
  }
  reg.close();
}

async function run(argv: string[], drivers: { lima?: FakeDriver; local?: FakeDriver } = {}) {
  const io = memoryIo();
  const code = await main(argv, { io, env, noExit: true, drivers });
  return { code, out: io.out(), err: io.err() };
}

const EVIL = "step-3\u001b[2J\u001b]0;pwned\u0007$(rm -rf ~);`id`";

function probeAnswer(keys: string[], over: { nodeId?: string; alive?: boolean } = {}): ProbeResponse {
  const nodeId = over.nodeId ?? "step-3";
  const alive = over.alive ?? false;
  return {
    v: 1,
    tool: "bun",
    tool_version: "1.4.5",
    sqlite_version: "3.54.0",
    now_ms: NOW,
    discovered: [],
    runs: keys.map((key) => ({
      key,
      errors: [],
      control: {
        exists: true,
        heartbeat: null,
        heartbeat_error: "missing",
        heartbeat_mtime_ms: null,
        launcher: { pid: 10, alive, state: alive ? "S" : null, cmdline: null },
        child: { pid: 11, alive, state: null, cmdline: null },
        engine: { pid: 11, alive, state: null, cmdline: null },
        exit_code: null,
        exit_code_garbage: false,
        log_size_bytes: 10,
        log_mtime_ms: NOW,
        log_blob_too_big: false,
        run_sh_engine: "0.32.0",
      },
      db: {
        path: `/home/u.guest/work/vm1/.runs/${key}-seq/.smithers/run-${key}.db`,
        exists: true,
        size_bytes: 4096,
        wal_size_bytes: 100,
        schema: "modern",
        missing_columns: [],
        error: null,
        run: {
          run_id: `fabrik-${key}`,
          status: "running",
          workflow_name: "seq",
          workflow_path: null,
          created_at_ms: NOW - 60_000,
          started_at_ms: NOW - 60_000,
          finished_at_ms: null,
          heartbeat_at_ms: NOW - 50_000,
          runtime_owner_id: "pid:11:x",
          owner: { pid: 11, alive, state: null, cmdline: null },
          error: null,
        },
        runs_in_db: 1,
        by_state: { finished: 2, "in-progress": 1, pending: 3 },
        total_nodes: 6,
        in_progress: [{ node_id: nodeId, iteration: 0, state: "in-progress", last_attempt: 1, updated_at_ms: NOW - 40_000, label: null, started_at_ms: NOW - 40_000, error: null }],
        last_failed: null,
        max_response_text_bytes: 10,
        max_error_json_bytes: 0,
        oversized_values: 0,
        nodes: null,
        nodes_truncated: false,
      },
    })),
  };
}

function probeOk(answer: ProbeResponse) {
  return (name: unknown, argv: unknown, opts: unknown) => {
    const a = argv as string[];
    expect(a[0]).toBe("sh");
    expect((opts as { skipStatusCheck?: boolean }).skipStatusCheck).toBe(true);
    return { exitCode: 0, stdout: JSON.stringify(answer) + "\n", stderr: "", durationMs: 5 };
  };
}

describe("runs show (in-process)", () => {
  it("--no-live never touches the VM", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver();
    const r = await run(["runs", "show", "--id", "1", "--no-live"], { lima });
    expect(r.code).toBe(0);
    expect(lima.calls).toEqual([]);
    expect(r.out).toContain("source: cache");
    expect(r.out).toContain("Cached status (not checked live");
  });

  it("live: exactly one remote call, the guide's shape, the cache updated and said so", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("exec", probeOk(probeAnswer(["1"])));
    const r = await run(["runs", "show", "--id", "1"], { lima });
    expect(r.code, r.err).toBe(0);
    expect(lima.calls.map((c) => c.method)).toEqual(["exec"]);
    // The mismatch line shows the live truth (the verdict), not a mapped cache word.
    expect(r.out).toContain("status: running ⚠️  (VM shows: orphaned)");
    expect(r.out).toContain("effective_status: orphaned");
    expect(r.out).toContain("=== VM Status (Source of Truth) ===");
    expect(r.out).toContain("progress: 2/6 (33%)");
    expect(r.out).toContain("current_task: step-3 (attempt 1");
    expect(r.out).toContain("=== Cache vs VM === (cache updated)");
    expect(r.out).toContain("next: fabrik run resume --id 1");
    const again = await run(["runs", "show", "--id", "1", "--no-live", "--json"], { lima: new FakeDriver() });
    const cached = JSON.parse(again.out) as { status: string; failure_reason: string };
    expect(cached.status).toBe("orphaned");
    expect(cached.failure_reason).toMatch(/no engine process/);
  });

  it("--json carries the documented model", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("exec", probeOk(probeAnswer(["1"], { alive: true })));
    const r = await run(["runs", "show", "--id", "1", "--json"], { lima });
    const v = JSON.parse(r.out) as Record<string, unknown>;
    for (const k of ["id", "vm", "status", "effective_status", "source", "checked_at", "engine_run_status", "smithers_run_id", "current_task", "progress", "engine_heartbeat_age_ms", "engine_alive", "launcher_alive", "exit_code", "db_size_bytes", "mismatches", "diagnoses"]) {
      expect(v, k).toHaveProperty(k);
    }
    expect(v).toMatchObject({ id: 1, vm: "vm1", status: "running", source: "live", engine_run_status: "running", engine_alive: true, effective_status: "stale" });
    expect(v.progress).toEqual({ finished: 2, total: 6, by_state: { finished: 2, "in-progress": 1, pending: 3 } });
    expect(r.err).toBe("");
  });

  it("neutralises escape sequences and shell metacharacters from the VM", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("exec", probeOk(probeAnswer(["1"], { nodeId: EVIL })));
    const r = await run(["runs", "show", "--id", "1"], { lima });
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/[\u001b\u0007]/);
    expect(r.out).toContain("step-3");
    expect(r.out).toContain("$(rm -rf ~);`id`"); // shown as text, never executed
    const j = await run(["runs", "show", "--id", "1", "--json"], { lima: new FakeDriver().expect("exec", probeOk(probeAnswer(["1"], { nodeId: EVIL }))) });
    expect(j.out).not.toMatch(/[\u001b\u0007]/); // JSON escapes control characters
    expect((JSON.parse(j.out) as { current_task: string }).current_task).toBe(EVIL);
  });

  it("an unreachable VM shows cached values, never judges the run dead, exit 0", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("exec", () => {
      throw new VmUnavailableError("vm1", "VM vm1 is stopped");
    });
    const r = await run(["runs", "show", "--id", "1", "--json"], { lima });
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out) as { effective_status: string; source: string; status: string; diagnoses: { code: string }[] };
    expect(v).toMatchObject({ effective_status: "unreachable", source: "unreachable", status: "running" });
    expect(v.diagnoses[0]!.code).toBe("UNREACHABLE");
  });

  it("garbage from the probe is unreachable with a reason, not a crash", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("exec", () => ({ exitCode: 0, stdout: '{"v":1,"tool":"bun","now_ms":"soon"}', stderr: "", durationMs: 1 }));
    const r = await run(["runs", "show", "--id", "1", "--json"], { lima });
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out) as { effective_status: string; unreachable_reason: string };
    expect(v.effective_status).toBe("unreachable");
    expect(v.unreachable_reason).toMatch(/probe/i);
  });

  it("bad ids: unknown → 4, not an integer → 2", async () => {
    seed([{ vm: "vm1" }]);
    expect((await run(["runs", "show", "--id", "99"], { lima: new FakeDriver() })).code).toBe(4);
    expect((await run(["runs", "show", "--id", "abc"], { lima: new FakeDriver() })).code).toBe(2);
    expect((await run(["runs", "show", "--id", "1.5"], { lima: new FakeDriver() })).code).toBe(2);
    expect((await run(["runs", "show"], { lima: new FakeDriver() })).code).toBe(2);
  });
});

describe("runs list (in-process)", () => {
  it("one probe per VM; a dead VM gives unreachable rows and one warning; the command succeeds", async () => {
    seed([{ vm: "vm1" }, { vm: "vm1" }, { vm: "vm2" }]);
    const lima = new FakeDriver()
      .expect("exec", (name) => {
        if (name === "vm2") throw new VmUnavailableError("vm2", "VM vm2: no answer within 5000 ms");
        return probeOk(probeAnswer(["1", "2"], { alive: true }))(name, ["sh"], { skipStatusCheck: true });
      }, 2);
    const r = await run(["runs", "list", "--json"], { lima });
    expect(r.code, r.err).toBe(0);
    expect(lima.calls.filter((c) => c.method === "exec").map((c) => c.args[0]).sort()).toEqual(["vm1", "vm2"]);
    const views = JSON.parse(r.out) as { id: number; source: string }[];
    expect(views.map((v) => [v.id, v.source])).toEqual([
      [3, "unreachable"],
      [2, "live"],
      [1, "live"],
    ]);
    expect(r.err.match(/warning: VM vm2 is unreachable/g)?.length).toBe(1);
  });

  it("--no-live --json over many pieces of output: DEL and C1 controls escaped everywhere, the values intact", async () => {
    const reason = (id: number) => `task ${id} \u009b2J\u007f\u0085 é✓ ${"x".repeat(id % 300)}`;
    seed(Array.from({ length: 600 }, () => ({ vm: "vm1", status: "failed" as const, failureReason: reason })));
    const r = await run(["runs", "list", "--no-live", "--json", "--limit", "1000"]);
    expect(r.code).toBe(0);
    expect(r.out.length).toBeGreaterThan(3 * 65_536);
    expect(r.out).not.toMatch(/[\u007f-\u009f]/);
    const rows = JSON.parse(r.out) as { id: number; failure_reason: string }[];
    expect(rows).toHaveLength(600);
    for (const row of rows) expect(row.failure_reason).toBe(reason(row.id));
  });

  it("--no-live never touches a VM; filters and -q work", async () => {
    seed([{ vm: "vm1", status: "done" }, { vm: "vm1" }, { vm: "vm2" }]);
    const lima = new FakeDriver();
    expect((await run(["runs", "list", "--no-live", "-q"], { lima })).out).toBe("3\n2\n1\n");
    expect((await run(["runs", "list", "--no-live", "-q", "--vm", "vm2"], { lima })).out).toBe("3\n");
    expect((await run(["runs", "list", "--no-live", "-q", "--status", "done"], { lima })).out).toBe("1\n");
    expect((await run(["runs", "list", "--no-live", "-q", "--limit", "1"], { lima })).out).toBe("3\n");
    expect((await run(["runs", "list", "--no-live", "-q", "--since", "1h"], { lima })).out).toBe("3\n2\n1\n");
    expect((await run(["runs", "list", "--no-live", "--status", "exploded"], { lima })).code).toBe(2);
    expect((await run(["runs", "list", "--no-live", "--since", "yesterday-ish"], { lima })).code).toBe(2);
    expect(lima.calls).toEqual([]);
  });
});

describe("vm commands (in-process)", () => {
  it("vm list merges the driver's view with the registry", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver("lima").expect("list", () => [vmInfo("vm1"), vmInfo("other", { status: "Stopped" })]);
    const local = new FakeDriver("local").expect("list", () => []);
    const r = await run(["vm", "list", "--json"], { lima, local });
    expect(r.code, r.err).toBe(0);
    const rows = JSON.parse(r.out) as { name: string; status: string; active_runs: number; last_run_id: number | null }[];
    expect(rows.map((x) => [x.name, x.status, x.active_runs, x.last_run_id])).toEqual([
      ["other", "Stopped", 0, null],
      ["vm1", "Running", 1, 1],
    ]);
  });

  it("vm delete refuses while a run is active, without touching the driver", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver();
    const r = await run(["vm", "delete", "vm1"], { lima });
    expect(r.code).toBe(5);
    expect(r.err).toMatch(/active run/);
    expect(lima.calls).toEqual([]);
  });

  it("vm shell passes the guest's exit code through", async () => {
    seed([{ vm: "vm1" }]);
    const lima = new FakeDriver().expect("shell", (name, argv) => {
      expect(name).toBe("vm1");
      expect(argv).toEqual(["ls", "-0", "a b"]);
      return 42;
    });
    expect((await run(["vm", "shell", "vm1", "--", "ls", "-0", "a b"], { lima })).code).toBe(42);
  });
});

describe("conventions (in-process)", () => {
  it("help exit-codes and --version", async () => {
    const r = await run(["help", "exit-codes"]);
    expect(r.out).toContain("130  INTERRUPTED");
  });

  it("unknown commands and flags are usage errors (exit 2)", async () => {
    expect((await run(["frobnicate"])).code).toBe(2);
    expect((await run(["runs", "list", "--bogus"])).code).toBe(2);
  });

  it("completion offers run ids and VM names", async () => {
    seed([{ vm: "vm1" }, { vm: "vm1" }]);
    expect(await completeValues("", ["runs", "show", "--id", ""], env, { lima: new FakeDriver() })).toEqual(["2", "1"]);
    const lima = new FakeDriver().expect("list", () => [vmInfo("live-vm")]);
    const local = new FakeDriver("local").expect("list", () => [vmInfo("loc-vm", { driver: "local" })]);
    expect(await completeValues("", ["runs", "watch", "--vm", ""], env, { lima, local })).toEqual(["live-vm", "loc-vm", "vm1"]);
    const lima2 = new FakeDriver().expect("list", () => [vmInfo("live-vm")]);
    const local2 = new FakeDriver("local").expect("list", () => []);
    expect(await completeValues("l", ["vm", "stop", "l"], env, { lima: lima2, local: local2 })).toEqual(["live-vm"]);
    // Anything else falls back to yargs' own completion (commands and flags).
    expect(await completeValues("", ["runs", ""], env)).toBeUndefined();
  });

  it("a corrupt config is exit 3 naming the file", async () => {
    fs.writeFileSync(path.join(home, "none.json"), "{");
    const r = await run(["runs", "list", "--no-live"]);
    expect(r.code).toBe(3);
    expect(r.err).toContain(path.join(home, "none.json"));
  });

  it("a registry from a newer fabrik is refused (exit 3) and left untouched", async () => {
    seed([{ vm: "vm1" }]);
    const file = path.join(home, "fh", "registry.db");
    const { createRequire } = await import("node:module");
    const Database = createRequire(import.meta.url)("better-sqlite3");
    const db = new Database(file);
    db.pragma("user_version = 99");
    db.close();
    const before = fs.readFileSync(file);
    const r = await run(["runs", "list", "--no-live"]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/newer fabrik/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});

describe("the launch journal (in-process)", () => {
  const withLaunch = (answer: ProbeResponse, launchId: string): ProbeResponse => ({
    ...answer,
    runs: answer.runs.map((r) => ({
      ...r,
      control: {
        ...r.control!,
        heartbeat: { v: 1, ts_ms: NOW - 1000, seq: 3, phase: "running", host_run_id: 1, smithers_run_id: "fabrik-1", launcher_pid: 10, child_pid: 11, engine_pid: 11, engine_version: "0.32.0", interval_s: 10, exit_code: null, launch_id: launchId },
        heartbeat_error: null,
      },
    })),
  });
  const journal = (kind: "launch" | "resume", atMs: number) => {
    const reg = Registry.open(path.join(home, "fh", "registry.db"));
    reg.updateRun(1, { pending_json: JSON.stringify({ kind, launch_id: `${kind}-00000000000000aa`, at_ms: atMs, detail: { reason: "test" } }) });
    reg.close();
  };
  const after = () => {
    const reg = Registry.open(path.join(home, "fh", "registry.db"));
    try {
      return { run: reg.getRun(1)!, events: reg.runEvents(1).map((e) => ({ kind: e.kind, detail: JSON.parse(e.detail_json ?? "null") as Record<string, unknown> })) };
    } finally {
      reg.close();
    }
  };

  it("a resume the VM applied after fabrik died is recorded by the next live check, once", async () => {
    seed([{ vm: "vm1" }]);
    journal("resume", NOW - 5_000);
    const answer = withLaunch(probeAnswer(["1"], { alive: true }), "resume-00000000000000aa");
    const lima = new FakeDriver().expect("exec", probeOk(answer), 2);
    expect((await run(["runs", "show", "--id", "1"], { lima })).code).toBe(0);
    expect((await run(["runs", "show", "--id", "1"], { lima })).code).toBe(0);
    const { run: r, events } = after();
    expect(r.resume_count).toBe(1);
    expect(r.pending_json).toBeNull();
    expect(r.launcher_pid).toBe(10);
    expect(events.filter((e) => e.kind === "resumed")).toEqual([{ kind: "resumed", detail: expect.objectContaining({ reconciled: true, launch_id: "resume-00000000000000aa", reason: "test" }) }]);
  });

  it("a journalled launch the VM never started is closed after 20 min, and nothing else changes", async () => {
    seed([{ vm: "vm1" }]);
    journal("resume", NOW - 21 * 60_000);
    const lima = new FakeDriver().expect("exec", probeOk(withLaunch(probeAnswer(["1"], { alive: true }), "resume-somethingelse0")));
    expect((await run(["runs", "show", "--id", "1"], { lima })).code).toBe(0);
    const { run: r, events } = after();
    expect(r.resume_count).toBe(0);
    expect(r.pending_json).toBeNull();
    expect(events.map((e) => e.kind)).toContain("resume-abandoned");
  });

  it("a recent journal entry not yet seen in the VM stays open", async () => {
    seed([{ vm: "vm1" }]);
    journal("resume", NOW - 1_000);
    const lima = new FakeDriver().expect("exec", probeOk(probeAnswer(["1"], { alive: true })));
    expect((await run(["runs", "show", "--id", "1"], { lima })).code).toBe(0);
    expect(after().run.pending_json).not.toBeNull();
  });
});
