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
import { FabrikError, NotFoundError, PrerequisiteError, RefusedError, UsageError, UserError, asInternalError } from "../core/errors.js";
import { assertVmName } from "../vm/names.js";
import type { VmRecord } from "./registry.js";
import { sshVmOf } from "./drivers.js";

/** One row of `fabrik vm list`: limactl's fields plus fabrik's. Sizes in bytes, times epoch ms. */
export interface VmListRow {
  name: string;
  driver: DriverName;
  status: string;
  cpus: number | null;
  memory_bytes: number | null;
  disk_bytes: number | null;
  arch: string | null;
  /** How fabrik reaches it: `127.0.0.1:PORT` (Lima's forwarded port), `user@host:port[ via user@jump:port]` (ssh). */
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

/** The `ssh` column of an ssh VM: its address as recorded, via its jump host if any. */
function sshAddressOf(rec: VmRecord | undefined): string | null {
  const vm = sshVmOf(rec);
  if (!vm) return null;
  const a = `${vm.host.user}@${vm.host.host.includes(":") ? `[${vm.host.host}]` : vm.host.host}:${vm.host.port}`;
  return rec?.ssh_jump ? `${a} via ${rec.ssh_jump}` : a;
}

function rowFrom(info: VmInfo, summary: { active: number; lastRunId: number | null; lastRunAtMs: number | null } | undefined, rec?: VmRecord): VmListRow {
  return {
    name: info.name,
    driver: info.driver,
    status: info.status,
    cpus: info.cpus ?? null,
    memory_bytes: info.memoryBytes ?? null,
    disk_bytes: info.diskBytes ?? null,
    arch: info.arch ?? null,
    ssh: info.driver === "ssh" ? sshAddressOf(rec) : info.sshLocalPort ? `127.0.0.1:${info.sshLocalPort}` : null,
    dir: info.dir ?? null,
    guest_home: info.guestHome ?? null,
    active_runs: summary?.active ?? 0,
    last_run_id: summary?.lastRunId ?? null,
    last_run_at_ms: summary?.lastRunAtMs ?? null,
    errors: info.errors,
  };
}

/**
 * Every VM: all Lima instances (when limactl is usable), all local VMs, every registered ssh machine (each checked by
 * connecting, in parallel: `Running`, or `Unknown` with the reason), and registry VMs the drivers no longer report
 * (status `Unknown`, with the reason). A missing limactl only warns when the registry holds Lima VMs.
 */
export async function listVms(ctx: Context): Promise<{ rows: VmListRow[]; warnings: string[] }> {
  const warnings: string[] = [];
  const reg = ctx.registry();
  const known = reg.listVms();
  const summary = reg.vmRunSummary();
  const rows = new Map<string, VmListRow>();
  const timeoutMs = ctx.config.probeTimeoutMs * 2;
  const wantLima = ctx.config.driver === "lima" || known.some((v) => v.driver === "lima");
  const byName = new Map(known.map((v) => [v.name, v]));
  const [lima, local, ssh] = await Promise.all([
    wantLima
      ? ctx
          .driver("lima")
          .then((d) => d.list({ timeoutMs }))
          .then((l) => ({ ok: true as const, l }))
          .catch((err: unknown) => ({ ok: false as const, err }))
      : Promise.resolve({ ok: true as const, l: [] as VmInfo[] }),
    ctx.driver("local").then((d) => d.list({ timeoutMs })),
    known.some((v) => v.driver === "ssh") ? ctx.driver("ssh").then((d) => d.list({ timeoutMs: ctx.config.probeTimeoutMs })) : Promise.resolve([] as VmInfo[]),
  ]);
  let limaError: string | undefined;
  if (lima.ok) {
    for (const i of lima.l) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  } else {
    limaError = lima.err instanceof Error ? lima.err.message : String(lima.err);
    if (known.some((v) => v.driver === "lima")) warnings.push(`cannot list Lima VMs: ${limaError}`);
  }
  for (const i of local) rows.set(i.name, rowFrom(i, summary.get(i.name)));
  for (const i of ssh) rows.set(i.name, rowFrom(i, summary.get(i.name), byName.get(i.name)));
  for (const v of known) {
    if (rows.has(v.name)) continue;
    const reason = v.driver === "lima" && limaError ? `limactl unavailable: ${limaError}` : `the ${v.driver} driver no longer reports this VM`;
    rows.set(v.name, {
      ...rowFrom({ name: v.name, driver: v.driver, status: "Unknown", guestHome: v.guest_home ?? undefined, errors: [reason] } as VmInfo, summary.get(v.name), v),
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
  if (req.driver === "ssh") {
    throw new UsageError(`the ssh driver does not create machines: ${req.name} must already exist and run sshd`, `register it with \`fabrik vm add ${req.name} --ssh USER@HOST\``);
  }
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

async function refuseActive(ctx: Context, vm: string, verb: string, consequence = "would cut them off"): Promise<void> {
  const active = await activeRunsOf(ctx, vm);
  if (active.length === 0) return;
  throw new RefusedError(
    `VM ${vm} has ${active.length} active run(s): ${active.map((r) => `${r.id} (${r.status})`).join(", ")}; ${verb} ${consequence}`,
    `stop them with ${active.slice(0, 3).map((r) => `\`fabrik run cancel --id ${r.id} --yes\``).join(", ")}${active.length > 3 ? ", …" : ""}, check them with \`fabrik runs list --vm ${vm}\`, or pass --force`,
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

/** What `vm add` was asked. Paths absolute; `jump` as typed (`user@host[:port]`). */
export interface AddSshVmRequest {
  name: string;
  /** `--ssh USER@HOST` */
  ssh: string;
  port: number | undefined;
  identity: string | undefined;
  knownHosts: string | undefined;
  jump: string | undefined;
  acceptNewHostKey: boolean;
  timeoutMs: number;
}

/** What `vm add --json` prints. */
export interface AddedSshVm {
  name: string;
  driver: "ssh";
  /** `user@host:port` */
  address: string;
  /** `user@host:port` of the jump host, or null. */
  jump: string | null;
  guest_home: string;
  identity: string | null;
  known_hosts: string;
  /** The host key the machine presented (and whether this call added it to known_hosts). */
  host_key: { type: string; fingerprint: string; added: boolean } | null;
  /** `uname -sm` of the machine; the bun, node and npm fabrik found there (null: none). */
  machine: { uname: string; bun: string | null; node: string | null; npm: string | null };
  /** True when the VM was already registered with these coordinates (nothing was written). */
  already_registered: boolean;
}

/**
 * `vm add`: connect to an existing machine (host key verified, `--accept-new-host-key` records a new one), check in
 * one call that it has what fabrik needs, and register it as an ssh VM. Adding the same name with the same
 * coordinates again only re-checks (and can accept a new host key); other coordinates are refused.
 * @throws UsageError (bad address), RefusedError (name taken, host key unknown/changed), VmUnavailableError
 *   (unreachable, login refused), PrerequisiteError (missing tools, neither bun nor Node.js/npm).
 */
export async function addSshVm(ctx: Context, req: AddSshVmRequest): Promise<AddedSshVm> {
  const { parseSshAddress, formatSshAddress, knownHostsFileOf, SshDriver } = await import("../vm/ssh-driver.js");
  assertVmName(req.name);
  const os = await import("node:os");
  const defaultUser = os.userInfo().username;
  const addr = parseSshAddress(req.ssh, { flag: "--ssh", defaultUser, defaultPort: req.port, allowPort: false });
  const jump = req.jump ? parseSshAddress(req.jump, { flag: "--jump", defaultUser, allowPort: true }) : null;
  const identity = req.identity ? path.resolve(req.identity) : null;
  const knownHosts = req.knownHosts ? path.resolve(req.knownHosts) : null;
  const host = { ...addr, identityFile: identity, knownHostsFile: knownHosts, jump };
  const rec: VmRecord & { driver: "ssh"; ssh_host: string; ssh_port: number; ssh_user: string } = {
    name: req.name,
    driver: "ssh",
    guest_home: null,
    created_at_ms: ctx.now(),
    template: null,
    ssh_host: addr.host,
    ssh_port: addr.port,
    ssh_user: addr.user,
    ssh_identity: identity,
    ssh_known_hosts: knownHosts,
    ssh_jump: jump ? formatSshAddress(jump) : null,
  };
  const existing = ctx.registry().getVm(req.name);
  const same =
    existing?.driver === "ssh" &&
    (["ssh_host", "ssh_port", "ssh_user", "ssh_identity", "ssh_known_hosts", "ssh_jump"] as const).every((k) => (existing[k] ?? null) === (rec[k] ?? null));
  if (existing && !same) {
    const where = existing.driver === "ssh" ? ` at ${sshAddressOf(existing)}` : "";
    throw new RefusedError(`VM ${req.name} already exists (driver ${existing.driver}${where})`, existing.driver === "ssh" ? `pick another name, or \`fabrik vm remove ${req.name}\` it first` : "pick another name");
  }
  // A driver of its own for this one check: nothing registered is touched, and its connection is closed at once.
  const probeDriver = new SshDriver({ vms: { get: () => undefined, list: () => [] }, env: ctx.env, connectTimeoutMs: Math.min(ctx.config.probeTimeoutMs, 10_000) });
  const { facts, hostKey } = await probeDriver.checkMachine(req.name, host, { acceptNewHostKey: req.acceptNewHostKey, timeoutMs: req.timeoutMs });
  const where = `${formatSshAddress(addr)}${jump ? ` via ${formatSshAddress(jump)}` : ""}`;
  if (facts.missing.length > 0) {
    throw new PrerequisiteError(
      `VM ${req.name} (${where}) lacks ${facts.missing.join(", ")}, which fabrik's scripts run in the guest`,
      `install them there (Debian/Ubuntu: \`apt-get install bash tar coreutils util-linux procps\`), then run \`fabrik vm add\` again`,
    );
  }
  if (!facts.bun && !facts.npm) {
    throw new PrerequisiteError(
      `VM ${req.name} (${where}) has neither bun nor Node.js with npm${facts.node ? ` (node is at ${facts.node}, but npm is missing)` : ""}: fabrik installs its engine with one of them`,
      "install Node.js ≥ 18 with npm (Debian/Ubuntu: `apt-get install nodejs npm`) or bun ≥ 1.3 (https://bun.sh), then run `fabrik vm add` again",
    );
  }
  const reg = ctx.registry();
  if (!same) {
    if (!reg.addSshVm({ ...rec, guest_home: facts.home })) throw new RefusedError(`VM ${req.name} already exists`, "pick another name");
  } else if (existing.guest_home !== facts.home) {
    reg.upsertVm({ name: req.name, driver: "ssh", guest_home: facts.home, created_at_ms: existing.created_at_ms, template: null });
  }
  return {
    name: req.name,
    driver: "ssh",
    address: formatSshAddress(addr),
    jump: rec.ssh_jump ?? null,
    guest_home: facts.home,
    identity,
    known_hosts: knownHostsFileOf(host, ctx.env),
    host_key: hostKey ? { type: hostKey.keyType, fingerprint: hostKey.fingerprint, added: hostKey.added } : null,
    machine: { uname: facts.uname, bun: facts.bun, node: facts.node, npm: facts.npm },
    already_registered: same,
  };
}

/**
 * `vm remove NAME...`: unregister ssh machines. Never connects to them; runs recorded for them stay in the registry.
 * Refuses a VM with active runs unless `force`, and a VM of another driver (`vm delete` is for those).
 */
export function removeVms(ctx: Context, names: readonly string[], opts: { force: boolean }) {
  return multiVm(ctx, names, "removed", async (name) => {
    const rec = ctx.registry().getVm(name);
    if (!rec) throw new NotFoundError(`VM ${name} is not registered`, "see `fabrik vm list`");
    if (rec.driver !== "ssh") {
      throw new UsageError(`VM ${name} is a ${rec.driver} VM: \`vm remove\` only unregisters machines added with \`vm add --ssh\``, `delete it with \`fabrik vm delete ${name}\``);
    }
    if (!opts.force) await refuseActive(ctx, name, "removing it", "would stop fabrik from watching them (they keep running on the machine)");
    ctx.registry().deleteVm(name);
  });
}
