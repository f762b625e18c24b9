import { describe, it, expect } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveColorLevel } from "../../fabrik/io.js";
import { resolveConfig } from "../../fabrik/config.js";
import { resolvePaths } from "../../fabrik/paths.js";
import { ConfigError, UsageError } from "../../core/errors.js";
import { ExitCode, exitCodeOf, renderExitCodeHelp } from "../../fabrik/exit-codes.js";
import { sanitizeLine, sanitizeText } from "../../core/sanitize.js";
import { vmNameProblem, assertVmName } from "../../vm/names.js";
import { VERSION } from "../../fabrik/version.js";
import { ENGINE_RUN_STATUSES, ENGINE_TERMINAL_STATUSES, ENGINE_PARKED_STATUSES, ACTIVE_RUN_STATUSES, FINAL_RUN_STATUSES, expandStatusFilter, isRunStatus } from "../../core/status.js";

describe("colour resolution", () => {
  const rows: [string, boolean, Record<string, string>, number][] = [
    ["auto", true, {}, 1],
    ["auto", false, {}, 0],
    ["auto", true, { NO_COLOR: "1" }, 0],
    ["auto", false, { FORCE_COLOR: "1" }, 1],
    ["auto", false, { FORCE_COLOR: "3" }, 3],
    ["auto", true, { FORCE_COLOR: "0" }, 0],
    ["always", false, {}, 1],
    ["always", false, { NO_COLOR: "1" }, 1],
    ["never", true, { FORCE_COLOR: "1" }, 0],
  ];
  for (const [mode, tty, env, level] of rows) {
    it(`${mode} tty=${tty} ${JSON.stringify(env)} → ${level}`, () => {
      expect(resolveColorLevel(mode as "auto", tty, env)).toBe(level);
    });
  }
});

describe("config precedence flag > env > file > default", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-cfg-"));
  const file = path.join(dir, "config.json");
  it("defaults when there is no file", async () => {
    const c = await resolveConfig(path.join(dir, "missing.json"), {});
    expect(c.driver).toBe("lima");
    expect(c.engineVersion).toBe("0.32.0");
    expect(c.engineHeartbeatStaleMs).toBe(30_000);
  });
  it("file < env < flag", async () => {
    fs.writeFileSync(file, JSON.stringify({ driver: "local", engine: { version: "0.5.0" }, probe: { timeout_ms: 1234 } }));
    expect((await resolveConfig(file, {})).engineVersion).toBe("0.5.0");
    expect((await resolveConfig(file, {})).driver).toBe("local");
    expect((await resolveConfig(file, {})).probeTimeoutMs).toBe(1234);
    expect((await resolveConfig(file, { FABRIK_ENGINE: "0.32.0", FABRIK_PROBE_TIMEOUT_MS: "99" })).engineVersion).toBe("0.32.0");
    expect((await resolveConfig(file, { FABRIK_PROBE_TIMEOUT_MS: "99" })).probeTimeoutMs).toBe(99);
    expect(await resolveConfig(file, { FABRIK_ENGINE: "0.32.0", FABRIK_DRIVER: "lima" }, { engine: "0.5.0", driver: "local" })).toMatchObject({ engineVersion: "0.5.0", driver: "local" });
  });
  it("a corrupt or invalid file is a ConfigError naming the file", async () => {
    fs.writeFileSync(file, "{ not json");
    await expect(resolveConfig(file, {})).rejects.toThrow(ConfigError);
    await expect(resolveConfig(file, {})).rejects.toThrow(file);
    fs.writeFileSync(file, JSON.stringify({ driver: "vmware" }));
    await expect(resolveConfig(file, {})).rejects.toThrow(/driver/);
    fs.writeFileSync(file, JSON.stringify({ unknown_key: 1 }));
    await expect(resolveConfig(file, {})).rejects.toThrow(ConfigError);
  });
  it("bad env values are ConfigErrors", async () => {
    await expect(resolveConfig(path.join(dir, "none.json"), { FABRIK_PROBE_TIMEOUT_MS: "soon" })).rejects.toThrow(ConfigError);
    await expect(resolveConfig(path.join(dir, "none.json"), { FABRIK_DRIVER: "vmware" })).rejects.toThrow(ConfigError);
  });
});

describe("paths", () => {
  it("FABRIK_HOME wins, else XDG_DATA_HOME, else ~/.local/share", () => {
    expect(resolvePaths({ FABRIK_HOME: "/x/fh" }, "/home/u").registry).toBe("/x/fh/registry.db");
    expect(resolvePaths({ XDG_DATA_HOME: "/xdg" }, "/home/u").home).toBe("/xdg/fabrik");
    expect(resolvePaths({}, "/home/u").home).toBe("/home/u/.local/share/fabrik");
    expect(resolvePaths({}, "/home/u").config).toBe("/home/u/.config/fabrik/config.json");
    expect(resolvePaths({ FABRIK_CONFIG: "/etc/f.json" }, "/home/u").config).toBe("/etc/f.json");
  });
});

describe("exit codes", () => {
  it("the help topic is generated from the constants", () => {
    const text = renderExitCodeHelp();
    for (const [name, code] of Object.entries(ExitCode)) {
      expect(text).toMatch(new RegExp(`\\b${code}\\s+${name}\\b`));
    }
  });
  it("UsageError exits 2", () => {
    expect(exitCodeOf(new UsageError("x"))).toBe(2);
  });
});

describe("sanitising VM text", () => {
  it("removes ANSI/OSC escapes and makes control characters visible", () => {
    const evil = "step-\u001b[31mred\u001b[0m\u001b]0;pwned title\u0007\u0008\r\u009b2J";
    const clean = sanitizeText(evil);
    expect(clean).not.toMatch(/[\u001b\u0007\u0008\u009b]/);
    expect(clean).toContain("step-red");
    expect(clean).toContain("\\x0d");
    expect(sanitizeLine("a\nb")).toBe("a\\nb");
    expect(sanitizeLine("x".repeat(1000), 10)).toHaveLength(10);
  });
});

describe("VM names (Lima's rule)", () => {
  it.each([["fabrik-1"], ["ralph.dev"], ["a_b"], ["A1"]])("accepts %s", (n) => expect(vmNameProblem(n)).toBeUndefined());
  it.each([[""], ["-x"], ["a..b"], ["a b"], ["x.yaml"], ["a/b"], ["x".repeat(77)], ["$(id)"]])("rejects %s", (n) => {
    expect(vmNameProblem(n)).toBeDefined();
    expect(() => assertVmName(n)).toThrow(UsageError);
  });
});

describe("status vocabularies", () => {
  it("every engine run status is either the engine's final record, parked, or running", () => {
    for (const s of ENGINE_RUN_STATUSES) {
      const kinds = [(ENGINE_TERMINAL_STATUSES as readonly string[]).includes(s), (ENGINE_PARKED_STATUSES as readonly string[]).includes(s), s === "running"];
      expect(kinds.filter(Boolean), s).toHaveLength(1);
    }
  });
  it("active and final never overlap", () => {
    for (const s of FINAL_RUN_STATUSES) expect(ACTIVE_RUN_STATUSES as readonly string[]).not.toContain(s);
  });
  it("--status accepts statuses and the group names, and names an unknown word", () => {
    expect(expandStatusFilter(["orphaned,stale", "waiting"]).statuses).toEqual(["orphaned", "stale", "waiting-approval", "waiting-event", "waiting-timer", "waiting-quota", "paused"]);
    expect(expandStatusFilter(["done", "bogus"]).unknown).toBe("bogus");
    expect(isRunStatus("unreachable")).toBe(true);
  });
});

describe("version", () => {
  it("matches package.json", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(VERSION).toBe(pkg.version);
  });
});

describe("config sources and config set", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-cfg-"));
  const file = path.join(dir, "c", "config.json");
  it("names env, file and default for each setting", async () => {
    const { writeSetting, settingViews } = await import("../../fabrik/config.js");
    await writeSetting(file, "probe.concurrency", "8");
    const c = await resolveConfig(file, { FABRIK_ENGINE: "0.5.0" }, { driver: "local" });
    const by = Object.fromEntries(settingViews(c).map((s) => [s.key, s]));
    expect(by["engine.version"]).toMatchObject({ value: "0.5.0", source: "env", source_detail: "FABRIK_ENGINE" });
    expect(by["probe.concurrency"]).toMatchObject({ value: 8, source: "file", source_detail: file });
    expect(by["probe.timeout_ms"]).toMatchObject({ value: 5000, source: "default" });
    expect(by["driver"]).toMatchObject({ value: "local", source: "flag" });
  });
  it("set validates with the same schema, writes 0600 atomically, and unset removes the key", async () => {
    const { writeSetting } = await import("../../fabrik/config.js");
    await expect(writeSetting(file, "probe.concurrency", "0")).rejects.toThrow(UsageError);
    await expect(writeSetting(file, "nope.key", "1")).rejects.toThrow(UsageError);
    expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual({ probe: { concurrency: 8 } });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    await writeSetting(file, "probe.concurrency", undefined);
    expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual({});
    expect(fs.readdirSync(path.dirname(file))).toEqual(["config.json"]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
