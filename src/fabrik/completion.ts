/**
 * Dynamic shell completion: VM names for `--vm` and for `vm start|stop|delete|remove|shell` (Lima and local VMs live from the drivers
 * with a 1.5 s deadline, plus the registry, which holds the ssh VMs: completion never dials a machine), run ids for `--id`/`--run-id` (from the registry).
 */
import { createContext } from "./context.js";
import type { DriverName, VmDriver } from "../vm/driver.js";

const VM_FLAGS = new Set(["--vm"]);
const ID_FLAGS = new Set(["--id", "--run-id"]);
const VM_POSITIONAL = new Set(["start", "stop", "delete", "shell", "install-engine", "remove"]);

/**
 * Values to complete for the word being typed, or undefined to fall back to yargs' defaults (commands,
 * flags). `words` are the command-line words up to and including the one being completed.
 * Never throws: completion must not print errors into the user's shell.
 */
export async function completeValues(
  current: string,
  words: readonly string[],
  env: NodeJS.ProcessEnv,
  drivers?: Partial<Record<DriverName, VmDriver>>,
): Promise<string[] | undefined> {
  const before = words.slice(0, Math.max(0, words.length - 1)).filter((w) => w !== "fabrik");
  const prev = before[before.length - 1] ?? "";
  const wantsId = ID_FLAGS.has(prev);
  const wantsVm = VM_FLAGS.has(prev) || (before[0] === "vm" && VM_POSITIONAL.has(before[1] ?? "") && !current.startsWith("-"));
  if (!wantsVm && !wantsId) return undefined;
  try {
    const ctx = await createContext({ env, drivers });
    try {
      if (wantsId) return ctx.registry().runIds().map(String).filter((id) => id.startsWith(current));
      const names = new Set(ctx.registry().listVms().map((v) => v.name));
      const lists = await Promise.allSettled((["lima", "local"] as const).map(async (d) => (await ctx.driver(d)).list({ timeoutMs: 1500 })));
      for (const l of lists) if (l.status === "fulfilled") for (const v of l.value) names.add(v.name);
      return [...names].filter((n) => n.startsWith(current)).sort();
    } finally {
      ctx.close();
    }
  } catch {
    return [];
  }
}
