/**
 * `fabrik runs prune [--older-than 30d] [--vm V] [--id N…] [--dry-run] [--yes] [--force]`: remove ended runs —
 * their control dirs in the VMs (the DB and its backups live there) and their registry rows.
 *
 * - It always lists first what goes and what stays (and why), with each control dir's size.
 * - Candidates are runs cached as ended more than `--older-than` ago (or exactly the `--id` runs); each is checked
 *   LIVE (one probe per VM) and goes only when its live status is final (done, failed, cancelled, orphaned).
 *   Never an active run; never a run a supervisor holds or a launch/resume is pending for; never an unreachable
 *   VM's run without `--force` (which then forgets the registry row only: the VM's files cannot be touched).
 * - A run whose control dir and DB are both gone (and no engine lives) is forgotten: only its row goes.
 * - In the VM, a dir is removed only under the VM's runs root (`~/work/<vm>/.runs/`), and not while its
 *   launcher.lock or resume.lock is held; a run whose files live elsewhere (imported) keeps them: its row goes.
 * - `--dry-run` changes nothing anywhere: no removal, no registry write (not even the live check's write-back).
 */
import type { Context } from "./context.js";
import type { RunRecord } from "./registry.js";
import type { RunView } from "./runs-service.js";
import { checkVm, guestLayout, type VmCheck } from "./vm-check.js";
import { runEndMs } from "./fleet-health.js";
import { NotFoundError, RefusedError, RemoteError, UsageError } from "../core/errors.js";
import { isActiveRunStatus, isFinalRunStatus } from "../core/status.js";
import type { RunObservation } from "../vm/probe.js";
import type { VmInfo } from "../vm/driver.js";
import { askYesNo } from "./io.js";

/** Default `--older-than`: 30 days. */
export const DEFAULT_OLDER_THAN_MS = 30 * 24 * 3_600_000;

/** What happens to one run. */
export type PruneAction =
  /** Remove its control dir in the VM, then its registry row. */
  | "remove"
  /** Remove only its registry row (its files are gone, outside the runs root, or its VM cannot be reached and --force). */
  | "forget"
  /** Leave it (the reason says why). */
  | "keep";

/** One run in `runs prune --json`. Times ISO-8601 / epoch ms, sizes bytes. */
export interface PruneItem {
  id: number;
  vm: string;
  /** The live verdict (or the cached status when the VM could not be asked). */
  status: string;
  source: "live" | "cache" | "unreachable";
  ended_at: string;
  control_dir: string;
  /** Size of the control dir (DB, backups, log), when measured. */
  bytes: number | null;
  action: PruneAction;
  reason: string;
  /** After a real prune: `removed`, `forgotten`, `already gone`, `busy` (a lock is held: kept), `failed`, `refused`. */
  result: string | null;
}

/** What `runs prune --json` prints. */
export interface PruneView {
  dry_run: boolean;
  older_than_ms: number | null;
  /** Runs that ended before this were candidates (null with --id). */
  cutoff: string | null;
  items: PruneItem[];
  /** Runs removed or forgotten (after a real prune), or that would be (dry-run). */
  pruned: number;
  /** Bytes freed in the VMs (or that would be). */
  freed_bytes: number;
}

export interface PruneRequest {
  olderThanMs: number;
  vm?: string | undefined;
  ids?: number[] | undefined;
  dryRun: boolean;
  yes: boolean;
  force: boolean;
}

/**
 * The decision for one run (pure): what its live view, its registry row and its lease allow.
 * @param underRoot its control dir is under the VM's runs root (fabrik may delete it)
 */
export function pruneAction(
  run: Pick<RunRecord, "id" | "status" | "pending_json">,
  view: Pick<RunView, "effective_status" | "source"> | null,
  obs: RunObservation | undefined,
  o: { leaseHeld: boolean; force: boolean; underRoot: boolean; vmState: string },
): { action: PruneAction; reason: string } {
  if (o.leaseHeld) return { action: "keep", reason: "a supervisor is acting on it" };
  if (run.pending_json) return { action: "keep", reason: "a launch or resume of it is not settled yet" };
  if (!view || view.source !== "live" || obs?.kind !== "live") {
    const why = o.vmState === "Running" ? "its VM could not be asked" : `its VM is ${o.vmState}`;
    return o.force ? { action: "forget", reason: `${why}; --force: only the registry row goes, the VM's files stay` } : { action: "keep", reason: `${why} (pass --force to forget the registry row only)` };
  }
  const control = obs.result.control;
  const db = obs.result.db;
  const alive = [control?.launcher, control?.child, control?.engine, db?.run?.owner].some((p) => p?.alive);
  if (control && !control.exists && !db?.exists && !alive) return { action: "forget", reason: "its control dir and DB are gone: only the registry row goes" };
  if (isActiveRunStatus(view.effective_status)) return { action: "keep", reason: `it is active (${view.effective_status})` };
  if (!isFinalRunStatus(view.effective_status)) return { action: "keep", reason: `its status is ${view.effective_status}` };
  if (!o.underRoot) return { action: "forget", reason: `ended (${view.effective_status}); its files are outside the VM's runs root and stay` };
  return { action: "remove", reason: `ended (${view.effective_status})` };
}

/**
 * The VM side of a prune (bash; values only as positional parameters): `$1` the runs root, then the control dirs.
 * For each dir: refused outside the root, `gone` when absent, `busy` while its launcher.lock or resume.lock is held,
 * else removed. Prints `<result>\t<dir>\0` per dir.
 */
export const PRUNE_SCRIPT = String.raw`set -u
root="$1"; shift
for d in "$@"; do
  case "$d" in "$root"/|"$root"/.|"$root"/*/*|"$root"/..*|*/../*|*/..) printf 'refused\t%s\0' "$d"; continue;; "$root"/*) ;; *) printf 'refused\t%s\0' "$d"; continue;; esac
  if [ ! -e "$d" ]; then printf 'gone\t%s\0' "$d"; continue; fi
  for l in launcher.lock resume.lock; do
    if [ -e "$d/$l" ] && ! flock -n "$d/$l" true; then printf 'busy\t%s\0' "$d"; continue 2; fi
  done
  if rm -rf -- "$d"; then printf 'removed\t%s\0' "$d"; else printf 'failed\t%s\0' "$d"; fi
done
`;

/**
 * Plan (and unless `dryRun`, apply) a prune. Returns the view; with `fail` set when a real prune was not confirmed.
 * @throws NotFoundError for an unknown `--id`; UsageError when `--id` and `--vm` disagree.
 */
export async function pruneRuns(ctx: Context, req: PruneRequest, hooks: { confirm?: (v: PruneView) => Promise<boolean> } = {}): Promise<{ view: PruneView; fail?: Error; warnings: string[] }> {
  const reg = ctx.registry();
  const now = ctx.now();
  let candidates: RunRecord[];
  if (req.ids && req.ids.length > 0) {
    candidates = req.ids.map((id) => {
      const r = reg.getRun(id);
      if (!r) throw new NotFoundError(`run ${id} does not exist`, "see `fabrik runs list --all`");
      if (req.vm && r.vm !== req.vm) throw new UsageError(`run ${id} is in VM ${r.vm}, not ${req.vm}`, "drop --vm, or the --id");
      return r;
    });
  } else {
    const cutoff = now - req.olderThanMs;
    candidates = reg.listRuns({ vm: req.vm }).filter((r) => !isActiveRunStatus(r.status) && runEndMs(r) < cutoff);
  }
  const warnings: string[] = [];
  const byVm = new Map<string, RunRecord[]>();
  for (const r of candidates) byVm.set(r.vm, [...(byVm.get(r.vm) ?? []), r]);

  const items: PruneItem[] = [];
  const checks = new Map<string, { check: VmCheck; root: string | null }>();
  for (const [vm, runs] of byVm) {
    const driver = await ctx.driver(runs[0]!.driver);
    let info: VmInfo | undefined;
    try {
      info = await driver.inspect(vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
    } catch (err) {
      warnings.push(`cannot ask the ${driver.name} driver about VM ${vm}: ${(err as Error).message}`);
    }
    const home = info?.guestHome ?? reg.getVm(vm)?.guest_home ?? null;
    const root = home ? guestLayout(home, vm).runsRoot : null;
    const under = (r: RunRecord) => {
      const name = root !== null && r.control_dir.startsWith(`${root}/`) ? r.control_dir.slice(root.length + 1) : "";
      return name !== "" && name !== "." && name !== ".." && !name.includes("/");
    };
    // Looking is read-only (no history, no write-back): listing, a dry run and a refused prune change nothing.
    const check = await checkVm(ctx, driver, vm, info, { runs, measureDirs: runs.filter(under).map((r) => r.control_dir), source: "prune", dryRun: true });
    if (!check.ok) warnings.push(`VM ${vm}: ${check.error}`);
    checks.set(vm, { check, root });
    const sizes = new Map(check.health?.dir_sizes.map((d) => [d.path, d.bytes]) ?? []);
    for (const r of runs) {
      const view = check.runs.get(r.id) ?? null;
      const lease = reg.leaseOf(r.id);
      const d = pruneAction(r, view, check.observations.get(r.id), { leaseHeld: !!lease && lease.expires_at_ms > now, force: req.force, underRoot: under(r), vmState: check.state });
      items.push({
        id: r.id,
        vm,
        status: view?.effective_status ?? r.status,
        source: view?.source ?? "cache",
        ended_at: new Date(runEndMs(r)).toISOString(),
        control_dir: r.control_dir,
        bytes: sizes.get(r.control_dir) ?? null,
        action: d.action,
        reason: d.reason,
        result: null,
      });
    }
  }
  items.sort((a, b) => a.id - b.id);
  const goes = items.filter((i) => i.action !== "keep");
  const view: PruneView = {
    dry_run: req.dryRun,
    older_than_ms: req.ids?.length ? null : req.olderThanMs,
    cutoff: req.ids?.length ? null : new Date(now - req.olderThanMs).toISOString(),
    items,
    pruned: goes.length,
    freed_bytes: goes.filter((i) => i.action === "remove").reduce((a, i) => a + (i.bytes ?? 0), 0),
  };
  if (req.dryRun || goes.length === 0) return { view, warnings };

  if (!req.yes) {
    if (!ctx.io.stdinTty || !hooks.confirm) {
      return { view, warnings, fail: new UsageError("pruning needs confirmation, and stdin is not a terminal: pass --yes", "the list above is what would go; `--dry-run` shows it without asking") };
    }
    if (!(await hooks.confirm(view))) return { view, warnings, fail: new RefusedError("nothing was pruned: not confirmed", "nothing was changed") };
  }

  // Apply: per VM, one call removes the dirs; then the registry rows go (only for dirs that are gone now).
  for (const [vm, { check, root }] of checks) {
    const vmItems = goes.filter((i) => i.vm === vm);
    const remove = vmItems.filter((i) => i.action === "remove");
    if (remove.length && root) {
      const driver = await ctx.driver(check.driver as RunRecord["driver"]);
      let out = "";
      try {
        const r = await driver.exec(vm, ["bash", "-c", PRUNE_SCRIPT, "fabrik-prune", root, ...remove.map((i) => i.control_dir)], { timeoutMs: 10 * 60_000, signal: ctx.signal });
        if (r.exitCode !== 0) throw new RemoteError(vm, "prune", r.stderr.trim().slice(-300) || `exit ${r.exitCode}`, r.exitCode);
        out = r.stdout;
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        warnings.push(`VM ${vm}: ${(err as Error).message}; its runs were kept`);
      }
      const results = new Map<string, string>();
      for (const rec of out.split("\0")) {
        const tab = rec.indexOf("\t");
        if (tab > 0) results.set(rec.slice(tab + 1), rec.slice(0, tab));
      }
      for (const i of remove) i.result = results.get(i.control_dir) === "gone" ? "already gone" : (results.get(i.control_dir) ?? "failed");
    }
    for (const i of vmItems) if (i.action === "forget") i.result = "forgotten";
  }
  const gone = goes.filter((i) => i.result === "removed" || i.result === "already gone" || i.result === "forgotten");
  reg.deleteRuns(gone.map((i) => i.id));
  for (const i of goes.filter((x) => x.result === "busy")) warnings.push(`run ${i.id} was kept: a lock in ${i.control_dir} is held`);
  return { view: { ...view, pruned: gone.length, freed_bytes: gone.filter((i) => i.result === "removed").reduce((a, i) => a + (i.bytes ?? 0), 0) }, warnings };
}

/** `runs prune` as a command result: lists first; asks on a TTY without `--yes`. */
export async function pruneCommand(ctx: Context, req: PruneRequest) {
  const [{ view: mkView }, { renderPrune }] = await Promise.all([import("./command.js"), import("./render/prune.js")]);
  const confirm = async (v: PruneView) => {
    ctx.io.stderr.write(renderPrune(v, { tty: ctx.io.stderrTty, color: ctx.io.errColor, now: ctx.now() }));
    return askYesNo(`Prune ${v.pruned} run(s) now? [y/N] `);
  };
  const r = await pruneRuns(ctx, req, { confirm });
  return mkView(r.view, renderPrune, { warnings: r.warnings, fail: r.fail as never });
}
