/**
 * Masking secrets, in ONE place (pure, no I/O): the host (`fabrik runs evidence`: the JSON it adds, the final
 * check of every file) and the guest program that copies a run's files and snapshots its DB
 * (`src/vm/guest/evidence.ts`, bundled from this same source) apply the same rules, so a bundle is masked the
 * same way whichever side wrote a file.
 *
 * What counts as a secret:
 * 1. a value under a secret-looking KEY — in JSON (`{"apiToken": "…"}`), as a DB column (`api_token`), as an
 *    environment variable (`GITHUB_TOKEN=…`) or a `key: value` / `key=value` pair in free text — see
 *    {@link isSecretKey} (token, secret, password, passphrase, credential, auth, cookie, a trailing `key`: `apiKey`,
 *    `ssh_key`, …; not `cache_key`, `idempotency_key` and other engine bookkeeping);
 * 2. a KNOWN value, wherever it appears (a log line that echoes the input's token, an output column named
 *    `echo`): the values found under secret keys of the run's `--input` and of the environments, passed in by
 *    the caller ({@link secretValuesIn}, {@link secretEnvValues});
 * 3. a well-known token SHAPE ({@link TOKEN_SHAPES}): GitHub, OpenAI/Anthropic, Slack, AWS, Google, GitLab, npm,
 *    Stripe keys, JWTs, `Bearer …`, private-key blocks, passwords in URLs.
 *
 * A masked value becomes {@link MASK}. Masking is idempotent: masked text masks to itself.
 */

/** What a masked value is replaced with. */
export const MASK = "[MASKED]";

/** Known values shorter than this are not searched for verbatim (they would mask common words); key rules still apply. */
export const MIN_KNOWN_SECRET_CHARS = 6;

/** Words that make a key secret wherever they appear in it (`githubToken`, `DB_PASSWORD`, `client-secret`). */
const SECRET_WORDS = new Set([
  "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pwd", "passphrase", "pin",
  "credential", "credentials", "creds", "apikey", "apitoken", "auth", "authorization", "cookie", "cookies",
  "privatekey", "accesskey", "secretkey", "sessionid", "bearer", "jwt", "otp",
]);

/** Stems that make a run-together word secret (`authtoken`, `clientsecret`, `dbpassword`), but not `tokenizer`. */
const SECRET_STEMS = /token|secret|passw|apikey|credential|privatekey|accesskey/;

/** A key ending in `key` is secret (`api_key`, `sshKey`, `key`) unless the word before says it is bookkeeping. */
const NOT_SECRET_KEY_PREFIXES = new Set([
  "cache", "idempotency", "dedupe", "sort", "partition", "primary", "foreign", "content", "public", "object", "node",
  "run", "task", "output", "schema", "map", "hash", "lookup", "cursor", "row", "group", "table", "column", "index",
  "unique", "composite", "hot", "press", "shortcut", "keyboard", "fingerprint", "kind", "type",
]);

/** Exact keys that look secret but are not: the shell's working directories (`pwd` is otherwise a password). */
const NOT_SECRET_KEYS = new Set(["PWD", "OLDPWD"]);

/** Words that say a NUMBER under a secret-looking key is a count or a limit (`max_tokens`, `tokens_used`), not a secret. */
const COUNT_WORDS = new Set(["max", "min", "count", "counts", "limit", "used", "usage", "total", "len", "length", "size", "budget", "ttl", "expires", "timeout", "input", "output", "prompt", "completion", "num", "n"]);

/** `apiToken` → `["api", "token"]`, `DB_PASSWORD` → `["db", "password"]`. */
function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/**
 * Whether a value stored under `key` (a JSON key, a DB column, an environment variable, a `key=value` name) is
 * a secret: the key names a token, secret, password, passphrase, credential, auth header, cookie, or ends in
 * `key` (`apiKey`, `ssh_key`) without being bookkeeping (`cache_key`, `idempotency_key`).
 */
export function isSecretKey(key: string): boolean {
  if (NOT_SECRET_KEYS.has(key)) return false;
  const w = keyWords(key);
  if (w.length === 0) return false;
  if (w.some((x) => SECRET_WORDS.has(x) || (SECRET_STEMS.test(x) && !/^tokeni[sz]/.test(x)))) return true;
  for (let i = 0; i + 1 < w.length; i++) if ((w[i] === "api" || w[i] === "access" || w[i] === "private" || w[i] === "secret") && (w[i + 1] === "key" || w[i + 1] === "token")) return true;
  if (w.at(-1) === "key") return w.length === 1 || !NOT_SECRET_KEY_PREFIXES.has(w[w.length - 2]!);
  return false;
}

/** A number under `key` is masked only when the key is secret and not a count (`max_tokens: 4096` stays). */
function isSecretNumberKey(key: string): boolean {
  return isSecretKey(key) && !keyWords(key).some((x) => COUNT_WORDS.has(x));
}

/** One well-known token shape: a name (for the manifest's counts) and a pattern (global, matched whole). */
export interface TokenShape {
  name: string;
  re: RegExp;
}

/** Well-known token shapes (providers' documented prefixes and lengths). */
export const TOKEN_SHAPES: readonly TokenShape[] = [
  { name: "private-key", re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g },
  { name: "github", re: /\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g },
  { name: "anthropic", re: /\bsk-ant-[A-Za-z0-9_-]{20,}/g },
  { name: "openai", re: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g },
  { name: "slack", re: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  { name: "aws-access-key", re: /\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b/g },
  { name: "google-api-key", re: /\bAIza[0-9A-Za-z_-]{35}\b/g },
  { name: "gitlab", re: /\bglpat-[A-Za-z0-9_-]{20,}/g },
  { name: "npm", re: /\bnpm_[A-Za-z0-9]{36}\b/g },
  { name: "stripe", re: /\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}/g },
  { name: "huggingface", re: /\bhf_[A-Za-z0-9]{30,}\b/g },
  { name: "jwt", re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g },
  { name: "bearer", re: /\b(?<=(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{16,}/g },
  { name: "url-password", re: /(?<=\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@'"]+:)[^@\s/'"]+(?=@)/gi },
];

// `key = value`, `key: value`, `"key": "value"`, `--key value` is not covered (an argv is never logged with secrets
// by fabrik; the engine takes the input on stdin). The key part is checked with isSecretKey.
const ASSIGNMENT = /(?<![A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]{0,80})(["']?[ \t]*[:=][ \t]*)(?:"((?:[^"\\\n]|\\.){1,4096})"|'([^'\n]{1,4096})'|([^\s"'&,;})\]]{1,4096}))/g;

/** Counts of what a {@link SecretMasker} replaced, by rule (`known`, `key`, a shape's name). */
export type MaskCounts = Record<string, number>;

/**
 * Masks text and JSON values; counts what it replaced. One instance per bundle (it holds the known values).
 *
 * @param known values to replace verbatim wherever they appear (shorter than {@link MIN_KNOWN_SECRET_CHARS} and
 *   {@link MASK}-only values are ignored); longest first, so a secret that contains another is masked whole.
 */
export class SecretMasker {
  readonly counts: MaskCounts = {};
  private readonly known: string[];

  constructor(known: Iterable<string> = []) {
    const set = new Set<string>();
    for (const k of known) {
      if (typeof k !== "string" || k.length < MIN_KNOWN_SECRET_CHARS || k.includes(MASK)) continue;
      set.add(k);
      // The same value as it appears inside JSON text (quotes, backslashes, control characters escaped).
      const esc = JSON.stringify(k).slice(1, -1);
      if (esc !== k) set.add(esc);
    }
    this.known = [...set].sort((a, b) => b.length - a.length);
  }

  /** The known values (and their JSON-escaped forms), longest first: what a final check searches files for. */
  knownValues(): readonly string[] {
    return this.known;
  }

  /** Total number of values replaced so far. */
  total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }

  private count(rule: string, n = 1): void {
    if (n > 0) this.counts[rule] = (this.counts[rule] ?? 0) + n;
  }

  /** Replace known values verbatim. */
  private maskKnown(s: string): string {
    let out = s;
    for (const k of this.known) {
      if (!out.includes(k)) continue;
      const parts = out.split(k);
      this.count("known", parts.length - 1);
      out = parts.join(MASK);
    }
    return out;
  }

  /** Replace well-known token shapes. */
  private maskShapes(s: string): string {
    let out = s;
    for (const shape of TOKEN_SHAPES) {
      shape.re.lastIndex = 0;
      out = out.replace(shape.re, (m) => {
        if (m === MASK) return m;
        this.count(shape.name);
        return MASK;
      });
    }
    return out;
  }

  /** Replace the values of `key = value` / `key: value` pairs whose key is secret. */
  private maskAssignments(s: string): string {
    ASSIGNMENT.lastIndex = 0;
    return s.replace(ASSIGNMENT, (whole, key: string, sep: string, dq: string | undefined, sq: string | undefined, bare: string | undefined) => {
      if (!isSecretKey(key)) return whole;
      const value = dq ?? sq ?? bare ?? "";
      if (value === "" || value.startsWith("[MASKED") || (/^\d{1,5}$/.test(value) && !isSecretNumberKey(key))) return whole;
      if (bare !== undefined && /^(?:true|false|null|undefined|none)$/i.test(bare)) return whole;
      this.count("key");
      return `${key}${sep}${dq !== undefined ? `"${MASK}"` : sq !== undefined ? `'${MASK}'` : MASK}`;
    });
  }

  /** A JSON value with every secret masked (values under secret keys, known values, token shapes). */
  json(value: unknown, underSecretKey = false, depth = 0): unknown {
    if (typeof value === "string") {
      if (underSecretKey) {
        if (value === "" || value === MASK) return value;
        this.count("key");
        return MASK;
      }
      return depth < 8 ? this.text(value, undefined, depth + 1) : this.plain(value);
    }
    if (typeof value === "number") return value;
    if (Array.isArray(value)) return value.map((v) => this.json(v, underSecretKey, depth + 1));
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (typeof v === "number" && !underSecretKey && isSecretNumberKey(k)) {
          this.count("key");
          out[k] = MASK;
        } else out[k] = this.json(v, underSecretKey || isSecretKey(k), depth + 1);
      }
      return out;
    }
    return value;
  }

  /** Free text (not JSON): known values, token shapes, then `key=value` pairs. */
  private plain(s: string): string {
    return this.maskAssignments(this.maskShapes(this.maskKnown(s)));
  }

  /**
   * Mask one text value: a log line, a file, a DB cell. A value whose text is a JSON object or array is masked
   * as JSON (keys respected) and re-serialised compactly only when something changed.
   * @param keyHint the name the value is stored under (a DB column, a file's key); a secret key masks it whole.
   */
  text(s: string, keyHint?: string, depth = 0): string {
    if (s === "" || s === MASK) return s;
    if (keyHint !== undefined && isSecretKey(keyHint)) {
      this.count("key");
      return MASK;
    }
    const t = s.trimStart();
    if ((t.startsWith("{") || t.startsWith("[")) && s.length <= 64 * 1024 * 1024) {
      let parsed: unknown;
      let ok = false;
      try {
        parsed = JSON.parse(s);
        ok = parsed !== null && typeof parsed === "object";
      } catch {
        ok = false;
      }
      if (ok) {
        const before = this.total();
        const masked = this.json(parsed, false, depth);
        if (this.total() === before) return s;
        return JSON.stringify(masked);
      }
    }
    return this.plain(s);
  }
}

/**
 * The values under secret keys of a JSON value (e.g. a run's `--input`), recursively: what to search for
 * verbatim elsewhere. Strings (and numbers under password-like keys) of at least {@link MIN_KNOWN_SECRET_CHARS}.
 */
export function secretValuesIn(value: unknown, underSecretKey = false, out: Set<string> = new Set()): string[] {
  if (typeof value === "string") {
    if (underSecretKey && value.length >= MIN_KNOWN_SECRET_CHARS) out.add(value);
  } else if (typeof value === "number") {
    if (underSecretKey && String(value).length >= MIN_KNOWN_SECRET_CHARS) out.add(String(value));
  } else if (Array.isArray(value)) {
    for (const v of value) secretValuesIn(v, underSecretKey, out);
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) secretValuesIn(v, underSecretKey || (typeof v === "number" ? isSecretNumberKey(k) : isSecretKey(k)), out);
  }
  return [...out];
}

/** The values of environment variables with secret names (`GITHUB_TOKEN`, `OPENAI_API_KEY`, `PGPASSWORD`), at least `minChars` long. */
export function secretEnvValues(env: Record<string, string | undefined>, minChars = MIN_KNOWN_SECRET_CHARS): string[] {
  const out = new Set<string>();
  for (const [k, v] of Object.entries(env)) if (typeof v === "string" && v.length >= minChars && isSecretKey(k)) out.add(v);
  return [...out];
}
