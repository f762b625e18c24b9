/**
 * Pid identity (src/core/pid-identity.ts): a living pid is the run's process only when its start time and the
 * boot id match what the launcher recorded; an old bare-number pid file is judged by the command line. And the
 * guide's Issue 2 truncation (`--fix`, `run compact`): every value written fits the limit, marker included.
 */
import { describe, it, expect } from "vitest";
import { judgePidIdentity, isNotTheRunsProcess, looksLikeRunProcess, maySignal, parseProcStat } from "../../core/pid-identity.js";
import { truncatedValue } from "../../vm/guest/lib/text.js";

const BOOT = "04506bde-1d46-4068-9327-fb865b1ec9a2";
const cur = (start_ticks: number | null, cmdline: string | null, boot_id: string | null = BOOT, comm: string | null = "bun") => ({ start_ticks, boot_id, cmdline, comm });

describe("judgePidIdentity", () => {
  const rows: [string, Parameters<typeof judgePidIdentity>[0], ReturnType<typeof cur>, string][] = [
    ["recorded start and boot match", { start_ticks: 100, boot_id: BOOT }, cur(100, "bun /e/node_modules/.bin/smithers up wf.tsx"), "verified"],
    ["start time differs (pid reused after a crash)", { start_ticks: 100, boot_id: BOOT }, cur(555, "sleep 600", BOOT, "sleep"), "reused"],
    ["start time differs even for another bun", { start_ticks: 100, boot_id: BOOT }, cur(555, "bun other.ts"), "reused"],
    ["boot id differs (VM rebooted)", { start_ticks: 100, boot_id: "ffffffff-0000" }, cur(100, "bun x"), "rebooted"],
    ["nothing recorded, bun engine", null, cur(5, "bun /home/u/.fabrik/engines/0.32.0/node_modules/.bin/smithers up /w/seq.tsx"), "plausible"],
    ["nothing recorded, full bun path", null, cur(5, "/home/u/.fabrik/engines/0.5.0/.runtime/node_modules/.bin/bun --preload x smithers run"), "plausible"],
    ["nothing recorded, the launcher", null, cur(5, "bash /home/u/work/vm/.runs/3-seq/run.sh", BOOT, "bash"), "plausible"],
    ["nothing recorded, a resume launcher", null, cur(5, "bash /home/u/work/vm/.runs/3-seq/resume-12.sh", BOOT, "bash"), "plausible"],
    ["nothing recorded, sleep", null, cur(5, "sleep 600", BOOT, "sleep"), "foreign"],
    ["nothing recorded, python mentioning bun in an argument", null, cur(5, "python3 -c print('bunny')", BOOT, "python3"), "foreign"],
    ["nothing recorded, a zombie bun (empty cmdline)", null, cur(5, "", BOOT, "bun"), "plausible"],
    ["nothing recorded, a zombie bash", null, cur(5, "", BOOT, "bash"), "foreign"],
    ["/proc unreadable", { start_ticks: 100, boot_id: BOOT }, cur(null, null, BOOT, null), "unknown"],
    ["/proc unreadable, nothing recorded", null, cur(null, null, BOOT, null), "unknown"],
  ];
  for (const [name, recorded, current, verdict] of rows) {
    it(`${name} → ${verdict}`, () => expect(judgePidIdentity(recorded, current).verdict).toBe(verdict));
  }
  it("only proven processes may be signalled; reused, rebooted and foreign ones are not the run's", () => {
    expect(["verified", "plausible"].every((v) => maySignal(v as never))).toBe(true);
    for (const v of ["reused", "rebooted", "foreign", "unknown", null] as const) expect(maySignal(v)).toBe(false);
    for (const v of ["reused", "rebooted", "foreign"] as const) expect(isNotTheRunsProcess(v)).toBe(true);
    for (const v of ["verified", "plausible", "unknown", null] as const) expect(isNotTheRunsProcess(v)).toBe(false);
  });
  it("recognises the run's command lines only", () => {
    expect(looksLikeRunProcess("smithers up x", null)).toBe(true);
    expect(looksLikeRunProcess("vim run.sh.bak", null)).toBe(false);
  });
});

describe("parseProcStat", () => {
  it("reads comm, state and field 22 even when comm holds spaces and parentheses", () => {
    const rest = Array.from({ length: 50 }, (_, i) => String(i + 3)); // fields 3.. (3 = state)
    rest[0] = "S";
    rest[19] = "674974"; // field 22
    expect(parseProcStat(`1234 (a) b) c) ${rest.join(" ")}`)).toEqual({ comm: "a) b) c", state: "S", start_ticks: 674974 });
    expect(parseProcStat("garbage")).toEqual({ comm: null, state: null, start_ticks: null });
  });
});

describe("truncatedValue (--fix, run compact)", () => {
  const big = Buffer.from("é".repeat(120_000) + "END"); // 240 003 bytes, multi-byte characters
  for (const limit of [1024, 102_400]) {
    it(`response_text fits ${limit} bytes with its marker, keeps the tail`, () => {
      const v = truncatedValue("response_text", big.subarray(big.length - limit), big.length, limit);
      expect(Buffer.byteLength(v)).toBeLessThanOrEqual(limit);
      expect(Buffer.byteLength(v)).toBeGreaterThan(limit - 80);
      expect(v).toMatch(/^\[fabrik --fix: truncated \d+ bytes\]\n/);
      expect(v.endsWith("END")).toBe(true);
      const cut = Number(/truncated (\d+) bytes/.exec(v)![1]);
      expect(cut + Buffer.byteLength(v.slice(v.indexOf("\n") + 1))).toBe(big.length);
    });
    it(`error_json fits ${limit} bytes and stays valid JSON even when escaping grows the text`, () => {
      const quotes = Buffer.from('"\\\n'.repeat(100_000));
      const v = truncatedValue("error_json", quotes.subarray(quotes.length - limit), quotes.length, limit);
      expect(Buffer.byteLength(v)).toBeLessThanOrEqual(limit);
      expect(JSON.parse(v)).toMatchObject({ name: "FabrikTruncated" });
    });
  }
});
