/**
 * Multi-step operations (create a VM, install an engine, launch a run): listr2 on an interactive stderr,
 * plain `==> step` lines otherwise. Never on stdout, never in JSON mode's data stream.
 */
import type { Io } from "./io.js";

export interface Step {
  title: string;
  /** Do the work; may return a short detail shown after the title. */
  run: () => Promise<string | void>;
  /** Skip this step when it returns a reason. */
  skip?: () => string | undefined;
}

/** Run steps in order; stops at the first failure and rethrows it. */
export async function runSteps(io: Io, steps: Step[]): Promise<void> {
  if (io.stderrTty && !io.json) {
    const { Listr, ListrLogger, ProcessOutput } = await import("listr2");
    const list = new Listr(
      steps.map((s) => ({
        title: s.title,
        skip: () => {
          const reason = s.skip?.();
          return reason ? `${s.title}: skipped (${reason})` : false;
        },
        task: async (_ctx: unknown, task: { title: string }) => {
          const detail = await s.run();
          if (detail) task.title = `${s.title} (${detail})`;
        },
      })),
      {
        exitOnError: true,
        registerSignalListeners: false,
        renderer: "default",
        collectErrors: false,
        // listr2 draws on stderr so stdout stays data-only.
        rendererOptions: {
          collapseErrors: false,
          logger: new ListrLogger({ processOutput: new ProcessOutput(process.stderr, process.stderr) }),
        },
      },
    );
    await list.run();
    return;
  }
  for (const s of steps) {
    const skipped = s.skip?.();
    if (skipped) {
      io.stderr.write(`==> ${s.title}: skipped (${skipped})\n`);
      continue;
    }
    io.stderr.write(`==> ${s.title}\n`);
    const detail = await s.run();
    if (detail) io.stderr.write(`    ${detail}\n`);
  }
}
