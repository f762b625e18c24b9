/**
 * Lima's own tests, as a contract the `lima` driver relies on, run against the stand-in (scripts/limactl-standin).
 *
 * Every assertion is taken from Lima's suites at lima-vm/lima v2.2.0-153 (`183a60d7`) — `hack/bats/tests/list.bats`,
 * `shell.bats`, `protect.bats`, `copy.bats`, the identifier tests (`pkg/identifiers/validate_test.go`) and the CLI
 * checks of `hack/test-templates.sh` — and cites the test and the Lima source line that makes it true. Assertions on
 * features fabrik does not use (`--yq`, `--filter`, `clone`, the `lima` wrapper, TTY colours) are left out. If the
 * stand-in drifts from Lima on any of these, this file fails in `npm test`.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { vmNameProblem } from "../../vm/names.js";
import { STANDIN, missingPrereqs, onPath, titled } from "../helpers/prereq.js";
import { LIMACTL, STANDIN_DIR } from "../helpers/cli.js";
import { run, type ProcResult } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

const SKIP = missingPrereqs(...STANDIN);

let limaHome = "";
let work = "";

function limactl(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<ProcResult> {
  return run(LIMACTL, args, {
    env: { ...process.env, LIMA_HOME: limaHome, PATH: `${STANDIN_DIR}:${process.env.PATH}`, LIMACTL_STANDIN_CALL_LOG: "", ...opts.env },
    input: opts.input ?? "",
    timeoutMs: 60_000,
    cwd: work,
  });
}
const lines = (s: string) => s.split("\n").filter((l) => l !== "");
/** bats `assert_warning` etc. (hack/bats/helpers/logs.bash): a logrus text line at that level with that message. */
const logLine = (level: string, msg: string) => `level=${level} msg=${JSON.stringify(msg)}`;

/** `create_dummy_instance NAME '.disk = "…"'` (hack/bats/helpers/limactl.bash:6-16): a template from stdin. */
async function createDummy(name: string, disk: string): Promise<void> {
  const r = await limactl(["create", "--name", name, "-"], { input: `images: [{location: /etc/profile}]\ndisk: ${JSON.stringify(disk)}\n` });
  expect(r.code, r.stderr).toBe(0);
}

describe.skipIf(SKIP)(titled("Lima's own tests against the limactl stand-in (the driver's contract)", SKIP), () => {
  beforeAll(async () => {
    limaHome = tempDir("lima-contract-");
    work = tempDir("lima-contract-work-");
    // list.bats:10-17 local_setup_file
    await createDummy("foo", "1M");
    await createDummy("bar", "2M");
    await createDummy("baz", "3M");
    // shell.bats / protect.bats: INSTANCE=bats-dummy (helpers/limactl.bash:32)
    await createDummy("bats-dummy", "1M");
    // copy.bats: INSTANCE=bats, `limactl start --yes --name bats template:default` (helpers/limactl.bash:30)
    const r = await limactl(["start", "--yes", "--name", "bats", "template:default"]);
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    for (const n of fs.existsSync(limaHome) ? fs.readdirSync(limaHome) : []) {
      if (!n.startsWith("_")) await limactl(["delete", "--force", n]);
    }
    for (const d of [limaHome, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  describe("list.bats", () => {
    // list.bats:29-33; cmd/limactl/list.go:202. The driver reads empty output as "no VMs", exit 0.
    it("list with no running instances shows a warning and exits without error", async () => {
      const empty = tempDir("lima-contract-empty-");
      const r = await limactl(["list", "--json"], { env: { LIMA_HOME: empty } });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(logLine("warning", "No instance found. Run `limactl create` to create an instance."));
    });

    // list.bats:35-46 (sorted alphabetically; `ls` is an alias); pkg/store/store.go Instances sorts the names.
    it("check plain list output", async () => {
      const r = await limactl(["ls"]);
      expect(r.code).toBe(0);
      const l = lines(r.stdout);
      expect(l[0]).toMatch(/^NAME +STATUS.+DISK/);
      expect(l.slice(1)).toEqual([
        expect.stringMatching(/^bar +Stopped.+ 2MiB/),
        expect.stringMatching(/^bats +Running/),
        expect.stringMatching(/^bats-dummy +Stopped.+ 1MiB/),
        expect.stringMatching(/^baz +Stopped.+ 3MiB/),
        expect.stringMatching(/^foo +Stopped.+ 1MiB/),
      ]);
    });

    // list.bats:48-57 (named instances in argument order); cmd/limactl/list.go:207-220.
    it("only list selected instances", async () => {
      const r = await limactl(["ls", "foo", "bar"]);
      expect(lines(r.stdout).map((l) => l.split(/\s+/)[0])).toEqual(["NAME", "foo", "bar"]);
    });

    // list.bats:59-69; cmd/limactl/list.go:214 (warning) and :105-106 (`unmatched instances`, exit 1). The driver's
    // inspect() reads exactly this as "does not exist".
    it("requesting non-existing instance is an error", async () => {
      const r = await limactl(["ls", "foo", "foobar", "bar"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(logLine("warning", "No instance matching foobar found."));
      expect(r.stderr).toContain(logLine("fatal", "unmatched instances"));
      expect(lines(r.stdout).map((l) => l.split(/\s+/)[0])).toEqual(["NAME", "foo", "bar"]);
    });

    // list.bats:71-116; cmd/limactl/list.go:114-128 (brokenInstance). The driver maps `Broken` and reads `errors`.
    it("instance directory without lima.yaml is reported as broken, not fatal", async () => {
      fs.mkdirSync(path.join(limaHome, "probe"));
      try {
        const r = await limactl(["ls", "--format", "json"]);
        expect(r.code).toBe(0);
        expect(r.stderr).toContain('level=warning msg="instance `probe` has errors');
        const l = lines(r.stdout);
        expect(l.at(-1)).toMatch(/^\{"name":"probe","hostname":"[^"]*","status":"Broken"/);
        const q = await limactl(["ls", "--quiet"]);
        expect(lines(q.stdout)).toContain("probe");
        const named = await limactl(["ls", "foo", "probe"]);
        expect(named.code).toBe(0);
        expect(lines(named.stdout)[2]).toMatch(/^probe +Broken/);
      } finally {
        fs.rmSync(path.join(limaHome, "probe"), { recursive: true, force: true });
      }
    });

    // list.bats:118-136; cmd/limactl/delete.go:80 (warning for a missing name) and :85 (a dir without lima.yaml).
    it("delete on a directory without lima.yaml is not silently ignored", async () => {
      fs.mkdirSync(path.join(limaHome, "probe"));
      try {
        const r = await limactl(["delete", "--force", "probe"]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain('level=fatal msg="instance `probe` directory');
        expect(fs.existsSync(path.join(limaHome, "probe"))).toBe(true);
        const gone = await limactl(["delete", "--force", "does-not-exist"]);
        expect(gone.code).toBe(0);
        expect(gone.stderr).toContain(logLine("warning", "Ignoring non-existent instance `does-not-exist`"));
      } finally {
        fs.rmSync(path.join(limaHome, "probe"), { recursive: true, force: true });
      }
    });

    // list.bats:138-143; cmd/limactl/list.go:264-272.
    it("--quiet option shows only names, no header", async () => {
      expect((await limactl(["list", "--quiet", "foo", "bar"])).stdout).toBe("foo\nbar\n");
    });

    // list.bats:145-152; pkg/store/instance.go:298-299 (`{{json .}}` per instance: JSON Lines, `name` first). The
    // driver parses exactly this (lima-schema.ts parseLimaList).
    it("--format json returns JSON output", async () => {
      const r = await limactl(["ls", "--format", "json", "foo", "bar"]);
      expect(lines(r.stdout)).toEqual([expect.stringMatching(/^\{"name":"foo",/), expect.stringMatching(/^\{"name":"bar",/)]);
    });

    // list.bats:154-160; cmd/limactl/list.go:163 (`--json` = `--format json`).
    it("--json is shorthand for --format json", async () => {
      expect((await limactl(["ls", "foo", "bar", "--json"])).stdout).toBe((await limactl(["ls", "foo", "bar", "--format", "json"])).stdout);
    });

    // list.bats:249-253; pkg/store/instance.go:296 (Go templates over store.FormatData; disk in bytes).
    it("Use field names in Go template format", async () => {
      expect(lines((await limactl(["ls", "foo", "bar", "--format", "{{.Name}} {{.Disk}}"])).stdout)).toEqual(["foo 1048576", "bar 2097152"]);
    });

    // list.bats:255-289; cmd/limactl/list.go (--list-fields), pkg/store/instance.go:253-262 (deprecated fields).
    it("--list-fields lists the fields; deprecated ones still work; an unknown one is fatal with no output", async () => {
      const f = lines((await limactl(["ls", "--list-fields"])).stdout);
      expect(f).toEqual(expect.arrayContaining(["Name", "CPUs", "Memory"]));
      expect(f.every((x) => /^[A-Z]/.test(x) && !x.includes(" "))).toBe(true);
      for (const d of ["HostArch", "HostOS", "IdentityFile", "LimaHome"]) expect(f).not.toContain(d);
      expect((await limactl(["ls", "foo", "--format", "{{.LimaHome}}"])).stdout).toBe(`${fs.realpathSync(limaHome)}\n`);
      const bad = await limactl(["ls", "foo", "--format", "{{.Unknown}}"]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/level=fatal.*can't evaluate field Unknown/);
      expect(bad.stdout).toBe("");
    });

    // list.bats:291-301; cmd/limactl/list.go:183.
    it("--quiet option can only be used with format --table", async () => {
      for (const format of ["json", "yaml", "{{.Name}} {{.Disk}}"]) {
        const r = await limactl(["list", "--quiet", "--format", format]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(logLine("fatal", "option --quiet can only be used with '--format table'"));
      }
    });
  });

  describe("shell.bats", () => {
    // shell.bats:8-12; cmd/limactl/shell.go:153. The driver maps it to "VM … is stopped" (lima-driver.ts limaFailure).
    it("lima stopped lima instance", async () => {
      const r = await limactl(["shell", "--tty=false", "bats-dummy", "true"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("instance `bats-dummy` is stopped");
    });

    // shell.bats:14-18 (stdin is not an answer to a prompt); cmd/limactl/shell.go:153.
    it("yes | stopped lima instance", async () => {
      const r = await limactl(["shell", "--tty=true", "bats-dummy", "true"], { input: "y\ny\ny\n" });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("instance `bats-dummy` is stopped");
    });

    // shell.bats:20-23; cmd/limactl/shell.go:106.
    it("limactl shell without --instance requires instance name as first argument", async () => {
      const r = await limactl(["shell", "--tty=false"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("requires instance name as first argument");
    });

    // shell.bats:25-45; cmd/limactl/shell.go:129. The driver maps it to NotFoundError.
    it("limactl shell nonexistent instance (positional or --instance, same message)", async () => {
      const pos = await limactl(["shell", "--tty=false", "nonexistent"]);
      const flag = await limactl(["shell", "--tty=false", "--instance", "nonexistent"]);
      for (const r of [pos, flag]) {
        expect(r.code).toBe(1);
        expect(r.stderr).toContain("does not exist");
      }
      const norm = (s: string) => s.replace(/^time="[^"]*"/gm, 'time="TIMESTAMP"');
      expect(norm(flag.stderr)).toBe(norm(pos.stderr));
    });

    // shell.bats:47-64; cmd/limactl/shell.go:67 (SetInterspersed(false)): flags only before the name, `--` ends
    // them. The driver therefore puts --tty/--workdir before the name and the command after it.
    it("flags after --instance are parsed; after `--` they are the command", async () => {
      const unknown = await limactl(["shell", "--tty=false", "--instance", "bats-dummy", "--nonexistent-flag"]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain("unknown flag");
      for (const args of [["--instance", "bats-dummy", "--"], ["bats-dummy", "--"]]) {
        const r = await limactl(["shell", "--tty=false", ...args, "--nonexistent-flag"]);
        expect(r.stderr).not.toContain("unknown flag");
      }
    });
  });

  describe("protect.bats", () => {
    // protect.bats:18-21; cmd/limactl/protect.go:36.
    it("protecting a non-existing instance fails", async () => {
      const r = await limactl(["protect", "notexist"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('level=fatal msg="failed to inspect instance `notexist`');
    });

    // protect.bats:23-33; cmd/limactl/protect.go:39-47.
    it("protecting succeeds, and again only warns", async () => {
      const r = await limactl(["protect", "bats-dummy"]);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(logLine("info", "Protected `bats-dummy`"));
      expect(fs.existsSync(path.join(limaHome, "bats-dummy", "protected"))).toBe(true);
      const again = await limactl(["protect", "bats-dummy"]);
      expect(again.code).toBe(0);
      expect(again.stderr).toContain(logLine("warning", "Instance `bats-dummy` is already protected. Skipping."));
      // list --json carries `protected`, always (pkg/limatype/lima_instance.go:47)
      expect(JSON.parse((await limactl(["list", "--json", "bats-dummy"])).stdout)).toMatchObject({ protected: true });
    });

    // protect.bats:47-51; pkg/instance/delete.go:19. fabrik's `vm delete` shows this error as is.
    it("deleting protected dummy instance fails", async () => {
      const r = await limactl(["delete", "--force", "bats-dummy"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('level=fatal msg="failed to delete instance `bats-dummy`: instance is protected');
      expect(fs.existsSync(path.join(limaHome, "bats-dummy", "protected"))).toBe(true);
    });

    // protect.bats:53-68; cmd/limactl/unprotect.go:38-45, cmd/limactl/delete.go:66.
    it("unprotecting succeeds, again only warns, and then delete succeeds", async () => {
      const r = await limactl(["unprotect", "bats-dummy"]);
      expect(r.stderr).toContain(logLine("info", "Unprotected `bats-dummy`"));
      expect(fs.existsSync(path.join(limaHome, "bats-dummy", "protected"))).toBe(false);
      expect((await limactl(["unprotect", "bats-dummy"])).stderr).toContain(logLine("warning", "Instance `bats-dummy` isn't protected. Skipping."));
      const del = await limactl(["delete", "--force", "bats-dummy"]);
      expect(del.code).toBe(0);
      expect(del.stderr).toContain('level=info msg="Deleted `bats-dummy`');
    });
  });

  describe("copy.bats", () => {
    const G = "/tmp/test_limactl_copy";
    const sh = (...cmd: string[]) => limactl(["shell", "bats", "--", ...cmd]);
    const backends = onPath("rsync") ? ["scp", "rsync"] : ["scp"];
    beforeAll(async () => {
      expect((await sh("mkdir", "-p", G)).code).toBe(0); // copy.bats:8-10
    });

    // copy.bats:16-51 (SRC DST, SRC/ DST, SRC DST/, SRC/ DST/ all nest `foo`); pkg/copytool/scp.go:40-129 and
    // rsync.go:155-166 (the trailing slashes make rsync behave like scp for these four forms).
    it.each(backends)("copy directory from host to Lima instance (%s)", async (backend) => {
      const tmp = tempDir("copy-bats-");
      fs.mkdirSync(path.join(tmp, "foo", "bar"), { recursive: true });
      const cases: [string, string, string][] = [
        [path.join(tmp, "foo"), `${G}/foo`, `${G}/foo/bar`],
        [`${path.join(tmp, "foo")}/`, `${G}/foo_src_with_slash`, `${G}/foo_src_with_slash/foo`],
        [path.join(tmp, "foo"), `${G}/foo_dst_with_slash/`, `${G}/foo_dst_with_slash/foo`],
        [`${path.join(tmp, "foo")}/`, `${G}/foo_src_dst_with_slash/`, `${G}/foo_src_dst_with_slash/foo`],
      ];
      for (const [i, [src, dst, check]] of cases.entries()) {
        if (i > 0) expect((await sh("mkdir", "-p", dst)).code).toBe(0);
        const r = await limactl(["copy", `--backend=${backend}`, "-r", src, `bats:${dst}`]);
        expect(r.code, `${src} → ${dst}: ${r.stderr}`).toBe(0);
        expect((await sh("test", "-d", check)).code, `${src} → ${dst}: ${check}`).toBe(0);
        expect((await sh("rm", "-rf", dst)).code).toBe(0);
      }
    });

    // copy.bats:53-81.
    it.each(backends)("copy directory from Lima instance to host (%s)", async (backend) => {
      const tmp = tempDir("copy-bats-");
      expect((await sh("mkdir", "-p", `${G}/foo/bar`)).code).toBe(0);
      const cases: [string, string, string][] = [
        [`${G}/foo`, path.join(tmp, "foo"), path.join(tmp, "foo", "bar")],
        [`${G}/foo/`, path.join(tmp, "foo_src_with_slash"), path.join(tmp, "foo_src_with_slash", "bar")],
        [`${G}/foo`, `${path.join(tmp, "foo_dst_with_slash")}/`, path.join(tmp, "foo_dst_with_slash", "bar")],
        [`${G}/foo/`, `${path.join(tmp, "foo_src_dst_with_slash")}/`, path.join(tmp, "foo_src_dst_with_slash", "bar")],
      ];
      for (const [src, dst, check] of cases) {
        const r = await limactl(["copy", `--backend=${backend}`, "-r", `bats:${src}`, dst]);
        expect(r.code, `${src} → ${dst}: ${r.stderr}`).toBe(0);
        expect(fs.statSync(check).isDirectory()).toBe(true);
      }
    });

    // copy.bats:83-121 (single files both ways, without -r).
    it.each(backends)("copy file from host to Lima instance and back (%s)", async (backend) => {
      const tmp = tempDir("copy-bats-");
      fs.writeFileSync(path.join(tmp, "hello.txt"), "hello\n");
      let r = await limactl(["copy", `--backend=${backend}`, path.join(tmp, "hello.txt"), `bats:${G}/hello.txt`]);
      expect(r.code, r.stderr).toBe(0);
      expect((await sh("cat", `${G}/hello.txt`)).stdout).toBe("hello\n");
      expect((await sh("bash", "-c", `echo hello2 > ${G}/hello2.txt`)).code).toBe(0);
      r = await limactl(["copy", `--backend=${backend}`, `bats:${G}/hello2.txt`, path.join(tmp, "hello2.txt")]);
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readFileSync(path.join(tmp, "hello2.txt"), "utf8")).toBe("hello2\n");
    });

    // copy.bats:123-133; pkg/copytool/copytool.go:77 (auto never picks rsync when both ends are remote).
    it("copy file from Lima instance to Lima instance (auto)", async () => {
      expect((await sh("bash", "-c", `echo hello > ${G}/hello.txt`)).code).toBe(0);
      const r = await limactl(["copy", "--backend=auto", `bats:${G}/hello.txt`, "bats:/tmp"]);
      expect(r.code, r.stderr).toBe(0);
      expect((await sh("cat", "/tmp/hello.txt")).stdout).toBe("hello\n");
    });
  });

  // pkg/identifiers/validate_test.go:34-74 (valid and invalid identifiers, maxLength 76) and
  // pkg/limatype/dirnames/dirnames.go:96-105 (no .yml/.yaml suffix). fabrik applies the same rule to every VM name
  // (src/vm/names.ts), so a name fabrik accepts, Lima accepts.
  describe("name validation (pkg/identifiers/validate_test.go)", () => {
    const valid = ["default", "Default", "TestValidIdentifiers", "default-default", "containerd.io", "foo.boo", "swarmkit.docker.io", "0912341234", "task.0.0123456789", "container.system-75-f19a.00", "underscores_are_allowed", "a".repeat(76)];
    const invalid = ["", ".foo..foo", "foo/foo", "foo/..", "foo..foo", "foo.-boo", "-foo.boo", "foo.boo-", "but__only_tasteful_underscores", "zn--e9.org", "default--default", "a".repeat(77), "foo.yaml", "foo.YML"];

    it.each(valid)("valid: %s", async (name) => {
      expect(vmNameProblem(name)).toBeUndefined();
      const r = await limactl(["shell", "--tty=false", name, "true"]);
      expect(r.stderr).toContain(`instance \`${name}\` does not exist`);
    });

    it.each(invalid)("invalid: %j", async (name) => {
      expect(vmNameProblem(name)).toBeDefined();
      if (name === "") return; // limactl shell "" is "requires instance name" (shell.bats:20-23), not a name check
      const r = await limactl(["shell", "--tty=false", "--", name, "true"]); // `--`: "-foo.boo" is no flag
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/is not a valid identifier|must not end with \.yml or \.yaml suffix/);
    });
  });

  // The CLI checks of hack/test-templates.sh, in its order, on the stand-in's VM `bats`.
  describe("hack/test-templates.sh CLI checks", () => {
    const NAME = "bats";
    const shell = (...cmd: string[]) => limactl(["shell", NAME, ...cmd]);

    // test-templates.sh:197-199 (`limactl shell NAME uname -a`, `cat /etc/os-release`); cmd/limactl/shell.go:487-496.
    it("shell runs commands with their exit status", async () => {
      expect((await shell("uname", "-a")).code).toBe(0);
      expect((await shell("cat", "/etc/os-release")).code).toBe(0);
    });

    // test-templates.sh:202-203 ("Testing that host home is not wiped out"): the instance lives in LIMA_HOME.
    it("LIMA_HOME survives start", () => {
      expect(fs.existsSync(path.join(limaHome, NAME, "lima.yaml"))).toBe(true);
    });

    // test-templates.sh:250-266 (`limactl cp NAME:/etc/hostname` == `limactl shell NAME cat /etc/hostname`),
    // :268-282 (--backend=scp), :284-299 (--backend=rsync when host and guest have it); pkg/copytool/copytool.go:56-97.
    it.each(["auto", "scp", ...(onPath("rsync") ? ["rsync"] : [])])("limactl cp --backend=%s fetches /etc/hostname", async (backend) => {
      const tmp = tempDir("tt-cp-");
      const dest = path.join(tmp, `lima-hostname-${backend}`);
      const r = await limactl(["cp", `--backend=${backend}`, `${NAME}:/etc/hostname`, dest]);
      expect(r.code, r.stderr).toBe(0);
      const expected = (await shell("cat", "/etc/hostname")).stdout;
      expect(fs.readFileSync(dest, "utf8")).toBe(expected);
      expect(expected).toBe(`lima-${NAME}\n`);
    });

    // test-templates.sh:301-314 (rsync -r -v of a host dir into the guest's /tmp/).
    it.skipIf(!onPath("rsync"))("limactl cp --backend=rsync -r -v copies a directory", async () => {
      const tmp = tempDir("tt-rsync-");
      const dir = path.join(tmp, "test-rsync-dir");
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, "testfile.txt"), "test content\n");
      const r = await limactl(["cp", "--backend=rsync", "-r", "-v", dir, `${NAME}:/tmp/`]);
      expect(r.code, r.stderr).toBe(0);
      expect((await shell("test", "-f", "/tmp/test-rsync-dir/testfile.txt")).code).toBe(0);
      expect((await shell("cat", "/tmp/test-rsync-dir/testfile.txt")).stdout).toBe("test content\n");
    });

    // test-templates.sh:319-323 (escaped characters and quotes); cmd/limactl/shell.go quotes every argument
    // (shellescape), which is why the driver passes an argv and never a command string.
    it("shell passes escaped characters and quotes through", async () => {
      expect((await shell("bash", "-c", "\n\techo foo\n\techo bar")).stdout).toBe("foo\nbar\n");
      expect((await shell("bash", "-c", "echo 'foo \"bar\"'")).stdout).toBe('foo "bar"\n');
    });

    // test-templates.sh:576, 583, 593, 609 (a file in $HOME survives stop and start); pkg/instance/stop.go.
    it("$HOME survives stop and start", async () => {
      expect((await shell("sh", "-c", "touch $HOME/sweet-home")).code).toBe(0);
      expect((await limactl(["stop", NAME])).code).toBe(0);
      const start = await limactl(["start", NAME]);
      expect(start.code, start.stderr).toBe(0);
      expect((await shell("sh", "-c", "test -f $HOME/sweet-home")).code).toBe(0);
    }, 60_000);

    // test-templates.sh:698 (`hostname` is lima-NAME); pkg/instance/hostname.
    it("the guest's hostname is lima-NAME", async () => {
      expect((await shell("hostname")).stdout).toBe(`lima-${NAME}\n`);
    });

    // test-templates.sh:231-234 (set-user: user settings come from lima.yaml, hack/test-templates/test-misc.yaml:110-116);
    // pkg/cidata/cidata.TEMPLATE.d/user-data:39-66. The driver takes the guest home from config.user.home.
    it("user settings can be provided by lima.yaml", async () => {
      const tpl = path.join(work, "test-misc.yaml");
      fs.writeFileSync(tpl, 'user:\n  name: john\n  comment: John Doe\n  home: "/home/{{.User}}-{{.User}}"\n  uid: 4711\n  shell: /usr/bin/bash\n');
      expect((await limactl(["--tty=false", "create", "--name", "misc", tpl])).code).toBe(0);
      const start = await limactl(["--tty=false", "start", "misc"]);
      expect(start.code, start.stderr).toBe(0);
      const g = await limactl(["shell", "misc", "grep", "^john:x:4711:4711:John Doe:/home/john-john:/usr/bin/bash", "/etc/passwd"]);
      expect(g.code, g.stderr).toBe(0);
      expect(JSON.parse((await limactl(["list", "--json", "misc"])).stdout).config.user).toMatchObject({ name: "john", uid: 4711, home: "/home/john-john" });
      expect((await limactl(["shell", "misc", "pwd"])).stdout).toBe("/home/john-john\n");
      expect((await limactl(["delete", "--force", "misc"])).code).toBe(0);
    }, 60_000);

    // test-templates.sh:707-711 (`limactl stop NAME`, `limactl delete NAME`); cmd/limactl/delete.go:66.
    it("stop and delete", async () => {
      expect((await limactl(["stop", NAME])).code).toBe(0);
      const d = await limactl(["delete", NAME]);
      expect(d.code).toBe(0);
      expect(d.stderr).toContain(`Deleted \`${NAME}\``);
      expect(fs.existsSync(path.join(limaHome, NAME))).toBe(false);
    });
  });
});
