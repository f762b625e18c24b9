// shellQuote round trips through real shells (bash and dash): every hostile string comes back as one word.
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { shellJoin, shellQuote } from "../../vm/shell-quote.js";
import { HOSTILE } from "../helpers/hostile-strings.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

describe("shellQuote through real shells", () => {
  const dir = tempDir("quote-");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("round-trips hostile strings through bash as single words", async () => {
    const line = `printf '%s\\0' ${shellJoin(HOSTILE)}`;
    const r = await run("bash", ["-c", line]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(HOSTILE);
  });

  it("round-trips through sh (dash) too", async () => {
    const line = `printf '%s\\0' ${shellJoin(HOSTILE)}`;
    const r = await run("sh", ["-c", line]);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(HOSTILE);
  });

  it("never executes embedded commands", async () => {
    const marker = path.join(dir, "pwned");
    await run("bash", ["-c", `echo ${shellQuote(`$(touch ${marker})`)}`]);
    expect(fs.existsSync(marker)).toBe(false);
  });
});
