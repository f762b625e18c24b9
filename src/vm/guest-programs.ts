/**
 * The guest programs fabrik runs inside VMs (`probe`, `resume`), as the host ships them, and the protocol that
 * installs each one in a VM ONCE per content hash.
 *
 * - Source: `src/vm/guest/<name>.ts` (TypeScript, sharing `src/vm/guest/lib/` and `src/core`), bundled by
 *   `scripts/build-guest.mjs` (esbuild) into ONE file each, `<package root>/dist/guest/<name>.js`.
 *   {@link loadGuestProgram} reads a bundle once per process and hashes it.
 * - In the VM: `$HOME/.fabrik/guest/<hash>/<name>.js` (dir 0700, file 0600), written atomically (temp file +
 *   rename) by the {@link guestInstallSnippet} part of each program's `sh` wrapper.
 * - A call passes the program text in argv only when the host believes the VM lacks it
 *   ({@link GuestInstallCache}); otherwise argv carries just the hash and the request travels on stdin. If the
 *   VM lost the file, the wrapper exits {@link GUEST_EXIT_NOT_INSTALLED} before running anything and the caller
 *   retries once with the text ({@link withGuestInstall}). So the common case is ONE remote call either way.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PrerequisiteError } from "../core/errors.js";

/** The guest programs. */
export type GuestProgramName = "probe" | "resume" | "evidence" | "inspect" | "control";

/** One bundled guest program as the host holds it. */
export interface GuestProgram {
  name: GuestProgramName;
  /** The bundle's text (UTF-8 JavaScript for bun). */
  text: string;
  /** Content hash: the first 16 hex digits of its sha256. Names its folder in the VM. */
  hash: string;
  /** Size of `text`, bytes. */
  bytes: number;
  /** Where it was read from on the host. */
  file: string;
}

/** Exit status of a wrapper whose program is not installed in the VM and was not sent (the cache was stale). */
export const GUEST_EXIT_NOT_INSTALLED = 79;
/** Exit status of a wrapper that could not write the program into `$HOME/.fabrik/guest/<hash>/`. */
export const GUEST_EXIT_INSTALL_FAILED = 78;

/** The package root: two levels above this module (`src/vm/` under vitest, `dist/vm/` after tsc). */
const PACKAGE_ROOT = new URL("../../", import.meta.url);

/** `<package root>/dist/guest/<name>.js`. */
export function guestBundlePath(name: GuestProgramName): string {
  return path.join(decodeURIComponent(PACKAGE_ROOT.pathname), "dist", "guest", `${name}.js`);
}

/** sha256 of `text`, first 16 hex digits. */
export function guestHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

const loaded = new Map<GuestProgramName, GuestProgram>();

/**
 * The bundled program `name`, read (once per process) from `<package root>/dist/guest/<name>.js`.
 * @throws PrerequisiteError when the bundle is missing (a source checkout that was never built).
 */
export function loadGuestProgram(name: GuestProgramName): GuestProgram {
  const have = loaded.get(name);
  if (have) return have;
  const file = guestBundlePath(name);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new PrerequisiteError(
      `fabrik's guest program ${name} is missing (${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      "run `npm run build` in fabrik's folder (a packaged fabrik ships dist/guest/)",
      { cause: err },
    );
  }
  const program: GuestProgram = { name, text, hash: guestHash(text), bytes: Buffer.byteLength(text), file };
  loaded.set(name, program);
  return program;
}

/**
 * POSIX `sh` text (also valid bash) that makes `$f` the installed program: with `$h` = hash, `$n` = program
 * name, `$t` = the program text or "" (variables the wrapper sets from its positional parameters; nothing is
 * interpolated). With a text, writes `$HOME/.fabrik/guest/$h/$n.js` atomically in a subshell with umask 077
 * (dir 0700, file 0600; the caller's umask is untouched); without one, exits {@link GUEST_EXIT_NOT_INSTALLED}
 * when the file is absent or empty. Exits {@link GUEST_EXIT_INSTALL_FAILED} when writing fails.
 */
export function guestInstallSnippet(): string {
  return `d="$HOME/.fabrik/guest/$h"; f="$d/$n.js"
if [ -n "$t" ]; then
  ( umask 077; mkdir -p "$d" && chmod 700 "$HOME/.fabrik/guest" "$d" && printf %s "$t" > "$f.$$" && mv -f "$f.$$" "$f" ) || { rm -f "$f.$$"; echo "fabrik-guest: cannot write $f" >&2; exit ${GUEST_EXIT_INSTALL_FAILED}; }
elif [ ! -s "$f" ]; then
  echo "fabrik-guest: $n $h is not installed" >&2; exit ${GUEST_EXIT_NOT_INSTALLED}
fi`;
}

/**
 * What the host believes is installed in which VM. Injected by the caller; the CLI keeps a
 * {@link FileGuestInstallCache} under FABRIK_HOME/cache so separate `fabrik` processes share it. A stale entry
 * (the VM lost the file) costs one extra call, never a wrong answer.
 */
export interface GuestInstallCache {
  /** True when program `hash` is believed installed in `vm`. */
  has(vm: string, hash: string): boolean;
  /** Record that program `hash` is installed in `vm`. */
  add(vm: string, hash: string): void;
  /** Forget an entry found stale. */
  delete(vm: string, hash: string): void;
}

/** A {@link GuestInstallCache} for one process (the default). */
export class MemoryGuestInstallCache implements GuestInstallCache {
  private readonly entries = new Set<string>();
  has(vm: string, hash: string): boolean {
    return this.entries.has(`${vm}\0${hash}`);
  }
  add(vm: string, hash: string): void {
    this.entries.add(`${vm}\0${hash}`);
  }
  delete(vm: string, hash: string): void {
    this.entries.delete(`${vm}\0${hash}`);
  }
}

/**
 * A {@link GuestInstallCache} kept in a small JSON file (`{"v":1,"vms":{"<vm>":["<hash>",…]}}`, mode 0600),
 * shared by `fabrik` processes. Read on every `has` (it is tiny), written atomically (temp + rename) on change;
 * at most {@link FileGuestInstallCache.MAX_HASHES_PER_VM} hashes per VM are kept (newest last). A missing or
 * unreadable file counts as empty; a failed write is ignored (the cache is only an optimisation).
 */
export class FileGuestInstallCache implements GuestInstallCache {
  static readonly MAX_HASHES_PER_VM = 8;
  /** @param file e.g. `$FABRIK_HOME/cache/guest-installs.json`; its folder is created on the first write. */
  constructor(readonly file: string) {}

  private read(): Record<string, string[]> {
    try {
      const j = JSON.parse(fs.readFileSync(this.file, "utf8")) as { v?: unknown; vms?: unknown };
      if (j.v !== 1 || !j.vms || typeof j.vms !== "object") return {};
      const out: Record<string, string[]> = {};
      for (const [vm, hashes] of Object.entries(j.vms as Record<string, unknown>)) {
        if (Array.isArray(hashes)) out[vm] = hashes.filter((h): h is string => typeof h === "string");
      }
      return out;
    } catch {
      return {};
    }
  }

  private write(vms: Record<string, string[]>): void {
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ v: 1, vms }) + "\n", { mode: 0o600 });
      fs.renameSync(tmp, this.file);
    } catch {
      /* only an optimisation */
    }
  }

  has(vm: string, hash: string): boolean {
    return this.read()[vm]?.includes(hash) ?? false;
  }
  add(vm: string, hash: string): void {
    const vms = this.read();
    // Already the newest entry (every call after the first): nothing to write.
    if (vms[vm]?.at(-1) === hash) return;
    const list = (vms[vm] ?? []).filter((h) => h !== hash);
    list.push(hash);
    vms[vm] = list.slice(-FileGuestInstallCache.MAX_HASHES_PER_VM);
    this.write(vms);
  }
  delete(vm: string, hash: string): void {
    const vms = this.read();
    if (!vms[vm]?.includes(hash)) return;
    vms[vm] = vms[vm].filter((h) => h !== hash);
    this.write(vms);
  }
}

/** The process-wide default cache, used when a caller injects none. */
export const defaultGuestInstallCache: GuestInstallCache = new MemoryGuestInstallCache();

/**
 * What one attempt of a guest call reports to {@link withGuestInstall}: the wrapper said "not installed"
 * (nothing ran), or the call's value and whether the program is in place now (false when the wrapper stopped
 * before installing, e.g. for want of bun).
 */
export type GuestAttempt<T> = { notInstalled: true } | { notInstalled: false; installed: boolean; value: T };

/**
 * Run a guest call with the install protocol: send the program text only when `cache` says `vm` lacks it; if
 * the VM answers "not installed" (stale cache), retry ONCE with the text. Records successful installs.
 * @param attempt makes one remote call; `install` says whether to pass the program text.
 * @returns the value of the last attempt.
 * @throws Error when the VM says "not installed" although the text was sent (a broken wrapper: a bug).
 */
export async function withGuestInstall<T>(
  cache: GuestInstallCache,
  vm: string,
  program: GuestProgram,
  attempt: (install: boolean) => Promise<GuestAttempt<T>>,
): Promise<T> {
  const install = !cache.has(vm, program.hash);
  let r = await attempt(install);
  if (r.notInstalled && !install) {
    cache.delete(vm, program.hash);
    r = await attempt(true);
  }
  if (r.notInstalled) throw new Error(`VM ${vm}: guest program ${program.name} ${program.hash} reported "not installed" although it was sent`);
  if (r.installed) cache.add(vm, program.hash);
  return r.value;
}
