// shellQuote as text. Round trips through bash and dash: integration/shell-quote.test.ts.
import { describe, it, expect } from "vitest";
import { shellJoin, shellQuote } from "../../vm/shell-quote.js";
import { HOSTILE } from "../helpers/hostile-strings.js";

describe("shellQuote", () => {
  it("refuses NUL bytes", () => {
    expect(() => shellQuote("a\0b")).toThrow(/NUL/);
  });

  it("quotes the empty string", () => {
    expect(shellQuote("")).toBe("''");
  });

  it("joins one quoted word per argument", () => {
    expect(shellJoin(HOSTILE)).toBe(HOSTILE.map((h) => shellQuote(h)).join(" "));
  });
});
