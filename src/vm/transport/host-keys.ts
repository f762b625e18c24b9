/**
 * Host-key verification for the `ssh` driver, against an OpenSSH `known_hosts` file (`sshd(8)` "SSH_KNOWN_HOSTS
 * FILE FORMAT", OpenSSH's `hostfile.c`/`match.c`): what `ssh -o StrictHostKeyChecking=yes` (or `accept-new` with
 * `--accept-new-host-key`) decides, without running `ssh`.
 *
 * - A host is named as OpenSSH names it: `host` on port 22, `[host]:port` otherwise (lower-cased).
 * - An entry's first field is a comma-separated list of patterns (`*`, `?` wildcards, `!` negation), or a hashed
 *   name `|1|<base64 salt>|<base64 HMAC-SHA1(salt, name)>`.
 * - `@revoked` entries refuse their key for every host they match; `@cert-authority` entries are skipped (fabrik
 *   does not accept host certificates).
 * - Verdicts: `known` (an entry holds this exact key); `changed` (an entry holds a different key of the SAME type:
 *   always refused, whatever the flags); `revoked`; `unknown` (no entry for this key type; refused unless the
 *   caller accepts new keys, which appends a line `[host]:port type base64` to the file, like `accept-new`).
 *
 * Key blobs are the SSH wire encoding (what ssh2 hands a host verifier and what known_hosts carries in base64);
 * a fingerprint is OpenSSH's `SHA256:<base64 without padding>` of the blob.
 *
 * Lima's own loopback VMs are NOT checked here: their keys come from Lima's ssh.config
 * (`StrictHostKeyChecking no`, lima-contract §3), and the transport connects to them without a verifier.
 */
import { createHash, createHmac } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { RefusedError } from "../../core/errors.js";

/** One usable line of a known_hosts file. */
export interface KnownHostEntry {
  /** 1-based line number, for messages. */
  line: number;
  /** `revoked` for `@revoked` lines; null for plain lines (`@cert-authority` lines are not returned). */
  marker: "revoked" | null;
  /** The host patterns (plain entries) or the one hashed name (`|1|…`). */
  hosts: readonly string[];
  /** Key type as written (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …). */
  keyType: string;
  /** The key's wire encoding (decoded base64). */
  key: Buffer;
}

/** What a known_hosts file says about a presented host key. */
export type HostKeyVerdict =
  | { kind: "known"; line: number }
  | { kind: "changed"; line: number; knownFingerprint: string }
  | { kind: "revoked"; line: number }
  /** No entry holds a key of this type; `otherTypes` are the types the file does know for this host. */
  | { kind: "unknown"; otherTypes: string[] };

/** The name OpenSSH writes and looks up for a host: `host` on port 22, `[host]:port` otherwise (lower-cased). */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** The key type inside a wire-encoded public key (its first SSH string), or `unknown` if it is malformed. */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return "unknown";
  const n = key.readUInt32BE(0);
  if (n <= 0 || n > 64 || key.length < 4 + n) return "unknown";
  return key.subarray(4, 4 + n).toString("latin1");
}

/** OpenSSH's fingerprint of a wire-encoded key: `SHA256:` + base64 of its SHA-256, without `=` padding. */
export function sha256Fingerprint(key: Buffer): string {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** The short name of a key type for messages (`ED25519`, `ECDSA`, `RSA`), as `ssh-keygen -l` prints it. */
export function keyTypeLabel(keyType: string): string {
  if (keyType === "ssh-ed25519") return "ED25519";
  if (keyType.startsWith("ecdsa-")) return "ECDSA";
  if (keyType === "ssh-rsa" || keyType.startsWith("rsa-")) return "RSA";
  if (keyType === "ssh-dss") return "DSA";
  return keyType;
}

/** Parse a known_hosts text: usable entries only (comments, blank, malformed and `@cert-authority` lines skipped). */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === "" || fields[0].startsWith("#")) continue;
    let marker: "revoked" | null = null;
    if (fields[0].startsWith("@")) {
      if (fields[0] !== "@revoked") continue; // @cert-authority: certificates are not accepted
      marker = "revoked";
      fields.shift();
    }
    const [hostField, keyType, b64] = fields;
    if (!hostField || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const key = Buffer.from(b64, "base64");
    if (keyTypeOf(key) !== keyType) continue; // the blob must say what the line says
    const hosts = hostField.startsWith("|1|") ? [hostField] : hostField.split(",").filter((h) => h !== "");
    out.push({ line: i + 1, marker, hosts, keyType, key });
  }
  return out;
}

/** OpenSSH's wildcard match (`*` any run, `?` one character), case-insensitive. */
export function wildcardMatch(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const s = name.toLowerCase();
  // Iterative glob with backtracking to the last `*` (linear in practice, no regex built from input).
  let pi = 0;
  let si = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === "?" || p[pi] === s[si])) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++;
      mark = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === "*") pi++;
  return pi === p.length;
}

/** Whether an entry's host field names `name` (`knownHostsName(host, port)`): a negated match wins. */
export function entryMatches(entry: Pick<KnownHostEntry, "hosts">, name: string): boolean {
  const first = entry.hosts[0];
  if (entry.hosts.length === 1 && first !== undefined && first.startsWith("|1|")) {
    const [, , salt, hash] = first.split("|");
    if (!salt || !hash) return false;
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  let matched = false;
  for (const h of entry.hosts) {
    if (h.startsWith("!")) {
      if (wildcardMatch(h.slice(1), name)) return false;
    } else if (wildcardMatch(h, name)) matched = true;
  }
  return matched;
}

/**
 * Judge `key` presented by `host:port` against `entries`.
 * Order: a matching `@revoked` entry for this key refuses; an entry with this exact key is `known`; an entry with
 * another key of the same type is `changed`; otherwise `unknown` (with the other types known for the host).
 */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const type = keyTypeOf(key);
  const mine = entries.filter((e) => entryMatches(e, name));
  const revoked = entries.find((e) => e.marker === "revoked" && e.key.equals(key) && entryMatches(e, name));
  if (revoked) return { kind: "revoked", line: revoked.line };
  const plain = mine.filter((e) => e.marker === null);
  const same = plain.find((e) => e.key.equals(key));
  if (same) return { kind: "known", line: same.line };
  const changed = plain.find((e) => e.keyType === type);
  if (changed) return { kind: "changed", line: changed.line, knownFingerprint: sha256Fingerprint(changed.key) };
  return { kind: "unknown", otherTypes: [...new Set(plain.map((e) => e.keyType))] };
}

/** The key types a known_hosts file holds for `host:port` (to ask the server for one of those first). */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  return [...new Set(entries.filter((e) => e.marker === null && entryMatches(e, name)).map((e) => e.keyType))];
}

/** Read and parse a known_hosts file; a missing file is empty. Other read errors are thrown. */
export function readKnownHosts(file: string): KnownHostEntry[] {
  try {
    return parseKnownHosts(fs.readFileSync(file, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/**
 * Append `host:port`'s key to a known_hosts file (one `O_APPEND` write, like `accept-new`), creating the file
 * (0600) and its folder (0700) when missing. A file that does not end with a newline gets one first.
 */
export function appendKnownHost(file: string, host: string, port: number, key: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(file, "a+", 0o600);
  try {
    const size = fs.fstatSync(fd).size;
    let lead = "";
    if (size > 0) {
      const last = Buffer.alloc(1);
      fs.readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 10) lead = "\n";
    }
    fs.writeSync(fd, `${lead}${knownHostsName(host, port)} ${keyTypeOf(key)} ${key.toString("base64")}\n`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Port 22 needs no brackets in `ssh-keygen -R`. */
function keygenName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/**
 * A host key fabrik will not accept (kind `refused`, exit 5): unknown (without `--accept-new-host-key`), changed,
 * or revoked. The message carries the presented key's type and SHA256 fingerprint; the hint the next step.
 */
export class HostKeyError extends RefusedError {
  readonly verdict: HostKeyVerdict["kind"];
  /** The presented key's fingerprint (`SHA256:…`). */
  readonly fingerprint: string;
  readonly keyType: string;
  readonly knownHostsFile: string;

  constructor(opts: { vm: string; host: string; port: number; key: Buffer; verdict: Exclude<HostKeyVerdict, { kind: "known" }>; knownHostsFile: string; acceptHint: string }) {
    const fp = sha256Fingerprint(opts.key);
    const type = keyTypeOf(opts.key);
    const label = keyTypeLabel(type);
    const where = `${opts.host}:${opts.port}`;
    const v = opts.verdict;
    let message: string;
    let hint: string;
    let reason: string;
    if (v.kind === "changed") {
      reason = "HOST_KEY_CHANGED";
      message =
        `VM ${opts.vm}: the host key of ${where} has CHANGED: it now presents ${label} key ${fp}, but ${opts.knownHostsFile} line ${v.line} ` +
        `holds ${v.knownFingerprint}. Someone may be intercepting the connection, or the machine was reinstalled; fabrik refuses to connect`;
      hint = `if the machine's owner confirms the new key, remove the old one with \`ssh-keygen -R '${keygenName(opts.host, opts.port)}' -f ${opts.knownHostsFile}\`, then ${opts.acceptHint}`;
    } else if (v.kind === "revoked") {
      reason = "HOST_KEY_REVOKED";
      message = `VM ${opts.vm}: the host key of ${where} (${label} ${fp}) is marked @revoked in ${opts.knownHostsFile} line ${v.line}; fabrik refuses to connect`;
      hint = "ask the machine's owner for its current host key";
    } else {
      reason = "HOST_KEY_UNKNOWN";
      const others = v.otherTypes.length > 0 ? ` (${opts.knownHostsFile} knows only its ${v.otherTypes.map(keyTypeLabel).join(", ")} key)` : "";
      message = `VM ${opts.vm}: the host key of ${where} is not known: ${label} key ${fp} is not in ${opts.knownHostsFile}${others}`;
      hint = `check that fingerprint with the machine's owner (\`ssh-keygen -lf /etc/ssh/ssh_host_${type === "ssh-ed25519" ? "ed25519" : type.startsWith("ecdsa") ? "ecdsa" : "rsa"}_key.pub\` on it), then ${opts.acceptHint}`;
    }
    super(message, hint, [reason]);
    this.verdict = v.kind;
    this.fingerprint = fp;
    this.keyType = type;
    this.knownHostsFile = opts.knownHostsFile;
  }
}

/** How a connection judges host keys. */
export interface HostKeyPolicy {
  /** The known_hosts file checked (and appended to when accepting). */
  knownHostsFile: string;
  /** Accept (and record) a key the file does not know yet, like `StrictHostKeyChecking=accept-new`. Never a changed one. */
  acceptNew: boolean;
  /** What to run to accept an unknown key (for the refusal's hint), e.g. "run `fabrik vm add … --accept-new-host-key`". */
  acceptHint: string;
}

/** What one verification concluded (for `vm add --json` and tests). */
export interface HostKeyOutcome {
  host: string;
  port: number;
  keyType: string;
  fingerprint: string;
  /** True when this connection accepted and recorded a key the file did not know. */
  added: boolean;
}

/**
 * A synchronous host verifier for one connection attempt to `host:port`: reads the known_hosts file at the moment
 * the key arrives, judges it, and records what it concluded. `verify(key)` returns true to accept.
 * After a refused handshake, `refusal` holds the {@link HostKeyError} to report instead of ssh2's generic error.
 */
export function hostKeyVerifier(vm: string, host: string, port: number, policy: HostKeyPolicy): { verify: (key: Buffer) => boolean; refusal: () => HostKeyError | undefined; outcome: () => HostKeyOutcome | undefined } {
  let refusal: HostKeyError | undefined;
  let outcome: HostKeyOutcome | undefined;
  const verify = (key: Buffer): boolean => {
    const verdict = checkHostKey(readKnownHosts(policy.knownHostsFile), host, port, key);
    const base = { host, port, keyType: keyTypeOf(key), fingerprint: sha256Fingerprint(key) };
    if (verdict.kind === "known") {
      outcome = { ...base, added: false };
      return true;
    }
    if (verdict.kind === "unknown" && policy.acceptNew) {
      appendKnownHost(policy.knownHostsFile, host, port, key);
      outcome = { ...base, added: true };
      return true;
    }
    refusal = new HostKeyError({ vm, host, port, key, verdict, knownHostsFile: policy.knownHostsFile, acceptHint: policy.acceptHint });
    return false;
  };
  return { verify, refusal: () => refusal, outcome: () => outcome };
}

/**
 * ssh2's host-key algorithm list with the algorithms of the key types the file already knows for the host first,
 * so a server with several host keys presents one that can be checked (OpenSSH orders them the same way).
 */
export function preferredHostKeyAlgorithms(knownTypes: readonly string[]): string[] {
  const all = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
  const algosOf = (t: string) => (t === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [t]);
  const first = knownTypes.flatMap(algosOf).filter((a) => all.includes(a));
  return [...new Set([...first, ...all])];
}
