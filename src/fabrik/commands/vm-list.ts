/** `fabrik vm list`: limactl's fields plus fabrik's (active runs, last run). */
import type { Context } from "../context.js";
import { printJson } from "../io.js";
import { listVms } from "../vm-service.js";
import { renderVmList } from "../render/vm.js";

export async function run(ctx: Context, args: { quiet: boolean }): Promise<void> {
  const rows = await listVms(ctx);
  if (ctx.io.json) return printJson(ctx.io, rows);
  if (args.quiet) {
    ctx.io.stdout.write(rows.map((r) => r.name + "\n").join(""));
    return;
  }
  ctx.io.stdout.write(renderVmList(rows, { tty: ctx.io.stdoutTty, now: ctx.now(), color: ctx.io.color }));
}
