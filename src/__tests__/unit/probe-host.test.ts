/**
 * probeVm (src/vm/probe.ts) against a fake VmDriver with canned answers: output validation, typed errors, and
 * the probe's bytes on the wire. The real probe run through the wrapper on this host (bun discovery, the
 * install-once protocol): integration/probe-host.test.ts.
 */
import { describe, expect, it } from "vitest";
import fs from "node:fs";
import { gunzipSync } from "node:zlib";
import { VmUnavailableError } from "../../core/errors.js";
import type { ExecResult } from "../../vm/driver.js";
import { MemoryGuestInstallCache, guestBundlePath, guestHash, loadGuestProgram } from "../../vm/guest-programs.js";
import { ProbeError, encodeGuestRequest, probeArgv, probeBunCandidates, probeVm, requestBytes } from "../../vm/probe.js";
import { ProbeRequestSchema, probeRequestWithDefaults, type ProbeRequest } from "../../vm/probe-schema.js";
import { shellJoin } from "../../vm/shell-quote.js";
import { FakeDriver } from "../helpers/fake-driver.js";

const request = (): ProbeRequest => ({ v: 1, runs: [{ key: "42", control_dir: null, db_path: "/home/u.guest/run.db", smithers_run_id: "fx-0.32.0-failed" }] });

describe("probeVm: output validation and errors", () => {
  it("invalid output → ProbeError (not JSON, wrong shape, non-zero exit)", async () => {
    const cases: [ExecResult, RegExp][] = [
      [{ exitCode: 0, stdout: "Welcome to the VM\n<html>", stderr: "", durationMs: 1 }, /^invalid probe output: not JSON/],
      [{ exitCode: 0, stdout: "", stderr: "", durationMs: 1 }, /^invalid probe output: empty/],
      [{ exitCode: 0, stdout: '{"v":1,"tool":"bun"}\n', stderr: "", durationMs: 1 }, /^invalid probe output: .*tool_version/],
      [{ exitCode: 0, stdout: '{"v":1,"tool":"python3","tool_version":"3","sqlite_version":"3","now_ms":1,"runs":[],"discovered":[]}\n', stderr: "", durationMs: 1 }, /^invalid probe output: tool/],
      [{ exitCode: 0, stdout: `${JSON.stringify({ v: 1, tool: "bun", tool_version: "1", sqlite_version: "3", now_ms: 1, runs: [{ key: "x".repeat(300), control: null, db: null, errors: [] }], discovered: [] })}\n`, stderr: "", durationMs: 1 }, /^invalid probe output: runs\.0\.key/],
      [{ exitCode: 2, stdout: "", stderr: "fabrik-probe: bad request: boom\n", durationMs: 1 }, /^probe exited 2: fabrik-probe: bad request: boom$/],
      [{ exitCode: 137, stdout: "", stderr: "", durationMs: 1 }, /^probe exited 137$/],
      [{ exitCode: 78, stdout: "", stderr: "fabrik-guest: cannot write /h/.fabrik/guest/x/probe.js\n", durationMs: 1 }, /^cannot install the probe in the VM: fabrik-guest: cannot write/],
    ];
    for (const [canned, re] of cases) {
      const driver = new FakeDriver("local").expect("exec", () => canned);
      const err = await probeVm(driver, "vm-x", request(), { timeoutMs: 1000, installCache: new MemoryGuestInstallCache() }).catch((e: unknown) => e);
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

  it("the request's defaults are filled by a plain function that agrees with the wire schema (the host's own request is not validated again)", () => {
    const bare: ProbeRequest = { v: 1, runs: [{ key: "1", control_dir: "/c", db_path: null, smithers_run_id: null }] };
    expect(probeRequestWithDefaults(bare)).toEqual(ProbeRequestSchema.parse(bare));
    const full: ProbeRequest = { ...bare, nodes: true, max_nodes: 7, row_size_warn_bytes: 9, discover_roots: ["/w"], error_chars: 11 };
    expect(probeRequestWithDefaults(full)).toEqual(ProbeRequestSchema.parse(full));
    // The health section (doctor, fleet) and a run's events request (runs events) travel with their defaults too.
    const events = { after_seq: 3, limit: 10, node: null, since_ms: null, raw: false };
    const health: ProbeRequest = { ...bare, runs: [{ ...bare.runs[0]!, events }], health: { work_dir: "/h/work", engines_dir: "/h/.fabrik/engines" } };
    expect(probeRequestWithDefaults(health)).toEqual(ProbeRequestSchema.parse(health));
    const healthFull: ProbeRequest = { ...bare, health: { work_dir: "/w", engines_dir: "/e", runs_roots: ["/r"], known_control_dirs: ["/c"], measure_dirs: ["/m"] } };
    expect(probeRequestWithDefaults(healthFull)).toEqual(ProbeRequestSchema.parse(healthFull));
  });
});

describe("the probe on the wire", () => {
  /** 20 runs laid out as `fabrik run` lays them out. */
  const twentyRuns = (): ProbeRequest =>
    ProbeRequestSchema.parse({
      v: 1,
      runs: Array.from({ length: 20 }, (_, i) => {
        const id = 1000 + i;
        const cd = `/home/ralph.guest/work/ralph-1/.runs/${id}-seq`;
        return { key: String(id), control_dir: cd, db_path: `${cd}/.smithers/run-${id}.db`, smithers_run_id: `fabrik-${id}` };
      }),
    });

  it("a call without the program is < 4 KB for 20 runs; the first call stays well under the 128 KiB argument cap", () => {
    const program = loadGuestProgram("probe");
    const req = twentyRuns();
    const json = JSON.stringify(req);
    const stdin = encodeGuestRequest(json);
    expect(Buffer.isBuffer(stdin)).toBe(true); // 20 runs of JSON are over the gzip threshold
    expect(gunzipSync(stdin as Buffer).toString("utf8")).toBe(json);
    const candidates = probeBunCandidates(req);
    const steady = requestBytes(probeArgv(program, false, "once", candidates), stdin);
    const first = requestBytes(probeArgv(program, true, "once", candidates), stdin);
    const plainJson = requestBytes(probeArgv(program, false, "once", candidates), json);
    console.log(
      `[probe bytes] 20 runs: ${steady} bytes per call once installed (request JSON ${Buffer.byteLength(json)}, on stdin ${(stdin as Buffer).length}; ` +
        `${plainJson} with plain JSON), ${first} bytes on the installing call (program ${program.bytes})`,
    );
    expect(steady).toBeLessThan(4 * 1024);
    // ssh hands the whole remote command to the guest shell as ONE argument (Linux MAX_ARG_STRLEN = 128 KiB).
    expect(Buffer.byteLength(shellJoin(probeArgv(program, true, "serve", candidates)))).toBeLessThan(100 * 1024);
  });

  it("the bundles hold no zod (types only cross over) and are what the host hashes", () => {
    for (const name of ["probe", "resume", "evidence"] as const) {
      const p = loadGuestProgram(name);
      expect(loadGuestProgram(name)).toBe(p); // read once
      expect(p.file).toBe(guestBundlePath(name));
      expect(p.hash).toBe(guestHash(fs.readFileSync(p.file, "utf8")));
      expect(p.hash).toMatch(/^[0-9a-f]{16}$/);
      expect(p.text).not.toMatch(/\bzod\b/);
      expect(p.text).not.toMatch(/sourceMappingURL/);
      expect(p.text).toContain('require("bun:sqlite")');
      const inputs = Object.keys((JSON.parse(fs.readFileSync(p.file.replace(/\.js$/, ".meta.json"), "utf8")) as { inputs: Record<string, unknown> }).inputs);
      expect(inputs.filter((i) => i.includes("node_modules"))).toEqual([]);
      expect(inputs.every((i) => i.startsWith("src/vm/guest/") || i.startsWith("src/core/"))).toBe(true);
    }
  });
});
