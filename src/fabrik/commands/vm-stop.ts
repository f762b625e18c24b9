/** `fabrik vm stop NAME...`: carries on past failures, reports them all. */
import type { Context } from "../context.js";
import { driverFor } from "../context.js";
import { forEachVm } from "../vm-service.js";
import { reportMulti } from "./vm-common.js";
import { assertVmName } from "../../vm/names.js";

export async function run(ctx: Context, args: { names: string[]; force: boolean }): Promise<number> {
  args.names.forEach(assertVmName);
  const results = await forEachVm(args.names, async (name) => {
    ctx.io.stderr.write(`==> stopping ${name}\n`);
    await driverFor(ctx, name).driver.stop(name, { timeoutMs: 7 * 60_000, force: args.force });
  });
  return reportMulti(ctx, "stopped", results);
}
