// `runs list --no-live --json` prints JSON that SQLite writes (runs-service.ts CACHED_VIEW_JSON_SQL). It must be
// byte-identical to what the JavaScript view gives (JSON.stringify(cachedView(row))), for every kind of row.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Registry, type NewRun } from "../../fabrik/registry.js";
import { CACHED_VIEW_JSON_SQL, cachedView, cachedViewsJson } from "../../fabrik/runs-service.js";
import { HOSTILE } from "../helpers/hostile-strings.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-cvj-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const base = (i: number): NewRun => ({
  vm: `vm${i % 3}`,
  driver: "lima",
  control_dir: `/home/u.guest/work/vm/.runs/${i}-seq`,
  workflow_path: "/home/u.guest/work/vm/seq.tsx",
  smithers_run_id: `fabrik-${i}`,
  smithers_db_path: `/home/u.guest/work/vm/.runs/${i}-seq/.smithers/run.db`,
  status: "running",
});

/** What a live check stores (JSON.stringify of a CheckSummary), and everything a registry may hold instead. */
const LAST_CHECKS: (string | null)[] = [
  null,
  "",
  JSON.stringify({ engine_run_status: "running", current_task: "15:impl", progress: { total: 184, finished: 142, failed: 1, in_progress: 1, pending: 40, skipped: 0 }, db_size_bytes: 123456789, last_failed: { node_id: "3:impl", iteration: 0, attempt: 2, error: "exit 1" }, effective_status: "running", exit_code: null, tool: "bun" }),
  JSON.stringify({ vm_status: "finished", current_task: null, progress: null, db_size_bytes: 1.5, last_failed: null }),
  JSON.stringify({ engine_run_status: 7, vm_status: "failed", current_task: 3, progress: [1, 2], db_size_bytes: "big", last_failed: "a string" }),
  JSON.stringify({ engine_run_status: null, progress: 5, last_failed: 42 }),
  JSON.stringify({ current_task: "tab\tnewline\nquote\"backslash\\esc\u001b del\u007f ls\u2028 é✓😀", last_failed: { error: "\u0000\u0001\u001f" } }),
  '{ "engine_run_status" : "running" , "progress" : { "total" : 5 , "finished" : 2 } }',
  "not json",
  "{trailing: 'json5'}",
  "[1,2,3]",
  "5",
  "null",
  '"a string"',
];

describe("the cache-only view written by SQLite", () => {
  it("is byte-identical to JSON.stringify(cachedView(row)) for every kind of row", () => {
    const reg = Registry.open(path.join(dir, "r.db"));
    const DAY = 86_400_000;
    const times = [0, 1, 999, 1000, DAY - 1, DAY, 1_795_968_239_457, 1_700_000_000_050, 1_700_000_000_500, 253_402_300_799_999];
    let i = 0;
    for (const lc of LAST_CHECKS) {
      for (const t of times.slice(0, 4)) {
        i++;
        reg.insertRun({ ...base(i), last_check_json: lc, last_check_at_ms: lc === null ? null : t + 5, created_at_ms: t, status: i % 2 ? "failed" : "done" }, t);
      }
    }
    for (const t of times) {
      i++;
      reg.insertRun(
        { ...base(i), created_at_ms: t, started_at_ms: t + 1, finished_at_ms: t + 2, last_check_at_ms: t + 3, last_check_json: LAST_CHECKS[2]!, exit_code: -1, engine_pid: 2 ** 31 - 1, launcher_pid: 1, resume_count: 3 },
        t,
      );
    }
    for (const s of HOSTILE) {
      i++;
      reg.insertRun({ ...base(i), label: s, failure_reason: s, engine_version: s, smithers_run_id: `${s}-${i}`, control_dir: `/c/${s}`, workflow_path: s, smithers_db_path: `/d/${i}/${s}` }, 1000 + i);
    }
    const viaSql = [...reg.iterateRunsAs(CACHED_VIEW_JSON_SQL)];
    const viaJs = [...reg.iterateRuns()].map((r) => JSON.stringify(cachedView(r, 0)));
    expect(viaSql.length).toBe(i);
    // One row is not SQLite's to write: times past the year 9999 (the last of `times`, plus 1-3 ms).
    expect(viaSql.filter((t) => t === null)).toHaveLength(1);
    for (let k = 0; k < viaJs.length; k++) if (viaSql[k] !== null) expect(viaSql[k]).toBe(viaJs[k]);
    expect([...cachedViewsJson(reg, {}, 0)]).toEqual(viaJs);
    // Filters and limits select the same rows.
    const filter = { vm: "vm1", statuses: ["failed" as const], limit: 5 };
    expect([...cachedViewsJson(reg, filter, 0)]).toEqual([...reg.iterateRuns(filter)].map((r) => JSON.stringify(cachedView(r, 0))));
    reg.close();
  });

  it("hands rows it does not cover (values fabrik never writes) to the JavaScript view, from that row on", () => {
    const reg = Registry.open(path.join(dir, "r.db"));
    const at = (k: number) => 1_700_000_000_000 + k * 1000;
    for (let k = 1; k <= 6; k++) reg.insertRun({ ...base(k), created_at_ms: at(k) }, at(k));
    reg.updateRun(4, { exit_code: 1.5, started_at_ms: -5 }); // a REAL and a time before 1970: not SQLite's to write
    reg.insertRun({ ...base(7), created_at_ms: at(7), finished_at_ms: 253_402_300_800_000 }, at(7)); // year 10000
    const sql = [...reg.iterateRunsAs(CACHED_VIEW_JSON_SQL)];
    expect(sql.map((t) => t === null)).toEqual([true, false, false, true, false, false, false]);
    const js = [...reg.iterateRuns()].map((r) => JSON.stringify(cachedView(r, 0)));
    expect(js[0]).toContain('"finished_at":"+010000-01-01T00:00:00.000Z"');
    expect([...cachedViewsJson(reg, {}, 0)]).toEqual(js);
    expect([...cachedViewsJson(reg, { limit: 3 }, 0)]).toEqual(js.slice(0, 3));
    expect([...cachedViewsJson(reg, { vm: "vm1" }, 0)]).toEqual([...reg.iterateRuns({ vm: "vm1" })].map((r) => JSON.stringify(cachedView(r, 0))));
    reg.close();
  });
});
