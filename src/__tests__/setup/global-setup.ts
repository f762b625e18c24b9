/**
 * vitest global setup (runs once, in vitest's main process, before any worker starts; teardown after the last
 * file, or an exit handler when vitest is interrupted). See helpers/test-root.ts for the root's life cycle. Workers inherit `TMPDIR`/`FABRIK_TEST_ROOT` from
 * this process's environment, which vitest copies when it starts them.
 *
 * Teardown also checks that the run left nothing in the checkout: entries that `git status --porcelain
 * --ignored` shows after the run but not before, other than `.cache/` (fixtures, engines, package caches) and
 * the build output, fail the run.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRoot, removeRoot, removeRootSync, sweepStaleRoots } from "../helpers/test-root.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const ALLOWED_IN_CHECKOUT = [/^\.cache\//, /^dist\//, /^node_modules\//];

/** Untracked and ignored entries of the checkout (global setup/teardown only: a quick local git call). */
function checkoutEntries(): Set<string> | undefined {
  const r = spawnSync("git", ["status", "--porcelain", "--ignored", "--untracked-files=all"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) return undefined;
  return new Set(
    r.stdout
      .split("\n")
      .filter((l) => l.startsWith("??") || l.startsWith("!!"))
      .map((l) => l.slice(3)),
  );
}

export default async function setup(): Promise<() => Promise<void>> {
  const base = os.tmpdir();
  const swept = await sweepStaleRoots(base);
  for (const s of swept) console.log(`[fabrik tests] swept ${s.root} left by an interrupted run (${s.killed} process(es) killed)`);
  // A stale fixture build folder (`<key>.tmp-<pid>` of a dead process) in .cache.
  const fx = path.join(REPO_ROOT, ".cache", "fixtures");
  for (const n of fs.existsSync(fx) ? fs.readdirSync(fx) : []) {
    const m = /\.tmp-(\d+)$/.exec(n);
    if (m && !fs.existsSync(`/proc/${m[1]}`)) fs.rmSync(path.join(fx, n), { recursive: true, force: true });
  }

  const root = createRoot(base);
  process.env.FABRIK_TEST_BASE_TMPDIR = base;
  process.env.FABRIK_TEST_ROOT = root;
  process.env.TMPDIR = root;
  const before = checkoutEntries();
  // Ctrl-C (or any other early process.exit): vitest exits without running the teardown below, and its own
  // "exit" listener calls process.exit() again, which would skip listeners added after it. So this one goes
  // FIRST, and cleans up synchronously on the way out (workers included).
  const onExit = () => {
    const n = removeRootSync(root);
    process.stderr.write(`[fabrik tests] exiting early: killed ${n} process(es) of ${root} and removed it\n`);
  };
  process.prependListener("exit", onExit);

  return async () => {
    process.off("exit", onExit);
    const { killed, killMs, rmMs } = await removeRoot(root);
    // The workers' shared VMs (helpers/worker-fleet.ts) are powered off here by design; anything else that
    // was still running is worth a line.
    const fleet = killed.filter((k) => /\/(ssh)?fleet-\d+\//.test(k.cmdline));
    const other = killed.filter((k) => !fleet.includes(k));
    if (fleet.length) console.log(`[fabrik tests] teardown: powered off the workers' shared VMs (${fleet.length} process(es)) and removed ${root} (kill ${killMs} ms, rm ${rmMs} ms)`);
    if (other.length) {
      console.log(`[fabrik tests] teardown killed ${other.length} other leftover process(es) of ${root}:`);
      for (const k of other.slice(0, 20)) console.log(`  ${k.pid} (${k.why}): ${k.cmdline}`);
    }
    const after = checkoutEntries();
    if (before && after) {
      const left = [...after].filter((e) => !before.has(e) && !ALLOWED_IN_CHECKOUT.some((re) => re.test(e)));
      if (left.length) throw new Error(`the test run left files in the checkout: ${left.join(", ")}`);
    }
  };
}
