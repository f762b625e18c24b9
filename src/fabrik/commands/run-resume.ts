/** `fabrik run resume --id N [--dry-run] [--force] [--fix [--fix-limit B]] [--yes] [--reason TEXT]`. */
import type { Context } from "../context.js";
import { printJson } from "../io.js";
import { RefusedError } from "../../core/errors.js";
import { ResumeRefusedError, resumeRun, type ResumeOutcome } from "../resume-service.js";
import { refusalLine, type ResumePlan } from "../../resume/plan.js";
import { renderResumePlan, renderResumeResult } from "../render/resume.js";

interface Args {
  id: number;
  dryRun: boolean;
  force: boolean;
  fix: boolean;
  fixLimit: number;
  yes: boolean;
  reason?: string;
}

/** Ask on the terminal (stderr), default no. */
async function ask(question: string): Promise<boolean> {
  const readline = await import("node:readline/promises");
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function run(ctx: Context, args: Args): Promise<void> {
  const confirm = (plan: ResumePlan): Promise<boolean> => {
    ctx.io.stderr.write(renderResumePlan(plan, { tty: ctx.io.stderrTty, showScript: false }) + "\n");
    return ask(`Resume run ${args.id} now? [y/N] `);
  };
  let outcome: ResumeOutcome;
  try {
    outcome = await resumeRun(
      ctx,
      { id: args.id, dryRun: args.dryRun, force: args.force, fix: args.fix, fixLimitBytes: args.fixLimit, yes: args.yes, reason: args.reason },
      { confirm },
    );
  } catch (err) {
    if (err instanceof ResumeRefusedError && ctx.io.json) printJson(ctx.io, err.outcome);
    throw err;
  }
  if (ctx.io.json) printJson(ctx.io, outcome);
  else if (outcome.dry_run) ctx.io.stdout.write(renderResumePlan(outcome.plan, { tty: ctx.io.stdoutTty, showScript: true }));
  else ctx.io.stdout.write(renderResumeResult(outcome));
  if (outcome.dry_run && !outcome.allowed) {
    const { message, hint } = refusalLine(outcome.plan);
    throw new RefusedError(message, hint, outcome.plan.reasons.map((r) => r.code));
  }
}
