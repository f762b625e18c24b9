/**
 * fabrik's command line, and the ONE output path.
 *
 * - The command tree (`commands/index.ts`) declares every command once; this file turns it into yargs
 *   commands. Each subcommand accepts only its own options (plus `--json`, `--color`); anything else is a
 *   usage error (exit 2).
 * - A handler returns a {@link CommandResult}; this file alone decides JSON or human rendering and writes
 *   stdout (data only) and stderr (warnings, notices, errors).
 * - This is the only place that turns errors into a message and an exit code (`exit-codes.ts` maps an
 *   error's kind to its code).
 */
import type { Argv } from "yargs";
import { ExitCode, ExitWith, exitCodeOf, renderExitCodeHelp } from "./exit-codes.js";
import { FabrikError, UsageError, asInternalError } from "../core/errors.js";
import { sanitizeLine } from "../core/sanitize.js";
import type { Context } from "./context.js";
import type { ColorMode, Io } from "./io.js";
import type { DriverName, VmDriver } from "../vm/driver.js";
import type { CommandResult, CommandSpec, ListResult, RenderContext, StreamResult, ViewResult } from "./command.js";
import { VERSION } from "./version.js";

/** Options for {@link main} (tests run commands in-process with their own io/env). */
export interface MainOptions {
  env?: NodeJS.ProcessEnv;
  io?: Io;
  now?: () => number;
  /** Do not call process.exit; return the exit code (in-process tests). */
  noExit?: boolean;
  /** Replace drivers (in-process tests use fakes that fail on unexpected calls). */
  drivers?: Partial<Record<DriverName, VmDriver>>;
}

interface GlobalArgs {
  json: boolean;
  color: ColorMode;
}

interface RunState {
  opts: MainOptions;
  /** The words fabrik was called with (completion reads the word before the cursor from them). */
  argv: string[];
  /** Work yargs started but does not await (async completion). */
  pending?: Promise<unknown>;
  abort: AbortController;
  exitCode: number;
}

/** The one piece of yargs' internals fabrik touches (see {@link buildParser}). */
interface YargsInternals {
  getInternalMethods(): { getUsageInstance(): { cacheHelpMessage: () => void } };
}

/** Wrap a command spec as a yargs handler: context, handler, output, cleanup. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function handlerFor(spec: CommandSpec<any, any>, state: RunState) {
  return async (args: GlobalArgs & Record<string, unknown>) => {
    spec.check?.(args as never);
    const { createContext } = await import("./context.js");
    const ctx = await createContext({
      json: args.json,
      color: args.color,
      flags: spec.configFlags?.(args as never) ?? {},
      env: state.opts.env,
      io: state.opts.io,
      now: state.opts.now,
      signal: state.abort.signal,
      drivers: state.opts.drivers,
      lenientConfig: spec.lenientConfig,
    });
    try {
      const result = await spec.run(ctx, args as never);
      state.exitCode = await emitResult(ctx, result);
    } finally {
      ctx.close();
    }
  };
}

/** Build the yargs parser (exported for completion tests). */
export async function buildParser(argv: string[], state: RunState): Promise<Argv<GlobalArgs>> {
  // Loaded here, not at start-up: `--version` needs none of it.
  const [{ default: yargs }, { COMMAND_TREE }, { takeArgError }] = await Promise.all([import("yargs"), import("./commands/index.js"), import("./args.js")]);
  const completeValues = async (current: string): Promise<string[] | undefined> => {
    const { completeValues: complete } = await import("./completion.js");
    const i = state.argv.indexOf("--get-yargs-completions");
    const words = i >= 0 ? state.argv.slice(i + 1) : state.argv;
    return complete(current, words, state.opts.env ?? process.env, state.opts.drivers);
  };

  let y = yargs(argv)
    .scriptName("fabrik")
    // Words after `--` are passed to the guest verbatim (no number parsing: `-0` must stay `-0`).
    .parserConfiguration({ "populate--": true, "parse-numbers": false, "parse-positional-numbers": false })
    .usage("fabrik — run, watch and resume durable Smithers workflow runs across a fleet of VMs\n\nUsage: $0 <command> [options]")
    .version(VERSION)
    .option("json", { type: "boolean", default: false, describe: "print data as JSON on stdout (warnings and progress go to stderr)", global: true })
    .option("color", { choices: ["auto", "always", "never"] as const, default: "auto" as ColorMode, describe: "colour output (honours NO_COLOR and FORCE_COLOR)", global: true });
  // yargs renders the whole help text right after it starts a subcommand's handler, in case the handler fails and
  // the help is to be printed (yargs' command.js: cacheHelpMessage). fabrik never prints help on a failure (.fail()
  // below throws), and the render cost ~15 ms of every command's start-up (cliui's layout). It is skipped; --help
  // renders as before. The instance is the one yargs keeps across its command resets.
  (y as unknown as YargsInternals).getInternalMethods().getUsageInstance().cacheHelpMessage = () => undefined;

  for (const group of COMMAND_TREE) {
    y = y.command(group.command, group.describe, (g: Argv) => {
      for (const spec of group.commands) {
        g = g.command(
          spec.command,
          spec.describe,
          (c: Argv) => {
            for (const [name, p] of Object.entries(spec.positionals ?? {})) c = c.positional(name, p as never);
            return c.options(spec.options);
          },
          handlerFor(spec, state) as never,
        );
      }
      const names = group.commands.filter((c) => c.command !== "$0").map((c) => c.command.split(" ")[0]);
      return group.commands.some((c) => c.command === "$0") ? g : g.demandCommand(1, `name a ${group.command} subcommand: ${names.join(", ")}`);
    }) as Argv<GlobalArgs>;
  }

  return y
    .command(
      "help [topic]",
      "help topics: exit-codes, launcher, status",
      (h: Argv<GlobalArgs>) => h.positional("topic", { type: "string", choices: ["exit-codes", "launcher", "status"] }),
      async (a: { topic?: string | undefined }) => {
        const out = state.opts.io?.stdout ?? process.stdout;
        if (a.topic === "exit-codes") out.write(renderExitCodeHelp());
        else if (a.topic === "launcher") {
          const { LAUNCHER_CONTRACT_HELP } = await import("../vm/launcher.js");
          out.write(LAUNCHER_CONTRACT_HELP);
        } else if (a.topic === "status") {
          const { statusTableMarkdown } = await import("./status/rules.js");
          out.write(`How fabrik decides a run's status (first matching rule wins; docs/status.md):\n\n${statusTableMarkdown()}\n`);
        } else {
          out.write("Topics:\n  exit-codes   what fabrik's exit codes mean\n  launcher     the files run.sh leaves in a run's control dir\n  status       the decision table behind effective_status\n");
        }
      },
    )
    .completion(
      "completion",
      "print a shell completion script (bash/zsh)",
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (current: string, _args: any, defaultCompletion: any, done: (c: string[]) => void) => {
        // yargs does not await an async completion function: main() awaits this before exiting.
        state.pending = (async () => {
          const values = await completeValues(current);
          if (values) return done(values);
          defaultCompletion((_err: unknown, defaults: string[] | undefined) => done(defaults ?? []));
        })();
      },
    )
    .demandCommand(1, "name a command")
    .recommendCommands()
    .strict()
    .help()
    .alias("help", "h")
    .wrap(Math.min(120, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // A value our strict parsers refused (args.ts): throw the original usage error, with its hint.
      const argError = takeArgError(err?.message ?? msg);
      if (argError) throw argError;
      if (err && err.name !== "YError") throw err;
      throw new UsageError(msg ?? err?.message ?? "invalid usage");
    }) as unknown as Argv<GlobalArgs>;
}

/** Run fabrik with `argv` (without node and script). Exits the process unless `opts.noExit`. */
export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const state: RunState = { opts, argv, abort: new AbortController(), exitCode: ExitCode.OK };
  const onSigint = () => state.abort.abort();
  if (!opts.noExit) process.on("SIGINT", onSigint);
  let code: number;
  try {
    if (argv.length === 1 && argv[0] === "--version") {
      // The one answer that needs nothing loaded.
      (opts.io?.stdout ?? process.stdout).write(VERSION + "\n");
      code = ExitCode.OK;
    } else {
      await (await buildParser(argv, state)).parseAsync();
      await state.pending;
      code = state.abort.signal.aborted ? ExitCode.INTERRUPTED : state.exitCode;
    }
  } catch (err) {
    code = reportError(err, opts.io, state.abort.signal.aborted);
  } finally {
    if (!opts.noExit) process.off("SIGINT", onSigint);
  }
  if (!opts.noExit) {
    process.exitCode = code;
    // Let stdout drain, then exit even if a socket or timer is still open.
    await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
    process.exit(code);
  }
  return code;
}

/** Print one error line (`fabrik: error: … (hint)`) and return its exit code. */
function reportError(err: unknown, io: Io | undefined, interrupted: boolean): number {
  if (err instanceof ExitWith) return err.exitCode;
  if (interrupted && !(err instanceof FabrikError && err.kind !== "interrupted")) return ExitCode.INTERRUPTED;
  const stderr = io?.stderr ?? process.stderr;
  const fe = err instanceof FabrikError ? err : asInternalError(err);
  stderr.write(errorLine(fe) + "\n");
  if (process.env.FABRIK_DEBUG && err instanceof Error && err.stack) stderr.write(err.stack + "\n");
  return exitCodeOf(fe);
}

/** `fabrik: error: message (hint)`: one line, no terminal escapes (messages can quote what a VM printed). */
export function errorLine(e: FabrikError, prefix = ""): string {
  return `fabrik: error: ${sanitizeLine(prefix + e.message + (e.hint ? ` (${e.hint})` : ""), 4000)}`;
}

function renderContext(io: Io, now: number): RenderContext {
  return { tty: io.stdoutTty, color: io.color, columns: io.columns, rows: io.rows, now };
}

/** Write a handler's result: the ONE place that picks JSON or people's rendering. Returns the exit code (also used in-process by tests). */
export async function emitResult(ctx: Context, result: CommandResult): Promise<number> {
  if (result.kind === "exit") return result.exitCode;
  if (result.kind === "view") return emitView(ctx, result);
  if (result.kind === "list") return emitList(ctx, result);
  return emitStream(ctx, result);
}

/** Rows are written as they come (never one big string): a JSON array, TSV lines, or an aligned table on a TTY. */
async function emitList(ctx: Context, r: ListResult): Promise<number> {
  const io = ctx.io;
  for (const w of r.warnings ?? []) io.stderr.write(`${io.errColor.yellow("warning:")} ${sanitizeLine(w, 2000)}\n`);
  const rc = renderContext(io, ctx.now());
  // Output is gathered in ~64 KiB pieces: one write per piece, not per row. A pipe that is not read as fast as
  // rows come (`| less`, a slow consumer) makes write() return false: the next piece waits for 'drain', so memory
  // stays flat instead of queueing the whole list in the stream's buffer.
  // put() returns a promise only when the piece it wrote must drain first (awaiting every row would cost a
  // microtask per row).
  let buf = "";
  const write = (text: string): Promise<void> | undefined =>
    io.stdout.write(text) === false && io.stdout.once ? new Promise<void>((resolve) => io.stdout.once!("drain", resolve)) : undefined;
  const put = (text: string): Promise<void> | undefined => {
    buf += text;
    if (buf.length < 65_536) return undefined;
    const piece = buf;
    buf = "";
    return write(piece);
  };
  const flush = async () => {
    if (buf) await write(buf);
    buf = "";
  };
  if (io.json) {
    // One compact object per line inside the array: valid JSON, and line-oriented for streaming readers.
    let first = true;
    put("[");
    if (r.json) {
      // SQLite's texts, escaped a ~64 KiB piece at a time rather than per row: one regex pass over a piece costs
      // ~40 % of 100 000 passes over ~1.2 KB rows (100 000 cached runs: ~250 → ~100 ms).
      let piece = "";
      for (const text of r.json()) {
        piece += (first ? "\n" : ",\n") + text;
        first = false;
        if (piece.length < 65_536) continue;
        const wait = put(escapeJsonControls(piece));
        piece = "";
        if (wait) await wait;
      }
      if (piece) put(escapeJsonControls(piece));
    } else {
      for (const row of r.rows) {
        const wait = put((first ? "\n" : ",\n") + toJson(row));
        if (wait) await wait;
        first = false;
      }
    }
    put(first ? "]\n" : "\n]\n");
    await flush();
    return ExitCode.OK;
  }
  if (r.line) {
    for (const row of r.rows) {
      const wait = put(r.line(row) + "\n");
      if (wait) await wait;
    }
    await flush();
    return ExitCode.OK;
  }
  const { renderTable, tsvLine } = await import("./render/table.js");
  if (!io.stdoutTty) {
    put(tsvLine(r.headers));
    for (const row of r.rows) {
      const wait = put(tsvLine(r.cells(row, rc)));
      if (wait) await wait;
    }
    await flush();
    return ExitCode.OK;
  }
  const rows: string[][] = [];
  for (const row of r.rows) rows.push(r.cells(row, rc));
  io.stdout.write(rows.length === 0 ? (r.empty ?? "") : renderTable(r.headers, rows, { tty: true }));
  return ExitCode.OK;
}

/**
 * JSON text for stdout: `JSON.stringify`, with DEL and the C1 controls (U+007F–U+009F) escaped as `\uXXXX` too.
 * JSON itself only escapes U+0000–U+001F, and U+009B is a CSI to terminals in 8-bit mode: data from a VM printed
 * with `--json` on a terminal must not drive it either. Same JSON value, only the spelling differs.
 */
function toJson(value: unknown, indent?: number): string {
  return escapeJsonControls(JSON.stringify(value, null, indent));
}

/** JSON text with DEL and the C1 controls escaped as `\uXXXX` (see {@link toJson}); for JSON written by SQLite too. */
function escapeJsonControls(text: string): string {
  return text.replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function emitView(ctx: Context, r: ViewResult): number {
  const io = ctx.io;
  for (const w of r.warnings ?? []) io.stderr.write(`${io.errColor.yellow("warning:")} ${sanitizeLine(w, 2000)}\n`);
  if (io.json) io.stdout.write(toJson(r.view, 2) + "\n");
  else {
    const text = r.render(r.view, renderContext(io, ctx.now()));
    if (text) io.stdout.write(text);
  }
  for (const n of r.notes ?? []) io.stderr.write(sanitizeLine(n, 4000) + "\n");
  for (const e of r.errors ?? []) io.stderr.write(errorLine(e) + "\n");
  if (r.fail) throw r.fail;
  return r.exitCode ?? ExitCode.OK;
}

// Terminal control for full-screen streams: alternate screen, hide cursor, home, clear line / to end.
const ALT_ON = "\u001b[?1049h\u001b[?25l";
const ALT_OFF = "\u001b[?25h\u001b[?1049l";
const HOME = "\u001b[H";
const CLEAR_EOL = "\u001b[K";
const CLEAR_EOS = "\u001b[J";

async function emitStream(ctx: Context, r: StreamResult): Promise<number> {
  const io = ctx.io;
  const screen = io.stdoutTty && !io.json ? r.screen : undefined;
  let alt = false;
  let lastNotice: string | undefined;
  const leave = () => {
    if (alt) io.stdout.write(ALT_OFF);
    alt = false;
  };
  process.once("exit", leave);
  const afterScreen: string[] = [];
  try {
    for (;;) {
      const next = await r.items.next();
      if (next.done) {
        leave();
        for (const t of afterScreen) io.stdout.write(t);
        return next.value;
      }
      const item = next.value;
      if (item.type !== "data") {
        const line = item.type === "warning" ? `${io.errColor.yellow("warning:")} ${sanitizeLine(item.message, 2000)}` : `fabrik: ${sanitizeLine(item.message, 2000)}`;
        if (screen && alt) lastNotice = item.message;
        else io.stderr.write(line + "\n");
        continue;
      }
      const rc = renderContext(io, ctx.now());
      if (io.json) {
        const j = r.itemJson ? r.itemJson(item.data) : item.data;
        if (j !== undefined) io.stdout.write(toJson(j) + "\n");
      } else if (screen) {
        if (screen.isFinal(item.data)) {
          const t = r.renderItem(item.data, rc);
          if (t) afterScreen.push(t);
          continue;
        }
        const frame = screen.frame(item.data, rc);
        if (frame === undefined) continue;
        if (!alt) {
          io.stdout.write(ALT_ON);
          alt = true;
        }
        const notice = lastNotice ? `\n${io.color.yellow(sanitizeLine(lastNotice, 200))}${CLEAR_EOL}` : "";
        io.stdout.write(HOME + frame.split("\n").map((l) => l + CLEAR_EOL).join("\n") + notice + "\n" + CLEAR_EOS);
      } else {
        const t = r.renderItem(item.data, rc);
        if (t) io.stdout.write(t);
      }
    }
  } catch (err) {
    leave();
    for (const t of afterScreen) io.stdout.write(t);
    if (ctx.signal.aborted) return ExitCode.INTERRUPTED;
    throw err;
  } finally {
    leave();
    process.off("exit", leave);
    await r.items.return?.(ExitCode.OK).catch(() => undefined);
  }
}
