/**
 * The probe request's defaults, apart from the zod schemas of `probe-schema.ts`: the host fills them before every
 * call, and a call must not wait for zod (the answer's validation loads it while the VM works).
 */
import type { ProbeRequest, ProbeRequestFull } from "./probe-schema.js";

/**
 * Fill a request's defaults (the same as {@link ProbeRequestSchema}'s; a unit test holds them equal). The request is
 * the host's own, typed by the compiler, so it is not validated again at run time: validation happens once, at the
 * trust boundary — every answer from the VM — and the guest caps every value it reads.
 */
export function probeRequestWithDefaults(req: ProbeRequest): ProbeRequestFull {
  return {
    v: req.v,
    runs: req.runs,
    nodes: req.nodes ?? false,
    max_nodes: req.max_nodes ?? 500,
    row_size_warn_bytes: req.row_size_warn_bytes ?? 100 * 1024,
    discover_roots: req.discover_roots ?? [],
    error_chars: req.error_chars ?? 500,
    ...(req.health === undefined
      ? {}
      : {
          health: {
            work_dir: req.health.work_dir,
            engines_dir: req.health.engines_dir,
            runs_roots: req.health.runs_roots ?? [],
            known_control_dirs: req.health.known_control_dirs ?? [],
            measure_dirs: req.health.measure_dirs ?? [],
          },
        }),
  };
}

