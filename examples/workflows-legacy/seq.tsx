/** @jsxImportSource smithers-orchestrator */
/**
 * seq — N sequential tasks that need no model, for the LEGACY engine smithers-orchestrator 0.5.x.
 *
 * Same contract as `examples/workflows/seq.tsx` (0.32): tasks `step-1` .. `step-N`, each sleeps `sleepMs` and
 * returns `{ n, sleptMs }`; input `tasks` (default 6), `sleepMs` (default 1000), `failAt` (default 0 = none;
 * task k throws, `retries={0}` so the run fails), `failUnlessFile` (task `failAt` throws only while that file
 * does NOT exist), `gateDir` (task N creates `<gateDir>/at-<N>`, sleeps, then waits until
 * `<gateDir>/release-<N>` exists, checked every 50 ms, before it fails or finishes; removing the folder releases
 * every task; without it nothing changes).
 *
 * 0.5 does not call function children (no compute tasks), so each task gets a tiny `agent` object whose
 * `async generate()` does the work and returns `{ output: {...} }`; a throw fails the attempt.
 * 0.5 stores the run input in its own `input` table, so the schemas below have no `input` key.
 *
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise the engine's default
 * (`./smithers.db` relative to the process cwd).
 */
import { existsSync, writeFileSync } from "node:fs";
import { createSmithers, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers } = createSmithers(
  {
    step: z.object({ n: z.number().int(), sleptMs: z.number().int() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);

type SeqInput = { tasks?: number; sleepMs?: number; failAt?: number; failUnlessFile?: string; gateDir?: string };

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

/** An agent-shaped object that runs `fn` instead of calling a model. */
function computeAgent(id: string, fn: () => Promise<Record<string, unknown>>): any {
  return {
    id,
    async generate() {
      const output = await fn();
      return { output, text: JSON.stringify(output) };
    },
  };
}

export default smithers((ctx) => {
  const input = (ctx.input ?? {}) as SeqInput;
  const tasks = input.tasks ?? 6;
  const sleepMs = input.sleepMs ?? 1000;
  const failAt = input.failAt ?? 0;
  const failUnlessFile = input.failUnlessFile;
  const gateDir = input.gateDir;
  const steps = Array.from({ length: tasks }, (_, i) => i + 1);
  return (
    <Workflow name="seq">
      <Sequence>
        {steps.map((n) => (
          <Task
            key={`step-${n}`}
            id={`step-${n}`}
            output="step"
            retries={0}
            agent={computeAgent(`step-${n}`, async () => {
              await gate(gateDir, n, sleepMs);
              if (n === failAt && !(failUnlessFile && existsSync(failUnlessFile))) {
                throw new Error(
                  `step-${n} failed on purpose (failAt=${failAt})` +
                    (failUnlessFile ? `: ${failUnlessFile} does not exist` : ""),
                );
              }
              return { n, sleptMs: sleepMs };
            })}
          >
            {`step ${n}`}
          </Task>
        ))}
      </Sequence>
    </Workflow>
  );
});
