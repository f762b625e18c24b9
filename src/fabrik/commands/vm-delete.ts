/** `fabrik vm delete NAME...`: refuses while a run is active unless --force; carries on past failures. */
import type { Context } from "../context.js";
import { driverFor } from "../context.js";
import { forEachVm } from "../vm-service.js";
import { reportMulti } from "./vm-common.js";
import { RefusedError } from "../../core/errors.js";
import { assertVmName } from "../../vm/names.js";

export async function run(ctx: Context, args: { names: string[]; force: boolean }): Promise<number> {
  args.names.forEach(assertVmName);
  const results = await forEachVm(args.names, async (name) => {
    const active = ctx.registry().listRuns({ vm: name, statuses: ["launching", "running", "waiting"] });
    if (active.length > 0 && !args.force) {
      throw new RefusedError(
        `VM ${name} has ${active.length} active run(s): ${active.map((r) => r.id).join(", ")}`,
        "check them with `fabrik runs list --vm " + name + "`, or pass --force",
      );
    }
    const { driver } = driverFor(ctx, name);
    ctx.io.stderr.write(`==> deleting ${name}\n`);
    await driver.delete(name, { timeoutMs: 7 * 60_000, force: args.force });
    ctx.registry().deleteVm(name);
  });
  return reportMulti(ctx, "deleted", results);
}
