/**
 * The local driver's power-off is scoped to ONE VM of ONE FABRIK_HOME: a same-named VM in another home is never
 * touched (issue: `vm stop` used to kill every process tagged with the name, across homes).
 */
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LocalDriver } from "../../vm/local-driver.js";
import { InterruptedError, VmUnavailableError } from "../../core/errors.js";
import { waitFor } from "../helpers/proc.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-local-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
};

async function vmWithSleeper(home: string): Promise<{ driver: LocalDriver; pid: number }> {
  const driver = new LocalDriver(path.join(home, "local-vms"));
  await driver.create({ name: "rel", timeoutMs: 5_000 });
  await driver.start("rel");
  // A detached process of the VM (like an engine started by run.sh): it prints its pid and lives on.
  const r = await driver.exec("rel", ["sh", "-c", "setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $!"], { timeoutMs: 10_000 });
  return { driver, pid: Number(r.stdout.trim()) };
}

describe("local driver: stop is scoped to this FABRIK_HOME's VM", () => {
  it("stopping a same-named VM of another home leaves this one's processes alive", async () => {
    const a = await vmWithSleeper(path.join(tmp, "home-a"));
    const b = await vmWithSleeper(path.join(tmp, "home-b"));
    expect(alive(a.pid) && alive(b.pid)).toBe(true);
    await b.driver.stop("rel", { timeoutMs: 10_000 });
    expect(alive(b.pid)).toBe(false);
    expect(alive(a.pid)).toBe(true);
    await a.driver.stop("rel", { timeoutMs: 10_000 });
    expect(alive(a.pid)).toBe(false);
  });
});

/** Host processes whose command line contains `marker` (a local VM's processes are host processes). */
function withMarker(marker: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(marker) && alive(Number(d))) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

// The same effect on every driver (issue 12): a deadline or an abort ends the command's whole process group, through a
// second call as on a Lima guest (src/vm/remote-group.ts), and a stream's kill() ends its command.
describe("local driver: ending a command", () => {
  it("a deadline, an abort and a stream's kill() end the command and its children", async () => {
    const driver = new LocalDriver(path.join(tmp, "home-kill", "local-vms"));
    await driver.create({ name: "k", timeoutMs: 5_000 });
    await driver.start("k");
    const m1 = `fabrik-local-deadline-${process.pid}`;
    await expect(driver.exec("k", ["bash", "-c", `sleep 300 & exec -a ${m1} sleep 301`], { timeoutMs: 1000 })).rejects.toThrow(VmUnavailableError);
    await waitFor(() => withMarker(m1).length === 0 && withMarker("sleep 300").length === 0, { timeoutMs: 10_000, intervalMs: 50, what: `${m1} and its child to be gone` });

    const m2 = `fabrik-local-abort-${process.pid}`;
    const ac = new AbortController();
    const p = driver.exec("k", ["bash", "-c", `exec -a ${m2} sleep 302`], { timeoutMs: 60_000, signal: ac.signal });
    await waitFor(() => withMarker(m2).length === 1, { timeoutMs: 10_000, intervalMs: 20, what: `${m2} to run` });
    ac.abort();
    await expect(p).rejects.toThrow(InterruptedError);
    await waitFor(() => withMarker(m2).length === 0, { timeoutMs: 10_000, intervalMs: 50, what: `${m2} to be gone` });

    const m3 = `fabrik-local-stream-${process.pid}`;
    let out = "";
    const h = await driver.stream("k", ["bash", "-c", `echo first; exec -a ${m3} sleep 303`], { onStdout: (c) => (out += c.toString()) });
    await waitFor(() => out === "first\n" && withMarker(m3).length >= 1, { timeoutMs: 10_000, intervalMs: 20, what: `${m3} to run` });
    h.kill();
    await h.done;
    await waitFor(() => withMarker(m3).length === 0, { timeoutMs: 10_000, intervalMs: 50, what: `${m3} to be gone` });

    // stderr never shows the pid line; a missing command is 127, as in a shell
    const r = await driver.exec("k", ["sh", "-c", "echo err >&2; exit 3"], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ exitCode: 3, stderr: "err\n" });
    expect((await driver.exec("k", ["no-such-command-x"], { timeoutMs: 10_000 })).exitCode).toBe(127);
    await driver.stop("k", { timeoutMs: 10_000 });
  });
});
