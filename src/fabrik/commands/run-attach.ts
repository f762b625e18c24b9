/** `fabrik run attach --id N [--tail 50] [--no-follow] [--exit-status]`: print a run's log and follow it (Ctrl-C detaches). */
import type { Context } from "../context.js";
import { attachRun } from "../attach.js";

export async function run(
  ctx: Context,
  args: { id: number; tail?: number; follow?: boolean; exitStatus?: boolean; "exit-status"?: boolean },
): Promise<number> {
  return await attachRun(ctx, {
    id: args.id,
    tail: args.tail ?? 50,
    follow: args.follow ?? true,
    exitStatus: args.exitStatus ?? args["exit-status"] ?? false,
  });
}
