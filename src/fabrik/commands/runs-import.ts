/** `fabrik runs import --vm NAME [--path DIR|DB]`: register runs that exist in a VM; importing twice does not duplicate. */
import type { Context } from "../context.js";
import { printJson } from "../io.js";
import { importRuns } from "../run-import.js";
import { renderRunList } from "../render/run.js";
import { sanitizeLine } from "../../core/sanitize.js";

export async function run(ctx: Context, args: { vm: string; path?: string }): Promise<void> {
  const r = await importRuns(ctx, args.vm, args.path);
  if (ctx.io.json) return printJson(ctx.io, r);
  if (r.imported.length > 0) ctx.io.stdout.write(renderRunList(r.imported, { tty: ctx.io.stdoutTty, now: ctx.now(), color: ctx.io.color }));
  ctx.io.stderr.write(`imported ${r.imported.length} run(s); ${r.already_registered.length} already registered${r.skipped.length ? `; ${r.skipped.length} skipped` : ""}\n`);
  for (const s of r.skipped) ctx.io.stderr.write(`  skipped ${sanitizeLine(s.control_dir)}: ${s.reason}\n`);
}
