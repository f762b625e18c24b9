/**
 * `fabrik supervise [--interval 60s] [--once] [--max-resumes 3] [--vm V…] [--retry-failed]`: the fleet's watchdog.
 *
 * Each pass probes every VM in scope ONCE (its health facts, for `fabrik fleet`'s history, and the runs that may
 * need it: cached active or orphaned, plus failed with `--retry-failed`), writes the live verdicts back, and for
 * each run decides with `supervise-rules.ts`. A run to resume is resumed through `run resume`'s own path
 * (`resumeRun` in resume-service.ts: a fresh probe, the plan's checks, the VM's re-check under `resume.lock`, the
 * verified backup, the scoped reset) — there is no second resume path.
 *
 * Two supervisors never act on the same run: a lease in the registry (`supervisor_leases`, taken in one
 * `BEGIN IMMEDIATE` transaction) is taken first; under it the run's row is read again and left alone if it
 * changed since the probe (someone resumed it); and the VM's `resume.lock` guards supervisors with different
 * registries. Every attempt and every notable decision is a run event; with `--json` each is an NDJSON line.
 */
import os from "node:os";
import { randomBytes } from "node:crypto";
import pLimit from "p-limit";
import type { Context } from "./context.js";
import type { RunRecord } from "./registry.js";
import type { StreamItem, StreamResult } from "./command.js";
import { listVms } from "./vm-service.js";
import { checkVm } from "./vm-check.js";
import { RECORDED_SKIPS, SUPERVISE_SKIP_KIND, superviseDecision, type SkipCode, type SuperviseOptions } from "./supervise-rules.js";
import { ACTIVE_RUN_STATUSES, type RunStatus } from "../core/status.js";
import { FabrikError, NotFoundError, RefusedError } from "../core/errors.js";
import type { VmInfo } from "../vm/driver.js";

/** How long a lease holds without renewal, ms: longer than a resume's own deadline (15 min). */
export const LEASE_TTL_MS = 20 * 60_000;

export interface SuperviseRequest extends Omit<SuperviseOptions, "engineHeartbeatStaleMs"> {
  intervalMs: number;
  once: boolean;
  vms?: string[] | undefined;
}

/** One NDJSON line of `supervise --json`. Times ISO-8601. */
export type SuperviseEvent =
  | { type: "start"; at: string; holder: string; interval_ms: number; once: boolean; max_resumes: number; retry_failed: boolean; vms: string[] | null }
  | { type: "pass"; at: string; pass: number; vms: { name: string; state: string; ok: boolean; error: string | null }[]; runs_checked: number; actions: number }
  | { type: "resumed"; at: string; run_id: number; vm: string; attempt: number; max_resumes: number; reason: string; mode: string | null; resume_count: number | null }
  | { type: "resume-refused"; at: string; run_id: number; vm: string; attempt: number; max_resumes: number; message: string; codes: string[] }
  | { type: "resume-failed"; at: string; run_id: number; vm: string; attempt: number; max_resumes: number; message: string }
  | { type: "skipped"; at: string; run_id: number; vm: string; status: RunStatus | string; code: SkipCode; reason: string }
  | { type: "stopped"; at: string; reason: string; passes: number };

/** Runs a pass looks at in one VM: cached active or orphaned (and failed with --retry-failed); cancelled never. */
function candidates(ctx: Context, vm: string, retryFailed: boolean): RunRecord[] {
  const statuses: RunStatus[] = [...ACTIVE_RUN_STATUSES, "orphaned", ...(retryFailed ? (["failed"] as const) : [])];
  return ctx.registry().listRuns({ vm, statuses });
}

/** A unique id for this supervisor process: `<host>:<pid>:<random>`. */
export function supervisorId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

/**
 * The watchdog as a stream of {@link SuperviseEvent}s. Returns exit code 0, or 1 when (with `--once`) a resume
 * attempt failed. Ends after one pass with `once`, on SIGTERM (after the current pass) or Ctrl-C.
 * @throws NotFoundError when a `--vm` names no known VM.
 */
export async function superviseStream(ctx: Context, req: SuperviseRequest): Promise<StreamResult<SuperviseEvent>> {
  const holder = supervisorId();
  const opts: SuperviseOptions = { retryFailed: req.retryFailed, maxResumes: req.maxResumes, backoffMs: req.backoffMs, engineHeartbeatStaleMs: ctx.config.engineHeartbeatStaleMs };
  if (req.vms?.length) {
    const known = new Set([...ctx.registry().listVms().map((v) => v.name), ...(await listVms(ctx)).rows.map((r) => r.name)]);
    const missing = req.vms.filter((v) => !known.has(v));
    if (missing.length) throw new NotFoundError(`VM ${missing.join(", ")} does not exist`, "see `fabrik vm list`");
  }
  const { renderSuperviseEvent } = await import("./render/supervise.js");
  let stopping = false;
  const onTerm = () => {
    stopping = true;
  };
  const iso = () => new Date(ctx.now()).toISOString();
  /** The last skip code shown per run in this process (a skip is shown again only when it changes). */
  const shown = new Map<number, string>();

  async function* onePass(pass: number): AsyncGenerator<StreamItem<SuperviseEvent>, { failed: number; actions: number }, void> {
    const reg = ctx.registry();
    const { rows } = await listVms(ctx);
    const inScope = rows.filter((r) => (req.vms?.length ? req.vms.includes(r.name) : true));
    const limit = pLimit(ctx.config.probeConcurrency);
    const checked = await Promise.all(
      inScope.map((row) =>
        limit(async () => {
          const runs = candidates(ctx, row.name, req.retryFailed);
          const info = { name: row.name, driver: row.driver, status: row.status, guestHome: row.guest_home ?? undefined, errors: row.errors } as VmInfo;
          const check = await checkVm(ctx, await ctx.driver(row.driver), row.name, info, { runs, source: "supervise" });
          return { row, runs, check };
        }),
      ),
    );
    let actions = 0;
    let failed = 0;
    let runsChecked = 0;
    for (const { row, runs, check } of checked) {
      for (const run of runs) {
        runsChecked++;
        const view = check.runs.get(run.id);
        if (!view) continue;
        const history = reg.runEvents(run.id);
        const d = superviseDecision(view, run, history, opts, ctx.now());
        if (d.kind === "none") {
          shown.delete(run.id);
          continue;
        }
        if (d.kind === "skip") {
          yield* skip(run, row.name, view.effective_status, d.code, d.reason, history);
          continue;
        }
        // Resume, under a lease; the row is read again under it (another supervisor may have resumed it).
        if (!reg.acquireLease(run.id, holder, ctx.now(), LEASE_TTL_MS)) {
          yield* skip(run, row.name, view.effective_status, "LEASED", `another supervisor holds it (${reg.leaseOf(run.id)?.holder ?? "?"})`, null);
          continue;
        }
        try {
          const now = reg.getRun(run.id);
          if (!now || now.resume_count !== run.resume_count || now.last_resumed_at_ms !== run.last_resumed_at_ms || now.pending_json) {
            yield* skip(run, row.name, view.effective_status, "CHANGED", "it changed since this pass looked (resumed by someone else?)", null);
            continue;
          }
          actions++;
          const base = { run_id: run.id, vm: row.name, attempt: d.attempt, max_resumes: opts.maxResumes };
          const reason = `fabrik supervise (${holder}): ${d.reason}; attempt ${d.attempt} of ${opts.maxResumes}`;
          const { resumeRun } = await import("./resume-service.js");
          try {
            const out = await resumeRun(ctx, { id: run.id, dryRun: false, force: false, fix: false, fixLimitBytes: 100 * 1024, yes: true, reason });
            const detail = { holder, attempt: d.attempt, mode: out.plan.mode, reason: d.reason };
            reg.recordEvent(run.id, "supervise-resumed", detail, ctx.now());
            shown.delete(run.id);
            yield { type: "data", data: { type: "resumed", at: iso(), ...base, reason: d.reason, mode: out.plan.mode, resume_count: out.registry?.resume_count ?? null } };
          } catch (err) {
            if (ctx.signal.aborted) throw err;
            const fe = err instanceof FabrikError ? err : new FabrikError("internal", String(err));
            if (fe instanceof RefusedError) {
              reg.recordEvent(run.id, "supervise-refused", { holder, attempt: d.attempt, message: fe.message, codes: fe.reasons }, ctx.now());
              yield { type: "data", data: { type: "resume-refused", at: iso(), ...base, message: fe.message, codes: fe.reasons } };
            } else {
              failed++;
              reg.recordEvent(run.id, "supervise-failed", { holder, attempt: d.attempt, message: fe.message }, ctx.now());
              yield { type: "data", data: { type: "resume-failed", at: iso(), ...base, message: fe.message } };
            }
          }
        } finally {
          reg.releaseLease(run.id, holder);
        }
      }
    }
    yield {
      type: "data",
      data: { type: "pass", at: iso(), pass, vms: checked.map(({ row, check }) => ({ name: row.name, state: check.state, ok: check.ok, error: check.error })), runs_checked: runsChecked, actions },
    };
    return { failed, actions };

    /** Show a skip (when it changed for this run) and record the notable ones once. */
    function* skip(run: RunRecord, vm: string, status: string, code: SkipCode, reason: string, history: ReturnType<typeof reg.runEvents> | null): Generator<StreamItem<SuperviseEvent>, void, void> {
      if (RECORDED_SKIPS.includes(code) && history) {
        const last = [...history].reverse().find((e) => e.kind === SUPERVISE_SKIP_KIND);
        let lastCode: unknown;
        try {
          lastCode = last?.detail_json ? (JSON.parse(last.detail_json) as { code?: unknown }).code : undefined;
        } catch {
          lastCode = undefined;
        }
        if (lastCode !== code) reg.recordEvent(run.id, SUPERVISE_SKIP_KIND, { holder, code, reason, status }, ctx.now());
      }
      if (shown.get(run.id) === code) return;
      shown.set(run.id, code);
      yield { type: "data", data: { type: "skipped", at: iso(), run_id: run.id, vm, status, code, reason } };
    }
  }

  async function* items(): AsyncGenerator<StreamItem<SuperviseEvent>, number, void> {
    process.on("SIGTERM", onTerm);
    let passes = 0;
    let failedTotal = 0;
    try {
      yield { type: "data", data: { type: "start", at: iso(), holder, interval_ms: req.intervalMs, once: req.once, max_resumes: req.maxResumes, retry_failed: req.retryFailed, vms: req.vms?.length ? req.vms : null } };
      for (;;) {
        passes++;
        const r = yield* onePass(passes);
        failedTotal += r.failed;
        if (req.once || stopping || ctx.signal.aborted) break;
        await sleep(req.intervalMs, ctx.signal, () => stopping);
        if (stopping || ctx.signal.aborted) break;
      }
      yield { type: "data", data: { type: "stopped", at: iso(), reason: req.once ? "--once" : ctx.signal.aborted ? "interrupted" : "SIGTERM", passes } };
      return req.once && failedTotal > 0 ? 1 : 0;
    } finally {
      process.off("SIGTERM", onTerm);
    }
  }

  return { kind: "stream", items: items(), renderItem: (e, r) => renderSuperviseEvent(e, r) };
}

/** Sleep `ms`, waking early on abort or when `stop()` turns true (checked every 200 ms). */
function sleep(ms: number, signal: AbortSignal, stop: () => boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      clearInterval(poll);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const poll = setInterval(() => stop() && done(), 200);
    if (signal.aborted) done();
    else signal.addEventListener("abort", done, { once: true });
  });
}
