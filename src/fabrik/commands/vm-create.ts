/** `fabrik vm create NAME`: create, start, install the engine — listr2 steps on a TTY, plain lines otherwise. */
import type { Context } from "../context.js";
import { printJson } from "../io.js";
import { runSteps } from "../progress.js";
import { createAndStartVm, validateCreate } from "../vm-service.js";
import { ensureEngine, requireEngineDialect } from "../../vm/engine.js";
import { DEFAULTS } from "../config.js";
import type { VmInfo } from "../../vm/driver.js";

interface Args {
  name: string;
  template?: string;
  cpus?: number;
  memory?: number;
  disk?: number;
  /** A version, or false for `--no-engine`. */
  engine?: string | boolean;
  timeout: number;
}

export async function run(ctx: Context, args: Args): Promise<void> {
  const req = {
    name: args.name,
    driver: ctx.config.driver,
    template: args.template,
    cpus: args.cpus,
    memoryGiB: args.memory,
    diskGiB: args.disk,
    timeoutMs: args.timeout * 1000,
  };
  const skipEngine = args.engine === false;
  if (!skipEngine) requireEngineDialect(ctx.config.engineVersion);
  const { template } = await validateCreate(ctx, req);
  let info: VmInfo | undefined;
  await runSteps(ctx.io, [
    {
      title: `create and start ${req.driver} VM ${req.name}`,
      run: async () => {
        info = await createAndStartVm(ctx, req, template);
        return `guest home ${info.guestHome}`;
      },
    },
    {
      title: `install engine ${ctx.config.engineVersion}`,
      skip: () => (skipEngine ? "--no-engine" : undefined),
      run: async () => {
        const r = await ensureEngine(ctx.drivers.get(req.driver), req.name, info!.guestHome!, ctx.config.engineVersion, {
          cacheDir: ctx.config.engineCacheDir,
          timeoutMs: DEFAULTS.engineInstallTimeoutMs,
          signal: ctx.signal,
        });
        return `${r.fresh ? "installed" : "already installed"} in ${(r.durationMs / 1000).toFixed(1)}s`;
      },
    },
  ]);
  if (ctx.io.json) printJson(ctx.io, { name: req.name, driver: req.driver, status: info?.status, guest_home: info?.guestHome ?? null, engine_version: skipEngine ? null : ctx.config.engineVersion });
  else ctx.io.stdout.write(`${req.name}\n`);
}
