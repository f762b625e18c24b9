/**
 * Live run status: probe the VMs (one round trip per VM), derive the truth (`status/derive.ts`), write it
 * back to the cache. `runs show`, `runs list`, `runs watch`, `run attach` and `run resume` read runs through here.
 * Returns view models and warnings; never prints.
 */
import pLimit from "p-limit";
import type { Context } from "./context.js";
import type { PendingLaunch, Registry, RunFilter, RunListRecord, RunRecord } from "./registry.js";
import type { StatusThresholds } from "./status/facts.js";
import { cachedRunState, type CheckSummary, type DerivedState } from "./status/cached.js";
import { NotFoundError, UsageError } from "../core/errors.js";
import type { ProbeRequest, ProbeResponse } from "../vm/probe-schema.js";
import type { RunObservation } from "../vm/probe.js";
import { expandStatusFilter, isFinalRunStatus, RUN_STATUSES, RUN_STATUS_GROUPS, STUCK_RUN_STATUSES, UNSETTLED_RUN_STATUSES, type CachedRunStatus, type RunStatus } from "../core/status.js";
import { isoTime, parseDuration } from "../core/units.js";
import type { VmDriver } from "../vm/driver.js";
import { isParkingProcesses } from "../vm/process.js";

/**
 * The model `runs show --json` prints and `runs list --json` prints an array of. Times epoch ms unless
 * named `…_at` (ISO-8601 UTC); ages and durations ms; sizes bytes.
 */
export interface RunView extends Omit<DerivedState, "cache_status" | "cache_failure_reason" | "cache_clear_exit_code"> {
  id: number;
  vm: string;
  driver: string;
  label: string | null;
  /** The cached status (fabrik's last verdict) as it was before this check. */
  status: CachedRunStatus;
  smithers_run_id: string;
  control_dir: string;
  workflow_path: string;
  engine_version: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** When the VM was asked (ISO), or the last live check for cache/unreachable views. */
  checked_at: string | null;
  checked_at_ms: number | null;
  /** True when this check changed the cache; `cache_changes` says what. */
  cache_updated: boolean;
  cache_changes: { field: string; from: string | number | null; to: string | number | null }[];
  resume_count: number;
  failure_reason: string | null;
  /** The probe's tool in the VM (`bun`), when live. */
  probe_tool: string | null;
  /** Why the VM could not be asked, when unreachable. */
  unreachable_reason: string | null;
}

/** Thresholds from the config. */
export function thresholds(ctx: Context): StatusThresholds {
  return {
    engineHeartbeatStaleMs: ctx.config.engineHeartbeatStaleMs,
    launcherHeartbeatStaleMs: ctx.config.launcherHeartbeatStaleMs,
    dbSizeWarnBytes: ctx.config.dbSizeWarnBytes,
    rowSizeWarnBytes: ctx.config.rowSizeWarnBytes,
    configuredEngineVersion: ctx.config.engineVersion,
    taskRunningLongMs: ctx.config.taskRunningLongMs,
  };
}

/** Build the probe request for runs of one VM. */
export function probeRequestFor(runs: readonly RunRecord[], opts: { nodes?: boolean; rowSizeWarnBytes: number }): ProbeRequest {
  return {
    v: 1,
    runs: runs.map((r) => ({ key: String(r.id), control_dir: r.control_dir || null, db_path: r.smithers_db_path || null, smithers_run_id: r.smithers_run_id || null })),
    nodes: opts.nodes ?? false,
    max_nodes: 500,
    row_size_warn_bytes: opts.rowSizeWarnBytes,
    discover_roots: [],
    error_chars: 500,
  };
}

/**
 * Run `warm` (initialising modules needed once the VM answers) while the VM works: after the current task, by
 * which the remote call's process has been started (the path from `probeVm` to the spawn awaits nothing that
 * is not already settled). On 2 cores the initialisation then overlaps the call instead of following it.
 */
function whileTheVmWorks(warm: () => Promise<unknown>): void {
  // A prestart (prestart.ts) only starts the calls: the CLI that adopts them does its own warming.
  if (isParkingProcesses()) return;
  setImmediate(() => void warm().catch(() => undefined));
}

/**
 * Observe runs of ONE VM in one round trip. Never throws for the VM's sake: an unreachable VM (stopped,
 * missing, past its deadline, bad probe output) yields `unreachable` observations with the reason. Throws
 * only InterruptedError-like errors when `ctx.signal` aborted.
 */
export async function observeVm(
  ctx: Context,
  driver: VmDriver,
  vm: string,
  runs: readonly RunRecord[],
  opts: { nodes?: boolean; timeoutMs?: number; probe?: (req: ProbeRequest) => Promise<ProbeResponse> } = {},
): Promise<{ observations: Map<number, RunObservation>; response: ProbeResponse | undefined; error: string | undefined }> {
  const out = new Map<number, RunObservation>();
  const req = probeRequestFor(runs, { nodes: opts.nodes, rowSizeWarnBytes: ctx.config.rowSizeWarnBytes });
  try {
    const probeVm = opts.probe ? undefined : (await import("../vm/probe.js")).probeVm;
    const pending = opts.probe
      ? opts.probe(req)
      : probeVm!(driver, vm, req, { timeoutMs: opts.timeoutMs ?? ctx.config.probeTimeoutMs, signal: ctx.signal, installCache: await ctx.guestInstalls() });
    whileTheVmWorks(() => Promise.all([import("./status/derive.js"), import("../vm/probe-schema.js")]));
    const res = await pending;
    const byKey = new Map(res.runs.map((r) => [r.key, r]));
    for (const run of runs) {
      const result = byKey.get(String(run.id));
      out.set(run.id, result ? { kind: "live", result, vmNowMs: res.now_ms, tool: res.tool } : { kind: "unreachable", reason: "the probe returned no result for this run" });
    }
    return { observations: out, response: res, error: undefined };
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    for (const run of runs) out.set(run.id, { kind: "unreachable", reason });
    return { observations: out, response: undefined, error: reason };
  }
}

/**
 * Derive a run's view and, for live observations, write the verdict back to the cache (status, exit code,
 * failure reason, DB path, engine pid, last check). Returns the view, which says what changed.
 * `write: false` derives without touching the registry (`run resume --dry-run`).
 * The live status authority (decision table, diagnoses) is loaded only when there is a live observation.
 */
export async function reconcile(ctx: Context, run: RunRecord, obs: RunObservation, opts: { write?: boolean } = {}): Promise<RunView> {
  const hostNow = ctx.now();
  const d = obs.kind === "live" ? (await import("./status/derive.js")).deriveRunState(run, obs, hostNow, thresholds(ctx)) : cachedRunState(run, obs);
  const changes: RunView["cache_changes"] = [];
  let updated = run;
  if (obs.kind === "live" && opts.write !== false) {
    const patch: Partial<RunRecord> = {};
    const change = <K extends keyof RunRecord>(field: K, to: RunRecord[K]) => {
      if (to !== undefined && to !== run[field]) {
        patch[field] = to;
        changes.push({ field, from: run[field] as string | number | null, to: to as string | number | null });
      }
    };
    if (d.cache_status) change("status", d.cache_status);
    if (d.exit_code !== null) change("exit_code", d.exit_code);
    else if (d.cache_clear_exit_code) change("exit_code", null);
    if (d.cache_failure_reason !== undefined) change("failure_reason", d.cache_failure_reason.slice(0, 2000));
    if (d.db_path && obs.result.db?.exists) change("smithers_db_path", d.db_path);
    if (d.engine_pid !== null && d.engine_alive) change("engine_pid", d.engine_pid);
    const dbRun = obs.result.db?.run;
    if (dbRun?.finished_at_ms && d.cache_status && isFinalRunStatus(d.cache_status) && d.cache_status !== "orphaned") {
      // Engine times are on the VM clock; recorded as the engine reported them.
      change("finished_at_ms", dbRun.finished_at_ms);
    }
    const summary: CheckSummary = {
      engine_run_status: d.engine_run_status,
      current_task: d.current_task,
      progress: d.progress,
      db_size_bytes: d.db_size_bytes,
      last_failed: d.last_failed,
      effective_status: d.effective_status,
      exit_code: d.exit_code,
      tool: obs.tool,
    };
    updated = ctx.registry().updateRun(
      run.id,
      { ...patch, last_check_at_ms: hostNow, last_check_status: d.effective_status, last_check_json: JSON.stringify(summary).slice(0, 16_000) },
      hostNow,
    );
    if (patch.status !== undefined) ctx.registry().recordEvent(run.id, "status", { from: run.status, to: patch.status, reason: d.reason }, hostNow);
    if (updated.pending_json) updated = await settlePendingLaunch(ctx, updated, obs.result.control?.heartbeat?.launch_id ?? null, obs.result.control?.launcher?.pid ?? null, hostNow, changes);
  }
  return toView(run, updated, d, obs, hostNow, changes);
}

/**
 * A launch fabrik journalled but did not see through (the command was killed after the VM started it, or before):
 * record its outcome now. Completed (the live heartbeat carries its launch id): the history a finished `run resume`
 * or `fabrik run` would have written — resume count, launcher pid, the event, marked `reconciled`. Abandoned (never
 * seen after 20 min): the journal entry is closed, and a row still `launching` becomes `failed` with the reason.
 */
async function settlePendingLaunch(ctx: Context, run: RunRecord, liveLaunchId: string | null, launcherPid: number | null, now: number, changes: RunView["cache_changes"]): Promise<RunRecord> {
  const { pendingLaunchOutcome } = await import("./status/reconcile.js");
  let pending: PendingLaunch;
  try {
    pending = JSON.parse(run.pending_json!) as PendingLaunch;
  } catch {
    return ctx.registry().updateRun(run.id, { pending_json: null }, now);
  }
  const outcome = pendingLaunchOutcome(pending, liveLaunchId, now);
  if (outcome === "pending") return run;
  const reg = ctx.registry();
  if (outcome === "completed") {
    const patch: Partial<RunRecord> =
      pending.kind === "resume"
        ? { resume_count: run.resume_count + 1, last_resumed_at_ms: pending.at_ms, launcher_pid: launcherPid ?? run.launcher_pid, pending_json: null }
        : { started_at_ms: run.started_at_ms ?? pending.at_ms, launcher_pid: launcherPid ?? run.launcher_pid, pending_json: null };
    const updated = reg.updateRun(run.id, patch, now);
    reg.recordEvent(run.id, pending.kind === "resume" ? "resumed" : "launched", { ...pending.detail, launch_id: pending.launch_id, launcher_pid: launcherPid, reconciled: true }, now);
    changes.push({ field: pending.kind === "resume" ? "resume_count" : "started_at_ms", from: pending.kind === "resume" ? run.resume_count : run.started_at_ms, to: pending.kind === "resume" ? updated.resume_count : updated.started_at_ms });
    return updated;
  }
  const failLaunch = pending.kind === "launch" && run.status === "launching";
  const updated = reg.updateRun(run.id, failLaunch ? { pending_json: null, status: "failed", failure_reason: "the launch was interrupted before the VM started it" } : { pending_json: null }, now);
  reg.recordEvent(run.id, `${pending.kind}-abandoned`, { launch_id: pending.launch_id, journalled_at_ms: pending.at_ms }, now);
  return updated;
}

function toView(before: RunListRecord, after: RunListRecord, d: DerivedState, obs: RunObservation, hostNow: number, changes: RunView["cache_changes"]): RunView {
  const checkedMs = obs.kind === "live" ? hostNow : before.last_check_at_ms;
  // One object literal of a fixed shape, keys in the order `--json` prints them (no spreads: `runs list --no-live`
  // builds one per cached run). The compiler checks that every field of RunView is here.
  return {
    id: before.id,
    vm: before.vm,
    driver: before.driver,
    label: before.label,
    status: before.status,
    smithers_run_id: before.smithers_run_id,
    control_dir: before.control_dir,
    workflow_path: before.workflow_path,
    engine_version: before.engine_version,
    created_at: isoTime(before.created_at_ms),
    started_at: before.started_at_ms === null ? null : isoTime(before.started_at_ms),
    finished_at: after.finished_at_ms === null ? null : isoTime(after.finished_at_ms),
    checked_at: checkedMs === null ? null : isoTime(checkedMs),
    checked_at_ms: checkedMs,
    cache_updated: changes.length > 0,
    cache_changes: changes,
    resume_count: before.resume_count,
    failure_reason: after.failure_reason,
    probe_tool: obs.kind === "live" ? obs.tool : null,
    unreachable_reason: obs.kind === "unreachable" ? obs.reason : null,
    effective_status: d.effective_status,
    reason: d.reason,
    status_rule: d.status_rule,
    source: d.source,
    engine_run_status: d.engine_run_status,
    current_task: d.current_task,
    current_attempt: d.current_attempt,
    current_task_started_at_ms: d.current_task_started_at_ms,
    progress: d.progress,
    engine_heartbeat_age_ms: d.engine_heartbeat_age_ms,
    launcher_heartbeat_age_ms: d.launcher_heartbeat_age_ms,
    engine_alive: d.engine_alive,
    launcher_alive: d.launcher_alive,
    engine_pid: d.engine_pid,
    launcher_pid: d.launcher_pid,
    exit_code: d.exit_code,
    db_size_bytes: d.db_size_bytes,
    wal_size_bytes: d.wal_size_bytes,
    db_path: d.db_path,
    run_sh_engine: d.run_sh_engine,
    last_failed: d.last_failed,
    run_error: d.run_error,
    missing_facts: d.missing_facts,
    mismatches: d.mismatches,
    diagnoses: d.diagnoses,
  };
}

/** SQL for an epoch-ms column as {@link isoTime} writes it (integer arithmetic: exact to the ms), or NULL. */
const isoSql = (col: string) =>
  `CASE WHEN ${col} IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%S', ${col} / 1000, 'unixepoch') || printf('.%03dZ', ${col} % 1000) END`;

/** SQL for a field of the last check's summary (`last_check_json`), read as `status/cached.ts` reads it. */
const lastCheckSql = (path: string, types: string) =>
  `CASE WHEN json_valid(last_check_json) AND json_type(last_check_json, '${path}') IN (${types}) THEN last_check_json -> '${path}' END`;

/**
 * The cache-only view of a run ({@link cachedView}: `cachedRunState` + {@link toView} with no observation) as ONE
 * SQL expression that yields its JSON text, keys in the same order — what `runs list --no-live --json` prints for
 * each row. SQLite writes it, so a listing of 100 000 runs costs about what `sqlite3 -json` costs rather than three
 * times as much. A unit test holds it byte-identical to `JSON.stringify(cachedView(row))` over adversarial rows:
 * a field added to the view must be added here too, or that test fails.
 */
export const CACHED_VIEW_JSON_SQL = `CASE WHEN ${sqlCovers()} THEN json_object(
  'id', id, 'vm', vm, 'driver', driver, 'label', label, 'status', status, 'smithers_run_id', smithers_run_id,
  'control_dir', control_dir, 'workflow_path', workflow_path, 'engine_version', engine_version,
  'created_at', ${isoSql("created_at_ms")}, 'started_at', ${isoSql("started_at_ms")}, 'finished_at', ${isoSql("finished_at_ms")},
  'checked_at', ${isoSql("last_check_at_ms")}, 'checked_at_ms', last_check_at_ms, 'cache_updated', json('false'), 'cache_changes', json('[]'),
  'resume_count', resume_count, 'failure_reason', failure_reason, 'probe_tool', NULL, 'unreachable_reason', NULL,
  'effective_status', status, 'reason', 'from the cache (not checked live)', 'status_rule', 'cache', 'source', 'cache',
  'engine_run_status', CASE WHEN json_valid(last_check_json) THEN
    CASE WHEN json_type(last_check_json, '$.engine_run_status') = 'text' THEN last_check_json ->> '$.engine_run_status'
         WHEN json_type(last_check_json, '$.vm_status') = 'text' THEN last_check_json ->> '$.vm_status' END END,
  'current_task', ${lastCheckSql("$.current_task", "'text'")}, 'current_attempt', NULL, 'current_task_started_at_ms', NULL,
  'progress', ${lastCheckSql("$.progress", "'object', 'array'")}, 'engine_heartbeat_age_ms', NULL, 'launcher_heartbeat_age_ms', NULL,
  'engine_alive', NULL, 'launcher_alive', NULL, 'engine_pid', engine_pid, 'launcher_pid', launcher_pid, 'exit_code', exit_code,
  'db_size_bytes', ${lastCheckSql("$.db_size_bytes", "'integer', 'real'")}, 'wal_size_bytes', NULL, 'db_path', smithers_db_path,
  'run_sh_engine', NULL, 'last_failed', CASE WHEN json_valid(last_check_json) THEN last_check_json -> '$.last_failed' END,
  'run_error', failure_reason, 'missing_facts', json('[]'), 'mismatches', json('[]'), 'diagnoses', json('[]')) END`;

/**
 * The rows {@link CACHED_VIEW_JSON_SQL} writes exactly as JavaScript would: the values fabrik stores — text or
 * NULL in text columns, whole numbers or NULL in number columns, times in years 1970–9999. Anything else (a
 * hand-edited registry) yields NULL, and the listing goes on through the JavaScript view.
 */
function sqlCovers(): string {
  const text = ["vm", "driver", "label", "status", "smithers_run_id", "control_dir", "workflow_path", "engine_version", "failure_reason", "smithers_db_path", "last_check_json"];
  const ints = ["exit_code", "resume_count", "launcher_pid", "engine_pid"];
  const times = ["created_at_ms", "started_at_ms", "finished_at_ms", "last_check_at_ms"];
  return [
    ...text.map((c) => `typeof(${c}) IN ('text', 'null')`),
    ...ints.map((c) => `typeof(${c}) IN ('integer', 'null')`),
    ...times.map((c) => `(${c} IS NULL OR (typeof(${c}) = 'integer' AND ${c} BETWEEN 0 AND 253402300799999))`),
  ].join(" AND ");
}

/**
 * The `--json` texts of a cache-only listing, in order: SQLite's ({@link CACHED_VIEW_JSON_SQL}) while it covers
 * the rows, then — from the first row it does not — the JavaScript view of the rest (the same rows: the order is
 * total, so `offset` resumes exactly where SQLite stopped).
 */
export function* cachedViewsJson(reg: Registry, filter: RunFilter, nowMs: number): Generator<string, void, undefined> {
  let done = 0;
  for (const text of reg.iterateRunsAs(CACHED_VIEW_JSON_SQL, filter)) {
    if (text === null) break;
    yield text;
    done++;
  }
  if (filter.limit !== undefined && done >= filter.limit) return;
  const rest: RunFilter = { ...filter, offset: (filter.offset ?? 0) + done, limit: filter.limit === undefined ? undefined : filter.limit - done };
  for (const r of reg.iterateRuns(rest)) yield JSON.stringify(cachedView(r, nowMs));
}

/** Look up a run or throw NotFoundError. `id` was parsed by the strict run-id parser (`args.ts`). */
export function requireRun(ctx: Context, id: number): RunRecord {
  const run = ctx.registry().getRun(id);
  if (!run) throw new NotFoundError(`run ${id} does not exist`, "see `fabrik runs list` for run ids");
  return run;
}

/** The cache-only view of a listed run (no VM asked, nothing written). */
export function cachedView(run: RunListRecord, nowMs: number): RunView {
  return toView(run, run, cachedRunState(run, { kind: "none" }), { kind: "none" }, nowMs, []);
}

/** `runs show`: one run, live unless `live` is false (then the VM is never touched). */
export async function showRun(ctx: Context, id: number, opts: { live: boolean; nodes?: boolean }): Promise<{ view: RunView; warnings: string[] }> {
  const run = requireRun(ctx, id);
  if (!opts.live) return { view: await reconcile(ctx, run, { kind: "none" }), warnings: [] };
  const driver = await ctx.driver(run.driver);
  const { observations } = await observeVm(ctx, driver, run.vm, [run], { nodes: opts.nodes });
  const view = await reconcile(ctx, run, observations.get(run.id)!);
  return { view, warnings: view.source === "unreachable" ? [`VM ${view.vm} is unreachable; showing cached values`] : [] };
}

/** Parse `--since` (`90s`, `30m`, `2h`, `7d`, or an ISO date) into epoch ms. Throws UsageError. */
export function parseSince(since: string, nowMs: number): number {
  const d = parseDuration(since);
  if (d !== undefined) return nowMs - d;
  const t = Date.parse(since);
  if (/^\d{4}-\d{2}-\d{2}/.test(since.trim()) && Number.isFinite(t)) return t;
  throw new UsageError(`--since ${JSON.stringify(since)} is not a duration or a date`, "e.g. --since 2h, --since 7d, --since 2026-11-01");
}

export interface ListRequest {
  vm?: string | undefined;
  /** fabrik's statuses (and the groups of RUN_STATUS_GROUPS), matched against the LIVE verdict when `live`. */
  statuses?: string[] | undefined;
  /** Only stuck runs: stale, orphaned, unknown, and running runs with a task in progress too long. */
  stuck?: boolean | undefined;
  limit: number;
  since?: string | undefined;
  live: boolean;
}

/** How many cached runs at most a live status filter looks at (the unsettled ones, newest first). */
export const STATUS_FILTER_CANDIDATES = 1000;

/** Is this view stuck (`runs list --stuck`)? Pure. */
export function isStuckView(v: Pick<RunView, "effective_status" | "diagnoses">): boolean {
  return (STUCK_RUN_STATUSES as readonly string[]).includes(v.effective_status) || v.diagnoses.some((d) => d.code === "TASK_RUNNING_LONG");
}

/**
 * `runs list`: the newest runs (filtered). Live: probed with one round trip per VM, VMs in parallel with a
 * concurrency cap and a per-VM deadline; an unreachable VM gives `unreachable` rows with cached values and one
 * warning, and the command still succeeds. `--no-live`: the rows are streamed from the registry one at a time
 * (only the listed columns, no derivation beyond the cached view), so 100 000 runs list in flat memory; `json`
 * gives the same views as JSON texts written by SQLite, for `--json`.
 */
export async function listRunViews(ctx: Context, req: ListRequest): Promise<{ views: Iterable<RunView>; json?: () => Iterable<string>; warnings: string[] }> {
  const { statuses, unknown } = expandStatusFilter(req.statuses ?? []);
  if (unknown !== undefined) {
    throw new UsageError(`unknown status ${JSON.stringify(unknown)}`, `use one of ${[...RUN_STATUSES, ...Object.keys(RUN_STATUS_GROUPS)].join(", ")}`);
  }
  const sinceMs = req.since ? parseSince(req.since, ctx.now()) : undefined;
  const filtering = statuses.length > 0 || req.stuck === true;
  if (!req.live) {
    const cached: RunStatus[] = [...new Set<RunStatus>([...statuses, ...(req.stuck ? STUCK_RUN_STATUSES : [])])];
    const filter: RunFilter = { vm: req.vm, statuses: cached, limit: req.limit, sinceMs };
    const reg = ctx.registry();
    const now = ctx.now();
    const warnings: string[] = [];
    if (statuses.includes("unreachable")) warnings.push("`unreachable` is only known from a live look (the cache never holds it); drop --no-live");
    if (req.stuck) warnings.push("--no-live: long-running tasks (TASK_RUNNING_LONG) need a live look; showing runs cached as stale, orphaned or unknown");
    return {
      views: (function* () {
        for (const r of reg.iterateRuns(filter)) yield cachedView(r, now);
      })(),
      // With --json the same views come already serialised by SQLite (CACHED_VIEW_JSON_SQL).
      json: () => cachedViewsJson(reg, filter, now),
      warnings,
    };
  }
  // A live filter matches the LIVE verdict: look at the runs cached with a requested status and every run that can
  // still change without a new engine record (a run cached `running` may be orphaned now; `unreachable` is never
  // cached), then keep the matches.
  const candidates: RunStatus[] = [...new Set<RunStatus>([...statuses.filter((x): x is CachedRunStatus => x !== "unreachable"), ...UNSETTLED_RUN_STATUSES])];
  const runs = filtering
    ? ctx.registry().listRuns({ vm: req.vm, statuses: candidates, limit: STATUS_FILTER_CANDIDATES, sinceMs })
    : ctx.registry().listRuns({ vm: req.vm, limit: req.limit, sinceMs });
  const byVm = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const list = byVm.get(r.vm) ?? [];
    list.push(r);
    byVm.set(r.vm, list);
  }
  const limit = pLimit(ctx.config.probeConcurrency);
  const warnings: string[] = [];
  const results = await Promise.all(
    [...byVm.entries()].map(([vm, vmRuns]) =>
      limit(async () => {
        const driver = await ctx.driver(vmRuns[0]!.driver);
        const r = await observeVm(ctx, driver, vm, vmRuns);
        if (r.error) warnings.push(`VM ${vm} is unreachable (${r.error}); showing cached values for ${vmRuns.length} run(s)`);
        return r.observations;
      }),
    ),
  );
  const all = new Map<number, RunObservation>();
  for (const m of results) for (const [k, v] of m) all.set(k, v);
  let views: RunView[] = [];
  for (const r of runs) views.push(await reconcile(ctx, r, all.get(r.id) ?? { kind: "none" }));
  if (filtering) {
    views = views.filter((v) => (statuses.length === 0 || (statuses as readonly string[]).includes(v.effective_status)) && (!req.stuck || isStuckView(v))).slice(0, req.limit);
  }
  for (const v of views) for (const m of v.mismatches) warnings.push(`run ${v.id} ${m.field}: cache=${m.cache ?? "-"} live=${m.live ?? "-"}${v.cache_updated ? " (cache updated)" : ""}`);
  return { views, warnings };
}
