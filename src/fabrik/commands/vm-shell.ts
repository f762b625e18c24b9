/** `fabrik vm shell NAME [-- cmd …]`: interactive shell or one command; exits with the guest's status. */
import type { Context } from "../context.js";
import { requireVm } from "../context.js";
import { ExitWith } from "../exit-codes.js";
import { assertVmName } from "../../vm/names.js";

export async function run(ctx: Context, args: { name: string; cmd?: string[]; workdir?: string; "--"?: string[] }): Promise<void> {
  assertVmName(args.name);
  const { driver } = await requireVm(ctx, args.name);
  const argv = [...(args.cmd ?? []), ...(args["--"] ?? [])];
  const code = await driver.shell(args.name, argv.length > 0 ? argv : undefined, { cwd: args.workdir });
  throw new ExitWith(code);
}
