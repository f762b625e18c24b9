/**
 * VM lifecycle as fabrik sees it: the driver's view merged with the registry (which driver, active
 * runs). Command files call these functions and render what they return.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import type { Context } from "./context.js";
import { driverFor } from "./context.js";
import type { DriverName } from "./config.js";
import type { VmInfo } from "../vm/driver.js";
import { FabrikError, NotFoundError, PrerequisiteError, RefusedError, UserError } from "../core/errors.js";
import { assertVmName } from "../vm/names.js";
import { warn } from "./io.js";

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
  /** Runs cached as launching/running/waiting in this VM. */
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
export async function listVms(ctx: Context): Promise<VmListRow[]> {
  const reg = ctx.registry();
  const known = reg.listVms();
  const summary = reg.vmRunSummary();
  const rows = new Map<string, VmListRow>();
  const timeoutMs = ctx.config.probeTimeoutMs * 2;
  const wantLima = ctx.config.driver === "lima" || known.some((v) => v.driver === "lima");
  const [lima, local] = await Promise.all([
    wantLima
      ? ctx.drivers
          .get("lima")
          .list({ timeoutMs })
          .then((l) => ({ ok: true as const, l }))
          .catch((err: unknown) => ({ ok: false as const, err }))
      : Promise.resolve({ ok: true as const, l: [] as VmInfo[] }),
    ctx.drivers.get("local").list({ timeoutMs }),
  ]);
  let limaError: string | undefined;
  if (lima.ok) {
    for (const i of lima.l) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  } else {
    limaError = lima.err instanceof Error ? lima.err.message : String(lima.err);
    if (known.some((v) => v.driver === "lima")) warn(ctx.io, `cannot list Lima VMs: ${limaError}`);
  }
  for (const i of local) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  for (const v of known) {
    if (rows.has(v.name)) continue;
    const reason = v.driver === "lima" && limaError ? `limactl unavailable: ${limaError}` : `the ${v.driver} driver no longer reports this VM`;
    rows.set(v.name, {
      ...rowFrom({ name: v.name, driver: v.driver, status: "Unknown", guestHome: v.guest_home ?? undefined, errors: [reason] } as VmInfo, summary.get(v.name)),
    });
  }
  return [...rows.values()].sort((a, b) => a.name.localeCompare(b.name));
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
  const info = await ctx.drivers.get(req.driver).inspect(req.name, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (info) throw new RefusedError(`VM ${req.name} already exists`, "pick another name, or `fabrik vm delete` it first");
  return { template };
}

/** Create and start a VM, and record it (with its guest home) in the registry. */
export async function createAndStartVm(ctx: Context, req: CreateVmRequest, template: string | undefined): Promise<VmInfo> {
  const driver = ctx.drivers.get(req.driver);
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
  const { driver, name } = driverFor(ctx, vm);
  const info = await driver.inspect(vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${vm} does not exist`, "see `fabrik vm list`");
  if (!info.guestHome) throw new PrerequisiteError(`cannot tell the guest home of VM ${vm}`, "check `limactl list --json` shows config.user.home");
  ctx.registry().upsertVm({ name: vm, driver: name, guest_home: info.guestHome, created_at_ms: rec?.created_at_ms ?? ctx.now(), template: rec?.template ?? null });
  return info.guestHome;
}

/** Outcome of a multi-VM operation: each VM's error, or null. */
export type MultiResult = { name: string; error: Error | null }[];

/** Apply `op` to each VM in turn, carrying on past failures. */
export async function forEachVm(names: readonly string[], op: (name: string) => Promise<void>): Promise<MultiResult> {
  const out: MultiResult = [];
  for (const name of names) {
    try {
      await op(name);
      out.push({ name, error: null });
    } catch (err) {
      out.push({ name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return out;
}
