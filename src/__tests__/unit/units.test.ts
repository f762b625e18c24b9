// core/units.ts: isoTime must write exactly what Date#toISOString writes (runs list --json relies on it).
import { describe, it, expect } from "vitest";
import { isoTime } from "../../core/units.js";

describe("isoTime", () => {
  it("equals Date#toISOString at day boundaries, around them, at random, and in any order", () => {
    const DAY = 86_400_000;
    const times = [0, 1, 999, 1000, 59_999, 3_599_999, DAY - 1, DAY, DAY + 1, 951_782_400_000, 1_795_968_239_457, 253_402_300_799_999];
    for (let d = 0; d < 40; d++) for (const off of [-1, 0, 1, 12_345, DAY / 2]) times.push(1_700_000_000_000 + d * DAY + off);
    let seed = 42;
    for (let i = 0; i < 5000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      times.push(Math.floor((seed / 2 ** 31) * 2_000_000_000_000));
    }
    for (const t of [...times, ...[...times].reverse()]) expect(isoTime(t)).toBe(new Date(t).toISOString());
  });

  it("goes through Date for times that are not whole ms or outside 1970–9999 (and throws for invalid ones as Date does)", () => {
    for (const t of [-1, -86_400_001, 1.5, 1_700_000_000_000.25, 253_402_300_800_000, 8.64e15]) expect(isoTime(t)).toBe(new Date(t).toISOString());
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
    expect(() => isoTime(8.64e15 + 1)).toThrow(RangeError);
  });
});
