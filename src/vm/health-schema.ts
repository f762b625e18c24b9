/**
 * The VM health part of the probe's wire format (`health` in `ProbeRequest` / `ProbeResponse`,
 * src/vm/probe-schema.ts): the facts `fabrik doctor`, `fabrik fleet`, `fabrik supervise` and `fabrik runs prune`
 * need about a VM as a whole, gathered in the SAME round trip as the run facts by the guest probe
 * (src/vm/guest/lib/health.ts). The VM is untrusted: every answer is validated with these schemas, strings are
 * length-capped and lists bounded.
 *
 * Units: sizes in bytes, times epoch ms on the VM's clock (the probe's `now_ms`).
 */
import { z } from "zod";

const str = (max: number) => z.string().max(max);
const int = z.number().int();

/** What the host asks. Paths are absolute in the guest. */
export const HealthRequestSchema = z.object({
  /** The folder whose filesystem's free space is reported (the work dir `~/work`, or its nearest existing parent). */
  work_dir: str(4096),
  /** Where engines are installed (`~/.fabrik/engines`): one sub-folder per version. */
  engines_dir: str(4096),
  /** Roots whose sub-folders are control dirs (`~/work/<vm>/.runs`): listed, with their lock files tested. */
  runs_roots: z.array(str(4096)).max(20).default([]),
  /** Control dirs the registry knows for this VM: the guest says which of them are gone. */
  known_control_dirs: z.array(str(4096)).max(5000).default([]),
  /** Folders whose total size (bytes, symlinks not followed) the host wants (`runs prune` lists what goes). */
  measure_dirs: z.array(str(4096)).max(1000).default([]),
});
export type HealthRequest = z.input<typeof HealthRequestSchema>;

/** One engine folder under `engines_dir`. */
export const EngineFactSchema = z.object({
  /** The folder's name: the engine version (`0.32.0`). */
  version: str(100),
  /** The install marker (`.fabrik-engine.json`, written last) is present and the engine's `smithers` bin exists. */
  installed: z.boolean(),
  /** Its bun is executable (`.runtime/node_modules/.bin/bun`). */
  bun: z.boolean(),
  /** The bun version the marker records, when readable. */
  bun_version: str(40).nullable(),
  /** What is wrong with the install ("no marker", "smithers bin missing"), or null. */
  problem: str(300).nullable(),
});
export type EngineFact = z.infer<typeof EngineFactSchema>;

/** A lock file and whether something holds it (`flock -n` test), with the holder from /proc/locks when found. */
export const LockFactSchema = z.object({
  path: str(4096),
  /** `launcher` (a control dir's launcher.lock), `resume` (resume.lock), `engine-install` (`<engine dir>.lock`). */
  kind: z.enum(["launcher", "resume", "engine-install"]),
  held: z.boolean(),
  holder_pid: int.positive().nullable(),
  holder_cmdline: str(200).nullable(),
});
export type LockFact = z.infer<typeof LockFactSchema>;

/** A sub-folder of a runs root that looks like a control dir (run.sh, .smithers/ or reports/ inside). */
export const ControlDirFactSchema = z.object({
  path: str(4096),
  /** `host_run_id` of its fabrik-run.json, when present and readable. */
  host_run_id: int.nullable(),
});
export type ControlDirFact = z.infer<typeof ControlDirFactSchema>;

/** The health facts of one VM. */
export const HealthFactsSchema = z.object({
  /** bun's SQLite supports `octet_length()` (SQLite ≥ 3.43): the probe measures big values without reading them. */
  sqlite_octet_length: z.boolean(),
  engines: z.array(EngineFactSchema).max(100),
  /** Free and total bytes of the filesystem holding `work_dir` (for the unprivileged user), or null when unknown. */
  disk: z.object({ path: str(4096), free_bytes: int.nonnegative(), total_bytes: int.nonnegative() }).nullable(),
  control_dirs: z.array(ControlDirFactSchema).max(5000),
  /** More control dirs existed than listed. */
  control_dirs_truncated: z.boolean(),
  /** Entries of `known_control_dirs` that do not exist (or are not folders). */
  missing_control_dirs: z.array(str(4096)).max(5000),
  locks: z.array(LockFactSchema).max(2000),
  dir_sizes: z.array(z.object({ path: str(4096), bytes: int.nonnegative().nullable() })).max(1000),
  /** Problems gathering these facts (never fatal to the probe). */
  errors: z.array(str(500)).max(20),
});
export type HealthFacts = z.infer<typeof HealthFactsSchema>;
