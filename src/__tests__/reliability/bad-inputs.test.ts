/**
 * Reliability: a corpus of bad input from a clumsy user or a damaged machine (docs/reliability.md, "Bad input").
 * The built CLI, no VM: every case is refused before anything runs.
 *
 * Each case asserts the exit code (`fabrik help exit-codes`), the kind of message (ONE line on stderr, no stack,
 * the words that say what to do), that nothing changed (the FABRIK_HOME tree, the config file and the registry's
 * rows hashed before and after) and that nothing ran (no process, no file created by a `$(…)` in a value).
 *
 * Covers defect 9 (an unusable FABRIK_HOME: exit 3, one line, no spin) and defect 10 (one strict parser each for
 * run ids, counts, seconds, durations, VM names, engine versions, `--input`), table-driven through the CLI.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { disposeTestEnv, fabrik, makeTestEnv, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { run } from "../helpers/proc.js";
import { registryDump, treeHashes, expectClean } from "../helpers/reliability.js";

interface Case {
  /** What the case is (the test's name). */
  what: string;
  args: string[];
  code: number;
  /** The kind of message: matched against the one stderr line. */
  message: RegExp;
  /** Environment changes for this case. */
  env?: Record<string, string> | undefined;
}

const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
/** Compared by rows, not bytes (the registry), or a cache fabrik may fill on any call (`cache/`: limactl's version check). */
const REGISTRY_FILES = /^(registry\.db(-wal|-shm)?|cache(\/.*)?)$/;
const NOT_A_NUMBER = /must be a whole number ≥ \d in decimal digits, got/;

describe("reliability: bad input through the CLI", () => {
  let t: TestEnv;
  /** A file a `$(…)` or backtick in a value would create if anything ran it. */
  let marker = "";
  const pwn = () => `$(touch ${marker})`;

  beforeAll(async () => {
    t = makeTestEnv("bad-input-");
    marker = path.join(t.tmp, "PWNED");
    // A registry with one VM row, so lookups reach the parsers and the registry has rows to keep.
    const r = await fabrik(t, ["vm", "create", "v1", "--driver", "local", "--no-engine"]);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => disposeTestEnv(t));

  /** Run one case and assert code, one clean line matching `message`, nothing changed, nothing ran. */
  async function refuse(c: Case): Promise<void> {
    // The registry is compared by its rows (a read may checkpoint its WAL: same rows, other bytes); every other file by hash.
    const homeBefore = treeHashes(t.fabrikHome, REGISTRY_FILES);
    const rowsBefore = fs.existsSync(path.join(t.fabrikHome, "registry.db")) ? await registryDump(t.fabrikHome) : null;
    const started = Date.now();
    const r = await fabrik(t, c.args, { timeoutMs: 30_000, env: { ...t.env, ...c.env } });
    const ms = Date.now() - started;
    expect(r.code, `${c.what}: exit code (stderr: ${r.stderr})`).toBe(c.code);
    const lines = r.stderr.trim().split("\n");
    expect(lines, `${c.what}: exactly one line on stderr`).toHaveLength(1);
    expect(lines[0], c.what).toMatch(c.message);
    expect(r.stderr, `${c.what}: no stack trace`).not.toMatch(/\n\s+at |internal error|this is a bug/);
    expectClean(r.stderr + r.stdout, c.what);
    expect(r.stdout, `${c.what}: nothing on stdout`).toBe("");
    expect(fs.existsSync(marker), `${c.what}: nothing ran`).toBe(false);
    expect(treeHashes(t.fabrikHome, REGISTRY_FILES), `${c.what}: FABRIK_HOME unchanged`).toEqual(homeBefore);
    if (rowsBefore) expect(await registryDump(t.fabrikHome), `${c.what}: registry rows unchanged`).toEqual(rowsBefore);
    expect(ms, `${c.what}: answered quickly`).toBeLessThan(20_000);
  }

  // Defect 10: one strict parser per kind of value; a bad one is a usage error (2) before anything runs.
  const ids: Case[] = [
    { what: "--id 1e99", args: ["runs", "show", "--id", "1e99"], code: 2, message: NOT_A_NUMBER },
    { what: "--id 0x10 (would mean run 16)", args: ["runs", "show", "--id", "0x10"], code: 2, message: NOT_A_NUMBER },
    { what: "--id 2^53+1 (would be rounded)", args: ["runs", "show", "--id", "9007199254740993"], code: 2, message: NOT_A_NUMBER },
    { what: "--id 1.0", args: ["runs", "show", "--id", "1.0"], code: 2, message: NOT_A_NUMBER },
    { what: "--id ' 7'", args: ["runs", "show", "--id", " 7"], code: 2, message: NOT_A_NUMBER },
    { what: "--id ''", args: ["runs", "show", "--id", ""], code: 2, message: NOT_A_NUMBER },
    { what: "--id 0", args: ["runs", "show", "--id", "0"], code: 2, message: NOT_A_NUMBER },
    { what: "run attach --id -1", args: ["run", "attach", "--id", "-1"], code: 2, message: /--id|must be a whole number/ },
    { what: "run resume --id $(…)", args: ["run", "resume", "--id", "$(id)", "--dry-run"], code: 2, message: NOT_A_NUMBER },
    { what: "runs watch --run-id abc", args: ["runs", "watch", "--vm", "v1", "--run-id", "abc"], code: 2, message: NOT_A_NUMBER },
    { what: "an unknown run id", args: ["runs", "show", "--id", "424242"], code: 4, message: /run 424242 does not exist/ },
  ];
  const numbers: Case[] = [
    { what: "--limit 0", args: ["runs", "list", "--limit", "0", "--no-live"], code: 2, message: /--limit must be a whole number ≥ 1/ },
    { what: "--limit 1e3", args: ["runs", "list", "--limit", "1e3", "--no-live"], code: 2, message: /--limit must be a whole number/ },
    { what: "--tail -5", args: ["run", "attach", "--id", "1", "--tail", "-5"], code: 2, message: /--tail must be a whole number/ },
    { what: "--interval 0.1", args: ["runs", "watch", "--vm", "v1", "--interval", "0.1"], code: 2, message: /--interval must be .*0\.5/ },
    { what: "--interval abc", args: ["runs", "watch", "--vm", "v1", "--interval", "abc"], code: 2, message: /--interval must be a number of seconds/ },
    { what: "--timeout -5", args: ["runs", "watch", "--vm", "v1", "--timeout", "-5"], code: 2, message: /--timeout must be a number of seconds/ },
    { what: "--since 2x", args: ["runs", "list", "--since", "2x", "--no-live"], code: 2, message: /--since/ },
  ];
  const names: Case[] = [
    { what: "a VM name with a space", args: ["vm", "create", "a b", "--driver", "local", "--no-engine"], code: 2, message: /VM name|invalid/i },
    { what: "a VM name with $(…)", args: ["vm", "create", "$(touch PWNED)", "--driver", "local", "--no-engine"], code: 2, message: /VM name|invalid/i },
    { what: "a VM name ../x", args: ["vm", "create", "../x", "--driver", "local", "--no-engine"], code: 2, message: /VM name|invalid/i },
    { what: "a VM name with ESC", args: ["vm", "stop", "a\u001b]0;x\u0007"], code: 2, message: /VM name|invalid/i },
    { what: "a 300-character VM name", args: ["vm", "create", "a".repeat(300), "--driver", "local", "--no-engine"], code: 2, message: /VM name|too long|invalid/i },
    { what: "--vm with a ;", args: ["runs", "list", "--vm", "x;reboot", "--no-live"], code: 2, message: /VM name|invalid/i },
    { what: "an unknown VM", args: ["vm", "shell", "nosuchvm", "--", "true"], code: 4, message: /nosuchvm/ },
  ];
  const inputs = (): Case[] => [
    { what: "--engine 9.9.9", args: ["run", "--vm", "v1", "--workflow", SEQ, "--engine", "9.9.9"], code: 2, message: /--engine "9\.9\.9" is not an engine version fabrik supports/ },
    { what: "--input [1,2] (the engine wants an object)", args: ["run", "--vm", "v1", "--workflow", SEQ, "--input", "[1,2]"], code: 2, message: /--input must be a JSON object, got an array/ },
    { what: "--input null", args: ["run", "--vm", "v1", "--workflow", SEQ, "--input", "null"], code: 2, message: /--input must be a JSON object, got null/ },
    { what: "--input \"text\"", args: ["run", "--vm", "v1", "--workflow", SEQ, "--input", '"text"'], code: 2, message: /--input must be a JSON object/ },
    { what: "--input not JSON", args: ["run", "--vm", "v1", "--workflow", SEQ, "--input", "{tasks: 6"], code: 2, message: /--input is not valid JSON/ },
    { what: "--input @missing", args: ["run", "--vm", "v1", "--workflow", SEQ, "--input", "@/nonexistent/input.json"], code: 2, message: /cannot read input file/ },
    { what: "--input with $(…) in a value is data, the workflow is missing", args: ["run", "--vm", "v1", "--workflow", "/nonexistent/wf.tsx", "--input", JSON.stringify({ x: pwn() })], code: 4, message: /wf\.tsx/ },
    { what: "a flag that does not exist", args: ["runs", "list", "--frobnicate"], code: 2, message: /frobnicate/ },
    { what: "a command that does not exist", args: ["runz"], code: 2, message: /runz|Unknown|Did you mean/i },
    { what: "config set a number to text", args: ["config", "set", "probe.timeout_ms", "abc"], code: 2, message: /probe\.timeout_ms/ },
    { what: "config set an unknown key", args: ["config", "set", "no.such.key", "1"], code: 2, message: /no\.such\.key/ },
  ];

  for (const [group, cases] of [
    ["run ids", ids],
    ["numbers and durations", numbers],
    ["VM names", names],
  ] as const) {
    it(`defect 10 — ${group}: each refused with its exit code and one line, nothing changed`, async () => {
      for (const c of cases) await refuse(c);
    });
  }
  it("defect 10 — engine versions, --input, flags, config values: refused before anything runs", async () => {
    for (const c of inputs()) await refuse(c);
  });

  // Defect 9 and fabrik's own files: exit 3, one line, nothing modified, no hang.
  it("defect 9 — an unusable FABRIK_HOME: exit 3 with one line (no internal error, no spin)", async () => {
    const file = path.join(t.tmp, "a-file");
    fs.writeFileSync(file, "x");
    for (const [home, why] of [
      ["/dev/null/x", /\/dev\/null\/x/],
      ["/proc/1/fabrik", /\/proc\/1\/fabrik/],
      [path.join(file, "sub"), /a-file/],
      [file, /a-file/],
    ] as const) {
      await refuse({ what: `FABRIK_HOME=${home}`, args: ["runs", "list", "--no-live"], code: 3, message: why, env: { FABRIK_HOME: home } });
      await refuse({ what: `FABRIK_HOME=${home} (a write)`, args: ["vm", "create", "v9", "--driver", "local", "--no-engine"], code: 3, message: why, env: { FABRIK_HOME: home } });
    }
    expect(fs.readFileSync(file, "utf8")).toBe("x");
  });

  it("a corrupt, foreign or newer registry: exit 3, one line, the file untouched", async () => {
    const variants: [string, (p: string) => void | Promise<unknown>, RegExp][] = [
      ["garbage bytes", (p) => fs.writeFileSync(p, Buffer.alloc(8192, 0xa5)), /registry/i],
      ["a truncated registry", (p) => fs.writeFileSync(p, fs.readFileSync(path.join(t.fabrikHome, "registry.db")).subarray(0, 1500)), /registry/i],
      ["a folder", (p) => fs.mkdirSync(p), /registry/i],
      ["a FIFO", (p) => run("mkfifo", [p]), /registry/i],
      ["a newer schema", (p) => {
        fs.copyFileSync(path.join(t.fabrikHome, "registry.db"), p);
        // user_version is the big-endian int at offset 60 of the header.
        const fd = fs.openSync(p, "r+");
        const b = Buffer.alloc(4);
        b.writeUInt32BE(999);
        fs.writeSync(fd, b, 0, 4, 60);
        fs.closeSync(fd);
      }, /newer/i],
    ];
    // The live registry's WAL is folded in first, so a copy of the main file holds every row.
    await fabrik(t, ["runs", "list", "--no-live"]);
    for (const [what, make, message] of variants) {
      const home = fs.mkdtempSync(path.join(t.tmp, "reg-"));
      await make(path.join(home, "registry.db"));
      const before = treeHashes(home);
      const r = await fabrik(t, ["runs", "list", "--no-live"], { env: { ...t.env, FABRIK_HOME: home }, timeoutMs: 30_000 });
      expect(r.code, `${what}: ${r.stderr}`).toBe(3);
      expect(r.stderr.trim().split("\n"), what).toHaveLength(1);
      expect(r.stderr, what).toMatch(message);
      expect(treeHashes(home), `${what}: untouched`).toEqual(before);
    }
  });

  it("a corrupt or wrong config file: exit 3, one line naming the file, the file untouched; a FIFO does not hang", async () => {
    const variants: [string, (p: string) => void | Promise<unknown>, RegExp][] = [
      ["not JSON", (p) => fs.writeFileSync(p, "{ driver: lima"), /is not valid JSON/],
      ["a wrong type", (p) => fs.writeFileSync(p, JSON.stringify({ probe: { timeout_ms: "soon" } })), /is invalid at probe\.timeout_ms/],
      ["an unknown driver", (p) => fs.writeFileSync(p, JSON.stringify({ driver: "vmware" })), /is invalid at driver/],
      ["a folder", (p) => fs.mkdirSync(p), /config file/],
      ["a FIFO", (p) => run("mkfifo", [p]), /config file/],
    ];
    for (const [what, make, message] of variants) {
      const dir = fs.mkdtempSync(path.join(t.tmp, "cfg-"));
      const file = path.join(dir, "config.json");
      await make(file);
      const before = treeHashes(dir);
      await refuse({ what: `config: ${what}`, args: ["runs", "list", "--no-live"], code: 3, message, env: { FABRIK_CONFIG: file } });
      expect(treeHashes(dir), `${what}: untouched`).toEqual(before);
    }
  });

  it("nothing a bad value carried ran", () => {
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(path.join(REPO_ROOT, "PWNED"))).toBe(false);
  });
});
