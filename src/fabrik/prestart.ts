/**
 * Prestart: the remote call of a live `runs show` starts before the CLI bundle loads.
 *
 * Bundled on its own (`dist/cli/prestart.cjs`, with its own code cache) and called by `start.ts` for that command
 * only. It runs the command's own code — {@link showRun} with a real context (config, registry, drivers, guest
 * install cache) — while `vm/process.ts` parks every process instead of waiting for it ({@link parkProcesses}): the
 * probe's `limactl shell` (or local probe) starts at once, and the CLI, which meanwhile loads its bundle and parses
 * the arguments, adopts the running process when it makes the identical call (same command, arguments, working
 * directory, environment and stdin bytes). The VM works while fabrik starts; the calls stay exactly the same.
 * Measured against the build before it (whole commands, 30 interleaved pairs, stand-in latency 200 ms): the call
 * leaves ~40 ms earlier and a live `runs show` ends ~4 % sooner (median pairwise ratios 0.958 and 0.964).
 *
 * `runs list` is not prestarted: on the 2-core machines its calls (one per VM, all at once) keep both cores busy,
 * and the set-up the prestart repeats (config, registry, one request per VM) cost as much as the head start gained
 * (10 stand-in VMs: no change; 50 local VMs: 6 % slower).
 *
 * Nothing is decided or printed here, and nothing is written: the command reaches its call before any write-back
 * (which needs the answer). Only a plain, valid argument list is prestarted (the CLI parses it again and reports any
 * problem itself); a call the CLI does not make after all (a config read differently, a run gone) is never adopted
 * and is killed when fabrik exits. Calls of the `ssh` driver are not prestarted (they go through the connection of
 * the process that makes them).
 */
import yargsParser from "yargs-parser";
import { runId } from "./args.js";
import { createContext } from "./context.js";
import { showRun } from "./runs-service.js";
import { parkProcesses } from "../vm/process.js";
import type { VmDriver } from "../vm/driver.js";

/** The command this module can prestart, with its arguments as the CLI will read them. */
export interface PrestartCommand {
  kind: "show";
  /** The host run id. */
  id: number;
}

/** The options of `runs show` (commands/runs-show.ts) and the global ones (cli.ts), as the CLI's yargs reads them. */
const OPTIONS = {
  string: ["id", "color"],
  boolean: ["json", "live"],
  configuration: { "populate--": true, "parse-numbers": false, "parse-positional-numbers": false },
};
const SHOW_KEYS = new Set(["_", "--", "id", "live", "json", "color"]);

/**
 * The live `runs show` that `argv` asks for, or undefined for anything else: another command, `--no-live`, `--help`,
 * an unknown option, a bad or repeated id, words after `--`. Pure.
 */
export function prestartCommand(argv: readonly string[]): PrestartCommand | undefined {
  if (argv[0] !== "runs" || argv[1] !== "show") return undefined;
  const a = yargsParser([...argv], OPTIONS) as Record<string, unknown> & { _: unknown[]; "--"?: unknown[] };
  if (a._.length !== 2 || (a["--"]?.length ?? 0) > 0 || a.live === false || typeof a.id !== "string") return undefined;
  if (!Object.keys(a).every((k) => SHOW_KEYS.has(k))) return undefined;
  try {
    return { kind: "show", id: runId()(a.id) };
  } catch {
    return undefined;
  }
}

/**
 * Stands in for the `ssh` driver: its calls are not prestarted, so none of its methods ever settles (and it is no
 * thenable: awaiting the driver itself must give the driver).
 */
const NOT_PRESTARTED = new Proxy({ name: "ssh" } as VmDriver, {
  get: (target, key) => (key === "name" ? target.name : key === "then" ? undefined : () => new Promise(() => undefined)),
});

/**
 * Start the remote call of `argv`'s command, if {@link prestartCommand} recognises it, and return once it has
 * started. Never throws: a prestart is only a head start.
 *
 * Processes stay parked in this copy of `vm/process.ts` afterwards (the command's code, stopped at its call, must
 * never run a process of its own); the CLI bundle has its own copy, which runs them. Returns the function that ends
 * the parking, for callers that share one copy of the module with the CLI (tests).
 */
export async function prestart(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<() => void> {
  const cmd = prestartCommand(argv);
  if (!cmd) return () => undefined;
  const stopParking = parkProcesses();
  try {
    const ctx = await createContext({ json: true, color: "never", env, drivers: { ssh: NOT_PRESTARTED } });
    showRun(ctx, cmd.id, { live: true }).catch(() => undefined);
    // The way from the command to its call waits for no I/O (synchronous reads, settled promises): once the
    // microtasks ran, the call has started.
    await new Promise((resolve) => setImmediate(resolve));
    ctx.registry().close();
  } catch {
    /* no head start */
  }
  return stopParking;
}
