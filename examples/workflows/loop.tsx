/** @jsxImportSource smithers-orchestrator */
/**
 * loop — a `<Loop>` of sleeping compute tasks that needs no model (engine smithers-orchestrator 0.32.x).
 *
 * Each iteration runs task `tick` (sleeps `sleepMs`, returns `{ count }` = previous count + 1); the loop ends
 * when the count reaches `iterations`. Then task `done` records the final count. The engine adds one
 * `_smithers_nodes` row per iteration for `tick` (iteration 0, 1, …).
 * (`Loop` is 0.32's name; `Ralph` is its deprecated alias.)
 *
 * Input (optional): `iterations` (default 3), `sleepMs` (default 1000).
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise the engine's default.
 */
import { createSmithers, Loop, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers, outputs } = createSmithers(
  {
    input: z.object({
      iterations: z.number().int().min(1).default(3),
      sleepMs: z.number().int().min(0).default(1000),
    }),
    tick: z.object({ count: z.number().int() }),
    done: z.object({ total: z.number().int() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export default smithers((ctx) => {
  const iterations = ctx.input.iterations ?? 3;
  const sleepMs = ctx.input.sleepMs ?? 1000;
  const count: number = ctx.latest("tick", "tick")?.count ?? 0;
  return (
    <Workflow name="loop">
      <Sequence>
        <Loop id="count" until={count >= iterations} maxIterations={iterations + 1} onMaxReached="fail">
          <Task id="tick" output={outputs.tick} retries={0}>
            {async () => {
              await sleep(sleepMs);
              return { count: count + 1 };
            }}
          </Task>
        </Loop>
        <Task id="done" output={outputs.done} retries={0}>
          {async () => ({ total: count })}
        </Task>
      </Sequence>
    </Workflow>
  );
});
