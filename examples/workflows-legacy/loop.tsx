/** @jsxImportSource smithers-orchestrator */
/**
 * loop — a `<Ralph>` loop of sleeping tasks that needs no model, for the LEGACY engine
 * smithers-orchestrator 0.5.x (0.5 has `Ralph`; 0.32 renamed it `Loop`).
 *
 * Each iteration runs task `tick` (sleeps `sleepMs`, returns `{ count }` = previous count + 1); the loop ends
 * when the count reaches `iterations`. Then task `done` records the final count.
 * Tasks are agent-shaped objects (0.5 does not call function children).
 *
 * Input (optional): `iterations` (default 3), `sleepMs` (default 1000).
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise `./smithers.db`.
 */
import { createSmithers, Ralph, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers } = createSmithers(
  {
    tick: z.object({ count: z.number().int() }),
    done: z.object({ total: z.number().int() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);

type LoopInput = { iterations?: number; sleepMs?: number };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
  const input = (ctx.input ?? {}) as LoopInput;
  const iterations = input.iterations ?? 3;
  const sleepMs = input.sleepMs ?? 1000;
  const count: number = ctx.latest("tick", "tick")?.count ?? 0;
  return (
    <Workflow name="loop">
      <Sequence>
        <Ralph id="count" until={count >= iterations} maxIterations={iterations + 1} onMaxReached="fail">
          <Task
            id="tick"
            output="tick"
            retries={0}
            agent={computeAgent("tick", async () => {
              await sleep(sleepMs);
              return { count: count + 1 };
            })}
          >
            {"tick"}
          </Task>
        </Ralph>
        <Task id="done" output="done" retries={0} agent={computeAgent("done", async () => ({ total: count }))}>
          {"done"}
        </Task>
      </Sequence>
    </Workflow>
  );
});
