import type { Context } from "../context.js";
import { FabrikError } from "../errors.js";

export async function run(_ctx: Context, _args: unknown): Promise<void> {
  throw new FabrikError("internal", 1, "runs-list is not built yet");
}
