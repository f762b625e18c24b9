/**
 * fabrik's command line: yargs declares every command and flag here (so `--help` and completion need no
 * heavy imports); each handler lazily imports its command module. This is the ONE place that turns
 * errors into messages and exit codes (see errors.ts, exit-codes.ts).
 */
import yargs, { type Argv } from "yargs";
import { ExitCode, ExitWith, exitCodeOf, renderExitCodeHelp } from "./exit-codes.js";
import { FabrikError, UsageError, asInternalError } from "../core/errors.js";
import { createContext, type Context } from "./context.js";
import type { ColorMode, Io } from "./io.js";
import type { DriverName } from "./config.js";
import { VERSION } from "./version.js";
import { sanitizeLine } from "../core/sanitize.js";
import type { VmDriver } from "../vm/driver.js";

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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (ctx: Context, args: any) => Promise<number | void>;

/** Wrap a lazily imported command handler with context creation and cleanup. */
function lazy(
  load: () => Promise<{ run: Handler }>,
  state: RunState,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  flags?: (a: any) => { driver?: DriverName | undefined; engine?: string | undefined },
) {
  return async (args: GlobalArgs) => {
    const ctx = await createContext({
      json: args.json,
      color: args.color,
      flags: flags?.(args) ?? {},
      env: state.opts.env,
      io: state.opts.io,
      now: state.opts.now,
      signal: state.abort.signal,
    });
    state.ctx = ctx;
    for (const [name, d] of Object.entries(state.opts.drivers ?? {})) if (d) ctx.drivers.set(name as DriverName, d);
    try {
      const mod = await load();
      const code = await mod.run(ctx, args);
      state.exitCode = typeof code === "number" ? code : ExitCode.OK;
    } finally {
      ctx.close();
    }
  };
}

interface RunState {
  opts: MainOptions;
  /** The words fabrik was called with (completion reads the word before the cursor from them). */
  argv: string[];
  /** Work yargs started but does not await (async completion). */
  pending?: Promise<unknown>;
  abort: AbortController;
  exitCode: number;
  ctx: Context | undefined;
}

const idOption = { type: "number", describe: "run id (the host id shown by `fabrik runs list`)", demandOption: true } as const;

/** Build the yargs parser (exported for completion tests). */
export function buildParser(argv: string[], state: RunState): Argv<GlobalArgs> {
  const completeValues = async (current: string): Promise<string[] | undefined> => {
    const { completeValues: complete } = await import("./completion.js");
    const i = state.argv.indexOf("--get-yargs-completions");
    const words = i >= 0 ? state.argv.slice(i + 1) : state.argv;
    return complete(current, words, state.opts.env ?? process.env, state.opts.drivers);
  };

  return yargs(argv)
    .scriptName("fabrik")
    // Words after `--` are passed to the guest verbatim (no number parsing: `-0` must stay `-0`).
    .parserConfiguration({ "populate--": true, "parse-numbers": false, "parse-positional-numbers": false })
    .usage("fabrik — run, watch and resume durable Smithers workflow runs across a fleet of VMs\n\nUsage: $0 <command> [options]")
    .version(VERSION)
    .option("json", { type: "boolean", default: false, describe: "print data as JSON on stdout (warnings and progress go to stderr)", global: true })
    .option("color", { choices: ["auto", "always", "never"] as const, default: "auto" as ColorMode, describe: "colour output (honours NO_COLOR and FORCE_COLOR)", global: true })
    .command("vm", "manage the VMs runs execute in", (y) =>
      y
        .command(
          "create <name>",
          "create a VM, start it and install the engine",
          (y) =>
            y
              .positional("name", { type: "string", demandOption: true, describe: "VM name (letters, digits, . _ -)" })
              .option("template", { type: "string", describe: "Lima template file (default: lima-templates/fabrik.yaml)" })
              .option("cpus", { type: "number", describe: "virtual CPUs" })
              .option("memory", { type: "number", describe: "memory in GiB" })
              .option("disk", { type: "number", describe: "disk in GiB" })
              .option("driver", { choices: ["lima", "local"] as const, describe: "VM driver (default: config `driver`, else lima)" })
              .option("engine", { type: "string", describe: "engine version to install (default 0.32.0); --no-engine: install it before the first run instead" })
              .option("timeout", { type: "number", default: 600, describe: "seconds to wait for the VM to boot" }),
          lazy(() => import("./commands/vm-create.js"), state, (a: { driver?: DriverName; engine?: string | boolean }) => ({
            driver: a.driver,
            engine: typeof a.engine === "string" ? a.engine : undefined,
          })),
        )
        .command(
          "list",
          "list VMs with their status and runs",
          (y) => y.option("quiet", { alias: "q", type: "boolean", default: false, describe: "print names only" }),
          lazy(() => import("./commands/vm-list.js"), state),
        )
        .command(
          "start <names..>",
          "start one or more VMs",
          (y) => y.positional("names", { type: "string", array: true, demandOption: true }).option("timeout", { type: "number", default: 600, describe: "seconds to wait for each VM" }),
          lazy(() => import("./commands/vm-start.js"), state),
        )
        .command(
          "stop <names..>",
          "stop one or more VMs (carries on past failures, reports them all)",
          (y) => y.positional("names", { type: "string", array: true, demandOption: true }).option("force", { alias: "f", type: "boolean", default: false, describe: "power off at once" }),
          lazy(() => import("./commands/vm-stop.js"), state),
        )
        .command(
          "delete <names..>",
          "delete VMs (refuses while a run is active unless --force)",
          (y) => y.positional("names", { type: "string", array: true, demandOption: true }).option("force", { alias: "f", type: "boolean", default: false, describe: "delete even with active runs or while running" }),
          lazy(() => import("./commands/vm-delete.js"), state),
        )
        .command(
          "shell <name> [cmd..]",
          "open a shell in a VM, or run a command (`-- cmd args`); exits with the guest's status",
          (y) => y.positional("name", { type: "string", demandOption: true }).positional("cmd", { type: "string", array: true }).option("workdir", { type: "string", describe: "guest working directory" }),
          lazy(() => import("./commands/vm-shell.js"), state),
        )
        .demandCommand(1, "name a vm subcommand: create, list, start, stop, delete, shell"),
    )
    .command(
      "run",
      "start a workflow run in a VM (and: run attach, run resume)",
      (y) =>
        y
          .command(
            "attach",
            "print a run's log and follow it; Ctrl-C detaches and never stops the run",
            (y) =>
              y
                .option("id", idOption)
                .option("tail", { type: "number", default: 50, describe: "lines of history to print first" })
                .option("follow", { type: "boolean", default: true, describe: "keep following (--no-follow prints and exits)" })
                .option("exit-status", { type: "boolean", default: false, describe: "exit with the run's outcome (see `fabrik help exit-codes`)" }),
            lazy(() => import("./commands/run-attach.js"), state),
          )
          .command(
            "resume",
            "continue a crashed or failed run from where it stopped",
            (y) =>
              y
                .option("id", idOption)
                .option("dry-run", { type: "boolean", default: false, describe: "print the plan and the script; change nothing (exit 0 if resume is allowed)" })
                .option("force", { type: "boolean", default: false, describe: "resume even if the engine heartbeat is fresh (never overrides a living process)" })
                .option("fix", { type: "boolean", default: false, describe: "first truncate oversized response_text/error_json values and VACUUM" })
                .option("fix-limit", { type: "number", default: 100 * 1024, describe: "--fix: keep at most this many bytes per value (the tail)" })
                .option("yes", { alias: "y", type: "boolean", default: false, describe: "do not ask for confirmation (required without a TTY)" })
                .option("reason", { type: "string", describe: "why you resume (kept in the run's history)" }),
            lazy(() => import("./commands/run-resume.js"), state),
          )
          .option("vm", { type: "string", describe: "VM to run in" })
          .option("workflow", { type: "string", describe: "workflow file (.tsx) on this host" })
          .option("input", { type: "string", describe: "workflow input: JSON text or @file" })
          .option("name", { type: "string", describe: "a label for the run" })
          .option("engine", { type: "string", describe: "engine version (default: config, else 0.32.0)" })
          .option("follow", { type: "boolean", default: false, describe: "stream the log until the run ends" }),
      lazy(() => import("./commands/run.js"), state, (a: { engine?: string | boolean }) => ({ engine: typeof a.engine === "string" ? a.engine : undefined })),
    )
    .command("runs", "inspect runs: list, show, watch, import", (y) =>
      y
        .command(
          "list",
          "list runs with their live status (one round trip per VM)",
          (y) =>
            y
              .option("vm", { type: "string", describe: "only runs in this VM" })
              .option("status", { type: "string", array: true, describe: "only these statuses (repeatable)" })
              .option("limit", { type: "number", default: 20, describe: "at most this many runs" })
              .option("since", { type: "string", describe: "only runs created within this duration (e.g. 2h, 30m, 7d)" })
              .option("live", { type: "boolean", default: true, describe: "ask the VMs (--no-live: cache only)" })
              .option("quiet", { alias: "q", type: "boolean", default: false, describe: "print run ids only" }),
          lazy(() => import("./commands/runs-list.js"), state),
        )
        .command(
          "show",
          "show one run, with the VM as source of truth",
          (y) => y.option("id", idOption).option("live", { type: "boolean", default: true, describe: "ask the VM (--no-live: cache only, never touches the VM)" }),
          lazy(() => import("./commands/runs-show.js"), state),
        )
        .command(
          "watch",
          "watch a VM's runs live until they end",
          (y) =>
            y
              .option("vm", { type: "string", demandOption: true, describe: "VM to watch" })
              .option("run-id", { type: "number", describe: "the run to watch (default: the VM's active runs)" })
              .option("interval", { type: "number", default: 2, describe: "seconds between refreshes (minimum 0.5)" })
              .option("timeout", { type: "number", describe: "give up after this many seconds" })
              .option("exit-status", { type: "boolean", default: false, describe: "exit with the run's outcome" })
              .option("notify", { type: "boolean", default: false, describe: "desktop notification when the run ends" }),
          lazy(() => import("./commands/runs-watch.js"), state),
        )
        .command(
          "import",
          "register runs that exist in a VM but fabrik did not start",
          (y) => y.option("vm", { type: "string", demandOption: true }).option("path", { type: "string", describe: "a control dir or a Smithers DB in the VM (default: ~/work/<vm>/.runs/*)" }),
          lazy(() => import("./commands/runs-import.js"), state),
        )
        .demandCommand(1, "name a runs subcommand: list, show, watch, import"),
    )
    .command(
      "help [topic]",
      "help topics: exit-codes, launcher",
      (y: Argv<GlobalArgs>) => y.positional("topic", { type: "string", choices: ["exit-codes", "launcher"] }),
      async (a: { topic?: string | undefined }) => {
        const out = state.opts.io?.stdout ?? process.stdout;
        if (a.topic === "exit-codes") out.write(renderExitCodeHelp());
        else if (a.topic === "launcher") {
          const { LAUNCHER_CONTRACT_HELP } = await import("../vm/launcher.js");
          out.write(LAUNCHER_CONTRACT_HELP);
        } else out.write("Topics:\n  exit-codes   what fabrik's exit codes mean\n  launcher     the files run.sh leaves in a run's control dir\n");
      },
    )
    .completion(
      "completion",
      "print a shell completion script (bash/zsh)",
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (current: string, args: any, defaultCompletion: any, done: (c: string[]) => void) => {
        void args;
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
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg ?? "invalid usage");
    }) as unknown as Argv<GlobalArgs>;
}

/** Run fabrik with `argv` (without node and script). Exits the process unless `opts.noExit`. */
export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const state: RunState = { opts, argv, abort: new AbortController(), exitCode: ExitCode.OK, ctx: undefined };
  const onSigint = () => {
    state.abort.abort();
  };
  if (!opts.noExit) process.on("SIGINT", onSigint);
  let code: number;
  try {
    await buildParser(argv, state).parseAsync();
    await state.pending;
    code = state.abort.signal.aborted ? ExitCode.INTERRUPTED : state.exitCode;
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

function reportError(err: unknown, io: Io | undefined, interrupted: boolean): number {
  if (err instanceof ExitWith) return err.exitCode;
  const stderr = io?.stderr ?? process.stderr;
  if (interrupted && !(err instanceof FabrikError && err.kind !== "interrupted")) {
    return ExitCode.INTERRUPTED;
  }
  const fe = err instanceof FabrikError ? err : asInternalError(err);
  const hint = fe.hint ? ` (${fe.hint})` : "";
  // Messages can quote what a VM printed: one line, no terminal escapes.
  stderr.write(`fabrik: error: ${sanitizeLine(fe.message + hint, 4000)}\n`);
  if (process.env.FABRIK_DEBUG && err instanceof Error && err.stack) stderr.write(err.stack + "\n");
  return exitCodeOf(fe);
}
