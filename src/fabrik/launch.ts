/**
 * `fabrik run`: launch a durable Smithers run in a VM and return its host id at once.
 *
 * Order matters for "never a phantom running row": validate everything on the host first; install the
 * engine; insert the row as `launching`; ship the control dir and start `run.sh` detached in ONE remote
 * call that only succeeds once the launcher has written its pid; only then mark the row `running`. Any
 * failure after the insert leaves a `failed` row with the reason, and the VM-side script removes a control
 * dir it created but could not complete.
 */
import fs from "node:fs";
import os from "node:os";
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Context } from "./context.js";
import { driverFor } from "./context.js";
import { DEFAULTS } from "./config.js";
import { FabrikError, NotFoundError, RefusedError, RemoteError, UsageError, UserError, VmUnavailableError } from "../core/errors.js";
import { pidExists } from "../core/pid-exists.js";
import { guestHomeOf } from "./vm-service.js";
import { ensureEngine, engineDir, requireEngineDialect } from "../vm/engine.js";
import { CONTROL_FILES, INPUT_PRELOAD, buildLauncherScript, runDbPath, runDirName, smithersRunIdFor, startEngineArgs } from "../vm/launcher.js";
import type { PendingLaunch, RunRecord } from "./registry.js";
import { assertVmName } from "../vm/names.js";

/** What the user asked for. */
export interface LaunchRequest {
  vm: string;
  /** Workflow file on the host. */
  workflow: string;
  /** `--input`: JSON text, or `@file`. */
  input?: string | undefined;
  label?: string | undefined;
  engineVersion: string;
}

/** What `fabrik run --json` prints (at least `{id, vm, smithers_run_id, control_dir, engine_version}`). */
export interface LaunchResult {
  id: number;
  vm: string;
  driver: string;
  smithers_run_id: string;
  control_dir: string;
  db_path: string;
  workflow_path: string;
  engine_version: string;
  launcher_pid: number | null;
  status: string;
}

/** Source files copied with the workflow: the file itself plus its folder's package.json and helpers. */
const HELPER_EXT = /\.(tsx?|jsx?|mjs|cjs|mts|cts|json)$/;
const MAX_HELPER_BYTES = 2 * 1024 * 1024;

/**
 * Parse `--input` (JSON text or `@file`); returns compact JSON text. The engine takes only a JSON object
 * ("Run input must be a JSON object", then exit 1 before the run exists), so anything else is refused here.
 * Throws UsageError (exit 2) for an unreadable file, invalid JSON or a non-object.
 */
export function parseInput(input: string | undefined): string {
  if (input === undefined) return "{}";
  let text = input;
  if (input.startsWith("@")) {
    const file = input.slice(1);
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read input file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, "pass --input @FILE with a readable JSON file");
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--input is not valid JSON: ${(err as Error).message}`, `e.g. --input '{"tasks": 6}' or --input @input.json`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(`--input must be a JSON object, got ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`, `e.g. --input '{"tasks": 6}'`);
  }
  return JSON.stringify(value);
}

/** The workflow file and the helpers beside it to copy. Throws NotFoundError/UserError. */
export function collectWorkflowFiles(workflow: string): { main: string; files: string[] } {
  const main = path.resolve(workflow);
  let st: fs.Stats;
  try {
    st = fs.statSync(main);
  } catch {
    throw new NotFoundError(`workflow file ${workflow} does not exist`, "pass --workflow with the path of a .tsx workflow on this host");
  }
  if (!st.isFile()) throw new UserError(`workflow ${workflow} is not a file`, "pass --workflow with the path of a .tsx workflow file");
  try {
    fs.accessSync(main, fs.constants.R_OK);
  } catch {
    throw new UserError(`cannot read workflow file ${workflow}`, "check its permissions");
  }
  const dir = path.dirname(main);
  const files = new Set<string>([main]);
  for (const name of fs.readdirSync(dir)) {
    if (!HELPER_EXT.test(name) || name === "package-lock.json" || name.startsWith(".")) continue;
    const p = path.join(dir, name);
    try {
      const s = fs.statSync(p);
      if (s.isFile() && s.size <= MAX_HELPER_BYTES) files.add(p);
    } catch {
      /* skip */
    }
  }
  return { main, files: [...files] };
}

/**
 * The VM-side launch step (constant bash; values as positional parameters, a tar of the control dir on
 * stdin): `$1` control dir, `$2` engine dir. Creates the control dir (refuses an existing one), unpacks,
 * links the engine's node_modules beside the workflow, starts run.sh detached with setsid, and waits up to
 * 10 s for the launcher to record the pid it started.
 * Exit codes: 0 started (prints `{"launcher_pid":…,"child_pid":…}`), 73 control dir exists,
 * 74 unpack failed, 76 launcher exited at once, 77 launcher did not start in time.
 */
export const LAUNCH_SCRIPT = String.raw`set -u
# The run's files (input, DB, log) are private to the guest user: new dirs 0700, files 0600.
umask 077
C="$1"; engine_dir="$2"
mkdir -p "$(dirname "$C")" || exit 1
if ! mkdir "$C" 2>/dev/null; then echo "control dir already exists: $C" >&2; exit 73; fi
cleanup() { rm -rf -- "$C"; }
tar -x -o -C "$C" -f - || { echo "cannot unpack the control dir" >&2; cleanup; exit 74; }
mkdir -p "$C/reports" "$C/.smithers" || { cleanup; exit 74; }
[ -e "$C/workflow/node_modules" ] || ln -s "$engine_dir/node_modules" "$C/workflow/node_modules"
[ -e "$C/workflow/bunfig.toml" ] || printf '[install]\nauto = "disable"\n' > "$C/workflow/bunfig.toml"
chmod 700 "$C/run.sh"
setsid -f bash "$C/run.sh" </dev/null >/dev/null 2>&1
i=0
while [ $i -lt 200 ]; do
  if [ -s "$C/smithers.pid" ] && [ -s "$C/launcher.pid" ]; then
    printf '{"launcher_pid":%s,"child_pid":%s}\n' "$(cat "$C/launcher.pid")" "$(cat "$C/smithers.pid")"
    exit 0
  fi
  if [ -s "$C/exit_code" ]; then
    echo "the launcher exited at once with code $(cat "$C/exit_code")" >&2
    tail -n 5 "$C/reports/smithers.log" >&2 2>/dev/null
    exit 76
  fi
  sleep 0.05
  i=$((i + 1))
done
echo "the launcher did not start within 10 s" >&2
tail -n 5 "$C/reports/smithers.log" >&2 2>/dev/null
exit 77
`;

async function tarDirectory(dir: string): Promise<Buffer> {
  const tar = await import("tar");
  const chunks: Buffer[] = [];
  const stream = tar.c({ cwd: dir, portable: true }, fs.readdirSync(dir));
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * Launch a run. Returns as soon as the launcher confirmed it started.
 * @throws UsageError/UserError/NotFoundError for bad input (no row written), VmUnavailableError for a stopped
 *   VM, PrerequisiteError when the engine cannot be installed, RefusedError/RemoteError when the VM-side
 *   launch fails (the row is then `failed` with the reason).
 */
export async function launchRun(ctx: Context, req: LaunchRequest): Promise<{ result: LaunchResult; notes: string[] }> {
  assertVmName(req.vm);
  const notes: string[] = [];
  const dialect = requireEngineDialect(req.engineVersion);
  const inputJson = parseInput(req.input);
  const wf = collectWorkflowFiles(req.workflow);
  // One status call: the driver recorded for the VM (or the default) tells both existence and status.
  const { driver, name: driverName } = await driverFor(ctx, req.vm);
  const info = await driver.inspect(req.vm, { timeoutMs: ctx.config.probeTimeoutMs * 2 });
  if (!info) throw new NotFoundError(`VM ${req.vm} does not exist`, "see `fabrik vm list`");
  if (info.status !== "Running") throw new VmUnavailableError(req.vm, `VM ${req.vm} is ${info.status}`, `start it with \`fabrik vm start ${req.vm}\``);
  const home = info.guestHome ?? (await guestHomeOf(ctx, req.vm));
  if (!ctx.registry().getVm(req.vm)) {
    ctx.registry().upsertVm({ name: req.vm, driver: driverName, guest_home: home, created_at_ms: ctx.now(), template: null });
  }

  const engine = await ensureEngine(driver, req.vm, home, req.engineVersion, {
    cacheDir: ctx.config.engineCacheDir,
    timeoutMs: DEFAULTS.engineInstallTimeoutMs,
    signal: ctx.signal,
  });
  if (engine.fresh) notes.push(`installed engine ${req.engineVersion} in ${req.vm} (${(engine.durationMs / 1000).toFixed(1)}s)`);

  const runsRoot = `${home}/work/${req.vm}/.runs`;
  const workflowName = path.basename(wf.main);
  // The journal: the row carries this launch's id before the VM is asked (see PendingLaunch).
  const launchId = newLaunchId("launch");
  const journalledAt = ctx.now();
  const row = ctx.registry().insertRunWith((id) => {
    const controlDir = `${runsRoot}/${runDirName(id, req.label ?? workflowName)}`;
    return {
      vm: req.vm,
      driver: driverName,
      label: req.label ?? null,
      control_dir: controlDir,
      workflow_path: `${controlDir}/${CONTROL_FILES.workflowDir}/${workflowName}`,
      workflow_source: wf.main,
      input_json: inputJson,
      smithers_run_id: smithersRunIdFor(id),
      smithers_db_path: runDbPath(controlDir, id),
      engine_version: req.engineVersion,
      status: "launching",
      pending_json: JSON.stringify({ kind: "launch", launch_id: launchId, at_ms: journalledAt, detail: { engine_version: req.engineVersion } } satisfies PendingLaunch),
    };
  }, ctx.now());

  sweepStaging(os.tmpdir());
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), `${STAGING_PREFIX}${process.pid}-`));
  try {
    const script = buildLauncherScript({
      hostRunId: row.id,
      smithersRunId: row.smithers_run_id,
      vm: req.vm,
      controlDir: row.control_dir,
      workflowPath: row.workflow_path,
      dbPath: row.smithers_db_path,
      engineVersion: req.engineVersion,
      dialect,
      engineDir: engineDir(home, req.engineVersion),
      heartbeatIntervalS: ctx.config.launcherHeartbeatIntervalS,
      engine: startEngineArgs(dialect, row.workflow_path, row.smithers_run_id),
      mode: "start",
      launchId,
      banner: [],
    });
    // Modes travel in the archive (tar as root keeps them): dirs 0700, files 0600, run.sh 0700.
    fs.chmodSync(staging, 0o700);
    fs.mkdirSync(path.join(staging, CONTROL_FILES.workflowDir), { mode: 0o700 });
    for (const f of wf.files) {
      const to = path.join(staging, CONTROL_FILES.workflowDir, path.basename(f));
      fs.copyFileSync(f, to);
      fs.chmodSync(to, 0o600);
    }
    fs.writeFileSync(path.join(staging, CONTROL_FILES.runScript), script, { mode: 0o700 });
    fs.writeFileSync(path.join(staging, CONTROL_FILES.input), inputJson + "\n", { mode: 0o600 });
    fs.writeFileSync(path.join(staging, CONTROL_FILES.inputPreload), INPUT_PRELOAD, { mode: 0o600 });
    fs.writeFileSync(
      path.join(staging, CONTROL_FILES.meta),
      JSON.stringify({ v: 1, host_run_id: row.id, smithers_run_id: row.smithers_run_id, vm: req.vm, engine_version: req.engineVersion, workflow: workflowName, label: req.label ?? null, db_path: row.smithers_db_path, created_at_ms: row.created_at_ms }, null, 2) + "\n",
      { mode: 0o600 },
    );
    const archive = await tarDirectory(staging);

    let r;
    try {
      r = await driver.exec(req.vm, ["bash", "-c", LAUNCH_SCRIPT, "fabrik-launch", row.control_dir, engine.layout.dir], {
        stdin: archive,
        timeoutMs: ctx.config.probeTimeoutMs + 30_000,
        cwd: home,
        signal: ctx.signal,
      });
    } catch (err) {
      failRow(ctx, row, `launch failed: ${(err as Error).message}`);
      throw err;
    }
    if (r.exitCode !== 0) {
      const detail = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
      failRow(ctx, row, `launch failed (exit ${r.exitCode}): ${detail}`, { definite: true });
      if (r.exitCode === 73) throw new RefusedError(`control dir ${row.control_dir} already exists in VM ${req.vm}`, "fabrik never overwrites another run's dir; check `fabrik runs import --vm " + req.vm + "`");
      throw new RemoteError(req.vm, "launch run.sh", detail || `exit ${r.exitCode}`, r.exitCode, `see the log with \`fabrik vm shell ${req.vm} -- cat ${row.control_dir}/reports/smithers.log\``);
    }
    let pids: { launcher_pid?: number; child_pid?: number } = {};
    try {
      pids = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as typeof pids;
    } catch {
      /* pids are informative only */
    }
    const now = ctx.now();
    const updated = ctx.registry().updateRun(
      row.id,
      {
        status: "running",
        started_at_ms: now,
        pending_json: null,
        launcher_pid: Number.isInteger(pids.launcher_pid) ? pids.launcher_pid! : null,
        engine_pid: null,
      },
      now,
    );
    ctx.registry().recordEvent(row.id, "launched", { launcher_pid: pids.launcher_pid ?? null, child_pid: pids.child_pid ?? null, engine_version: req.engineVersion, launch_id: launchId }, now);
    return { result: toResult(updated), notes };
  } catch (err) {
    if (!(err instanceof FabrikError)) failRow(ctx, row, `launch failed: ${(err as Error).message}`);
    throw err;
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** The staging folder of a launch: `<tmpdir>/fabrik-launch-<pid>-XXXXXX` (mode 0700; the run's input is in it). */
const STAGING_PREFIX = "fabrik-launch-";

/**
 * Remove the staging folders in `tmp` of launches that were killed before they could (their pid is gone; a killed
 * `fabrik run` leaves one, with the run's input, secrets included). Only this user's folders; a folder whose pid is
 * alive (another launch in progress, or a reused pid) is left alone. Never throws.
 */
function sweepStaging(tmp: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(tmp);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^fabrik-launch-(\d+)-/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidExists(pid)) continue; // alive (another user's too)
    try {
      const p = path.join(tmp, n);
      if (fs.lstatSync(p).uid === process.getuid?.()) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      /* gone meanwhile, or not ours */
    }
  }
}

/** A fresh launch id (`launch-…`, `resume-…`): 16 random hex digits, enough never to repeat. */
export function newLaunchId(kind: "launch" | "resume"): string {
  return `${kind}-${randomBytes(8).toString("hex")}`;
}

/**
 * Mark a launch failed. `definite`: the VM-side script answered that it did not start the launcher (the journal
 * entry is closed); otherwise (deadline, lost connection) the VM may have started it, so the journal stays open and
 * a later live check settles it (`runs-service.ts`, settlePendingLaunch).
 */
function failRow(ctx: Context, row: RunRecord, reason: string, opts: { definite?: boolean } = {}): void {
  const cur = ctx.registry().getRun(row.id);
  if (cur && cur.status !== "launching") return;
  const now = ctx.now();
  ctx.registry().updateRun(row.id, { status: "failed", failure_reason: reason, finished_at_ms: now, ...(opts.definite ? { pending_json: null } : {}) }, now);
  ctx.registry().recordEvent(row.id, "launch-failed", { reason }, now);
}

function toResult(r: RunRecord): LaunchResult {
  return {
    id: r.id,
    vm: r.vm,
    driver: r.driver,
    smithers_run_id: r.smithers_run_id,
    control_dir: r.control_dir,
    db_path: r.smithers_db_path,
    workflow_path: r.workflow_path,
    engine_version: r.engine_version ?? "",
    launcher_pid: r.launcher_pid,
    status: r.status,
  };
}
