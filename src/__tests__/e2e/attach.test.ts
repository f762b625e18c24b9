// `fabrik run attach` (attachRun) end to end on a VM of each driver that needs no engine: a LOCAL-driver VM and a real
// SSH host (ssh driver). A registry row points at a fake control dir whose log is appended (from this machine, into
// the guest's files) by a background writer that finally writes exit_code. Real probe (the fixtures' bun: a symlink
// in the local VM's home; the fixture engine hard-linked into the SSH host), real `tail -F` through the driver's
// stream path (local) or the persistent SSH transport (ssh); no engine needed.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { attachRun } from "../helpers/attach.js";
import { createContext, type Context } from "../../fabrik/context.js";
import { memoryIo } from "../../fabrik/io.js";
import { ExitCode } from "../../fabrik/exit-codes.js";
import { NotFoundError } from "../../core/errors.js";
import { LocalDriver } from "../../vm/local-driver.js";
import { main } from "../../fabrik/cli.js";
import { openVmSession } from "../../vm/session.js";
import { REPO_ROOT, ensureFixtures } from "../helpers/fixtures.js";
import { waitFor } from "../helpers/proc.js";
import { addArgs, sshWorld, SSH_HOSTS } from "../helpers/driver-fleet.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import * as hosts from "../../../scripts/ssh-hosts/ssh-hosts.mjs";

type AttachDriver = "local" | "ssh";
const DRIVERS: AttachDriver[] = ["local", "ssh"];

describe.each(DRIVERS)("attachRun on a %s-driver VM", (driverName) => {
  const skip = driverName === "ssh" ? missingPrereqs(...SSH_HOSTS) : false;
  const VM = "attach-vm";
  let home = "";
  /** The guest home as the guest sees it, and where it is on this machine. */
  let guestHome = "";
  let hostHome = "";
  let sshHost: hosts.SshTestHost | undefined;
  let sshHomeEnv: string | undefined;
  let nextDir = 0;
  const children: ChildProcess[] = [];
  const hostPath = (guestPath: string) => (guestPath.startsWith(guestHome) ? path.join(hostHome, guestPath.slice(guestHome.length)) : guestPath);

  function env(): NodeJS.ProcessEnv {
    const e: NodeJS.ProcessEnv = { ...process.env, FABRIK_HOME: home, FABRIK_CONFIG: path.join(home, "config.json"), NO_COLOR: "1" };
    if (sshHomeEnv) e.HOME = sshHomeEnv;
    return e;
  }

  async function newContext(signal?: AbortSignal) {
    const io = memoryIo();
    const ctx: Context = await createContext({ io, env: env(), ...(signal ? { signal } : {}) });
    return { io, ctx };
  }

  /** A control dir with a log (and optionally exit_code), registered as a run of the VM; returns its id and host dir. */
  async function fakeRun(log: string, exitCode?: number): Promise<{ id: number; dir: string }> {
    const guestDir = `${guestHome}/work/${VM}/.runs/${++nextDir}-fake`;
    const dir = hostPath(guestDir);
    fs.mkdirSync(path.join(dir, "reports"), { recursive: true });
    fs.writeFileSync(path.join(dir, "reports", "smithers.log"), log);
    if (exitCode !== undefined) fs.writeFileSync(path.join(dir, "exit_code"), `${exitCode}\n`);
    const { ctx } = await newContext();
    try {
      const rec = ctx.registry().insertRun({
        vm: VM,
        driver: driverName,
        control_dir: guestDir,
        workflow_path: `${guestDir}/workflow/wf.tsx`,
        smithers_run_id: `fabrik-${nextDir}`,
        smithers_db_path: `${guestDir}/.smithers/run-${nextDir}.db`,
        status: "running",
      });
      return { id: rec.id, dir };
    } finally {
      ctx.close();
    }
  }

  /** Append the given pieces to the run's log from a separate process, `gapS` apart, then write exit_code. */
  function backgroundWriter(dir: string, pieces: string[], exitCode: number | null, gapS = 0.05): Promise<number> {
    const script = [
      'd="$1"; code="$2"; gap="$3"; shift 3',
      'for p in "$@"; do printf "%s" "$p" >> "$d/reports/smithers.log"; sleep "$gap"; done',
      '[ "$code" = none ] || echo "$code" > "$d/exit_code"',
    ].join("\n");
    const child = spawn("sh", ["-c", script, "writer", dir, exitCode === null ? "none" : String(exitCode), String(gapS), ...pieces], { stdio: "ignore" });
    children.push(child);
    return new Promise((resolve) => child.on("exit", (c) => resolve(c ?? -1)));
  }

  const numbered = (from: number, to: number, prefix = "line") => Array.from({ length: to - from + 1 }, (_, i) => `${prefix} ${from + i}\n`).join("");

  beforeAll(async () => {
    if (skip) return;
    home = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-attach-")); // inside this run's temp root (TMPDIR)
    // The probe needs bun in the VM (where an engine or bun's installer puts it); ensureFixtures installs one.
    await ensureFixtures();
    if (driverName === "local") {
      const driver = new LocalDriver(path.join(home, "local-vms"));
      await driver.create({ name: VM, timeoutMs: 10_000 });
      await driver.start(VM);
      guestHome = hostHome = driver.guestHome(VM);
      fs.mkdirSync(path.join(guestHome, ".bun/bin"), { recursive: true });
      fs.symlinkSync(fs.realpathSync(path.join(REPO_ROOT, ".cache/engines/0.32.0/.runtime/node_modules/.bin/bun")), path.join(guestHome, ".bun/bin/bun"));
    } else {
      const { world } = await sshWorld();
      sshHomeEnv = world.home;
      sshHost = await hosts.createHost(world, `attach-${path.basename(home).slice(-6).toLowerCase().replace(/[^a-z0-9]/g, "x")}`, { engines: { "0.32.0": path.join(REPO_ROOT, ".cache/engines/0.32.0") } });
      hosts.trustHost(world, sshHost);
      await hosts.startHost(sshHost);
      guestHome = sshHost.guestHome;
      hostHome = sshHost.hostHome;
      const io = memoryIo();
      expect(await main(addArgs(world, VM, sshHost), { env: env(), io, noExit: true }), io.err()).toBe(0);
    }
  }, 600_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    if (sshHost) await hosts.stopHost(sshHost);
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  describe.skipIf(skip)(titled(`${driverName} driver`, skip), () => {
    it("prints the tail, follows complete lines (sanitised, resume markers kept) and stops when exit_code appears", async () => {
      const { id, dir } = await fakeRun(numbered(1, 80));
      const { io, ctx } = await newContext();
      const pieces = [
        numbered(81, 90),
        "\u001b[31mred\u001b[0m \u001b]0;evil title\u0007alert\u001b[2J\n",
        "[fabrik 12:00:00] ===== fabrik resume of host run 1 (smithers run fabrik-1) =====\n",
        "half a li",
        "ne, then the rest\n",
        "multi-byte é",
        "✓ split\n",
        numbered(91, 95),
      ];
      const t0 = Date.now();
      const attached = attachRun(ctx, { id, tail: 5, follow: true, exitStatus: true });
      // Start appending once the tail is on screen, so the tail is exactly lines 76–80.
      while (!io.out().includes("line 80\n")) await new Promise((r) => setTimeout(r, 10));
      const writer = backgroundWriter(dir, pieces, 0, 0.1);
      const code = await attached;
      ctx.close();
      expect(await writer).toBe(0);
      expect(code).toBe(ExitCode.OK);
      const expected =
        numbered(76, 80) +
        numbered(81, 90) +
        "red alert\n" +
        "[fabrik 12:00:00] ===== fabrik resume of host run 1 (smithers run fabrik-1) =====\n" +
        "half a line, then the rest\n" +
        "multi-byte é✓ split\n" +
        numbered(91, 95);
      expect(io.out()).toBe(expected);
      expect(io.out()).not.toContain("\u001b");
      expect(io.err()).toContain(`run ${id} finished: done (exit 0)`);
      expect(io.err().trim().split("\n").at(-1)).toBe(`fabrik: run ${id} finished: done (exit 0)`);
      console.log(`[attach] followed to the end in ${Date.now() - t0} ms; stderr: ${JSON.stringify(io.err())}`);
    });

    it("relays the outcome with exitStatus: failed → 8, cancelled → 9; without it → 0", async () => {
      for (const [exit, expected] of [
        [1, ExitCode.RUN_FAILED],
        [2, ExitCode.RUN_CANCELLED],
      ] as const) {
        const { id, dir } = await fakeRun("start\n");
        const { io, ctx } = await newContext();
        const attached = attachRun(ctx, { id, tail: 50, follow: true, exitStatus: true });
        while (!io.out().includes("start\n")) await new Promise((r) => setTimeout(r, 10));
        const writer = backgroundWriter(dir, ["working\n", "giving up\n"], exit);
        const code = await attached;
        ctx.close();
        await writer;
        expect(code).toBe(expected);
        expect(io.out()).toBe("start\nworking\ngiving up\n");
        expect(io.err()).toContain(`run ${id} finished: ${exit === 1 ? "failed" : "cancelled"} (exit ${exit})`);
      }
      const { id } = await fakeRun("x\n", 1);
      const { ctx } = await newContext();
      expect(await attachRun(ctx, { id, tail: 50, follow: true, exitStatus: false })).toBe(ExitCode.OK);
      ctx.close();
    });

    it("returns at once for a run that had already ended (tail only, outcome relayed)", async () => {
      const { id } = await fakeRun(numbered(1, 1000) + "last line without newline", 1);
      const { io, ctx } = await newContext();
      const t0 = Date.now();
      const code = await attachRun(ctx, { id, tail: 3, follow: true, exitStatus: true });
      const took = Date.now() - t0;
      ctx.close();
      expect(code).toBe(ExitCode.RUN_FAILED);
      expect(io.out()).toBe("line 999\nline 1000\nlast line without newline\n");
      expect(io.err()).toContain(`run ${id} finished: failed (exit 1)`);
      expect(took).toBeLessThan(3_000);
      console.log(`[attach] already-finished run: returned in ${took} ms`);
    });

    it("--no-follow prints the tail of a running run and returns; --tail 0 prints nothing", async () => {
      const { id } = await fakeRun(numbered(1, 10));
      let { io, ctx } = await newContext();
      expect(await attachRun(ctx, { id, tail: 2, follow: false, exitStatus: false })).toBe(0);
      ctx.close();
      expect(io.out()).toBe("line 9\nline 10\n");
      ({ io, ctx } = await newContext());
      expect(await attachRun(ctx, { id, tail: 0, follow: false, exitStatus: true })).toBe(ExitCode.RUN_NOT_DONE);
      ctx.close();
      expect(io.out()).toBe("");
    });

    it("Ctrl-C detaches with 130 and leaves the run alone", async () => {
      const { id, dir } = await fakeRun("begin\n");
      // A stand-in "engine" that keeps writing; attach must not signal it.
      const engine = spawn("sh", ["-c", 'i=0; while :; do i=$((i+1)); echo "tick $i" >> "$1/reports/smithers.log"; sleep 0.05; done', "engine", dir], { stdio: "ignore" });
      children.push(engine);
      const abort = new AbortController();
      const { io, ctx } = await newContext(abort.signal);
      const attached = attachRun(ctx, { id, tail: 50, follow: true, exitStatus: true });
      // Ctrl-C once attach has followed a few lines (an event, not a time window).
      while (!io.out().includes("tick 3\n")) await new Promise((r) => setTimeout(r, 10));
      abort.abort();
      const code = await attached;
      ctx.close();
      expect(code).toBe(ExitCode.INTERRUPTED);
      expect(io.out()).toMatch(/^begin\ntick 1\ntick 2\n(tick \d+\n)+$/);
      expect(engine.exitCode).toBeNull();
      expect(engine.signalCode).toBeNull();
      engine.kill("SIGKILL");
    });

    it("an unknown run id is NotFoundError (exit 4), also through the CLI", async () => {
      const { ctx } = await newContext();
      await expect(attachRun(ctx, { id: 424242, tail: 50, follow: true, exitStatus: false })).rejects.toBeInstanceOf(NotFoundError);
      ctx.close();
      const io = memoryIo();
      const code = await main(["run", "attach", "--id", "424242"], { env: env(), io, noExit: true });
      expect(code).toBe(ExitCode.NOT_FOUND);
      expect(io.err()).toContain("run 424242 does not exist");
    });

    it("the CLI passes --tail/--no-follow/--exit-status through", async () => {
      const { id } = await fakeRun(numbered(1, 5), 2);
      const io = memoryIo();
      const code = await main(["run", "attach", "--id", String(id), "--tail", "2", "--exit-status"], { env: env(), io, noExit: true });
      expect(code).toBe(ExitCode.RUN_CANCELLED);
      expect(io.out()).toBe("line 4\nline 5\n");
    });

    it("VmSession.followFile resumes at its offset after the tail process is killed (local: the driver path; ssh: the transport)", async () => {
      const { ctx } = await newContext();
      const driver = driverName === "local" ? new LocalDriver(path.join(home, "local-vms")) : await ctx.driver("ssh");
      const notices: string[] = [];
      const session = await openVmSession(driver, VM, { preferSsh: true, onNotice: (m) => notices.push(m) });
      expect(session.kind).toBe(driverName === "local" ? "driver" : "ssh"); // the local driver has no SSH
      const file = `${guestHome}/follow-me.log`;
      const hostFile = hostPath(file);
      fs.writeFileSync(hostFile, "");
      const got: Buffer[] = [];
      let last = 0;
      const follower = await session.followFile(file, 0, (chunk, offset) => {
        got.push(Buffer.from(chunk));
        last = offset;
      });
      const tails = () =>
        fs
          .readdirSync("/proc")
          .filter((d) => /^\d+$/.test(d))
          .filter((d) => {
            try {
              const argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
              return argv[0] === "tail" && argv.includes(file);
            } catch {
              return false;
            }
          })
          .map(Number);
      for (let round = 1; round <= 3; round++) {
        fs.appendFileSync(hostFile, numbered(round * 100, round * 100 + 99, "entry"));
        const size = fs.statSync(hostFile).size;
        while (last < size) await new Promise((r) => setTimeout(r, 10));
        for (const pid of tails()) process.kill(pid, "SIGKILL");
        // Written while no tail runs: must arrive after the restart, once.
        fs.appendFileSync(hostFile, `gap ${round}\n`);
      }
      const size = fs.statSync(hostFile).size;
      const t0 = Date.now();
      while (last < size && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 10));
      follower.stop();
      await follower.done;
      session.close();
      ctx.close();
      expect(Buffer.concat(got).equals(fs.readFileSync(hostFile))).toBe(true);
      expect(follower.restarts).toBeGreaterThanOrEqual(3);
      expect(notices.filter((n) => n.startsWith("following ")).length).toBeGreaterThanOrEqual(3);
      // Stopping ends the remote tail too (ssh: the transport's watchdog, once the channel closes).
      await waitFor(() => tails().length === 0, { timeoutMs: 10_000, intervalMs: 50, what: "no tail left following the file", describe: () => JSON.stringify(tails()) });
    });
  });
});
