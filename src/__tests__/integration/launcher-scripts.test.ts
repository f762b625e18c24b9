// The generated launcher (run.sh), the engine install script and the launch script, checked by the real tools:
// `bash -n`, shellcheck (required under CI=true), and bash evaluating a hostile quoted path. Their text is
// unit-tested in unit/launcher.test.ts.
import { describe, it, expect, afterAll } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { buildLauncherScript, resumeEngineArgs } from "../../vm/launcher.js";
import { ENGINE_INSTALL_SCRIPT } from "../../vm/engine.js";
import { LAUNCH_SCRIPT } from "../../fabrik/launch.js";
import { base } from "../helpers/launcher-inputs.js";
import { missingPrereqs, titled } from "../helpers/prereq.js";
import { run } from "../helpers/proc.js";
import { tempDir } from "../helpers/test-root.js";

const noShellcheck = missingPrereqs("shellcheck");
const dir = tempDir("launcher-scripts-");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function scriptFile(text: string): string {
  const f = path.join(dir, `s${++n}.sh`);
  fs.writeFileSync(f, text);
  return f;
}

const SCRIPTS: [string, () => string][] = [
  ["run.sh (0.32 start)", () => buildLauncherScript(base)],
  ["run.sh (0.32 resume)", () => buildLauncherScript({ ...base, mode: "resume", engine: resumeEngineArgs("modern", base.workflowPath, "fabrik-113"), banner: ["Completed: 2/6 tasks", "Continuing from: step-3"] })],
  ["ENGINE_INSTALL_SCRIPT", () => ENGINE_INSTALL_SCRIPT],
  ["LAUNCH_SCRIPT", () => LAUNCH_SCRIPT],
];

describe("launcher scripts", () => {
  for (const [name, text] of SCRIPTS) {
    it(`${name} is valid bash (bash -n)`, async () => {
      const r = await run("bash", ["-n", scriptFile(text())]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
    });
    it.skipIf(noShellcheck)(titled(`${name} passes shellcheck -S warning`, noShellcheck), async () => {
      const r = await run("shellcheck", ["-S", "warning", "-s", "bash", scriptFile(text())]);
      expect(r.stdout).toBe("");
      expect(r.code).toBe(0);
    });
  }

  it("quotes hostile paths so they stay one word", async () => {
    const evil = "/home/u/work/x/.runs/1-a b'$(touch /tmp/pwn)`id`";
    const s = buildLauncherScript({ ...base, controlDir: evil });
    // Evaluate only the assignment line and print it back.
    const line = s.split("\n").find((l) => l.startsWith("CONTROL_DIR="))!;
    expect((await run("bash", [scriptFile(`${line}\nprintf '%s' "$CONTROL_DIR"`)])).stdout).toBe(evil);
  });
});

describe("the launcher, run by bash with a stand-in engine", () => {
  it("writes the engine's exit code when the engine ends while the launcher runs a foreground command", async () => {
    // bash 5.2 reaps a background child that ends during a foreground command, and "wait -n" then no longer knows
    // it: the launcher must still see the engine end (0.5 cancel, a failing run). A slow `mv` (first on the
    // launcher's PATH) holds the launcher in its pid-file writes while the stand-in engine exits 7.
    const root = tempDir("launcher-run-");
    const engineDir = path.join(root, "engine");
    const bin = path.join(engineDir, ".runtime", "node_modules", ".bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.mkdirSync(path.join(engineDir, "node_modules", ".bin"), { recursive: true });
    const smithers = path.join(engineDir, "node_modules", ".bin", "smithers");
    fs.writeFileSync(smithers, "#!/bin/bash\nsleep 0.3\nexit 7\n", { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "mv"), '#!/bin/bash\nsleep 0.6\nexec /bin/mv "$@"\n', { mode: 0o755 });
    const controlDir = path.join(root, "control");
    fs.mkdirSync(path.join(controlDir, "workflow"), { recursive: true });
    const workflowPath = path.join(controlDir, "workflow", "wf.tsx");
    fs.writeFileSync(workflowPath, "// not read by the stand-in engine\n");
    const script = buildLauncherScript({
      ...base,
      controlDir,
      workflowPath,
      dbPath: path.join(controlDir, ".smithers", "run.db"),
      engineVersion: "0.5.0",
      dialect: "legacy",
      engineDir,
      heartbeatIntervalS: 2,
      engine: { verb: "run", args: [workflowPath], input: "none", noPostFailure: false },
    });
    const r = await run("bash", [scriptFile(script)], { timeoutMs: 30_000 });
    const log = fs.readFileSync(path.join(controlDir, "reports", "smithers.log"), "utf8");
    expect(r.code, log).toBe(7);
    expect(fs.readFileSync(path.join(controlDir, "exit_code"), "utf8")).toBe("7\n");
    expect(log).toContain("engine exited with code 7");
    expect(log).not.toContain("no such job");
    fs.rmSync(root, { recursive: true, force: true });
  }, 60_000);
});
