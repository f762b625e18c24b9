/** Shared reporting for multi-VM commands: one line per VM, failures on stderr, worst exit code. */
import type { Context } from "../context.js";
import { FabrikError } from "../../core/errors.js";
import { ExitCode, exitCodeOf } from "../exit-codes.js";
import { printJson } from "../io.js";
import type { MultiResult } from "../vm-service.js";
import { sanitizeLine } from "../../core/sanitize.js";

/** Print the outcome of each VM; exit 0 when all succeeded, else the first failure's code. */
export function reportMulti(ctx: Context, verb: string, results: MultiResult): number {
  if (ctx.io.json) {
    printJson(
      ctx.io,
      results.map((r) => ({ name: r.name, ok: r.error === null, error: r.error ? r.error.message : null })),
    );
  }
  let code: number = ExitCode.OK;
  for (const r of results) {
    if (r.error === null) {
      if (!ctx.io.json) ctx.io.stdout.write(`${r.name}\t${verb}\n`);
      continue;
    }
    const fe = r.error instanceof FabrikError ? r.error : undefined;
    ctx.io.stderr.write(`fabrik: error: ${r.name}: ${sanitizeLine(r.error.message + (fe?.hint ? ` (${fe.hint})` : ""), 4000)}\n`);
    if (code === ExitCode.OK) code = exitCodeOf(r.error);
  }
  const failed = results.filter((r) => r.error !== null).length;
  if (failed > 0 && results.length > 1) ctx.io.stderr.write(`${failed} of ${results.length} VMs failed\n`);
  return code;
}
