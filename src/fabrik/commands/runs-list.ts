/** `fabrik runs list`: live by default, one round trip per VM; unreachable VMs warn but never fail the command. */
import type { Context } from "../context.js";
import { printJson, warn } from "../io.js";
import { listRunViews } from "../runs-service.js";
import { mismatchWarnings, renderRunList } from "../render/run.js";

interface Args {
  vm?: string;
  status?: string[];
  limit: number;
  since?: string;
  live: boolean;
  quiet: boolean;
}

export async function run(ctx: Context, args: Args): Promise<void> {
  const { views, warnings } = await listRunViews(ctx, { vm: args.vm, statuses: args.status, limit: args.limit, since: args.since, live: args.live });
  for (const w of warnings) warn(ctx.io, w);
  if (ctx.io.json) return printJson(ctx.io, views);
  if (args.quiet) {
    ctx.io.stdout.write(views.map((v) => `${v.id}\n`).join(""));
    return;
  }
  for (const v of views) for (const m of mismatchWarnings(v)) warn(ctx.io, m);
  ctx.io.stdout.write(renderRunList(views, { tty: ctx.io.stdoutTty, now: ctx.now(), color: ctx.io.color }));
}
