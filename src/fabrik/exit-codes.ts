/**
 * fabrik's documented exit codes — the single source for both the code that exits and the
 * `fabrik help exit-codes` topic (see {@link renderExitCodeHelp}).
 *
 * `vm shell NAME -- cmd` is the one exception: it passes the guest command's own exit status through.
 */
import { FabrikError, type ErrorKind } from "../core/errors.js";

export const ExitCode = {
  /** Success. */
  OK: 0,
  /** A general error: a remote command failed, an operation could not complete, or an internal bug. */
  ERROR: 1,
  /** Bad usage: unknown command or flag, invalid flag value. */
  USAGE: 2,
  /** fabrik's own files are unusable: corrupt config, corrupt registry, or a registry written by a newer fabrik. */
  CONFIG: 3,
  /** Not found: no such run id, VM, workflow file or run database. */
  NOT_FOUND: 4,
  /** Refused because it would be unsafe or conflicts with the current state (e.g. resume while the engine lives). */
  REFUSED: 5,
  /** The VM could not be reached: stopped, broken, or it missed its deadline. */
  UNAVAILABLE: 6,
  /** A prerequisite is missing on the host or in the VM: limactl absent or too old, no bun, engine install failed. */
  PREREQUISITE: 7,
  /** With --exit-status: the run ended `failed`. */
  RUN_FAILED: 8,
  /** With --exit-status: the run ended `cancelled`. */
  RUN_CANCELLED: 9,
  /** With --exit-status: the run stopped without finishing (orphaned, crashed, waiting) or the watch timed out. */
  RUN_NOT_DONE: 10,
  /** Interrupted by Ctrl-C (SIGINT); the run itself is never touched. */
  INTERRUPTED: 130,
} as const;

export type ExitCodeName = keyof typeof ExitCode;
export type ExitCodeValue = (typeof ExitCode)[ExitCodeName];

/** The exit code of each error kind: the ONE mapping from `FabrikError.kind` to a process exit status. */
export const EXIT_CODE_OF_KIND: Record<ErrorKind, ExitCodeValue> = {
  usage: ExitCode.USAGE,
  user: ExitCode.ERROR,
  config: ExitCode.CONFIG,
  "not-found": ExitCode.NOT_FOUND,
  refused: ExitCode.REFUSED,
  unavailable: ExitCode.UNAVAILABLE,
  prerequisite: ExitCode.PREREQUISITE,
  remote: ExitCode.ERROR,
  interrupted: ExitCode.INTERRUPTED,
  internal: ExitCode.ERROR,
};

/** The exit code for an error: its kind's code ({@link EXIT_CODE_OF_KIND}); anything that is not a FabrikError is a bug (1). */
export function exitCodeOf(err: unknown): ExitCodeValue {
  return err instanceof FabrikError ? EXIT_CODE_OF_KIND[err.kind] : ExitCode.ERROR;
}

/**
 * Not a failure: makes the CLI exit with a given code and no message (`vm shell` passing the guest's status
 * through, `--exit-status` relaying a run's outcome, a `--dry-run` that says "not allowed").
 */
export class ExitWith extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`exit ${exitCode}`);
    this.exitCode = exitCode;
  }
}

/**
 * The `--exit-status` code for a run's outcome (shared by watch and attach): `done` → 0, `failed` → 8,
 * `cancelled` → 9, anything else (orphaned, waiting, not done) → 10.
 */
export function runOutcomeExitCode(outcome: string): ExitCodeValue {
  switch (outcome) {
    case "done":
      return ExitCode.OK;
    case "failed":
      return ExitCode.RUN_FAILED;
    case "cancelled":
      return ExitCode.RUN_CANCELLED;
    default:
      return ExitCode.RUN_NOT_DONE;
  }
}

const DESCRIPTIONS: Record<ExitCodeName, string> = {
  OK: "success",
  ERROR: "general error (remote command failed, operation incomplete, internal bug)",
  USAGE: "bad usage: unknown command or flag, invalid value",
  CONFIG: "fabrik's own files unusable: corrupt config or registry, or registry from a newer fabrik",
  NOT_FOUND: "not found: run id, VM, workflow file or run database",
  REFUSED: "refused as unsafe or conflicting (e.g. resume while the engine is alive)",
  UNAVAILABLE: "VM unreachable: stopped, broken, or past its deadline",
  PREREQUISITE: "missing prerequisite: limactl absent/too old, no bun, engine install failed",
  RUN_FAILED: "--exit-status: the run ended failed",
  RUN_CANCELLED: "--exit-status: the run ended cancelled",
  RUN_NOT_DONE: "--exit-status: the run stopped without finishing (orphaned, waiting) or --timeout passed",
  INTERRUPTED: "interrupted (Ctrl-C); the run is never touched",
};

/** The `fabrik help exit-codes` text, generated from {@link ExitCode} so the two cannot drift. */
export function renderExitCodeHelp(): string {
  const lines = ["fabrik exit codes:", ""];
  for (const name of Object.keys(ExitCode) as ExitCodeName[]) {
    lines.push(`  ${String(ExitCode[name]).padStart(3)}  ${name.padEnd(13)} ${DESCRIPTIONS[name]}`);
  }
  lines.push("", "`fabrik vm shell NAME -- CMD` exits with the guest command's own status.");
  return lines.join("\n") + "\n";
}
