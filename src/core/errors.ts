/**
 * fabrik's error taxonomy, shared by every layer. Each failure a user can cause or meet is one of these
 * classes and carries a {@link ErrorKind}; the CLI entry point (`src/fabrik/cli.ts`) is the ONLY place that
 * turns a kind into a message and an exit code (`src/fabrik/exit-codes.ts`). Lower layers (src/vm,
 * src/resume) throw these and never know about exit codes.
 *
 * Messages are one line and say what happened; `hint` says what to do next.
 */

/** What went wrong, as a category. The CLI maps each kind to one documented exit code. */
export type ErrorKind =
  /** Bad flags or arguments. */
  | "usage"
  /** Input that is well-formed but wrong (e.g. an unreadable workflow file). */
  | "user"
  /** fabrik's own config, registry or FABRIK_HOME is unusable. */
  | "config"
  /** A run, VM, file or DB that does not exist. */
  | "not-found"
  /** Refused as unsafe, or conflicting with the current state. */
  | "refused"
  /** The VM cannot be reached: stopped, broken, past its deadline. */
  | "unavailable"
  /** A missing prerequisite on the host or in the VM (limactl, bun, an engine install). */
  | "prerequisite"
  /** A command inside a VM failed. */
  | "remote"
  /** Ctrl-C. */
  | "interrupted"
  /** A bug. */
  | "internal";

/** Base class: an expected failure of some {@link ErrorKind}, with an optional next step. */
export class FabrikError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;

  constructor(kind: ErrorKind, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
    this.hint = hint;
  }
}

/** Bad flags or arguments (kind `usage`). */
export class UsageError extends FabrikError {
  constructor(message: string, hint?: string) {
    super("usage", message, hint ?? "see `fabrik --help`");
  }
}

/** Input that is well-formed but wrong: an unreadable workflow file (kind `user`). */
export class UserError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("user", message, hint, options);
  }
}

/** fabrik's own config, registry or home cannot be used (kind `config`). Never deletes the file it names. */
export class ConfigError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("config", message, hint, options);
  }
}

/** A run, VM, file or DB that does not exist (kind `not-found`). */
export class NotFoundError extends FabrikError {
  constructor(message: string, hint?: string) {
    super("not-found", message, hint);
  }
}

/** An operation refused because it is unsafe or conflicts with current state (kind `refused`). */
export class RefusedError extends FabrikError {
  /** Machine-readable reason codes (e.g. `HEARTBEAT_FRESH`), for `--json`. */
  readonly reasons: string[];
  constructor(message: string, hint?: string, reasons: string[] = []) {
    super("refused", message, hint);
    this.reasons = reasons;
  }
}

/** The VM cannot be reached: stopped, broken, deadline exceeded (kind `unavailable`). */
export class VmUnavailableError extends FabrikError {
  readonly vm: string;
  constructor(vm: string, message: string, hint?: string, options?: { cause?: unknown }) {
    super("unavailable", message, hint, options);
    this.vm = vm;
  }
}

/** A missing or unusable prerequisite: limactl, bun, an engine install (kind `prerequisite`). */
export class PrerequisiteError extends FabrikError {
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super("prerequisite", message, hint, options);
  }
}

/** A command inside a VM failed: names the VM and the command (kind `remote`). */
export class RemoteError extends FabrikError {
  readonly vm: string;
  readonly command: string;
  readonly remoteExitCode: number | undefined;
  constructor(vm: string, command: string, message: string, remoteExitCode?: number, hint?: string) {
    super("remote", `${vm}: ${command}: ${message}`, hint);
    this.vm = vm;
    this.command = command;
    this.remoteExitCode = remoteExitCode;
  }
}

/** Ctrl-C (kind `interrupted`). */
export class InterruptedError extends FabrikError {
  constructor() {
    super("interrupted", "interrupted");
  }
}

/** Anything unexpected, as a kind `internal` error with a "please report" hint. */
export function asInternalError(err: unknown): FabrikError {
  const message = err instanceof Error ? err.message : String(err);
  return new FabrikError(
    "internal",
    `internal error: ${message}`,
    "this is a bug in fabrik; please report it with the command you ran (set FABRIK_DEBUG=1 for a stack trace)",
    { cause: err },
  );
}
