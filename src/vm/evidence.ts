/**
 * The evidence program, host side (VM layer): run the bundled guest program `evidence` (src/vm/guest/evidence.ts,
 * installed in the VM once per content hash) in ONE call, then fetch the folder it wrote as a tar stream in a
 * second call that also removes it. The caller (src/fabrik/evidence-service.ts) masks, checks and packs.
 *
 * The program runs with the bun the probe would use (the same wrapper logic, {@link EVIDENCE_WRAPPER}); the
 * request (with the known secrets) travels on stdin, never in argv.
 */
import fs from "node:fs";
import path from "node:path";
import { RemoteError } from "../core/errors.js";
import type { VmDriver } from "./driver.js";
import { EvidenceResultSchema, type EvidenceRequestWire, type EvidenceResult } from "./evidence-schema.js";
import { GUEST_EXIT_INSTALL_FAILED, loadGuestProgram, withGuestInstall, type GuestAttempt, type GuestInstallCache } from "./guest-programs.js";
import { NoBunError, PROBE_WRAPPER, isNoBunExit, isNotInstalledExit } from "./probe.js";

/**
 * `sh -c EVIDENCE_WRAPPER fabrik-evidence <hash> <program text or ""> once`: the probe's wrapper (bun discovery,
 * install once per hash, exit 3 without bun, 79 when not installed and not sent) running the program `evidence`.
 */
export const EVIDENCE_WRAPPER = PROBE_WRAPPER.replace(/\bn=probe;/, "n=evidence;");
if (EVIDENCE_WRAPPER === PROBE_WRAPPER) throw new Error("EVIDENCE_WRAPPER: the probe wrapper no longer names its program `n=probe;`");

/**
 * `sh -c FETCH_SCRIPT fabrik-evidence-fetch <out dir>`: the folder as an uncompressed tar on stdout, then the folder
 * removed (also when tar failed). Refuses any folder but `$HOME/.fabrik/tmp/evidence-*`.
 */
export const EVIDENCE_FETCH_SCRIPT = `d="$1"
case "$d" in "$HOME"/.fabrik/tmp/evidence-*) ;; *) echo "fabrik-evidence: refusing $d" >&2; exit 2;; esac
tar -C "$d" -cf - . ; rc=$?
rm -rf -- "$d"
exit $rc
`;

/**
 * Run the evidence program in `vm`.
 * @returns its validated answer (`ok:false` with `error` when it could not finish).
 * @throws NoBunError without bun; RemoteError for an install failure, a bad exit or output; driver errors unchanged.
 */
export async function runGuestEvidence(
  driver: VmDriver,
  vm: string,
  req: EvidenceRequestWire,
  opts: { timeoutMs: number; signal?: AbortSignal | undefined; installCache: GuestInstallCache },
): Promise<EvidenceResult> {
  const program = loadGuestProgram("evidence");
  const r = await withGuestInstall(opts.installCache, vm, program, async (install): Promise<GuestAttempt<{ exitCode: number; stdout: string; stderr: string }>> => {
    const res = await driver.exec(vm, ["sh", "-c", EVIDENCE_WRAPPER, "fabrik-evidence", program.hash, install ? program.text : "", "once"], {
      stdin: JSON.stringify(req),
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      maxOutputBytes: 4 * 1024 * 1024,
    });
    if (isNotInstalledExit(res.exitCode, res.stderr)) return { notInstalled: true };
    if (isNoBunExit(res.exitCode, res.stderr)) throw new NoBunError(vm, []);
    return { notInstalled: false, installed: res.exitCode !== GUEST_EXIT_INSTALL_FAILED, value: res };
  });
  const tail = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
  if (r.exitCode === GUEST_EXIT_INSTALL_FAILED) throw new RemoteError(vm, "evidence", `cannot install the evidence program in the VM: ${tail}`, r.exitCode, `check the disk and $HOME/.fabrik in VM ${vm}`);
  const line = r.stdout.trim().split("\n").filter((l) => l.trim()).at(-1);
  if (r.exitCode !== 0 || line === undefined) throw new RemoteError(vm, "evidence", `exit ${r.exitCode}${tail ? `: ${tail}` : ""}`, r.exitCode);
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new RemoteError(vm, "evidence", `invalid answer: ${line.slice(0, 200)}`, r.exitCode);
  }
  const parsed = EvidenceResultSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new RemoteError(vm, "evidence", `invalid answer: ${issues}`, r.exitCode);
  }
  return parsed.data;
}

/**
 * Fetch the folder the program wrote (`outDir`) into the host file `tarFile` (an uncompressed tar), and remove it
 * in the VM. Stops and fails past `maxBytes` or the deadline.
 * @throws RemoteError when tar failed, the stream was cut, or it grew past `maxBytes`.
 */
export async function fetchEvidenceDir(
  driver: VmDriver,
  vm: string,
  outDir: string,
  tarFile: string,
  opts: { timeoutMs: number; maxBytes: number; signal?: AbortSignal | undefined },
): Promise<number> {
  fs.mkdirSync(path.dirname(tarFile), { recursive: true });
  const fd = fs.openSync(tarFile, "w", 0o600);
  let bytes = 0;
  let over = false;
  let stderr = "";
  let handle: Awaited<ReturnType<VmDriver["stream"]>> | undefined;
  try {
    handle = await driver.stream(vm, ["sh", "-c", EVIDENCE_FETCH_SCRIPT, "fabrik-evidence-fetch", outDir], {
      signal: opts.signal,
      onStdout: (chunk) => {
        if (over) return;
        bytes += chunk.length;
        if (bytes > opts.maxBytes) {
          over = true;
          handle?.kill();
          return;
        }
        fs.writeSync(fd, chunk);
      },
      onStderr: (chunk) => {
        if (stderr.length < 4000) stderr += chunk.toString("utf8");
      },
    });
    const timer = setTimeout(() => handle?.kill(), opts.timeoutMs);
    let code: number;
    try {
      code = await handle.done;
    } finally {
      clearTimeout(timer);
    }
    if (over) throw new RemoteError(vm, "evidence fetch", `the evidence folder is larger than ${opts.maxBytes} bytes`, undefined);
    if (code !== 0) throw new RemoteError(vm, "evidence fetch", `tar exited ${code}${stderr.trim() ? `: ${stderr.trim().slice(-300)}` : ""}`, code);
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}
