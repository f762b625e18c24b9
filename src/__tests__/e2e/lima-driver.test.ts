/**
 * The real `lima` driver against the stand-in limactl: exact argv quoting, env, workdir, stdin, exit codes, the
 * status pre-check, and the places where Lima differs from what a driver would naively assume (lima-contract §10):
 * `start` of a missing name creates it, `limactl copy` picks rsync, a killed `limactl shell` leaves the guest
 * command running, sshd's session limit, a guest user that is not root, `errors` as Go structs.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { LimaDriver, MAX_SHELLS_PER_VM } from "../../vm/lima-driver.js";
import { InterruptedError, NotFoundError, PrerequisiteError, VmUnavailableError } from "../../core/errors.js";
import { disposeTestEnv, guestUserOf, limactl, makeTestEnv, type GuestUser, type TestEnv } from "../helpers/cli.js";
import { STANDIN, missingPrereqs, onPath, titled } from "../helpers/prereq.js";
import { waitFor } from "../helpers/proc.js";

const skip = missingPrereqs(...STANDIN, "pgrep");

describe.skipIf(skip)(titled("LimaDriver against the stand-in", skip), () => {
  let t: TestEnv;
  let driver: LimaDriver;
  let user: GuestUser;
  const template = () => path.join(t.tmp, "tiny.yaml");
  /** Whether a guest process whose command line contains `marker` is alive in VM d1 (asked through a fresh shell). */
  const guestHas = async (marker: string): Promise<boolean> => {
    const r = await driver.exec("d1", ["sh", "-c", 'ps -eo args | grep -F -- "$1" | grep -v grep >/dev/null', "probe", marker], { timeoutMs: 20_000 });
    return r.exitCode === 0;
  };
  beforeAll(async () => {
    t = makeTestEnv();
    fs.writeFileSync(template(), "images: []\ncpus: 1\nmemory: 1GiB\n");
    driver = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.fabrikHome, "cache"), env: t.env });
    await driver.create({ name: "d1", template: template(), timeoutMs: 60_000 });
    await driver.start("d1", { timeoutMs: 60_000 });
    user = await guestUserOf(t, "d1");
  }, 120_000);
  afterAll(() => disposeTestEnv(t));

  it("reports the VM with the guest user's home; that user is not root and has passwordless sudo", async () => {
    const info = await driver.inspect("d1", { timeoutMs: 10_000 });
    expect(user.uid).not.toBe(0);
    expect(info).toMatchObject({ name: "d1", status: "Running", guestHome: user.home, guestUser: user.name, driver: "lima" });
    expect(await driver.inspect("nope", { timeoutMs: 10_000 })).toBeUndefined();
    const id = await driver.exec("d1", ["sh", "-c", 'id -u; echo "$HOME"; sudo -n id -u'], { timeoutMs: 10_000 });
    expect(id.stdout).toBe(`${user.uid}\n${user.home}\n0\n`);
  });

  it("passes argv exactly, env, workdir and stdin; guest exit codes are data", async () => {
    const evil = ["a b", "it's", "$HOME", "`id`", "x;y", "", "a=b"];
    const r = await driver.exec("d1", ["printf", "%s|", ...evil], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ exitCode: 0, stdout: evil.join("|") + "|" });
    // a leading K=V word stays an argument (limactl would take it as an assignment, lima-contract §2)
    const kv = await driver.exec("d1", ["A=1", "x"], { timeoutMs: 10_000 });
    expect(kv.exitCode).toBe(127);
    const e = await driver.exec("d1", ["sh", "-c", 'printf "%s %s" "$FOO" "$PWD"'], { timeoutMs: 10_000, env: { FOO: "x y" }, cwd: "/tmp" });
    expect(e.stdout).toBe("x y /tmp");
    const s = await driver.exec("d1", ["wc", "-c"], { timeoutMs: 10_000, stdin: Buffer.alloc(100_000, 97) });
    expect(s.stdout.trim()).toBe("100000");
    const x = await driver.exec("d1", ["sh", "-c", "echo out; echo err >&2; exit 3"], { timeoutMs: 10_000 });
    expect(x).toMatchObject({ exitCode: 3, stdout: "out\n", stderr: "err\n" }); // the pid line never shows
  });

  // Point 3 of issue 12. Killing `limactl shell` on the host does not end the guest command: it runs over Lima's
  // shared ControlMaster connection (lima cmd/limactl/shell.go:487-494), as it does through the stand-in's sshd.
  // The driver kills the guest process group through a second call.
  it("a deadline ends the guest command and its children, not only limactl", async () => {
    const marker = `fabrik-deadline-${process.pid}`;
    const started = Date.now();
    // A command with a child: the whole guest process group must go. The deadline leaves it time to start (the test
    // sees it running first), so what is checked is that the deadline ENDS it.
    const p = driver.exec("d1", ["bash", "-c", `sleep 300 & exec -a ${marker} sleep 301`], { timeoutMs: 8_000 });
    const rejected = expect(p).rejects.toThrow(VmUnavailableError);
    await waitFor(() => guestHas(marker), { timeoutMs: 20_000, intervalMs: 200, what: `${marker} to run in the guest before its deadline` });
    await rejected;
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await guestHas(marker)).toBe(false);
    expect(await guestHas("sleep 300")).toBe(false);
  });

  it("an abort (Ctrl-C) ends the guest command too, and a stream's kill() ends its guest command", async () => {
    const marker = `fabrik-abort-${process.pid}`;
    const ac = new AbortController();
    const p = driver.exec("d1", ["bash", "-c", `exec -a ${marker} sleep 302`], { timeoutMs: 60_000, signal: ac.signal });
    await waitFor(() => guestHas(marker), { timeoutMs: 20_000, intervalMs: 200, what: `${marker} to run in the guest` });
    ac.abort();
    await expect(p).rejects.toThrow(InterruptedError);
    expect(await guestHas(marker)).toBe(false);

    const streamMarker = `fabrik-stream-${process.pid}`;
    const chunks: Buffer[] = [];
    const h = await driver.stream("d1", ["bash", "-c", `echo first; exec -a ${streamMarker} sleep 303`], { onStdout: (c) => chunks.push(c) });
    await waitFor(() => Buffer.concat(chunks).toString() === "first\n", { timeoutMs: 20_000, intervalMs: 50, what: "the stream's first line" });
    expect(await guestHas(streamMarker)).toBe(true);
    h.kill();
    await h.done;
    await waitFor(async () => !(await guestHas(streamMarker)), { timeoutMs: 15_000, intervalMs: 200, what: `${streamMarker} to be gone from the guest` });
  });

  // Point 4: every `limactl shell` shares one ControlMaster connection; sshd refuses the 11th session on it
  // ("Session open refused by peer"), and ssh falls back to a new connection with that error on the command's stderr.
  it("never runs more than MAX_SHELLS_PER_VM shells at once in one VM", async () => {
    expect(MAX_SHELLS_PER_VM).toBeLessThan(10);
    const dir = `/tmp/slots-${process.pid}`;
    await driver.exec("d1", ["mkdir", "-p", dir], { timeoutMs: 10_000 });
    // Each command counts the commands running beside it (one file each), then keeps its slot a moment.
    const count = `touch "$1/$$"; n=$(ls "$1" | wc -l); sleep 0.4; rm -f "$1/$$"; echo "$n"`;
    const results = await Promise.all(Array.from({ length: 16 }, () => driver.exec("d1", ["sh", "-c", count, "slots", dir], { timeoutMs: 60_000 })));
    for (const r of results) {
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/Session open refused|disabling multiplexing/);
    }
    expect(Math.max(...results.map((r) => Number(r.stdout.trim())))).toBeLessThanOrEqual(MAX_SHELLS_PER_VM);
    expect(driver.shellsInUse("d1")).toBe(0);
  });

  it("refuses a stopped or missing VM before running anything", async () => {
    await driver.create({ name: "d2", template: template(), timeoutMs: 60_000 });
    await expect(driver.exec("d2", ["true"], { timeoutMs: 10_000 })).rejects.toThrow(/d2 is Stopped/);
    await expect(driver.exec("ghost", ["true"], { timeoutMs: 10_000 })).rejects.toThrow(NotFoundError);
    // skipStatusCheck: the stopped VM is recognised from limactl's own error (one call)
    await expect(driver.exec("d2", ["true"], { timeoutMs: 10_000, skipStatusCheck: true })).rejects.toThrow(VmUnavailableError);
  });

  // Point 1: `limactl start NAME` for a missing NAME creates it from template:default (lima
  // cmd/limactl/start.go:316-322); the stand-in does too.
  it("start never creates a VM", async () => {
    await expect(driver.start("typo", { timeoutMs: 30_000 })).rejects.toThrow(NotFoundError);
    expect(fs.existsSync(path.join(t.limaHome, "typo"))).toBe(false);
    expect((await limactl(t, ["list", "--json", "typo"])).code).toBe(1);
  });

  // Point 2: with rsync on host and guest, `limactl copy -r` uses rsync and appends `/` to the paths (lima
  // pkg/copytool/copytool.go:70-90, rsync.go:155-166): a file copied out fails with exit 23, a folder copied into an
  // existing one is merged. The driver's copies have one meaning whatever is installed.
  it("copies files and folders with the same result whether or not rsync is installed", async () => {
    if (!onPath("rsync")) throw new Error("this test needs rsync on the host (the stand-in then uses it, like Lima)");
    const src = path.join(t.tmp, "cp-src");
    fs.mkdirSync(path.join(src, "tree", "sub"), { recursive: true });
    fs.writeFileSync(path.join(src, "in.txt"), "hello copy\n");
    fs.writeFileSync(path.join(src, "tree", "sub", "b.txt"), "b\n");
    fs.symlinkSync("sub/b.txt", path.join(src, "tree", "link"));
    const calls = path.join(t.tmp, "copy-calls.jsonl");
    const d = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.fabrikHome, "cache"), env: { ...t.env, LIMACTL_STANDIN_CALL_LOG: calls } });
    const g = `${user.home}/cp`;
    await d.exec("d1", ["mkdir", "-p", g], { timeoutMs: 10_000 });
    await d.copyIn("d1", [path.join(src, "in.txt"), path.join(src, "tree")], g, { timeoutMs: 30_000 });
    const listing = await d.exec("d1", ["sh", "-c", 'cd "$1" && find . | sort && cat in.txt tree/sub/b.txt && readlink tree/link && stat -c %U in.txt', "ls", g], { timeoutMs: 10_000 });
    expect(listing.stdout).toBe(`.\n./in.txt\n./tree\n./tree/link\n./tree/sub\n./tree/sub/b.txt\nhello copy\nb\nsub/b.txt\n${user.name}\n`);

    // a single file out: the copy IS the target path
    const back = path.join(t.tmp, "back.txt");
    await d.copyOut("d1", `${g}/in.txt`, back, { timeoutMs: 30_000 });
    expect(fs.readFileSync(back, "utf8")).toBe("hello copy\n");
    // a folder out onto an existing folder: merged into it (the local driver's meaning), never nested
    const existing = path.join(t.tmp, "existing");
    fs.mkdirSync(existing);
    fs.writeFileSync(path.join(existing, "keep.txt"), "kept\n");
    await d.copyOut("d1", `${g}/tree`, existing, { timeoutMs: 30_000 });
    expect(fs.readdirSync(existing).sort()).toEqual(["keep.txt", "link", "sub"]);
    expect(fs.readlinkSync(path.join(existing, "link"))).toBe("sub/b.txt");
    // a missing guest path is an error that names it
    await expect(d.copyOut("d1", `${g}/nope`, path.join(t.tmp, "nope"), { timeoutMs: 30_000 })).rejects.toThrow(/nope/);
    expect(fs.existsSync(path.join(t.tmp, "nope"))).toBe(false);
    expect(fs.readdirSync(t.tmp).filter((n) => n.startsWith(".fabrik-copy-"))).toEqual([]);
    // The driver never ran `limactl copy` (whose result depends on rsync): it streamed tar through `limactl shell`.
    // What `limactl copy -r` does here instead is pinned by the contract tests (lima-contract.test.ts).
    const verbs = fs.readFileSync(calls, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { argv: string[] }).argv.find((a) => !a.startsWith("-")));
    expect(verbs).not.toContain("copy");
    expect(verbs).not.toContain("cp");
  });

  // Point 6: Lima's `errors` are Go error structs in JSON (`{}`, `{"Op":…,"Path":…,"Err":2}`), as the stand-in's are;
  // their text is in limactl's stderr warning (lima cmd/limactl/list.go:276).
  it("reports a Broken VM's errors as text, whatever shape Lima gives them", async () => {
    const home = fs.realpathSync(t.limaHome);
    fs.mkdirSync(path.join(home, "probe")); // no lima.yaml: *fs.PathError
    fs.mkdirSync(path.join(home, "halfway")); // a host agent without its driver: errors.New → {}
    fs.copyFileSync(template(), path.join(home, "halfway", "lima.yaml"));
    const agent = spawn("bash", ["-c", "sleep 300; exit 0", "unshare", path.join(home, "halfway")], { detached: true, stdio: "ignore" });
    try {
      await waitFor(() => fs.readFileSync(`/proc/${agent.pid}/cmdline`, "utf8").includes("halfway"), { timeoutMs: 10_000, intervalMs: 20, what: "the fake host agent" });
      fs.writeFileSync(path.join(home, "halfway", "ha.pid"), `${agent.pid}\n`);
      const byName = Object.fromEntries((await driver.list({ timeoutMs: 20_000 })).map((i) => [i.name, i]));
      expect(byName.probe).toMatchObject({ status: "Broken", errors: [`open ${path.join(home, "probe", "lima.yaml")}: no such file or directory`] });
      expect(byName.halfway).toMatchObject({ status: "Broken", errors: ["host agent is running but driver is not"] });
      expect(await driver.inspect("halfway", { timeoutMs: 20_000 })).toMatchObject({ errors: ["host agent is running but driver is not"] });
    } finally {
      // Its whole group (detached: bash and the sleep it forked), or the sleep outlives the test.
      process.kill(-agent.pid!, "SIGKILL");
      for (const n of ["probe", "halfway"]) fs.rmSync(path.join(home, n), { recursive: true, force: true });
    }
  });

  it("checks limactl is present and recent enough", async () => {
    const none = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.tmp, "c1"), env: { PATH: "/nonexistent" } });
    await expect(none.ensureLimactl()).rejects.toThrow(PrerequisiteError);
    const old = new LimaDriver({ limactl: "limactl", cacheDir: path.join(t.tmp, "c2"), env: { ...t.env, LIMACTL_STANDIN_VERSION: "2.0.3" } });
    await expect(old.ensureLimactl()).rejects.toThrow(/Lima 2\.0\.3 is too old: fabrik needs limactl >= 2\.1\.0/);
  });
});
