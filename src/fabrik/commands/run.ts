/** `fabrik run --vm NAME --workflow PATH [--input JSON|@file] [--name LABEL] [--follow]`. */
import type { Context } from "../context.js";
import { printJson } from "../io.js";
import { launchRun } from "../launch.js";
import { UsageError } from "../../core/errors.js";

interface Args {
  vm?: string;
  workflow?: string;
  input?: string;
  name?: string;
  follow: boolean;
  exitStatus?: boolean;
}

export async function run(ctx: Context, args: Args): Promise<number | void> {
  if (!args.vm) throw new UsageError("missing --vm NAME", "e.g. fabrik run --vm dev --workflow wf.tsx");
  if (!args.workflow) throw new UsageError("missing --workflow PATH", "e.g. fabrik run --vm dev --workflow wf.tsx");
  const result = await launchRun(ctx, { vm: args.vm, workflow: args.workflow, input: args.input, label: args.name, engineVersion: ctx.config.engineVersion });
  if (ctx.io.json) printJson(ctx.io, result);
  else {
    ctx.io.stdout.write(`${result.id}\n`);
    ctx.io.stderr.write(`run ${result.id} started in ${result.vm} (smithers run ${result.smithers_run_id}); follow it with \`fabrik run attach --id ${result.id}\`\n`);
  }
  if (args.follow) {
    const { attachRun } = await import("../attach.js");
    return attachRun(ctx, { id: result.id, tail: 1_000_000, follow: true, exitStatus: false });
  }
}
