/**
 * Step 2 of the status authority: the decision table. An ordered list of rules over {@link RunFacts}; the
 * FIRST rule whose `when` holds gives the run's status and the one-line reason. Pure, and the only place a
 * live status is decided. `docs/status.md` prints this table (a unit test keeps the two in step), so each
 * rule has a stable `id`.
 *
 * Principles (the guide's and the engine's):
 * - the VM is the source of truth; the cache is what fabrik last knew;
 * - never `running` for a run whose engine process is dead (→ `orphaned`);
 * - never dead because the VM is unreachable (that is decided before this table: `unreachable`);
 * - the engine's own final record wins over process facts (`finished` → `done`, …);
 * - every combination the table does not expect ends in `unknown` with a reason.
 */
import { isParkedEngineStatus, isTerminalEngineStatus, runStatusOfEngineExit, runStatusOfTerminal, type ENGINE_TERMINAL_STATUSES, type RunStatus } from "../../core/status.js";
import { formatDuration } from "../../core/units.js";
import type { RunFacts, StatusThresholds } from "./facts.js";

/** One row of the decision table. */
export interface StatusRule {
  /** Stable name (docs/status.md, `--json` `rule`). */
  id: string;
  /** The row as a user reads it in docs/status.md: the condition. */
  doc: string;
  when: (f: RunFacts) => boolean;
  /** The status, as a value or computed from the facts (documented in `docStatus`). */
  status: RunStatus | ((f: RunFacts) => RunStatus);
  docStatus: string;
  reason: (f: RunFacts, t: StatusThresholds) => string;
}

const dbAbsent = (f: RunFacts) => f.db === "missing" || f.db === "no-run";

/** The decision table, in order: the first matching rule decides. */
export const STATUS_RULES: readonly StatusRule[] = [
  {
    id: "no-db-engine-starting",
    doc: "no DB (or no run row) yet, engine process alive",
    when: (f) => dbAbsent(f) && f.engineAlive === true,
    status: "running",
    docStatus: "`running` (starting)",
    reason: (f) => (f.db === "missing" ? "engine process alive; its DB does not exist yet (starting)" : "engine alive; the run is not yet in the DB (starting)"),
  },
  {
    id: "no-db-engine-exited",
    doc: "no DB (or no run row), engine not alive, the launcher recorded the engine's exit code",
    when: (f) => dbAbsent(f) && f.exitCode !== null,
    status: (f) => runStatusOfEngineExit(f.exitCode!),
    docStatus: "by the engine's exit code: 0 `done`, 2 `cancelled`, 3 `waiting-approval`, other `failed`",
    reason: (f) => `the engine exited with code ${f.exitCode} and its DB has no record of the run${f.db === "missing" ? ` (no DB at ${f.dbPath})` : ""}`,
  },
  {
    id: "no-db",
    doc: "no DB (or no run row), no engine process",
    when: (f) => dbAbsent(f),
    status: "unknown",
    docStatus: "`unknown`",
    reason: (f) =>
      f.controlDirExists === false
        ? "neither the control dir nor the DB exists in the VM"
        : f.db === "missing"
          ? `no DB at ${f.dbPath} and no engine process`
          : `the run is not in ${f.dbPath} and no engine process lives`,
  },
  {
    id: "db-unreadable-engine-alive",
    doc: "DB unreadable right now (e.g. locked), engine alive",
    when: (f) => f.db === "unreadable" && f.engineAlive === true,
    status: "running",
    docStatus: "`running`",
    reason: (f) => `engine process alive; DB unreadable right now (${f.dbError})`,
  },
  {
    id: "db-unreadable",
    doc: "DB unreadable (corrupt, not a database), no engine process",
    when: (f) => f.db === "unreadable",
    status: "unknown",
    docStatus: "`unknown`",
    reason: (f) => `DB unreadable (${f.dbError}) and no engine process`,
  },
  {
    id: "db-unknown-schema",
    doc: "the DB has no `_smithers_runs` table",
    when: (f) => f.db === "unknown-schema",
    status: "unknown",
    docStatus: "`unknown`",
    reason: () => "the file has no _smithers_runs table (not a Smithers DB, or an unknown schema)",
  },
  {
    id: "engine-recorded-end",
    doc: "engine run status finished / continued / failed / cancelled (any process facts)",
    when: (f) => f.engineRunStatus !== null && isTerminalEngineStatus(f.engineRunStatus),
    status: (f) => runStatusOfTerminal(f.engineRunStatus as (typeof ENGINE_TERMINAL_STATUSES)[number]),
    docStatus: "`done` (finished, continued) / `failed` / `cancelled`",
    reason: (f) => `the engine recorded the run as ${f.engineRunStatus}`,
  },
  {
    id: "engine-parked",
    doc: "engine run status waiting-approval / -event / -timer / -quota, paused",
    when: (f) => f.engineRunStatus !== null && isParkedEngineStatus(f.engineRunStatus),
    status: (f) => f.engineRunStatus as RunStatus,
    docStatus: "that status",
    reason: (f) => `the engine is parked: ${f.engineRunStatus}`,
  },
  {
    id: "running-engine-stuck",
    doc: "engine run status running, engine process alive, engine heartbeat older than the threshold",
    when: (f) => f.engineRunStatus === "running" && f.engineAlive === true && f.engineHeartbeatFresh === false,
    status: "stale",
    docStatus: "`stale`",
    reason: (f, t) => `engine process alive but its heartbeat is ${formatDuration(f.engineHeartbeatAgeMs!)} old (stale after ${formatDuration(t.engineHeartbeatStaleMs)})`,
  },
  {
    id: "running-engine-alive",
    doc: "engine run status running, engine process alive, heartbeat fresh (or legacy: none)",
    when: (f) => f.engineRunStatus === "running" && f.engineAlive === true,
    status: "running",
    docStatus: "`running`",
    reason: (f) =>
      !f.hasEngineHeartbeat
        ? "engine process alive (legacy engine: no DB heartbeat)"
        : f.engineHeartbeatFresh === null
          ? "engine process alive; it has not written a heartbeat since it (re)started"
          : "engine alive and its heartbeat is fresh",
  },
  {
    id: "running-engine-dead",
    doc: "engine run status running, every known engine process dead (a zombie counts as alive)",
    when: (f) => f.engineRunStatus === "running" && f.engineAlive === false,
    status: "orphaned",
    docStatus: "`orphaned`",
    reason: (f) => `the DB says running but no engine process lives in the VM${f.exitCode !== null ? ` (launcher recorded exit code ${f.exitCode})` : ""}`,
  },
  {
    id: "running-no-pid-heartbeat-fresh",
    doc: "engine run status running, no pid known, engine heartbeat fresh",
    when: (f) => f.engineRunStatus === "running" && f.engineHeartbeatFresh === true,
    status: "running",
    docStatus: "`running`",
    reason: () => "engine heartbeat is fresh (no pid to check)",
  },
  {
    id: "running-no-pid-heartbeat-old",
    doc: "engine run status running, no pid known, engine heartbeat older than the threshold",
    when: (f) => f.engineRunStatus === "running" && f.engineHeartbeatFresh === false,
    status: "orphaned",
    docStatus: "`orphaned`",
    reason: (f) => `engine heartbeat is ${formatDuration(f.engineHeartbeatAgeMs!)} old and no owner process can be found`,
  },
  {
    id: "running-no-pid-launcher-fresh",
    doc: "engine run status running, no pid and no engine heartbeat (legacy), heartbeat.json fresh",
    when: (f) => f.engineRunStatus === "running" && f.launcherHeartbeatFresh === true,
    status: "running",
    docStatus: "`running`",
    reason: () => "launcher heartbeat is fresh (no engine heartbeat, no pid)",
  },
  {
    id: "running-no-facts",
    doc: "engine run status running, no pid, no heartbeat to judge by",
    when: (f) => f.engineRunStatus === "running",
    status: "unknown",
    docStatus: "`unknown`",
    reason: () => "the DB says running but there is no heartbeat and no pid to judge by",
  },
  {
    id: "engine-status-unknown",
    doc: "any other engine run status",
    when: () => true,
    status: "unknown",
    docStatus: "`unknown`",
    reason: (f) => `the engine reports an unknown run status ${JSON.stringify(f.engineRunStatus)}`,
  },
];

/** The verdict of the decision table. */
export interface Verdict {
  status: RunStatus;
  /** The rule that decided ({@link StatusRule.id}). */
  rule: string;
  reason: string;
}

/** Apply the decision table: the first matching rule decides. Pure. */
export function judge(f: RunFacts, t: StatusThresholds): Verdict {
  for (const r of STATUS_RULES) {
    if (!r.when(f)) continue;
    return { status: typeof r.status === "function" ? r.status(f) : r.status, rule: r.id, reason: r.reason(f, t) };
  }
  /* c8 ignore next: the last rule always matches */
  throw new Error("status rules: no rule matched");
}

/** The decision table as Markdown rows (docs/status.md is checked against it). */
export function statusTableMarkdown(): string {
  const rows = STATUS_RULES.map((r, i) => `| ${i + 1} | \`${r.id}\` | ${r.doc} | ${r.docStatus} |`);
  return ["| # | rule | when | → status |", "|---|---|---|---|", ...rows].join("\n");
}
