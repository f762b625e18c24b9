/**
 * Planning the run-level changes other than a resume: PURE (no I/O, `now` injected), like `plan.ts`. From the run's
 * registry row and ONE live observation, decide whether `run cancel`, `run approve|deny`, `run signal` and
 * `run compact` are accepted in the run's state, with the checks that passed or failed and one reason per refusal.
 * The VM re-checks everything at apply time (src/vm/guest/control.ts); these plans are what `--dry-run` and the
 * refusals show, and what the unit table test runs every suggested next command through.
 */
import type { RunObservation } from "../vm/probe.js";
import type { PidFact } from "../vm/probe-schema.js";
import { engineDialect, engineLayout, isSupportedEngineVersion, type EngineDialect } from "../vm/engine-recipe.js";
import { isNotTheRunsProcess } from "../core/pid-identity.js";
import { isParkedEngineStatus, isTerminalEngineStatus } from "../core/status.js";
import type { ResumeReason } from "../core/resume-rules.js";
import { backupPathFor, guestHomeFromControlDir, KEEP_BACKUPS, type ResumeTarget } from "./plan.js";

/** The run-level changes planned here. */
export type ControlAction = "cancel" | "approve" | "deny" | "signal" | "compact";

/** One check: passed or failed, with what was seen. */
export interface ControlCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** A planned change: allowed or refused (with reasons), and what the VM needs to apply it. */
export interface ControlPlan {
  v: 1;
  action: ControlAction;
  host_run_id: number;
  vm: string;
  smithers_run_id: string;
  allowed: boolean;
  /** cancel: the run had already ended (done, failed, cancelled): nothing to do, nothing changed. */
  ended: boolean;
  reasons: ResumeReason[];
  checks: ControlCheck[];
  warnings: string[];
  /** The engine's run status in the DB when observed. */
  db_status: string | null;
  engine_version: string | null;
  dialect: EngineDialect | null;
  engine_dir: string | null;
  bun: string | null;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  /** approve/deny: the gate (node id and iteration), when one is known. */
  node: string | null;
  iteration: number | null;
  /** approve/deny/signal: no engine process lives, so the run is started again on the same run id afterwards. */
  relaunch: boolean;
  /** compact: where the verified backup goes. */
  backup_path: string | null;
  keep_backups: number;
  /** compact: values over the limit and the largest sizes seen by the probe, bytes. */
  oversized: { values: number | null; max_bytes: number | null; limit_bytes: number; db_bytes: number | null } | null;
}

/** What each action needs besides the run and the observation. */
export interface ControlOptions {
  /** approve/deny: the gate named by `--node` (else the one waiting). */
  node?: string | undefined;
  /** signal: its name. */
  signalName?: string | undefined;
  /** compact: bytes kept per value. */
  limitBytes?: number | undefined;
  /** The guest's home (engines live under `<home>/.fabrik/engines/<v>`); null: derived from the control dir. */
  guestHome: string | null;
  /** Host clock, epoch ms (the backup's name). */
  now: number;
}

/** The run's processes as the probe saw them: role → fact (a pid proven to be another process counts as dead). */
function processesOf(obs: Extract<RunObservation, { kind: "live" }>): { role: string; fact: PidFact }[] {
  const c = obs.result.control;
  const owner = obs.result.db?.run?.owner ?? null;
  const out: { role: string; fact: PidFact }[] = [];
  for (const [role, fact] of [["engine owner", owner], ["engine", c?.engine], ["launched child", c?.child], ["launcher", c?.launcher]] as const) {
    if (fact && !out.some((x) => x.fact.pid === fact.pid)) out.push({ role, fact });
  }
  return out;
}

/**
 * Plan `action` on `run` as observed. Pure. Refusal codes: VM_UNREACHABLE, ENGINE_UNKNOWN, GUEST_HOME_UNKNOWN,
 * CONTROL_DIR_MISSING, DB_MISSING, DB_UNREADABLE, RUN_NOT_IN_DB, OWNER_PID_REUSED (cancel), NO_WAITING_GATE,
 * AMBIGUOUS_GATE (approve/deny), ENGINE_HAS_NO_SIGNALS, NOT_WAITING_EVENT, RUN_ENDED (signal), RUN_NOT_ENDED,
 * PROCESS_ALIVE (compact).
 */
export function planControl(action: ControlAction, run: ResumeTarget, obs: RunObservation, o: ControlOptions): ControlPlan {
  const reasons: ResumeReason[] = [];
  const checks: ControlCheck[] = [];
  const pass = (name: string, detail: string) => checks.push({ name, ok: true, detail });
  const fail = (name: string, detail: string, r: ResumeReason) => {
    checks.push({ name, ok: false, detail });
    reasons.push(r);
  };
  const plan: ControlPlan = {
    v: 1,
    action,
    host_run_id: run.id,
    vm: run.vm,
    smithers_run_id: run.smithers_run_id,
    allowed: false,
    ended: false,
    reasons,
    checks,
    warnings: [],
    db_status: null,
    engine_version: run.engine_version,
    dialect: null,
    engine_dir: null,
    bun: null,
    control_dir: run.control_dir,
    db_path: run.smithers_db_path,
    workflow_path: run.workflow_path,
    node: null,
    iteration: null,
    relaunch: false,
    backup_path: action === "compact" ? backupPathFor(run.control_dir, run.id, o.now) : null,
    keep_backups: KEEP_BACKUPS,
    oversized: null,
  };
  const finish = () => {
    plan.allowed = reasons.length === 0 && !plan.ended;
    return plan;
  };
  if (obs.kind !== "live") {
    const why = obs.kind === "unreachable" ? obs.reason : "the VM was not asked";
    fail("vm-reachable", why, { code: "VM_UNREACHABLE", message: `VM ${run.vm} cannot be reached: ${why}`, hint: `check it with \`fabrik vm list\`` });
    return finish();
  }
  pass("vm-reachable", `VM ${run.vm} answered`);
  const c = obs.result.control;
  const db = obs.result.db;

  // The engine: the run's, else the one its DB schema implies.
  let version = run.engine_version;
  if (version === null && db && (db.schema === "modern" || db.schema === "legacy")) {
    version = db.schema === "modern" ? "0.32.0" : "0.5.0";
    plan.warnings.push(`the run has no recorded engine version; using ${version} for its ${db.schema} DB schema`);
  }
  if (version === null || !isSupportedEngineVersion(version)) {
    fail("engine-version", version ?? "unknown", { code: "ENGINE_UNKNOWN", message: `the run's engine version ${version ?? "is unknown"}; fabrik cannot pick the engine's command`, hint: "supported engines: 0.32.0, 0.5.0" });
  } else {
    plan.engine_version = version;
    plan.dialect = engineDialect(version);
    pass("engine-version", `${version} (${plan.dialect})`);
    const home = o.guestHome ?? guestHomeFromControlDir(run.control_dir, run.vm);
    if (home === null) fail("engine-dir", "the VM's home directory is unknown", { code: "GUEST_HOME_UNKNOWN", message: `cannot tell VM ${run.vm}'s home directory (where the engine is installed)`, hint: "see `fabrik vm list`" });
    else {
      const layout = engineLayout(`${home}/.fabrik/engines/${version}`);
      plan.engine_dir = layout.dir;
      plan.bun = layout.bun;
    }
  }

  if (!c || !c.exists) fail("control-dir", `${run.control_dir} does not exist`, { code: "CONTROL_DIR_MISSING", message: `the run's control dir ${run.control_dir} does not exist in VM ${run.vm}`, hint: null });
  if (!db || !db.exists) {
    fail("db", `${db?.path ?? run.smithers_db_path} does not exist`, { code: "DB_MISSING", message: `the Smithers DB ${run.smithers_db_path} does not exist in VM ${run.vm}`, hint: null });
    return finish();
  }
  if (db.error) {
    fail("db", db.error, { code: "DB_UNREADABLE", message: `cannot read the Smithers DB ${db.path}: ${db.error}`, hint: null });
    return finish();
  }
  if (!db.run) {
    fail("db", `run ${run.smithers_run_id} is not in ${db.path}`, { code: "RUN_NOT_IN_DB", message: `run ${run.smithers_run_id} is not in ${db.path}`, hint: `see \`fabrik runs import --vm ${run.vm}\`` });
    return finish();
  }
  if (db.path !== run.smithers_db_path) plan.db_path = db.path;
  const status = db.run.status;
  plan.db_status = status;
  pass("db", `${db.path}: run ${db.run.run_id} is ${status}`);
  const procs = processesOf(obs);
  const living = procs.filter((p) => p.fact.alive);
  const describe = (ps: typeof procs) => ps.map((p) => `${p.role} ${p.fact.pid}`).join(", ");
  const engineAlive = living.some((p) => p.role !== "launcher");

  switch (action) {
    case "cancel": {
      if (isTerminalEngineStatus(status)) {
        plan.ended = true;
        pass("run-active", `the run already ended: ${status}${living.length ? ` (its launcher is still settling: ${describe(living)})` : ""}`);
        break;
      }
      pass("run-active", `status ${status}${living.length ? `; alive: ${describe(living)}` : "; no process of the run lives (it will be marked cancelled)"}`);
      const owner = procs.find((p) => p.role === "engine owner");
      if (plan.dialect === "modern" && owner && isNotTheRunsProcess(owner.fact.identity)) {
        fail("owner-pid", `owner pid ${owner.fact.pid} now belongs to another process (${owner.fact.identity})`, {
          code: "OWNER_PID_REUSED",
          message: `the DB's engine owner pid ${owner.fact.pid} now belongs to another process${owner.fact.cmdline ? ` (${owner.fact.cmdline})` : ""}; the engine's cancel would terminate it`,
          hint: `the run's engine is dead: \`fabrik run resume --id ${run.id}\` continues it (and clears the stale owner)`,
        });
      }
      break;
    }
    case "approve":
    case "deny": {
      const gates = (db.waiting ?? []).filter((n) => n.state === "waiting-approval");
      const chosen = o.node !== undefined ? gates.filter((g) => g.node_id === o.node) : gates;
      if (chosen.length === 0) {
        fail("gate", gates.length ? `waiting: ${gates.map((g) => g.node_id).join(", ")}` : `no gate waits (status ${status})`, {
          code: "NO_WAITING_GATE",
          message: o.node !== undefined ? `node ${o.node} of run ${run.id} is not waiting for an approval${gates.length ? ` (waiting: ${gates.map((g) => g.node_id).join(", ")})` : ""}` : `run ${run.id} has no gate waiting for an approval (status ${status})`,
          hint: `see \`fabrik runs why --id ${run.id}\``,
        });
      } else if (chosen.length > 1) {
        fail("gate", chosen.map((g) => g.node_id).join(", "), { code: "AMBIGUOUS_GATE", message: `several gates of run ${run.id} wait for an approval: ${chosen.map((g) => g.node_id).join(", ")}`, hint: "name one with --node" });
      } else {
        plan.node = chosen[0]!.node_id;
        plan.iteration = chosen[0]!.iteration;
        pass("gate", `${plan.node} waits for an approval`);
      }
      plan.relaunch = !engineAlive;
      break;
    }
    case "signal": {
      if (plan.dialect === "legacy") {
        fail("engine-signals", `engine ${plan.engine_version}`, { code: "ENGINE_HAS_NO_SIGNALS", message: `engine ${plan.engine_version} has no signals (<Signal>/<WaitForEvent> came with later engines)`, hint: null });
      } else if (isTerminalEngineStatus(status)) {
        fail("run-active", `status ${status}`, { code: "RUN_ENDED", message: `run ${run.id} already ended (${status}); nothing waits for a signal`, hint: null });
      } else if (status !== "waiting-event" && !(db.waiting ?? []).some((n) => n.state === "waiting-event")) {
        fail("waiting-event", `status ${status}`, { code: "NOT_WAITING_EVENT", message: `run ${run.id} does not wait for an event (status ${status})`, hint: `see \`fabrik runs why --id ${run.id}\`` });
      } else pass("waiting-event", `status ${status}`);
      plan.relaunch = !engineAlive;
      break;
    }
    case "compact": {
      const limit = o.limitBytes ?? 100 * 1024;
      plan.oversized = { values: db.oversized_values, max_bytes: Math.max(db.max_response_text_bytes ?? 0, db.max_error_json_bytes ?? 0), limit_bytes: limit, db_bytes: (db.size_bytes ?? 0) + (db.wal_size_bytes ?? 0) };
      if (!isTerminalEngineStatus(status)) {
        const live = engineAlive || status === "running" || isParkedEngineStatus(status);
        fail("run-ended", `status ${status}`, {
          code: "RUN_NOT_ENDED",
          message: `run ${run.id} is ${status}; compact works on ended runs only (finished, failed, cancelled)`,
          hint: live && engineAlive ? `stop it first (\`fabrik run cancel --id ${run.id}\`), or wait for it to end` : `an interrupted run is shrunk by \`fabrik run resume --id ${run.id} --fix\``,
        });
      } else pass("run-ended", `status ${status}`);
      if (living.length > 0) fail("processes", `alive: ${describe(living)}`, { code: "PROCESS_ALIVE", message: `a process of run ${run.id} still lives (${describe(living)})`, hint: "wait for it to end (`fabrik runs watch`), then compact" });
      else pass("processes", "no process of the run lives");
      break;
    }
  }
  return finish();
}
