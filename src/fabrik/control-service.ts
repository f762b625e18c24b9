/**
 * `run cancel`, `run approve|deny`, `run signal`, `run compact`, host side: look (ONE live probe), plan
 * (src/resume/control-plan.ts, pure), then apply in ONE call of the guest program `control` (src/vm/guest/control.ts),
 * which re-checks everything in the VM, runs the engine's own verb against the run's DB, signals only the run's
 * proven processes, and backs the DB up before it changes it itself (compact). Afterwards the run is looked at again
 * and the verdict written back (so the registry says `cancelled`, with the exit code), and the action is recorded
 * in the run's history (`run_events`: cancel, approve, deny, signal, compact).
 *
 * A decision (approve, deny, signal) does not make a parked engine continue by itself: the engine exited when the
 * run parked (exit 3). When no engine process lives, fabrik starts the run again on the same run id right after the
 * decision — the resume path (`run resume`'s guest program, mode continue-waiting, with its backup and checks).
 */
import type { Context } from "./context.js";
import type { RenderContext, ViewResult } from "./command.js";
import type { RunRecord } from "./registry.js";
import { observeVm, reconcile, requireRun, type RunView } from "./runs-service.js";
import { FabrikError, RefusedError, RemoteError, UsageError } from "../core/errors.js";
import { ControlResultSchema, type ControlRequest, type ControlResult } from "../vm/control-schema.js";
import { planControl, type ControlAction, type ControlPlan } from "../resume/control-plan.js";
import { callRunGuest, runVm } from "./run-guest.js";
import { askYesNo } from "./io.js";

/** What the user asked for. */
export interface ControlCommandRequest {
  action: ControlAction;
  id: number;
  dryRun: boolean;
  /** cancel: confirmation (required without a TTY). */
  yes: boolean;
  /** cancel: SIGKILL after the grace period. */
  force: boolean;
  graceMs: number;
  node?: string | undefined;
  note?: string | undefined;
  by?: string | undefined;
  signalName?: string | undefined;
  /** signal: the payload, a JSON object's text. */
  data?: string | undefined;
  correlation?: string | undefined;
  limitBytes: number;
}

/** The model `run cancel|approve|deny|signal|compact --json` prints. */
export interface ControlOutcome {
  v: 1;
  action: ControlAction;
  id: number;
  dry_run: boolean;
  allowed: boolean;
  /** True when the VM applied the change. */
  applied: boolean;
  /** cancel of a run that had already ended: nothing was changed. */
  ended: boolean;
  plan: ControlPlan;
  /** The VM's answer (its checks, the engine verbs it ran, the signals it sent, the backup). */
  vm_result: ControlResult | null;
  /** fabrik's verdict on the run afterwards (live), with its exit code. */
  effective_status: string | null;
  exit_code: number | null;
  /** approve/deny/signal: the run started again on the same run id (its launcher pid and script), or why not. */
  relaunch: { started: boolean; launcher_pid: number | null; script: string | null; error: string | null } | null;
}

/** A refusal that still carries the outcome, so `--json` prints the model. */
export class ControlRefusedError extends RefusedError {
  constructor(
    readonly outcome: ControlOutcome,
    message: string,
    hint: string | undefined,
    reasons: string[],
  ) {
    super(message, hint, reasons);
  }
}

const VERB: Record<ControlAction, string> = { cancel: "cancel", approve: "approve", deny: "deny", signal: "signal", compact: "compact" };

function refusal(plan: ControlPlan, reasons: ControlPlan["reasons"]): { message: string; hint: string | undefined } {
  const [first, ...rest] = reasons;
  const more = rest.length > 0 ? ` (and ${rest.length} more reason${rest.length > 1 ? "s" : ""})` : "";
  return { message: `cannot ${VERB[plan.action]} run ${plan.host_run_id}: ${first?.message ?? "refused"}${more}`, hint: first?.hint ?? undefined };
}

function requestFor(plan: ControlPlan, req: ControlCommandRequest, dryRun: boolean): ControlRequest {
  let data: string | null = null;
  if (req.data !== undefined) data = req.data;
  return {
    v: 1,
    action: plan.action,
    dry_run: dryRun,
    host_run_id: plan.host_run_id,
    smithers_run_id: plan.smithers_run_id,
    control_dir: plan.control_dir,
    db_path: plan.db_path,
    workflow_path: plan.workflow_path,
    engine_dir: plan.engine_dir!,
    dialect: plan.dialect!,
    grace_ms: req.graceMs,
    force: req.force,
    node: plan.node ?? req.node ?? null,
    iteration: plan.iteration,
    note: req.note ?? null,
    by: req.by ?? null,
    signal_name: req.signalName ?? null,
    data_json: data,
    correlation: req.correlation ?? null,
    limit_bytes: req.limitBytes,
    backup_path: plan.backup_path,
    keep_backups: plan.keep_backups,
  };
}

async function callControl(ctx: Context, run: RunRecord, plan: ControlPlan, req: ControlCommandRequest, dryRun: boolean): Promise<ControlResult> {
  const vm = await runVm(ctx, run);
  const timeoutMs = plan.action === "cancel" ? req.graceMs + (req.force ? 30_000 : 0) + 150_000 : plan.action === "compact" ? 30 * 60_000 : 150_000;
  const json = await callRunGuest(ctx, vm, run, { name: "control", bun: plan.bun!, mode: dryRun ? "dry-run" : "apply", request: requestFor(plan, req, dryRun), timeoutMs, what: VERB[plan.action] });
  const parsed = ControlResultSchema.safeParse(json);
  if (!parsed.success) throw new RemoteError(run.vm, VERB[plan.action], `invalid answer: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return parsed.data;
}

/** Look at the run again and write the verdict back (the registry then says cancelled, with the exit code). */
async function lookAgain(ctx: Context, id: number): Promise<RunView | null> {
  const run = requireRun(ctx, id);
  const { observations } = await observeVm(ctx, await ctx.driver(run.driver), run.vm, [run]);
  const obs = observations.get(id)!;
  return obs.kind === "live" ? reconcile(ctx, run, obs) : null;
}

/**
 * Run one control action. Dry-run: the plan and the VM's own checks; changes nothing anywhere.
 * @throws ControlRefusedError (exit 5) when refused (nothing changed); UsageError for a cancel without `--yes` off a
 *   TTY; RemoteError when applying failed; VmUnavailableError/NotFoundError from the driver.
 */
export async function controlRun(ctx: Context, req: ControlCommandRequest): Promise<ControlOutcome> {
  if (req.action === "cancel" && !req.dryRun && !req.yes && !ctx.io.stdinTty) {
    throw new UsageError("cancelling needs confirmation, and stdin is not a terminal: pass --yes", `or look first with \`fabrik run cancel --id ${req.id} --dry-run\``);
  }
  if (req.action === "signal" && req.data !== undefined) {
    let v: unknown;
    try {
      v = JSON.parse(req.data);
    } catch (err) {
      throw new UsageError(`--data is not valid JSON: ${(err as Error).message}`, `e.g. --data '{"ok": true}'`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new UsageError("--data must be a JSON object", `e.g. --data '{"ok": true}'`);
  }
  const run = requireRun(ctx, req.id);
  const driver = await ctx.driver(run.driver);
  const { observations } = await observeVm(ctx, driver, run.vm, [run]);
  const obs = observations.get(run.id)!;
  const guestHome = ctx.registry().getVm(run.vm)?.guest_home ?? null;
  const plan = planControl(req.action, run, obs, { node: req.node, signalName: req.signalName, limitBytes: req.limitBytes, guestHome, now: ctx.now() });
  const outcome = (vmResult: ControlResult | null, p = plan): ControlOutcome => ({
    v: 1,
    action: req.action,
    id: run.id,
    dry_run: req.dryRun,
    allowed: p.allowed,
    applied: false,
    ended: p.ended,
    plan: p,
    vm_result: vmResult,
    effective_status: null,
    exit_code: null,
    relaunch: null,
  });
  // Whatever happens next, the look we just took is the truth: write it back.
  const seen = obs.kind === "live" ? await reconcile(ctx, run, obs) : null;
  if (plan.ended) return { ...outcome(null), effective_status: seen?.effective_status ?? null, exit_code: seen?.exit_code ?? null };
  if (!plan.allowed) {
    if (req.dryRun) return outcome(null);
    const { message, hint } = refusal(plan, plan.reasons);
    throw new ControlRefusedError(outcome(null), message, hint, plan.reasons.map((r) => r.code));
  }

  if (req.dryRun) {
    const vm = await callControl(ctx, run, plan, req, true);
    const p: ControlPlan = { ...plan, checks: [...plan.checks, ...vm.checks.map((c) => ({ name: `vm:${c.name}`, ok: c.ok, detail: c.detail ?? "" }))], reasons: [...plan.reasons, ...vm.reasons] };
    p.allowed = p.reasons.length === 0;
    if (vm.stage === "ended") p.ended = true;
    return { ...outcome(vm, p), allowed: p.allowed };
  }
  if (req.action === "cancel" && !req.yes) {
    const go = await askYesNo(`Cancel run ${run.id} (${plan.db_status}) in VM ${run.vm}? [y/N] `);
    if (!go) throw new RefusedError(`run ${run.id} was not cancelled: not confirmed`, "nothing was changed");
  }

  const result = await callControl(ctx, run, plan, req, false);
  const now = ctx.now();
  if (result.refused) {
    const { message, hint } = refusal(plan, result.reasons);
    throw new ControlRefusedError(outcome(result), message, hint, result.reasons.map((r) => r.code));
  }
  const applied = result.engine_calls.length > 0 || result.signals.length > 0 || result.backup !== null || result.exit_code_written;
  if (applied) {
    ctx.registry().recordEvent(
      run.id,
      req.action,
      {
        ok: result.ok,
        status_before: result.status_before,
        status_after: result.status_after,
        node: result.node,
        iteration: result.iteration,
        note: req.note ?? null,
        by: req.by ?? null,
        signal_name: req.signalName ?? null,
        engine: result.engine_calls.map((c) => ({ argv: c.argv, exit_code: c.exit_code, status: c.status })),
        signals: result.signals,
        forced: req.force,
        grace_ms: req.action === "cancel" ? req.graceMs : undefined,
        exit_code: result.exit_code,
        exit_code_written: result.exit_code_written,
        backup: result.backup,
        fix: result.fix,
        error: result.error,
      },
      now,
    );
  }
  const after = await lookAgain(ctx, run.id).catch(() => null);
  const done: ControlOutcome = { ...outcome(result), applied, effective_status: after?.effective_status ?? null, exit_code: after?.exit_code ?? result.exit_code };
  if (!result.ok) {
    if (req.action === "cancel" && result.stage === "wait") {
      throw new ControlRefusedError(done, `run ${run.id} is still running after the grace period: ${result.error ?? ""}`, `the cancel request stands; wait, or pass --force to SIGKILL after --grace`, ["STILL_RUNNING"]);
    }
    throw new RemoteError(run.vm, VERB[req.action], result.error ?? `failed at ${result.stage}`, undefined, `see \`fabrik runs why --id ${run.id}\``);
  }

  // A decision on a parked run whose engine has exited: start it again on the same run id.
  if ((req.action === "approve" || req.action === "deny" || req.action === "signal") && plan.relaunch) {
    const [{ resumeRun, ResumeRefusedError }, { retryUntil }, { LAUNCHER_SETTLE_MS }] = await Promise.all([
      import("./resume-service.js"),
      import("../vm/retry.js"),
      import("./status/run-end.js"),
    ]);
    // The engine parked and exited; its launcher may still be writing exit_code (or be a zombie not yet reaped):
    // a refusal for a living process alone is retried while a launcher may settle (LAUNCHER_SETTLE_MS).
    const settling = (err: unknown) => err instanceof ResumeRefusedError && err.reasons.length > 0 && err.reasons.every((c) => c === "PROCESS_ALIVE");
    try {
      const r = await retryUntil(
        () => resumeRun(ctx, { id: run.id, dryRun: false, force: false, fix: false, fixLimitBytes: req.limitBytes, yes: true, reason: `after run ${req.action}`, afterDecision: true }),
        { deadlineAt: Date.now() + LAUNCHER_SETTLE_MS, shouldRetry: settling },
      );
      done.relaunch = { started: true, launcher_pid: r.vm_result?.pids?.launcher_pid ?? null, script: r.vm_result?.script?.path ?? null, error: null };
      done.effective_status = r.registry?.status ?? done.effective_status;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      done.relaunch = { started: false, launcher_pid: null, script: null, error: msg };
      const e = err instanceof FabrikError ? err : null;
      throw new RemoteError(run.vm, VERB[req.action], `${req.action === "signal" ? "the signal was delivered" : `${req.action === "approve" ? "approved" : "denied"} ${result.node}`}, but starting the run again failed: ${msg}`, undefined, e?.hint ?? `continue it with \`fabrik run resume --id ${run.id}\` once the cause is fixed`);
    }
  }
  return done;
}

/** The command's view: the outcome, rendered; a refused dry-run prints its plan and exits 5. */
export async function controlCommand(ctx: Context, req: ControlCommandRequest): Promise<ViewResult<ControlOutcome>> {
  const { view } = await import("./command.js");
  const { renderControlOutcome } = await import("./render/control.js");
  let o: ControlOutcome;
  try {
    o = await controlRun(ctx, req);
  } catch (err) {
    if (err instanceof ControlRefusedError && ctx.io.json) return view(err.outcome, () => "", { fail: err });
    throw err;
  }
  const render = (v: ControlOutcome, r: RenderContext) => renderControlOutcome(v, { tty: r.tty });
  if (o.dry_run && !o.allowed && !o.ended) {
    const { message, hint } = refusal(o.plan, o.plan.reasons);
    return view(o, render, { fail: new RefusedError(message, hint, o.plan.reasons.map((r) => r.code)) });
  }
  return view(o, render);
}
