/**
 * probeVm (src/vm/probe.ts) with a FAKE VmDriver whose exec runs the argv locally: the real PROBE_WRAPPER
 * finds bun in a temp HOME (a fake engine folder, ~/.bun/bin or a run folder, each a symlink to the real bun) or
 * not at all, installs the bundled probe under $HOME/.fabrik/guest/<hash>/, and the real guest probe answers.
 * Checks the one-call contract, the install-once protocol and bun discovery. Output validation and the bytes on
 * the wire (canned answers): unit/probe-host.test.ts.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DriverName } from "../../vm/driver.js";
import { VmUnavailableError } from "../../core/errors.js";
import type { ExecOptions, ExecResult, VmDriver } from "../../vm/driver.js";
import {
  FileGuestInstallCache,
  GUEST_EXIT_NOT_INSTALLED,
  MemoryGuestInstallCache,
  guestBundlePath,
  guestHash,
  loadGuestProgram,
} from "../../vm/guest-programs.js";
import { gunzipSync } from "node:zlib";
import { NoBunError, PROBE_MAX_OUTPUT_BYTES, PROBE_WRAPPER, ProbeError, encodeGuestRequest, probeArgv, probeBunCandidates, probeVm, requestBytes } from "../../vm/probe.js";
import { ProbeRequestSchema, type ProbeRequest } from "../../vm/probe-schema.js";
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
  bun = fs.realpathSync(path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun"));
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
  fs.symlinkSync(bun, path.join(bin, "bun"));
  fs.writeFileSync(path.join(home, ".fabrik/engines/0.32.0/.fabrik-engine.json"), "{}");
  return home;
}

/** A PATH holding only what the wrapper needs (sh, mkdir, chmod, mv, rm): no bun, no python3. */
function pathWithoutBun(): string {
  const d = fs.mkdtempSync(path.join(tmp, "bin-"));
  for (const tool of ["sh", "mkdir", "chmod", "mv", "rm"]) fs.symlinkSync(`/bin/${tool}`, path.join(d, tool));
  return d;
}

const request = (): ProbeRequest => ({ v: 1, runs: [{ key: "42", control_dir: null, db_path: dbPath, smithers_run_id: "fx-0.32.0-failed" }] });

/** The program text the call carried (argv[5]: "" = not sent). */
const sentText = (c: Call | undefined) => c?.argv[5];

describe("probeVm: one call, the probe installed once per content hash", () => {
  it("first call installs and runs in ONE exec; the answer comes from the engine's bun", async () => {
    const home = homeWithEngine();
    const driver = new FakeDriver({ HOME: home, PATH: pathWithoutBun() });
    const cache = new MemoryGuestInstallCache();
    const program = loadGuestProgram("probe");
    const res = await probeVm(driver, "vm-1", request(), { timeoutMs: 20_000, installCache: cache });
    expect(driver.calls).toHaveLength(1);
    const call = driver.calls[0];
    expect(call?.vm).toBe("vm-1");
    expect(call?.argv).toEqual(["sh", "-c", PROBE_WRAPPER, "fabrik-probe", program.hash, program.text, "once"]);
    expect(call?.opts).toMatchObject({ timeoutMs: 20_000, skipStatusCheck: true, maxOutputBytes: PROBE_MAX_OUTPUT_BYTES });
    expect(JSON.parse(String(call?.opts.stdin))).toEqual(ProbeRequestSchema.parse(request())); // defaults filled
    expect(res.tool).toBe("bun");
    expect(res.runs[0]?.key).toBe("42");
    expect(res.runs[0]?.db?.run?.status).toBe("failed");
    expect(res.runs[0]?.db?.last_failed?.error).toBe("step-3 failed on purpose (failAt=3)");
    // Installed: dir 0700, file 0600, the exact bundle, named by its hash.
    const dir = path.join(home, ".fabrik/guest", program.hash);
    const file = path.join(dir, "probe.js");
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(home, ".fabrik/guest")).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, "utf8")).toBe(program.text);
    expect(fs.readdirSync(dir)).toEqual(["probe.js"]); // no temp file left
    expect(cache.has("vm-1", program.hash)).toBe(true);
  });

  it("a second probe call sends no program text, only the hash and the request", async () => {
    const driver = new FakeDriver({ HOME: homeWithEngine(), PATH: pathWithoutBun() });
    const cache = new MemoryGuestInstallCache();
    await probeVm(driver, "vm-2", request(), { timeoutMs: 20_000, installCache: cache });
    const res = await probeVm(driver, "vm-2", request(), { timeoutMs: 20_000, installCache: cache });
    expect(driver.calls).toHaveLength(2);
    const program = loadGuestProgram("probe");
    expect(sentText(driver.calls[0])).toBe(program.text);
    expect(sentText(driver.calls[1])).toBe("");
    expect(driver.calls[1]?.argv.join("\n")).not.toContain("bun:sqlite");
    expect(res.runs[0]?.db?.run?.status).toBe("failed");
  });

  it("a large request travels gzipped on stdin and the guest reads it (20 runs, one call)", async () => {
    const driver = new FakeDriver({ HOME: homeWithEngine(), PATH: pathWithoutBun() });
    const req: ProbeRequest = { v: 1, runs: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, control_dir: null, db_path: dbPath, smithers_run_id: "fx-0.32.0-failed" })) };
    const res = await probeVm(driver, "vm-gz", req, { timeoutMs: 20_000, installCache: new MemoryGuestInstallCache() });
    expect(driver.calls).toHaveLength(1);
    expect(Buffer.isBuffer(driver.calls[0]?.opts.stdin)).toBe(true);
    expect(res.runs.map((r) => r.key)).toEqual(req.runs.map((r) => r.key));
    expect(res.runs.every((r) => r.db?.run?.status === "failed")).toBe(true);
  });

  it("a stale cache (the VM lost the file): exit 79, then ONE retry that installs again", async () => {
    const home = homeWithEngine();
    const driver = new FakeDriver({ HOME: home, PATH: pathWithoutBun() });
    const cache = new MemoryGuestInstallCache();
    const program = loadGuestProgram("probe");
    cache.add("vm-3", program.hash); // believed installed, but never was
    const res = await probeVm(driver, "vm-3", request(), { timeoutMs: 20_000, installCache: cache });
    expect(driver.calls.map(sentText)).toEqual(["", program.text]);
    expect(res.runs[0]?.key).toBe("42");
    expect(fs.existsSync(path.join(home, ".fabrik/guest", program.hash, "probe.js"))).toBe(true);
    // And the wrapper's own answer to a missing program is the distinct code, with nothing run.
    const bare = new FakeDriver({ HOME: homeWithEngine(), PATH: pathWithoutBun() });
    const r = await bare.exec("vm", probeArgv(program, false, "once", []), { timeoutMs: 10_000, stdin: JSON.stringify(request()) });
    expect(r.exitCode).toBe(GUEST_EXIT_NOT_INSTALLED);
    expect(r.stdout).toBe("");
  });

  it("a file-backed cache is shared between processes (here: two cache objects on one file)", async () => {
    const file = path.join(tmp, "cache", "guest-installs.json");
    const driver = new FakeDriver({ HOME: homeWithEngine(), PATH: pathWithoutBun() });
    await probeVm(driver, "vm-4", request(), { timeoutMs: 20_000, installCache: new FileGuestInstallCache(file) });
    await probeVm(driver, "vm-4", request(), { timeoutMs: 20_000, installCache: new FileGuestInstallCache(file) });
    expect(driver.calls.map((c) => sentText(c) === "")).toEqual([false, true]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual({ v: 1, vms: { "vm-4": [loadGuestProgram("probe").hash] } });
  });

  it("finds bun in ~/.bun/bin, on PATH, or in a requested run's workflow/node_modules/.bin", async () => {
    const viaHomeBun = fs.mkdtempSync(path.join(tmp, "home-"));
    fs.mkdirSync(path.join(viaHomeBun, ".bun/bin"), { recursive: true });
    fs.symlinkSync(bun, path.join(viaHomeBun, ".bun/bin/bun"));
    expect((await probeVm(new FakeDriver({ HOME: viaHomeBun, PATH: pathWithoutBun() }), "a", request(), { timeoutMs: 20_000, installCache: new MemoryGuestInstallCache() })).tool).toBe("bun");

    const onPath = pathWithoutBun();
    fs.symlinkSync(bun, path.join(onPath, "bun"));
    expect((await probeVm(new FakeDriver({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: onPath }), "b", request(), { timeoutMs: 20_000, installCache: new MemoryGuestInstallCache() })).tool).toBe("bun");

    const cd = fs.mkdtempSync(path.join(tmp, "run-"));
    fs.mkdirSync(path.join(cd, "workflow/node_modules/.bin"), { recursive: true });
    fs.symlinkSync(bun, path.join(cd, "workflow/node_modules/.bin/bun"));
    const req: ProbeRequest = { v: 1, runs: [{ key: "9", control_dir: cd, db_path: dbPath, smithers_run_id: null }] };
    const driver = new FakeDriver({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: pathWithoutBun() });
    const res = await probeVm(driver, "c", req, { timeoutMs: 20_000, installCache: new MemoryGuestInstallCache() });
    expect(res.runs[0]?.control?.exists).toBe(true);
    expect(driver.calls[0]?.argv.slice(7)).toEqual([`${cd}/workflow/node_modules/.bin/bun`]); // a positional arg, never interpolated
  });

  it("no bun anywhere: NoBunError (kind prerequisite) naming the VM, where it looked and the fix; nothing installed", async () => {
    const home = fs.mkdtempSync(path.join(tmp, "home-"));
    const driver = new FakeDriver({ HOME: home, PATH: pathWithoutBun() });
    const req: ProbeRequest = { v: 1, runs: [{ key: "1", control_dir: "/nonexistent/run-1", db_path: null, smithers_run_id: null }] };
    const err = await probeVm(driver, "vm-bare", req, { timeoutMs: 20_000, installCache: new MemoryGuestInstallCache() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoBunError);
    const e = err as NoBunError;
    expect(e.kind).toBe("prerequisite");
    expect(e.vm).toBe("vm-bare");
    expect(e.message).toBe(
      "VM vm-bare: no bun found (looked in ~/.fabrik/engines/*/.runtime/node_modules/.bin/bun, ~/.bun/bin/bun, bun on PATH, 1 run folder's workflow/node_modules/.bin/bun); fabrik's guest programs need bun ≥ 1.3",
    );
    expect(e.hint).toContain("fabrik vm create");
    expect(e.hint).toContain("install bun on the guest's PATH");
    expect(e.looked).toContain("/nonexistent/run-1/workflow/node_modules/.bin/bun");
    expect(driver.calls).toHaveLength(1);
    expect(fs.existsSync(path.join(home, ".fabrik"))).toBe(false);
  });
});
