// The shell scripts `fabrik run attach` runs in the VM (TAIL_SCRIPT, READ_FROM_SCRIPT), run for real with sh on
// this host. (The pure parts of attach are unit-tested in unit/attach.test.ts.)
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { TAIL_SCRIPT, READ_FROM_SCRIPT } from "../../fabrik/attach.js";
import { run as runProc } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

describe("shell scripts used by attach (run with sh)", () => {
  const dir = tempDir("attach-scripts-");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const run = async (script: string, args: string[]) => {
    const r = await runProc("sh", ["-c", script, "x", ...args]);
    return { status: r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const decode = (lines: string[]) => Buffer.from(lines.join(""), "base64").toString("utf8");

  it("TAIL_SCRIPT: size first, then the last N lines of exactly that many bytes", async () => {
    const f = path.join(dir, "log with 'quotes' $x.txt");
    const text = Array.from({ length: 20_000 }, (_, i) => `line ${i + 1} ${"x".repeat(i % 7)}`).join("\n") + "\npartial";
    fs.writeFileSync(f, text);
    const r = await run(TAIL_SCRIPT, [f, "3"]);
    expect(r.status, r.stderr).toBe(0);
    const [size, ...b64] = r.stdout.split("\n");
    expect(Number(size)).toBe(Buffer.byteLength(text));
    expect(decode(b64)).toBe(text.split("\n").slice(-3).join("\n"));
    // More lines than one 64 KiB window holds.
    const many = await run(TAIL_SCRIPT, [f, "15000"]);
    expect(decode(many.stdout.split("\n").slice(1))).toBe(text.split("\n").slice(-15000).join("\n"));
    // All of it, 0 lines, missing file.
    expect(decode((await run(TAIL_SCRIPT, [f, "999999"])).stdout.split("\n").slice(1))).toBe(text);
    expect((await run(TAIL_SCRIPT, [f, "0"])).stdout).toBe(`${Buffer.byteLength(text)}\n`);
    expect((await run(TAIL_SCRIPT, [path.join(dir, "missing"), "5"])).stdout).toBe("0\n");
  });

  it("READ_FROM_SCRIPT: the bytes from an offset to the end", async () => {
    const f = path.join(dir, "-starts-with-dash");
    fs.writeFileSync(f, "0123456789\nabc");
    expect(decode((await run(READ_FROM_SCRIPT, [f, "4"])).stdout.split("\n"))).toBe("3456789\nabc");
    expect(decode((await run(READ_FROM_SCRIPT, [f, "15"])).stdout.split("\n"))).toBe("");
  });
});
