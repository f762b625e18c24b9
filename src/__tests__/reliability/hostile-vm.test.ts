/**
 * Reliability: a VM that lies, attacks the terminal, or sets traps (docs/reliability.md, "Hostile VM").
 *
 * The VM is untrusted: whatever it holds reaches the user only through the sanitiser, is parsed as data (never run),
 * and can make fabrik neither hang nor lose anything. Four planted runs in a local VM (the guest probe runs with the
 * engine's real bun on real 0.32 engine DBs from the fixtures):
 *
 * - `text`: OSC 52 (clipboard), OSC 0 (window title), CSI and 8-bit CSI sequences and `$(…)` in every field fabrik
 *   prints — node ids, the engine status, the owner id, error text, heartbeat fields, exit_code, run.sh's engine
 *   pin, the log, and the command line of a live process named in a pid file;
 * - `huge`: 1 MB lines — a node id, a heartbeat field, a log line;
 * - `links`: every control file and the DB are symbolic links to /etc/shadow;
 * - `fifos`: every control file and the DB are FIFOs (opening one for reading blocks until a writer comes).
 *
 * Every read-only command (show, show --json, list, watch, attach, resume --dry-run, import) is run on each: it
 * ends in time with its documented exit code, prints no control character, none of /etc/shadow, runs nothing (a
 * marker file a `$(…)` would create stays absent), and changes nothing in the VM (the control dirs hashed, FIFOs
 * and links by kind) nor drops anything from the registry.
 *
 * Defect 3 (`run resume` printed node ids, the owner id and command lines raw, in its dry-run, its confirmation
 * prompt and its `--yes` output) is the last test: a real run in the worker's stand-in VM, its DB made hostile.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { createContext } from "../../fabrik/context.js";
import { memoryIo } from "../../fabrik/io.js";
import { FABRIK_BIN, disposeTestEnv, fabrik, json, makeTestEnv, localVmName, type CliResult, type TestEnv } from "../helpers/cli.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { workerFleet, type Fleet } from "../helpers/worker-fleet.js";
import { tempDir } from "../helpers/test-root.js";
import { REPO_ROOT, copyFixtureDb, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";
import { run } from "../helpers/proc.js";
import { expectClean, guestHomeOf, openToGuest, registryDump, treeHashes } from "../helpers/reliability.js";

/** Escape sequences an attacker would use: clipboard write, window title, screen clear, 8-bit CSI, a colour. */
const ESC = "\u001b]52;c;cHduZWQ=\u0007\u001b]0;PWNED-TITLE\u0007\u001b[2J\u001b[H\u009b31m\u001b[31m";
const MB = 1024 * 1024;

const KINDS = ["text", "huge", "links", "fifos"] as const;
type Kind = (typeof KINDS)[number];

describe("reliability: a hostile VM (local driver, real probe, real engine DBs)", () => {
  let t: TestEnv;
  let VM = "";
  let home = "";
  let marker = "";
  const ids = {} as Record<Kind, number>;
  const dirs = {} as Record<Kind, string>;
  const children: ChildProcess[] = [];
  let shadow: string[] = [];
  let trees: Record<string, Record<string, string>> = {};
  let runIdsBefore: number[] = [];

  const hostile = (what: string) => `${what}${ESC}$(touch ${marker})\`touch ${marker}\``;

  beforeAll(async () => {
    t = makeTestEnv("hostile-");
    VM = localVmName("hv");
    marker = path.join(t.tmp, "PWNED");
    shadow = fs.existsSync("/etc/shadow") ? fs.readFileSync("/etc/shadow", "utf8").split("\n").filter((l) => l.length > 12) : [];
    expect((await fabrik(t, ["vm", "create", VM, "--driver", "local", "--no-engine"])).code).toBe(0);
    home = await guestHomeOf(t, VM);
    // The probe runs with the engine's bun; a VM gets it with the engine. Here: the fixtures' bun, where bun's
    // installer would put it.
    const { dir: fx, manifest } = await ensureFixtures();
    fs.mkdirSync(path.join(home, ".bun/bin"), { recursive: true });
    fs.symlinkSync(fs.realpathSync(path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun")), path.join(home, ".bun/bin/bun"));
    const killed = fixtureCase(manifest, "0.32.0", "killed");
    const failed = fixtureCase(manifest, "0.32.0", "failed");
    const Database = (await import("better-sqlite3")).default;
    const ctx = await createContext({ io: memoryIo(), env: t.env });
    try {
      for (const kind of KINDS) {
        const fixture = kind === "text" ? failed : killed;
        const runId = fixture.runs[0]!.runId;
        const rec = ctx.registry().insertRunWith(
          (id) => ({
            vm: VM,
            driver: "local",
            control_dir: path.join(home, "work", VM, ".runs", `${id}-${kind}`),
            workflow_path: path.join(home, "work", VM, ".runs", `${id}-${kind}`, "workflow", "seq.tsx"),
            smithers_run_id: runId,
            smithers_db_path: path.join(home, "work", VM, ".runs", `${id}-${kind}`, ".smithers", `run-${id}.db`),
            engine_version: "0.32.0",
            status: "running",
          }),
          Date.now(),
        );
        ids[kind] = rec.id;
        const dir = (dirs[kind] = rec.control_dir);
        fs.mkdirSync(path.join(dir, "reports"), { recursive: true });
        fs.mkdirSync(path.join(dir, ".smithers"));
        fs.mkdirSync(path.join(dir, "workflow"));
        fs.copyFileSync(path.join(REPO_ROOT, "examples/workflows/seq.tsx"), path.join(dir, "workflow/seq.tsx"));
        const files = ["heartbeat.json", "exit_code", "launcher.pid", "smithers.pid", "engine.pid", "run.sh", "reports/smithers.log", `.smithers/run-${rec.id}.db`];
        if (kind === "links") {
          for (const f of files) fs.symlinkSync("/etc/shadow", path.join(dir, f));
          continue;
        }
        if (kind === "fifos") {
          for (const f of files) expect((await run("mkfifo", [path.join(dir, f)])).code).toBe(0);
          continue;
        }
        // A real engine DB, made hostile, checkpointed into one file.
        const src = copyFixtureDb(fx, fixture);
        const db = rec.smithers_db_path;
        fs.copyFileSync(src, db);
        for (const s of ["-wal", "-shm"]) if (fs.existsSync(src + s)) fs.copyFileSync(src + s, db + s);
        fs.rmSync(path.dirname(src), { recursive: true, force: true });
        const d = new Database(db);
        const big = "N".repeat(MB);
        if (kind === "text") {
          const node = hostile("step-3");
          d.prepare("UPDATE _smithers_nodes SET node_id = ? WHERE run_id = ? AND node_id = 'step-3'").run(node, runId);
          d.prepare("UPDATE _smithers_attempts SET node_id = ?, error_json = ? WHERE run_id = ? AND node_id = 'step-3'").run(node, JSON.stringify({ name: "Error", message: hostile("boom") }), runId);
          d.prepare("UPDATE _smithers_runs SET status = ?, runtime_owner_id = ?, error_json = ? WHERE run_id = ?").run(hostile("failed"), `pid:1:${hostile("owner")}`, JSON.stringify({ message: hostile("run error") }), runId);
        } else {
          d.prepare("UPDATE _smithers_nodes SET node_id = ? WHERE run_id = ? AND node_id = 'step-3'").run(big, runId);
          d.prepare("UPDATE _smithers_attempts SET node_id = ? WHERE run_id = ? AND node_id = 'step-3'").run(big, runId);
        }
        d.pragma("wal_checkpoint(TRUNCATE)");
        d.close();
        const hb = { v: 1, ts_ms: Date.now(), seq: 1, phase: kind === "text" ? hostile("running") : big, host_run_id: rec.id, smithers_run_id: kind === "text" ? hostile("sid") : big, launch_id: hostile("launch") };
        fs.writeFileSync(path.join(dir, "heartbeat.json"), JSON.stringify(hb));
        fs.writeFileSync(path.join(dir, "exit_code"), kind === "text" ? `1${ESC}\n` : "-1\n");
        fs.writeFileSync(path.join(dir, "run.sh"), `#!/bin/bash\nENGINE_VERSION='${kind === "text" ? hostile("0.32.0") : big}'\n`);
        const log = kind === "text" ? `line one\n${hostile("a log line")}\n\u001b[?1049h\u001b[?25l\rcarriage\nlast\n` : `before\n${"L".repeat(MB)}\nafter\n`;
        fs.writeFileSync(path.join(dir, "reports/smithers.log"), log);
        if (kind === "text") {
          // A live process whose command line is an attack, named as the engine.
          const p = spawn("bash", ["-c", 'exec -a "$1" sleep 600', "fabrik-test", hostile("engine")], { stdio: "ignore", detached: true });
          children.push(p);
          fs.writeFileSync(path.join(dir, "engine.pid"), `${p.pid}\n`);
        }
      }
    } finally {
      ctx.close();
    }
    trees = Object.fromEntries(KINDS.map((k) => [k, treeHashes(dirs[k])]));
    runIdsBefore = ((await registryDump(t.fabrikHome)).runs as { id: number }[]).map((r) => r.id);
  }, 600_000);

  afterAll(async () => {
    for (const c of children) {
      try {
        process.kill(-c.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await disposeTestEnv(t);
  });

  /** Run a read-only command; it must end in time, print nothing unsafe, nothing of /etc/shadow, run nothing. */
  async function look(args: string[], codes: number[], what: string, env?: NodeJS.ProcessEnv): Promise<CliResult> {
    const started = Date.now();
    const r = await fabrik(t, args, { timeoutMs: 60_000, env });
    const ms = Date.now() - started;
    expect(codes, `${what}: exit ${r.code}, stderr: ${r.stderr.slice(0, 2000)}`).toContain(r.code);
    expectClean(r.stdout, `${what} (stdout)`);
    expectClean(r.stderr, `${what} (stderr)`);
    for (const l of shadow) expect(r.stdout + r.stderr, `${what}: a line of /etc/shadow`).not.toContain(l);
    expect(fs.existsSync(marker), `${what}: a $(…) or backtick ran`).toBe(false);
    expect(r.stdout.length + r.stderr.length, `${what}: output stays bounded`).toBeLessThan(4 * MB);
    console.log(`[hostile] ${what}: exit ${r.code} in ${ms} ms, ${r.stdout.length + r.stderr.length} chars`);
    return r;
  }

  for (const kind of KINDS) {
    it(`${kind}: show, show --json, watch, attach and resume --dry-run end in time, clean, and change nothing`, async () => {
      const id = String(ids[kind]);
      const show = await look(["runs", "show", "--id", id], [0], `${kind}: runs show`);
      expect(show.stdout).toMatch(new RegExp(`^id: ${id}$`, "m"));
      const j = await look(["runs", "show", "--id", id, "--json"], [0], `${kind}: runs show --json`);
      expect(json<{ id: number }>(j).id).toBe(ids[kind]);
      await look(["runs", "watch", "--vm", VM, "--run-id", id, "--interval", "0.5", "--timeout", "3"], [0, 10], `${kind}: runs watch`);
      await look(["run", "attach", "--id", id, "--no-follow", "--tail", "20"], [0], `${kind}: run attach --no-follow`);
      await look(["run", "resume", "--id", id, "--dry-run"], [0, 5], `${kind}: run resume --dry-run`);
      expect(treeHashes(dirs[kind]), `${kind}: the control dir is as planted`).toEqual(trees[kind]);
      if (kind === "text") {
        // Printed as data, visibly, not run and not interpreted.
        expect(show.stdout).toContain("$(touch ");
        expect(show.stdout).toContain("step-3");
      }
      if (kind === "links" || kind === "fifos") expect(show.stdout + show.stderr).not.toMatch(/root:/);
    }, 300_000);
  }

  it("runs list over all four, and runs import (which reads every control dir in the VM): clean, in time, nothing dropped", async () => {
    await look(["runs", "list"], [0], "runs list");
    await look(["runs", "list", "--json"], [0], "runs list --json");
    await look(["runs", "import", "--vm", VM], [0], "runs import");
    for (const kind of KINDS) expect(treeHashes(dirs[kind]), `${kind}: untouched by list and import`).toEqual(trees[kind]);
    const after = ((await registryDump(t.fabrikHome)).runs as { id: number }[]).map((r) => r.id);
    expect(after).toEqual(runIdsBefore);
    expect(fs.existsSync(marker)).toBe(false);
  }, 300_000);
});

/** Runs a command on a pseudo-terminal (stdin and stdout/stderr a TTY), feeding it `input`; prints everything raw. */
const ON_A_PTY = `import os, pty, sys
status = pty.spawn(sys.argv[1:])
sys.exit(os.waitstatus_to_exitcode(status))`;

const standinSkip = missingPrereqs(...STANDIN, "python3");
describe.skipIf(standinSkip)(titled("reliability: defect 3 — run resume prints VM data only through the sanitiser", standinSkip), () => {
  let t: Fleet;
  let VM = "";
  let home = "";
  let marker = "";
  const gate = new Gate();
  beforeAll(async () => {
    t = await workerFleet({ thresholds: { engine_heartbeat_stale_ms: 2000 } });
    VM = t.vm;
    home = await guestHomeOf(t, VM);
    marker = path.join(openToGuest(tempDir("pwn-")), "PWNED");
  }, 600_000);
  afterAll(() => {
    gate.dispose();
    if (t) fs.rmSync(t.tmp, { recursive: true, force: true });
  });

  const cli = (args: string[]) => fabrik(t, args, { timeoutMs: 180_000 });
  const shIn = async (script: string, ...args: string[]) => {
    const r = await cli(["vm", "shell", VM, "--", "bash", "-c", script, "fabrik-test", ...args]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const clean = (out: string, what: string) => {
    expectClean(out, what);
    expect(fs.existsSync(marker), `${what}: a $(…) ran`).toBe(false);
  };

  it("node ids, the DB owner id and a process's command line with OSC 52, OSC 0 and CSI: dry-run, refusal, prompt and --yes are clean", async () => {
    const hostile = (what: string) => `${what}${ESC}$(touch ${marker})`;
    const r = await cli(["run", "--vm", VM, "--workflow", path.join(REPO_ROOT, "examples/workflows/seq.tsx"), "--input", JSON.stringify({ tasks: 4, sleepMs: 50, ...gate.input }), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const run1 = json<{ id: number; control_dir: string; db_path: string; smithers_run_id: string; engine_version: string }>(r);
    const id = String(run1.id);
    gate.releaseThrough(2);
    await gate.at(3);
    // A crash in task 3: the launcher's group and the engine, killed in the VM.
    await shIn(`cd "$1"; kill -9 -- -$(cat launcher.pid) 2>/dev/null; kill -9 $(cat launcher.pid) $(cat smithers.pid) $(cat engine.pid 2>/dev/null) 2>/dev/null; true`, run1.control_dir);
    // The DB made hostile, in the VM, with the engine's own bun: the interrupted node's id and the owner id.
    const bun = `${home}/.fabrik/engines/${run1.engine_version}/.runtime/node_modules/.bin/bun`;
    const mutate = `const { Database } = require("bun:sqlite");
      const [db, runId, node, owner] = process.argv.slice(1);
      const d = new Database(db); d.exec("PRAGMA busy_timeout = 5000");
      d.query("UPDATE _smithers_nodes SET node_id = ? WHERE run_id = ? AND node_id = 'step-3'").run(node, runId);
      d.query("UPDATE _smithers_attempts SET node_id = ? WHERE run_id = ? AND node_id = 'step-3'").run(node, runId);
      d.query("UPDATE _smithers_runs SET runtime_owner_id = ? WHERE run_id = ?").run(owner, runId);
      d.close();`;
    const m = await cli(["vm", "shell", VM, "--", bun, "-e", mutate, run1.db_path, run1.smithers_run_id, hostile("step-3"), `pid:3999999:${hostile("owner")}`]);
    expect(m.code, m.stderr).toBe(0);

    // A live process named as the engine, whose command line is an attack: the refusal names it.
    await shIn(`cd "$1"; setsid bash -c 'exec -a "$0" sleep 600' "$2" </dev/null >/dev/null 2>&1 & echo $! > engine.pid`, run1.control_dir, hostile("ENGINE-CMDLINE"));
    // Since pid identities (issue 13: pids.json), a process that is not the one recorded for engine.pid is "another
    // process": the dry run goes ahead (exit 0) and names it; before, it refused (exit 5, "is alive") naming it. Either
    // way its command line is printed, and must be clean.
    const named = await cli(["run", "resume", "--id", id, "--dry-run"]);
    expect([0, 5], named.stdout + named.stderr).toContain(named.code);
    expect(named.stdout + named.stderr).toMatch(/is alive|another process/);
    expect(named.stdout + named.stderr, "the hostile command line is printed (as text)").toContain("ENGINE-CMDLINE");
    clean(named.stdout + named.stderr, "dry run naming a hostile command line");
    await shIn(`cd "$1"; kill -9 $(cat engine.pid); rm -f engine.pid`, run1.control_dir);

    const dry = await cli(["run", "resume", "--id", id, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain("$(touch "); // visible, as text
    expect(dry.stdout).toContain("step-3");
    clean(dry.stdout + dry.stderr, "dry-run");
    const dryJson = await cli(["run", "resume", "--id", id, "--dry-run", "--json"]);
    clean(dryJson.stdout + dryJson.stderr, "dry-run --json");

    // The confirmation prompt, on a real pseudo-terminal, answered "n".
    const prompt = await run("python3", ["-c", ON_A_PTY, process.execPath, FABRIK_BIN, "run", "resume", "--id", id], { env: t.env, input: "n\n", timeoutMs: 120_000 });
    // Node's readline draws its prompt with its own cursor moves (CHA `ESC[nG`, erase `ESC[0J`/`ESC[K`): those are
    // fabrik's, not the VM's, and none of the planted sequences has that shape.
    const screen = prompt.stdout.replace(/\r\n/g, "\n").replace(/\r/g, "").replace(/\u001b\[\d*G|\u001b\[0?J|\u001b\[\d*K/g, "");
    expect(screen).toMatch(new RegExp(`Resume run ${id} now\\? \\[y/N\\]`));
    expect(prompt.code, screen).toBe(5);
    clean(screen, "the confirmation prompt (pty)");

    gate.releaseThrough(4);
    const yes = await cli(["run", "resume", "--id", id, "--yes"]);
    expect(yes.code, yes.stderr).toBe(0);
    clean(yes.stdout + yes.stderr, "--yes");
    expect(yes.stdout).toMatch(new RegExp(`resumed run ${id}`));
  }, 600_000);
});
