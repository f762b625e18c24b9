/**
 * The status vocabularies and the sets built from them, defined ONCE. Every other file imports these; no
 * list of statuses is spelled out anywhere else.
 *
 * Two vocabularies, kept apart on purpose:
 * - what the ENGINE stores (smithers-engine.md, "Status vocabularies"): {@link ENGINE_RUN_STATUSES},
 *   {@link NODE_STATES}, {@link ATTEMPT_STATES};
 * - what FABRIK concludes about a run: {@link RUN_STATUSES}, the verdict of the status authority
 *   (`src/fabrik/status/`), which the registry also caches (minus `unreachable`, which is never cached).
 */

// ---- the engine's words -------------------------------------------------------------------------

/** `_smithers_runs.status` values. */
export const ENGINE_RUN_STATUSES = [
  "running",
  "waiting-approval",
  "waiting-event",
  "waiting-timer",
  "waiting-quota",
  "paused",
  "finished",
  "continued",
  "failed",
  "cancelled",
] as const;
export type EngineRunStatus = (typeof ENGINE_RUN_STATUSES)[number];

/** Engine run statuses that are the engine's own final record: the run will not change without a resume. */
export const ENGINE_TERMINAL_STATUSES = ["finished", "continued", "failed", "cancelled"] as const satisfies readonly EngineRunStatus[];

/** Engine run statuses in which the engine is parked by design (an approval, an event, a timer, quota, a pause). */
export const ENGINE_PARKED_STATUSES = ["waiting-approval", "waiting-event", "waiting-timer", "waiting-quota", "paused"] as const satisfies readonly EngineRunStatus[];

/** `_smithers_nodes.state` values. */
export const NODE_STATES = [
  "pending",
  "in-progress",
  "waiting-approval",
  "waiting-event",
  "waiting-timer",
  "waiting-quota",
  "waiting-bound",
  "bound-stale",
  "finished",
  "failed",
  "cancelled",
  "skipped",
] as const;
export type NodeState = (typeof NODE_STATES)[number];

/** Node states that count as work done (progress and "continuing from" skip them). */
export const NODE_DONE_STATES = ["finished", "skipped"] as const satisfies readonly NodeState[];

/** `_smithers_attempts.state` values. */
export const ATTEMPT_STATES = ["in-progress", "finished", "failed", "cancelled"] as const;
export type AttemptState = (typeof ATTEMPT_STATES)[number];

// ---- fabrik's verdict -----------------------------------------------------------------------------

/**
 * What fabrik concludes about a run (`effective_status` in JSON; the registry caches the last live verdict):
 * - `launching`: fabrik is starting it (only fabrik's launch sets this);
 * - `running`: the engine lives and its heartbeat is fresh;
 * - `stale`: the engine process lives but its heartbeat is old (stuck);
 * - `orphaned`: the engine's record says running, but no engine process lives (crashed, killed, VM rebooted);
 * - `done` / `failed` / `cancelled`: the engine's own final record (`finished`/`continued` → `done`);
 * - `waiting-approval|event|timer|quota`, `paused`: parked by design;
 * - `unknown`: the facts are missing or contradict each other (always with a reason);
 * - `unreachable`: the VM could not be asked (never cached; the cached values are shown).
 */
export const RUN_STATUSES = [
  "launching",
  "running",
  "stale",
  "orphaned",
  "done",
  "failed",
  "cancelled",
  "waiting-approval",
  "waiting-event",
  "waiting-timer",
  "waiting-quota",
  "paused",
  "unknown",
  "unreachable",
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** The verdicts the registry may cache (all but `unreachable`: an unreachable VM never overwrites what was known). */
export type CachedRunStatus = Exclude<RunStatus, "unreachable">;

/** The run ended by the engine's own record. */
export const TERMINAL_RUN_STATUSES = ["done", "failed", "cancelled"] as const satisfies readonly RunStatus[];

/** Parked by design: continues when its condition is met. */
export const PARKED_RUN_STATUSES = ["waiting-approval", "waiting-event", "waiting-timer", "waiting-quota", "paused"] as const satisfies readonly RunStatus[];

/**
 * Active: the run may be doing (or about to do) work in its VM, or fabrik cannot tell that it is not. `vm stop`
 * and `vm delete` refuse while a VM has one; `runs watch` follows them by default; `vm list` counts them.
 */
export const ACTIVE_RUN_STATUSES = ["launching", "running", "stale", ...PARKED_RUN_STATUSES, "unknown"] as const satisfies readonly RunStatus[];

/** Will not progress by itself: ended by the engine, or orphaned (needs `run resume`). */
export const FINAL_RUN_STATUSES = [...TERMINAL_RUN_STATUSES, "orphaned"] as const satisfies readonly RunStatus[];

/**
 * Stuck: will not make progress without someone acting, though the engine did not record an end — its engine
 * lives but does not beat (`stale`), it is gone (`orphaned`), or the facts do not add up (`unknown`). `runs list
 * --stuck` lists these, plus running runs whose task has been in progress too long (TASK_RUNNING_LONG).
 */
export const STUCK_RUN_STATUSES = ["stale", "orphaned", "unknown"] as const satisfies readonly RunStatus[];

/** Cached statuses a run can leave without a new engine record: what a live `--status` filter must look at. */
export const UNSETTLED_RUN_STATUSES = [...ACTIVE_RUN_STATUSES, "orphaned"] as const satisfies readonly RunStatus[];

/** Names accepted by `--status` that stand for several statuses. */
export const RUN_STATUS_GROUPS = {
  waiting: PARKED_RUN_STATUSES,
  active: ACTIVE_RUN_STATUSES,
  ended: FINAL_RUN_STATUSES,
} as const satisfies Record<string, readonly RunStatus[]>;

const has = <T extends string>(list: readonly T[], s: string): s is T => (list as readonly string[]).includes(s);

export function isRunStatus(s: string): s is RunStatus {
  return has(RUN_STATUSES, s);
}
export function isActiveRunStatus(s: string): boolean {
  return has(ACTIVE_RUN_STATUSES, s);
}
export function isFinalRunStatus(s: string): boolean {
  return has(FINAL_RUN_STATUSES, s);
}
export function isTerminalEngineStatus(s: string): boolean {
  return has(ENGINE_TERMINAL_STATUSES, s);
}
export function isParkedEngineStatus(s: string): s is (typeof ENGINE_PARKED_STATUSES)[number] {
  return has(ENGINE_PARKED_STATUSES, s);
}

/** fabrik's verdict for an engine's final record: `finished`/`continued` → `done`, `failed`, `cancelled`. */
export function runStatusOfTerminal(engineStatus: (typeof ENGINE_TERMINAL_STATUSES)[number]): (typeof TERMINAL_RUN_STATUSES)[number] {
  return engineStatus === "failed" ? "failed" : engineStatus === "cancelled" ? "cancelled" : "done";
}

/**
 * The engine's exit code as a status, for when its DB cannot tell (smithers-engine.md, "Exit codes of `up`"; 0.5
 * the same): 0 finished → `done`, 2 cancelled, 3 waiting (an approval, event or timer) → `waiting-approval`,
 * anything else (1 failed, 4 refused, 137 killed, …) → `failed`.
 */
export function runStatusOfEngineExit(code: number): RunStatus {
  return code === 0 ? "done" : code === 2 ? "cancelled" : code === 3 ? "waiting-approval" : "failed";
}

/**
 * Expand `--status` words (comma-separated or repeated; statuses and the group names of
 * {@link RUN_STATUS_GROUPS}) into statuses. Returns the unknown word, if any, instead of throwing.
 */
export function expandStatusFilter(words: readonly string[]): { statuses: RunStatus[]; unknown: string | undefined } {
  const out = new Set<RunStatus>();
  for (const w of words.flatMap((x) => x.split(","))) {
    const v = w.trim();
    if (!v) continue;
    if (v in RUN_STATUS_GROUPS) for (const s of RUN_STATUS_GROUPS[v as keyof typeof RUN_STATUS_GROUPS]) out.add(s);
    else if (isRunStatus(v)) out.add(v);
    else return { statuses: [...out], unknown: v };
  }
  return { statuses: [...out], unknown: undefined };
}
