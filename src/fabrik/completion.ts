/**
 * Dynamic shell completion: VM names for `--vm` and VM positionals (live from the drivers, with a short
 * deadline, plus the registry), run ids for `--id`/`--run-id` (from the registry).
 */
import { createContext } from "./context.js";

const VM_FLAGS = new Set(["--vm"]);
const ID_FLAGS = new Set(["--id", "--run-id"]);

/**
 * Values to complete for the word being typed, or undefined to fall back to yargs' defaults.
 * Never throws: completion must not print errors into the user's shell.
 */
export async function completeValues(current: string, args: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<string[] | undefined> {
  const words = ((args._ as unknown[]) ?? []).map(String);
  const prev = process.argv[process.argv.length - 2] ?? "";
  try {
    const wantsVm =
      VM_FLAGS.has(prev) || (words[0] === "vm" && ["start", "stop", "delete", "shell"].includes(words[1] ?? "") && !current.startsWith("-"));
    const wantsId = ID_FLAGS.has(prev);
    if (!wantsVm && !wantsId) return undefined;
    const ctx = await createContext({ env });
    try {
      if (wantsId) return ctx.registry().runIds().map(String).filter((id) => id.startsWith(current));
      const names = new Set(ctx.registry().listVms().map((v) => v.name));
      const lists = await Promise.allSettled([ctx.drivers.get("lima").list({ timeoutMs: 1500 }), ctx.drivers.get("local").list({ timeoutMs: 1500 })]);
      for (const l of lists) if (l.status === "fulfilled") for (const v of l.value) names.add(v.name);
      return [...names].filter((n) => n.startsWith(current)).sort();
    } finally {
      ctx.close();
    }
  } catch {
    return [];
  }
}
