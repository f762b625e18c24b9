#!/usr/bin/env node
// Builds the fabrik CLI with esbuild into two CommonJS files:
// - dist/cli/fabrik.cjs: the whole CLI, ONE bundle. Every `await import()` inside it becomes a lazy module
//   initialiser, so a command still runs only the modules it uses (--help never initialises a driver, zod or
//   execa), but Node resolves and reads one file instead of ~30 chunks (~0.7 ms each on the 2-core machines).
//   CommonJS rather than ESM because only a CommonJS script can be compiled with V8's code cache on Node 20
//   (src/fabrik/compile-cache.ts); Node ≥ 22.1 caches it with its own compile cache.
// - dist/cli/start.cjs: the start-up (src/fabrik/start.ts): answers --version, loads fabrik.cjs through the cache.
// - dist/cli/prestart.cjs: starts the remote call of a live `runs show` before fabrik.cjs loads
//   (src/fabrik/prestart.ts); fabrik.cjs adopts the running processes (src/vm/process.ts).
// Native packages (ssh2) stay external and load from node_modules when used; better-sqlite3's JavaScript is bundled
// and its addon loaded by path (registry.ts). dist/cli/ sits two levels below the package root, like src/<layer>/,
// so module-relative paths to lima-templates/ and dist/guest/ hold in both.
import { build } from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(root, "dist", "cli");
fs.rmSync(outdir, { recursive: true, force: true });
const t0 = performance.now();
/** zod's locale list → only English (scripts/zod-locales.mjs); every other import resolves as usual. */
const zodEnglishOnly = {
  name: "zod-english-only",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${path.sep}node_modules${path.sep}zod${path.sep}`) ? { path: path.join(root, "scripts", "zod-locales.mjs") } : undefined,
    );
  },
};
/**
 * The prestart bundle (src/fabrik/prestart.ts) runs `runs show` only up to its remote call. Modules it
 * never initialises there are left out of it — each becomes one line that throws if initialised (the prestart then
 * ends, and the CLI makes the calls itself) — so there is less to read and deserialize before the calls start:
 * answer validation (zod schemas), status derivation, the ssh driver, archives and progress UIs.
 */
const notInPrestart = {
  name: "not-in-prestart",
  setup(b) {
    const skip =
      /[\\/]src[\\/](vm[\\/](ssh-driver|lima-schema|probe-schema|health-schema|control-schema|resume-schema|evidence-schema)\.ts|vm[\\/]transport[\\/].*|fabrik[\\/]status[\\/](derive|rules|diagnoses|facts|reconcile)\.ts)$|[\\/]node_modules[\\/](tar|execa|listr2|cli-table3|yargs|ssh2)[\\/]/;
    b.onLoad({ filter: /.*/ }, (args) => (skip.test(args.path) ? { contents: 'throw new Error("not in the prestart bundle");', loader: "js" } : undefined));
  },
};
const common = {
  absWorkingDir: root,
  outdir,
  outExtension: { ".js": ".cjs" },
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  // No import() is left in the output: dynamic imports of bundled modules become lazy initialisers, those of
  // externals and builtins `require` (a vm-compiled script has no ESM loader to call).
  supported: { "dynamic-import": false },
  // ESM sources and packages locate files relative to import.meta.url; in CommonJS that is this file's URL.
  define: { "import.meta.url": "__fabrikModuleUrl" },
  banner: { js: '"use strict"; var __fabrikModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
  sourcemap: "linked",
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "none",
  logLevel: "warning",
  plugins: [zodEnglishOnly],
};
await Promise.all([
  build({
    ...common,
    entryPoints: { fabrik: "src/fabrik/cli.ts" },
    // ssh2 keeps its optional native parts, so it stays external and loads when a command opens SSH.
    external: ["ssh2", "cpu-features", "*.node"],
    // yargs (through cliui) and cli-table3 measure text with string-width, whose emoji regex costs ~30 ms at every
    // start; fast-string-width gives the same widths for our output (src/fabrik/render/string-width.cjs).
    alias: { "string-width": "./src/fabrik/render/string-width.cjs" },
  }),
  build({ ...common, entryPoints: { start: "src/fabrik/start.ts" } }),
  // The prestart of a live `runs show` (src/fabrik/prestart.ts), loaded before fabrik.cjs for it only.
  build({
    ...common,
    entryPoints: { prestart: "src/fabrik/prestart.ts" },
    external: ["ssh2", "cpu-features", "*.node"],
    plugins: [zodEnglishOnly, notInPrestart],
    alias: { "string-width": "./src/fabrik/render/string-width.cjs" },
  }),
]);
process.stderr.write(`built dist/cli in ${Math.round(performance.now() - t0)} ms\n`);
