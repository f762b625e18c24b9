/**
 * probeVm (src/vm/probe.ts) against a fake VmDriver with canned answers: output validation, typed errors, and
 * the guest texts' size. The real probe run through the wrapper on this host: integration/probe-host.test.ts.
 */
import { describe, expect, it } from "vitest";
import { VmUnavailableError } from "../../core/errors.js";
import type { ExecResult } from "../../vm/driver.js";
import { PROBE_WRAPPER, ProbeError, loadGuestProbe, probeVm } from "../../vm/probe.js";
import { shellJoin } from "../../vm/shell-quote.js";
import { FakeDriver } from "../helpers/fake-driver.js";

const request = () => ({ v: 1 as const, runs: [{ key: "42", control_dir: null, db_path: "/home/u.guest/run.db", smithers_run_id: "fx-0.32.0-failed" }] });

describe("probeVm (canned answers)", () => {
  it("invalid output → ProbeError (not JSON, wrong shape, non-zero exit)", async () => {
    const cases: [ExecResult, RegExp][] = [
      [{ exitCode: 0, stdout: "Welcome to the VM\n<html>", stderr: "", durationMs: 1 }, /^invalid probe output: not JSON/],
      [{ exitCode: 0, stdout: "", stderr: "", durationMs: 1 }, /^invalid probe output: empty/],
      [{ exitCode: 0, stdout: '{"v":1,"tool":"bun"}\n', stderr: "", durationMs: 1 }, /^invalid probe output: .*tool_version/],
      [{ exitCode: 0, stdout: `${JSON.stringify({ v: 1, tool: "bun", tool_version: "1", sqlite_version: "3", now_ms: 1, runs: [{ key: "x".repeat(300), control: null, db: null, errors: [] }], discovered: [] })}\n`, stderr: "", durationMs: 1 }, /^invalid probe output: runs\.0\.key/],
      [{ exitCode: 2, stdout: "", stderr: "fabrik-probe: bad request: boom\n", durationMs: 1 }, /^probe exited 2: fabrik-probe: bad request: boom$/],
      [{ exitCode: 137, stdout: "", stderr: "", durationMs: 1 }, /^probe exited 137$/],
    ];
    for (const [canned, re] of cases) {
      const driver = new FakeDriver("local").expect("exec", () => canned);
      const err = await probeVm(driver, "vm-x", request(), { timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProbeError);
      expect((err as ProbeError).reason).toMatch(re);
      expect((err as ProbeError).message).toMatch(/^vm-x: probe: /);
      expect(driver.calls).toHaveLength(1);
    }
  });

  it("driver errors propagate unchanged", async () => {
    const unavailable = new VmUnavailableError("vm-off", "VM vm-off is Stopped");
    const driver = new FakeDriver("local").expect("exec", () => {
      throw unavailable;
    });
    await expect(probeVm(driver, "vm-off", request(), { timeoutMs: 1000 })).rejects.toBe(unavailable);
  });

  it("an invalid request is refused before any call", async () => {
    const driver = new FakeDriver("local");
    await expect(probeVm(driver, "vm", { v: 1, runs: [], max_nodes: 0 }, { timeoutMs: 1000 })).rejects.toThrow();
    expect(driver.calls).toHaveLength(0);
  });

  it("guest texts are cached and fit in one ssh command line (Linux caps one argument at 128 KiB)", () => {
    const a = loadGuestProbe();
    expect(loadGuestProbe()).toBe(a);
    expect(a.js).toContain("bun:sqlite");
    expect(a.py).toContain("import sqlite3");
    const line = shellJoin(["sh", "-c", PROBE_WRAPPER, "fabrik-probe", a.js, a.py]);
    expect(Buffer.byteLength(line)).toBeLessThan(120 * 1024);
  });
});
