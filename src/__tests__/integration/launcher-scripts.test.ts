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
