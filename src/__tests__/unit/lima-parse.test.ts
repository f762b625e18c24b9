import { describe, it, expect } from "vitest";
import { parseLogrusMessage, parseLimaVersion, parseSshConfig, compareVersions, MIN_LIMA_VERSION, parseListErrorWarnings } from "../../vm/lima-driver.js";
import { limaErrorTexts, parseLimaList } from "../../vm/lima-schema.js";
import { LIMA_LONGEST_SOCK, limaSocketPathProblem, unixPathMax, vmNameProblem } from "../../vm/names.js";
import { RemotePidReader, killArgv, withPidPreamble } from "../../vm/remote-group.js";

describe("limactl output parsing (lima-contract.md)", () => {
  it("parses JSON Lines from list --json, keeping unknown keys", () => {
    const out =
      '{"name":"fabrik-a","hostname":"lima-fabrik-a","status":"Running","dir":"/h/.lima/fabrik-a","vmType":"qemu","arch":"x86_64","cpus":4,"memory":4294967296,"disk":21474836480,"sshLocalPort":41235,"sshConfigFile":"/h/.lima/fabrik-a/ssh.config","config":{"user":{"name":"alice","home":"/home/alice.guest"}},"protected":false,"limaVersion":"v2.2.0"}\n' +
      '{"name":"fabrik-b","status":"Stopped","dir":"/h/.lima/fabrik-b","config":{}}\n';
    const l = parseLimaList(out);
    expect(l.map((i) => [i.name, i.status])).toEqual([
      ["fabrik-a", "Running"],
      ["fabrik-b", "Stopped"],
    ]);
    expect(l[0]!.config?.user?.home).toBe("/home/alice.guest");
    expect((l[0] as Record<string, unknown>).limaVersion).toBe("v2.2.0");
    expect(parseLimaList("")).toEqual([]);
    expect(() => parseLimaList("not json\n")).toThrow();
    expect(() => parseLimaList('{"status":"Running"}\n')).toThrow();
  });

  it("turns logrus stderr into the message (text, JSON and TTY formats; v2.2 backticks)", () => {
    expect(parseLogrusMessage('time="2026-08-21T10:00:00Z" level=fatal msg="instance `N` does not exist, run `limactl create N` to create a new instance"\n', "fatal")).toBe(
      "instance `N` does not exist, run `limactl create N` to create a new instance",
    );
    expect(parseLogrusMessage('time="x" level=fatal msg="a \\"quoted\\" word"')).toBe('a "quoted" word');
    expect(parseLogrusMessage('{"level":"fatal","msg":"instance \\"N\\" is stopped","time":"x"}')).toBe('instance "N" is stopped');
    expect(parseLogrusMessage("FATA[0000] instance `N` is stopped, run `limactl start N` to start the instance")).toBe("instance `N` is stopped, run `limactl start N` to start the instance");
    expect(parseLogrusMessage('time="x" level=warning msg="w"\ntime="x" level=fatal msg="f"', "warning")).toBe("w");
    expect(parseLogrusMessage("plain guest stderr")).toBeUndefined();
  });

  it("reads limactl --version and compares with the minimum", () => {
    expect(parseLimaVersion("limactl version 2.2.0\n")).toBe("2.2.0");
    expect(parseLimaVersion("limactl version 2.2.0-153-g183a60d7")).toBe("2.2.0-153-g183a60d7");
    expect(parseLimaVersion("something else")).toBeUndefined();
    expect(compareVersions("2.2.0-153-g183a60d7", MIN_LIMA_VERSION)).toBeGreaterThan(0);
    expect(compareVersions("2.0.3", MIN_LIMA_VERSION)).toBeLessThan(0);
    expect(compareVersions("v2.1.0", "2.1.0")).toBe(0);
  });

  it("reads host, port, user and identity from Lima's ssh.config", () => {
    const cfg = `# This SSH config file can be passed to 'ssh -F'.
Host lima-N
  IdentityFile "/home/alice/.lima/_config/user"
  StrictHostKeyChecking no
  User alice
  ControlMaster auto
  ControlPath "/home/alice/.lima/N/ssh.sock"
  Hostname 127.0.0.1
  Port 41235
`;
    expect(parseSshConfig(cfg)).toEqual({ host: "127.0.0.1", port: 41235, user: "alice", identityFile: "/home/alice/.lima/_config/user" });
    expect(parseSshConfig("Host x\n  Hostname 127.0.0.1\n")).toBeUndefined();
  });

  // Issue 12, point 6: real Lima emits Go error values in `list --json` (`{}`, `{"Op":…,"Path":…,"Err":2}`), not
  // strings: store.FormatData embeds the Instance by value (lima pkg/store/instance.go:270), so
  // (*Instance).MarshalJSON (pkg/limatype/lima_instance.go:77) does not apply.
  it("reads `errors` in both shapes: strings, and Go error structs with their text from the stderr warning", () => {
    expect(limaErrorTexts(["host agent is running but driver is not"])).toEqual(["host agent is running but driver is not"]);
    expect(limaErrorTexts([{ Op: "open", Path: "/h/.lima/probe/lima.yaml", Err: 2 }])).toEqual(["open /h/.lima/probe/lima.yaml: no such file or directory"]);
    expect(limaErrorTexts([{ Op: "read", Path: "/x", Err: 13 }])).toEqual(["read /x: permission denied"]);
    expect(limaErrorTexts([{}], "host agent is running but driver is not")).toEqual(["host agent is running but driver is not"]);
    expect(limaErrorTexts([{}, { Func: "Atoi", Num: "abc", Err: {} }])).toEqual(["Lima reported 2 errors without text in JSON; see `limactl list`"]);
    expect(limaErrorTexts(undefined)).toEqual([]);
    expect(limaErrorTexts(null)).toEqual([]);
    expect(limaErrorTexts([null, "x"])).toEqual(["x"]);
    // the whole line parses, whatever the shape of `errors`
    const [i] = parseLimaList('{"name":"probe","hostname":"","status":"Broken","dir":"/h/.lima/probe","vmType":"","arch":"","errors":[{"Op":"open","Path":"/h/.lima/probe/lima.yaml","Err":2}]}\n');
    expect(limaErrorTexts(i!.errors)).toEqual(["open /h/.lima/probe/lima.yaml: no such file or directory"]);
    const stderr = [
      'time="x" level=warning msg="instance `halfway` has errors" errors="[host agent is running but driver is not]"',
      'time="x" level=warning msg="instance `numerr` has errors" errors="[strconv.Atoi: parsing \\"abc\\": invalid syntax]"',
      'time="x" level=warning msg="instance \\"old\\" has errors" errors="[a b]"',
      'time="x" level=warning msg="No instance matching x found."',
    ].join("\n");
    expect(Object.fromEntries(parseListErrorWarnings(stderr))).toEqual({
      halfway: "host agent is running but driver is not",
      numerr: 'strconv.Atoi: parsing "abc": invalid syntax',
      old: "a b",
    });
  });

  // Issue 12, point 7: UNIX_PATH_MAX is 104 on macOS (lima pkg/osutil/osutil_others.go:14), 108 on Linux
  // (osutil_linux.go:12); `$LIMA_HOME/<name>/ssh.sock.1234567890123456` must stay under it (pkg/instance/create.go:38-43).
  it("computes the name limit for the host OS and the real LIMA_HOME", () => {
    expect(unixPathMax("darwin")).toBe(104);
    expect(unixPathMax("linux")).toBe(108);
    expect(LIMA_LONGEST_SOCK).toBe("ssh.sock.1234567890123456");
    const home = "/Users/alice/.lima"; // 18 bytes: names up to 104 - 1 - 18 - 2 - 25 = 58 fit on macOS
    const name = (n: number) => "a".repeat(n);
    expect(limaSocketPathProblem(name(58), home, "darwin")).toBeUndefined();
    expect(limaSocketPathProblem(name(59), home, "darwin")).toMatch(/must stay under 104: with this LIMA_HOME a VM name may have at most 58 characters/);
    expect(limaSocketPathProblem(name(62), home, "linux")).toBeUndefined();
    expect(limaSocketPathProblem(name(63), home, "linux")).toMatch(/under 108/);
    // a name fabrik's own rule accepts (≤ 76) can still be too long for Lima on a Mac: the bug this closes
    expect(vmNameProblem(name(70))).toBeUndefined();
    expect(limaSocketPathProblem(name(70), home, "darwin")).toBeDefined();
    // bytes, not characters
    expect(limaSocketPathProblem(name(58), "/Users/ålice/.lima", "darwin")).toBeDefined();
  });

  it("takes the remote pid line out of stderr, wherever limactl's own lines put it", () => {
    const r = new RemotePidReader();
    const out = Buffer.concat([r.feed(Buffer.from("time=x level=warning msg=w\nfabrik-p")), r.feed(Buffer.from("id 4242\nreal stderr\n")), r.flush()]).toString();
    expect(r.pid).toBe(4242);
    expect(out).toBe("time=x level=warning msg=w\nreal stderr\n");
    const none = new RemotePidReader();
    expect(Buffer.concat([none.feed(Buffer.from("no pid line, no newline")), none.flush()]).toString()).toBe("no pid line, no newline");
    expect(none.pid).toBeUndefined();
    // after the pid line nothing is parsed: a command cannot announce another pid
    const later = new RemotePidReader();
    const rest = Buffer.concat([later.feed(Buffer.from("fabrik-pid 1\nfabrik-pid 2\n")), later.flush()]).toString();
    expect(later.pid).toBe(1);
    expect(rest).toBe("fabrik-pid 2\n");
    expect(withPidPreamble(["a b"])).toEqual(["sh", "-c", expect.stringContaining('exec "$@"'), "fabrik-exec", "a b"]);
    expect(killArgv(12)).toEqual(["sh", "-c", expect.stringContaining('kill -9 "-$pg"'), "fabrik-kill", "12"]);
  });
});
