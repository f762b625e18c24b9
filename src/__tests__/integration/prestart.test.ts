/**
 * The prestart of a live `runs show` (src/fabrik/prestart.ts) and the parked processes behind it (src/vm/process.ts):
 * real processes, a real local-driver VM with a real-engine fixture run, the real CLI run in-process after the
 * prestart (in production the two are separate bundles; here they share one module graph, so the test ends the
 * parking the way prestart's return value allows).
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../fabrik/cli.js";
import { memoryIo } from "../../fabrik/io.js";
import { prestart, prestartCommand } from "../../fabrik/prestart.js";
import { discardParkedProcesses, parkProcesses, parkedProcessCount, runProcess } from "../../vm/process.js";
import { REPO_ROOT, ensureFixtures, fixtureCase } from "../helpers/fixtures.js";
import { tempDir } from "../helpers/test-root.js";

afterEach(() => {
  discardParkedProcesses();
});

describe("prestartCommand: only a plain live `runs show`", () => {
  it.each([
    [["runs", "show", "--id", "7"], { kind: "show", id: 7 }],
    [["runs", "show", "--id=7", "--json"], { kind: "show", id: 7 }],
    [["runs", "show", "--color", "never", "--id", "12", "--live"], { kind: "show", id: 12 }],
  ])("%j → %j", (argv, want) => {
    expect(prestartCommand(argv)).toEqual(want);
  });

  it.each([
    [["runs", "show", "--id", "7", "--no-live"]],
    [["runs", "show", "--id", "0"]],
    [["runs", "show", "--id", "7x"]],
    [["runs", "show", "--id", "7", "--id", "8"]],
    [["runs", "show"]],
    [["runs", "show", "--id", "7", "--help"]],
    [["runs", "show", "--id", "7", "-h"]],
    [["runs", "show", "--id", "7", "--nodes"]],
    [["runs", "show", "--id", "7", "extra"]],
    [["runs", "show", "--id", "7", "--", "x"]],
    [["runs", "list"]],
    [["runs", "watch", "--vm", "a"]],
    [["run", "show", "--id", "7"]],
  ])("%j → nothing", (argv) => {
    expect(prestartCommand(argv)).toBeUndefined();
  });
});

describe("parked processes (vm/process.ts)", () => {
  let dir = "";
  beforeAll(() => {
    dir = tempDir("parked-");
  });

  /** A command that appends a line to `log` each time it runs, then prints and exits `code`. */
  const counted = (log: string, code = 0) => ["-c", 'echo ran >> "$1"; cat; printf out; printf err >&2; exit "$2"', "counted", log, String(code)];
  const runsOf = (log: string) => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").filter(Boolean).length : 0);

  it("a parked process that exited before the adoption hands over all its output and its exit code, and ran once", async () => {
    const log = path.join(dir, "a.log");
    const stop = parkProcesses();
    const never = runProcess("sh", counted(log, 3), { stdin: "in:", timeoutMs: 10_000, cwd: dir });
    stop();
    expect(parkedProcessCount()).toBe(1);
    // Long enough for it to exit, and for Node to drain the pipes of an exited child nobody listens to.
    await new Promise((r) => setTimeout(r, 400));
    const r = await runProcess("sh", counted(log, 3), { stdin: "in:", timeoutMs: 10_000, cwd: dir });
    expect(parkedProcessCount()).toBe(0);
    expect(r).toMatchObject({ exitCode: 3, stdout: "in:out", stderr: "err", timedOut: false });
    expect(runsOf(log)).toBe(1);
    const settled = await Promise.race([never.then(() => "settled"), new Promise((res) => setTimeout(() => res("pending"), 50))]);
    expect(settled).toBe("pending");
  });

  it("one still running is adopted mid-way: output before and after the adoption, in order", async () => {
    const log = path.join(dir, "b.log");
    const args = ["-c", 'echo ran >> "$1"; printf one; sleep 0.3; printf two', "slow", log];
    const stop = parkProcesses();
    void runProcess("sh", args, { timeoutMs: 10_000 });
    stop();
    await new Promise((r) => setTimeout(r, 100));
    const r = await runProcess("sh", args, { timeoutMs: 10_000 });
    expect(r).toMatchObject({ exitCode: 0, stdout: "onetwo" });
    expect(runsOf(log)).toBe(1);
  });

  it("is adopted only by the identical call: other stdin, arguments, working directory or environment run anew", async () => {
    const log = path.join(dir, "c.log");
    const stop = parkProcesses();
    void runProcess("sh", counted(log), { stdin: "x", timeoutMs: 10_000, cwd: dir, env: { A: "1" } });
    stop();
    await runProcess("sh", counted(log), { stdin: "y", timeoutMs: 10_000, cwd: dir, env: { A: "1" } });
    await runProcess("sh", [...counted(log).slice(0, -1), "4"], { stdin: "x", timeoutMs: 10_000, cwd: dir, env: { A: "1" } });
    await runProcess("sh", counted(log), { stdin: "x", timeoutMs: 10_000, cwd: REPO_ROOT, env: { A: "1" } });
    await runProcess("sh", counted(log), { stdin: "x", timeoutMs: 10_000, cwd: dir, env: { A: "2" } });
    expect(parkedProcessCount()).toBe(1);
    expect(runsOf(log)).toBe(5);
    const r = await runProcess("sh", counted(log), { stdin: "x", timeoutMs: 10_000, cwd: dir, env: { A: "1" } });
    expect(r.stdout).toBe("xout");
    expect(parkedProcessCount()).toBe(0);
    expect(runsOf(log)).toBe(5);
  });

  it("one nobody adopts is killed (its whole group) when discarded, as at exit", async () => {
    const pidFile = path.join(dir, "d.pid");
    const stop = parkProcesses();
    void runProcess("sh", ["-c", 'sleep 30 & echo $! > "$1"; wait', "waits", pidFile], { timeoutMs: 60_000 });
    stop();
    const deadline = Date.now() + 5_000;
    while (!fs.existsSync(pidFile) || fs.readFileSync(pidFile, "utf8").trim() === "") {
      if (Date.now() > deadline) throw new Error("the parked command did not start");
      await new Promise((r) => setTimeout(r, 20));
    }
    const sleeper = Number(fs.readFileSync(pidFile, "utf8").trim());
    expect(discardParkedProcesses()).toBe(1);
    const gone = Date.now() + 5_000;
    while (Date.now() < gone) {
      try {
        process.kill(sleeper, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the parked command's child ${sleeper} outlived the discard`);
  });
});

describe("prestart + the CLI: a live `runs show` on a local VM", () => {
  let env: NodeJS.ProcessEnv = {};
  let id = 0;

  const cli = async (args: string[]) => {
    const io = memoryIo();
    const code = await main(args, { env, io, noExit: true });
    return { code, out: io.out(), err: io.err() };
  };

  beforeAll(async () => {
    const { dir, manifest } = await ensureFixtures();
    const root = tempDir("prestart-");
    env = { PATH: process.env.PATH, HOME: root, FABRIK_HOME: path.join(root, "fh"), FABRIK_CONFIG: path.join(root, "config.json"), FABRIK_DRIVER: "local", NO_COLOR: "1" };
    expect((await cli(["vm", "create", "pre1", "--driver", "local", "--no-engine"])).code).toBe(0);
    const [vm] = JSON.parse((await cli(["vm", "list", "--json"])).out) as { name: string; guest_home: string }[];
    const home = vm!.guest_home;
    // A bun where the probe wrapper looks for an engine's.
    const bin = path.join(home, ".fabrik", "engines", "0.32.0", ".runtime", "node_modules", ".bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.symlinkSync(fs.realpathSync(path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun")), path.join(bin, "bun"));
    // One finished run of the real engine, as its control dir.
    const c = fixtureCase(manifest, "0.32.0", "finished");
    const cd = path.join(home, "work", "pre1", ".runs", "1-seq");
    fs.mkdirSync(path.join(cd, ".smithers"), { recursive: true });
    for (const f of Object.keys(c.files)) fs.copyFileSync(path.join(dir, c.dir, f), path.join(cd, ".smithers", f.replace(/^run\.db/, "run-1.db")));
    fs.writeFileSync(path.join(cd, "exit_code"), "0\n");
    fs.writeFileSync(path.join(cd, "run.sh"), "#!/usr/bin/env bash\n# smithers-orchestrator@0.32.0\nENGINE_VERSION='0.32.0'\n");
    const imp = JSON.parse((await cli(["runs", "import", "--vm", "pre1", "--json"])).out) as { imported: { id: number }[] };
    expect(imp.imported).toHaveLength(1);
    id = imp.imported[0]!.id;
  }, 600_000);

  afterAll(async () => {
    if (env.FABRIK_HOME) await cli(["vm", "delete", "pre1", "--force"]).catch(() => undefined);
  });

  it("starts the probe before the CLI runs, and the CLI adopts it: one probe, a live answer", async () => {
    const argv = ["runs", "show", "--id", String(id), "--json"];
    const stop = await prestart(argv, env);
    stop();
    expect(parkedProcessCount()).toBe(1);
    const r = await cli(argv);
    expect(r.code, r.err).toBe(0);
    expect(parkedProcessCount()).toBe(0);
    const view = JSON.parse(r.out) as { source: string; effective_status: string; probe_tool: string };
    expect(view).toMatchObject({ source: "live", effective_status: "done", probe_tool: "bun" });
  });

  it("a call the CLI does not make (here --no-live) is not adopted; nothing is written", async () => {
    const before = fs.statSync(path.join(env.FABRIK_HOME!, "registry.db")).mtimeMs;
    const stop = await prestart(["runs", "show", "--id", String(id)], env);
    stop();
    expect(parkedProcessCount()).toBe(1);
    expect((await cli(["runs", "show", "--id", String(id), "--no-live", "--json"])).code).toBe(0);
    expect(parkedProcessCount()).toBe(1);
    expect(discardParkedProcesses()).toBe(1);
    expect(fs.statSync(path.join(env.FABRIK_HOME!, "registry.db")).mtimeMs).toBe(before);
  });

  it("nothing is prestarted for a run that does not exist, nor for another command", async () => {
    (await prestart(["runs", "show", "--id", "999"], env))();
    (await prestart(["runs", "list"], env))();
    expect(parkedProcessCount()).toBe(0);
  });
});
