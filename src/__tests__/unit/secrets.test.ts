/**
 * The masking rules (src/core/secrets.ts) that `runs evidence` applies on the host and, bundled, inside the VM.
 */
import { describe, it, expect } from "vitest";
import { MASK, SecretMasker, isSecretKey, secretEnvValues, secretValuesIn } from "../../core/secrets.js";

describe("isSecretKey", () => {
  it.each([
    "token", "apiToken", "GITHUB_TOKEN", "api_key", "apiKey", "OPENAI_API_KEY", "key", "sshKey", "password", "DB_PASSWORD", "passwd", "pwd", "client_secret",
    "secretKey", "credentials", "Authorization", "cookie", "private_key", "aws_access_key_id", "passphrase", "call_token",
    "npm_config__authtoken", "clientsecret", "DBPASSWORD",
  ])("%s is secret", (k) => expect(isSecretKey(k)).toBe(true));
  it.each(["cache_key", "idempotency_key", "dedupe_key", "node_id", "keyboard", "monkey", "author", "tasks", "sleep_ms", "PWD", "OLDPWD", "content_hash", "run_id", "public_key", "tokenizer"])(
    "%s is not secret",
    (k) => expect(isSecretKey(k)).toBe(false),
  );
});

describe("SecretMasker", () => {
  const ghp = "ghp_" + "A".repeat(36);
  it("masks values under secret keys in JSON, keeps counts and bookkeeping", () => {
    const m = new SecretMasker();
    const v = m.json({ tasks: 3, apiToken: "abc", nested: { config: { password: "pw" }, max_tokens: 4096 }, list: [{ secret: "s" }], cache_key: "k1", pin: 1234 });
    expect(v).toEqual({ tasks: 3, apiToken: MASK, nested: { config: { password: MASK }, max_tokens: 4096 }, list: [{ secret: MASK }], cache_key: "k1", pin: MASK });
    expect(m.counts.key).toBe(4);
  });
  it("masks known values anywhere, also inside JSON-escaped text", () => {
    const m = new SecretMasker(["planted-SECRET-1", 'quo"ted-secret']);
    expect(m.text("step 1 uses planted-SECRET-1 twice: planted-SECRET-1")).toBe(`step 1 uses ${MASK} twice: ${MASK}`);
    expect(m.text(JSON.stringify({ echo: 'x quo"ted-secret y' }))).toBe(JSON.stringify({ echo: `x ${MASK} y` }));
    expect(m.counts.known).toBe(3);
  });
  it("masks well-known token shapes", () => {
    const m = new SecretMasker();
    const text = [
      `gh ${ghp}`,
      "openai sk-proj-" + "x".repeat(30),
      "anthropic sk-ant-api03-" + "y".repeat(30),
      "slack xoxb-1234567890-abcdef",
      "aws AKIAABCDEFGHIJKLMNOP",
      "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLWhlcmU",
      "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
      "url https://bob:hunter2hunter2@example.com/x",
      "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ].join("\n");
    const out = m.text(text);
    for (const leaked of [ghp, "sk-proj-", "sk-ant-", "xoxb-", "AKIA", "eyJhbGci", "abcdefghijklmnopqrstuvwxyz", "hunter2hunter2", "AAAA"]) expect(out).not.toContain(leaked);
    expect(out).toContain("https://bob:[MASKED]@example.com/x");
  });
  it("masks key=value and key: value pairs in free text, not numbers under count keys", () => {
    const m = new SecretMasker();
    expect(m.text("export GITHUB_TOKEN=abc123 max_tokens=4096 password: 'p w' user=bob")).toBe(`export GITHUB_TOKEN=${MASK} max_tokens=4096 password: '${MASK}' user=bob`);
  });
  it("a secret column masks the whole value; idempotent; leaves plain text alone", () => {
    const m = new SecretMasker(["planted-1234"]);
    expect(m.text("anything at all", "api_token")).toBe(MASK);
    const once = m.text(`token=planted-1234 ${ghp}`);
    expect(once).toBe(`token=${MASK} ${MASK}`);
    expect(m.text(once)).toBe(once);
    const plain = "step-3 finished in 12s";
    expect(m.text(plain)).toBe(plain);
    expect(m.text('{"a": 1}')).toBe('{"a": 1}'); // unchanged JSON keeps its bytes
  });
  it("collects the values to search for from an input and an environment", () => {
    expect(secretValuesIn({ tasks: 6, apiToken: "planted-1", config: { password: "hunter2!" }, note: "hello world", short: { token: "abc" } }).sort()).toEqual(["hunter2!", "planted-1"]);
    expect(secretEnvValues({ GITHUB_TOKEN: "ghp_xxxxxxxx", PWD: "/home/u", HOME: "/home/u", OPENAI_API_KEY: "sk-1234567" }).sort()).toEqual(["ghp_xxxxxxxx", "sk-1234567"]);
  });
});
