/**
 * The bench fleet: N stand-in Lima VMs (no engine install), each with M control dirs whose DBs are byte copies
 * of real-engine fixture DBs (0.32 and 0.5: finished, failed, killed — the killed ones with their -wal/-shm),
 * plus heartbeat.json, pid files, exit_code, a run.sh stub and a log, registered with `fabrik runs import`.
 *
 * Per VM: `fabrik vm create NAME --no-engine`; one `limactl shell` that gives the guest a bun where the probe
 * wrapper looks for an engine's (`~/.fabrik/engines/0.32.0/.runtime/node_modules/.bin/bun` → the fixture
 * engine's bun, plus the engine marker `.fabrik-engine.json`); one `limactl copy --backend=scp -r` of the staged `work/` tree
 * into the guest home; one `fabrik runs import --vm NAME`. Set up without injected latency.
 */
import fs from "node:fs";
import path from "node:path";
import { LIMACTL, fabrik, fabrikJson, fixtureCase, pool, runOk } from "./lib.mjs";

/** Fixture cases, cycled over a VM's control dirs. */
const CASES = [
  ["0.32.0", "finished"],
  ["0.32.0", "failed"],
  ["0.32.0", "killed"],
  ["0.5.0", "finished"],
  ["0.5.0", "failed"],
  ["0.5.0", "killed"],
];

/** A pid that is not alive anywhere (above any pid_max in use, below the probe's 2^31 cap). */
const DEAD_PID_BASE = 4_100_000;

function logLines(caseName, runId, n) {
  const out = [`[fabrik 10:00:00] ===== fabrik run (imported by the bench) ${runId}`];
  for (let i = 1; i <= n; i++) out.push(`[00:00:${String(i).padStart(2, "0")}] → step-${(i % 6) + 1} (attempt 1, iteration 0)`);
  if (caseName === "failed") out.push("[00:00:59] ✗ step-3 failed: failed on purpose");
  if (caseName === "finished") out.push("[00:00:59] ✓ run finished");
  return out.join("\n") + "\n";
}

/** Write one VM's `work/<vm>/.runs/<i>-seq/…` tree under `stageRoot`. */
export function stageVm(fx, stageRoot, vm, runsPerVm, vmIndex) {
  const runs = path.join(stageRoot, "work", vm, ".runs");
  const now = Date.now();
  for (let i = 1; i <= runsPerVm; i++) {
    const [version, caseName] = CASES[(i - 1) % CASES.length];
    const c = fixtureCase(fx, version, caseName);
    const dir = path.join(runs, `${i}-seq`);
    fs.mkdirSync(path.join(dir, ".smithers"), { recursive: true });
    fs.mkdirSync(path.join(dir, "reports"), { recursive: true });
    for (const [f, src] of Object.entries(c.files)) fs.copyFileSync(src, path.join(dir, ".smithers", f.replace(/^run\.db/, `run-${i}.db`)));
    const pid = DEAD_PID_BASE + vmIndex * 1000 + i * 3;
    const ended = caseName !== "killed";
    const exitCode = caseName === "finished" ? 0 : caseName === "failed" ? 1 : null;
    const tsMs = ended ? now - 5 * 60_000 : now - 20 * 60_000;
    const hb = {
      v: 1,
      ts: new Date(tsMs).toISOString(),
      ts_ms: tsMs,
      seq: 30 + i,
      phase: ended ? "exited" : "running",
      host_run_id: null,
      smithers_run_id: c.run.runId,
      launcher_pid: pid,
      child_pid: pid + 1,
      engine_pid: pid + 2,
      engine_version: version,
      interval_s: 10,
      exit_code: exitCode,
    };
    fs.writeFileSync(path.join(dir, "heartbeat.json"), JSON.stringify(hb) + "\n");
    fs.writeFileSync(path.join(dir, "launcher.pid"), `${pid}\n`);
    fs.writeFileSync(path.join(dir, "smithers.pid"), `${pid + 1}\n`);
    fs.writeFileSync(path.join(dir, "engine.pid"), `${pid + 2}\n`);
    if (exitCode !== null) fs.writeFileSync(path.join(dir, "exit_code"), `${exitCode}\n`);
    fs.writeFileSync(path.join(dir, "run.sh"), `#!/usr/bin/env bash\n# stub written by the bench (never executed)\n# smithers-orchestrator@${version}\nENGINE_VERSION='${version}'\n`);
    fs.writeFileSync(path.join(dir, "reports", "smithers.log"), logLines(caseName, c.run.runId, 40));
  }
}

/**
 * Create and populate the fleet.
 * @returns `{ vms: string[], runs: RunView[] (registry rows, --no-live), byVm: Map<vm, RunView[]> }`.
 */
export async function setupFleet(world, fx, { vms: nVms, runsPerVm, log }) {
  const names = Array.from({ length: nVms }, (_, i) => `bench${String(i + 1).padStart(2, "0")}`);
  const env = world.env;
  const stage = path.join(world.tmp, "stage");
  // The first create also runs (and caches) the Lima version check; the rest go in parallel.
  const t0 = performance.now();
  const create = async (vm) => {
    const r = await fabrik(["vm", "create", vm, "--no-engine"], { env, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`fabrik vm create ${vm} exited ${r.code}: ${r.stderr.trim().slice(-800)}`);
  };
  await create(names[0]);
  await pool(names.slice(1), 4, create);
  log?.(`created ${names.length} stand-in VMs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const t1 = performance.now();
  const markerJson = fs.readFileSync(fx.marker, "utf8");
  const giveBun =
    'd="$HOME/.fabrik/engines/0.32.0"; mkdir -p "$d/.runtime/node_modules/.bin" && ln -sfn "$1" "$d/.runtime/node_modules/.bin/bun" && cat > "$d/.fabrik-engine.json"';
  await pool(names, 4, async (vm, i) => {
    const root = path.join(stage, vm);
    stageVm(fx, root, vm, runsPerVm, i);
    await runOk(LIMACTL, ["shell", vm, "--", "sh", "-c", giveBun, "give-bun", fx.bun], { env, input: markerJson });
    // scp's meaning (a folder lands in the guest home): under `auto`, Lima picks rsync when both sides have it, and
    // rsync would copy the folder's CONTENTS to `/` (pkg/copytool/rsync.go:155-166).
    await runOk(LIMACTL, ["copy", "--backend=scp", "-r", path.join(root, "work"), `${vm}:`], { env, timeoutMs: 120_000 });
    const imp = await fabrikJson(["runs", "import", "--vm", vm, "--json"], { env });
    if (imp.imported.length !== runsPerVm) {
      throw new Error(`runs import --vm ${vm} imported ${imp.imported.length} runs, expected ${runsPerVm} (skipped: ${JSON.stringify(imp.skipped).slice(0, 300)})`);
    }
  });
  fs.rmSync(stage, { recursive: true, force: true });
  const runs = (await fabrikJson(["runs", "list", "--no-live", "--json", "--limit", "100000"], { env })).filter((r) => names.includes(r.vm));
  const byVm = new Map(names.map((n) => [n, []]));
  for (const r of runs) byVm.get(r.vm).push(r);
  for (const list of byVm.values()) list.sort((a, b) => a.control_dir.localeCompare(b.control_dir, "en", { numeric: true }));
  log?.(`staged and imported ${runs.length} runs (${runsPerVm} per VM) in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  return { vms: names, runs, byVm };
}

/**
 * The local fleet: N `local`-driver VMs (folders on this host), each with M control dirs staged as for the Lima
 * fleet, a bun where the probe wrapper looks for an engine's, and its runs imported.
 * @returns `{ vms, runs, byVm, homes: Map<vm, guest home> }`.
 */
export async function setupLocalFleet(world, fx, { vms: nVms, runsPerVm, log, prefix = "local" }) {
  const names = Array.from({ length: nVms }, (_, i) => `${prefix}${String(i + 1).padStart(2, "0")}`);
  const env = world.env;
  const t0 = performance.now();
  await pool(names, 4, async (vm) => {
    const r = await fabrik(["vm", "create", vm, "--driver", "local", "--no-engine"], { env, timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`fabrik vm create ${vm} --driver local exited ${r.code}: ${r.stderr.trim().slice(-800)}`);
  });
  const list = await fabrikJson(["vm", "list", "--json"], { env });
  const homes = new Map(list.filter((v) => names.includes(v.name)).map((v) => [v.name, v.guest_home]));
  const markerJson = fs.readFileSync(fx.marker, "utf8");
  await pool(names, 4, async (vm, i) => {
    const home = homes.get(vm);
    if (!home) throw new Error(`vm list --json has no guest home for ${vm}`);
    const engine = path.join(home, ".fabrik", "engines", "0.32.0");
    fs.mkdirSync(path.join(engine, ".runtime", "node_modules", ".bin"), { recursive: true });
    fs.symlinkSync(fx.bun, path.join(engine, ".runtime", "node_modules", ".bin", "bun"));
    fs.writeFileSync(path.join(engine, ".fabrik-engine.json"), markerJson);
    stageVm(fx, home, vm, runsPerVm, 100 + i);
    const imp = await fabrikJson(["runs", "import", "--vm", vm, "--json"], { env });
    if (imp.imported.length !== runsPerVm) throw new Error(`runs import --vm ${vm} imported ${imp.imported.length} runs, expected ${runsPerVm}`);
  });
  const all = await fabrikJson(["runs", "list", "--no-live", "--json", "--limit", "100000"], { env });
  const runs = all.filter((r) => names.includes(r.vm));
  const byVm = new Map(names.map((n) => [n, []]));
  for (const r of runs) byVm.get(r.vm).push(r);
  log?.(`created ${names.length} local VMs × ${runsPerVm} runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { vms: names, runs, byVm, homes };
}

/** The run of `vm` whose control dir is `<i>-seq`. */
export function runAt(fleet, vm, i) {
  const r = fleet.byVm.get(vm)?.find((x) => x.control_dir.endsWith(`/${i}-seq`));
  if (!r) throw new Error(`no run ${i}-seq in VM ${vm}`);
  return { ...r, db_path: r.db_path ?? `${r.control_dir}/.smithers/run-${i}.db` };
}
