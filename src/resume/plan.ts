/**
 * Planning a resume: PURE. From the run's registry row, one live observation (the probe, with the node list)
 * and the options, decide whether continuing the run is safe, what will be reset, where the backup goes and
 * the exact `resume-N.sh` — no I/O, `now` injected. The VM re-checks everything at apply time
 * (`src/vm/guest/resume.ts`); this plan is what the user sees first and what `--dry-run` prints. The rules
 * both sides apply (status → mode, heartbeat freshness, what the reset changes, refusal texts) live in
 * `src/core/resume-rules.ts`.
 *
 * Safety rules (smithers-engine.md, "What a crash leaves, and how a run continues"):
 * - a living engine owner, launched child or launcher (a zombie counts) refuses; `--force` NEVER overrides it;
 * - a fresh engine heartbeat (age ≤ the configured `engineHeartbeatStaleMs`, inclusive) refuses unless `--force`;
 * - a `finished` run, a missing/unreadable/unknown DB, a run row absent, a missing control dir refuse;
 * - the script continues the SAME run id: `up WF --resume ID` / `retry-task WF --run-id ID --node-id N` (0.32),
 *   `run WF --run-id ID --resume` (0.5). Never `smithers resume`, never an engine start without the run id
 *   (the guide's "Resume Creates New Runs" bug).
 */
import type { RunObservation } from "../vm/probe.js";
import type { DbFacts, NodeFact, PidFact } from "../vm/probe-schema.js";
import { buildLauncherScript, resumeEngineArgs, type EngineCommand } from "../vm/launcher.js";
import { engineDialect, engineLayout, isSupportedEngineVersion, type EngineDialect } from "../vm/engine-recipe.js";
import { shellJoin } from "../vm/shell-quote.js";

import {
  RESUME_MODE_TEXT as MODE_TEXT,
  engineChangeReason,
  engineHeartbeatCheck,
  livingProcessReason,
  modeForStatus,
  planStateReset,
  refusals,
  type PlannedReset,
  type ResumeMode,
  type ResumeReason,
} from "../core/resume-rules.js";

export { RESUME_MODES, modeForStatus, type PlannedAttemptReset, type PlannedNodeReset, type PlannedReset, type ResumeMode, type ResumeReason } from "../core/resume-rules.js";

/** How many backups per run are kept in `<control dir>/backups`. */
export const KEEP_BACKUPS = 3;

/** One safety check: passed or failed, with what was seen. `source` says who checked: the probe or the VM at apply time. */
export interface ResumeCheck {
  name: string;
  ok: boolean;
  detail: string;
  source: "probe" | "vm";
}

export interface ResumeOptions {
  /** Override a fresh engine heartbeat (never a living process). */
  force: boolean;
  /** Truncate oversized response_text/error_json values first and VACUUM. */
  fix: boolean;
  /** `--fix`: bytes kept per value (the tail). */
  fixLimitBytes: number;
  /** Continue a parked run: fabrik has just recorded its decision (`run approve|deny`, `run signal`). */
  afterDecision?: boolean | undefined;
  /** `--engine X`: resume with this engine instead of the run's (same dialect only; guide Issue 4). */
  engineVersion?: string | undefined;
}

export interface ResumeThresholds {
  /** Engine rule RUN_HEARTBEAT_STALE_MS, ms: config `engineHeartbeatStaleMs` (the engine's own is 30 s). */
  engineHeartbeatStaleMs: number;
}

/** The run to resume, as the host registry knows it (a `RunRecord` satisfies it). Paths are absolute in the guest. */
export interface ResumeTarget {
  /** Host run id (`--id`). */
  id: number;
  vm: string;
  smithers_run_id: string;
  engine_version: string | null;
  control_dir: string;
  smithers_db_path: string;
  workflow_path: string;
  /** Resumes so far; the next script is `resume-<resume_count + 1>.sh`. */
  resume_count: number;
}

export interface PlanInput {
  run: ResumeTarget;
  /** ONE live observation with `nodes` (or why there is none). */
  observation: RunObservation;
  options: ResumeOptions;
  thresholds: ResumeThresholds;
  /** Host clock, epoch ms (backup stamp). */
  now: number;
  /** The guest user's home (engines live under `<home>/.fabrik/engines/<version>`); null = derive from the control dir. */
  guestHome: string | null;
  /** heartbeat.json period of the resume launcher, seconds. */
  heartbeatIntervalS: number;
  /** The id the host journals for this resume (written into the resume launcher's heartbeats). */
  launchId: string;
}

export interface ResumePlan {
  v: 1;
  host_run_id: number;
  /** The id of this resume's launch (journalled by the host, written into the resume launcher's heartbeats). */
  launch_id: string;
  vm: string;
  smithers_run_id: string;
  engine_version: string | null;
  dialect: EngineDialect | null;
  /**
   * The engine the launcher pins now (run.sh or the newest resume-N.sh: `ENGINE_VERSION=…`) and the one the resume
   * script will pin; `changed` when `--engine` picked another one.
   */
  engine_pin: { before: string | null; after: string | null; changed: boolean };
  /** True when every check passed. */
  allowed: boolean;
  reasons: ResumeReason[];
  checks: ResumeCheck[];
  warnings: string[];
  mode: ResumeMode | null;
  mode_description: string | null;
  /** The engine's run status in the DB when observed. */
  db_status: string | null;
  /** 0.32 failed run with one failed node: the node `retry-task` re-runs. */
  retry_node: string | null;
  /** The engine command the script runs (display form). */
  engine_command: string | null;
  reset: PlannedReset;
  progress: { finished: number; total: number; continuing_from: { node_id: string; iteration: number; state: string } | null } | null;
  /** Lines the script prints into the log: `Completed: X/Y tasks`, `Continuing from: <node>`. */
  banner: string[];
  fix: { limit_bytes: number; oversized_values: number | null; max_response_text_bytes: number | null; max_error_json_bytes: number | null } | null;
  force: boolean;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  engine_dir: string | null;
  bun: string | null;
  /** `<control>/backups/run-<id>-<utc-stamp>.db`. */
  backup_path: string;
  keep_backups: number;
  /** `<control>/resume-<n>.sh` (the VM takes the next free n if it exists). */
  script_path: string;
  /** The full script, or null when the mode or engine is unknown. */
  script: string | null;
  /** What the VM re-checks right before it changes anything. */
  rechecked_in_vm: string[];
}

/** UTC stamp for file names: `20261121T214900.123Z`. */
export function backupStamp(nowMs: number): string {
  return new Date(nowMs).toISOString().replace(/[-:]/g, "");
}

/** `<control>/backups/run-<id>-<stamp>.db`. */
export function backupPathFor(controlDir: string, hostRunId: number, nowMs: number): string {
  return `${controlDir}/backups/run-${hostRunId}-${backupStamp(nowMs)}.db`;
}

/** The guest home from a control dir laid out as `<home>/work/<vm>/.runs/<dir>`, or null. */
export function guestHomeFromControlDir(controlDir: string, vm: string): string | null {
  const suffix = `/work/${vm}/.runs/`;
  const i = controlDir.lastIndexOf(suffix);
  if (i <= 0) return null;
  return /^[^/]+$/.test(controlDir.slice(i + suffix.length)) ? controlDir.slice(0, i) : null;
}

/** Display form of an engine command. */
export function engineCommandText(c: EngineCommand): string {
  const parts = ["smithers", c.verb, ...c.args];
  let text = shellJoin(parts);
  if (c.input === "stdin") text += " --input - <input.json";
  if (c.input === "preload") text += " --input <input.json, through a bun preload>";
  if (c.noPostFailure) text += " --no-post-failure";
  return text;
}

/** `step-3`, or `step-3 (iteration 2)` for a loop iteration. */
export function nodeLabel(n: { node_id: string; iteration: number }): string {
  return n.iteration > 0 ? `${n.node_id} (iteration ${n.iteration})` : n.node_id;
}

function pidDetail(p: PidFact): string {
  return `pid ${p.pid} ${p.alive ? `is alive${p.state === "Z" ? " (a zombie: still counts as alive)" : p.state ? ` (state ${p.state})` : ""}` : "is dead"}${p.alive && p.cmdline ? ` — ${p.cmdline}` : ""}`;
}

/** The node the resumed run starts with, in execution order. */
function continuingFrom(mode: ResumeMode, nodes: readonly NodeFact[], db: DbFacts, retryNode: string | null): NodeFact | null {
  const first = (state: string) => nodes.find((n) => n.state === state) ?? null;
  if (retryNode !== null) return nodes.find((n) => n.node_id === retryNode) ?? db.last_failed;
  const byMode =
    mode === "retry-failed"
      ? (first("failed") ?? db.last_failed)
      : mode === "continue-cancelled"
        ? (first("cancelled") ?? first("in-progress") ?? db.in_progress[0] ?? null)
        : mode === "continue-waiting"
          ? (nodes.find((n) => n.state.startsWith("waiting-")) ?? db.waiting?.[0] ?? first("in-progress") ?? null)
          : (first("in-progress") ?? db.in_progress[0] ?? null);
  return byMode ?? first("pending") ?? nodes.find((n) => !["finished", "skipped"].includes(n.state)) ?? null;
}

/**
 * Decide a resume. Pure: the same input gives the same plan.
 * The plan is `allowed` only when every check passed; otherwise `reasons` says why, each with a hint.
 */
export function planResume(input: PlanInput): ResumePlan {
  const { run, observation: obs, options, thresholds, now } = input;
  const checks: ResumeCheck[] = [];
  const reasons: ResumeReason[] = [];
  const warnings: string[] = [];
  const pass = (name: string, detail: string) => checks.push({ name, ok: true, detail, source: "probe" });
  const fail = (name: string, detail: string, reason: ResumeReason) => {
    checks.push({ name, ok: false, detail, source: "probe" });
    reasons.push(reason);
  };

  const controlDir = run.control_dir;
  const plan: ResumePlan = {
    v: 1,
    host_run_id: run.id,
    launch_id: input.launchId,
    vm: run.vm,
    smithers_run_id: run.smithers_run_id,
    engine_version: run.engine_version,
    dialect: null,
    engine_pin: { before: null, after: null, changed: false },
    allowed: false,
    reasons,
    checks,
    warnings,
    mode: null,
    mode_description: null,
    db_status: null,
    retry_node: null,
    engine_command: null,
    reset: { attempts: [], nodes: [], run: null, by_engine: null },
    progress: null,
    banner: [],
    fix: null,
    force: options.force,
    control_dir: controlDir,
    db_path: run.smithers_db_path,
    workflow_path: run.workflow_path,
    engine_dir: null,
    bun: null,
    backup_path: backupPathFor(controlDir, run.id, now),
    keep_backups: KEEP_BACKUPS,
    script_path: `${controlDir}/resume-${run.resume_count + 1}.sh`,
    script: null,
    rechecked_in_vm: [
      "launcher, child, engine and DB-owner pids (signal 0; a zombie counts as alive)",
      "launcher.lock free (flock -n)",
      "engine heartbeat age",
      "run status unchanged",
      "workflow file exists",
      "DB readable, run row present",
      "engine installed",
      "disk space for the backup",
    ],
  };
  const finish = (): ResumePlan => {
    plan.allowed = reasons.length === 0;
    return plan;
  };

  // ---- the VM ---------------------------------------------------------------------------------------------
  if (obs.kind !== "live") {
    const why = obs.kind === "unreachable" ? obs.reason : "the VM was not asked";
    fail("vm-reachable", why, { code: "VM_UNREACHABLE", message: `VM ${run.vm} cannot be reached: ${why}`, hint: `start it with \`fabrik vm start ${run.vm}\`` });
    return finish();
  }
  pass("vm-reachable", `VM ${run.vm} answered (${obs.tool})`);
  const r = obs.result;
  const c = r.control;
  const db = r.db;

  // ---- the engine version -> dialect ------------------------------------------------------------------------
  let recorded = run.engine_version;
  if (recorded === null && db && (db.schema === "modern" || db.schema === "legacy")) {
    recorded = db.schema === "modern" ? "0.32.0" : "0.5.0";
    if (!options.engineVersion) warnings.push(`the run has no recorded engine version; using ${recorded} for its ${db.schema} DB schema`);
  }
  const version = options.engineVersion ?? recorded;
  plan.engine_pin = { before: c?.run_sh_engine ?? recorded, after: version, changed: options.engineVersion !== undefined && options.engineVersion !== (c?.run_sh_engine ?? recorded) };
  if (options.engineVersion !== undefined && isSupportedEngineVersion(options.engineVersion) && db && (db.schema === "modern" || db.schema === "legacy")) {
    const why = engineChangeReason(c?.run_sh_engine ?? recorded, options.engineVersion, engineDialect(options.engineVersion), db.schema);
    if (why) fail("engine-change", `${plan.engine_pin.before ?? "unknown"} → ${options.engineVersion}`, why);
    else pass("engine-change", `${plan.engine_pin.before ?? "unknown"} → ${options.engineVersion} (same ${db.schema} dialect)`);
  }
  if (version === null || !isSupportedEngineVersion(version)) {
    fail("engine-version", version ?? "unknown", {
      code: "ENGINE_UNKNOWN",
      message: `the run's engine version ${version === null ? "is unknown" : `${version} is not supported`}; fabrik cannot pick the resume command`,
      hint: "supported engines: 0.32.0, 0.5.0",
    });
  } else {
    plan.engine_version = version;
    plan.dialect = engineDialect(version);
    pass("engine-version", `${version} (${plan.dialect})`);
  }

  // ---- control dir and DB -----------------------------------------------------------------------------------
  if (!c || !c.exists) {
    fail("control-dir", `${controlDir} does not exist`, refusals.controlDirMissing(controlDir, run.vm, `check with \`fabrik vm shell ${run.vm} -- ls ${shellJoin([controlDir])}\``));
  } else pass("control-dir", controlDir);

  let dbOk = false;
  if (!db || !db.exists) {
    fail("db-exists", `${db?.path ?? run.smithers_db_path} does not exist`, refusals.dbMissing(run.smithers_db_path, controlDir, run.vm));
  } else if (db.error) {
    fail("db-readable", db.error, refusals.dbUnreadable(db.path, db.error, controlDir));
  } else if (db.schema === "unknown") {
    fail("db-schema", "no _smithers_runs table", refusals.dbUnknownSchema(db.path));
  } else if (plan.dialect !== null && db.schema !== plan.dialect && options.engineVersion === undefined) {
    fail("db-schema", `${db.schema} schema, engine ${plan.engine_version} speaks ${plan.dialect}`, refusals.dbDialectMismatch(db.schema, plan.dialect, plan.engine_version));
  } else if (!db.run) {
    fail("run-in-db", `run ${run.smithers_run_id} not in ${db.path}`, refusals.runNotInDb(run.smithers_run_id, db.path, db.runs_in_db ?? 0, `see \`fabrik runs import --vm ${run.vm}\``));
  } else {
    dbOk = true;
    pass("db", `${db.path} (${db.size_bytes ?? 0} bytes${db.wal_size_bytes ? ` + WAL ${db.wal_size_bytes}` : ""}, ${db.schema} schema), run ${db.run.run_id}: ${db.run.status}`);
    if (db.path !== run.smithers_db_path) {
      warnings.push(`the run's DB is at ${db.path}, not ${run.smithers_db_path} (the workflow ignored SMITHERS_DB_PATH); resuming that one`);
      plan.db_path = db.path;
    }
  }

  // ---- status -> mode -----------------------------------------------------------------------------------------
  const dbRun = dbOk ? db!.run! : null;
  if (dbRun) {
    plan.db_status = dbRun.status;
    const m = modeForStatus(dbRun.status, { afterDecision: options.afterDecision });
    if ("reason" in m) fail("run-status", `status ${dbRun.status}`, m.reason);
    else {
      plan.mode = m.mode;
      plan.mode_description = MODE_TEXT[m.mode];
      pass("run-status", `status ${dbRun.status}: ${MODE_TEXT[m.mode]}`);
    }
  }

  // ---- processes: never overridden ----------------------------------------------------------------------------
  const procs: { role: string; name: string; fact: PidFact | null | undefined }[] = [
    { role: "engine owner (DB runtime_owner_id)", name: "owner-dead", fact: dbRun?.owner },
    { role: "engine (engine.pid)", name: "engine-dead", fact: c?.engine },
    { role: "launched child (smithers.pid)", name: "child-dead", fact: c?.child },
    { role: "launcher (launcher.pid)", name: "launcher-dead", fact: c?.launcher },
  ];
  const byPid = new Map<number, { fact: PidFact; roles: string[]; name: string }>();
  for (const { role, name, fact } of procs) {
    if (!fact) continue;
    const cur = byPid.get(fact.pid);
    if (!cur) byPid.set(fact.pid, { fact, roles: [role], name });
    else {
      cur.roles.push(role);
      if (fact.alive && !cur.fact.alive) cur.fact = fact; // facts taken a moment apart: alive wins
    }
  }
  const anyPid = byPid.size > 0;
  for (const { fact, roles, name } of byPid.values()) {
    const detail = `${roles.join(", ")}: ${pidDetail(fact)}`;
    if (fact.alive) {
      fail(
        name,
        detail,
        livingProcessReason({ role: roles[0]!.replace(/ \(.*\)$/, ""), pid: fact.pid, zombie: fact.state === "Z", owner: name === "owner-dead", vm: run.vm, hostRunId: run.id }),
      );
    } else pass(name, detail);
  }
  if (!anyPid && plan.dialect === "legacy") {
    const detail = "no pid file and no owner pid: nothing proves the engine is dead (0.5 has no heartbeat and no lock of its own)";
    if (options.force) {
      pass("engine-dead", `${detail}; accepted with --force`);
      warnings.push("--force: resuming a legacy run with no pid to check; if its engine still runs, tasks run twice");
    } else {
      fail("engine-dead", detail, {
        code: "NO_PID_FACTS",
        message: "nothing shows that the run's engine is dead (legacy engine, no pid files)",
        hint: `check \`fabrik vm shell ${run.vm} -- ps aux\`; if no engine runs for this run, pass --force`,
      });
    }
  }

  // ---- the engine heartbeat (0.32) ------------------------------------------------------------------------------
  if (dbRun && db!.schema === "modern" && dbRun.status === "running") {
    const hb = engineHeartbeatCheck(dbRun, obs.vmNowMs, thresholds.engineHeartbeatStaleMs, options.force);
    if (hb.reason) fail("heartbeat-stale", hb.detail, hb.reason);
    else pass("heartbeat-stale", hb.detail);
    if (hb.warning) warnings.push(hb.warning);
  } else if (dbRun && db!.schema === "legacy") {
    pass("heartbeat-stale", "legacy engine: no DB heartbeat; judged by the pids and launcher.lock");
  }

  // ---- what will be reset ----------------------------------------------------------------------------------------
  const nodes: NodeFact[] = dbOk ? (db!.nodes ?? [...db!.in_progress, ...(db!.last_failed ? [db!.last_failed] : [])]) : [];
  if (dbOk && db!.nodes_truncated) warnings.push(`the run has more nodes than the probe listed; the VM computes the exact reset`);
  if (dbOk && plan.mode) {
    const inProgress = nodes.filter((n) => n.state === "in-progress");
    const stuck = inProgress.length > 0 ? inProgress : db!.in_progress;
    const failed = nodes.filter((n) => n.state === "failed");
    const { reset, retryNode } = planStateReset({
      dialect: plan.dialect ?? (db!.schema === "modern" ? "modern" : "legacy"),
      mode: plan.mode,
      run: dbRun!,
      // The probe lists each node with its latest attempt; the VM reports every attempt it changes.
      inProgressAttempts: stuck.map((n) => ({ node_id: n.node_id, iteration: n.iteration, attempt: n.last_attempt })),
      inProgressNodes: stuck,
      failedNodes: failed,
      failedAttempts: failed.map((n) => ({ node_id: n.node_id, iteration: n.iteration, attempt: n.last_attempt })),
    });
    plan.reset = reset;
    plan.retry_node = retryNode;
    if (plan.mode === "retry-failed") {
      if (failed.length === 0 && inProgress.length === 0) {
        warnings.push(`the run failed without a failed task${dbRun!.error ? ` (${dbRun!.error})` : ""}: nothing to reset, the engine may fail again at once`);
      }
    }
  }

  // ---- progress and banner ------------------------------------------------------------------------------------------
  if (dbOk && plan.mode) {
    const finished = db!.by_state["finished"] ?? 0;
    const next = continuingFrom(plan.mode, nodes, db!, plan.retry_node);
    plan.progress = { finished, total: db!.total_nodes, continuing_from: next ? { node_id: next.node_id, iteration: next.iteration, state: next.state } : null };
    plan.banner = [`Completed: ${finished}/${db!.total_nodes} tasks`, `Continuing from: ${next ? nodeLabel(next) : "(no pending task)"}`];
    if (plan.mode_description) plan.banner.push(`Mode: ${plan.mode_description}`);
  }

  // ---- --fix --------------------------------------------------------------------------------------------------------
  if (options.fix) {
    plan.fix = {
      limit_bytes: options.fixLimitBytes,
      oversized_values: dbOk ? db!.oversized_values : null,
      max_response_text_bytes: dbOk ? db!.max_response_text_bytes : null,
      max_error_json_bytes: dbOk ? db!.max_error_json_bytes : null,
    };
    const biggest = Math.max(plan.fix.max_response_text_bytes ?? 0, plan.fix.max_error_json_bytes ?? 0);
    if (dbOk && biggest <= options.fixLimitBytes) warnings.push(`--fix: no response_text/error_json value is over ${options.fixLimitBytes} bytes; it will only VACUUM`);
  }

  // ---- the engine folder and the script --------------------------------------------------------------------------------
  const home = input.guestHome ?? guestHomeFromControlDir(controlDir, run.vm);
  if (home === null) {
    fail("engine-dir", "the VM's home directory is unknown", { code: "GUEST_HOME_UNKNOWN", message: `cannot tell VM ${run.vm}'s home directory (where the engine is installed)`, hint: "see `fabrik vm list`" });
  } else if (plan.engine_version && plan.dialect) {
    const layout = engineLayout(`${home}/.fabrik/engines/${plan.engine_version}`);
    plan.engine_dir = layout.dir;
    plan.bun = layout.bun;
  }
  if (plan.mode && plan.dialect && plan.engine_dir) {
    const engine = resumeEngineArgs(plan.dialect, run.workflow_path, run.smithers_run_id, plan.retry_node ?? undefined);
    plan.engine_command = engineCommandText(engine);
    plan.script = buildLauncherScript({
      hostRunId: run.id,
      smithersRunId: run.smithers_run_id,
      vm: run.vm,
      controlDir,
      workflowPath: run.workflow_path,
      dbPath: plan.db_path,
      engineVersion: plan.engine_version!,
      dialect: plan.dialect,
      engineDir: plan.engine_dir,
      heartbeatIntervalS: input.heartbeatIntervalS,
      engine,
      mode: "resume",
      launchId: input.launchId,
      banner: plan.banner,
    });
  }
  return finish();
}

/** The checks and refusals the VM reported (dry-run), merged into a plan. Pure. */
export function withVmChecks(plan: ResumePlan, vm: { checks: { name: string; ok: boolean; detail: string | null }[]; reasons: ResumeReason[] } | { failure: string }): ResumePlan {
  const checks = [...plan.checks];
  const reasons = [...plan.reasons];
  if ("failure" in vm) {
    checks.push({ name: "vm-checks", ok: false, detail: vm.failure, source: "vm" });
    reasons.push({ code: "VM_CHECK_FAILED", message: `the checks inside VM ${plan.vm} could not run: ${vm.failure}`, hint: null });
  } else {
    for (const c of vm.checks) checks.push({ name: c.name, ok: c.ok, detail: c.detail ?? "", source: "vm" });
    const have = new Set(reasons.map((r) => r.code));
    for (const r of vm.reasons) if (!have.has(r.code)) reasons.push(r);
  }
  return { ...plan, checks, reasons, allowed: reasons.length === 0 };
}

/** One line for a refusal: the first reason, and how many more. */
export function refusalLine(plan: Pick<ResumePlan, "host_run_id" | "reasons">): { message: string; hint: string } {
  const [first, ...rest] = plan.reasons;
  const more = rest.length > 0 ? ` (and ${rest.length} more reason${rest.length > 1 ? "s" : ""})` : "";
  return {
    message: `cannot resume run ${plan.host_run_id}: ${first?.message ?? "refused"}${more}`,
    hint: [first?.hint, rest.length > 0 ? `see every check with \`fabrik run resume --id ${plan.host_run_id} --dry-run\`` : null].filter(Boolean).join("; ") || `see \`fabrik run resume --id ${plan.host_run_id} --dry-run\``,
  };
}
