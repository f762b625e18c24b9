/**
 * `fabrik runs evidence --id N [-o FILE] [--max-size 200MB]`: one tar.gz to attach to a bug report, safe to make
 * public. It holds
 * - `vm/snapshot.db`: a consistent snapshot of the run's DB (VACUUM INTO from a read-only connection, the WAL
 *   included), secrets masked inside the copy (src/vm/guest/evidence.ts);
 * - `vm/files/`: run.sh, heartbeat.json, exit_code, the pid files, fabrik-run.json, resume-N.sh;
 * - `vm/log-tail.txt`: the last 2 000 log lines;
 * - `run/show.json` (`runs show --json`), `run/history.json` (the registry's run events);
 * - `doctor.json` (`fabrik doctor --vm VM --json`), `versions.json` (fabrik, node, engine, bun, SQLite);
 * - `manifest.json`: each file's size and sha256, what was cut to fit, what was masked.
 *
 * Secrets are masked everywhere (src/core/secrets.ts: values under secret keys of `--input` and the environments,
 * the values themselves wherever they appear, well-known token shapes); before anything is written every file is
 * searched again for the known values and token shapes, and the bundle is refused if one survived.
 *
 * HOOK (issue 13): `runs why --json` and `runs events --json` output belong beside `run/show.json` once those
 * commands exist; see {@link PENDING_SECTIONS} and `addRunSections`.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import type { Context } from "./context.js";
import { requireRun, showRun, type RunView } from "./runs-service.js";
import type { RunRecord } from "./registry.js";
import { FabrikError, RemoteError, UsageError, VmUnavailableError } from "../core/errors.js";
import { SecretMasker, TOKEN_SHAPES, MASK, secretEnvValues, secretValuesIn } from "../core/secrets.js";
import { formatBytes } from "../core/units.js";
import { VERSION } from "./version.js";
import type { EvidenceResult } from "../vm/evidence-schema.js";

/** Default `--max-size`: 200 MB. */
export const DEFAULT_MAX_BYTES = 200 * 1000 ** 2;
/** Log lines kept. */
export const LOG_LINES = 2000;
/** When the snapshot is over budget, each big value keeps this many bytes (its end). */
export const TRUNCATE_VALUE_BYTES = 64 * 1024;
/** Room kept in the budget for everything but the snapshot and the log. */
const RESERVE_BYTES = 1024 * 1024;

/**
 * Sections the bundle should hold once other commands exist (issue 13 is building `runs why` and `runs events`).
 * Listed in the manifest as `pending`, so a reader knows they were not forgotten.
 */
export const PENDING_SECTIONS = [
  { path: "run/why.json", command: "fabrik runs why --id N --json", note: "not available in this fabrik yet (issue 13)" },
  { path: "run/events.json", command: "fabrik runs events --id N --json", note: "not available in this fabrik yet (issue 13); run/history.json holds the registry's run events" },
] as const;

export interface EvidenceRequest {
  id: number;
  /** Output file (default `fabrik-evidence-run-<id>-<stamp>.tar.gz` in the working directory). */
  out?: string | undefined;
  maxBytes: number;
}

/** One file of the bundle, as the manifest lists it. Paths are relative to the bundle's top folder. */
export interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
  /** Where it came from (`vm:<guest path>`, `fabrik runs show --json`, …). */
  source: string;
  cut: string | null;
}

/** `manifest.json`. */
export interface EvidenceManifest {
  v: 1;
  fabrik_version: string;
  created_at: string;
  run: { id: number; vm: string; smithers_run_id: string; engine_version: string | null; effective_status: string };
  max_size_bytes: number;
  files: ManifestFile[];
  /** What was cut to fit, one line per cut (empty when nothing was). */
  cut: string[];
  /** Files looked for in the control dir that were absent. */
  missing: string[];
  snapshot: EvidenceResult["snapshot"];
  masking: { rules: Record<string, number>; known_values: number; vm_environment_values: number; verified: true };
  pending: { path: string; command: string; note: string }[];
}

/** What `runs evidence --json` prints. */
export interface EvidenceView {
  path: string;
  bytes: number;
  sha256: string;
  manifest: EvidenceManifest;
}

function sha256(p: string): string {
  return createHash("sha256").update(fs.readFileSync(p)).digest("hex");
}

/** Known secret values: the run input's (values under secret keys) and the host environment's. */
export function knownSecretsOf(run: Pick<RunRecord, "input_json">, env: NodeJS.ProcessEnv): string[] {
  let input: unknown = null;
  try {
    input = run.input_json ? JSON.parse(run.input_json) : null;
  } catch {
    input = null;
  }
  return [...new Set([...secretValuesIn(input), ...secretEnvValues(env as Record<string, string | undefined>)])];
}

/**
 * Search a file for secrets that survived: the known values (bytes, as UTF-8) and the token shapes (in text, and in
 * a DB read as Latin-1, which keeps ASCII intact). Returns what was found (names only, never the values).
 */
export function findLeaks(file: string, known: readonly string[]): string[] {
  const bytes = fs.readFileSync(file);
  const out: string[] = [];
  for (const k of known) if (bytes.includes(Buffer.from(k, "utf8"))) out.push("a known secret value");
  const text = file.endsWith(".db") ? bytes.toString("latin1") : bytes.toString("utf8");
  for (const shape of TOKEN_SHAPES) {
    shape.re.lastIndex = 0;
    for (const m of text.matchAll(shape.re)) {
      if (m[0] !== MASK) {
        out.push(`a ${shape.name}-shaped token`);
        break;
      }
    }
  }
  return [...new Set(out)];
}

/** Write a JSON section, masked. */
function writeJson(dir: string, rel: string, value: unknown, m: SecretMasker): void {
  const p = path.join(dir, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
  fs.writeFileSync(p, JSON.stringify(m.json(value), null, 2) + "\n", { mode: 0o600 });
}

/** The host-side sections. HOOK (issue 13): add `run/why.json` and `run/events.json` here (and drop them from PENDING_SECTIONS). */
async function addRunSections(ctx: Context, dir: string, run: RunRecord, show: RunView, m: SecretMasker, sources: Map<string, string>): Promise<void> {
  writeJson(dir, "run/show.json", show, m);
  sources.set("run/show.json", `fabrik runs show --id ${run.id} --json`);
  const history = ctx.registry().runEvents(run.id).map((e) => {
    let detail: unknown = e.detail_json;
    try {
      detail = e.detail_json ? JSON.parse(e.detail_json) : null;
    } catch {
      /* kept as text */
    }
    return { id: e.id, at: new Date(e.at_ms).toISOString(), at_ms: e.at_ms, kind: e.kind, detail };
  });
  writeJson(dir, "run/history.json", history, m);
  sources.set("run/history.json", "the registry's run events (fabrik's own history of the run)");
}

/** Unpack the VM's tar into `dir`: regular files and folders only (no links, devices, absolute or `..` paths). */
async function unpack(tarFile: string, dir: string): Promise<void> {
  const tar = await import("tar");
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const refused: string[] = [];
  await tar.x({
    file: tarFile,
    cwd: dir,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    filter: (p, entry) => {
      const type = (entry as { type?: string }).type;
      const ok = (type === "File" || type === "Directory") && !p.split("/").includes("..");
      if (!ok) refused.push(p);
      return ok;
    },
  });
  if (refused.length) throw new RemoteError("vm", "evidence fetch", `the VM's archive held entries that are not plain files: ${refused.slice(0, 3).join(", ")}`);
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/**
 * Make the bundle. Throws NotFoundError (no such run), VmUnavailableError (the VM is not running), UsageError (the
 * output exists), RemoteError (the VM side failed), FabrikError `internal` when a secret survived masking (nothing
 * is written then), UserError when the bundle cannot fit `--max-size` even after cutting.
 */
export async function makeEvidence(ctx: Context, req: EvidenceRequest): Promise<{ view: EvidenceView; warnings: string[] }> {
  const run = requireRun(ctx, req.id);
  const stamp = new Date(ctx.now()).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const outFile = path.resolve(req.out ?? `fabrik-evidence-run-${run.id}-${stamp}.tar.gz`);
  if (fs.existsSync(outFile)) throw new UsageError(`${outFile} already exists`, "pass another -o FILE (fabrik never overwrites a file)");
  const driver = await ctx.driver(run.driver);
  const info = await driver.inspect(run.vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info || info.status !== "Running") {
    throw new VmUnavailableError(run.vm, `cannot gather evidence of run ${run.id}: VM ${run.vm} is ${info ? info.status : "gone"}`, info ? `start it with \`fabrik vm start ${run.vm}\`` : "see `fabrik vm list`");
  }
  const home = info.guestHome ?? ctx.registry().getVm(run.vm)?.guest_home;
  if (!home) throw new VmUnavailableError(run.vm, `cannot tell the guest home of VM ${run.vm}`, "see `fabrik vm list --json`");

  const known = knownSecretsOf(run, ctx.env);
  const m = new SecretMasker(known);
  const warnings: string[] = [];
  const { view: show, warnings: w } = await showRun(ctx, run.id, { live: true, nodes: true });
  warnings.push(...w);
  const { doctorReport } = await import("./doctor-service.js");
  const doctor = (await doctorReport(ctx, { vm: run.vm })).view;

  const staging = fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-evidence-"));
  const top = `fabrik-evidence-run-${run.id}`;
  const dir = path.join(staging, top);
  const sources = new Map<string, string>();
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
    const logBudget = Math.min(8 * 1024 * 1024, Math.floor(req.maxBytes / 4));
    const outDir = `${home.replace(/\/+$/, "")}/.fabrik/tmp/evidence-${run.id}-${randomBytes(6).toString("hex")}`;
    const { runGuestEvidence, fetchEvidenceDir } = await import("../vm/evidence.js");
    const tarFile = path.join(staging, "vm.tar");
    const fetchOpts = { timeoutMs: 10 * 60_000, maxBytes: req.maxBytes * 2 + 16 * 1024 * 1024, signal: ctx.signal };
    const result = await runGuestEvidence(
      driver,
      run.vm,
      {
        v: 1,
        control_dir: run.control_dir || null,
        db_path: show.db_path ?? (run.smithers_db_path || null),
        smithers_run_id: run.smithers_run_id,
        out_dir: outDir,
        log_lines: LOG_LINES,
        log_max_bytes: Math.max(1, logBudget),
        snapshot_max_bytes: Math.max(0, req.maxBytes - logBudget - RESERVE_BYTES),
        truncate_value_bytes: TRUNCATE_VALUE_BYTES,
        known_secrets: known,
      },
      { timeoutMs: 10 * 60_000, signal: ctx.signal, installCache: await ctx.guestInstalls() },
    ).catch(async (err: unknown) => {
      // Whatever the program left in the VM is removed (the fetch script deletes the folder).
      await fetchEvidenceDir(driver, run.vm, outDir, tarFile, fetchOpts).catch(() => 0);
      throw err;
    });
    if (!result.ok) {
      await fetchEvidenceDir(driver, run.vm, outDir, tarFile, fetchOpts).catch(() => 0);
      throw new RemoteError(run.vm, "evidence", result.error ?? "the evidence program failed");
    }
    await fetchEvidenceDir(driver, run.vm, outDir, tarFile, fetchOpts);
    await unpack(tarFile, path.join(dir, "vm"));
    fs.rmSync(tarFile, { force: true });
    for (const f of result.files) sources.set(`vm/${f.name}`, `vm:${f.source}`);

    await addRunSections(ctx, dir, run, show, m, sources);
    writeJson(dir, "doctor.json", doctor, m);
    sources.set("doctor.json", `fabrik doctor --vm ${run.vm} --json`);
    const lastProbe = ctx.registry().vmProbes(run.vm, 1)[0];
    let engines: unknown = null;
    try {
      engines = lastProbe?.facts_json ? (JSON.parse(lastProbe.facts_json) as { engines?: unknown }).engines ?? null : null;
    } catch {
      engines = null;
    }
    writeJson(dir, "versions.json", { fabrik: VERSION, node: process.versions.node, run_engine_version: run.engine_version, run_sh_engine: show.run_sh_engine, engines_installed_in_vm: engines, vm_bun: result.runtime.bun, vm_sqlite: result.runtime.sqlite }, m);
    sources.set("versions.json", "fabrik, node, the run's engine, the VM's bun and SQLite");

    // The final check: nothing that looks like a secret may leave.
    const leaks: string[] = [];
    for (const f of walk(dir)) for (const l of findLeaks(f, m.knownValues())) leaks.push(`${path.relative(dir, f)}: ${l}`);
    if (leaks.length) {
      throw new FabrikError("internal", `a secret survived masking (${leaks.slice(0, 5).join("; ")}); no bundle was written`, "this is a bug in fabrik's masking; please report it without the bundle");
    }

    const rel = (p: string) => path.relative(dir, p).split(path.sep).join("/");
    const cutOf = new Map(result.files.map((f) => [`vm/${f.name}`, f.cut]));
    const files: ManifestFile[] = walk(dir).map((p) => ({ path: rel(p), bytes: fs.statSync(p).size, sha256: sha256(p), source: sources.get(rel(p)) ?? "fabrik", cut: cutOf.get(rel(p)) ?? null }));
    const cut = files.filter((f) => f.cut).map((f) => `${f.path}: ${f.cut}`);
    if (result.snapshot && !result.snapshot.name) cut.push(`vm/snapshot.db: ${result.snapshot.cut ?? "left out"}`);
    const rules = { ...result.masked };
    for (const [k, v] of Object.entries(m.counts)) rules[k] = (rules[k] ?? 0) + v;
    const manifest: EvidenceManifest = {
      v: 1,
      fabrik_version: VERSION,
      created_at: new Date(ctx.now()).toISOString(),
      run: { id: run.id, vm: run.vm, smithers_run_id: run.smithers_run_id, engine_version: run.engine_version, effective_status: show.effective_status },
      max_size_bytes: req.maxBytes,
      files,
      cut,
      missing: result.missing,
      snapshot: result.snapshot,
      masking: { rules, known_values: known.length, vm_environment_values: result.env_secrets, verified: true },
      pending: PENDING_SECTIONS.map((s) => ({ ...s, command: s.command.replace(" N ", ` ${run.id} `) })),
    };
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o600 });

    const tar = await import("tar");
    const tmpOut = `${outFile}.tmp-${process.pid}`;
    await tar.c({ gzip: { level: 9 }, cwd: staging, portable: true, file: tmpOut }, [top]);
    fs.chmodSync(tmpOut, 0o600);
    const bytes = fs.statSync(tmpOut).size;
    if (bytes > req.maxBytes) {
      fs.rmSync(tmpOut, { force: true });
      const { UserError } = await import("../core/errors.js");
      throw new UserError(`the bundle is ${formatBytes(bytes)} even after cutting, over --max-size ${formatBytes(req.maxBytes)}`, "raise --max-size");
    }
    fs.renameSync(tmpOut, outFile);
    return { view: { path: outFile, bytes, sha256: sha256(outFile), manifest }, warnings };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
