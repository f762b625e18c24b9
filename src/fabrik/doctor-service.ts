/**
 * `fabrik doctor [--vm V]`: host checks (Node, limactl, the registry's integrity, FABRIK_HOME, the config) and,
 * per VM, what the guest probe's health facts say (reachable, bun, engines installed vs needed, octet_length,
 * free disk, clock skew, held locks, registry runs whose control dir is gone, control dirs the registry does not
 * know). ONE probe round trip per VM (src/fabrik/vm-check.ts), VMs in parallel. Each check is ok, warn or fail,
 * with the exact command that fixes it; the command exits 1 when any check fails.
 */
import fs from "node:fs";
import pLimit from "p-limit";
import type { Context } from "./context.js";
import type { RunRecord } from "./registry.js";
import { listVms } from "./vm-service.js";
import { checkVm, guestLayout, type VmCheck } from "./vm-check.js";
import { ConfigError, FabrikError, NotFoundError } from "../core/errors.js";
import { formatBytes, formatDuration } from "../core/units.js";
import { ACTIVE_RUN_STATUSES, isActiveRunStatus } from "../core/status.js";
import { shellJoin } from "../vm/shell-quote.js";
import type { VmInfo } from "../vm/driver.js";

export type CheckStatus = "ok" | "warn" | "fail";

/** One check. `name` is stable (see docs); `fix` is the exact command to run, when there is one. */
export interface DoctorCheck {
  scope: "host" | "vm";
  /** The VM, for per-VM checks. */
  vm: string | null;
  name: string;
  status: CheckStatus;
  message: string;
  fix: string | null;
}

/** What `fabrik doctor --json` prints. */
export interface DoctorView {
  v: 1;
  checked_at: string;
  /** No check failed. */
  ok: boolean;
  counts: Record<CheckStatus, number>;
  vms: string[];
  checks: DoctorCheck[];
}

/** Node versions fabrik supports (package.json `engines`). */
export const MIN_NODE_VERSION = "20.19.0";
/** Free space thresholds, bytes: FABRIK_HOME and a VM's work dir. */
export const DISK_WARN_BYTES = 2 * 1024 ** 3;
export const DISK_FAIL_BYTES = 256 * 1024 ** 2;
/** Clock skew thresholds between host and VM, ms. */
export const SKEW_WARN_MS = 5_000;
export const SKEW_FAIL_MS = 5 * 60_000;

export interface DoctorRequest {
  /** Only this VM (its checks; host checks always run). */
  vm?: string | undefined;
}

// ---- host ------------------------------------------------------------------------------------------------

async function hostChecks(ctx: Context): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const add = (name: string, status: CheckStatus, message: string, fix: string | null = null) => out.push({ scope: "host", vm: null, name, status, message, fix });

  const { default: semver } = await import("semver");
  const node = process.versions.node;
  if (semver.gte(node, MIN_NODE_VERSION)) add("node", "ok", `Node ${node} (needs ≥ ${MIN_NODE_VERSION})`);
  else add("node", "fail", `Node ${node} is too old: fabrik needs ≥ ${MIN_NODE_VERSION}`, "install Node ≥ 20.19 (https://nodejs.org), then `npm run build` in fabrik's folder");

  // The registry: opening it also proves FABRIK_HOME usable; its integrity is SQLite's own check.
  let limaVms: string[] = [];
  try {
    const reg = ctx.registry();
    const problems = reg.integrityCheck();
    if (problems.length === 1 && problems[0] === "ok") add("registry", "ok", `${reg.file}: integrity_check ok`);
    else add("registry", "fail", `${reg.file}: integrity_check found ${problems.length} problem(s): ${problems.slice(0, 3).join("; ")}`, shellJoin(["mv", reg.file, `${reg.file}.corrupt`]));
    limaVms = reg.listVms().filter((v) => v.driver === "lima").map((v) => v.name);
  } catch (err) {
    const e = err instanceof FabrikError ? err : new ConfigError(String(err));
    add("registry", "fail", e.message, e.hint ?? null);
  }

  try {
    fs.accessSync(ctx.paths.home, fs.constants.W_OK | fs.constants.X_OK);
    const s = fs.statfsSync(ctx.paths.home);
    const free = Number(s.bavail) * Number(s.bsize);
    const msg = `FABRIK_HOME ${ctx.paths.home} is writable, ${formatBytes(free)} free`;
    if (free < 100 * 1024 ** 2) add("fabrik-home", "fail", `${msg}: too little (the registry and local VMs need room)`, "free space on that filesystem, or point FABRIK_HOME at another folder");
    else if (free < 1024 ** 3) add("fabrik-home", "warn", `${msg}: under 1 GiB`, "free space on that filesystem, or point FABRIK_HOME at another folder");
    else add("fabrik-home", "ok", msg);
  } catch (err) {
    add("fabrik-home", "fail", `FABRIK_HOME ${ctx.paths.home} is not usable: ${(err as Error).message}`, "point FABRIK_HOME at a writable folder");
  }

  if (ctx.configProblem) {
    const m = /environment variable (FABRIK_[A-Z_]+)=/.exec(ctx.configProblem.message);
    const key = /is invalid at ([a-z_.]+):/.exec(ctx.configProblem.message)?.[1];
    const { SETTINGS } = await import("./config.js");
    const fix = m ? `unset ${m[1]}` : key && SETTINGS.some((s) => s.key === key) ? `fabrik config unset ${key}` : shellJoin(["mv", ctx.paths.config, `${ctx.paths.config}.bad`]);
    add("config", "fail", `${ctx.configProblem.message} (doctor ran on the defaults)`, fix);
  } else {
    const fromFile = Object.values(ctx.config.sources).filter((s) => s.source === "file").length;
    add("config", "ok", `config valid (${fs.existsSync(ctx.paths.config) ? `${ctx.paths.config}, ${fromFile} setting(s) from it` : `no file at ${ctx.paths.config}: defaults`})`);
  }

  const wantLima = limaVms.length > 0;
  if (!wantLima && ctx.config.driver !== "lima") add("limactl", "ok", "not needed: no Lima VM, and the default driver is not lima");
  else {
    try {
      const d = (await ctx.driver("lima")) as { ensureLimactl?: () => Promise<string> };
      const bin = d.ensureLimactl ? await d.ensureLimactl() : "limactl";
      add("limactl", "ok", `${bin} (Lima ≥ 2.1.0)`);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const status: CheckStatus = wantLima ? "fail" : "warn";
      add("limactl", status, wantLima ? `${msg}; Lima VMs: ${limaVms.join(", ")}` : `${msg} (no Lima VM yet, but the default driver is lima)`, wantLima ? "install Lima ≥ 2.1.0 (https://lima-vm.io), or `fabrik config set lima.limactl /path/to/limactl`" : "fabrik config set driver local");
    }
  }
  return out;
}

// ---- one VM ----------------------------------------------------------------------------------------------

/** Runs that may still need their engine: not done (active, orphaned, failed or cancelled runs can be resumed). */
function needsEngine(r: RunRecord): boolean {
  return r.status !== "done" && r.engine_version !== null;
}

/** The checks of one VM from one {@link VmCheck}. Pure apart from reading the registry rows passed in. */
export function vmChecks(c: VmCheck, runs: readonly RunRecord[], configuredEngine: string): DoctorCheck[] {
  const vm = c.vm;
  const out: DoctorCheck[] = [];
  const add = (name: string, status: CheckStatus, message: string, fix: string | null = null) => out.push({ scope: "vm", vm, name, status, message, fix });
  const install = (v: string) => `fabrik vm install-engine ${vm} --engine ${v}`;

  if (c.state !== "Running") {
    if (c.state === "Stopped") add("reachable", "warn", `VM ${vm} is stopped: nothing in it was checked`, `fabrik vm start ${vm}`);
    else add("reachable", "fail", c.state === "Missing" ? `VM ${vm} does not exist` : `VM ${vm} is ${c.state}${c.error ? `: ${c.error}` : ""}`, c.state === "Missing" ? "fabrik vm list" : `fabrik vm stop --force ${vm} && fabrik vm start ${vm}`);
    return out;
  }
  if (!c.ok && c.reachable !== true) {
    add("reachable", "fail", `VM ${vm} did not answer: ${c.error}`, `fabrik vm list`);
    return out;
  }
  add("reachable", "ok", `VM ${vm} answered${c.durationMs !== null ? ` in ${formatDuration(c.durationMs)}` : ""}`);

  const needed = new Map<string, number[]>();
  needed.set(configuredEngine, []);
  for (const r of runs) if (needsEngine(r)) needed.set(r.engine_version!, [...(needed.get(r.engine_version!) ?? []), r.id]);
  const neededText = (v: string) => (needed.get(v)!.length ? `runs ${needed.get(v)!.join(", ")}` : "the configured engine.version");

  if (c.failureKind === "no-bun") {
    add("bun", "fail", `no bun in VM ${vm}: no engine install under ~/.fabrik/engines, no ~/.bun/bin/bun, none on PATH`, install(configuredEngine));
    add("engines", "fail", `no usable engine in VM ${vm} (an engine brings its bun); needed: ${[...needed.keys()].join(", ")}`, install(configuredEngine));
    return out;
  }
  if (!c.ok) {
    add("probe", "fail", `the probe failed in VM ${vm}: ${c.error}`, `fabrik vm shell ${vm} -- df -h ~`);
    return out;
  }
  const r = c.response!;
  add("bun", "ok", `bun ${r.tool_version}`);
  const h = c.health;
  if (!h) {
    add("probe", "fail", `the probe did not return health facts (an older guest program?)`, "npm run build");
    return out;
  }

  const installed = new Set(h.engines.filter((e) => e.installed).map((e) => e.version));
  const missing = [...needed.keys()].filter((v) => !installed.has(v));
  const broken = h.engines.filter((e) => !e.installed);
  if (missing.length) {
    for (const v of missing) add("engines", "fail", `engine ${v} is not installed in VM ${vm} (needed by ${neededText(v)})${installed.size ? `; installed: ${[...installed].join(", ")}` : ""}`, install(v));
  } else {
    add("engines", broken.length ? "warn" : "ok", `installed: ${[...installed].join(", ") || "none"} (needed: ${[...needed.keys()].join(", ")})${broken.length ? `; incomplete: ${broken.map((b) => `${b.version} (${b.problem})`).join(", ")}` : ""}`, broken.length ? install(broken[0]!.version) : null);
  }

  if (h.sqlite_octet_length) add("sqlite-octet-length", "ok", `bun's SQLite ${r.sqlite_version} has octet_length()`);
  else add("sqlite-octet-length", "fail", `bun's SQLite ${r.sqlite_version} lacks octet_length() (needs ≥ 3.43): big values cannot be measured without reading them`, install(configuredEngine));

  if (!h.disk) add("disk", "warn", `free disk in the work dir is unknown`, `fabrik vm shell ${vm} -- df -h ~`);
  else {
    const msg = `${formatBytes(h.disk.free_bytes)} free of ${formatBytes(h.disk.total_bytes)} in ${h.disk.path}`;
    const status: CheckStatus = h.disk.free_bytes < DISK_FAIL_BYTES ? "fail" : h.disk.free_bytes < DISK_WARN_BYTES ? "warn" : "ok";
    add("disk", status, status === "ok" ? msg : `${msg} (under ${formatBytes(status === "fail" ? DISK_FAIL_BYTES : DISK_WARN_BYTES)}: backups and resumes need room)`, status === "ok" ? null : `fabrik runs prune --vm ${vm}`);
  }

  const skew = c.clockSkewMs ?? 0;
  const skewText = `${skew >= 0 ? "+" : "-"}${formatDuration(Math.abs(skew))}`;
  if (Math.abs(skew) > SKEW_FAIL_MS) add("clock", "fail", `the VM's clock is ${skewText} off the host's`, `fabrik vm shell ${vm} -- sudo hwclock --hctosys`);
  else if (Math.abs(skew) > SKEW_WARN_MS) add("clock", "warn", `the VM's clock is ${skewText} off the host's (ages are read on the VM's clock; host times may disagree)`, `fabrik vm shell ${vm} -- sudo hwclock --hctosys`);
  else add("clock", "ok", `clock skew ${skewText}`);

  const byDir = new Map(runs.map((x) => [x.control_dir, x]));
  const problems: { message: string; fix: string | null }[] = [];
  for (const l of h.locks.filter((x) => x.held)) {
    const dir = l.kind === "engine-install" ? null : l.path.replace(/\/[^/]+$/, "");
    const run = dir ? byDir.get(dir) : undefined;
    if (l.kind === "launcher" && run && isActiveRunStatus(run.status)) continue; // the launcher of an active run holds it
    const holder = l.holder_pid !== null ? `pid ${l.holder_pid}${l.holder_cmdline ? ` (${l.holder_cmdline.slice(0, 80)})` : ""}` : "an unknown process";
    const what =
      l.kind === "engine-install"
        ? `${l.path} is held by ${holder}: an engine install is in progress, or hung`
        : l.kind === "resume"
          ? `${l.path} is held by ${holder}: a resume of ${run ? `run ${run.id}` : "a run"} is in progress, or hung`
          : `${l.path} is held by ${holder} although ${run ? `run ${run.id} is ${run.status}` : "no known run uses it"}`;
    problems.push({ message: what, fix: l.holder_pid !== null ? `fabrik vm shell ${vm} -- kill ${l.holder_pid}` : `fabrik vm shell ${vm} -- fuser -v ${shellJoin([l.path])}` });
  }
  if (problems.length === 0) add("locks", "ok", `${h.locks.length} lock file(s); none held outside an active run`);
  else for (const p of problems) add("locks", "warn", p.message, p.fix);

  const missingSet = new Set(h.missing_control_dirs);
  const gone = runs.filter((x) => missingSet.has(x.control_dir)).sort((a, b) => a.id - b.id);
  if (gone.length === 0) add("missing-control-dirs", "ok", `every registry run of VM ${vm} has its control dir`);
  else add("missing-control-dirs", "warn", `${gone.length} registry run(s) of VM ${vm} have no control dir any more: ${gone.map((x) => `${x.id} (${x.control_dir})`).slice(0, 10).join(", ")}`, `fabrik runs prune ${gone.map((x) => `--id ${x.id}`).join(" ")}`);

  const known = new Set(runs.map((x) => x.control_dir));
  const unknown = h.control_dirs.filter((d) => !known.has(d.path));
  if (unknown.length === 0) add("unknown-control-dirs", "ok", `the registry knows every control dir under ${guestLayout(c.guestHome ?? "~", vm).runsRoot}${h.control_dirs_truncated ? " (listing truncated)" : ""}`);
  else add("unknown-control-dirs", "warn", `${unknown.length} control dir(s) in VM ${vm} are not in the registry: ${unknown.slice(0, 5).map((d) => d.path).join(", ")}${unknown.length > 5 ? ", …" : ""}`, `fabrik runs import --vm ${vm}`);
  return out;
}

// ---- the report ------------------------------------------------------------------------------------------

/**
 * Run every check. Throws NotFoundError when `req.vm` names a VM no driver and no registry row knows; every other
 * problem is a check.
 */
export async function doctorReport(ctx: Context, req: DoctorRequest = {}): Promise<{ view: DoctorView; warnings: string[] }> {
  const checks = await hostChecks(ctx);
  const hostOk = !checks.some((c) => c.name === "registry" && c.status === "fail");
  const warnings: string[] = [];
  const vmNames: string[] = [];
  if (hostOk) {
    let targets: { name: string; driver: VmInfo["driver"]; info: VmInfo | undefined }[];
    if (req.vm) {
      const rec = ctx.registry().getVm(req.vm);
      const driverName = rec?.driver ?? ctx.config.driver;
      const driver = await ctx.driver(driverName);
      let info: VmInfo | undefined;
      try {
        info = await driver.inspect(req.vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
      } catch (err) {
        if (!rec) throw err;
        info = { name: req.vm, driver: driverName, status: "Unknown", guestHome: rec.guest_home ?? undefined, errors: [(err as Error).message] } as VmInfo;
      }
      if (!info && !rec) throw new NotFoundError(`VM ${req.vm} does not exist`, "see `fabrik vm list`");
      targets = [{ name: req.vm, driver: driverName, info }];
    } else {
      const { rows, warnings: w } = await listVms(ctx);
      warnings.push(...w);
      targets = rows.map((r) => ({
        name: r.name,
        driver: r.driver,
        info: { name: r.name, driver: r.driver, status: r.status, guestHome: r.guest_home ?? undefined, errors: r.errors } as VmInfo,
      }));
    }
    const limit = pLimit(ctx.config.probeConcurrency);
    const perVm = await Promise.all(
      targets.map((t) =>
        limit(async () => {
          const driver = await ctx.driver(t.driver);
          const active = ctx.registry().listRuns({ vm: t.name, statuses: ACTIVE_RUN_STATUSES });
          const c = await checkVm(ctx, driver, t.name, t.info, { runs: active, source: "doctor" });
          return vmChecks(c, ctx.registry().listRuns({ vm: t.name }), ctx.config.engineVersion);
        }),
      ),
    );
    for (const [i, list] of perVm.entries()) {
      vmNames.push(targets[i]!.name);
      checks.push(...list);
    }
  }
  const counts: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0 };
  for (const c of checks) counts[c.status]++;
  return { view: { v: 1, checked_at: new Date(ctx.now()).toISOString(), ok: counts.fail === 0, counts, vms: vmNames, checks }, warnings };
}
