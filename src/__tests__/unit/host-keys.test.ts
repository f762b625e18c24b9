// known_hosts parsing and host-key verdicts (transport/host-keys.ts), and the ssh driver's pure parts
// (addresses, the remote argv, the preflight parser). Vectors below were made with OpenSSH 9.2's ssh-keygen
// (`ssh-keygen -lf`, `ssh-keygen -H`), so they check fabrik against OpenSSH, not against itself.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  HostKeyError,
  appendKnownHost,
  checkHostKey,
  entryMatches,
  hostKeyVerifier,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  readKnownHosts,
  sha256Fingerprint,
  wildcardMatch,
} from "../../vm/transport/host-keys.js";
import { addCommand, formatSshAddress, parsePreflight, parseSshAddress, remoteArgv } from "../../vm/ssh-driver.js";
import { RefusedError, UsageError } from "../../core/errors.js";
import { HOSTILE } from "../helpers/hostile-strings.js";

const ED = "AAAAC3NzaC1lZDI1NTE5AAAAIExGbzkuluiV5DaLPpSoW5+5Q2JYq5+TwYgxBiLZhGEQ";
const ED_FP = "SHA256:EgbKnh/HBtd7IbYoga9GBJRXGix0wa6tL4g39XPWdmk";
const EC = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKWYlMED73+AeJHLq2yaEes24fIjW2Z62jJgWgHizVRSIYOuPDhGFNj2eKQrKN6zMlnftDvUzC6tfx9DRAQtQVs=";
const EC_FP = "SHA256:Dp8DMv562R/2EbrsmEp0sFccXFgSYupB/Nr11/j8f9Y";
/** ED, hashed by `ssh-keygen -H` for `[127.0.0.1]:2222` and for `build-1.example.com`. */
const HASHED_2222 = `|1|+KmfgUzagP0MsSW1atxKnHds5u8=|4c8+FYILuWAeoSjhE8hWFSuMu48= ssh-ed25519 ${ED}`;
const HASHED_BUILD1 = `|1|HQDWB5EIaDFerIgs5AI5AdEQ6hc=|trSWCyJEBjk+IBf+SgEO/Vwcp98= ssh-ed25519 ${ED}`;
const ed = Buffer.from(ED, "base64");
const ec = Buffer.from(EC, "base64");
/** Another ed25519 key (same type as ED, different key): a "changed" host key. */
const ED2 = Buffer.concat([ed.subarray(0, ed.length - 1), Buffer.from([ed[ed.length - 1]! ^ 1])]);

describe("fingerprints and names (as OpenSSH prints them)", () => {
  it("SHA256 fingerprints equal ssh-keygen -lf", () => {
    expect(sha256Fingerprint(ed)).toBe(ED_FP);
    expect(sha256Fingerprint(ec)).toBe(EC_FP);
    expect(keyTypeOf(ed)).toBe("ssh-ed25519");
    expect(keyTypeOf(ec)).toBe("ecdsa-sha2-nistp256");
    expect(keyTypeOf(Buffer.from("xx"))).toBe("unknown");
  });
  it("port 22 is the bare host, other ports [host]:port, lower-cased", () => {
    expect(knownHostsName("Build-1.example.com", 22)).toBe("build-1.example.com");
    expect(knownHostsName("127.0.0.1", 2222)).toBe("[127.0.0.1]:2222");
  });
  it("wildcards and negation", () => {
    expect(wildcardMatch("*.example.com", "build-1.example.com")).toBe(true);
    expect(wildcardMatch("build-?.example.com", "build-1.example.com")).toBe(true);
    expect(wildcardMatch("build-?.example.com", "build-12.example.com")).toBe(false);
    expect(wildcardMatch("[127.0.0.1]:*", "[127.0.0.1]:2222")).toBe(true);
    expect(entryMatches({ hosts: ["*.example.com", "!evil.example.com"] }, "evil.example.com")).toBe(false);
    expect(entryMatches({ hosts: ["*.example.com", "!evil.example.com"] }, "good.example.com")).toBe(true);
  });
  it("hashed names match exactly the name they were hashed from", () => {
    const [e2222, eBuild] = parseKnownHosts(`${HASHED_2222}\n${HASHED_BUILD1}\n`);
    expect(entryMatches(e2222!, "[127.0.0.1]:2222")).toBe(true);
    expect(entryMatches(e2222!, "[127.0.0.1]:2223")).toBe(false);
    expect(entryMatches(eBuild!, "build-1.example.com")).toBe(true);
    expect(entryMatches(eBuild!, "127.0.0.1")).toBe(false);
  });
});

describe("parseKnownHosts", () => {
  it("skips comments, blanks, @cert-authority, malformed lines and blobs that contradict their type", () => {
    const text = [
      "# comment",
      "",
      `@cert-authority *.example.com ssh-ed25519 ${ED}`,
      `bad-line-without-key`,
      `host1 ssh-rsa ${ED}`, // says rsa, blob is ed25519
      `host2 ssh-ed25519 !!notbase64`,
      `host3,host4 ssh-ed25519 ${ED} comment words`,
      `@revoked * ecdsa-sha2-nistp256 ${EC}`,
    ].join("\n");
    const e = parseKnownHosts(text);
    expect(e.map((x) => [x.line, x.marker, x.hosts, x.keyType])).toEqual([
      [7, null, ["host3", "host4"], "ssh-ed25519"],
      [8, "revoked", ["*"], "ecdsa-sha2-nistp256"],
    ]);
  });
});

describe("checkHostKey", () => {
  const file = `[127.0.0.1]:2222 ssh-ed25519 ${ED}\nbuild-1.example.com ecdsa-sha2-nistp256 ${EC}\n`;
  const entries = parseKnownHosts(file);
  it("known: the same key for the same name", () => {
    expect(checkHostKey(entries, "127.0.0.1", 2222, ed)).toEqual({ kind: "known", line: 1 });
    expect(checkHostKey(parseKnownHosts(HASHED_2222), "127.0.0.1", 2222, ed)).toEqual({ kind: "known", line: 1 });
  });
  it("unknown: another port is another host; known types of the host are listed", () => {
    expect(checkHostKey(entries, "127.0.0.1", 2223, ed)).toEqual({ kind: "unknown", otherTypes: [] });
    expect(checkHostKey(entries, "build-1.example.com", 22, ed)).toEqual({ kind: "unknown", otherTypes: ["ecdsa-sha2-nistp256"] });
  });
  it("changed: a different key of the same type", () => {
    expect(checkHostKey(entries, "127.0.0.1", 2222, ED2)).toEqual({ kind: "changed", line: 1, knownFingerprint: ED_FP });
  });
  it("revoked wins over known", () => {
    const e = parseKnownHosts(`build-1.example.com ecdsa-sha2-nistp256 ${EC}\n@revoked * ecdsa-sha2-nistp256 ${EC}\n`);
    expect(checkHostKey(e, "build-1.example.com", 22, ec)).toEqual({ kind: "revoked", line: 2 });
  });
  it("asks for the known key types first", () => {
    expect(knownKeyTypes(entries, "build-1.example.com", 22)).toEqual(["ecdsa-sha2-nistp256"]);
    expect(preferredHostKeyAlgorithms(["ecdsa-sha2-nistp256"])[0]).toBe("ecdsa-sha2-nistp256");
    expect(preferredHostKeyAlgorithms(["ssh-rsa"]).slice(0, 3)).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
    expect(new Set(preferredHostKeyAlgorithms([])).size).toBe(preferredHostKeyAlgorithms([]).length);
  });
});

describe("hostKeyVerifier (the policy a connection applies)", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-kh-"));
    file = path.join(dir, "sub", "known_hosts");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const policy = (acceptNew: boolean) => ({ knownHostsFile: file, acceptNew, acceptHint: "accept it with `fabrik vm add v --ssh u@h --accept-new-host-key`" });

  it("an unknown key is refused with its type, SHA256 fingerprint, the file and the flag; nothing is written", () => {
    const v = hostKeyVerifier("v", "127.0.0.1", 2222, policy(false));
    expect(v.verify(ed)).toBe(false);
    const err = v.refusal()!;
    expect(err).toBeInstanceOf(HostKeyError);
    expect(err).toBeInstanceOf(RefusedError);
    expect(err.kind).toBe("refused");
    expect(err.message).toBe(`VM v: the host key of 127.0.0.1:2222 is not known: ED25519 key ${ED_FP} is not in ${file}`);
    expect(err.hint).toContain("--accept-new-host-key");
    expect(err.reasons).toEqual(["HOST_KEY_UNKNOWN"]);
    expect(fs.existsSync(file)).toBe(false);
  });
  it("accept-new records an unknown key (0600 file in a 0700 folder) and accepts it from then on", () => {
    const v = hostKeyVerifier("v", "127.0.0.1", 2222, policy(true));
    expect(v.verify(ed)).toBe(true);
    expect(v.outcome()).toEqual({ host: "127.0.0.1", port: 2222, keyType: "ssh-ed25519", fingerprint: ED_FP, added: true });
    expect(fs.readFileSync(file, "utf8")).toBe(`[127.0.0.1]:2222 ssh-ed25519 ${ED}\n`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const again = hostKeyVerifier("v", "127.0.0.1", 2222, policy(false));
    expect(again.verify(ed)).toBe(true);
    expect(again.outcome()?.added).toBe(false);
  });
  it("a changed key is refused even with accept-new, naming both fingerprints and how to remove the old one", () => {
    appendKnownHost(file, "127.0.0.1", 2222, ed);
    const before = fs.readFileSync(file, "utf8");
    const v = hostKeyVerifier("v", "127.0.0.1", 2222, policy(true));
    expect(v.verify(ED2)).toBe(false);
    const err = v.refusal()!;
    expect(err.verdict).toBe("changed");
    expect(err.message).toContain("has CHANGED");
    expect(err.message).toContain(sha256Fingerprint(ED2));
    expect(err.message).toContain(ED_FP);
    expect(err.hint).toContain(`ssh-keygen -R '[127.0.0.1]:2222' -f ${file}`);
    expect(fs.readFileSync(file, "utf8")).toBe(before);
  });
  it("appends after a last line without a newline", () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `other ssh-ed25519 ${ED}`);
    appendKnownHost(file, "127.0.0.1", 2222, ec);
    expect(readKnownHosts(file).map((e) => e.hosts[0])).toEqual(["other", "[127.0.0.1]:2222"]);
  });
});

describe("ssh driver: addresses, argv, preflight", () => {
  const opts = { flag: "--ssh", defaultUser: "me", allowPort: false };
  it("parses USER@HOST, bracketed IPv6 and a default user", () => {
    expect(parseSshAddress("ubuntu@build-1.example.com", opts)).toEqual({ user: "ubuntu", host: "build-1.example.com", port: 22 });
    expect(parseSshAddress("root@[::1]", { ...opts, defaultPort: 2222 })).toEqual({ user: "root", host: "::1", port: 2222 });
    expect(parseSshAddress("10.0.0.7", opts)).toEqual({ user: "me", host: "10.0.0.7", port: 22 });
    expect(parseSshAddress("j@bastion:2200", { ...opts, flag: "--jump", allowPort: true })).toEqual({ user: "j", host: "bastion", port: 2200 });
    expect(formatSshAddress({ user: "root", host: "::1", port: 22 })).toBe("root@[::1]:22");
  });
  it.each(["", "-oProxyCommand=id@x", "u@-x", "u@h:22", "u@h h", "u@h;id", "u@$(id)", "u@h/x", "a@b@c"])("refuses %j as a usage error", (bad) => {
    expect(() => parseSshAddress(bad, opts)).toThrow(UsageError);
  });
  it("refuses a port outside 1..65535 in --jump", () => {
    expect(() => parseSshAddress("j@h:0", { ...opts, allowPort: true })).toThrow(UsageError);
    expect(() => parseSshAddress("j@h:65536", { ...opts, allowPort: true })).toThrow(UsageError);
  });
  it("remoteArgv adds cwd and env as argv, never as shell text", () => {
    expect(remoteArgv(["ls", "-la"], {})).toEqual(["ls", "-la"]);
    expect(remoteArgv(["A=1"], {})).toEqual(["env", "--", "A=1"]);
    const evil = HOSTILE[7]!;
    expect(remoteArgv(["printf", "%s", evil], { cwd: "/tmp/a b", env: { X: evil } })).toEqual(["sh", "-c", 'cd "$1" || exit 1; shift; exec "$@"', "fabrik-cd", "/tmp/a b", "env", "--", `X=${evil}`, "printf", "%s", evil]);
  });
  it("addCommand quotes what it repeats back", () => {
    expect(addCommand("v", { user: "u", host: "h", port: 2222, identityFile: "/k dir/id", knownHostsFile: null, jump: { user: "j", host: "b", port: 22 } })).toBe(
      "fabrik vm add v --ssh u@h --port 2222 --identity '/k dir/id' --jump j@b:22",
    );
  });
  it("parsePreflight keeps absolute paths and known tool names only, and needs an absolute home", () => {
    const f = parsePreflight("v", "home=/home/u\nuname=Linux x86_64\nmissing=flock\nmissing=rm -rf /\nbun=\nnode=/usr/bin/node\nnpm=relative/npm\nnoise\n");
    expect(f).toEqual({ home: "/home/u", uname: "Linux x86_64", missing: ["flock"], bun: null, node: "/usr/bin/node", npm: null });
    expect(() => parsePreflight("v", "home=\n")).toThrow(/absolute home/);
  });
});
