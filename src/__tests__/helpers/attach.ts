/** `fabrik run attach` in-process: the attach stream printed through the CLI's one output path; returns the exit code. */
import { emitResult } from "../../fabrik/cli.js";
import { attachStream, type AttachOptions } from "../../fabrik/attach.js";
import type { Context } from "../../fabrik/context.js";

export async function attachRun(ctx: Context, o: AttachOptions): Promise<number> {
  return emitResult(ctx, attachStream(ctx, o));
}
