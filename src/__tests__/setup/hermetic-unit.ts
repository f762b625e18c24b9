/**
 * vitest setup file (runs in the worker before each test file). For files of the unit tier
 * (`src/__tests__/unit/`) it makes the tier hermetic by construction: every way of starting a child process
 * (`node:child_process`, and execa, which is built on it) throws, so a unit test that would run bash, bun,
 * sshd, limactl or the built `dist/` fails at once with a clear message instead of quietly depending on the
 * machine. Tests that need processes belong in `integration/` (local processes) or `e2e/` (VMs, engines).
 *
 * The patch relies on `syncBuiltinESMExports()`, which updates the live bindings of every ESM
 * `import { spawn } from "node:child_process"`. Files run in separate worker processes (`pool: "forks"`,
 * isolated), so other tiers never see it.
 */
import { createRequire, syncBuiltinESMExports } from "node:module";
import { expect } from "vitest";

const testPath = expect.getState().testPath ?? "";
if (/[\\/]src[\\/]__tests__[\\/]unit[\\/]/.test(testPath)) {
  const require = createRequire(import.meta.url);
  const cp = require("node:child_process") as Record<string, unknown>;
  for (const fn of ["spawn", "spawnSync", "exec", "execSync", "execFile", "execFileSync", "fork"]) {
    cp[fn] = () => {
      throw new Error(`the unit tier is hermetic: child_process.${fn} is not allowed here (move the test to src/__tests__/integration or e2e)`);
    };
  }
  syncBuiltinESMExports();
}
