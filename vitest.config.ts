import path from "node:path";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Three tiers, one run (`npm test`; `npm run test:unit|test:integration|test:e2e` run one tier):
 * - unit/         hermetic: no child process of any kind (setup/hermetic-unit.ts makes them throw), < 30 s;
 * - integration/  real local processes (bash, shellcheck, bun, the built registry), no VMs;
 * - e2e/          the built CLI against stand-in Lima VMs (namespaces + sshd), local VMs and the real engines.
 *
 * Three workers (`pool: "forks"`, one process per file): the tests are asynchronous (nothing blocks a worker's
 * event loop) and isolated (own temp folders, own or per-worker VMs), and about half of an e2e file's time is
 * spent waiting on engines and VMs: with two workers a quiet 2-core machine was ~50 % busy (10 min 04 s, 9 min 38 s
 * of CPU); with three the same suite took 8 min 41 s. Slow files start first (see
 * SLOW_FIRST), so the run ends when the longest chain does, not with a slow file started last.
 */

/** Rough cost order, slowest first (measured on the 2-core machine). Files not listed run after these, unit tests last. */
const SLOW_FIRST = [
  "e2e/control.test.ts",
  "e2e/fleet.test.ts",
  "reliability/run-faults.test.ts",
  "reliability/process-kills.test.ts",
  "e2e/run-lifecycle.test.ts",
  "e2e/resume.test.ts",
  "e2e/watch.test.ts",
  "e2e/ssh-driver.test.ts",
  "e2e/vm-walkthrough.test.ts",
  "e2e/limactl-standin.test.ts",
  "e2e/lima-contract.test.ts",
  "e2e/lima-driver.test.ts",
  "reliability/hostile-vm.test.ts",
  "reliability/bad-inputs.test.ts",
  "e2e/ssh-transport.test.ts",
  "e2e/attach.test.ts",
  "e2e/main-job.test.ts",
  "reliability/vm-faults.test.ts",
  "reliability/backups.test.ts",
  "e2e/probe.test.ts",
  "e2e/fixtures.test.ts",
];

class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const rel = path.relative(path.join(import.meta.dirname, "src/__tests__"), f.moduleId).split(path.sep).join("/");
      const i = SLOW_FIRST.indexOf(rel);
      if (i >= 0) return i;
      return rel.startsWith("unit/") ? 2000 : 1000;
    };
    return [...files].sort((a, b) => rank(a) - rank(b) || a.moduleId.localeCompare(b.moduleId));
  }
}

export default defineConfig({
  test: {
    include: ["src/__tests__/**/*.test.ts"],
    // Bundles the guest programs (dist/guest/*.js) when missing or stale; the per-run temp root and shared VMs.
    globalSetup: ["src/__tests__/setup/build-guest.ts", "src/__tests__/setup/global-setup.ts"],
    setupFiles: ["src/__tests__/setup/hermetic-unit.ts", "src/__tests__/setup/dev-null-guard.ts"],
    // Generous: an e2e test is a chain of CLI calls, each ~1 s of CPU, on a 2-core machine shared with others.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 3,
    minWorkers: 1,
    sequence: { sequencer: SlowFirstSequencer },
  },
});
