/**
 * The main job end to end in a Lima guest whose user is NOT root, as on real Lima (the stand-in models Lima's guest
 * user: the host user's name or `lima`, passwordless sudo, Debian's PATH without sbin, a guest-only /tmp; issue 12,
 * point 5): launch a 6-task run, crash its engine in task 3, ask `runs show` what happened, resume it, and watch it
 * finish. Along the way it checks what a non-root guest changes: who owns the files fabrik writes and with which
 * modes, the engine installed into the user's home by npm and bun, pid visibility for the kill and the liveness
 * checks, and the resume's flock.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { fabrik, guestUserOf, json, startFabrik, waitEngineExit, waitFor, type GuestUser } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { workerFleet, type Fleet } from "../helpers/worker-fleet.js";

const skip = missingPrereqs(...STANDIN);
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");

interface Launched {
  id: number;
  control_dir: string;
  db_path: string;
  engine_version: string;
}
interface Shown {
  effective_status: string;
  engine_alive: boolean | null;
  engine_heartbeat_age_ms: number | null;
  current_task: string | null;
  progress: { finished: number; total: number };
  resume_count: number;
  diagnoses: { code: string; next_command: string | null }[];
}

describe.skipIf(skip)(titled("the main job with a non-root guest: launch, crash, show, resume, watch", skip), () => {
  let t: Fleet;
  let VM = "";
  let user: GuestUser;
  const gate = new Gate();
  /** `fabrik vm shell VM -- bash -c SCRIPT x ARGS…`: stdout, or a failure that shows stderr. */
  const guest = async (script: string, ...args: string[]): Promise<string> => {
    const r = await fabrik(t, ["vm", "shell", VM, "--", "bash", "-c", script, "main-job", ...args]);
    expect(r.code, `${script}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const show = async (id: number): Promise<Shown> => json<Shown>(await fabrik(t, ["runs", "show", "--id", String(id), "--json"]));

  beforeAll(async () => {
    // A short engine-heartbeat threshold, so a crashed 0.32 run is resumable seconds after the crash.
    t = await workerFleet({ thresholds: { engine_heartbeat_stale_ms: 2000 } });
    VM = t.vm;
    user = await guestUserOf(t, VM);
  }, 600_000);
  afterAll(() => {
    gate.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });

  it("runs, crashes, is diagnosed, resumes and finishes — all as the guest user", async () => {
    // The guest user is Lima's: not root, with passwordless sudo, Debian's PATH for users (no sbin).
    expect(user.uid).not.toBe(0);
    expect(await guest('id -u; id -un; echo "$HOME"; sudo -n id -u; echo "$PATH"')).toBe(
      `${user.uid}\n${user.name}\n${user.home}\n0\n/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games\n`,
    );

    // launch
    const r = await fabrik(t, ["run", "--vm", VM, "--workflow", SEQ, "--input", JSON.stringify({ tasks: 6, sleepMs: 50, ...gate.input }), "--json"], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    const run = json<Launched>(r);
    expect(run.control_dir).toBe(`${user.home}/work/${VM}/.runs/${run.id}-seq`);
    gate.release(1, 2);
    await gate.at(3);

    // Files: the run's are the user's and private (umask 077 in the launcher); the engine was installed by npm and
    // bun into the user's home, as the user.
    const engineDir = `${user.home}/.fabrik/engines/${run.engine_version}`;
    const modes = await guest('cd "$1" && stat -c "%U %a %n" . input.json run.sh .smithers "$2" "$3" "$3/node_modules/.bin/smithers" "$3/.runtime/node_modules/.bin/bun"', run.control_dir, run.db_path, engineDir);
    expect(modes.trim().split("\n")).toEqual([
      `${user.name} 700 .`,
      `${user.name} 600 input.json`,
      `${user.name} 700 run.sh`,
      `${user.name} 700 .smithers`,
      `${user.name} 600 ${run.db_path}`,
      expect.stringMatching(new RegExp(`^${user.name} \\d+ ${engineDir.replace(/[.]/g, "\\.")}$`)),
      expect.stringMatching(new RegExp(`^${user.name} `)),
      expect.stringMatching(new RegExp(`^${user.name} `)),
    ]);

    // crash: the user sees and kills its own engine (pid visibility inside the guest)
    await guest('cd "$1" && for i in $(seq 200); do [ -s engine.pid ] && break; sleep 0.05; done; kill -9 "$(cat engine.pid)"', run.control_dir);
    await waitEngineExit(t, VM, run.control_dir, 0, 60_000);

    // show: the VM is the source of truth — orphaned in step-3, with the next command
    const crashed = await waitFor(
      async () => {
        const v = await show(run.id);
        return v.effective_status === "orphaned" ? v : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: `run ${run.id} to be orphaned` },
    );
    expect(crashed).toMatchObject({ engine_alive: false, current_task: "step-3", progress: { finished: 2, total: 6 } });
    const next = crashed.diagnoses.find((d) => d.code === "TASK_IN_PROGRESS_NO_ENGINE");
    expect(next?.next_command).toBe(`fabrik run resume --id ${run.id}`);

    // resume wants the engine's own heartbeat stale too (over the 2 s threshold), as the engine does (RUN_STILL_RUNNING)
    await waitFor(async () => ((await show(run.id)).engine_heartbeat_age_ms ?? 0) > 2000, { timeoutMs: 60_000, intervalMs: 250, what: "the engine heartbeat to go stale" });

    // resume: the guest resume helper takes its flock and backs the DB up, as the user
    gate.forget(3);
    const resumed = await fabrik(t, ["run", "resume", "--id", String(run.id), "--yes", "--json"], { timeoutMs: 300_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(json<{ applied: boolean; plan: { mode: string } }>(resumed)).toMatchObject({ applied: true, plan: { mode: "continue-interrupted" } });
    await gate.at(3); // the SAME run is back in step-3
    expect(await guest('cd "$1" && stat -c %U resume.lock backups && ls backups | wc -l', run.control_dir)).toMatch(new RegExp(`^${user.name}\\n${user.name}\\n[1-9]`));

    // watch the resumed run to its end
    const w = startFabrik(t, ["runs", "watch", "--vm", VM, "--run-id", String(run.id), "--interval", "0.5", "--exit-status"], { timeoutMs: 240_000 });
    await waitFor(() => new RegExp(`run ${run.id} step-3 in-progress`).test(w.out()), { timeoutMs: 60_000, intervalMs: 50, what: "watch to show step-3 running", describe: () => w.out() + w.err() });
    gate.releaseThrough(6);
    expect(await w.exited, w.out() + w.err()).toBe(0);
    expect(w.out()).toMatch(new RegExp(`run ${run.id} step-6 finished`));
    const done = await show(run.id);
    expect(done).toMatchObject({ effective_status: "done", resume_count: 1, progress: { finished: 6, total: 6 } });
    expect((await guest('cat "$1/exit_code"', run.control_dir)).trim()).toBe("0");
  });
});
