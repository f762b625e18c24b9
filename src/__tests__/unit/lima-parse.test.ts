import { describe, it, expect } from "vitest";
import { parseLimaList, parseLogrusMessage, parseLimaVersion, parseSshConfig, compareVersions, MIN_LIMA_VERSION } from "../../vm/lima-driver.js";

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
});
