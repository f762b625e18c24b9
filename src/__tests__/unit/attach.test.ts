// Pure parts of `fabrik run attach`: the end-of-run judgement (the status authority's, shared with watch),
// outcome codes and the line printer. The shell scripts it runs in the VM are run for real in
// integration/attach-scripts.test.ts.
import { describe, it, expect } from "vitest";
import { LogLinePrinter } from "../../fabrik/attach.js";
import { runEnd, renderOutcomeLine, RunEndTracker, LAUNCHER_SETTLE_MS, type RunOutcome } from "../../fabrik/status/run-end.js";
import { deriveRunState } from "../../fabrik/status/derive.js";
import { runOutcomeExitCode } from "../../fabrik/exit-codes.js";
import type { RunRecord } from "../../fabrik/registry.js";
import { tailFromArgv } from "../../vm/session.js";
import type { ControlFacts, DbFacts, DbRun, PidFact, ProbeRunResult } from "../../vm/probe-schema.js";

const pid = (alive: boolean): PidFact => ({ pid: 1234, alive, state: alive ? "S" : null, cmdline: null });

function result(o: { exit?: number | null; launcher?: boolean | null; engine?: boolean | null; db?: string | null; owner?: boolean | null }): ProbeRunResult {
  const control: ControlFacts = {
    exists: true,
    heartbeat: null,
    heartbeat_error: null,
    heartbeat_mtime_ms: null,
    launcher: o.launcher === undefined || o.launcher === null ? null : pid(o.launcher),
    child: null,
    engine: o.engine === undefined || o.engine === null ? null : pid(o.engine),
    exit_code: o.exit ?? null,
    exit_code_garbage: false,
    log_size_bytes: 10,
    log_mtime_ms: 1,
    log_blob_too_big: false,
    run_sh_engine: null,
  };
  const run: DbRun | null =
    o.db === undefined || o.db === null
      ? null
      : {
          run_id: "fabrik-1",
          status: o.db,
          workflow_name: null,
          workflow_path: null,
          created_at_ms: 1,
          started_at_ms: 1,
          finished_at_ms: null,
          heartbeat_at_ms: null,
          runtime_owner_id: null,
          owner: o.owner === undefined || o.owner === null ? null : pid(o.owner),
          error: null,
        };
  const db: DbFacts = {
    path: "/x.db",
    exists: run !== null,
    size_bytes: null,
    wal_size_bytes: null,
    schema: "modern",
    missing_columns: [],
    error: null,
    run,
    runs_in_db: run ? 1 : 0,
    by_state: {},
    total_nodes: 0,
    in_progress: [],
    last_failed: null,
    max_response_text_bytes: null,
    max_error_json_bytes: null,
    oversized_values: null,
    nodes: null,
    nodes_truncated: false,
  };
  return { key: "1", control, db, errors: [] };
}

const REC = {
  id: 1, vm: "v", driver: "local", label: null, control_dir: "/c", workflow_path: "/c/workflow/w.tsx", workflow_source: null, input_json: null,
  smithers_run_id: "fabrik-1", smithers_db_path: "/x.db", engine_version: "0.32.0", status: "running", exit_code: null, failure_reason: null,
  created_at_ms: 1, started_at_ms: 1, finished_at_ms: null, updated_at_ms: 1, last_check_at_ms: null, last_check_status: null, last_check_json: null,
  resume_count: 0, last_resumed_at_ms: null, launcher_pid: null, engine_pid: null, imported: 0, pending_json: null,
} satisfies RunRecord;
const T = { engineHeartbeatStaleMs: 30_000, launcherHeartbeatStaleMs: 30_000, dbSizeWarnBytes: 1e9, rowSizeWarnBytes: 1e6, configuredEngineVersion: "0.32.0", taskRunningLongMs: 7_200_000 };
const outcomeExitCode = (o: RunOutcome) => runOutcomeExitCode(o.kind);

/** The attach/watch end judgement over ONE probe result, through the status authority. */
function judgeRunEnd(r: ProbeRunResult | undefined) {
  const d = deriveRunState(REC, r ? { kind: "live", result: r, vmNowMs: 10_000, tool: "bun" } : { kind: "unreachable", reason: "probe failed" }, 10_000, T);
  const e = runEnd(d);
  return { ended: e.phase === "ended", settling: e.phase === "settling", outcome: e.outcome };
}

describe("the end of a run, as attach and watch judge it (one row per combination)", () => {
  const rows: Array<[string, Parameters<typeof result>[0], "ended" | "settling" | "running", string | null, number | null]> = [
    // name, facts, verdict, outcome label, --exit-status code
    ["nothing known yet", {}, "running", null, null],
    ["engine and launcher alive", { launcher: true, engine: true, db: "running" }, "running", null, null],
    ["exit 0, launcher gone, db finished", { exit: 0, launcher: false, engine: false, db: "finished" }, "ended", "done", 0],
    ["exit 0, no pids, no db", { exit: 0 }, "ended", "done", 0],
    ["exit 1, no db", { exit: 1 }, "ended", "failed", 8],
    ["exit 2, no db", { exit: 2 }, "ended", "cancelled", 9],
    ["exit 3, no db", { exit: 3 }, "ended", "waiting-approval", 10],
    ["exit 1, db failed", { exit: 1, launcher: false, db: "failed" }, "ended", "failed", 8],
    ["exit 0, db cancelled", { exit: 0, launcher: false, db: "cancelled" }, "ended", "cancelled", 9],
    ["exit 0, db continued", { exit: 0, launcher: false, db: "continued" }, "ended", "done", 0],
    ["exit 3, db waiting-approval", { exit: 3, launcher: false, db: "waiting-approval" }, "ended", "waiting-approval", 10],
    ["exit 137, db still running (killed)", { exit: 137, launcher: false, engine: false, db: "running" }, "ended", "orphaned", 10],
    ["exit written, launcher still alive (last log line pending)", { exit: 0, launcher: true, engine: false, db: "finished" }, "settling", "done", 0],
    ["db finished, launcher alive, no exit yet", { launcher: true, engine: false, db: "finished" }, "settling", "done", 0],
    ["db finished, no launcher known", { db: "finished", owner: false }, "ended", "done", 0],
    ["db failed, nothing else", { db: "failed" }, "ended", "failed", 8],
    ["both dead, no exit code, db running → orphaned", { launcher: false, engine: false, db: "running" }, "ended", "orphaned", 10],
    // No DB, no record, no exit code: the status authority says unknown (it cannot call it orphaned without a DB row).
    ["both dead, no exit code, no db", { launcher: false, engine: false }, "ended", "unknown", 10],
    ["launcher dead, engine alive", { launcher: false, engine: true, db: "running" }, "running", null, null],
    // The DB says running and the engine is dead: orphaned; the launcher still lives (about to write exit_code).
    ["launcher alive, engine dead, no exit", { launcher: true, engine: false, db: "running" }, "settling", "orphaned", 10],
    ["owner pid dead, no launcher/engine files, db running", { db: "running", owner: false }, "ended", "orphaned", 10],
    ["owner pid alive, db running", { db: "running", owner: true }, "running", null, null],
    ["db waiting-approval, all alive", { launcher: true, engine: true, db: "waiting-approval" }, "running", null, null],
  ];
  for (const [name, facts, verdict, label, code] of rows) {
    it(name, () => {
      const j = judgeRunEnd(result(facts));
      expect(j.ended ? "ended" : j.settling ? "settling" : "running").toBe(verdict);
      expect(j.outcome?.label ?? null).toBe(label);
      expect(j.outcome ? outcomeExitCode(j.outcome) : null).toBe(code);
    });
  }
  it("no result at all (probe failed) is not an end", () => {
    expect(judgeRunEnd(undefined)).toEqual({ ended: false, settling: false, outcome: undefined });
  });
  it("a run settling for LAUNCHER_SETTLE_MS counts as ended", () => {
    const t = new RunEndTracker();
    const d = { source: "live", effective_status: "done", exit_code: null, engine_alive: false, launcher_alive: true } as const;
    expect(t.update(d, 1000).phase).toBe("settling");
    expect(t.update(d, 1000 + LAUNCHER_SETTLE_MS - 1).phase).toBe("settling");
    expect(t.update(d, 1000 + LAUNCHER_SETTLE_MS).phase).toBe("ended");
  });
});

describe("renderOutcomeLine", () => {
  it("says finished for terminal outcomes and ended without finishing otherwise", () => {
    expect(renderOutcomeLine(113, { kind: "done", label: "done", exitCode: 0 })).toBe("run 113 finished: done (exit 0)");
    expect(renderOutcomeLine(7, { kind: "failed", label: "failed", exitCode: 1 })).toBe("run 7 finished: failed (exit 1)");
    expect(renderOutcomeLine(7, { kind: "not-done", label: "orphaned", exitCode: null })).toBe("run 7 ended without finishing: orphaned (no exit code)");
  });
});

describe("LogLinePrinter", () => {
  function sink() {
    const writes: string[] = [];
    return { writes, sink: { write: (s: string) => writes.push(s) } };
  }
  it("prints complete lines only, joins split lines and split UTF-8, one write per chunk", () => {
    const { writes, sink: s } = sink();
    const p = new LogLinePrinter(s);
    const euro = Buffer.from("€", "utf8");
    p.push(Buffer.from("one\ntw"));
    p.push(Buffer.from("o\nprice 5"));
    p.push(euro.subarray(0, 1));
    p.push(Buffer.concat([euro.subarray(1), Buffer.from("\n")]));
    p.push(Buffer.from("tail without newline"));
    expect(writes).toEqual(["one\n", "two\n", "price 5€\n"]);
    p.flush();
    expect(writes.at(-1)).toBe("tail without newline\n");
    expect(p.lines).toBe(4);
  });
  it("neutralises escape sequences and control characters, drops a CR before LF", () => {
    const { writes, sink: s } = sink();
    const p = new LogLinePrinter(s);
    p.push(Buffer.from("\u001b[2J\u001b]52;c;ZXZpbA==\u0007clip\r\nbell\u0007 back\bspace\n"));
    expect(writes.join("")).toBe("clip\nbell\\x07 back\\x08space\n");
  });
});

describe("tailFromArgv", () => {
  it("tailFromArgv is an argv (no shell), 1-based byte offset, path after --", () => {
    expect(tailFromArgv("/a b/$(x)", 0)).toEqual(["tail", "-c", "+1", "-F", "--", "/a b/$(x)"]);
    expect(tailFromArgv("-f", 41)).toEqual(["tail", "-c", "+42", "-F", "--", "-f"]);
    expect(() => tailFromArgv("/x", -1)).toThrow();
  });
});
