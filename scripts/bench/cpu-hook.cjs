// Loaded into fabrik by the bench (`NODE_OPTIONS=--require …/cpu-hook.cjs`, with BENCH_CPU_LOG set): when the fabrik
// process exits it appends one JSON line with ITS OWN CPU time (user, system; µs) and peak RSS (KiB), as the kernel
// counts them for this process alone — children (limactl, bun, ssh) are not included. Other Node processes that
// inherit NODE_OPTIONS (the limactl stand-in) write nothing.
"use strict";
const fs = require("node:fs");
const log = process.env.BENCH_CPU_LOG;
if (log && /[\\/]bin[\\/]fabrik\.js$/.test(process.argv[1] ?? "")) {
  process.on("exit", () => {
    const u = process.resourceUsage();
    fs.appendFileSync(log, JSON.stringify({ pid: process.pid, user_us: u.userCPUTime, sys_us: u.systemCPUTime, max_rss_kib: u.maxRSS }) + "\n");
  });
}
