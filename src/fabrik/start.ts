/**
 * fabrik's start-up, bundled on its own as `dist/cli/start.cjs` and called by `bin/fabrik.js`: `--version` is
 * answered with nothing else loaded; any other command loads the CLI bundle (`dist/cli/fabrik.cjs`, one CommonJS
 * file whose modules initialise on first use) through the compile cache (`compile-cache.ts`) and runs it.
 */
import path from "node:path";
import { VERSION } from "./version.js";
import { resolvePaths } from "./paths.js";
import { commandKind, compileCacheFile, loadBundle } from "./compile-cache.js";

/**
 * Run fabrik with `argv` (without node and script); `bundle` is the path of `dist/cli/fabrik.cjs`. A live
 * `runs show` first starts its remote call (`prestart.ts`, `dist/cli/prestart.cjs` beside the bundle).
 */
export async function start(argv: string[], bundle: string): Promise<number | void> {
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(VERSION + "\n");
    return;
  }
  const cacheFile = compileCacheFile(resolvePaths(process.env).home);
  const kind = commandKind(argv);
  // The prestart bundle decides what it prestarts (prestartCommand); the cache-only and help forms, which never
  // probe, do not load it at all (~20 ms).
  if (argv[0] === "runs" && argv[1] === "show" && !argv.some((a) => a === "--no-live" || a === "--help" || a === "-h")) {
    // Its own code cache: compiling the prestart's bundle from source costs more than the head start gains.
    try {
      const file = path.join(path.dirname(bundle), "prestart.cjs");
      const { exports: early } = loadBundle(file, { cacheFile: cacheFile?.replace(/\.bin$/, ".prestart.bin"), kind });
      await (early as typeof import("./prestart.js")).prestart(argv);
    } catch {
      /* no head start: the CLI makes the calls */
    }
  }
  const { exports } = loadBundle(bundle, { cacheFile, kind });
  return (exports as typeof import("./cli.js")).main(argv);
}
