// The registry under real concurrency: four Node processes (running the registry module bundled on its own by
// esbuild, in the checkout's .cache so node_modules resolves) insert, update and list at once. In-process
// registry tests: unit/registry.test.ts.
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { Registry } from "../../fabrik/registry.js";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

describe("Registry across processes", () => {
  const dir = tempDir("reg-procs-");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("many processes writing and reading at once never fail with SQLITE_BUSY", async () => {
    const file = path.join(dir, "busy.db");
    Registry.open(file).close();
    const bundle = path.join(REPO_ROOT, ".cache", `test-registry-${process.pid}.mjs`);
    const { build } = await import("esbuild");
    await build({
      entryPoints: [path.join(REPO_ROOT, "src/fabrik/registry.ts")],
      outfile: bundle,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      banner: { js: 'import { createRequire as __r } from "node:module"; const require = __r(import.meta.url);' },
      external: ["*.node"],
      logLevel: "error",
    });
    afterAll(() => fs.rmSync(bundle, { force: true }));
    const script = `
      const { Registry } = await import(${JSON.stringify(bundle)});
      const reg = Registry.open(process.argv[1]);
      for (let i = 0; i < 150; i++) {
        if (i % 3 === 0) reg.listRuns({ limit: 20 });
        else {
          const r = reg.insertRunWith((id) => ({ vm: "v" + (i % 4), driver: "local", control_dir: "/c/" + id, workflow_path: "/w", smithers_run_id: "fabrik-" + id, smithers_db_path: "/d/" + id, status: "running" }));
          reg.updateRun(r.id, { status: "done" });
        }
      }
      reg.close();
    `;
    const runOne = () => run(process.execPath, ["--input-type=module", "-e", script, file], { timeoutMs: 60_000 });
    const results = await Promise.all([runOne(), runOne(), runOne(), runOne()]);
    expect(results.map((r) => r.code), results.map((r) => r.stderr).join("\n")).toEqual([0, 0, 0, 0]);
    const reg = Registry.open(file);
    expect(reg.listRuns().length).toBe(400);
    reg.close();
  }, 60_000);
});
