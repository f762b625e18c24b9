/** `fabrik vm start NAME...`: carries on past failures, reports them all. */
import type { Context } from "../context.js";
import { driverFor } from "../context.js";
import { forEachVm } from "../vm-service.js";
import { reportMulti } from "./vm-common.js";
import { assertVmName } from "../../vm/names.js";

export async function run(ctx: Context, args: { names: string[]; timeout: number }): Promise<number> {
  args.names.forEach(assertVmName);
  const results = await forEachVm(args.names, async (name) => {
    ctx.io.stderr.write(`==> starting ${name}\n`);
    await driverFor(ctx, name).driver.start(name, { timeoutMs: args.timeout * 1000 });
  });
  return reportMulti(ctx, "started", results);
}
