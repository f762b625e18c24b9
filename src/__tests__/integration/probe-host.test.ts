/**
 * probeVm (src/vm/probe.ts) with a fake VmDriver whose exec runs the argv on THIS machine: the real
 * PROBE_WRAPPER picks a tool from a temp HOME (a fake engine folder whose bun is a symlink to the real one) or
 * PATH, and the real guest probe answers. Checks the one-call contract and the tool fallback. The checks that
 * need no process (output validation, typed errors) are in unit/probe-host.test.ts.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExecOptions, ExecResult } from "../../vm/driver.js";
import { PROBE_MAX_OUTPUT_BYTES, PROBE_WRAPPER, ProbeError, loadGuestProbe, probeVm } from "../../vm/probe.js";
import { ProbeRequestSchema } from "../../vm/probe-schema.js";
import { FakeDriver } from "../helpers/fake-driver.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";
import { missingPrereqs } from "../helpers/prereq.js";
import { tempDir } from "../helpers/test-root.js";

const noPython = missingPrereqs("python3");

/** An exec handler that runs argv locally with the given HOME/PATH (what the VM would do). */
function localExec(env: { HOME: string; PATH: string }) {
  return (_vm: unknown, argv: unknown, opts: unknown): Promise<ExecResult> => {
    const a = argv as string[];
    const o = opts as ExecOptions;
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const child = spawn(a[0] ?? "", a.slice(1), { env: { ...env, LANG: "C.UTF-8" }, stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ exitCode: code ?? 1, stdout, stderr, durationMs: Date.now() - started }));
      child.stdin.on("error", () => undefined); // EPIPE when the command exits without reading stdin
      child.stdin.end(o.stdin ?? "");
    });
  };
}

/** A fake local-driver VM whose one allowed call is an exec run on this host. */
const localVm = (env: { HOME: string; PATH: string }) => new FakeDriver("local").expect("exec", localExec(env));

let tmp = "";
let dbPath = "";
let bun = "";

beforeAll(async () => {
  const { dir, manifest } = await ensureFixtures();
  bun = path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun");
  tmp = tempDir("probe-host-");
  dbPath = copyFixtureDb(dir, fixtureCase(manifest, "0.32.0", "failed"));
}, 600_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
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

describe("probeVm running the real probe on this host", () => {
  it("makes exactly one exec call (sh -c WRAPPER) and returns the validated answer from the engine's bun", async () => {
    const driver = localVm({ HOME: homeWithEngine(), PATH: pathWithOnlySh() });
    const res = await probeVm(driver, "vm-1", request(), { timeoutMs: 20_000 });
    expect(driver.calls).toHaveLength(1);
    const [vm, argv, opts] = driver.calls[0]!.args as [string, string[], ExecOptions];
    const { js, py } = loadGuestProbe();
    expect(vm).toBe("vm-1");
    expect(argv).toEqual(["sh", "-c", PROBE_WRAPPER, "fabrik-probe", js, py]);
    expect(opts).toMatchObject({ timeoutMs: 20_000, skipStatusCheck: true, maxOutputBytes: PROBE_MAX_OUTPUT_BYTES });
    expect(JSON.parse(String(opts.stdin))).toEqual(ProbeRequestSchema.parse(request())); // defaults filled
    expect(res.tool).toBe("bun");
    expect(res.runs[0]?.key).toBe("42");
    expect(res.runs[0]?.db?.run?.status).toBe("failed");
    expect(res.runs[0]?.db?.last_failed?.error).toBe("step-3 failed on purpose (failAt=3)");
  });

  it.skipIf(noPython)("falls back to python3 when the VM has no bun", async () => {
    const driver = localVm({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: "/usr/bin:/bin" });
    const res = await probeVm(driver, "vm-py", request(), { timeoutMs: 20_000 });
    expect(driver.calls).toHaveLength(1);
    expect(res.tool).toBe("python3");
    expect(res.runs[0]?.db?.by_state).toEqual({ finished: 2, failed: 1, pending: 3 });
    expect(res.runs[0]?.db?.max_response_text_bytes).toBeNull();
  });

  it("no bun and no python3: ProbeError 'no bun or python3 in the VM' (wrapper exit 3)", async () => {
    const driver = localVm({ HOME: fs.mkdtempSync(path.join(tmp, "home-")), PATH: pathWithOnlySh() });
    const err = await probeVm(driver, "vm-bare", request(), { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProbeError);
    expect((err as ProbeError).vm).toBe("vm-bare");
    expect((err as ProbeError).reason).toBe("no bun or python3 in the VM");
    expect((err as ProbeError).remoteExitCode).toBe(3);
    expect(driver.calls).toHaveLength(1);
  });
});
