/**
 * probeVm (src/vm/probe.ts) with a FAKE VmDriver whose exec runs the argv locally: the real PROBE_WRAPPER
 * picks a tool from a temp HOME (a fake engine folder whose bun is a symlink to the real one) or PATH, and the
 * real guest probe answers. Checks the one-call contract, output validation and the typed errors.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DriverName } from "../../fabrik/config.js";
import { VmUnavailableError } from "../../core/errors.js";
import type { ExecOptions, ExecResult, VmDriver } from "../../vm/driver.js";
import { PROBE_MAX_OUTPUT_BYTES, PROBE_WRAPPER, ProbeError, loadGuestProbe, probeVm } from "../../vm/probe.js";
import { ProbeRequestSchema } from "../../vm/probe-schema.js";
import { shellJoin } from "../../vm/shell-quote.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";

interface Call {
  vm: string;
  argv: readonly string[];
  opts: ExecOptions;
}

/** A VmDriver whose exec runs argv on this machine with the given HOME/PATH (or returns a canned result). */
class FakeDriver implements VmDriver {
  readonly name: DriverName = "local";
  readonly calls: Call[] = [];
  constructor(private readonly env: { HOME: string; PATH: string }, private readonly canned?: ExecResult | Error) {}

  exec(vm: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    this.calls.push({ vm, argv, opts });
    if (this.canned instanceof Error) return Promise.reject(this.canned);
    if (this.canned) return Promise.resolve(this.canned);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0] ?? "", argv.slice(1), { env: { ...this.env, LANG: "C.UTF-8" }, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ exitCode: code ?? 1, stdout, stderr, durationMs: Date.now() - started }));
      child.stdin.on("error", () => undefined); // EPIPE when the command exits without reading stdin
      child.stdin.end(opts.stdin ?? "");
    });
  }
  list = notUsed;
  inspect = notUsed;
  create = notUsed;
  start = notUsed;
  stop = notUsed;
  delete = notUsed;
  stream = notUsed;
  copyIn = notUsed;
  copyOut = notUsed;
  shell = notUsed;
  sshTarget = notUsed;
}
function notUsed(): never {
  throw new Error("not used by the probe");
}

let tmp = "";
let dbPath = "";
let bun = "";

beforeAll(async () => {
  const { dir, manifest } = await ensureFixtures();
  bun = path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun");
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-probe-host-"));
  dbPath = copyFixtureDb(dir, fixtureCase(manifest, "0.32.0", "failed"));
}, 600_000);

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  if (dbPath) fs.rmSync(path.dirname(dbPath), { recursive: true, force: true });
});

/** A HOME with `.fabrik/engines/<v>/.runtime/node_modules/.bin/bun` → the real bun, plus the install marker. */
function homeWithEngine(): string {
  const home = fs.mkdtempSync(path.join(tmp, "home-"));
  const bin = path.join(home, ".fabrik/engines/0.32.0/.runtime/node_modules/.bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.symlinkSync(fs.realpathSync(bun), path.join(bin, "bun"));
  fs.writeFileSync(path.join(home, ".fabrik/engines/0.32.0/.fabrik-engine.json"), "{}");
  return home;
}

/** A PATH holding only `sh` (no bun, no python3). */
function pathWithOnlySh(): string {
  const d = fs.mkdtempSync(path.join(tmp, "bin-"));
  fs.symlinkSync("/bin/sh", path.join(d, "sh"));
  return d;
}

const request = () => ({ v: 1 as const, runs: [{ key: "42", control_dir: null, db_path: dbPath, smithers_run_id: "fx-0.32.0-failed" }] });

describe("probeVm", () => {
  it("makes exactly one exec call (sh -c WRAPPER) and returns the validated answer from the engine's bun", async () => {
    const driver = new FakeDriver({ HOME: homeWithEngine(), PATH: pathWithOnlySh() });
    const res = await probeVm(driver, "vm-1", request(), { timeoutMs: 20_000 });
    expect(driver.calls).toHaveLength(1);
    const call = driver.calls[0];
    const { js, py } = loadGuestProbe();
    expect(call?.vm).toBe("vm-1");
    expect(call?.argv).toEqual(["sh", "-c", PROBE_WRAPPER, "fabrik-probe", js, py]);
    expect(call?.opts).toMatchObject({ timeoutMs: 20_000, skipStatusCheck: true, maxOutputBytes: PROBE_MAX_OUTPUT_BYTES });
    expect(JSON.parse(String(call?.opts.stdin))).toEqual(ProbeRequestSchema.parse(request())); // defaults filled
    expect(res.tool).toBe("bun");
    expect(res.runs[0]?.key).toBe("42");
    expect(res.runs[0]?.db?.run?.status).toBe("failed");
    expect(res.runs[0]?.db?.last_failed?.error).toBe("step-3 failed on purpose (failAt=3)");
  });

  it.runIf(fs.existsSync("/usr/bin/python3"))("falls back to python3 when the VM has no bun", async () => {
    const driver = new FakeDriver({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: "/usr/bin:/bin" });
    const res = await probeVm(driver, "vm-py", request(), { timeoutMs: 20_000 });
    expect(driver.calls).toHaveLength(1);
    expect(res.tool).toBe("python3");
    expect(res.runs[0]?.db?.by_state).toEqual({ finished: 2, failed: 1, pending: 3 });
    expect(res.runs[0]?.db?.max_response_text_bytes).toBeNull();
  });

  it("no bun and no python3: ProbeError 'no bun or python3 in the VM' (wrapper exit 3)", async () => {
    const driver = new FakeDriver({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: pathWithOnlySh() });
    const err = await probeVm(driver, "vm-bare", request(), { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProbeError);
    expect((err as ProbeError).vm).toBe("vm-bare");
    expect((err as ProbeError).reason).toBe("no bun or python3 in the VM");
    expect((err as ProbeError).remoteExitCode).toBe(3);
    expect(driver.calls).toHaveLength(1);
  });

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
      const driver = new FakeDriver({ HOME: tmp, PATH: "/bin" }, canned);
      const err = await probeVm(driver, "vm-x", request(), { timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProbeError);
      expect((err as ProbeError).reason).toMatch(re);
      expect((err as ProbeError).message).toMatch(/^vm-x: probe: /);
      expect(driver.calls).toHaveLength(1);
    }
  });

  it("driver errors propagate unchanged", async () => {
    const unavailable = new VmUnavailableError("vm-off", "VM vm-off is Stopped");
    const driver = new FakeDriver({ HOME: tmp, PATH: "/bin" }, unavailable);
    await expect(probeVm(driver, "vm-off", request(), { timeoutMs: 1000 })).rejects.toBe(unavailable);
  });

  it("an invalid request is refused before any call", async () => {
    const driver = new FakeDriver({ HOME: tmp, PATH: "/bin" });
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
