/** `fabrik runs show --id N [--no-live]`: the VM as source of truth; `--no-live` never touches the VM. */
import type { Context } from "../context.js";
import { printJson, warn } from "../io.js";
import { showRun } from "../runs-service.js";
import { renderRunDetail } from "../render/run.js";

export async function run(ctx: Context, args: { id: number; live: boolean }): Promise<void> {
  const view = await showRun(ctx, args.id, { live: args.live });
  if (ctx.io.json) return printJson(ctx.io, view);
  if (view.source === "unreachable") warn(ctx.io, `VM ${view.vm} is unreachable; showing cached values`);
  ctx.io.stdout.write(renderRunDetail(view, { tty: ctx.io.stdoutTty, now: ctx.now(), color: ctx.io.color }));
}
