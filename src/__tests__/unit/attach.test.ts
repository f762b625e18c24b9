// Pure parts of `fabrik run attach`: the end-of-run decision table, outcome codes and the line printer. The
// shell scripts it runs in the VM are run for real in integration/attach-scripts.test.ts.
import { describe, it, expect } from "vitest";
import { judgeRunEnd, outcomeExitCode, renderOutcomeLine, LogLinePrinter } from "../../fabrik/attach.js";
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

describe("judgeRunEnd (one row per combination)", () => {
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
    ["both dead, no exit code, no db", { launcher: false, engine: false }, "ended", "orphaned", 10],
    ["launcher dead, engine alive", { launcher: false, engine: true, db: "running" }, "running", null, null],
    ["launcher alive, engine dead, no exit", { launcher: true, engine: false, db: "running" }, "running", null, null],
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
