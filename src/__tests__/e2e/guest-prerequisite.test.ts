/**
 * A VM without bun, end to end through the built CLI on a local-driver VM created with `--no-engine`: the probe
 * refuses with a clear prerequisite error (exit 7) that names the VM, where it looked for bun and the fix —
 * never a silent downgrade to another tool.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { disposeTestEnv, fabrik, makeTestEnv, type TestEnv } from "../helpers/cli.js";

/** `PATH` without the directories that hold a `bun` (the host's bun must not stand in for the VM's). */
function pathWithoutBun(p: string | undefined): string {
  return (p ?? "/usr/bin:/bin")
    .split(":")
    .filter((d) => d && !fs.existsSync(path.join(d, "bun")))
    .join(":");
}

describe("a VM without bun", () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = makeTestEnv("nobun-");
    t.env.PATH = pathWithoutBun(t.env.PATH);
    const r = await fabrik(t, ["vm", "create", "nb", "--driver", "local", "--no-engine"]);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => disposeTestEnv(t));

  it("runs import: exit 7 (prerequisite), one line naming the VM, where it looked, and the fix", async () => {
    const r = await fabrik(t, ["runs", "import", "--vm", "nb"]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("VM nb: no bun found (looked in ~/.fabrik/engines/*/.runtime/node_modules/.bin/bun, ~/.bun/bin/bun, bun on PATH)");
    expect(r.stderr).toContain("`fabrik vm create` install an engine, which brings bun; or install bun on the guest's PATH");
    expect(r.stderr).not.toMatch(/python/);
    // Nothing was installed: the wrapper stops before writing the program.
    const home = JSON.parse((await fabrik(t, ["vm", "list", "--json"])).stdout) as { name: string; guest_home: string | null }[];
    const guestHome = home.find((v) => v.name === "nb")?.guest_home;
    expect(guestHome).toBeTruthy();
    expect(fs.existsSync(path.join(guestHome!, ".fabrik/guest"))).toBe(false);
  });
});
