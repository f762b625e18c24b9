/**
 * Reliability: what happens to a run's secrets, and to a run whose engine or resume is cut short
 * (docs/reliability.md, "Runs"). Real engines (0.32.0 and 0.5.0) in the worker's stand-in Lima VM, the built CLI.
 *
 * - defect 2: a secret in `--input` never appears on any process's command line (host and VM), and the control
 *   dir, input.json, the DB and its -wal and the log are private to the guest user (0700/0600) — both engines;
 * - defect 5: an engine that exits before it writes its run row (a workflow that throws while loading) is
 *   `failed`, `runs watch --exit-status` says so with 8, and the cache follows;
 * - defect 8: `run resume` SIGKILLed after the VM applied the resume: the next live look records what the killed
 *   command could not (resume_count, launcher_pid, the `resumed` event);
 * - disk full during the backup (a 16 KiB tmpfs on the backups folder, inside the VM only): the resume fails with
 *   one line, no partial copy, "Nothing was changed" — and it is true (DB hashed); the next resume works.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { FABRIK_BIN, fabrik, json, waitFor, type CliResult } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { dbDumpHash, guestHomeOf, hostPathIn, registryDump, waitEngineExitIn } from "../helpers/reliability.js";
import { workerFleet, type Fleet } from "../helpers/worker-fleet.js";

const skip = missingPrereqs(...STANDIN, "nsenter");
const SEQ = { "0.32.0": path.join(REPO_ROOT, "examples/workflows/seq.tsx"), "0.5.0": path.join(REPO_ROOT, "examples/workflows-legacy/seq.tsx") };

interface Launched {
  id: number;
  control_dir: string;
  db_path: string;
  smithers_run_id: string;
  engine_version: string;
}

/** Every process's command line on this host (the stand-in VMs' processes included: their pid namespaces are children of ours). */
function allCommandLines(): { pid: string; cmdline: string }[] {
  const out: { pid: string; cmdline: string }[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      out.push({ pid: d, cmdline: fs.readFileSync(`/proc/${d}/cmdline`, "latin1").replace(/\0/g, " ") });
    } catch {
      /* gone */
    }
  }
  return out;
}

describe.skipIf(skip)(titled("reliability: secrets, engines and resumes cut short", skip), () => {
  let t: Fleet;
  let VM = "";
  let home = "";
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  const cli = (args: string[], timeoutMs = 180_000): Promise<CliResult> => fabrik(t, args, { timeoutMs });
  const launch = async (input: object, engine: keyof typeof SEQ = "0.32.0", workflow: string = SEQ[engine]): Promise<Launched> => {
    const r = await cli(["run", "--vm", VM, "--engine", engine, "--workflow", workflow, "--input", JSON.stringify(input), "--json"], 600_000);
    expect(r.code, r.stderr).toBe(0);
    return json<Launched>(r);
  };
  const host = (p: string) => hostPathIn(t, VM, home, p);
  const show = async (id: number) => json<{ effective_status: string; status: string; resume_count: number }>(await cli(["runs", "show", "--id", String(id), "--json"]));
  /** In the VM: kill the run's launcher group and engine (a crash in the middle of a task). */
  const killRun = async (r: Launched) => {
    const sh = `cd "$1" || exit 1; kill -9 -- -$(cat launcher.pid) 2>/dev/null; kill -9 $(cat launcher.pid) $(cat smithers.pid) $(cat engine.pid 2>/dev/null) 2>/dev/null; echo done`;
    const k = await cli(["vm", "shell", VM, "--", "bash", "-c", sh, "kill-run", r.control_dir]);
    expect(k.code, k.stderr).toBe(0);
  };

  beforeAll(async () => {
    t = await workerFleet({ thresholds: { engine_heartbeat_stale_ms: 2000 } });
    VM = t.vm;
    home = await guestHomeOf(t, VM);
  }, 600_000);
  afterAll(() => {
    for (const g of gates) g.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });

  for (const engine of ["0.32.0", "0.5.0"] as const) {
    it(`defect 2 (${engine}): a secret input is on no command line; the run's files are private to the guest user`, async () => {
      const secret = `SECRET-${randomBytes(12).toString("hex")}`;
      const g = gate();
      const r = await launch({ tasks: 2, sleepMs: 50, ...g.input, token: secret }, engine);
      await g.at(1); // the engine is running task 1 with the input loaded
      const leaks = allCommandLines().filter((p) => p.cmdline.includes(secret));
      expect(leaks, JSON.stringify(leaks)).toEqual([]);
      const db = r.db_path;
      const stat = await cli(["vm", "shell", VM, "--", "stat", "-c", "%a %F %n", r.control_dir, `${r.control_dir}/input.json`, `${r.control_dir}/reports/smithers.log`, db, `${db}-wal`, path.dirname(db)]);
      expect(stat.code, stat.stderr).toBe(0);
      const modes = Object.fromEntries(stat.stdout.trim().split("\n").map((l) => [l.split(" ").at(-1)!, l.split(" ")[0]!]));
      expect(modes).toEqual({
        [r.control_dir]: "700",
        [`${r.control_dir}/input.json`]: "600",
        [`${r.control_dir}/reports/smithers.log`]: "600",
        [db]: "600",
        [`${db}-wal`]: "600",
        [path.dirname(db)]: "700",
      });
      g.releaseThrough(2);
      await waitEngineExitIn(host(`${r.control_dir}/reports/smithers.log`));
      // The run used the secret input (it ran to the end with it), and it still is on no command line.
      expect(allCommandLines().filter((p) => p.cmdline.includes(secret))).toEqual([]);
    }, 600_000);
  }

  // The engine creates its DB, then refuses the input its workflow's schema rejects, and exits 1 before the run
  // row exists (as with --input '[1,2]' before fabrik refused non-objects); a workflow that throws while loading
  // exits before even creating the DB.
  for (const [what, input, workflow] of [
    ["an input the workflow's schema rejects", { tasks: "six" }, undefined],
    ["a workflow that throws while loading", { tasks: 1 }, "broken"],
  ] as const) {
    it(`defect 5: an engine that exits before writing its run row is failed (${what}) — watch --exit-status 8, runs show, the cache`, async () => {
      let wf: string | undefined;
      if (workflow === "broken") {
        wf = path.join(t.tmp, "broken-at-load.tsx");
        fs.writeFileSync(wf, `throw new Error("this workflow fails while loading");\n`);
      }
      const r = await launch(input, "0.32.0", wf);
      await waitEngineExitIn(host(`${r.control_dir}/reports/smithers.log`));
      const watch = await cli(["runs", "watch", "--vm", VM, "--run-id", String(r.id), "--interval", "0.5", "--exit-status", "--timeout", "30"]);
      expect(watch.code, watch.stdout + watch.stderr).toBe(8);
      expect(watch.stdout.trim().split("\n").at(-1)).toMatch(new RegExp(`^run ${r.id} finished: failed \\(exit [1-9]\\d*\\)$`));
      const v = await show(r.id);
      expect(v.effective_status).toBe("failed");
      expect(v.status).toBe("failed"); // the cache followed
      const cached = json<{ status: string }>(await cli(["runs", "show", "--id", String(r.id), "--json", "--no-live"]));
      expect(cached.status).toBe("failed");
    }, 300_000);
  }

  it("defect 8: run resume SIGKILLed after the VM applied it — the next live look records the resume", async () => {
    const g = gate();
    const r = await launch({ tasks: 4, sleepMs: 50, ...g.input });
    g.releaseThrough(2);
    await g.at(3);
    await killRun(r);
    await waitFor(async () => (await show(r.id)).effective_status === "orphaned", { timeoutMs: 60_000, intervalMs: 500, what: "the killed run to be orphaned" });
    g.releaseThrough(4);

    // Start the resume; freeze fabrik as soon as its apply call is in flight, let the VM finish, then SIGKILL fabrik.
    const child = spawn(process.execPath, [FABRIK_BIN, "run", "resume", "--id", String(r.id), "--yes"], { env: t.env, cwd: REPO_ROOT, stdio: ["ignore", "ignore", "ignore"] });
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
    // The VM's side of the apply: the wrapper execs `flock … <control dir>/resume.lock <bun> resume.js apply`, which
    // lives until the apply ends. It runs under the VM's sshd, not under fabrik (no parent link to the test's child).
    const applying = () => allCommandLines().filter((p) => p.cmdline.includes(`${r.control_dir}/resume.lock`) && / apply\s*$/.test(p.cmdline));
    const calls = await waitFor(() => (applying().length > 0 ? applying() : undefined), { timeoutMs: 120_000, intervalMs: 10, what: "fabrik to call the VM's resume (apply)" });
    child.kill("SIGSTOP");
    // The VM applies the resume and answers; nobody reads the answer.
    await waitFor(() => calls.every((c) => !alive(c.pid)), { timeoutMs: 120_000, intervalMs: 50, what: "the VM's resume call to end" });
    const before = (await registryDump(t.fabrikHome)).runs!.find((x) => (x as { id: number }).id === r.id) as { resume_count: number };
    expect(before.resume_count).toBe(0); // the VM applied it; the frozen command never recorded it
    child.kill("SIGKILL");
    await exited;

    // The next live look settles the journal from the heartbeat's launch id.
    let seen: unknown;
    await waitFor(async () => ((seen = await show(r.id)) as { resume_count: number }).resume_count === 1, { timeoutMs: 60_000, intervalMs: 500, what: "runs show to record the resume", describe: () => JSON.stringify(seen) });
    const dump = await registryDump(t.fabrikHome);
    const row = dump.runs!.find((x) => (x as { id: number }).id === r.id) as { resume_count: number; launcher_pid: number | null; pending_json: string | null };
    expect(row.resume_count).toBe(1);
    expect(row.launcher_pid).toBeGreaterThan(0);
    expect(row.pending_json).toBeNull();
    const events = (dump.run_events as { run_id: number; kind: string; detail_json: string }[]).filter((e) => e.run_id === r.id).map((e) => e.kind);
    expect(events.filter((k) => k === "resumed")).toHaveLength(1);
    await waitEngineExitIn(host(`${r.control_dir}/reports/smithers.log`)); // the killed engine logged no exit: this is the resumed one
    await waitFor(async () => (await show(r.id)).effective_status === "done", { timeoutMs: 60_000, intervalMs: 500, what: "the resumed run to finish" });
  }, 600_000);

  it("disk full during the backup: one line, nothing changed (hashed), no partial copy; the next resume works", async () => {
    const g = gate();
    const r = await launch({ tasks: 3, sleepMs: 50, ...g.input });
    g.release(1);
    await g.at(2);
    await killRun(r);
    await waitFor(async () => (await show(r.id)).effective_status === "orphaned", { timeoutMs: 60_000, intervalMs: 500, what: "the killed run to be orphaned" });
    g.releaseThrough(3);
    // A 16 KiB file system on the backups folder, in the VM's mount namespace only.
    const backups = `${r.control_dir}/backups`;
    expect((await cli(["vm", "shell", VM, "--", "mkdir", "-p", backups])).code).toBe(0);
    const init = fs.readFileSync(path.join(t.limaHome, VM, "qemu.pid"), "utf8").trim();
    const mnt = await run("nsenter", ["-t", init, "-m", "--", "mount", "-t", "tmpfs", "-o", "size=16k,mode=0777", "fabrik-full", backups]);
    expect(mnt.code, mnt.stderr).toBe(0);
    try {
      // The data, not the files: the resume's connection folds the WAL into the main file when it closes.
      const bun = `${home}/.fabrik/engines/${r.engine_version}/.runtime/node_modules/.bin/bun`;
      const dbData = () => dbDumpHash(t, VM, bun, r.db_path);
      const before = await dbData();
      expect(before.rows).toBeGreaterThan(3);
      const reg = await registryDump(t.fabrikHome);
      const res = await cli(["run", "resume", "--id", String(r.id), "--yes"]);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr.trim().split("\n"), res.stderr).toHaveLength(1);
      expect(res.stderr).toMatch(/failed at backup: cannot back the DB up \(.*(full|FULL).*\); the partial copy was removed\. Nothing was changed\./);
      expect(await dbData()).toEqual(before);
      const ls = await cli(["vm", "shell", VM, "--", "ls", "-A", backups]);
      expect(ls.stdout.trim()).toBe(""); // no partial copy, no journal
      const after = await registryDump(t.fabrikHome);
      const row = (d: typeof reg) => d.runs!.find((x) => (x as { id: number }).id === r.id) as { resume_count: number; pending_json: string | null; status: string };
      expect(row(after).resume_count).toBe(row(reg).resume_count);
      expect(row(after).pending_json).toBeNull();
    } finally {
      await run("nsenter", ["-t", init, "-m", "--", "umount", backups]);
    }
    const ok = await cli(["run", "resume", "--id", String(r.id), "--yes"]);
    expect(ok.code, ok.stderr).toBe(0);
    await waitFor(async () => (await show(r.id)).effective_status === "done", { timeoutMs: 120_000, intervalMs: 500, what: "the resumed run to finish" });
  }, 600_000);
});

function alive(pid: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
