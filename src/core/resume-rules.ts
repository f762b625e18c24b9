/**
 * The resume rules, in ONE place (pure, no I/O): the host planner (`src/resume/plan.ts`) and the VM-side
 * re-check (`src/vm/guest/resume.ts`, bundled from this same source) both call these functions, so the two
 * sides cannot disagree on a status, a boundary, what the reset changes or how a refusal reads.
 *
 * Facts behind them: smithers-engine.md, "What a crash leaves, and how a run continues" and "Legacy 0.5.0,
 * verified" (the reset experiments are quoted in {@link planStateReset}).
 */
import { ageMs, isHeartbeatFresh, lastSignOfLifeMs } from "./liveness.js";

/** How a run continues. */
export type ResumeMode =
  /** DB status `running`, engine dead: close the interrupted attempt, continue. */
  | "continue-interrupted"
  /** DB status `failed`: re-run the failed task(s), keep finished work. */
  | "retry-failed"
  /** DB status `cancelled`: continue from the cancelled task. */
  | "continue-cancelled"
  /**
   * DB status `waiting-*` right after fabrik recorded a decision (`run approve|deny`, `run signal`): the engine
   * exited when the run parked (exit 3), so continuing it means starting it again on the same run.
   */
  | "continue-waiting";

export const RESUME_MODES: readonly ResumeMode[] = ["continue-interrupted", "retry-failed", "continue-cancelled", "continue-waiting"];

/** One line per mode, for plans and banners. */
export const RESUME_MODE_TEXT: Readonly<Record<ResumeMode, string>> = {
  "continue-interrupted": "continue an interrupted run",
  "retry-failed": "retry a failed node",
  "continue-cancelled": "continue a cancelled run",
  "continue-waiting": "continue a parked run after a decision",
};

/** The engine's CLI/DB dialect (the same values as `EngineDialect` in src/vm/engine-recipe.ts). */
export type ResumeDialect = "modern" | "legacy";

/** Why a resume is refused (`code` is machine-readable and stable), and what to do about it. */
export interface ResumeReason {
  code: string;
  message: string;
  hint: string | null;
}

/** `12s`, `5m`, `3h`: an age or threshold for messages (rounded; ms in). */
export function formatAgeMs(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

// ---- status -> mode ----------------------------------------------------------------------------------------

/**
 * The mode a DB run status calls for, or why it cannot be resumed:
 * `running` → continue-interrupted, `failed` → retry-failed, `cancelled` → continue-cancelled;
 * `finished` → RUN_FINISHED; `continued` (continued as a new run), `waiting-*`, `paused` and anything unknown
 * → RUN_NOT_RESUMABLE — except `waiting-*`/`paused` with `afterDecision` (fabrik just recorded an approval, a denial
 * or a signal) → continue-waiting.
 */
export function modeForStatus(status: string, opts: { afterDecision?: boolean } = {}): { mode: ResumeMode } | { reason: ResumeReason } {
  // After `run approve|deny|signal` recorded the decision, a parked run is continued like an interrupted one.
  if (opts.afterDecision && (status.startsWith("waiting-") || status === "paused")) return { mode: "continue-waiting" };
  switch (status) {
    case "running":
      return { mode: "continue-interrupted" };
    case "failed":
      return { mode: "retry-failed" };
    case "cancelled":
      return { mode: "continue-cancelled" };
    case "finished":
      return { reason: { code: "RUN_FINISHED", message: "the run already finished; there is nothing to resume", hint: "start a new run with `fabrik run`" } };
    case "continued":
      return { reason: { code: "RUN_NOT_RESUMABLE", message: "the run was continued as a new run (status continued)", hint: "resume the run that continued it" } };
    default:
      return {
        reason: {
          code: "RUN_NOT_RESUMABLE",
          message: `the run is ${status}; fabrik resumes only interrupted (running with a dead engine), failed or cancelled runs`,
          hint: status.startsWith("waiting") || status === "paused" ? "a waiting run continues when its condition is met: `fabrik runs why` names it (`fabrik run approve`, `run deny`, `run signal` answer it)" : null,
        },
      };
  }
}

// ---- changing the engine on resume (guide Issue 4) ---------------------------------------------------------------

/**
 * May a run whose DB speaks `dbDialect` be resumed with engine `to` (dialect `toDialect`)? Within a dialect the
 * engines share the DB schema; across dialects the new engine cannot read (or would corrupt) the run's DB.
 */
export function engineChangeReason(from: string | null, to: string, toDialect: ResumeDialect, dbDialect: ResumeDialect): ResumeReason | null {
  if (toDialect === dbDialect) return null;
  return {
    code: "ENGINE_DIALECT_CHANGE",
    message: `engine ${to} speaks the ${toDialect} dialect, but the run's DB has the ${dbDialect} schema${from ? ` (engine ${from})` : ""}: it cannot continue this run`,
    hint: `resume with an engine of the ${dbDialect} dialect, or start a new run with \`fabrik run --engine ${to}\``,
  };
}

// ---- the engine heartbeat (0.32) ---------------------------------------------------------------------------

/** What {@link engineHeartbeatCheck} concluded. */
export interface HeartbeatVerdict {
  /** Age of the last sign of life (max(heartbeat_at_ms, started_at_ms)) at `nowMs`, ms; null when none is recorded. */
  ageMs: number | null;
  /** The engine may still be running: age ≤ threshold (inclusive, src/core/liveness.ts). */
  fresh: boolean;
  /** The check passes: not fresh, or fresh and overridden by `--force`. */
  ok: boolean;
  /** One line for the check list, e.g. `engine heartbeat 12s old (stale after 30s)`. */
  detail: string;
  /** HEARTBEAT_FRESH when refused, else null. */
  reason: ResumeReason | null;
  /** A warning when `--force` overrode a fresh heartbeat, else null. */
  warning: string | null;
}

/**
 * May a `running` 0.32 run be resumed as far as its engine heartbeat goes? The engine refuses `up --resume`
 * while the heartbeat is fresh (RUN_STILL_RUNNING) unless `--force`; fabrik applies the same rule first.
 * @param run the DB row's times, epoch ms on the VM clock (null = not recorded)
 * @param nowMs the VM clock, epoch ms (the probe's `now_ms` on the host, `Date.now()` in the VM)
 * @param staleAfterMs the configured threshold (`thresholds.engine_heartbeat_stale_ms`), ms
 * @param force `--force`: a fresh heartbeat passes with a warning (a living process never does; see
 *   {@link livingProcessReason})
 */
export function engineHeartbeatCheck(
  run: { heartbeat_at_ms: number | null; started_at_ms: number | null },
  nowMs: number,
  staleAfterMs: number,
  force: boolean,
): HeartbeatVerdict {
  const age = ageMs(lastSignOfLifeMs(run), nowMs);
  const fresh = isHeartbeatFresh(age, staleAfterMs) === true;
  if (age === null) return { ageMs: null, fresh: false, ok: true, detail: "no engine heartbeat recorded", reason: null, warning: null };
  const detail = `engine heartbeat ${formatAgeMs(age)} old (stale after ${formatAgeMs(staleAfterMs)})`;
  if (!fresh) return { ageMs: age, fresh, ok: true, detail, reason: null, warning: null };
  if (force) {
    return { ageMs: age, fresh, ok: true, detail: `${detail}; fresh, overridden by --force`, reason: null, warning: `--force: the engine heartbeat is only ${formatAgeMs(age)} old` };
  }
  return {
    ageMs: age,
    fresh,
    ok: false,
    detail,
    reason: {
      code: "HEARTBEAT_FRESH",
      message: `the engine heartbeat is only ${formatAgeMs(age)} old: the engine may still be running`,
      hint: `wait until it is older than ${formatAgeMs(staleAfterMs)}, or pass --force if you are sure no engine runs (a living process still refuses)`,
    },
    warning: null,
  };
}

// ---- processes ---------------------------------------------------------------------------------------------

/**
 * The refusal for a process of the run that is alive (a zombie counts, as the engine counts it). `--force`
 * never overrides it.
 * @param p.role what the pid is, without its source, e.g. `engine owner`, `launcher`
 * @param p.owner true for the DB's `runtime_owner_id` (code OWNER_ALIVE), else PROCESS_ALIVE
 * @param p.vm the VM's name, or null inside the VM ("in the VM")
 */
export function livingProcessReason(p: { role: string; pid: number; zombie: boolean; owner: boolean; vm: string | null; hostRunId: number }): ResumeReason {
  return {
    code: p.owner ? "OWNER_ALIVE" : "PROCESS_ALIVE",
    message: `the ${p.role} process (pid ${p.pid}) is alive ${p.vm === null ? "in the VM" : `in VM ${p.vm}`}${p.zombie ? " (a zombie still counts)" : ""}`,
    hint: `--force never overrides a living process; wait for it (\`fabrik run attach --id ${p.hostRunId}\`) or stop it first`,
  };
}

// ---- refusals both sides can meet --------------------------------------------------------------------------

/** `in VM x` on the host, `in the VM` inside it. */
const where = (vm: string | null) => (vm === null ? "in the VM" : `in VM ${vm}`);

/** Refusals about the control dir and the DB, worded the same on both sides (`vm` null inside the VM). */
export const refusals = {
  controlDirMissing: (dir: string, vm: string | null, hint: string | null = null): ResumeReason => ({
    code: "CONTROL_DIR_MISSING",
    message: `the run's control dir ${dir} does not exist ${where(vm)}`,
    hint,
  }),
  dbMissing: (dbPath: string, controlDir: string, vm: string | null): ResumeReason => ({
    code: "DB_MISSING",
    message: `the Smithers DB ${dbPath} does not exist ${where(vm)}`,
    hint: `fabrik cannot resume without it; restore it (backups are kept in ${controlDir}/backups)`,
  }),
  dbUnreadable: (dbPath: string, error: string, controlDir: string): ResumeReason => ({
    code: "DB_UNREADABLE",
    message: `cannot read the Smithers DB ${dbPath}: ${error}`,
    hint: `restore it from ${controlDir}/backups, or inspect it with \`fabrik vm shell\``,
  }),
  dbUnknownSchema: (dbPath: string): ResumeReason => ({
    code: "DB_UNKNOWN_SCHEMA",
    message: `${dbPath} is not a Smithers DB fabrik knows (no _smithers_runs/_smithers_nodes/_smithers_attempts tables)`,
    hint: null,
  }),
  dbDialectMismatch: (schema: string, dialect: ResumeDialect, engineVersion: string | null): ResumeReason => ({
    code: "DB_DIALECT_MISMATCH",
    message: `the DB has the ${schema} schema but the run's engine${engineVersion ? ` ${engineVersion}` : ""} is ${dialect}`,
    hint: null,
  }),
  runNotInDb: (runId: string, dbPath: string, runsInDb: number | null, hint: string | null = null): ResumeReason => ({
    code: "RUN_NOT_IN_DB",
    message: `run ${runId} is not in ${dbPath}${runsInDb === null ? "" : ` (${runsInDb} other runs)`}`,
    hint,
  }),
};

// ---- what the state reset changes --------------------------------------------------------------------------

/** An attempt the reset changes (attempt null when only the node is known). */
export interface PlannedAttemptReset {
  node_id: string;
  iteration: number;
  attempt: number | null;
  from: string;
  to: "cancelled";
}
/** A node the reset changes. */
export interface PlannedNodeReset {
  node_id: string;
  iteration: number;
  from: string;
  to: "pending";
}
/** Everything the reset changes, scoped to ONE run. */
export interface PlannedReset {
  attempts: PlannedAttemptReset[];
  nodes: PlannedNodeReset[];
  /** 0.32 `running` run: heartbeat and owner cleared (their current values shown). */
  run: { heartbeat_at_ms: number | null; runtime_owner_id: string | null; to: null } | null;
  /** What the engine itself resets (0.32 `retry-task`), or null. */
  by_engine: string | null;
}

/** The facts the reset is computed from: this run's row and its in-progress / failed nodes and attempts. */
export interface ResetFacts {
  dialect: ResumeDialect;
  mode: ResumeMode;
  run: { status: string; heartbeat_at_ms: number | null; runtime_owner_id: string | null };
  inProgressAttempts: readonly { node_id: string; iteration: number; attempt: number | null }[];
  inProgressNodes: readonly { node_id: string; iteration: number }[];
  /** Nodes in state `failed`. */
  failedNodes: readonly { node_id: string; iteration: number }[];
  /** `failed` attempts of those nodes (the host knows only each node's latest attempt; the VM knows them all). */
  failedAttempts: readonly { node_id: string; iteration: number; attempt: number | null }[];
}

/**
 * What the state reset changes (run only; finished work and other runs are never touched), and the node
 * `retry-task` re-runs when the engine does the reset itself. Verified against the real engines:
 * - every mode: attempts `in-progress` → `cancelled`; nodes `in-progress` → `pending` (0.32 `up --resume`
 *   needs it to start at once; on 0.5 it gives the same outcome and keeps a later plain `run` from marking the
 *   run finished). Never `failed`: resume would then fail the run.
 * - 0.32, status `running`: `heartbeat_at_ms` and `runtime_owner_id` → NULL (also avoids a false "owner alive"
 *   when the pid was reused after a reboot).
 * - failed run, 0.32 with exactly ONE failed node: no DB change; `smithers retry-task --node-id` resets it.
 * - failed run otherwise (0.5, or several failed 0.32 nodes): failed nodes → `pending` and THEIR failed
 *   attempts → `cancelled` (the engine counts `failed` attempts against `retries`, not `cancelled` ones).
 * - cancelled run: nothing beyond the in-progress rule.
 */
export function planStateReset(f: ResetFacts): { reset: PlannedReset; retryNode: string | null } {
  const reset: PlannedReset = {
    attempts: f.inProgressAttempts.map((a) => ({ node_id: a.node_id, iteration: a.iteration, attempt: a.attempt, from: "in-progress", to: "cancelled" })),
    nodes: f.inProgressNodes.map((n) => ({ node_id: n.node_id, iteration: n.iteration, from: "in-progress", to: "pending" })),
    run: null,
    by_engine: null,
  };
  if (f.dialect === "modern" && f.run.status === "running" && (f.run.heartbeat_at_ms !== null || f.run.runtime_owner_id !== null)) {
    reset.run = { heartbeat_at_ms: f.run.heartbeat_at_ms, runtime_owner_id: f.run.runtime_owner_id, to: null };
  }
  let retryNode: string | null = null;
  if (f.mode === "retry-failed") {
    const only = f.failedNodes.length === 1 ? f.failedNodes[0] : undefined;
    if (f.dialect === "modern" && only) {
      retryNode = only.node_id;
      reset.by_engine = `smithers retry-task resets ${only.node_id} and its dependents, then continues`;
    } else {
      for (const a of f.failedAttempts) reset.attempts.push({ node_id: a.node_id, iteration: a.iteration, attempt: a.attempt, from: "failed", to: "cancelled" });
      for (const n of f.failedNodes) reset.nodes.push({ node_id: n.node_id, iteration: n.iteration, from: "failed", to: "pending" });
    }
  }
  return { reset, retryNode };
}
