/**
 * The probe, host side: ONE remote round trip per VM gathers the live facts (control dir, Smithers DB,
 * pids) of one or many runs on that VM.
 *
 * What runs in the VM is the bundled guest program `probe` (src/vm/guest/probe.ts → dist/guest/probe.js, run
 * by bun with `bun:sqlite`), installed once per content hash under `$HOME/.fabrik/guest/<hash>/probe.js`
 * (src/vm/guest-programs.ts). A call is `sh -c PROBE_WRAPPER fabrik-probe <hash> <text or ""> once
 * <bun candidates…>` with the request JSON on stdin; the program text travels only when the host's
 * {@link GuestInstallCache} says the VM lacks it. The answer is one JSON line on stdout, validated here with
 * {@link ProbeResponseSchema} (the VM is untrusted). Wire format and units: `probe-schema.ts`.
 *
 * Size: a call without the program sends the wrapper (~1.1 KB quoted), a few bun candidate paths and the
 * request (≈190 bytes of JSON per run, gzipped above {@link GZIP_REQUEST_MIN_BYTES}: 20 runs ≈ 0.5 KB); the
 * first call to a VM adds the program (~27 KB), well under Linux's 128 KiB cap on the one argument ssh hands
 * to the guest shell (MAX_ARG_STRLEN). Unit tests guard both.
 */
import { gzipSync } from "node:zlib";
import { PrerequisiteError, RemoteError } from "../core/errors.js";
import type { VmDriver } from "./driver.js";
import {
  GUEST_EXIT_INSTALL_FAILED,
  GUEST_EXIT_NOT_INSTALLED,
  defaultGuestInstallCache,
  guestInstallSnippet,
  loadGuestProgram,
  withGuestInstall,
  type GuestAttempt,
  type GuestInstallCache,
  type GuestProgram,
} from "./guest-programs.js";
import type { ProbeRequest, ProbeResponse, ProbeRunResult } from "./probe-schema.js";
import { probeRequestWithDefaults } from "./probe-request.js";
import { shellJoin } from "./shell-quote.js";

/**
 * What fabrik saw of one run in its VM: a live probe result (with the VM's clock, epoch ms, and the tool that
 * ran the probe), why the VM could not be asked, or nothing at all (a cache-only read such as `--no-live`).
 */
export type RunObservation =
  | { kind: "live"; result: ProbeRunResult; vmNowMs: number; tool: string }
  | { kind: "unreachable"; reason: string }
  | { kind: "none" };

/** Cap on the probe's stdout, bytes (8 MiB): 1000 runs with node lists fit; beyond it the driver fails the call. */
export const PROBE_MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/** Exit status of {@link PROBE_WRAPPER} when no bun was found in the VM. */
export const PROBE_EXIT_NO_BUN = 3;

/** Where the wrapper looks for bun, in order, before the per-run candidates (for messages; `~` = the guest's $HOME). */
export const PROBE_BUN_LOCATIONS = ["~/.fabrik/engines/*/.runtime/node_modules/.bin/bun", "~/.bun/bin/bun", "bun on PATH"] as const;

/** At most this many per-run bun candidates are passed (they are a last resort; see {@link probeBunCandidates}). */
export const PROBE_MAX_BUN_CANDIDATES = 4;

/**
 * The `sh` program run in the VM as
 * `sh -c PROBE_WRAPPER fabrik-probe <hash> <program text or ""> <once|serve> [<bun candidate>…]`
 * (values only as positional parameters; nothing is interpolated). It picks bun, in order:
 * 1. the bun of the most recently installed fabrik engine, `$HOME/.fabrik/engines/<v>/.runtime/node_modules/.bin/bun`
 *    (engines with their `.fabrik-engine.json` "installed" marker preferred; newest marker wins),
 * 2. `$HOME/.bun/bin/bun` (bun's own installer),
 * 3. `bun` on PATH,
 * 4. the candidate paths given (each requested run's `<control_dir>/workflow/node_modules/.bin/bun`);
 * with none it prints `fabrik-probe: no bun found` on stderr and exits {@link PROBE_EXIT_NO_BUN} (3) — before
 * installing anything. Then it installs or finds the program ({@link guestInstallSnippet}: exit 79 when not
 * installed and not sent) and `exec`s `bun <file>` (`--serve` in serve mode) with stdin passed through.
 * POSIX sh (dash/busybox compatible: only `[ -x ]`, `[ -f ]`, `[ -nt ]`, `command -v`).
 */
export const PROBE_WRAPPER = `h="$1" t="$2" m="$3" n=probe; shift 3
b="" best=""
for c in "$HOME"/.fabrik/engines/*/.runtime/node_modules/.bin/bun; do
  [ -x "$c" ] || continue
  k="\${c%/.runtime/node_modules/.bin/bun}/.fabrik-engine.json"
  if [ -f "$k" ]; then
    if [ -z "$best" ] || [ "$k" -nt "$best" ]; then best="$k" b="$c"; fi
  elif [ -z "$best" ] && [ -z "$b" ]; then b="$c"; fi
done
[ -n "$b" ] || [ ! -x "$HOME/.bun/bin/bun" ] || b="$HOME/.bun/bin/bun"
[ -n "$b" ] || b="$(command -v bun 2>/dev/null)" || b=""
for c in "$@"; do [ -n "$b" ] || [ ! -x "$c" ] || b="$c"; done
if [ -z "$b" ]; then echo "fabrik-probe: no bun found" >&2; exit ${PROBE_EXIT_NO_BUN}; fi
${guestInstallSnippet()}
if [ "$m" = serve ]; then exec "$b" "$f" --serve; fi
exec "$b" "$f"
`;

/**
 * The probe failed in a way the VM being unreachable does not explain: the probe exited non-zero, could not be
 * installed, or its output is not a valid {@link ProbeResponse}. `reason` is short and human-readable
 * (e.g. "invalid probe output: runs.0.db.status: expected string").
 * A {@link RemoteError} (kind "remote", exit 1) whose command is "probe".
 */
export class ProbeError extends RemoteError {
  /** Short reason, without the `vm: probe:` prefix of `message`. */
  readonly reason: string;
  /** Last lines of the probe's stderr (≤ 500 chars), when any. */
  readonly stderr: string | undefined;

  constructor(vm: string, reason: string, opts: { exitCode?: number; stderr?: string; hint?: string } = {}) {
    super(vm, "probe", reason, opts.exitCode, opts.hint);
    this.reason = reason;
    this.stderr = opts.stderr;
  }
}

/**
 * The VM has no bun where engines put it, so no guest program can run there (kind `prerequisite`, exit 7).
 * Never a silent downgrade: bun is present wherever an engine ran.
 */
export class NoBunError extends PrerequisiteError {
  readonly vm: string;
  /** Where the wrapper looked, in order (`~` = the guest's home). */
  readonly looked: readonly string[];
  constructor(vm: string, candidates: readonly string[]) {
    const looked = [...PROBE_BUN_LOCATIONS, ...candidates];
    const more = candidates.length > 0 ? `, ${candidates.length} run ${candidates.length === 1 ? "folder's" : "folders'"} workflow/node_modules/.bin/bun` : "";
    super(
      `VM ${vm}: no bun found (looked in ${PROBE_BUN_LOCATIONS.join(", ")}${more}); fabrik's guest programs need bun ≥ 1.3`,
      `\`fabrik run --vm ${vm} …\` and \`fabrik vm create\` install an engine, which brings bun; or install bun on the guest's PATH`,
    );
    this.vm = vm;
    this.looked = looked;
  }
}

/**
 * The per-run bun candidates for a request: `<control_dir>/workflow/node_modules/.bin/bun` of each run with a
 * control dir, distinct, at most {@link PROBE_MAX_BUN_CANDIDATES} (they matter only in a VM where no engine
 * put bun in the usual places, which is rare; the cap keeps a 20-run call small).
 */
export function probeBunCandidates(req: Pick<ProbeRequest, "runs">): string[] {
  const out: string[] = [];
  for (const r of req.runs) {
    if (!r.control_dir) continue;
    const c = `${r.control_dir.replace(/\/+$/, "")}/workflow/node_modules/.bin/bun`;
    if (!out.includes(c)) out.push(c);
    if (out.length >= PROBE_MAX_BUN_CANDIDATES) break;
  }
  return out;
}

/** Requests of at least this many bytes of JSON travel gzip-compressed on stdin (the guest detects the magic bytes). */
export const GZIP_REQUEST_MIN_BYTES = 1024;

/**
 * A guest request as sent on stdin: the JSON text, or — from {@link GZIP_REQUEST_MIN_BYTES} on — its gzip
 * (run lists repeat the same paths, so 20 runs shrink from ~3.9 KB to ~0.5 KB). The guest's `readStdin`
 * (src/vm/guest/lib/io.ts) undoes it. Line-based serve mode always sends plain JSON lines.
 */
export function encodeGuestRequest(json: string): string | Buffer {
  return Buffer.byteLength(json) < GZIP_REQUEST_MIN_BYTES ? json : gzipSync(json, { level: 9 });
}

/** The argv of one probe call: the program text is included only when `install`. */
export function probeArgv(program: GuestProgram, install: boolean, mode: "once" | "serve", candidates: readonly string[]): string[] {
  return ["sh", "-c", PROBE_WRAPPER, "fabrik-probe", program.hash, install ? program.text : "", mode, ...candidates];
}

/**
 * Bytes one call puts on the wire to the VM: the remote command line (argv as the guest shell receives it,
 * quoted with {@link shellJoin}) plus stdin.
 */
export function requestBytes(argv: readonly string[], stdin: string | Buffer): number {
  return Buffer.byteLength(shellJoin(argv)) + (typeof stdin === "string" ? Buffer.byteLength(stdin) : stdin.length);
}

function lastLines(text: string, n: number, max: number): string {
  return text.trim().split("\n").slice(-n).join(" | ").slice(0, max);
}

/** True when a wrapper's exit says the program was not installed and not sent (a stale install cache). */
export function isNotInstalledExit(exitCode: number, stderr: string): boolean {
  return exitCode === GUEST_EXIT_NOT_INSTALLED && /fabrik-guest: \S+ \S+ is not installed/.test(stderr);
}

/** True when the probe wrapper found no bun. */
export function isNoBunExit(exitCode: number, stderr: string): boolean {
  return exitCode === PROBE_EXIT_NO_BUN && /fabrik-probe: no bun found/.test(stderr);
}

/** Options of {@link probeVm}. */
export interface ProbeOptions {
  /** Deadline for each round trip, ms (the driver kills the call and throws). */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** What the host believes is installed (default: a per-process in-memory cache). */
  installCache?: GuestInstallCache | undefined;
}

/**
 * Probe one VM: ONE `driver.exec` (`sh -c PROBE_WRAPPER …`, request JSON on stdin — gzipped when large, see
 * {@link encodeGuestRequest} —, `skipStatusCheck: true` so a
 * stopped VM costs no extra call, stdout capped at {@link PROBE_MAX_OUTPUT_BYTES}) — two only when the install
 * cache said "installed" but the VM lost the file (the retry sends the program).
 *
 * @param request the host's request; its defaults are filled ({@link probeRequestWithDefaults}), it is not validated
 *   again (its type is checked at compile time; the guest caps every value).
 * @returns the VM's answer, validated: times are epoch ms on the VM's clock (`now_ms` is that clock), sizes bytes.
 * @throws NoBunError (kind prerequisite) when the VM has no bun; ProbeError for a failed install, any other
 *   non-zero exit, or output that is not one valid ProbeResponse JSON line.
 * @throws VmUnavailableError / NotFoundError / RemoteError (and abort errors) from the driver, unchanged.
 * @throws PrerequisiteError when fabrik's own dist/guest/probe.js is missing (before any call).
 */
export async function probeVm(driver: VmDriver, vm: string, request: ProbeRequest, opts: ProbeOptions): Promise<ProbeResponse> {
  const req = probeRequestWithDefaults(request);
  const program = loadGuestProgram("probe");
  const stdin = encodeGuestRequest(JSON.stringify(req));
  const candidates = probeBunCandidates(req);
  return withGuestInstall(opts.installCache ?? defaultGuestInstallCache, vm, program, async (install): Promise<GuestAttempt<ProbeResponse>> => {
    const r = await driver.exec(vm, probeArgv(program, install, "once", candidates), {
      stdin,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      skipStatusCheck: true,
      maxOutputBytes: PROBE_MAX_OUTPUT_BYTES,
    });
    if (isNotInstalledExit(r.exitCode, r.stderr)) return { notInstalled: true };
    if (isNoBunExit(r.exitCode, r.stderr)) throw new NoBunError(vm, candidates);
    const stderr = r.stderr.trim() ? lastLines(r.stderr, 3, 500) : undefined;
    if (r.exitCode === GUEST_EXIT_INSTALL_FAILED) {
      throw new ProbeError(vm, `cannot install the probe in the VM${stderr ? `: ${stderr}` : ""}`.slice(0, 600), { exitCode: r.exitCode, stderr, hint: `check the disk and $HOME/.fabrik in VM ${vm}` });
    }
    return { notInstalled: false, installed: true, value: await parseProbeOutput(vm, r.exitCode, r.stdout, stderr) };
  });
}

/**
 * Validate what one probe run printed.
 * @throws ProbeError for a non-zero exit or output that is not one valid ProbeResponse JSON line.
 */
async function parseProbeOutput(vm: string, exitCode: number, stdout: string, stderr: string | undefined): Promise<ProbeResponse> {
  if (exitCode !== 0) {
    throw new ProbeError(vm, `probe exited ${exitCode}${stderr ? `: ${stderr}` : ""}`.slice(0, 600), { exitCode, stderr });
  }
  // Exactly one JSON line is expected; tolerate noise (e.g. a login banner) before it.
  const line = stdout.trim().split("\n").filter((l) => l.trim()).at(-1);
  if (line === undefined) throw new ProbeError(vm, "invalid probe output: empty", { exitCode: 0, stderr });
  return parseProbeLine(vm, line, stderr);
}

/**
 * Validate one probe answer line (also used by the SSH transport's serve channel, where a request the probe
 * cannot read is answered `{"v":1,"error":"bad request: …"}`).
 * @throws ProbeError (the promise rejects)
 */
export async function parseProbeLine(vm: string, line: string, stderr?: string): Promise<ProbeResponse> {
  // Loaded here, not with this module: zod and the schemas initialise while the VM works, after the call started.
  const { ProbeResponseSchema } = await import("./probe-schema.js");
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    throw new ProbeError(vm, `invalid probe output: not JSON (${(e as Error).message.slice(0, 100)}): ${line.slice(0, 120)}`, { exitCode: 0, stderr });
  }
  const parsed = ProbeResponseSchema.safeParse(json);
  if (!parsed.success) {
    const err = (json as { error?: unknown } | null)?.error;
    if (typeof err === "string") throw new ProbeError(vm, `probe: ${err}`.slice(0, 600), { stderr });
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new ProbeError(vm, `invalid probe output: ${issues}`.slice(0, 600), { exitCode: 0, stderr });
  }
  return parsed.data;
}
