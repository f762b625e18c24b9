#!/usr/bin/env node
/**
 * Bundle the guest programs (src/vm/guest/<name>.ts) into ONE file each, dist/guest/<name>.js, for bun ≥ 1.3
 * in the VM: CommonJS, platform node, `bun:sqlite` and `node:*` left external, no source map. Beside each bundle,
 * dist/guest/<name>.meta.json lists the source files that went in (esbuild's metafile inputs), which is how
 * {@link buildGuestPrograms} with `onlyIfStale` (the vitest global setup) tells a bundle older than its sources.
 *
 * `npm run build` runs this after tsc. Usage: node scripts/build-guest.mjs [--if-stale]
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

/** The repository root (this file is scripts/build-guest.mjs). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const GUEST_PROGRAMS = ["probe", "resume", "evidence", "inspect", "control"];

function mtimeMs(p) {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
}

/** True when `outfile` exists and no recorded input (nor this script) is newer or gone. */
function upToDate(root, outfile, metaFile) {
  const built = mtimeMs(outfile);
  if (built === undefined) return false;
  let inputs;
  try {
    inputs = Object.keys(JSON.parse(fs.readFileSync(metaFile, "utf8")).inputs ?? {});
  } catch {
    return false;
  }
  if (inputs.length === 0) return false;
  for (const rel of [...inputs, path.relative(root, fileURLToPath(import.meta.url))]) {
    const m = mtimeMs(path.resolve(root, rel));
    if (m === undefined || m > built) return false;
  }
  return true;
}

/**
 * Build every guest program.
 * @param {{ root?: string, onlyIfStale?: boolean }} [opts]
 * @returns {Promise<{ name: string, outfile: string, bytes: number, built: boolean }[]>}
 */
export async function buildGuestPrograms(opts = {}) {
  const root = opts.root ?? REPO_ROOT;
  const outdir = path.join(root, "dist", "guest");
  fs.mkdirSync(outdir, { recursive: true });
  const out = [];
  for (const name of GUEST_PROGRAMS) {
    const outfile = path.join(outdir, `${name}.js`);
    const metaFile = path.join(outdir, `${name}.meta.json`);
    if (opts.onlyIfStale && upToDate(root, outfile, metaFile)) {
      out.push({ name, outfile, bytes: fs.statSync(outfile).size, built: false });
      continue;
    }
    const r = await esbuild.build({
      absWorkingDir: root,
      entryPoints: [path.join("src", "vm", "guest", `${name}.ts`)],
      outfile,
      bundle: true,
      platform: "node",
      format: "cjs",
      // bun 1.3 runs ES2022 and later; nothing is down-levelled that it understands.
      target: "es2022",
      external: ["bun:sqlite", "node:*"],
      sourcemap: false,
      legalComments: "none",
      charset: "utf8",
      metafile: true,
      logLevel: "warning",
      banner: { js: `// fabrik guest program "${name}" (bundled from src/vm/guest/${name}.ts; do not edit)` },
    });
    fs.writeFileSync(metaFile, JSON.stringify({ inputs: r.metafile.inputs }, null, 1) + "\n");
    out.push({ name, outfile, bytes: fs.statSync(outfile).size, built: true });
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const onlyIfStale = process.argv.includes("--if-stale");
  buildGuestPrograms({ onlyIfStale }).then(
    (r) => {
      for (const x of r) console.log(`dist/guest/${x.name}.js: ${x.bytes} bytes${x.built ? "" : " (up to date)"}`);
    },
    (err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
