/** @jsxImportSource smithers-orchestrator */
/**
 * gate — a run that waits for people (engine smithers-orchestrator 0.32.x): `build`, then an approval gate
 * `deploy` (`<Approval>`; a denial fails the run), then a durable signal `go` (`<Signal>`, payload `{ ok }`), then
 * `ship`. No model needed.
 *
 * The engine exits with code 3 each time the run parks (status `waiting-approval`, then `waiting-event`). Answer it
 * with `fabrik run approve --id N` (or `run deny`) and `fabrik run signal --id N go --data '{"ok":true}'`: fabrik
 * records the decision with the engine's own verb and starts the run again on the same run id.
 *
 * Input (optional): `sleepMs` — how long `build` and `ship` take (default 200).
 * DB: `SMITHERS_DB_PATH` (when set and non-empty) is passed as `dbPath`; otherwise the engine's default.
 */
import { createSmithers, Sequence, Approval, Signal } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers, outputs } = createSmithers(
  {
    input: z.object({ sleepMs: z.number().int().min(0).default(200) }),
    step: z.object({ n: z.number().int() }),
    decision: z.object({ approved: z.boolean(), note: z.string().nullable().optional(), decidedBy: z.string().nullable(), decidedAt: z.string().nullable() }),
    go: z.object({ ok: z.boolean() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export default smithers((ctx) => {
  const sleepMs = ctx.input.sleepMs ?? 200;
  return (
    <Workflow name="gate">
      <Sequence>
        <Task id="build" output={outputs.step} retries={0}>
          {async () => {
            await sleep(sleepMs);
            return { n: 1 };
          }}
        </Task>
        <Approval id="deploy" output={outputs.decision} request={{ title: "Deploy the build?" }} onDeny="fail" />
        <Signal id="go" schema={outputs.go} />
        <Task id="ship" output={outputs.step} retries={0}>
          {async () => {
            await sleep(sleepMs);
            return { n: 2 };
          }}
        </Task>
      </Sequence>
    </Workflow>
  );
});
