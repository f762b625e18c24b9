/**
 * The command registry's types. Each command is declared ONCE with {@link defineCommand}: its words, help,
 * options (the yargs definitions, from which the handler's argument types are inferred), and a handler that
 * RETURNS what to show. Handlers never write to stdout and never pick JSON or text: `cli.ts` alone renders a
 * {@link CommandResult} (JSON with `--json`, the human renderer otherwise) and writes stdout and stderr.
 *
 * This module is imported at start-up: it holds types and one identity function only.
 */
import type { ChalkInstance } from "chalk";
import type { InferredOptionTypes, Options, PositionalOptions } from "yargs";
import type { Context } from "./context.js";
import type { ConfigFlags } from "./config.js";
import type { FabrikError } from "../core/errors.js";

/** What a pure renderer may know about the terminal. */
export interface RenderContext {
  /** stdout is an interactive terminal: aligned tables, symbols, relative ages. Off a TTY: TSV and ISO times. */
  tty: boolean;
  /** Chalk configured for stdout (level 0 when colour is off). */
  color: ChalkInstance;
  /** Terminal size (80 × 24 when unknown). */
  columns: number;
  rows: number;
  /** Host clock, epoch ms. */
  now: number;
}

/** A one-shot result: a view model, printed as JSON (`--json`) or through `render`. */
export interface ViewResult<V = unknown> {
  kind: "view";
  /** The data. `--json` prints exactly this (one document). */
  view: V;
  /** People's rendering of `view` (pure). Returns the text for stdout ("" prints nothing). */
  render: (view: V, r: RenderContext) => string;
  /** One-line warnings for stderr (`warning: …`), printed in both modes, sanitised. */
  warnings?: string[];
  /** Informational stderr lines (progress summaries), printed in both modes, sanitised. */
  notes?: string[];
  /** Failures of parts (e.g. one VM of several), printed as `fabrik: error: …` lines on stderr after the view. */
  errors?: FabrikError[];
  /** Exit code (default 0). */
  exitCode?: number;
  /** After printing the view, fail with this error (its kind gives the exit code), e.g. a refused dry-run. */
  fail?: FabrikError;
}

/**
 * A list of rows, iterated once and never held whole: with `--json` a JSON array written row by row; off a TTY
 * a TSV table written row by row; on a TTY an aligned table (the rows are gathered to size the columns).
 */
export interface ListResult<R = unknown> {
  kind: "list";
  rows: Iterable<R>;
  /**
   * The rows' JSON texts, when the producer has them serialised already (cache-only run lists: SQLite writes them).
   * Each must equal `JSON.stringify(row)`; `--json` then prints these instead of serialising `rows`.
   */
  json?: () => Iterable<string>;
  /** Table columns and the cells of one row (cells must be sanitised). */
  headers: string[];
  cells: (row: R, r: RenderContext) => string[];
  /** `-q`: one line per row instead of the table (text mode only). */
  line?: (row: R) => string;
  /** What a TTY shows when there are no rows. */
  empty?: string;
  warnings?: string[];
}

/** One item of a {@link StreamResult}. */
export type StreamItem<E> =
  /** Data: NDJSON with `--json`, else `renderItem`'s text on stdout (or the TTY screen). */
  | { type: "data"; data: E }
  /** A notice for the user on stderr (`fabrik: …`), e.g. "reconnecting"; never data. */
  | { type: "notice"; message: string }
  /** A warning on stderr (`warning: …`). */
  | { type: "warning"; message: string };

/**
 * A streaming result (watch, attach, follow): items arrive over time; the generator's return value is the
 * exit code. `cli.ts` consumes it and renders each item as it comes.
 */
export interface StreamResult<E = unknown> {
  kind: "stream";
  items: AsyncGenerator<StreamItem<E>, number, void>;
  /** The JSON value of one data item (default: the item itself); undefined skips it in JSON mode. */
  itemJson?: (e: E) => unknown;
  /** Text for one data item off a TTY (or on a TTY without `screen`); undefined prints nothing. */
  renderItem: (e: E, r: RenderContext) => string | undefined;
  /**
   * Full-screen TTY presentation (watch): the text of the whole screen after this item, or undefined to leave
   * the screen as it is. With it, cli.ts draws in the alternate screen and restores the terminal at the end;
   * `renderItem` output of items marked `final` is printed after leaving it, so it stays in the scrollback.
   */
  screen?: {
    frame: (e: E, r: RenderContext) => string | undefined;
    isFinal: (e: E) => boolean;
  };
}

/** What a handler returns: a view, a stream, or only an exit code (e.g. `vm shell` passing the guest's status). */
export type CommandResult = ViewResult<any> | ListResult<any> | StreamResult<any> | { kind: "exit"; exitCode: number }; // eslint-disable-line @typescript-eslint/no-explicit-any

type OptionMap = Record<string, Options>;
type PositionalMap = Record<string, PositionalOptions>;

/** The arguments a handler receives: inferred from the yargs option and positional definitions. */
export type ArgsOf<O extends OptionMap, P extends PositionalMap> = InferredOptionTypes<O> & InferredOptionTypes<P> & { "--"?: string[] };

/** One command, declared once. */
export interface CommandSpec<O extends OptionMap = OptionMap, P extends PositionalMap = PositionalMap> {
  /** yargs command string: the word and its positionals, e.g. `show`, `create <name>`, `start <names..>`, `$0`. */
  command: string;
  describe: string;
  /** Positional definitions, keyed by the names used in `command`. */
  positionals?: P;
  /** Options; each subcommand accepts only its own (and the global `--json`/`--color`). */
  options: O;
  /** Flags that override the config for this command (`--driver`, `--engine`). */
  configFlags?: (args: ArgsOf<O, P>) => ConfigFlags;
  /** Run even when the config file or environment is invalid (on the defaults; `ctx.configProblem` says why): `fabrik doctor`. */
  lenientConfig?: boolean;
  /** Extra validation after parsing (throw UsageError). */
  check?: (args: ArgsOf<O, P>) => void;
  run: (ctx: Context, args: ArgsOf<O, P>) => Promise<CommandResult>;
}

/** Declare a command (an identity function that fixes the argument types). */
export function defineCommand<O extends OptionMap, P extends PositionalMap = Record<never, PositionalOptions>>(spec: CommandSpec<O, P>): CommandSpec<O, P> {
  return spec;
}

/** A group of subcommands (`vm`, `run`, `runs`). */
export interface CommandGroup {
  command: string;
  describe: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  commands: CommandSpec<any, any>[];
}

/** A view result (helper for handlers). */
export function view<V>(v: V, render: (v: V, r: RenderContext) => string, extra: Omit<ViewResult<V>, "kind" | "view" | "render"> = {}): ViewResult<V> {
  return { kind: "view", view: v, render, ...extra };
}
