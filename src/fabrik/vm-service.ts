/**
 * VM lifecycle as fabrik sees it: the driver's view merged with the registry (which driver, active
 * runs). Command files call these functions and render what they return.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import type { Context } from "./context.js";
import { driverFor } from "./context.js";
import type { DriverName, VmInfo } from "../vm/driver.js";
import { FabrikError, NotFoundError, PrerequisiteError, RefusedError, UserError, asInternalError } from "../core/errors.js";
import { assertVmName } from "../vm/names.js";

/** One row of `fabrik vm list`: limactl's fields plus fabrik's. Sizes in bytes, times epoch ms. */
export interface VmListRow {
  name: string;
  driver: DriverName;
  status: string;
  cpus: number | null;
  memory_bytes: number | null;
  disk_bytes: number | null;
  arch: string | null;
  ssh: string | null;
  dir: string | null;
  guest_home: string | null;
  /** Runs cached as active in this VM (core/status.ts ACTIVE_RUN_STATUSES). */
  active_runs: number;
  last_run_id: number | null;
  last_run_at_ms: number | null;
  errors: string[];
}

/** The project's default Lima template (`lima-templates/fabrik.yaml`). */
export function defaultTemplatePath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, "..", "..", "lima-templates", "fabrik.yaml");
}

function rowFrom(info: VmInfo, summary: { active: number; lastRunId: number | null; lastRunAtMs: number | null } | undefined): VmListRow {
  return {
    name: info.name,
    driver: info.driver,
    status: info.status,
    cpus: info.cpus ?? null,
    memory_bytes: info.memoryBytes ?? null,
    disk_bytes: info.diskBytes ?? null,
    arch: info.arch ?? null,
    ssh: info.sshLocalPort ? `127.0.0.1:${info.sshLocalPort}` : null,
    dir: info.dir ?? null,
    guest_home: info.guestHome ?? null,
    active_runs: summary?.active ?? 0,
    last_run_id: summary?.lastRunId ?? null,
    last_run_at_ms: summary?.lastRunAtMs ?? null,
    errors: info.errors,
  };
}

/**
 * Every VM: all Lima instances (when limactl is usable), all local VMs, and registry VMs the drivers
 * no longer report (status `Unknown`, with the reason). A missing limactl only warns when the
 * registry holds Lima VMs.
 */
export async function listVms(ctx: Context): Promise<{ rows: VmListRow[]; warnings: string[] }> {
  const warnings: string[] = [];
  const reg = ctx.registry();
  const known = reg.listVms();
  const summary = reg.vmRunSummary();
  const rows = new Map<string, VmListRow>();
  const timeoutMs = ctx.config.probeTimeoutMs * 2;
  const wantLima = ctx.config.driver === "lima" || known.some((v) => v.driver === "lima");
  const [lima, local] = await Promise.all([
    wantLima
      ? ctx
          .driver("lima")
          .then((d) => d.list({ timeoutMs }))
          .then((l) => ({ ok: true as const, l }))
          .catch((err: unknown) => ({ ok: false as const, err }))
      : Promise.resolve({ ok: true as const, l: [] as VmInfo[] }),
    ctx.driver("local").then((d) => d.list({ timeoutMs })),
  ]);
  let limaError: string | undefined;
  if (lima.ok) {
    for (const i of lima.l) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  } else {
    limaError = lima.err instanceof Error ? lima.err.message : String(lima.err);
    if (known.some((v) => v.driver === "lima")) warnings.push(`cannot list Lima VMs: ${limaError}`);
  }
  for (const i of local) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  for (const v of known) {
    if (rows.has(v.name)) continue;
    const reason = v.driver === "lima" && limaError ? `limactl unavailable: ${limaError}` : `the ${v.driver} driver no longer reports this VM`;
    rows.set(v.name, {
      ...rowFrom({ name: v.name, driver: v.driver, status: "Unknown", guestHome: v.guest_home ?? undefined, errors: [reason] } as VmInfo, summary.get(v.name)),
    });
  }
  return { rows: [...rows.values()].sort((a, b) => a.name.localeCompare(b.name)), warnings };
}

export interface CreateVmRequest {
  name: string;
  driver: DriverName;
  template?: string | undefined;
  cpus?: number | undefined;
  memoryGiB?: number | undefined;
  diskGiB?: number | undefined;
  timeoutMs: number;
}

/** Validate a create request before touching anything (name, template readable, not existing). */
export async function validateCreate(ctx: Context, req: CreateVmRequest): Promise<{ template: string | undefined }> {
  assertVmName(req.name);
  let template = req.template;
  if (req.driver === "lima") {
    template ??= defaultTemplatePath();
    try {
      fs.accessSync(template, fs.constants.R_OK);
    } catch {
      throw new UserError(`cannot read template ${template}`, "pass --template FILE with a readable Lima template");
    }
  }
  const existing = ctx.registry().getVm(req.name);
  if (existing) throw new RefusedError(`VM ${req.name} already exists (driver ${existing.driver})`, "pick another name, or `fabrik vm delete` it first");
  const info = await (await ctx.driver(req.driver)).inspect(req.name, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (info) throw new RefusedError(`VM ${req.name} already exists`, "pick another name, or `fabrik vm delete` it first");
  return { template };
}

/** Create and start a VM, and record it (with its guest home) in the registry. */
export async function createAndStartVm(ctx: Context, req: CreateVmRequest, template: string | undefined): Promise<VmInfo> {
  const driver = await ctx.driver(req.driver);
  await driver.create({ name: req.name, template, cpus: req.cpus, memoryGiB: req.memoryGiB, diskGiB: req.diskGiB, timeoutMs: req.timeoutMs });
  ctx.registry().upsertVm({ name: req.name, driver: req.driver, guest_home: null, created_at_ms: ctx.now(), template: template ?? null });
  await driver.start(req.name, { timeoutMs: req.timeoutMs });
  const info = await driver.inspect(req.name, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new FabrikError("remote", `VM ${req.name} vanished right after it was created`);
  ctx.registry().upsertVm({ name: req.name, driver: req.driver, guest_home: info.guestHome ?? null, created_at_ms: ctx.now(), template: template ?? null });
  return info;
}

/** The guest home of a VM: from the registry, else asked from the driver (and remembered). */
export async function guestHomeOf(ctx: Context, vm: string): Promise<string> {
  const rec = ctx.registry().getVm(vm);
  if (rec?.guest_home) return rec.guest_home;
  const { driver, name } = await driverFor(ctx, vm);
  const info = await driver.inspect(vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${vm} does not exist`, "see `fabrik vm list`");
  if (!info.guestHome) throw new PrerequisiteError(`cannot tell the guest home of VM ${vm}`, "check `limactl list --json` shows config.user.home");
  ctx.registry().upsertVm({ name: vm, driver: name, guest_home: info.guestHome, created_at_ms: rec?.created_at_ms ?? ctx.now(), template: rec?.template ?? null });
  return info.guestHome;
}

/** Outcome of a multi-VM operation, per VM: what `vm start|stop|delete --json` prints. */
export interface VmOutcome {
  name: string;
  ok: boolean;
  error: string | null;
}

/**
 * Apply `op` to each VM in turn, carrying on past failures (Lima's `stop` reports all of them at the end).
 * Returns each VM's outcome and the errors, to be reported after the outcomes.
 */
export async function forEachVm(names: readonly string[], op: (name: string) => Promise<void>): Promise<{ outcomes: VmOutcome[]; errors: FabrikError[] }> {
  const outcomes: VmOutcome[] = [];
  const errors: FabrikError[] = [];
  for (const name of names) {
    try {
      await op(name);
      outcomes.push({ name, ok: true, error: null });
    } catch (err) {
      const fe = err instanceof FabrikError ? err : asInternalError(err);
      outcomes.push({ name, ok: false, error: fe.message });
      errors.push(fe);
    }
  }
  return { outcomes, errors };
}

/** What `vm create --json` prints. */
export interface CreatedVm {
  name: string;
  driver: DriverName;
  status: string | undefined;
  guest_home: string | null;
  /** The engine installed, or null with `--no-engine`. */
  engine_version: string | null;
}

/**
 * `vm create`: validate, create and start the VM, install the engine — as progress steps on stderr (listr2 on a
 * TTY, `==>` lines otherwise). Throws before touching anything for bad input.
 */
export async function createVm(ctx: Context, req: CreateVmRequest & { engine: string | null }): Promise<CreatedVm> {
  const [{ ensureEngine, requireEngineDialect }, { runSteps }, { DEFAULTS }] = await Promise.all([import("../vm/engine.js"), import("./progress.js"), import("./config.js")]);
  if (req.engine !== null) requireEngineDialect(req.engine);
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
      title: `install engine ${req.engine ?? ""}`.trim(),
      skip: () => (req.engine === null ? "--no-engine" : undefined),
      run: async () => {
        const r = await ensureEngine(await ctx.driver(req.driver), req.name, info!.guestHome!, req.engine!, {
          cacheDir: ctx.config.engineCacheDir,
          timeoutMs: DEFAULTS.engineInstallTimeoutMs,
          signal: ctx.signal,
        });
        return `${r.fresh ? "installed" : "already installed"} in ${(r.durationMs / 1000).toFixed(1)}s`;
      },
    },
  ]);
  return { name: req.name, driver: req.driver, status: info?.status, guest_home: info?.guestHome ?? null, engine_version: req.engine };
}

/** The result of `vm start|stop|delete`: one line per VM, errors after, the first failure's exit code. */
async function multiVm(ctx: Context, names: readonly string[], verb: string, op: (name: string) => Promise<void>) {
  const { view } = await import("./command.js");
  const { exitCodeOf } = await import("./exit-codes.js");
  const { outcomes, errors } = await forEachVm(names, op);
  const failed = errors.length;
  return view(outcomes, (v) => v.filter((o) => o.ok).map((o) => `${o.name}\t${verb}\n`).join(""), {
    errors,
    notes: failed > 0 && names.length > 1 ? [`${failed} of ${names.length} VMs failed`] : [],
    exitCode: errors[0] ? exitCodeOf(errors[0]) : 0,
  });
}

/** Active runs cached for a VM (core/status.ts ACTIVE_RUN_STATUSES). */
async function activeRunsOf(ctx: Context, vm: string) {
  const { ACTIVE_RUN_STATUSES } = await import("../core/status.js");
  return ctx.registry().listRuns({ vm, statuses: ACTIVE_RUN_STATUSES });
}

async function refuseActive(ctx: Context, vm: string, verb: string): Promise<void> {
  const active = await activeRunsOf(ctx, vm);
  if (active.length === 0) return;
  throw new RefusedError(
    `VM ${vm} has ${active.length} active run(s): ${active.map((r) => `${r.id} (${r.status})`).join(", ")}; ${verb} would cut them off`,
    `stop them with ${active.slice(0, 3).map((r) => `\`fabrik run cancel --id ${r.id} --yes\``).join(", ")}${active.length > 3 ? ", …" : ""}, check them with \`fabrik runs list --vm ${vm}\`, or pass --force (a power cut: the runs are killed, not cancelled)`,
  );
}

/** `vm start NAME...`. */
export function startVms(ctx: Context, names: readonly string[], opts: { timeoutMs: number }) {
  return multiVm(ctx, names, "started", async (name) => {
    ctx.io.stderr.write(`==> starting ${name}\n`);
    await (await driverFor(ctx, name)).driver.start(name, { timeoutMs: opts.timeoutMs });
  });
}

/** `vm stop NAME...`: refuses a VM with active runs unless `force` (which also powers off at once). */
export function stopVms(ctx: Context, names: readonly string[], opts: { force: boolean }) {
  return multiVm(ctx, names, "stopped", async (name) => {
    if (!opts.force) await refuseActive(ctx, name, "stopping it");
    ctx.io.stderr.write(`==> stopping ${name}\n`);
    await (await driverFor(ctx, name)).driver.stop(name, { timeoutMs: 7 * 60_000, force: opts.force });
  });
}

/** `vm delete NAME...`: refuses a VM with active runs unless `force`. */
export function deleteVms(ctx: Context, names: readonly string[], opts: { force: boolean }) {
  return multiVm(ctx, names, "deleted", async (name) => {
    if (!opts.force) await refuseActive(ctx, name, "deleting it");
    const { driver } = await driverFor(ctx, name);
    ctx.io.stderr.write(`==> deleting ${name}\n`);
    await driver.delete(name, { timeoutMs: 7 * 60_000, force: opts.force });
    ctx.registry().deleteVm(name);
  });
}
