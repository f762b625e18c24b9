/**
 * The engine's liveness rule, in ONE place: the status derivation (host), the resume planner (host) and the
 * resume re-check (guest, bundled from the same source) all call these functions, so they cannot disagree on
 * a boundary.
 *
 * Engine rule (smithers-engine.md, "Status vocabularies"): for a `running` run, the last sign of life is
 * max(heartbeat_at_ms, started_at_ms); WITHIN RUN_HEARTBEAT_STALE_MS (30 s by default, configurable as
 * `thresholds.engine_heartbeat_stale_ms`) the engine counts as alive; OLDER it is stale (owner pid alive) or
 * orphaned (no owner, or its pid is dead). "Within" is inclusive: an age equal to the threshold is still fresh.
 * The same convention applies to the launcher's heartbeat.json (`thresholds.launcher_heartbeat_stale_ms`).
 */

/** The engine's last sign of life for a run, epoch ms (VM clock): max(heartbeat_at_ms, started_at_ms); null when neither is known. */
export function lastSignOfLifeMs(run: { heartbeat_at_ms: number | null; started_at_ms: number | null }): number | null {
  const last = Math.max(run.heartbeat_at_ms ?? 0, run.started_at_ms ?? 0);
  return last > 0 ? last : null;
}

/** Age of a timestamp at `nowMs` (both epoch ms on the same clock), never negative; null when the timestamp is unknown. */
export function ageMs(atMs: number | null, nowMs: number): number | null {
  return atMs === null ? null : Math.max(0, nowMs - atMs);
}

/**
 * Is a heartbeat of this age fresh? `ageMs <= staleAfterMs` (the boundary is fresh, see the module doc);
 * null when the age is unknown.
 * @param ageMs age of the heartbeat, ms
 * @param staleAfterMs the configured threshold, ms (never a literal at the call site)
 */
export function isHeartbeatFresh(ageMs: number | null, staleAfterMs: number): boolean | null {
  return ageMs === null ? null : ageMs <= staleAfterMs;
}
