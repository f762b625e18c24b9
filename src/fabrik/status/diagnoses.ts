/**
 * Step 3 of the status authority: diagnoses. Each is a named finding over the facts and the verdict, with a
 * severity, a one-line message and, where there is one, the exact next command. Pure; the list below is the
 * only place diagnoses are made (`docs/status.md` lists the codes; a unit test keeps the two in step).
 */
import { shellQuote } from "../../vm/shell-quote.js";
import { engineDialect, isSupportedEngineVersion } from "../../vm/engine-recipe.js";
import { formatDuration } from "../../core/units.js";
import type { RunFacts, StatusThresholds } from "./facts.js";
import type { Verdict } from "./rules.js";

/** Every diagnosis fabrik can make. */
export const DIAGNOSIS_CODES = [
  "UNREACHABLE",
  "CACHE_SAYS_FINISHED_BUT_RUNNING",
  "CACHE_SAYS_RUNNING_BUT_ENDED",
  "TASK_IN_PROGRESS_NO_ENGINE",
  "ORPHANED_NO_ENGINE",
  "EXITED_WITHOUT_FINISHING",
  "ENGINE_STUCK",
  "HEARTBEAT_WRITER_DIED",
  "LEGACY_NO_ENGINE_HEARTBEAT",
  "RUN_FAILED",
  "RUN_CANCELLED",
  "BLOB_TOO_BIG",
  "OVERSIZED_VALUES",
  "DB_TOO_LARGE",
  "OLD_ENGINE_PINNED",
  "DB_MISSING",
  "DB_UNREADABLE",
  "DB_UNKNOWN_SCHEMA",
  "RUN_NOT_IN_DB",
  "DB_PATH_MOVED",
  "HEARTBEAT_UNREADABLE",
  "EXIT_CODE_UNREADABLE",
  "CONTROL_DIR_MISSING",
  "WAITING",
  "TASK_RUNNING_LONG",
  "PID_REUSED",
] as const;
export type DiagnosisCode = (typeof DIAGNOSIS_CODES)[number];

export interface Diagnosis {
  code: DiagnosisCode;
  severity: "error" | "warning" | "info";
  message: string;
  /** The exact command to run next, or null. */
  next_command: string | null;
}

/** What a diagnosis may need to know about the run besides the facts (a `RunRecord` satisfies it). */
export interface DiagnosisSubject {
  id: number;
  vm: string;
  status: string;
  control_dir: string;
  smithers_run_id: string;
  smithers_db_path: string;
  /** The engine fabrik launched the run with (`--engine` or the config at launch), or null (imported). */
  engine_version: string | null;
}

interface Ctx {
  f: RunFacts;
  v: Verdict;
  run: DiagnosisSubject;
  t: StatusThresholds;
}

type Finding = Omit<Diagnosis, "code" | "severity"> & { severity?: Diagnosis["severity"] };

/** A diagnosis rule: `check` returns the finding (or findings), or null when it does not apply. */
interface DiagnosisRule {
  code: DiagnosisCode;
  severity: Diagnosis["severity"];
  check: (c: Ctx) => Finding | null;
}

const resume = (c: Ctx) => `fabrik run resume --id ${c.run.id}`;
const exited = (f: RunFacts) => (f.exitCode !== null ? ` (launcher recorded exit code ${f.exitCode})` : "");

/**
 * Every next command below must be one that the state suggesting it accepts (a unit table test runs each
 * diagnosis × state through the command's own planner). These say which states accept which command.
 */
/** No process of the run lives (engine and launcher known dead or unknown-but-not-alive): nothing is running or settling. */
const quiet = (f: RunFacts) => f.engineAlive !== true && f.launcherAlive !== true;
/** `run resume` accepts it: orphaned, failed or cancelled, with no process of the run alive. */
const resumable = (c: Ctx) => (c.v.status === "orphaned" || c.v.status === "failed" || c.v.status === "cancelled") && quiet(c.f) && c.f.db === "ok";
/** `run compact` accepts it: the engine recorded the end (done, failed, cancelled) and no process of the run lives. */
const compactable = (c: Ctx) => (c.v.status === "done" || c.v.status === "failed" || c.v.status === "cancelled") && quiet(c.f) && c.f.db === "ok";
/** Resume now, or — while the launcher still settles (writing exit_code) — watch it end first. */
const resumeOrWatch = (c: Ctx) => (c.f.launcherAlive === true ? `fabrik runs watch --vm ${c.run.vm} --run-id ${c.run.id}` : resume(c));

/**
 * The command that removes oversized values in this state (guide Issue 2), or null when none is accepted now:
 * an interrupted run (orphaned) → `run resume --fix`; a failed or cancelled run → `run resume --fix` when the
 * failure itself was the too-big value (`blob`), else `run compact`; a finished run → `run compact`; a live,
 * parked or settling run → nothing (cancel it first, or wait for it to end).
 */
function fixCommand(c: Ctx, kind: "blob" | "size"): string | null {
  if (c.v.status === "orphaned") return resumable(c) ? `${resume(c)} --fix` : null;
  if (kind === "blob" && (c.v.status === "failed" || c.v.status === "cancelled")) return resumable(c) ? `${resume(c)} --fix` : null;
  return compactable(c) ? `fabrik run compact --id ${c.run.id}` : null;
}

/** What to say about a live run whose values are too big: what will work once it ends. */
const whenLive = (c: Ctx) =>
  c.f.engineAlive === true ? `; the run is live: once it ends, \`fabrik run compact --id ${c.run.id}\` shrinks them (or stop it with \`fabrik run cancel --id ${c.run.id}\`, then \`${resume(c)} --fix\`)` : "";

/** The command that answers a parked run, or null: the approval gate's node, a `<Signal>`'s name. */
function waitingCommand(c: Ctx): string | null {
  const w = c.f.waitingNodes;
  const status = c.f.engineRunStatus;
  if (status === "waiting-approval") {
    const gates = w.filter((n) => n.state === "waiting-approval");
    const one = gates.length === 1 ? gates[0]! : undefined;
    return `fabrik run approve --id ${c.run.id}${one ? ` --node ${shellQuote(one.node_id)}` : ""}`;
  }
  if (status === "waiting-event") {
    const events = w.filter((n) => n.state === "waiting-event");
    const one = events.length === 1 ? events[0]! : undefined;
    // <Signal id="x"> waits on the event named x, labelled `signal:x` (the engine's default label).
    const name = one && one.label?.startsWith("signal:") ? one.label.slice("signal:".length) : undefined;
    return name ? `fabrik run signal --id ${c.run.id} ${shellQuote(name)}` : `fabrik runs why --id ${c.run.id}`;
  }
  return null;
}

/** The diagnoses, in the order they are listed. */
export const DIAGNOSIS_RULES: readonly DiagnosisRule[] = [
  {
    code: "DB_MISSING",
    severity: "error",
    check: ({ f, run }) =>
      f.db !== "missing"
        ? null
        : f.engineAlive === true
          ? { severity: "info", message: `the engine has not created its DB yet (${f.dbPath})`, next_command: null }
          : { message: `the Smithers DB ${f.dbPath} does not exist in VM ${run.vm}`, next_command: `fabrik vm shell ${run.vm} -- ls -la ${shellQuote(run.control_dir)}` },
  },
  {
    code: "DB_UNREADABLE",
    severity: "error",
    check: ({ f, run }) =>
      f.db !== "unreadable" ? null : { severity: f.engineAlive ? "warning" : "error", message: `cannot read ${f.dbPath}: ${f.dbError}`, next_command: `fabrik runs show --id ${run.id}` },
  },
  {
    code: "DB_UNKNOWN_SCHEMA",
    severity: "error",
    check: ({ f }) => (f.db !== "unknown-schema" ? null : { message: `${f.dbPath} has no _smithers_runs table`, next_command: null }),
  },
  {
    code: "RUN_NOT_IN_DB",
    severity: "error",
    check: ({ f, v, run }) =>
      f.db !== "no-run" || f.engineAlive === true
        ? null
        : {
            message: `run ${run.smithers_run_id} is not in ${f.dbPath} (${f.runsInDb ?? 0} other runs)${f.exitCode !== null ? `; the engine exited with code ${f.exitCode} before recording it` : ""}`,
            next_command: f.exitCode !== null ? `fabrik run attach --id ${run.id} --no-follow` : `fabrik runs import --vm ${run.vm}`,
          },
  },
  {
    code: "RUN_FAILED",
    severity: "error",
    check: (c) => {
      if (c.v.status !== "failed" || c.f.db !== "ok") return null;
      const lf = c.f.lastFailed;
      const where = lf ? ` at ${lf.node_id}${lf.error ? `: ${lf.error}` : ""}` : c.f.runError ? `: ${c.f.runError}` : "";
      return { message: `the run failed${where}; once the cause is fixed, resume re-runs the failed task and keeps finished work`, next_command: resumeOrWatch(c) };
    },
  },
  {
    code: "RUN_CANCELLED",
    severity: "info",
    check: (c) => (c.v.status !== "cancelled" ? null : { message: "the run was cancelled (SIGTERM/SIGINT or a cancel request)", next_command: resumeOrWatch(c) }),
  },
  {
    code: "WAITING",
    severity: "info",
    check: (c) => {
      if (c.v.rule !== "engine-parked") return null;
      const gate = c.f.waitingNodes[0];
      return { message: `the run is ${c.f.engineRunStatus}${gate ? ` at ${gate.node_id}` : ""}; it continues when its condition is met`, next_command: waitingCommand(c) };
    },
  },
  {
    code: "ENGINE_STUCK",
    severity: "warning",
    check: ({ f, v, run }) =>
      v.status !== "stale"
        ? null
        : {
            message: `engine pid ${f.enginePid} is alive but has not refreshed its heartbeat for ${formatDuration(f.engineHeartbeatAgeMs ?? 0)}: it may be stuck${f.currentTask ? ` in ${f.currentTask.node_id}` : ""} (\`fabrik runs why --id ${run.id}\` shows its attempts); stop it, then resume it`,
            next_command: `fabrik run cancel --id ${run.id}`,
          },
  },
  {
    code: "HEARTBEAT_WRITER_DIED",
    severity: "warning",
    check: ({ f, v, run }) => {
      if (f.engineRunStatus !== "running" || (v.status !== "running" && v.status !== "stale") || f.engineAlive !== true || f.launcherExited) return null;
      if (f.launcherHeartbeatFresh !== false && f.launcherAlive !== false) return null;
      const age = f.launcherHeartbeatAgeMs !== null ? `${formatDuration(f.launcherHeartbeatAgeMs)} old` : "missing";
      return {
        message: `the launcher's heartbeat writer died (heartbeat.json ${age}${f.launcherAlive === false ? ", launcher process gone" : ""}) but the engine is still running; exit_code will not be written when it ends`,
        next_command: `fabrik runs watch --vm ${run.vm} --run-id ${run.id}`,
      };
    },
  },
  {
    code: "TASK_IN_PROGRESS_NO_ENGINE",
    severity: "error",
    check: (c) => {
      const { f, v } = c;
      if (v.status !== "orphaned" || !f.currentTask) return null;
      return v.rule === "running-no-pid-heartbeat-old"
        ? { message: `no sign of the engine for ${formatDuration(f.engineHeartbeatAgeMs ?? 0)}; task ${f.currentTask.node_id} is in-progress`, next_command: resumeOrWatch(c) }
        : { message: `task ${f.currentTask.node_id} is in-progress but no engine process is running${exited(f)}; the run will not continue by itself`, next_command: resumeOrWatch(c) };
    },
  },
  {
    code: "ORPHANED_NO_ENGINE",
    severity: "error",
    check: (c) =>
      c.v.status !== "orphaned" || c.f.currentTask
        ? null
        : { message: c.v.rule === "running-no-pid-heartbeat-old" ? `no sign of the engine for ${formatDuration(c.f.engineHeartbeatAgeMs ?? 0)}` : `the run is marked running but its engine is gone${exited(c.f)}`, next_command: resumeOrWatch(c) },
  },
  {
    code: "EXITED_WITHOUT_FINISHING",
    severity: "error",
    check: ({ f, v, run }) =>
      v.status !== "orphaned" || f.exitCode === null ? null : { message: `the engine exited with code ${f.exitCode} without recording an outcome`, next_command: `fabrik run attach --id ${run.id} --no-follow` },
  },
  {
    code: "LEGACY_NO_ENGINE_HEARTBEAT",
    severity: "info",
    check: ({ f }) =>
      f.schema !== "legacy" || f.engineRunStatus !== "running"
        ? null
        : { message: `legacy engine DB: no engine heartbeat or owner pid; judged by process liveness and heartbeat.json (missing: ${f.missing.join(", ")})`, next_command: null },
  },
  {
    code: "BLOB_TOO_BIG",
    severity: "error",
    check: (c) =>
      !c.f.logBlobTooBig && !(c.f.runError ?? "").includes("string or blob too big")
        ? null
        : { message: `"string or blob too big": an agent response exceeded SQLite's limit${whenLive(c)}`, next_command: fixCommand(c, "blob") },
  },
  {
    code: "OVERSIZED_VALUES",
    severity: "warning",
    check: (c) =>
      !c.f.oversizedValues
        ? null
        : {
            message: `${c.f.oversizedValues} response_text/error_json value(s) over ${Math.round(c.t.rowSizeWarnBytes / 1024)} KB (largest ${c.f.maxValueBytes ?? 0} bytes)${whenLive(c)}`,
            next_command: fixCommand(c, "size"),
          },
  },
  {
    code: "DB_TOO_LARGE",
    severity: "warning",
    check: (c) => {
      const total = (c.f.dbSizeBytes ?? 0) + (c.f.walSizeBytes ?? 0);
      return total <= c.t.dbSizeWarnBytes
        ? null
        : { message: `the DB is ${Math.round(total / 1024 / 1024)} MB (over ${Math.round(c.t.dbSizeWarnBytes / 1024 / 1024)} MB)${whenLive(c)}`, next_command: fixCommand(c, "size") };
    },
  },
  {
    code: "OLD_ENGINE_PINNED",
    severity: "warning",
    check: (c) => {
      const { f, run, t } = c;
      const pin = f.runShEngine;
      if (!pin) return null;
      // The engine fabrik launched the run with is the one chosen on purpose (--engine, or the config at launch).
      const launchedWith = run.engine_version ?? t.configuredEngineVersion;
      if (pin === launchedWith) return null;
      const script = shellQuote(`${run.control_dir}/run.sh`);
      const release = /^\d+\.\d+\.\d+$/.test(pin);
      const target = engineRemedy(c, launchedWith);
      const grep = `fabrik vm shell ${run.vm} -- grep -n smithers ${script}`;
      return release
        ? { message: `the run's launcher pins smithers-orchestrator ${pin}, but fabrik launched the run with ${launchedWith}`, next_command: target ?? grep }
        : { message: `the run's launcher pins a non-release engine (${pin}); fabrik launched the run with ${launchedWith}`, next_command: target ?? grep };
    },
  },
  {
    code: "HEARTBEAT_UNREADABLE",
    severity: "warning",
    check: ({ f }) => (f.heartbeatError && f.controlDirExists && f.heartbeatError !== "missing" ? { message: `heartbeat.json is unusable (${f.heartbeatError})`, next_command: null } : null),
  },
  {
    code: "EXIT_CODE_UNREADABLE",
    severity: "warning",
    check: ({ f }) => (f.exitCodeGarbage ? { message: "exit_code exists but is not an integer", next_command: null } : null),
  },
  {
    code: "CONTROL_DIR_MISSING",
    severity: "warning",
    check: ({ f, run }) => (f.controlDirExists === false && run.control_dir ? { message: `control dir ${run.control_dir} does not exist in VM ${run.vm}`, next_command: null } : null),
  },
  {
    code: "DB_PATH_MOVED",
    severity: "info",
    check: ({ f, run }) =>
      f.db !== "missing" && f.dbPath !== null && f.dbPath !== run.smithers_db_path
        ? { message: `the run's DB is at ${f.dbPath} (the workflow ignored SMITHERS_DB_PATH); recorded`, next_command: null }
        : null,
  },
  {
    code: "TASK_RUNNING_LONG",
    severity: "warning",
    check: ({ f, v, run, t }) =>
      (v.status === "running" || v.status === "stale") && f.engineAlive === true && f.currentTask && f.currentTaskAgeMs !== null && f.currentTaskAgeMs > t.taskRunningLongMs
        ? {
            message: `task ${f.currentTask.node_id} (attempt ${f.currentTask.attempt ?? "?"}) has been in progress for ${formatDuration(f.currentTaskAgeMs)} (over ${formatDuration(t.taskRunningLongMs)}) while the engine lives`,
            next_command: `fabrik runs why --id ${run.id}`,
          }
        : null,
  },
  {
    code: "PID_REUSED",
    severity: "warning",
    check: (c) => {
      const r = c.f.reusedPids;
      if (r.length === 0) return null;
      const what = r.map((p) => `${p.pid} (${p.source}, now ${p.cmdline ? `\`${p.cmdline.slice(0, 60)}\`` : "another process"}: ${p.identity})`).join(", ");
      return {
        message: `pid ${what} belongs to another process, not the run's: the run's process with that pid is dead; fabrik never signals it`,
        next_command: c.v.status === "orphaned" ? resumeOrWatch(c) : null,
      };
    },
  },
];

/**
 * `run resume --id N --engine X` when the run can be resumed now and X speaks the dialect of the run's DB (across
 * dialects the resume refuses), else null.
 */
function engineRemedy(c: Ctx, target: string): string | null {
  if (!resumable(c) || !isSupportedEngineVersion(target)) return null;
  const dbDialect = c.f.schema === "modern" || c.f.schema === "legacy" ? c.f.schema : null;
  return dbDialect === engineDialect(target) ? `${resume(c)} --engine ${target}` : null;
}

/** Every diagnosis that applies, in {@link DIAGNOSIS_RULES} order. Pure. */
export function diagnose(f: RunFacts, v: Verdict, run: DiagnosisSubject, t: StatusThresholds): Diagnosis[] {
  const out: Diagnosis[] = [];
  const c: Ctx = { f, v, run, t };
  for (const r of DIAGNOSIS_RULES) {
    const x = r.check(c);
    if (x) out.push({ code: r.code, severity: x.severity ?? r.severity, message: x.message, next_command: x.next_command });
  }
  return out;
}
