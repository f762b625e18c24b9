#!/usr/bin/env node
// The fabrik executable: a thin shim over the bundled CLI (`npm run build` → dist/cli/).
import module from "node:module";

// Node ≥ 22.1 keeps compiled code between runs; Node 20 has no compile cache (nothing to do).
module.enableCompileCache?.();
const { main } = await import("../dist/cli/fabrik.js");
await main(process.argv.slice(2));
