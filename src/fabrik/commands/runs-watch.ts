/** `fabrik runs watch --vm NAME [--run-id N]`: live view until the runs end; Ctrl-C exits 130 and never touches a run. */
import type { Context } from "../context.js";
import { watchRuns } from "../watch.js";

interface Args {
  vm: string;
  runId?: number;
  "run-id"?: number;
  interval: number;
  timeout?: number;
  exitStatus?: boolean;
  "exit-status"?: boolean;
  notify: boolean;
}

export async function run(ctx: Context, args: Args): Promise<number> {
  return watchRuns(ctx, {
    vm: args.vm,
    runId: args.runId ?? args["run-id"],
    intervalS: args.interval,
    timeoutS: args.timeout,
    exitStatus: Boolean(args.exitStatus ?? args["exit-status"]),
    notify: args.notify,
  });
}
