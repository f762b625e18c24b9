/**
 * The probe, host side: ONE remote round trip per VM gathers the live facts (control dir, Smithers DB,
 * pids) of one or many runs on that VM.
 *
 * What runs in the VM is `guest/probe.js` (bun + `bun:sqlite`) or, in a VM without bun, `guest/probe.py`
 * (python3 ≥ 3.9 + stdlib sqlite3). Both texts travel as argv of one `sh -c` {@link PROBE_WRAPPER} call that
 * picks the tool inside the VM; the request travels on stdin; the answer is one JSON line on stdout, validated
 * here with {@link ProbeResponseSchema} (the VM is untrusted). Wire format and units: `probe-schema.ts`.
 *
 * Size budget: ssh hands the whole remote command to the guest shell as ONE argument, which Linux caps at
 * 128 KiB (MAX_ARG_STRLEN), so wrapper + both probe texts, shell-quoted, must stay well below that
 * (about 55 KB today; a unit test guards 120 KiB).
 */
import fs from "node:fs";
import type { VmDriver } from "./driver.js";
import { RemoteError } from "../core/errors.js";
import { ProbeRequestSchema, ProbeResponseSchema, type ProbeRequest, type ProbeResponse, type ProbeRunResult } from "./probe-schema.js";

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

/** Exit status of {@link PROBE_WRAPPER} when the VM has neither bun nor python3. */
export const PROBE_EXIT_NO_TOOL = 3;

/**
 * The `sh` program run in the VM as `sh -c PROBE_WRAPPER fabrik-probe <probe.js text> <probe.py text>`
 * (so `$1` = JS text, `$2` = Python text; nothing is interpolated into it). It picks, in order:
 * 1. the bun of the most recently installed fabrik engine, `$HOME/.fabrik/engines/<v>/.runtime/node_modules/.bin/bun`
 *    (engines with their `.fabrik-engine.json` "installed" marker preferred; newest marker wins),
 * 2. `bun` on PATH,
 * 3. `python3` on PATH,
 * and `exec`s `bun -e "$1"` or `python3 -c "$2"` with stdin (the request) passed through. With neither it
 * prints `fabrik-probe: no bun or python3 in the VM` on stderr and exits {@link PROBE_EXIT_NO_TOOL} (3).
 * POSIX sh (dash/busybox compatible: only `[ -x ]`, `[ -f ]`, `[ -nt ]`, `command -v`).
 */
export const PROBE_WRAPPER = `bun=""
best=""
for b in "$HOME"/.fabrik/engines/*/.runtime/node_modules/.bin/bun; do
  [ -x "$b" ] || continue
  m="\${b%/.runtime/node_modules/.bin/bun}/.fabrik-engine.json"
  if [ -f "$m" ]; then
    if [ -z "$best" ] || [ "$m" -nt "$best" ]; then best="$m"; bun="$b"; fi
  elif [ -z "$best" ] && [ -z "$bun" ]; then
    bun="$b"
  fi
done
if [ -n "$bun" ]; then exec "$bun" -e "$1"; fi
if command -v bun >/dev/null 2>&1; then exec bun -e "$1"; fi
if command -v python3 >/dev/null 2>&1; then exec python3 -c "$2"; fi
echo "fabrik-probe: no bun or python3 in the VM" >&2
exit ${PROBE_EXIT_NO_TOOL}
`;

/**
 * The probe failed in a way the VM being unreachable does not explain: no bun/python3 in the VM, the probe
 * exited non-zero, or its output is not a valid {@link ProbeResponse}. `reason` is short and human-readable
 * (e.g. "no bun or python3 in the VM", "invalid probe output: runs.0.db.status: expected string").
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

let cachedGuest: { js: string; py: string } | undefined;

/**
 * The guest probe texts, `guest/probe.js` and `guest/probe.py`, read (once per process, then cached) relative
 * to this module: `src/vm/` under vitest and `dist/vm/` after tsc are both two levels below the repo root.
 * @throws Error (ENOENT) when the package was installed without its `guest/` folder.
 */
export function loadGuestProbe(): { js: string; py: string } {
  cachedGuest ??= {
    js: fs.readFileSync(new URL("../../guest/probe.js", import.meta.url), "utf8"),
    py: fs.readFileSync(new URL("../../guest/probe.py", import.meta.url), "utf8"),
  };
  return cachedGuest;
}

function lastLines(text: string, n: number, max: number): string {
  return text.trim().split("\n").slice(-n).join(" | ").slice(0, max);
}

/**
 * Probe one VM: exactly ONE `driver.exec` (`sh -c PROBE_WRAPPER …`, request JSON on stdin,
 * `skipStatusCheck: true` so a stopped VM costs no extra call, stdout capped at {@link PROBE_MAX_OUTPUT_BYTES}).
 *
 * @param request validated (and defaults filled) with {@link ProbeRequestSchema} before sending; an invalid
 *   request is a caller bug and throws the ZodError.
 * @param opts.timeoutMs deadline for the whole round trip, ms (the driver kills the call and throws).
 * @returns the VM's answer, validated: times are epoch ms on the VM's clock (`now_ms` is that clock), sizes bytes.
 * @throws ProbeError no bun or python3 in the VM (exit 3), any other non-zero exit, or output that is not one
 *   valid ProbeResponse JSON line.
 * @throws VmUnavailableError / NotFoundError / RemoteError (and abort errors) from the driver, unchanged.
 */
export async function probeVm(
  driver: VmDriver,
  vm: string,
  request: ProbeRequest,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<ProbeResponse> {
  const req = ProbeRequestSchema.parse(request);
  const { js, py } = loadGuestProbe();
  const r = await driver.exec(vm, ["sh", "-c", PROBE_WRAPPER, "fabrik-probe", js, py], {
    stdin: JSON.stringify(req),
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    skipStatusCheck: true,
    maxOutputBytes: PROBE_MAX_OUTPUT_BYTES,
  });
  const stderr = r.stderr.trim() ? lastLines(r.stderr, 3, 500) : undefined;
  if (r.exitCode === PROBE_EXIT_NO_TOOL && /no bun or python3/.test(r.stderr)) {
    throw new ProbeError(vm, "no bun or python3 in the VM", {
      exitCode: r.exitCode,
      stderr,
      hint: `install an engine with fabrik (it brings bun), or install python3 in VM ${vm}`,
    });
  }
  if (r.exitCode !== 0) {
    throw new ProbeError(vm, `probe exited ${r.exitCode}${stderr ? `: ${stderr}` : ""}`.slice(0, 600), { exitCode: r.exitCode, stderr });
  }
  // Exactly one JSON line is expected; tolerate noise (e.g. a login banner) before it.
  const line = r.stdout.trim().split("\n").filter((l) => l.trim()).at(-1);
  if (line === undefined) throw new ProbeError(vm, "invalid probe output: empty", { exitCode: 0, stderr });
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    throw new ProbeError(vm, `invalid probe output: not JSON (${(e as Error).message.slice(0, 100)}): ${line.slice(0, 120)}`, { exitCode: 0, stderr });
  }
  const parsed = ProbeResponseSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new ProbeError(vm, `invalid probe output: ${issues}`.slice(0, 600), { exitCode: 0, stderr });
  }
  return parsed.data;
}
