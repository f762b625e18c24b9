/**
 * fabrik's start-up, bundled on its own as `dist/cli/start.cjs` and called by `bin/fabrik.js`: `--version` is
 * answered with nothing else loaded; any other command loads the CLI bundle (`dist/cli/fabrik.cjs`, one CommonJS
 * file whose modules initialise on first use) through the compile cache (`compile-cache.ts`) and runs it.
 */
import { VERSION } from "./version.js";
import { resolvePaths } from "./paths.js";
import { commandKind, compileCacheFile, loadBundle } from "./compile-cache.js";

/** Run fabrik with `argv` (without node and script); `bundle` is the path of `dist/cli/fabrik.cjs`. */
export function start(argv: string[], bundle: string): Promise<number> | void {
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(VERSION + "\n");
    return;
  }
  const { exports } = loadBundle(bundle, { cacheFile: compileCacheFile(resolvePaths(process.env).home), kind: commandKind(argv) });
  return (exports as typeof import("./cli.js")).main(argv);
}
