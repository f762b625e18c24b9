/** @jsxImportSource smithers-orchestrator */
/**
 * gate — a run that waits for an approval, for the LEGACY engine smithers-orchestrator 0.5.x: `build`, then
 * `deploy` (a task with `needsApproval`: the run parks `waiting-approval` and the engine exits with code 3), then
 * `ship`. 0.5 has no signals. Answer it with `fabrik run approve --id N` (or `run deny`, which fails `deploy`):
 * fabrik records the decision with the engine's own verb and starts the run again on the same run id.
 *
 * 0.5 does not call function children, so each task gets an agent-shaped object (see seq.tsx).
 * Input (optional): `sleepMs` — how long each task takes (default 200).
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise `./smithers.db`.
 */
import { createSmithers, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers } = createSmithers({ step: z.object({ n: z.number().int() }) }, { dbPath: process.env.SMITHERS_DB_PATH || undefined });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
  const sleepMs = ((ctx.input ?? {}) as { sleepMs?: number }).sleepMs ?? 200;
  const step = (n: number) => computeAgent(`step-${n}`, async () => {
    await sleep(sleepMs);
    return { n };
  });
  return (
    <Workflow name="gate">
      <Sequence>
        <Task id="build" output="step" retries={0} agent={step(1)}>{"build"}</Task>
        <Task id="deploy" output="step" retries={0} needsApproval agent={step(2)}>{"deploy"}</Task>
        <Task id="ship" output="step" retries={0} agent={step(3)}>{"ship"}</Task>
      </Sequence>
    </Workflow>
  );
});
