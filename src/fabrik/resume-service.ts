/**
 * `fabrik run resume`, host side: look (ONE live probe with the node list), plan ({@link planResume}), confirm,
 * then apply in ONE remote call of the guest program `resume` (src/vm/guest/resume.ts, bundled to
 * dist/guest/resume.js and installed in the VM once per content hash), which re-checks everything inside the VM, backs the DB up,
 * optionally fixes oversized values, resets the state in one transaction and starts `resume-N.sh` detached.
 * On success the registry row is updated (same host id, `running`, resume_count + 1) and the history keeps the
 * previous failure reason. A refusal changes nothing anywhere; `--dry-run` changes nothing anywhere either (not
 * even the registry: the live status is derived without reconcile's write-back).
 *
 * Wire format of the guest program (request on stdin, one JSON line on stdout): src/vm/resume-schema.ts
 * ({@link ResumeRequestWire}, {@link GuestResultSchema}); the VM is untrusted, so its answer is validated.
 */
import type { Context } from "./context.js";
import { NotFoundError, PrerequisiteError, RefusedError, RemoteError, UsageError, VmUnavailableError } from "../core/errors.js";
import { observeVm, requireRun } from "./runs-service.js";
import type { PendingLaunch, RunRecord } from "./registry.js";
import { newLaunchId } from "./launch.js";
import type { ExecResult, VmDriver } from "../vm/driver.js";
import {
  GUEST_EXIT_INSTALL_FAILED,
  defaultGuestInstallCache,
  guestInstallSnippet,
  loadGuestProgram,
  withGuestInstall,
  type GuestAttempt,
  type GuestInstallCache,
  type GuestProgram,
} from "../vm/guest-programs.js";
import { isNotInstalledExit } from "../vm/probe.js";
import { GuestResultSchema, type GuestResult, type ResumeRequestWire } from "../vm/resume-schema.js";
import { planResume, refusalLine, withVmChecks, type ResumePlan } from "../resume/plan.js";

export { GuestResultSchema, type GuestResult, type ResumeRequestWire } from "../vm/resume-schema.js";
import type { RenderContext, ViewResult } from "./command.js";
import { askYesNo } from "./io.js";

/** Exit status of {@link RESUME_WRAPPER} when another resume of the run holds `resume.lock`. */
export const RESUME_EXIT_LOCKED = 75;
/** Exit status of {@link RESUME_WRAPPER} when the engine's bun is missing. */
export const RESUME_EXIT_NO_BUN = 76;

/**
 * The bash program run in the VM as
 * `bash -c RESUME_WRAPPER fabrik-resume <control dir> <bun> <dry-run|apply> <hash> <program text or "">`
 * (values only as positional parameters; the request JSON on stdin). After checking the engine's bun, it
 * installs or finds the program `$HOME/.fabrik/guest/<hash>/resume.js` ({@link guestInstallSnippet}: exit 79 when
 * it is absent and was not sent; that install is fabrik's own program cache, not run state), then:
 * - apply: takes a NON-BLOCKING lock on `<control>/resume.lock` with `flock -n -o` (the fd is closed before bun
 *   runs, so neither bun nor the launcher it starts inherits the lock; flock holds it until bun exits); a
 *   second concurrent resume exits {@link RESUME_EXIT_LOCKED}.
 * - dry-run: creates nothing in the control dir — only tests an EXISTING resume.lock (`flock -n FILE true`) and
 *   runs bun unlocked.
 */
export const RESUME_WRAPPER = String.raw`set -u
C="$1"; bun="$2"; mode="$3"; h="$4"; t="$5"; n=resume
if [ ! -x "$bun" ]; then echo "fabrik-resume: the engine's bun is not installed at $bun" >&2; exit ${RESUME_EXIT_NO_BUN}; fi
${guestInstallSnippet()}
if [ "$mode" = apply ] && [ -d "$C" ]; then
  exec flock -n -o -E ${RESUME_EXIT_LOCKED} "$C/resume.lock" "$bun" "$f" apply
fi
if [ -e "$C/resume.lock" ]; then
  flock -n -E ${RESUME_EXIT_LOCKED} "$C/resume.lock" true
  [ $? -eq ${RESUME_EXIT_LOCKED} ] && exit ${RESUME_EXIT_LOCKED}
fi
exec "$bun" "$f" "$mode"
`;

/** The argv of one resume call; the program text is included only when `install`. */
export function resumeArgv(controlDir: string, bun: string, mode: "dry-run" | "apply", program: GuestProgram, install: boolean): string[] {
  return ["bash", "-c", RESUME_WRAPPER, "fabrik-resume", controlDir, bun, mode, program.hash, install ? program.text : ""];
}

/** What the user asked for. */
export interface ResumeRequest {
  id: number;
  dryRun: boolean;
  force: boolean;
  fix: boolean;
  fixLimitBytes: number;
  yes: boolean;
  reason?: string | undefined;
  /** `--engine X`: resume with this engine (same dialect only); it is installed in the VM first. */
  engine?: string | undefined;
  /** Continue a parked run after fabrik recorded a decision (`run approve|deny|signal`), not a user's resume. */
  afterDecision?: boolean | undefined;
}

/** Hooks the command supplies. */
export interface ResumeHooks {
  /** Show the plan and ask "go ahead?" — real resumes without `--yes` (so only on a TTY). No hook = no. */
  confirm?: (plan: ResumePlan) => Promise<boolean>;
}

/** The model `run resume --json` prints. */
export interface ResumeOutcome {
  v: 1;
  dry_run: boolean;
  allowed: boolean;
  applied: boolean;
  plan: ResumePlan;
  /** The VM's answer: the dry-run checks, or what was applied. */
  vm_result: GuestResult | null;
  /** The registry row after a successful resume. */
  registry: { id: number; status: string; resume_count: number; last_resumed_at_ms: number | null } | null;
  reason: string | null;
}

/** A refused resume, carrying the plan (and the VM's answer) so `--json` can still print the model. */
export class ResumeRefusedError extends RefusedError {
  readonly outcome: ResumeOutcome;
  constructor(outcome: ResumeOutcome) {
    const { message, hint } = refusalLine(outcome.plan);
    super(message, hint, outcome.plan.reasons.map((r) => r.code));
    this.outcome = outcome;
  }
}

/** Build the guest request from a plan. */
export function requestFor(plan: ResumePlan, req: ResumeRequest, staleMs: number, dryRun: boolean): ResumeRequestWire {
  return {
    v: 1,
    dry_run: dryRun,
    host_run_id: plan.host_run_id,
    smithers_run_id: plan.smithers_run_id,
    control_dir: plan.control_dir,
    db_path: plan.db_path,
    workflow_path: plan.workflow_path,
    engine_dir: plan.engine_dir!,
    dialect: plan.dialect!,
    force: req.force,
    fix: req.fix,
    fix_limit_bytes: req.fixLimitBytes,
    engine_heartbeat_stale_ms: staleMs,
    expected_mode: plan.mode,
    retry_node: plan.retry_node,
    backup_path: plan.backup_path,
    keep_backups: plan.keep_backups,
    script_path: plan.script_path,
    script: plan.script,
    start_wait_ms: 10_000,
  };
}

/**
 * Run the guest program `resume` in the VM: ONE `driver.exec` (two only when the install cache said
 * "installed" but the VM lost the file: nothing ran in the first, the second sends the program). Returns the
 * validated answer.
 * @param installCache what the host believes is installed (default: the process-wide in-memory cache).
 * @throws RefusedError when another resume holds the lock; PrerequisiteError when bun is missing or fabrik's
 *   dist/guest/resume.js is; RemoteError for any other failure to run it or bad output; driver errors unchanged.
 */
export async function runGuestResume(
  ctx: Context,
  driver: VmDriver,
  vm: string,
  plan: ResumePlan,
  wire: ResumeRequestWire,
  installCache: GuestInstallCache = defaultGuestInstallCache,
): Promise<GuestResult> {
  const mode = wire.dry_run ? "dry-run" : "apply";
  const program = loadGuestProgram("resume");
  const stdin = JSON.stringify(wire);
  const r = await withGuestInstall(installCache, vm, program, async (install): Promise<GuestAttempt<ExecResult>> => {
    const res = await driver.exec(vm, resumeArgv(plan.control_dir, plan.bun!, mode, program, install), {
      stdin,
      timeoutMs: wire.dry_run ? 60_000 : 15 * 60_000,
      signal: ctx.signal,
      maxOutputBytes: 16 * 1024 * 1024,
    });
    if (isNotInstalledExit(res.exitCode, res.stderr)) return { notInstalled: true };
    // The wrapper installs right after checking bun: every other outcome means the program is in place.
    return { notInstalled: false, installed: res.exitCode !== RESUME_EXIT_NO_BUN && res.exitCode !== GUEST_EXIT_INSTALL_FAILED, value: res };
  });
  if (r.exitCode === GUEST_EXIT_INSTALL_FAILED) {
    throw new RemoteError(vm, "resume", `cannot install the resume program in the VM: ${r.stderr.trim().split("\n").slice(-2).join(" | ").slice(0, 300)}`, r.exitCode, `check the disk and $HOME/.fabrik in VM ${vm}`);
  }
  if (r.exitCode === RESUME_EXIT_LOCKED) {
    throw new RefusedError(`cannot resume run ${plan.host_run_id}: another resume of this run is in progress`, `wait for it, then check \`fabrik runs show --id ${plan.host_run_id}\``, ["RESUME_IN_PROGRESS"]);
  }
  const tail = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
  if (r.exitCode === RESUME_EXIT_NO_BUN) {
    throw new PrerequisiteError(`cannot resume run ${plan.host_run_id}: engine ${plan.engine_version} is not installed in VM ${vm} (${plan.bun})`, `reinstall it: a \`fabrik run --vm ${vm} --engine ${plan.engine_version} …\` installs it`);
  }
  const line = r.stdout.trim().split("\n").filter((l) => l.trim()).at(-1);
  if (line === undefined) throw new RemoteError(vm, "resume", `no answer (exit ${r.exitCode})${tail ? `: ${tail}` : ""}`, r.exitCode);
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new RemoteError(vm, "resume", `invalid answer (exit ${r.exitCode}): ${line.slice(0, 200)}`, r.exitCode);
  }
  const parsed = GuestResultSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new RemoteError(vm, "resume", `invalid answer: ${issues}`, r.exitCode);
  }
  if (r.exitCode !== 0 && !parsed.data.refused) {
    throw new RemoteError(vm, "resume", `${parsed.data.error ?? `exit ${r.exitCode}`}${tail ? ` (${tail})` : ""}`, r.exitCode);
  }
  return parsed.data;
}

async function resolveVm(ctx: Context, run: RunRecord): Promise<{ driver: VmDriver; guestHome: string | null }> {
  const driver = await ctx.driver(run.driver);
  const info = await driver.inspect(run.vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${run.vm} of run ${run.id} does not exist`, "see `fabrik vm list`");
  if (info.status !== "Running") {
    throw new VmUnavailableError(run.vm, `cannot resume run ${run.id}: VM ${run.vm} is ${info.status}`, `start it with \`fabrik vm start ${run.vm}\`, then resume again`);
  }
  return { driver, guestHome: info.guestHome ?? ctx.registry().getVm(run.vm)?.guest_home ?? null };
}

/**
 * Resume run `req.id`. Dry-run: returns the outcome (allowed or not) and changes nothing anywhere.
 * Real resume: throws RefusedError (exit 5, nothing modified) when unsafe, UsageError without `--yes` off a TTY,
 * VmUnavailableError (exit 6) for a stopped VM, RemoteError when applying failed (naming the backup).
 */
export async function resumeRun(ctx: Context, req: ResumeRequest, hooks: ResumeHooks = {}): Promise<ResumeOutcome> {
  if (!req.dryRun && !req.yes && !ctx.io.stdinTty) {
    throw new UsageError("resuming needs confirmation, and stdin is not a terminal: pass --yes", `or look first with \`fabrik run resume --id ${req.id} --dry-run\``);
  }
  const run = requireRun(ctx, req.id);
  const { driver, guestHome } = await resolveVm(ctx, run);
  const { observations } = await observeVm(ctx, driver, run.vm, [run], { nodes: true });
  const obs = observations.get(run.id)!;
  if (obs.kind === "unreachable") {
    throw new VmUnavailableError(run.vm, `cannot resume run ${run.id}: VM ${run.vm} is unreachable (${obs.reason})`, `check it with \`fabrik vm list\``);
  }
  const staleMs = ctx.config.engineHeartbeatStaleMs;
  let plan = planResume({
    run,
    observation: obs,
    options: { force: req.force, fix: req.fix, fixLimitBytes: req.fixLimitBytes, afterDecision: req.afterDecision, engineVersion: req.engine },
    thresholds: { engineHeartbeatStaleMs: staleMs },
    now: ctx.now(),
    guestHome,
    heartbeatIntervalS: ctx.config.launcherHeartbeatIntervalS,
    launchId: newLaunchId("resume"),
  });
  const outcome = (p: ResumePlan, vm: GuestResult | null): ResumeOutcome => ({
    v: 1,
    dry_run: req.dryRun,
    allowed: p.allowed,
    applied: false,
    plan: p,
    vm_result: vm,
    registry: null,
    reason: req.reason ?? null,
  });

  if (req.dryRun) {
    // The VM's own read-only checks (workflow file, launcher.lock, …): creates nothing, changes nothing.
    let vm: GuestResult | null = null;
    if (plan.bun && plan.engine_dir && plan.dialect) {
      try {
        vm = await runGuestResume(ctx, driver, run.vm, plan, requestFor(plan, req, staleMs, true), await ctx.guestInstalls());
        // A new engine (--engine) is installed by the resume itself: not being installed yet is no refusal.
        if (plan.engine_pin.changed && vm.reasons.some((r) => r.code === "ENGINE_MISSING")) {
          vm = { ...vm, reasons: vm.reasons.filter((r) => r.code !== "ENGINE_MISSING"), checks: vm.checks.filter((c) => c.name !== "engine-installed") };
          plan = { ...plan, warnings: [...plan.warnings, `engine ${plan.engine_version} is not installed in VM ${run.vm} yet; the resume installs it first`] };
        }
        plan = withVmChecks(plan, vm);
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        plan = withVmChecks(plan, { failure: err instanceof Error ? err.message : String(err) });
      }
    }
    return outcome(plan, vm);
  }

  if (!plan.allowed) throw new ResumeRefusedError(outcome(plan, null));
  if (!req.yes) {
    const go = hooks.confirm ? await hooks.confirm(plan) : false;
    if (!go) throw new RefusedError(`run ${run.id} was not resumed: not confirmed`, "nothing was changed");
  }

  if (plan.engine_pin.changed && plan.engine_version) {
    // The new engine first (an install, not a change to the run).
    const [{ ensureEngine }, { DEFAULTS }] = await Promise.all([import("../vm/engine.js"), import("./config.js")]);
    const home = guestHome ?? plan.engine_dir!.replace(/\/\.fabrik\/engines\/[^/]+$/, "");
    await ensureEngine(driver, run.vm, home, plan.engine_version, { cacheDir: ctx.config.engineCacheDir, timeoutMs: DEFAULTS.engineInstallTimeoutMs, signal: ctx.signal });
  }

  // The journal: written BEFORE the VM changes anything, so a fabrik killed while (or after) the VM applies the
  // resume leaves an intent that the next live check settles (runs-service.ts, settlePendingLaunch).
  const history = {
    previous_failure_reason: run.failure_reason,
    previous_status: run.status,
    reason: req.reason ?? null,
    mode: plan.mode,
    retry_node: plan.retry_node,
    backup: plan.backup_path,
    script: plan.script_path,
    forced: req.force,
    ...(plan.engine_pin.changed ? { engine_from: plan.engine_pin.before, engine_to: plan.engine_version } : {}),
    ...(req.afterDecision ? { after_decision: true } : {}),
  };
  const journalledAt = ctx.now();
  ctx.registry().updateRun(run.id, { pending_json: JSON.stringify({ kind: "resume", launch_id: plan.launch_id, at_ms: journalledAt, detail: history } satisfies PendingLaunch) }, journalledAt);
  ctx.registry().recordEvent(run.id, "resume-intent", { launch_id: plan.launch_id, ...history }, journalledAt);
  // A failure to reach the VM (deadline, lost connection) leaves the journal open: the VM may have applied it.
  const result = await runGuestResume(ctx, driver, run.vm, plan, requestFor(plan, req, staleMs, false), await ctx.guestInstalls());
  const now = ctx.now();
  if (result.refused) {
    ctx.registry().updateRun(run.id, { pending_json: null }, now);
    throw new ResumeRefusedError(outcome(withVmChecks(plan, result), result));
  }
  if (!result.ok) {
    ctx.registry().updateRun(run.id, { pending_json: null }, now);
    const where = result.backup ? `; the DB backup taken before any change is ${result.backup.path}` : "";
    // "Nothing was changed" only when it is true: a partial backup the VM could not remove is named instead.
    const left = result.leftovers.length ? ` A failed backup left ${result.leftovers.join(", ")} (safe to delete).` : "";
    const changed = result.reset?.applied ? " The state reset WAS applied." : result.backup ? " The DB state was not reset." : left ? `${left} The DB was not changed.` : " Nothing was changed.";
    ctx.registry().recordEvent(run.id, "resume-failed", { stage: result.stage, error: result.error, backup: result.backup?.path ?? null, reason: req.reason ?? null }, now);
    throw new RemoteError(run.vm, "resume", `failed at ${result.stage}: ${result.error ?? "unknown error"}${where}.${changed}`, undefined, `see the log with \`fabrik run attach --id ${run.id} --no-follow\``);
  }

  const updated = ctx.registry().updateRun(
    run.id,
    {
      status: "running",
      resume_count: run.resume_count + 1,
      last_resumed_at_ms: now,
      exit_code: null,
      failure_reason: null,
      finished_at_ms: null,
      launcher_pid: result.pids?.launcher_pid ?? null,
      engine_pid: null,
      last_check_status: null,
      pending_json: null,
      ...(plan.engine_pin.changed && plan.engine_version ? { engine_version: plan.engine_version } : {}),
    },
    now,
  );
  ctx.registry().recordEvent(
    run.id,
    "resumed",
    {
      ...history,
      launch_id: plan.launch_id,
      mode: result.mode,
      retry_node: result.retry_node,
      backup: result.backup,
      fix: result.fix,
      reset: result.reset,
      script: result.script?.path ?? null,
      launcher_pid: result.pids?.launcher_pid ?? null,
    },
    now,
  );
  return {
    ...outcome(plan, result),
    applied: true,
    registry: { id: updated.id, status: updated.status, resume_count: updated.resume_count, last_resumed_at_ms: updated.last_resumed_at_ms },
  };
}

/**
 * `fabrik run resume`: the outcome as a view (the plan for a dry-run, what was done otherwise). A dry-run that
 * would be refused still prints its plan, then fails with the refusal (exit 5); a refused real resume prints the
 * outcome with `--json` only.
 */
export async function resumeCommand(ctx: Context, req: ResumeRequest): Promise<ViewResult<ResumeOutcome>> {
  const { view } = await import("./command.js");
  const { renderResumePlan, renderResumeResult } = await import("./render/resume.js");
  const confirm = (plan: ResumePlan): Promise<boolean> => {
    ctx.io.stderr.write(renderResumePlan(plan, { tty: ctx.io.stderrTty, showScript: false }) + "\n");
    return askYesNo(`Resume run ${req.id} now? [y/N] `);
  };
  let outcome: ResumeOutcome;
  try {
    outcome = await resumeRun(ctx, req, { confirm });
  } catch (err) {
    // --json still gets the model of a refused resume on stdout; people get the one error line.
    if (err instanceof ResumeRefusedError && ctx.io.json) return view(err.outcome, () => "", { fail: err });
    throw err;
  }
  const render = (o: ResumeOutcome, r: RenderContext) => (o.dry_run ? renderResumePlan(o.plan, { tty: r.tty, showScript: true }) : renderResumeResult(o));
  if (outcome.dry_run && !outcome.allowed) {
    const { message, hint } = refusalLine(outcome.plan);
    return view(outcome, render, { fail: new RefusedError(message, hint, outcome.plan.reasons.map((r) => r.code)) });
  }
  return view(outcome, render);
}
