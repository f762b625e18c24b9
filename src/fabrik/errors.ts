/**
 * fabrik's error taxonomy. Every failure a user can cause or meet is one of these classes; the CLI
 * entry point (`cli.ts`) is the only place that turns them into a message and an exit code.
 *
 * Messages are one line and say what happened; `hint` says what to do next.
 */
import { ExitCode, type ExitCodeValue } from "./exit-codes.js";

export type ErrorKind =
  | "usage"
  | "user"
  | "config"
  | "not-found"
  | "refused"
  | "unavailable"
  | "prerequisite"
  | "remote"
  | "interrupted"
  | "internal";

/** Base class: an expected failure with an exit code and an optional next step. */
export class FabrikError extends Error {
  readonly kind: ErrorKind;
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;

  constructor(kind: ErrorKind, exitCode: ExitCodeValue, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
    this.exitCode = exitCode;
    this.hint = hint;
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends FabrikError {
  constructor(message: string, hint?: string) {
    super("usage", ExitCode.USAGE, message, hint ?? "see `fabrik --help`");
  }
}

/** Input that is well-formed but wrong: unreadable workflow file, invalid JSON input (exit 1). */
export class UserError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("user", ExitCode.ERROR, message, hint, options);
  }
}

/** fabrik's own config or registry cannot be used (exit 3). Never deletes the file it names. */
export class ConfigError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("config", ExitCode.CONFIG, message, hint, options);
  }
}

/** A run, VM, file or DB that does not exist (exit 4). */
export class NotFoundError extends FabrikError {
  constructor(message: string, hint?: string) {
    super("not-found", ExitCode.NOT_FOUND, message, hint);
  }
}

/** An operation refused because it is unsafe or conflicts with current state (exit 5). */
export class RefusedError extends FabrikError {
  readonly reasons: string[];
  constructor(message: string, hint?: string, reasons: string[] = []) {
    super("refused", ExitCode.REFUSED, message, hint);
    this.reasons = reasons;
  }
}

/** The VM cannot be reached: stopped, broken, deadline exceeded (exit 6). */
export class VmUnavailableError extends FabrikError {
  readonly vm: string;
  constructor(vm: string, message: string, hint?: string, options?: { cause?: unknown }) {
    super("unavailable", ExitCode.UNAVAILABLE, message, hint, options);
    this.vm = vm;
  }
}

/** A missing or unusable prerequisite: limactl, bun, an engine install (exit 7). */
export class PrerequisiteError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("prerequisite", ExitCode.PREREQUISITE, message, hint, options);
  }
}

/** A command inside a VM failed: names the VM and the command (exit 1). */
export class RemoteError extends FabrikError {
  readonly vm: string;
  readonly command: string;
  readonly remoteExitCode: number | undefined;
  constructor(vm: string, command: string, message: string, remoteExitCode?: number, hint?: string) {
    super("remote", ExitCode.ERROR, `${vm}: ${command}: ${message}`, hint);
    this.vm = vm;
    this.command = command;
    this.remoteExitCode = remoteExitCode;
  }
}

/** Ctrl-C (exit 130). */
export class InterruptedError extends FabrikError {
  constructor() {
    super("interrupted", ExitCode.INTERRUPTED, "interrupted");
  }
}

/**
 * Not a failure: makes the CLI exit with a given code and no message (e.g. `vm shell` passing the
 * guest's status through, `--exit-status` relaying a run's outcome, a `--dry-run` that says "not allowed").
 */
export class ExitWith extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`exit ${exitCode}`);
    this.exitCode = exitCode;
  }
}

/** Anything unexpected: shown with a "please report" hint (exit 1). */
export function asInternalError(err: unknown): FabrikError {
  const message = err instanceof Error ? err.message : String(err);
  return new FabrikError(
    "internal",
    ExitCode.ERROR,
    `internal error: ${message}`,
    "this is a bug in fabrik; please report it with the command you ran (set FABRIK_DEBUG=1 for a stack trace)",
    { cause: err },
  );
}
