/**
 * Running the built `fabrik` binary in end-to-end tests, with the Lima stand-in first on PATH and
 * temporary FABRIK_HOME / LIMA_HOME folders. Engine installs inside test VMs share one package cache
 * (`.cache/shared-pkg-cache`) so each VM's `bun install` is a hard-link copy, not a download.
 */
import { spawnSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./fixtures.js";

export const STANDIN_DIR = path.join(REPO_ROOT, "scripts", "limactl-standin");
export const FABRIK_BIN = path.join(REPO_ROOT, "bin", "fabrik.js");
export const SHARED_PKG_CACHE = path.join(REPO_ROOT, ".cache", "shared-pkg-cache");

/** Why stand-in VMs cannot run here, or undefined when they can (root, unshare, sshd). */
export function standinUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the Lima stand-in needs root (namespaces)";
  if (!fs.existsSync("/usr/sbin/sshd")) return "openssh-server is not installed (.ci/run installs it)";
  if (spawnSync("unshare", ["--version"]).status !== 0) return "unshare (util-linux) is missing";
  return undefined;
}

export interface TestEnv {
  env: NodeJS.ProcessEnv;
  fabrikHome: string;
  limaHome: string;
  tmp: string;
}

/** A fresh FABRIK_HOME and LIMA_HOME, the stand-in first on PATH, no colour. */
export function makeTestEnv(prefix = "fabrik-e2e-"): TestEnv {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const fabrikHome = path.join(tmp, "fh");
  // Keep LIMA_HOME short: socket paths under it must stay < 108 chars.
  const limaHome = path.join(tmp, "lh");
  fs.mkdirSync(limaHome, { recursive: true });
  fs.mkdirSync(SHARED_PKG_CACHE, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${STANDIN_DIR}:${process.env.PATH}`,
    FABRIK_HOME: fabrikHome,
    FABRIK_CONFIG: path.join(tmp, "config.json"),
    LIMA_HOME: limaHome,
    FABRIK_ENGINE_CACHE_DIR: SHARED_PKG_CACHE,
    NO_COLOR: "1",
  };
  delete env.FORCE_COLOR;
  return { env, fabrikHome, limaHome, tmp };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built fabrik synchronously. */
export function fabrik(t: TestEnv, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [FABRIK_BIN, ...args], {
    env: opts.env ?? t.env,
    input: opts.input ?? "",
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 120_000,
    cwd: REPO_ROOT,
  });
  return { code: r.status ?? (r.signal ? 128 : 1), stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Run the built fabrik asynchronously (does not block the event loop). */
export function fabrikAsync(t: TestEnv, args: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [FABRIK_BIN, ...args], { env: t.env, cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c) => (stdout += c));
    p.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    p.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** JSON from stdout, or a test failure that shows stderr. */
export function json<T = unknown>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`expected JSON on stdout (exit ${r.code}); stdout=${r.stdout.slice(0, 500)} stderr=${r.stderr.slice(0, 2000)}`);
  }
}

/** Stop every stand-in VM under a LIMA_HOME (afterAll): SIGKILLs their inits through limactl. */
export function stopAllStandinVms(t: TestEnv): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(t.limaHome).filter((n) => !n.startsWith("_") && !n.startsWith("."));
  } catch {
    return;
  }
  for (const n of names) spawnSync(path.join(STANDIN_DIR, "limactl"), ["stop", "-f", n], { env: t.env, stdio: "ignore", timeout: 30_000 });
}

/** Kill processes tagged for local VMs under this FABRIK_HOME (afterAll). */
export function stopAllLocalVms(t: TestEnv): void {
  const dir = path.join(t.fabrikHome, "local-vms");
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) spawnSync(process.execPath, [FABRIK_BIN, "vm", "stop", "--force", n], { env: t.env, stdio: "ignore", timeout: 30_000 });
}

/** Poll until `fn` returns a truthy value or the deadline passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: { timeoutMs: number; intervalMs?: number; what: string }): Promise<NonNullable<T>> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}
