/**
 * The real `lima` driver against the stand-in limactl: exact argv quoting, env, workdir, stdin, exit codes,
 * the status pre-check, and the deadline killing the whole process group (limactl and the guest command).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { LimaDriver } from "../../vm/lima-driver.js";
import { NotFoundError, PrerequisiteError, VmUnavailableError } from "../../core/errors.js";
import { disposeTestEnv, makeTestEnv, type TestEnv } from "../helpers/cli.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { run, waitFor } from "../helpers/proc.js";

const skip = missingPrereqs(...STANDIN, "pgrep");

describe.skipIf(skip)(titled("LimaDriver against the stand-in", skip), () => {
  let t: TestEnv;
  let driver: LimaDriver;
  const template = () => path.join(t.tmp, "tiny.yaml");
  beforeAll(async () => {
    t = makeTestEnv();
    fs.writeFileSync(template(), "images: []\ncpus: 1\nmemory: 1GiB\n");
    driver = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.fabrikHome, "cache"), env: t.env });
    await driver.create({ name: "d1", template: template(), timeoutMs: 60_000 });
    await driver.start("d1", { timeoutMs: 60_000 });
  }, 120_000);
  afterAll(() => disposeTestEnv(t));

  it("reports the VM with its guest home", async () => {
    const info = await driver.inspect("d1", { timeoutMs: 10_000 });
    expect(info).toMatchObject({ name: "d1", status: "Running", guestHome: "/home/root.guest", driver: "lima" });
    expect(await driver.inspect("nope", { timeoutMs: 10_000 })).toBeUndefined();
  });

  it("passes argv exactly, env, workdir and stdin; guest exit codes are data", async () => {
    const evil = ["a b", "it's", "$HOME", "`id`", "x;y", "", "a=b"];
    const r = await driver.exec("d1", ["printf", "%s|", ...evil], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ exitCode: 0, stdout: evil.join("|") + "|" });
    const e = await driver.exec("d1", ["sh", "-c", 'printf "%s %s" "$FOO" "$PWD"'], { timeoutMs: 10_000, env: { FOO: "x y" }, cwd: "/tmp" });
    expect(e.stdout).toBe("x y /tmp");
    const s = await driver.exec("d1", ["wc", "-c"], { timeoutMs: 10_000, stdin: Buffer.alloc(100_000, 97) });
    expect(s.stdout.trim()).toBe("100000");
    const x = await driver.exec("d1", ["sh", "-c", "echo out; echo err >&2; exit 3"], { timeoutMs: 10_000 });
    expect(x).toMatchObject({ exitCode: 3, stdout: "out\n", stderr: "err\n" });
  });

  it("a deadline kills the whole process group, guest command included", async () => {
    const marker = `fabrik-deadline-${process.pid}`;
    const started = Date.now();
    await expect(driver.exec("d1", ["bash", "-c", `exec -a ${marker} sleep 300`], { timeoutMs: 1500 })).rejects.toThrow(VmUnavailableError);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The kill is asynchronous: wait (with a deadline) for the guest command to be gone.
    await waitFor(async () => (await run("pgrep", ["-f", marker])).code !== 0, { timeoutMs: 10_000, intervalMs: 100, what: `no process matching ${marker}` });
  });

  it("refuses a stopped or missing VM before running anything", async () => {
    await driver.create({ name: "d2", template: template(), timeoutMs: 60_000 });
    await expect(driver.exec("d2", ["true"], { timeoutMs: 10_000 })).rejects.toThrow(/d2 is Stopped/);
    await expect(driver.exec("ghost", ["true"], { timeoutMs: 10_000 })).rejects.toThrow(NotFoundError);
    // skipStatusCheck: the stopped VM is recognised from limactl's own error (one call)
    await expect(driver.exec("d2", ["true"], { timeoutMs: 10_000, skipStatusCheck: true })).rejects.toThrow(VmUnavailableError);
  });

  it("copies files in and out", async () => {
    const src = path.join(t.tmp, "in.txt");
    fs.writeFileSync(src, "hello copy\n");
    await driver.exec("d1", ["mkdir", "-p", "/home/root.guest/cp"], { timeoutMs: 10_000 });
    await driver.copyIn("d1", [src], "/home/root.guest/cp", { timeoutMs: 30_000 });
    expect((await driver.exec("d1", ["cat", "/home/root.guest/cp/in.txt"], { timeoutMs: 10_000 })).stdout).toBe("hello copy\n");
    const back = path.join(t.tmp, "back.txt");
    await driver.copyOut("d1", "/home/root.guest/cp/in.txt", back, { timeoutMs: 30_000 });
    expect(fs.readFileSync(back, "utf8")).toBe("hello copy\n");
  });

  it("checks limactl is present and recent enough", async () => {
    const none = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.tmp, "c1"), env: { PATH: "/nonexistent" } });
    await expect(none.ensureLimactl()).rejects.toThrow(PrerequisiteError);
    const old = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.tmp, "c2"), env: { ...t.env, LIMACTL_STANDIN_VERSION: "2.0.3" } });
    await expect(old.ensureLimactl()).rejects.toThrow(/Lima 2\.0\.3 is too old: fabrik needs limactl >= 2\.1\.0/);
  });
});
