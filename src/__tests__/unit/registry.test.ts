// The registry in-process (one connection at a time). Many processes at once: integration/registry-processes.test.ts.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { RUN_LIST_COLUMNS, Registry, SCHEMA_VERSION } from "../../fabrik/registry.js";
import { ConfigError } from "../../core/errors.js";

const require = createRequire(import.meta.url);

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-reg-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const newRun = (vm = "vm1", smithers = "fabrik-x") => ({
  vm,
  driver: "local" as const,
  control_dir: `/h/work/${vm}/.runs/x`,
  workflow_path: "/h/wf.tsx",
  smithers_run_id: smithers,
  smithers_db_path: `/h/work/${vm}/.runs/x/.smithers/run.db`,
  status: "running" as const,
});

describe("Registry", () => {
  it("creates the file with mode 0600, in WAL mode, at the current schema version", () => {
    const file = path.join(dir, "registry.db");
    const reg = Registry.open(file);
    reg.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const Database = require("better-sqlite3");
    const db = new Database(file, { readonly: true });
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
  });

  it("inserts runs with ids derived in the same transaction and lists with filters", () => {
    const reg = Registry.open(path.join(dir, "r.db"));
    const a = reg.insertRunWith((id) => ({ ...newRun("vm1", `fabrik-${id}`), control_dir: `/c/${id}` }), 1000);
    const b = reg.insertRun({ ...newRun("vm2", "other"), status: "done" }, 2000);
    expect(a.id).toBe(1);
    expect(a.smithers_run_id).toBe("fabrik-1");
    expect(a.control_dir).toBe("/c/1");
    expect(b.id).toBe(2);
    expect(reg.listRuns().map((r) => r.id)).toEqual([2, 1]);
    expect(reg.listRuns({ vm: "vm1" }).map((r) => r.id)).toEqual([1]);
    expect(reg.listRuns({ statuses: ["done"] }).map((r) => r.id)).toEqual([2]);
    expect(reg.listRuns({ sinceMs: 1500 }).map((r) => r.id)).toEqual([2]);
    expect(reg.listRuns({ limit: 1 }).map((r) => r.id)).toEqual([2]);
    const u = reg.updateRun(1, { status: "failed", failure_reason: "x", exit_code: 1 }, 3000);
    expect(u.status).toBe("failed");
    expect(u.updated_at_ms).toBe(3000);
    reg.recordEvent(1, "resumed", { previous_failure_reason: "x" }, 4000);
    expect(reg.runEvents(1)[0]!.kind).toBe("resumed");
    expect(reg.findRun("vm2", b.smithers_db_path, "other")?.id).toBe(2);
    expect(() => reg.insertRun(newRun("vm2", "other"))).toThrow(/UNIQUE/);
    reg.close();
  });

  it("iterates listed columns as records equal to the whole rows' (newest first, ties by id, filters as listRuns)", () => {
    const reg = Registry.open(path.join(dir, "r.db"));
    const full = { ...newRun("vm1", "s-1"), label: "L", engine_version: "0.5.0", exit_code: 3, failure_reason: "why", started_at_ms: 11, finished_at_ms: 12 };
    reg.insertRun({ ...full, last_check_at_ms: 13, last_check_json: '{"x":1}', launcher_pid: 14, engine_pid: 15, resume_count: 2 }, 1000);
    reg.insertRun(newRun("vm2", "s-2"), 1000);
    reg.insertRun({ ...newRun("vm1", "s-3"), status: "done" }, 2000);
    const listed = [...reg.iterateRuns()];
    expect(listed.map((r) => r.id)).toEqual([3, 2, 1]);
    for (const r of listed) {
      const whole = reg.getRun(r.id)!;
      expect(r).toEqual(Object.fromEntries(RUN_LIST_COLUMNS.map((c) => [c, whole[c]])));
    }
    expect([...reg.iterateRuns({ vm: "vm1", limit: 1 })].map((r) => r.id)).toEqual([3]);
    expect([...reg.iterateRuns({ statuses: ["running"] })].map((r) => r.id)).toEqual([2, 1]);
    reg.close();
  });

  it("insertRunIfAbsent: the look-up and the insert in one transaction; a known run is returned, not inserted again", () => {
    const reg = Registry.open(path.join(dir, "registry.db"));
    const a = reg.insertRunIfAbsent(newRun("vm1", "fabrik-a"), 1000);
    expect(a.inserted).toBe(true);
    const again = reg.insertRunIfAbsent({ ...newRun("vm1", "fabrik-a"), control_dir: "/elsewhere" }, 2000);
    expect(again).toEqual({ row: a.row, inserted: false });
    expect(reg.insertRunIfAbsent(newRun("vm2", "fabrik-a"), 3000).inserted).toBe(true);
    expect(reg.listRuns({}).length).toBe(2);
    reg.close();
  });

  it("never reuses an id after the newest row is deleted", () => {
    const reg = Registry.open(path.join(dir, "r.db"));
    reg.insertRun(newRun("vm1", "a"));
    const b = reg.insertRun(newRun("vm1", "b"));
    expect(b.id).toBe(2);
    reg.close();
  });

  it("refuses a registry written by a newer fabrik, naming the file, and leaves it untouched", () => {
    const file = path.join(dir, "r.db");
    Registry.open(file).close();
    const Database = require("better-sqlite3");
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    db.close();
    const before = fs.readFileSync(file);
    expect(() => Registry.open(file)).toThrow(ConfigError);
    expect(() => Registry.open(file)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*newer fabrik`));
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it("reports a corrupt registry with its path and does not delete it", () => {
    const file = path.join(dir, "r.db");
    fs.writeFileSync(file, "this is not a sqlite database, just garbage ".repeat(200), { mode: 0o600 });
    expect(() => Registry.open(file)).toThrow(ConfigError);
    try {
      Registry.open(file);
    } catch (err) {
      expect((err as Error).message).toContain(file);
    }
    expect(fs.existsSync(file)).toBe(true);
  });
});
