#!/usr/bin/env node
// Builds the fabrik CLI into ONE bundle (esbuild): dist/cli/fabrik.js plus chunks that are loaded only when a
// command needs them (code splitting on dynamic import()), so start-up parses little and resolves no package
// files. Native packages (better-sqlite3, ssh2) stay external and load from node_modules when used.
// dist/cli/ sits two levels below the package root, like src/<layer>/, so module-relative paths to
// lima-templates/ and dist/guest/ hold in both.
import { build } from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(root, "dist", "cli");
fs.rmSync(outdir, { recursive: true, force: true });
const t0 = performance.now();
await build({
  absWorkingDir: root,
  entryPoints: { fabrik: "src/fabrik/cli.ts" },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // better-sqlite3's JavaScript is bundled (its addon is loaded by path, see registry.ts); ssh2 keeps its
  // optional native parts, so it stays external and loads when a command opens SSH.
  external: ["ssh2", "cpu-features", "*.node"],
  // yargs (through cliui) and cli-table3 measure text with string-width, whose emoji regex costs ~30 ms at every
  // start; fast-string-width gives the same widths for our output (src/fabrik/render/string-width.cjs).
  alias: { "string-width": "./src/fabrik/render/string-width.cjs" },
  // CommonJS dependencies bundled into ESM still call require() for Node builtins.
  banner: { js: 'import { createRequire as __fabrikRequire } from "node:module"; const require = __fabrikRequire(import.meta.url);' },
  chunkNames: "[name]-[hash]",
  sourcemap: "linked",
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "none",
  logLevel: "warning",
});
process.stderr.write(`built dist/cli in ${Math.round(performance.now() - t0)} ms\n`);
