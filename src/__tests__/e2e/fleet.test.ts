/**
 * Issue 14 end to end — `fabrik doctor`, `fabrik fleet`, `fabrik runs evidence`, `fabrik runs prune`, `fabrik
 * supervise` and `fabrik config list --explain` — through the built CLI, with the REAL engine (0.32.0) in a
 * stand-in Lima VM and in a local-driver VM (each scenario runs on both).
 *
 * The file has its own FABRIK_HOME and LIMA_HOME (prune and supervise act on a whole registry); its VMs get the
 * engine the worker's shared VM installed, as hard links (helpers/worker-fleet.ts). Thresholds are lowered in
 * the config: engine heartbeat stale after 2 s (a killed run is orphaned at once), a VM idle after 2 s.
 * Runs are held at a task by the example workflows' gate (helpers/gate.ts), never by a time window. Guest paths
 * come from `vm list --json` (the guest home), never hardcoded.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { disposeTestEnv, fabrik, guestUserOf, json, localVmName, makeTestEnv, startFabrik, waitEngineExit, waitFor, type CliResult, type RunningCli, type TestEnv } from "../helpers/cli.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { Gate } from "../helpers/gate.js";
import { STANDIN, missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";
import { guestPkgCache, standinGuestUid, workerFleet } from "../helpers/worker-fleet.js";

const skip = missingPrereqs(...STANDIN, "flock");
const SEQ = path.join(REPO_ROOT, "examples/workflows/seq.tsx");
const ENGINE = "0.32.0";

/** A workflow whose input carries secrets, which it prints to the log and stores in its output (0.32). */
const SECRET_ECHO = `/** @jsxImportSource smithers-orchestrator */
import { existsSync, writeFileSync } from "node:fs";
import { createSmithers, Sequence } from "smithers-orchestrator";
import { z } from "zod";

const { Workflow, Task, smithers, outputs } = createSmithers(
  {
    input: z.object({
      tasks: z.number().int().min(1).default(3),
      apiToken: z.string(),
      note: z.string().optional(),
      config: z.object({ password: z.string() }).optional(),
      gateDir: z.string().optional(),
    }),
    step: z.object({ n: z.number().int(), echo: z.string() }),
  },
  { dbPath: process.env.SMITHERS_DB_PATH || undefined },
);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export default smithers((ctx) => {
  const steps = Array.from({ length: ctx.input.tasks ?? 3 }, (_, i) => i + 1);
  return (
    <Workflow name="secret-echo">
      <Sequence>
        {steps.map((n) => (
          <Task key={\`step-\${n}\`} id={\`step-\${n}\`} output={outputs.step} retries={0}>
            {async () => {
              console.log(\`step \${n} uses token \${ctx.input.apiToken} (\${ctx.input.note ?? ""})\`);
              const g = ctx.input.gateDir;
              if (g) {
                try { writeFileSync(\`\${g}/at-\${n}\`, "x"); } catch {}
                while (existsSync(g) && !existsSync(\`\${g}/release-\${n}\`)) await sleep(50);
              }
              return { n, echo: \`token=\${ctx.input.apiToken} pw=\${ctx.input.config?.password ?? ""}\` };
            }}
          </Task>
        ))}
      </Sequence>
    </Workflow>
  );
});
`;

interface Launched {
  id: number;
  control_dir: string;
  db_path: string;
}
interface Check {
  scope: string;
  vm: string | null;
  name: string;
  status: "ok" | "warn" | "fail";
  message: string;
  fix: string | null;
}
interface Doctor {
  ok: boolean;
  counts: Record<string, number>;
  checks: Check[];
}
interface FleetVm {
  name: string;
  state: string;
  health: string;
  consecutive_failures: number;
  engines: string[];
  disk_free_bytes: number | null;
  active_runs: number;
  active_run_ids: number[];
  idle: boolean;
  idle_since: string | null;
  next_command: string | null;
}
interface Show {
  effective_status: string;
  resume_count: number;
  status: string;
}

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** Every regular file under `dir` (sorted), with its bytes. */
function filesUnder(dir: string): { rel: string; bytes: Buffer }[] {
  const out: { rel: string; bytes: Buffer }[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push({ rel: path.relative(dir, p), bytes: fs.readFileSync(p) });
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

/** A folder's names and contents, as one hash. */
const treeHash = (dir: string) => sha(filesUnder(dir).map((f) => `${f.rel}\0${sha(f.bytes)}`).join("\n"));

describe.skipIf(skip)(titled("fleet care: doctor, fleet, evidence, prune, supervise (real engine, stand-in Lima and local VMs)", skip), () => {
  let t: TestEnv;
  const gates: Gate[] = [];
  const gate = () => {
    const g = new Gate();
    gates.push(g);
    return g;
  };
  const cli = (args: string[], timeoutMs = 180_000): Promise<CliResult> => fabrik(t, args, { timeoutMs });
  const ok = async (args: string[], timeoutMs?: number): Promise<CliResult> => {
    const r = await cli(args, timeoutMs);
    expect(r.code, `fabrik ${args.join(" ")}: ${r.stderr}`).toBe(0);
    return r;
  };
  let wfDir = "";

  const drivers = [
    { name: "lima (stand-in)", vm: "fl-a", create: ["--no-engine"] as string[] },
    { name: "local", vm: "", create: ["--driver", "local", "--no-engine"] as string[] },
  ];

  beforeAll(async () => {
    const fleet = await workerFleet(); // the worker's VM with the engine installed: its engine files are linked into ours
    t = makeTestEnv("fleetcare-");
    fs.writeFileSync(path.join(t.tmp, "config.json"), JSON.stringify({ thresholds: { engine_heartbeat_stale_ms: 2000, vm_idle_ms: 2000 } }));
    drivers[1]!.vm = localVmName("fl-l");
    // Only the 0.32.0 engine (the worker's VM may also hold 0.5.0 by now): removing it must leave the VM without bun.
    const fleetEngine = path.join(fleet.limaHome, fleet.vm, "guest-home", ".fabrik", "engines", ENGINE);
    for (const d of drivers) {
      await ok(["vm", "create", d.vm, ...d.create], 600_000);
      const home = await loadHome(d.vm);
      const dst = hostPathOf(d.vm, `${home}/.fabrik/engines`);
      fs.mkdirSync(dst, { recursive: true });
      const r = await run("cp", ["-al", fleetEngine, dst], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      if (d.name.startsWith("lima")) {
        // The stand-in's guest user is not root: its ~/.fabrik is its own, as if it had installed the engine.
        const { uid } = await guestUserOf(t, d.vm);
        const own = await run("chown", ["-R", `${uid}:${uid}`, hostPathOf(d.vm, `${home}/.fabrik`)], { timeoutMs: 120_000 });
        expect(own.code, own.stderr).toBe(0);
      }
    }
    wfDir = tempDir("wf-");
    fs.writeFileSync(path.join(wfDir, "secret-echo.tsx"), SECRET_ECHO);
  }, 900_000);
  afterAll(async () => {
    for (const g of gates) g.dispose();
    await disposeTestEnv(t);
  });

  const homes = new Map<string, string>();
  /** The VM's guest home, from `vm list --json` (cached after the first call). */
  function guestHomeOf(vm: string): string {
    const h = homes.get(vm);
    if (h) return h;
    throw new Error(`guest home of ${vm} not loaded`);
  }
  async function loadHome(vm: string): Promise<string> {
    const rows = json<{ name: string; guest_home: string }[]>(await ok(["vm", "list", "--json"]));
    const h = rows.find((r) => r.name === vm)!.guest_home;
    homes.set(vm, h);
    return h;
  }
  /** Where a guest path of `vm` is on this host (a stand-in VM's guest home is `$LIMA_HOME/<vm>/guest-home`). */
  function hostPathOf(vm: string, guestPath: string): string {
    const home = guestHomeOf(vm);
    if (vm !== drivers[0]!.vm) return guestPath;
    return path.join(t.limaHome, vm, "guest-home", guestPath.slice(home.length));
  }
  const show = async (id: number) => json<Show>(await ok(["runs", "show", "--id", String(id), "--json"]));
  const launch = async (vm: string, wf: string, input: object): Promise<Launched> => json<Launched>(await ok(["run", "--vm", vm, "--workflow", wf, "--input", JSON.stringify(input), "--json"], 300_000));
  const fleetVm = async (vm: string): Promise<FleetVm> => json<{ vms: FleetVm[] }>(await ok(["fleet", "--vm", vm, "--json"])).vms[0]!;
  const doctor = async (vm: string): Promise<{ code: number; d: Doctor }> => {
    const r = await cli(["doctor", "--vm", vm, "--json"]);
    return { code: r.code, d: json<Doctor>(r) };
  };
  const waitShow = async (id: number, pred: (s: Show) => boolean, what: string): Promise<Show> => {
    let last: Show | undefined;
    return waitFor(async () => ((last = await show(id)), pred(last) ? last : undefined), { timeoutMs: 120_000, intervalMs: 500, what: `run ${id}: ${what}`, describe: () => JSON.stringify(last) });
  };
  const registryEvents = (id: number): { kind: string; detail_json: string | null }[] => {
    const db = new Database(path.join(t.fabrikHome, "registry.db"), { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT kind, detail_json FROM run_events WHERE run_id = ? ORDER BY id").all(id) as { kind: string; detail_json: string | null }[];
    } finally {
      db.close();
    }
  };

  it("config list --explain names where each value came from: env, file, default", async () => {
    fs.writeFileSync(path.join(t.tmp, "config.json"), JSON.stringify({ thresholds: { engine_heartbeat_stale_ms: 2000, vm_idle_ms: 2000 }, probe: { concurrency: 3 } }));
    const env = { ...t.env, FABRIK_PROBE_TIMEOUT_MS: "4321" };
    const j = await fabrik(t, ["config", "list", "--explain", "--json"], { env });
    expect(j.code, j.stderr).toBe(0);
    const by = Object.fromEntries(json<{ key: string; value: unknown; source: string; source_detail: string }[]>(j).map((s) => [s.key, s]));
    expect(by["probe.timeout_ms"]).toMatchObject({ value: 4321, source: "env", source_detail: "FABRIK_PROBE_TIMEOUT_MS" });
    expect(by["probe.concurrency"]).toMatchObject({ value: 3, source: "file", source_detail: path.join(t.tmp, "config.json") });
    expect(by["thresholds.vm_idle_ms"]).toMatchObject({ value: 2000, source: "file" });
    expect(by["lima.limactl"]).toMatchObject({ value: "limactl", source: "default", source_detail: "built-in" });
    const text = await fabrik(t, ["config", "list", "--explain"], { env });
    expect(text.stdout).toMatch(/^probe\.timeout_ms\t4321\tenv FABRIK_PROBE_TIMEOUT_MS\t5000\tFABRIK_PROBE_TIMEOUT_MS\t/m);
    expect(text.stdout).toMatch(/^probe\.concurrency\t3\tfile\t16\t/m);
    expect(text.stdout).toMatch(/^lima\.limactl\tlimactl\tdefault\tlimactl\tFABRIK_LIMACTL\t/m);
    const one = await fabrik(t, ["config", "get", "probe.timeout_ms", "--explain"], { env });
    expect(one.stdout).toContain("probe.timeout_ms = 4321  (from the environment (FABRIK_PROBE_TIMEOUT_MS))");
    expect((await fabrik(t, ["config", "get", "probe.concurrency", "--explain"], { env })).stdout).toContain(`(from the config file ${path.join(t.tmp, "config.json")})`);
    // A broken config: every command but doctor refuses (exit 3); doctor runs and names the problem with its fix.
    fs.writeFileSync(path.join(t.tmp, "config.json"), JSON.stringify({ probe: { concurrency: 0 } }));
    expect((await cli(["fleet"])).code).toBe(3);
    const dr = await cli(["doctor", "--json"]);
    expect(dr.code).toBe(1);
    expect(json<Doctor>(dr).checks.find((c) => c.name === "config")).toMatchObject({ status: "fail", fix: "fabrik config unset probe.concurrency" });
    fs.writeFileSync(path.join(t.tmp, "config.json"), JSON.stringify({ thresholds: { engine_heartbeat_stale_ms: 2000, vm_idle_ms: 2000 } }));
  });

  for (const D of drivers) {
    describe(D.name, () => {
      let vm = "";
      let home = "";
      let secretRun: Launched;
      let secretGate: Gate;
      const planted = { apiToken: `fabrik-planted-${Math.random().toString(36).slice(2)}-token`, password: `pw-planted-${Math.random().toString(36).slice(2)}`, ghp: `ghp_${"Q".repeat(20)}${Date.now()}`.slice(0, 40).padEnd(40, "Z") };

      beforeAll(async () => {
        vm = D.vm;
        home = await loadHome(vm);
      });

      it("doctor: ok; the engine install removed turns it to fail (and fleet to degraded, then down); the fix it names brings it back", async () => {
        const before = await doctor(vm);
        expect(before.code, JSON.stringify(before.d.checks.filter((c) => c.status !== "ok"))).toBe(0);
        const vmChecks = before.d.checks.filter((c) => c.vm === vm);
        expect(vmChecks.map((c) => c.name)).toEqual(["reachable", "bun", "engines", "sqlite-octet-length", "disk", "clock", "locks", "missing-control-dirs", "unknown-control-dirs"]);
        expect(vmChecks.find((c) => c.name === "engines")).toMatchObject({ status: "ok" });
        expect(before.d.checks.find((c) => c.name === "registry")?.status).toBe("ok");
        const text = await cli(["doctor", "--vm", vm]);
        expect(text.stdout).toMatch(/^ok +engines +installed: 0\.32\.0/m);
        expect(text.stdout).toMatch(/\d+ ok, \d+ warning\(s\), 0 failure\(s\)/);
        expect((await fleetVm(vm)).health).toBe("healthy");

        await ok(["vm", "shell", vm, "--", "rm", "-rf", `${home}/.fabrik/engines/${ENGINE}`]);
        const f1 = await fleetVm(vm);
        expect(f1).toMatchObject({ health: "degraded", consecutive_failures: 1 });
        const broken = await doctor(vm);
        expect(broken.code).toBe(1);
        const eng = broken.d.checks.find((c) => c.vm === vm && c.name === "engines")!;
        expect(eng.status).toBe("fail");
        expect(eng.fix).toBe(`fabrik vm install-engine ${vm} --engine ${ENGINE}`);
        expect(broken.d.checks.find((c) => c.vm === vm && c.name === "bun")?.status).toBe("fail");
        const f3 = await fleetVm(vm);
        expect(f3.health).toBe("down");
        expect(f3.consecutive_failures).toBeGreaterThanOrEqual(3);
        expect(f3.next_command).toBe(`fabrik doctor --vm ${vm}`);
        expect(f3.idle).toBe(false); // a VM that does not answer is never called idle: its runs cannot be seen

        // The stand-in's guest user installs with npm and bun into a package cache it owns (helpers/worker-fleet.ts).
        const cacheEnv = D.name.startsWith("lima") ? { FABRIK_ENGINE_CACHE_DIR: await guestPkgCache(await standinGuestUid()) } : {};
        const fix = await fabrik({ ...t, env: { ...t.env, ...cacheEnv } }, eng.fix!.split(" ").slice(1), { timeoutMs: 900_000 });
        expect(fix.code, fix.stderr).toBe(0);
        expect(fix.stdout).toMatch(new RegExp(`^${vm}\\t${ENGINE.replace(/\./g, "\\.")}\\tinstalled`));
        const after = await doctor(vm);
        expect(after.code, JSON.stringify(after.d.checks.filter((c) => c.status !== "ok"))).toBe(0);
        expect(after.d.checks.find((c) => c.vm === vm && c.name === "engines")).toMatchObject({ status: "ok" });
        const healed = await fleetVm(vm);
        expect(healed).toMatchObject({ health: "healthy", consecutive_failures: 0, engines: [ENGINE] });
        expect(healed.disk_free_bytes).toBeGreaterThan(0);
      }, 900_000);

      it("fleet: a running VM with no active run for longer than vm_idle_ms is flagged idle with `fabrik vm stop NAME`; an active run clears it", async () => {
        const idle = await fleetVm(vm);
        expect(idle).toMatchObject({ state: "Running", active_runs: 0, idle: true, next_command: `fabrik vm stop ${vm}` });
        const text = await ok(["fleet", "--vm", vm]);
        expect(text.stdout).toContain(`${vm}: idle for `);
        expect(text.stdout).toContain(`stop it: fabrik vm stop ${vm}`);

        secretGate = gate();
        secretRun = await launch(vm, path.join(wfDir, "secret-echo.tsx"), { tasks: 3, apiToken: planted.apiToken, note: `see ${planted.ghp}`, config: { password: planted.password }, ...secretGate.input });
        secretGate.release(1);
        await secretGate.at(2);
        const busy = await fleetVm(vm);
        expect(busy).toMatchObject({ idle: false, active_runs: 1, active_run_ids: [secretRun.id], next_command: null });
      });

      it("runs evidence: the snapshot opens with sqlite3 with the right counts (WAL included); the planted secrets appear nowhere", async () => {
        // The secrets are really in the VM's files (so this test can fail): the DB and its WAL, the log.
        const sources = [secretRun.db_path, `${secretRun.db_path}-wal`, `${secretRun.control_dir}/reports/smithers.log`].map((p) => hostPathOf(vm, p)).filter((p) => fs.existsSync(p));
        expect(sources.some((p) => fs.readFileSync(p).includes(planted.apiToken)), "the planted token is in the run's own files").toBe(true);
        const out = path.join(t.tmp, `evidence-${vm}.tar.gz`);
        const r = await ok(["runs", "evidence", "--id", String(secretRun.id), "-o", out, "--json"]);
        const v = json<{ path: string; bytes: number; sha256: string; manifest: { files: { path: string; bytes: number; sha256: string }[]; cut: string[]; masking: { verified: boolean; rules: Record<string, number> }; snapshot: { tables: Record<string, number>; source_wal_bytes: number | null; integrity: string } } }>(r);
        expect(v.path).toBe(out);
        expect(fs.statSync(out).mode & 0o777).toBe(0o600);
        expect(v.sha256).toBe(sha(fs.readFileSync(out)));
        expect(v.manifest.cut).toEqual([]);
        expect(v.manifest.masking.verified).toBe(true);
        expect(v.manifest.snapshot.integrity).toBe("ok");
        expect(v.manifest.snapshot.source_wal_bytes).toBeGreaterThan(0); // the live engine's data was (partly) in the WAL

        const x = tempDir("ev-x-");
        const un = await run("tar", ["-xzf", out, "-C", x]);
        expect(un.code, un.stderr).toBe(0);
        const top = path.join(x, `fabrik-evidence-run-${secretRun.id}`);
        const files = filesUnder(top);
        const names = files.map((f) => f.rel).sort();
        for (const n of ["manifest.json", "doctor.json", "versions.json", "run/show.json", "run/history.json", "vm/snapshot.db", "vm/log-tail.txt", "vm/files/run.sh", "vm/files/heartbeat.json", "vm/files/launcher.pid"]) expect(names).toContain(n);
        const manifest = JSON.parse(fs.readFileSync(path.join(top, "manifest.json"), "utf8")) as typeof v.manifest;
        for (const f of files.filter((f) => f.rel !== "manifest.json")) {
          expect(manifest.files.find((m) => m.path === f.rel), f.rel).toMatchObject({ bytes: f.bytes.length, sha256: sha(f.bytes) });
        }
        // Nowhere: not in any file (the snapshot's pages included), not in the archive's bytes.
        const raw = (await import("node:zlib")).gunzipSync(fs.readFileSync(out));
        for (const secret of [planted.apiToken, planted.password, planted.ghp]) {
          expect(raw.includes(secret), `${secret} in the archive`).toBe(false);
          for (const f of files) expect(f.bytes.includes(secret), `${secret} in ${f.rel}`).toBe(false);
        }
        expect(fs.readFileSync(path.join(top, "vm/log-tail.txt"), "utf8")).toContain("uses token [MASKED]");
        // The snapshot opens with the sqlite3 CLI, with the run as it stood: 1 run, 3 nodes, step-2 running.
        const q = async (sql: string) => {
          const s = await run("sqlite3", ["-readonly", path.join(top, "vm/snapshot.db"), sql]);
          expect(s.code, s.stderr).toBe(0);
          return s.stdout.trim();
        };
        expect(await q("select count(*) from _smithers_runs")).toBe("1");
        expect(await q("select group_concat(node_id || '=' || state, ',') from (select * from _smithers_nodes order by node_id)")).toBe("step-1=finished,step-2=in-progress,step-3=pending");
        expect(await q("select count(*) from _smithers_attempts")).toBe("2");
        expect(await q("select api_token from input")).toBe("[MASKED]");
        expect(await q("select echo from step")).toBe("token=[MASKED] pw=[MASKED]");
        expect(manifest.snapshot.tables).toMatchObject({ _smithers_runs: 1, _smithers_nodes: 3, _smithers_attempts: 2, input: 1, step: 1 });

        // Too small a --max-size: the DB snapshot is cut, and the manifest says so.
        const small = path.join(t.tmp, `evidence-small-${vm}.tar.gz`);
        const s = json<{ bytes: number; manifest: { cut: string[]; files: { path: string }[] } }>(await ok(["runs", "evidence", "--id", String(secretRun.id), "-o", small, "--max-size", "80KB", "--json"]));
        expect(s.bytes).toBeLessThanOrEqual(80_000);
        expect(s.manifest.cut.some((c) => c.startsWith("vm/snapshot.db: ") && c.includes("left out"))).toBe(true);
        expect(s.manifest.files.map((f) => f.path)).not.toContain("vm/snapshot.db");
        expect((await cli(["runs", "evidence", "--id", String(secretRun.id), "-o", small])).code).toBe(2); // never overwritten

        secretGate.releaseThrough(3);
        await waitEngineExit(t, vm, secretRun.control_dir);
        await waitShow(secretRun.id, (x) => x.effective_status === "done", "done");
      });

      it("runs prune: always lists first; --dry-run changes nothing (hashed); never touches an active run", async () => {
        const g = gate();
        const active = await launch(vm, SEQ, { tasks: 2, sleepMs: 50, ...g.input });
        await g.at(1);
        const endedDir = hostPathOf(vm, secretRun.control_dir);
        const activeDir = hostPathOf(vm, active.control_dir);
        const registryHash = () => sha(fs.readdirSync(t.fabrikHome).filter((f) => f.startsWith("registry.db")).sort().map((f) => `${f}\0${sha(fs.readFileSync(path.join(t.fabrikHome, f)))}`).join("\n"));
        const before = { registry: registryHash(), ended: treeHash(endedDir) };
        expect(before.ended).not.toBe(treeHash(tempDir("empty-")));

        const dry = json<{ dry_run: boolean; items: { id: number; action: string; reason: string; bytes: number | null }[] }>(await ok(["runs", "prune", "--vm", vm, "--older-than", "1ms", "--dry-run", "--json"]));
        expect(dry.items.map((i) => [i.id, i.action])).toEqual([[secretRun.id, "remove"]]); // the active run is not even a candidate
        expect(dry.items[0]!.bytes).toBeGreaterThan(0);
        const both = ["--id", String(secretRun.id), "--id", String(active.id)];
        const dry2 = json<{ items: { id: number; action: string; reason: string }[] }>(await ok(["runs", "prune", ...both, "--dry-run", "--json"]));
        expect(dry2.items.find((i) => i.id === active.id)).toMatchObject({ action: "keep", reason: "it is active (running)" });
        const text = await ok(["runs", "prune", ...both, "--dry-run"]);
        expect(text.stdout).toContain("dry run: 1 run(s) would go");
        const noTty = await cli(["runs", "prune", ...both]);
        expect(noTty.code).toBe(2);
        expect(noTty.stdout).toContain("remove"); // listed first, then refused
        expect({ registry: registryHash(), ended: treeHash(endedDir) }).toEqual(before);

        const real = json<{ pruned: number; items: { id: number; action: string; result: string | null }[] }>(await ok(["runs", "prune", ...both, "--yes", "--json"]));
        expect(real.items.map((i) => [i.id, i.action, i.result])).toEqual([
          [secretRun.id, "remove", "removed"],
          [active.id, "keep", null],
        ]);
        expect(fs.existsSync(endedDir)).toBe(false);
        expect(fs.existsSync(activeDir)).toBe(true);
        expect((await cli(["runs", "show", "--id", String(secretRun.id), "--no-live"])).code).toBe(4);
        g.releaseThrough(2);
        await waitEngineExit(t, vm, active.control_dir);
        expect((await waitShow(active.id, (x) => x.effective_status === "done", "done")).effective_status).toBe("done");
      });

      it("supervise: resumes a power-cut run to done exactly once with two supervisors running, and leaves a cancelled run alone", async () => {
        const g = gate();
        const victim = await launch(vm, SEQ, { tasks: 4, sleepMs: 50, ...g.input });
        g.release(1);
        await g.at(2);
        // Pull the plug: every process of the VM dies at once; the run's DB still says running.
        await ok(["vm", "stop", "--force", vm]);
        await ok(["vm", "start", vm], 300_000);
        await waitShow(victim.id, (x) => x.effective_status === "orphaned", "orphaned after the power cut");

        const cg = gate();
        const cancelled = await launch(vm, SEQ, { tasks: 3, sleepMs: 50, ...cg.input });
        await cg.at(1);
        await ok(["vm", "shell", vm, "--", "sh", "-c", 'kill -TERM "$(cat "$1/smithers.pid")"', "sh", cancelled.control_dir]);
        await waitEngineExit(t, vm, cancelled.control_dir);
        g.releaseThrough(4);
        cg.releaseThrough(3);

        const sups: RunningCli[] = [0, 1].map(() => startFabrik(t, ["supervise", "--interval", "1s", "--vm", vm, "--json"], { timeoutMs: 300_000 }));
        try {
          await waitShow(victim.id, (x) => x.effective_status === "done", "resumed by a supervisor and done");
          // Both supervisors have looked at least once more after that.
          const passes = (s: RunningCli) => s.out().split("\n").filter((l) => l.includes('"type":"pass"')).length;
          const seen = sups.map(passes);
          await waitFor(() => sups.every((s, i) => passes(s) >= seen[i]! + 2), { timeoutMs: 60_000, intervalMs: 200, what: "two more passes of each supervisor" });
        } finally {
          for (const s of sups) s.kill("SIGTERM");
        }
        const codes = await Promise.all(sups.map((s) => s.exited));
        expect(codes, sups.map((s) => s.err()).join("\n")).toEqual([0, 0]);
        const events = sups.flatMap((s) =>
          s
            .out()
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { type: string; run_id?: number; code?: string }),
        );
        expect(events.filter((e) => e.type === "resumed" && e.run_id === victim.id)).toHaveLength(1);
        // …and the other supervisor never even tried (no refused or failed attempt): the lease kept it off.
        expect(events.filter((e) => e.run_id === victim.id && e.type.startsWith("resume-"))).toEqual([]);
        expect(events.filter((e) => e.type.startsWith("resume") && e.run_id === cancelled.id)).toEqual([]);
        expect(events.some((e) => e.type === "skipped" && e.run_id === cancelled.id && e.code === "CANCELLED")).toBe(true);
        expect(sups.every((s) => s.out().trim().split("\n").at(-1)!.includes('"type":"stopped"'))).toBe(true);

        const v = await show(victim.id);
        expect(v).toMatchObject({ effective_status: "done", resume_count: 1 });
        const hist = registryEvents(victim.id).map((e) => e.kind);
        expect(hist.filter((k) => k === "supervise-resumed")).toHaveLength(1);
        expect(hist.filter((k) => k === "supervise-refused" || k === "supervise-failed")).toEqual([]);
        expect(hist.filter((k) => k === "resumed")).toHaveLength(1);
        // The engine's own record: the interrupted step-2 attempt closed as cancelled, one new attempt, no task redone.
        const bun = `${home}/.fabrik/engines/${ENGINE}/.runtime/node_modules/.bin/bun`;
        const code = `const { Database } = require("bun:sqlite"); const d = new Database(process.argv[1], { readonly: true });
console.log(JSON.stringify(d.query("select node_id, group_concat(state) as s from (select * from _smithers_attempts where run_id = ? order by node_id, attempt) group by node_id").all(process.argv[2])));`;
        const a = await ok(["vm", "shell", vm, "--", bun, "-e", code, victim.db_path, `fabrik-${victim.id}`]);
        expect(JSON.parse(a.stdout)).toEqual([
          { node_id: "step-1", s: "finished" },
          { node_id: "step-2", s: "cancelled,finished" },
          { node_id: "step-3", s: "finished" },
          { node_id: "step-4", s: "finished" },
        ]);
        expect(await show(cancelled.id)).toMatchObject({ effective_status: "cancelled", resume_count: 0 });
        expect(registryEvents(cancelled.id).map((e) => e.kind)).not.toContain("supervise-resumed");

        // --once suits cron: nothing left to do now, exit 0, NDJSON start/pass/stopped.
        const once = await ok(["supervise", "--once", "--vm", vm, "--json"]);
        expect(once.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { type: string }).type)).toEqual(["start", "pass", "stopped"]);
      }, 600_000);
    });
  }
});
