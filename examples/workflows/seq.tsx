/** @jsxImportSource smithers-orchestrator */
/**
 * seq — N sequential compute tasks that need no model (engine smithers-orchestrator 0.32.x).
 *
 * Tasks `step-1` .. `step-N` run one after another; each sleeps `sleepMs` and returns `{ n, sleptMs }`.
 *
 * Input (all optional, JSON via `smithers up seq.tsx --input '{…}'`):
 * - `tasks`   number of tasks (default 6)
 * - `sleepMs` how long each task sleeps (default 1000)
 * - `failAt`  1-based index of a task that throws (default 0 = none). Every task has `retries={0}`,
 *             so that throw fails the run.
 * - `failUnlessFile` optional path: task `failAt` throws only while this file does NOT exist. A test can
 *             "fix the cause" by creating the file, then continue the failed run so the task runs again
 *             and succeeds.
 * - `gateDir` optional folder: makes every task wait for a signal (for tests that must act while a given
 *             task runs, without racing a timer). Task N first creates `<gateDir>/at-<N>` ("I am in task N",
 *             re-created by every attempt), sleeps `sleepMs`, then waits until `<gateDir>/release-<N>` exists
 *             (checked every 50 ms) before it fails or finishes; removing the folder releases every task.
 *             Without `gateDir` nothing changes.
 *
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise the engine's default.
 */
import { existsSync, writeFileSync } from "node:fs";
import { createSmithers, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers, outputs } = createSmithers(
  {
    input: z.object({
      tasks: z.number().int().min(1).default(6),
      sleepMs: z.number().int().min(0).default(1000),
      failAt: z.number().int().min(0).default(0),
      failUnlessFile: z.string().optional(),
      gateDir: z.string().optional(),
    }),
    step: z.object({ n: z.number().int(), sleptMs: z.number().int() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Announce task `n` in `gateDir` (`at-<n>`), then wait until the test creates `release-<n>`. */
async function gate(gateDir: string | undefined, n: number, sleepMs: number): Promise<void> {
  if (!gateDir) return sleep(sleepMs);
  try {
    writeFileSync(`${gateDir}/at-${n}`, `${process.pid}\n`);
  } catch {
    // The folder is gone: released (below).
  }
  await sleep(sleepMs);
  // A removed gate folder releases every task (a test that ends early lets its runs finish).
  while (existsSync(gateDir) && !existsSync(`${gateDir}/release-${n}`)) await sleep(50);
}

export default smithers((ctx) => {
  const tasks = ctx.input.tasks ?? 6;
  const sleepMs = ctx.input.sleepMs ?? 1000;
  const failAt = ctx.input.failAt ?? 0;
  const failUnlessFile = ctx.input.failUnlessFile;
  const gateDir = ctx.input.gateDir;
  const steps = Array.from({ length: tasks }, (_, i) => i + 1);
  return (
    <Workflow name="seq">
      <Sequence>
        {steps.map((n) => (
          <Task key={`step-${n}`} id={`step-${n}`} output={outputs.step} retries={0}>
            {async () => {
              await gate(gateDir, n, sleepMs);
              if (n === failAt && !(failUnlessFile && existsSync(failUnlessFile))) {
                throw new Error(
                  `step-${n} failed on purpose (failAt=${failAt})` +
                    (failUnlessFile ? `: ${failUnlessFile} does not exist` : ""),
                );
              }
              return { n, sleptMs: sleepMs };
            }}
          </Task>
        ))}
      </Sequence>
    </Workflow>
  );
});
