#!/usr/bin/env node
// The fabrik executable: a thin shim over the bundled CLI (`npm run build` → dist/cli/). CommonJS (bin/package.json),
// so Node starts it without its ESM loader; dist/cli/start.cjs answers --version and loads the CLI bundle.
"use strict";
const path = require("node:path");
require("../dist/cli/start.cjs").start(process.argv.slice(2), path.join(__dirname, "..", "dist", "cli", "fabrik.cjs"));
