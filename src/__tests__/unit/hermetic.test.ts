// The unit tier cannot start processes (setup/hermetic-unit.ts): a test that needs one belongs elsewhere.
import { describe, it, expect } from "vitest";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { execa } from "execa";

describe("the unit tier is hermetic", () => {
  it("child_process and execa throw", async () => {
    expect(() => spawnSync("true")).toThrow(/unit tier is hermetic/);
    expect(() => spawn("true")).toThrow(/unit tier is hermetic/);
    expect(() => execFileSync("true")).toThrow(/unit tier is hermetic/);
    await expect(execa("true")).rejects.toThrow(/unit tier is hermetic/);
  });
});
