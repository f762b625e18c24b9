/**
 * Every suggested next command is accepted in the state that suggests it. A table of run states (× overlays: oversized
 * values, "string or blob too big" in the log, a DB over the size threshold, an old engine pin, a reused pid) goes
 * through the status authority; each diagnosis's `next_command` is then run through the command's OWN planner, fed the
 * same observation: `run resume` → planResume, `run compact|cancel|approve|deny|signal` → planControl. Read-only
 * commands (`runs why|show|watch`, `run attach`, `vm shell|list`, `runs import`) are accepted in any state; their
 * words and flags must exist in the command tree.
 *
 * The known failures this pins: `--fix` suggested for a finished run (refused: RUN_FINISHED), `DB_TOO_LARGE`
 * suggesting `resume --fix` on a live run, `ENGINE_STUCK` suggesting only `attach`, a WAITING run with no command.
 */
import { describe, it, expect } from "vitest";
import { parse as shellParse } from "shell-quote";
import { deriveRunState, type StatusThresholds } from "../../fabrik/status/derive.js";
import { DIAGNOSIS_CODES, type Diagnosis } from "../../fabrik/status/diagnoses.js";
import { planResume } from "../../resume/plan.js";
import { planControl, type ControlAction } from "../../resume/control-plan.js";
import { COMMAND_TREE } from "../../fabrik/commands/index.js";
import type { RunObservation } from "../../vm/probe.js";
import type { NodeFact, PidFact } from "../../vm/probe-schema.js";
import type { RunRecord } from "../../fabrik/registry.js";
import { HOME, NOW, SIX, input, node, nodeList, observe, pid, runRecord, type Facts } from "../helpers/resume-plan-fixtures.js";

const T: StatusThresholds = {
  engineHeartbeatStaleMs: 30_000,
  launcherHeartbeatStaleMs: 30_000,
  dbSizeWarnBytes: 100 * 1024 * 1024,
  rowSizeWarnBytes: 100 * 1024,
  configuredEngineVersion: "0.32.0",
  taskRunningLongMs: 2 * 3_600_000,
};

const alive = (p: number): PidFact => pid(p, true);
const dead = (p: number): PidFact => pid(p, false);
const reused = (p: number): PidFact => ({ pid: p, alive: false, state: "S", cmdline: "sleep 600", identity: "reused" });

interface State {
  name: string;
  facts: Facts;
  run?: Partial<RunRecord>;
  /** Extra changes to the probe result (waiting nodes, launcher heartbeat). */
  tweak?: (o: Extract<RunObservation, { kind: "live" }>) => void;
}

const running: Facts = { heartbeatAgeMs: 1_000, owner: alive(101), engine: alive(101), child: alive(101), launcher: alive(100) };
const gateNodes = (state: string, id: string, label: string | null): NodeFact[] => [node("build", "finished", 0), node(id, state, 1, { last_attempt: null, started_at_ms: null, label }), node("ship", "pending", 2)];
const launcherBeats = (o: Extract<RunObservation, { kind: "live" }>) => {
  o.result.control!.heartbeat = { v: 1, ts_ms: NOW - 1_000, seq: 3, phase: "running", host_run_id: 113, smithers_run_id: "fabrik-113", launcher_pid: 100, child_pid: 101, engine_pid: 101, engine_version: "0.32.0", interval_s: 10, exit_code: null, launch_id: null };
};
const waiting = (o: Extract<RunObservation, { kind: "live" }>) => {
  o.result.db!.waiting = (o.result.db!.nodes ?? []).filter((n) => n.state.startsWith("waiting-"));
};

const STATES: State[] = [
  { name: "0.32 running", facts: running, tweak: launcherBeats },
  { name: "0.32 running, task in progress 3 h", facts: { ...running, nodes: nodeList(SIX, ["finished", "finished", "in-progress"]).map((n) => (n.state === "in-progress" ? { ...n, started_at_ms: NOW - 3 * 3_600_000 } : n)) }, tweak: launcherBeats },
  { name: "0.32 stale (engine alive, no heartbeat)", facts: { ...running, heartbeatAgeMs: 600_000 } },
  { name: "0.32 orphaned (killed)", facts: {} },
  { name: "0.32 orphaned, launcher still settling", facts: { launcher: alive(100) } },
  { name: "0.32 orphaned, engine.pid reused", facts: { engine: reused(101), child: reused(101), owner: reused(101) } },
  { name: "0.32 failed", facts: { status: "failed", nodes: nodeList(SIX, ["finished", "finished", "failed"]) } },
  { name: "0.32 failed, launcher settling", facts: { status: "failed", nodes: nodeList(SIX, ["finished", "finished", "failed"]), launcher: alive(100) } },
  { name: "0.32 cancelled", facts: { status: "cancelled", nodes: nodeList(SIX, ["finished", "finished", "cancelled"]) } },
  { name: "0.32 done", facts: { status: "finished", nodes: nodeList(SIX, SIX.map(() => "finished")) } },
  { name: "0.32 done, launcher settling", facts: { status: "finished", nodes: nodeList(SIX, SIX.map(() => "finished")), launcher: alive(100) } },
  { name: "0.32 waiting-approval", facts: { status: "waiting-approval", nodes: gateNodes("waiting-approval", "deploy", "Deploy?") }, tweak: waiting },
  { name: "0.32 waiting-event (<Signal id=go>)", facts: { status: "waiting-event", nodes: gateNodes("waiting-event", "go", "signal:go") }, tweak: waiting },
  { name: "0.32 waiting-event (<WaitForEvent>)", facts: { status: "waiting-event", nodes: gateNodes("waiting-event", "wait-deploy", null) }, tweak: waiting },
  { name: "0.32 waiting-approval, engine still alive", facts: { ...running, status: "waiting-approval", nodes: gateNodes("waiting-approval", "deploy", null) }, tweak: waiting },
  { name: "0.5 orphaned", facts: { schema: "legacy", owner: null }, run: { engine_version: "0.5.0" } },
  { name: "0.5 running", facts: { schema: "legacy", owner: null, engine: alive(101), child: alive(101), launcher: alive(100) }, run: { engine_version: "0.5.0" }, tweak: launcherBeats },
  { name: "0.5 failed", facts: { schema: "legacy", owner: null, status: "failed", nodes: nodeList(SIX, ["finished", "finished", "failed"]) }, run: { engine_version: "0.5.0" } },
  { name: "0.5 waiting-approval", facts: { schema: "legacy", owner: null, status: "waiting-approval", nodes: gateNodes("waiting-approval", "deploy", null) }, run: { engine_version: "0.5.0" }, tweak: waiting },
  { name: "DB missing", facts: { dbExists: false } },
  { name: "run not in the DB", facts: { noRun: true } },
];

interface Overlay {
  name: string;
  apply: (o: Extract<RunObservation, { kind: "live" }>) => void;
}
const OVERLAYS: Overlay[] = [
  { name: "", apply: () => {} },
  {
    name: "+ oversized values",
    apply: (o) => {
      if (!o.result.db) return;
      o.result.db.oversized_values = 3;
      o.result.db.max_response_text_bytes = 500_000;
    },
  },
  { name: "+ blob too big in the log", apply: (o) => void (o.result.control!.log_blob_too_big = true) },
  { name: "+ DB of 200 MB", apply: (o) => o.result.db && (o.result.db.size_bytes = 200 * 1024 * 1024) },
  { name: "+ run.sh pins 0.31.0", apply: (o) => void (o.result.control!.run_sh_engine = "0.31.0") },
  { name: "+ run.sh pins a git ref", apply: (o) => void (o.result.control!.run_sh_engine = "github:evmts/smithers#ea5ece3") },
];

/** Does the command's planner accept `cmd` for this run as observed? Returns null when accepted, else why not. */
function acceptance(cmd: string, run: RunRecord, obs: RunObservation): string | null {
  const words = shellParse(cmd).map(String);
  expect(words[0]).toBe("fabrik");
  const [group, verb] = [words[1]!, words[2]!];
  const spec = COMMAND_TREE.find((g) => g.command === group)?.commands.find((c) => c.command.split(" ")[0] === verb);
  if (!spec) return `no command \`fabrik ${group} ${verb}\``;
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  const args = words.slice(3);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a.startsWith("--")) {
      const name = a.slice(2);
      if (!(name in spec.options)) return `\`${cmd}\`: --${name} is not an option of ${group} ${verb}`;
      const isBool = (spec.options as Record<string, { type?: string }>)[name]!.type === "boolean";
      flags.set(name, isBool ? true : args[++i]!);
    } else positionals.push(a);
  }
  const id = Number(flags.get("id") ?? NaN);
  if (group === "run" && verb !== "attach") {
    expect(id, cmd).toBe(run.id);
    if (verb === "resume") {
      const p = planResume({ ...input({}, { run }), observation: obs, options: { force: false, fix: flags.has("fix"), fixLimitBytes: 100 * 1024, engineVersion: flags.get("engine") as string | undefined } });
      return p.allowed ? null : `resume refused: ${p.reasons.map((r) => r.code).join(", ")}`;
    }
    const p = planControl(verb as ControlAction, run, obs, { node: flags.get("node") as string | undefined, signalName: positionals[0], guestHome: HOME, now: NOW });
    return p.allowed ? null : `${verb} ${p.ended ? "says the run already ended" : `refused: ${p.reasons.map((r) => r.code).join(", ")}`}`;
  }
  return null; // read-only commands are accepted in any state
}

const suggestions: { state: string; code: string; cmd: string }[] = [];

describe("every suggested next command is accepted in the state that suggests it", () => {
  for (const s of STATES) {
    for (const ov of OVERLAYS) {
      it(`${s.name} ${ov.name}`.trim(), () => {
        const run = runRecord(s.run ?? {});
        const obs = observe(s.facts) as Extract<RunObservation, { kind: "live" }>;
        s.tweak?.(obs);
        ov.apply(obs);
        const d = deriveRunState(run, obs, NOW, T);
        const problems: string[] = [];
        for (const x of d.diagnoses as Diagnosis[]) {
          if (!x.next_command) continue;
          suggestions.push({ state: `${s.name} ${ov.name}`, code: x.code, cmd: x.next_command });
          const why = acceptance(x.next_command, run, obs);
          if (why) problems.push(`${x.code} → \`${x.next_command}\`: ${why} (status ${d.effective_status})`);
        }
        expect(problems, `${s.name} ${ov.name}: ${d.effective_status}`).toEqual([]);
      });
    }
  }

  it("the table exercises the diagnoses that suggest a change, and the known failures are gone", () => {
    const codes = new Set(suggestions.map((x) => x.code));
    for (const c of ["TASK_IN_PROGRESS_NO_ENGINE", "RUN_FAILED", "RUN_CANCELLED", "ENGINE_STUCK", "WAITING", "BLOB_TOO_BIG", "OVERSIZED_VALUES", "DB_TOO_LARGE", "OLD_ENGINE_PINNED", "TASK_RUNNING_LONG", "PID_REUSED"] as const) {
      expect(DIAGNOSIS_CODES).toContain(c);
      expect(codes, c).toContain(c);
    }
    const of = (state: string, code: string) => suggestions.filter((x) => x.state.startsWith(state) && x.code === code).map((x) => x.cmd);
    // A finished run with oversized values: compact, never resume --fix.
    expect(of("0.32 done + oversized values", "OVERSIZED_VALUES")).toEqual(["fabrik run compact --id 113"]);
    expect(of("0.32 done + blob too big in the log", "BLOB_TOO_BIG")).toEqual(["fabrik run compact --id 113"]);
    // A live run with a big DB: nothing that would be refused.
    expect(of("0.32 running + DB of 200 MB", "DB_TOO_LARGE")).toEqual([]);
    expect(of("0.32 orphaned (killed) + DB of 200 MB", "DB_TOO_LARGE")).toEqual(["fabrik run resume --id 113 --fix"]);
    // A stuck engine: cancel it; a gate: approve it; a signal: send it.
    expect(of("0.32 stale", "ENGINE_STUCK")).toContain("fabrik run cancel --id 113");
    expect(of("0.32 waiting-approval", "WAITING")).toContain("fabrik run approve --id 113 --node deploy");
    expect(of("0.32 waiting-event (<Signal id=go>)", "WAITING")).toContain("fabrik run signal --id 113 go");
    expect(of("0.32 running, task in progress 3 h", "TASK_RUNNING_LONG")).toContain("fabrik runs why --id 113");
    // An old pin on a run that can be resumed: resume with the engine the run was launched with.
    expect(of("0.32 orphaned (killed) + run.sh pins 0.31.0", "OLD_ENGINE_PINNED")).toEqual(["fabrik run resume --id 113 --engine 0.32.0"]);
  });

  it("a run launched on purpose with 0.5.0 is not warned about its pin", () => {
    const run = runRecord({ engine_version: "0.5.0" });
    const obs = observe({ schema: "legacy", owner: null }) as Extract<RunObservation, { kind: "live" }>;
    obs.result.control!.run_sh_engine = "0.5.0";
    expect(deriveRunState(run, obs, NOW, T).diagnoses.map((x) => x.code)).not.toContain("OLD_ENGINE_PINNED");
  });

  it("resume --engine across dialects is refused with the reason; within the dialect the dry-run shows the old and the new pin", () => {
    const run = runRecord();
    const cross = planResume({ ...input({}, { run }), options: { force: false, fix: false, fixLimitBytes: 102_400, engineVersion: "0.5.0" } });
    expect(cross.allowed).toBe(false);
    expect(cross.reasons.map((r) => r.code)).toContain("ENGINE_DIALECT_CHANGE");
    const obs = observe({}) as Extract<RunObservation, { kind: "live" }>;
    obs.result.control!.run_sh_engine = "0.31.0";
    const same = planResume({ ...input({}, { run }), observation: obs, options: { force: false, fix: false, fixLimitBytes: 102_400, engineVersion: "0.32.0" } });
    expect(same.allowed).toBe(true);
    expect(same.engine_pin).toEqual({ before: "0.31.0", after: "0.32.0", changed: true });
    expect(same.script).toContain("ENGINE_VERSION=0.32.0");
  });
});
