/**
 * The status vocabularies, in one place.
 *
 * - {@link SmithersRunStatus} / {@link SmithersNodeState} / {@link SmithersAttemptState}: what the engine
 *   stores (smithers-engine.md, "Status vocabularies").
 * - {@link HostStatus}: what fabrik's registry caches for a run.
 * - {@link EffectiveStatus}: what fabrik concludes after reconciling the cache with a live observation.
 */

export const SMITHERS_RUN_STATUSES = [
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
export type SmithersRunStatus = (typeof SMITHERS_RUN_STATUSES)[number];

export const SMITHERS_NODE_STATES = [
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
export type SmithersNodeState = (typeof SMITHERS_NODE_STATES)[number];

export const SMITHERS_ATTEMPT_STATES = ["in-progress", "finished", "failed", "cancelled"] as const;
export type SmithersAttemptState = (typeof SMITHERS_ATTEMPT_STATES)[number];

/**
 * Host statuses cached in the registry.
 * - `launching`: row inserted, launch not yet confirmed (never shown as running).
 * - `running`, `waiting`: the engine was last seen working / waiting for approval, an event, a timer or quota.
 * - `done`, `failed`, `cancelled`: terminal outcomes.
 * - `unknown`: imported or observed with no usable status.
 */
export const HOST_STATUSES = ["launching", "running", "waiting", "done", "failed", "cancelled", "unknown"] as const;
export type HostStatus = (typeof HOST_STATUSES)[number];

/** Terminal host statuses: the run will not change without a resume. */
export const TERMINAL_HOST_STATUSES: readonly HostStatus[] = ["done", "failed", "cancelled"];

/**
 * Effective statuses derived by `deriveRunState`.
 * - `running`: engine alive and its heartbeat fresh.
 * - `stale`: engine process alive but its heartbeat is old (stuck).
 * - `orphaned`: the DB says running but no engine process lives (crashed, killed, VM rebooted).
 * - `done` / `failed` / `cancelled`: terminal, as the engine recorded.
 * - `waiting-approval|event|timer|quota`, `paused`: the engine is parked by design.
 * - `launching`: fabrik is starting it.
 * - `unknown`: the facts contradict each other or are missing (with a reason).
 * - `unreachable`: the VM could not be asked; cached values are shown.
 */
export const EFFECTIVE_STATUSES = [
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
export type EffectiveStatus = (typeof EFFECTIVE_STATUSES)[number];

/** Map an engine run status to the host vocabulary (`finished` → `done`, `waiting-*`/`paused` → `waiting`, `continued` → `done`). */
export function hostStatusFromSmithers(status: string): HostStatus {
  switch (status) {
    case "running":
      return "running";
    case "finished":
    case "continued":
      return "done";
    case "failed":
      return "failed";
    case "cancelled":
      return "cancelled";
    case "waiting-approval":
    case "waiting-event":
    case "waiting-timer":
    case "waiting-quota":
    case "paused":
      return "waiting";
    default:
      return "unknown";
  }
}

/** Map a host status to the engine's word for it, for messages (`done` → `finished`). */
export function smithersStatusFromHost(status: HostStatus): SmithersRunStatus | undefined {
  switch (status) {
    case "done":
      return "finished";
    case "running":
    case "failed":
    case "cancelled":
      return status;
    default:
      return undefined;
  }
}

/** Map an effective status to the host status to cache (undefined: keep the cached one, e.g. unreachable). */
export function hostStatusFromEffective(status: EffectiveStatus): HostStatus | undefined {
  switch (status) {
    case "running":
    case "stale":
      return "running";
    case "orphaned":
      return "failed";
    case "done":
    case "failed":
    case "cancelled":
      return status;
    case "waiting-approval":
    case "waiting-event":
    case "waiting-timer":
    case "waiting-quota":
    case "paused":
      return "waiting";
    case "launching":
      return "launching";
    case "unknown":
    case "unreachable":
      return undefined;
  }
}

/** Effective statuses after which a run will not progress by itself. */
export const FINAL_EFFECTIVE_STATUSES: readonly EffectiveStatus[] = ["done", "failed", "cancelled", "orphaned"];

export function isHostStatus(s: string): s is HostStatus {
  return (HOST_STATUSES as readonly string[]).includes(s);
}
