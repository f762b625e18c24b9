/**
 * `fabrik run resume`, host side: look (ONE live probe with the node list), plan ({@link planResume}), confirm,
 * then apply in ONE remote call of `guest/resume.js`, which re-checks everything inside the VM, backs the DB up,
 * optionally fixes oversized values, resets the state in one transaction and starts `resume-N.sh` detached.
 * On success the registry row is updated (same host id, `running`, resume_count + 1) and the history keeps the
 * previous failure reason. A refusal changes nothing anywhere; `--dry-run` changes nothing anywhere either (not
 * even the registry: the live status is derived without reconcile's write-back).
 *
 * Wire format of the guest program (request on stdin, one JSON line on stdout) is defined here
 * ({@link ResumeRequestWire}, {@link GuestResultSchema}); the VM is untrusted, so its answer is validated.
 */
import fs from "node:fs";
import { z } from "zod";
import type { Context } from "./context.js";
import { NotFoundError, PrerequisiteError, RefusedError, RemoteError, UsageError, VmUnavailableError } from "../core/errors.js";
import { observeVm, requireRun } from "./runs-service.js";
import type { RunRecord } from "./registry.js";
import type { VmDriver } from "../vm/driver.js";
import { RESUME_MODES, planResume, refusalLine, withVmChecks, type ResumeMode, type ResumePlan } from "../resume/plan.js";
import type { RenderContext, ViewResult } from "./command.js";

/** Exit status of {@link RESUME_WRAPPER} when another resume of the run holds `resume.lock`. */
export const RESUME_EXIT_LOCKED = 75;
/** Exit status of {@link RESUME_WRAPPER} when the engine's bun is missing. */
export const RESUME_EXIT_NO_BUN = 76;

/**
 * The bash program run in the VM as `bash -c RESUME_WRAPPER fabrik-resume <control dir> <bun> <dry-run|apply> <resume.js text>`
 * (values only as positional parameters; the request JSON on stdin).
 * - apply: takes a NON-BLOCKING lock on `<control>/resume.lock` with `flock -n -o` (the fd is closed before bun
 *   runs, so neither bun nor the launcher it starts inherits the lock; flock holds it until bun exits); a
 *   second concurrent resume exits {@link RESUME_EXIT_LOCKED}.
 * - dry-run: creates nothing — only tests an EXISTING resume.lock (`flock -n FILE true`) and runs bun unlocked.
 */
export const RESUME_WRAPPER = String.raw`set -u
C="$1"; bun="$2"; mode="$3"; js="$4"
if [ ! -x "$bun" ]; then echo "fabrik-resume: the engine's bun is not installed at $bun" >&2; exit ${RESUME_EXIT_NO_BUN}; fi
if [ "$mode" = apply ] && [ -d "$C" ]; then
  exec flock -n -o -E ${RESUME_EXIT_LOCKED} "$C/resume.lock" "$bun" -e "$js" apply
fi
if [ -e "$C/resume.lock" ]; then
  flock -n -E ${RESUME_EXIT_LOCKED} "$C/resume.lock" true
  [ $? -eq ${RESUME_EXIT_LOCKED} ] && exit ${RESUME_EXIT_LOCKED}
fi
exec "$bun" -e "$js" "$mode"
`;

/** The request `guest/resume.js` reads on stdin. */
export interface ResumeRequestWire {
  v: 1;
  dry_run: boolean;
  host_run_id: number;
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  engine_dir: string;
  dialect: "modern" | "legacy";
  force: boolean;
  fix: boolean;
  fix_limit_bytes: number;
  engine_heartbeat_stale_ms: number;
  expected_mode: ResumeMode | null;
  retry_node: string | null;
  backup_path: string;
  keep_backups: number;
  script_path: string;
  script: string | null;
  start_wait_ms: number;
}

const s = (max: number) => z.string().max(max);
const n = z.number();
const nn = n.nullable().default(null);
const ResetItemSchema = z.object({ node_id: s(500), iteration: nn, attempt: nn.optional(), from: s(60), to: s(60) });

/** What `guest/resume.js` prints (one JSON line). Unknown keys are dropped; missing ones default. */
export const GuestResultSchema = z.object({
  v: z.literal(1),
  ok: z.boolean(),
  dry_run: z.boolean(),
  refused: z.boolean(),
  stage: s(40),
  reasons: z.array(z.object({ code: s(60), message: s(1000), hint: s(1000).nullable().default(null) })).max(100).default([]),
  checks: z.array(z.object({ name: s(200), ok: z.boolean(), detail: s(1000).nullable().default(null) })).max(200).default([]),
  mode: z.enum(RESUME_MODES as [ResumeMode, ...ResumeMode[]]).nullable().default(null),
  retry_node: s(500).nullable().default(null),
  progress: z.object({ finished: n, total: n, by_state: z.record(s(60), n) }).nullable().default(null),
  reset: z
    .object({
      attempts: z.array(ResetItemSchema).max(100_000),
      nodes: z.array(ResetItemSchema).max(100_000),
      run: z.object({ heartbeat_at_ms: nn, runtime_owner_id: s(300).nullable().default(null) }).nullable().default(null),
      by_engine: s(500).nullable().default(null),
      applied: z.boolean(),
      counts: z.object({ attempts_cancelled: n, nodes_pending: n, run_cleared: n }).nullable().default(null),
    })
    .nullable()
    .default(null),
  backup: z.object({ path: s(4096), size_bytes: n, kept: z.array(s(4096)).max(100), removed: z.array(s(4096)).max(100) }).nullable().default(null),
  fix: z
    .object({
      limit_bytes: n,
      rows: n,
      values: n,
      value_bytes_before: n,
      value_bytes_after: n,
      file_bytes_before: z.object({ db_bytes: n, wal_bytes: n }),
      file_bytes_after: z.object({ db_bytes: n, wal_bytes: n }).nullable(),
    })
    .nullable()
    .default(null),
  script: z.object({ path: s(4096), bytes: n }).nullable().default(null),
  pids: z.object({ launcher_pid: n, child_pid: n }).nullable().default(null),
  previous_files: z.record(s(40), s(100)).nullable().default(null),
  error: s(2000).nullable().default(null),
  now_ms: n.optional(),
});
export type GuestResult = z.infer<typeof GuestResultSchema>;

/** What the user asked for. */
export interface ResumeRequest {
  id: number;
  dryRun: boolean;
  force: boolean;
  fix: boolean;
  fixLimitBytes: number;
  yes: boolean;
  reason?: string | undefined;
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

let cachedGuest: string | undefined;
/** `guest/resume.js`, read once (two levels below the repo root from both `src/fabrik` and `dist/fabrik`). */
export function loadGuestResume(): string {
  cachedGuest ??= fs.readFileSync(new URL("../../guest/resume.js", import.meta.url), "utf8");
  return cachedGuest;
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
 * Run `guest/resume.js` in the VM: ONE `driver.exec`. Returns the validated answer.
 * @throws RefusedError when another resume holds the lock; PrerequisiteError when bun is missing;
 *   RemoteError for any other failure to run it or bad output; driver errors unchanged.
 */
export async function runGuestResume(ctx: Context, driver: VmDriver, vm: string, plan: ResumePlan, wire: ResumeRequestWire): Promise<GuestResult> {
  const mode = wire.dry_run ? "dry-run" : "apply";
  const r = await driver.exec(vm, ["bash", "-c", RESUME_WRAPPER, "fabrik-resume", plan.control_dir, plan.bun!, mode, loadGuestResume()], {
    stdin: JSON.stringify(wire),
    timeoutMs: wire.dry_run ? 60_000 : 15 * 60_000,
    signal: ctx.signal,
    maxOutputBytes: 16 * 1024 * 1024,
  });
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
    options: { force: req.force, fix: req.fix, fixLimitBytes: req.fixLimitBytes },
    thresholds: { engineHeartbeatStaleMs: staleMs },
    now: ctx.now(),
    guestHome,
    heartbeatIntervalS: ctx.config.launcherHeartbeatIntervalS,
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
        vm = await runGuestResume(ctx, driver, run.vm, plan, requestFor(plan, req, staleMs, true));
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

  const result = await runGuestResume(ctx, driver, run.vm, plan, requestFor(plan, req, staleMs, false));
  if (result.refused) throw new ResumeRefusedError(outcome(withVmChecks(plan, result), result));
  const now = ctx.now();
  if (!result.ok) {
    const where = result.backup ? `; the DB backup taken before any change is ${result.backup.path}` : "";
    const changed = result.reset?.applied ? " The state reset WAS applied." : result.backup ? " The DB state was not reset." : " Nothing was changed.";
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
    },
    now,
  );
  ctx.registry().recordEvent(
    run.id,
    "resumed",
    {
      previous_failure_reason: run.failure_reason,
      previous_status: run.status,
      reason: req.reason ?? null,
      mode: result.mode,
      retry_node: result.retry_node,
      backup: result.backup,
      fix: result.fix,
      reset: result.reset,
      script: result.script?.path ?? null,
      launcher_pid: result.pids?.launcher_pid ?? null,
      forced: req.force,
    },
    now,
  );
  return {
    ...outcome(plan, result),
    applied: true,
    registry: { id: updated.id, status: updated.status, resume_count: updated.resume_count, last_resumed_at_ms: updated.last_resumed_at_ms },
  };
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
    return ask(`Resume run ${req.id} now? [y/N] `);
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
