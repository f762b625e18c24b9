/**
 * The local driver's power-off is scoped to ONE VM of ONE FABRIK_HOME: a same-named VM in another home is never
 * touched (issue: `vm stop` used to kill every process tagged with the name, across homes).
 */
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LocalDriver } from "../../vm/local-driver.js";

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
