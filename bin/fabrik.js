#!/usr/bin/env node
// The fabrik executable: a thin shim over the compiled CLI (npm run build → dist/).
import { main } from "../dist/fabrik/cli.js";

await main(process.argv.slice(2));
