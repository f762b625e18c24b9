/**
 * `fabrik runs import`: adopt runs that exist in a VM but that fabrik did not start (or that another
 * fabrik registry knows). Discovery is one probe round trip (`discover_roots`); each (DB, Smithers run id)
 * becomes a registry row unless one already exists — importing twice does not duplicate.
 */
import path from "node:path";
import type { Context } from "./context.js";
import { requireVm } from "./context.js";
import { guestHomeOf } from "./vm-service.js";
import { UsageError } from "../core/errors.js";
import { probeVm } from "../vm/probe.js";
import type { DiscoveredRun } from "../vm/probe-schema.js";
import { observeVm, reconcile, type RunView } from "./runs-service.js";
import type { RunRecord } from "./registry.js";
import { assertVmName } from "../vm/names.js";

export interface ImportResult {
  imported: RunView[];
  /** Runs already in the registry: their host ids. */
  already_registered: { id: number; smithers_run_id: string; control_dir: string }[];
  /** Control dirs with no readable run. */
  skipped: { control_dir: string; reason: string }[];
}

/** Where to look: a runs root (default `~/work/<vm>/.runs`), a control dir, or a DB file. */
function discoveryPlan(p: string | undefined, runsRoot: string): { root: string; only: string | undefined; db: string | undefined } {
  if (!p) return { root: runsRoot, only: undefined, db: undefined };
  if (!path.posix.isAbsolute(p)) throw new UsageError(`--path must be absolute in the VM, got ${JSON.stringify(p)}`, `e.g. --path ${runsRoot}/113-seq`);
  const clean = p.replace(/\/+$/, "");
  if (/\.db$/.test(clean)) {
    const parent = path.posix.dirname(clean);
    const controlDir = path.posix.basename(parent) === ".smithers" ? path.posix.dirname(parent) : parent;
    return { root: path.posix.dirname(controlDir), only: controlDir, db: clean };
  }
  return { root: clean, only: undefined, db: undefined };
}

/**
 * Discover and register runs. When `--path` names a control dir, its parent is scanned and only that dir is
 * kept (a runs root is scanned whole).
 */
export async function importRuns(ctx: Context, vm: string, p: string | undefined): Promise<ImportResult> {
  assertVmName(vm);
  const { driver, name: driverName } = await requireVm(ctx, vm);
  const home = await guestHomeOf(ctx, vm);
  const runsRoot = `${home}/work/${vm}/.runs`;
  const plan = discoveryPlan(p, runsRoot);
  const roots = [plan.root];
  if (p && !plan.db) roots.push(path.posix.dirname(plan.root));
  const res = await probeVm(driver, vm, { v: 1, runs: [], discover_roots: roots }, { timeoutMs: ctx.config.probeTimeoutMs * 2, signal: ctx.signal, installCache: await ctx.guestInstalls() });
  let discovered: DiscoveredRun[] = res.discovered;
  if (p && !plan.db) {
    // --path is either a runs root (its children were discovered) or a control dir (found in its parent).
    const asControl = discovered.filter((d) => d.control_dir === plan.root);
    const asRoot = discovered.filter((d) => path.posix.dirname(d.control_dir) === plan.root);
    discovered = asControl.length > 0 ? asControl : asRoot;
  } else if (plan.only) {
    discovered = discovered.filter((d) => d.control_dir === plan.only);
  }
  const reg = ctx.registry();
  if (!reg.getVm(vm)) reg.upsertVm({ name: vm, driver: driverName, guest_home: home, created_at_ms: ctx.now(), template: null });
  const result: ImportResult = { imported: [], already_registered: [], skipped: [] };
  const fresh: RunRecord[] = [];
  for (const d of discovered) {
    const db = plan.db ?? d.meta?.db_path ?? d.db_paths[0];
    if (!db || d.run_ids.length === 0) {
      result.skipped.push({ control_dir: d.control_dir, reason: d.db_paths.length === 0 ? "no Smithers DB found" : "no run in its DB" });
      continue;
    }
    const ids = d.meta?.smithers_run_id && d.run_ids.includes(d.meta.smithers_run_id) ? [d.meta.smithers_run_id] : d.run_ids;
    for (const runId of ids) {
      // Look-up and insert in one transaction: another import may be registering the same run right now.
      const { row, inserted } = reg.insertRunIfAbsent(
        {
          vm,
          driver: driverName,
          label: null,
          control_dir: d.control_dir,
          workflow_path: d.workflow_path ?? "",
          smithers_run_id: runId,
          smithers_db_path: db,
          engine_version: d.meta?.engine_version ?? null,
          status: "unknown",
          imported: 1,
        },
        ctx.now(),
      );
      if (!inserted) {
        result.already_registered.push({ id: row.id, smithers_run_id: runId, control_dir: d.control_dir });
        continue;
      }
      reg.recordEvent(row.id, "imported", { control_dir: d.control_dir, db_path: db }, ctx.now());
      fresh.push(row);
    }
  }
  if (fresh.length > 0) {
    const { observations } = await observeVm(ctx, driver, vm, fresh);
    for (const r of fresh) result.imported.push(await reconcile(ctx, r, observations.get(r.id) ?? { kind: "none" }));
  }
  return result;
}
