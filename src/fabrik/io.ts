/**
 * Output streams and terminal capabilities, resolved once per command and passed down.
 *
 * stdout carries data only (tables, JSON); everything else — warnings, progress, listr2 — goes to
 * stderr. Colour is decided once here from `--color`, `NO_COLOR`, `FORCE_COLOR` and whether stdout is
 * a TTY, and handed to renderers as a configured chalk instance (chalk alone ignores `NO_COLOR`).
 */
import tty from "node:tty";
import { Chalk, type ChalkInstance } from "chalk";

export type ColorMode = "auto" | "always" | "never";

/** A writable sink; `process.stdout` in production, a string collector in tests. */
export interface Sink {
  /** false: the stream's buffer is full; wait for its 'drain' event before writing more. */
  write(chunk: string): unknown;
  once?(event: "drain", listener: () => void): unknown;
}

export interface Io {
  stdout: Sink;
  stderr: Sink;
  /** True when stdout is an interactive terminal. */
  stdoutTty: boolean;
  /** True when stderr is an interactive terminal (progress UIs draw there). */
  stderrTty: boolean;
  /** True when stdin is an interactive terminal (confirmation prompts). */
  stdinTty: boolean;
  /** Terminal width in columns (80 when unknown or reported as 0). */
  columns: number;
  /** Terminal height in rows (24 when unknown or reported as 0). */
  rows: number;
  /** Chalk configured for stdout; level 0 when colour is off. */
  color: ChalkInstance;
  /** Chalk configured for stderr. */
  errColor: ChalkInstance;
  /** `--json`: stdout carries only JSON. */
  json: boolean;
}

/**
 * Decide the colour level for a stream. Order: `--color never|always` > `NO_COLOR` (any non-empty
 * value, no-color.org) > `FORCE_COLOR` (0 = off, 1-3 = level) > TTY. Always 0 in JSON mode for stdout.
 */
export function resolveColorLevel(mode: ColorMode, isTty: boolean, env: NodeJS.ProcessEnv): 0 | 1 | 2 | 3 {
  if (mode === "never") return 0;
  if (mode === "always") return forcedLevel(env) ?? 1;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return 0;
  const forced = forcedLevel(env);
  if (forced !== undefined) return forced;
  return isTty ? 1 : 0;
}

function forcedLevel(env: NodeJS.ProcessEnv): 0 | 1 | 2 | 3 | undefined {
  const v = env.FORCE_COLOR;
  if (v === undefined) return undefined;
  if (v === "" || v === "true") return 1;
  if (v === "false" || v === "0") return 0;
  const n = Number(v);
  if (n === 1 || n === 2 || n === 3) return n;
  return 1;
}

/** Build the process's {@link Io} from the real streams. */
export function processIo(opts: { color: ColorMode; json: boolean; env?: NodeJS.ProcessEnv }): Io {
  const env = opts.env ?? process.env;
  const stdoutTty = Boolean(process.stdout.isTTY);
  const stderrTty = Boolean(process.stderr.isTTY);
  const outLevel = opts.json ? 0 : resolveColorLevel(opts.color, stdoutTty, env);
  const errLevel = resolveColorLevel(opts.color, stderrTty, env);
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdoutTty,
    stderrTty,
    // fd 0 asked directly: `process.stdin` would build a stream (~1.4 ms) that most commands never read.
    stdinTty: tty.isatty(0),
    columns: process.stdout.columns || 80,
    rows: process.stdout.rows || 24,
    color: new Chalk({ level: outLevel }),
    errColor: new Chalk({ level: errLevel }),
    json: opts.json,
  };
}

/** An {@link Io} that records everything, for in-process command tests. */
export function memoryIo(opts: Partial<Pick<Io, "stdoutTty" | "stderrTty" | "stdinTty" | "json" | "columns" | "rows">> = {}): Io & {
  out: () => string;
  err: () => string;
} {
  let out = "";
  let err = "";
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    stdoutTty: opts.stdoutTty ?? false,
    stderrTty: opts.stderrTty ?? false,
    stdinTty: opts.stdinTty ?? false,
    columns: opts.columns ?? 120,
    rows: opts.rows ?? 40,
    color: new Chalk({ level: 0 }),
    errColor: new Chalk({ level: 0 }),
    json: opts.json ?? false,
    out: () => out,
    err: () => err,
  };
}

/**
 * Ask a yes/no question on the terminal (the prompt on stderr, the answer from stdin); default no. Used by the
 * commands that change a run or remove files (resume, cancel, prune) when `--yes` was not given.
 * @returns true for `y` or `yes` (any case).
 */
export async function askYesNo(question: string): Promise<boolean> {
  const readline = await import("node:readline/promises");
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}
