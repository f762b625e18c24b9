import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { shellJoin, shellQuote } from "../../vm/shell-quote.js";

const HOSTILE = [
  "",
  "plain",
  "with space",
  "it's",
  `"double"`,
  "$HOME",
  "$(touch /tmp/fabrik-pwned)",
  "`id`",
  "a;b&&c||d|e",
  "new\nline",
  "tab\there",
  "back\\slash",
  "*?[glob]",
  "~user",
  "-n",
  "\u001b[31mred\u001b[0m",
  "15:impl",
  "ünïcödé ✓",
  "!bang !!",
  "{a,b}",
  "#comment",
];

describe("shellQuote", () => {
  it("round-trips hostile strings through bash as single words", () => {
    const line = `printf '%s\\0' ${shellJoin(HOSTILE)}`;
    const r = spawnSync("bash", ["-c", line], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(HOSTILE);
  });

  it("round-trips through sh (dash) too", () => {
    const line = `printf '%s\\0' ${shellJoin(HOSTILE)}`;
    const r = spawnSync("sh", ["-c", line], { encoding: "utf8" });
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(HOSTILE);
  });

  it("never executes embedded commands", () => {
    spawnSync("bash", ["-c", `echo ${shellQuote("$(touch /tmp/fabrik-quote-pwned)")}`]);
    expect(spawnSync("test", ["-e", "/tmp/fabrik-quote-pwned"]).status).not.toBe(0);
  });

  it("refuses NUL bytes", () => {
    expect(() => shellQuote("a\0b")).toThrow(/NUL/);
  });

  it("quotes the empty string", () => {
    expect(shellQuote("")).toBe("''");
  });
});
