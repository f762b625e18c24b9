// The launcher script generator as text (golden files, pins, quoting). The same scripts are checked with
// `bash -n` and shellcheck, and the quoting evaluated by bash, in integration/launcher-scripts.test.ts.
import { describe, it, expect } from "vitest";
import { buildLauncherScript, resumeEngineArgs, runDirName, smithersRunIdFor, startEngineArgs, runDbPath } from "../../vm/launcher.js";
import { base } from "../helpers/launcher-inputs.js";

describe("run.sh generator", () => {
  it("matches the golden text (0.32 start)", async () => {
    await expect(buildLauncherScript(base)).toMatchFileSnapshot("golden/run-0.32.sh");
  });
  it("matches the golden text (0.5 start)", async () => {
    const legacy = { ...base, engineVersion: "0.5.0", dialect: "legacy" as const, engineDir: "/home/ralph.guest/.fabrik/engines/0.5.0", engine: startEngineArgs("legacy", base.workflowPath, "fabrik-113") };
    await expect(buildLauncherScript(legacy)).toMatchFileSnapshot("golden/run-0.5.sh");
  });
  it("pins the engine version visibly (guide Issue 4 greps run.sh)", () => {
    const s = buildLauncherScript(base);
    expect(s).toMatch(/smithers-orchestrator@0\.32\.0/);
    expect(s).toMatch(/^ENGINE_VERSION=0\.32\.0$/m);
  });
  it("passes the run id, --no-post-failure (0.32) and the input on stdin, never on a command line", () => {
    const s = buildLauncherScript(base);
    expect(s).toContain(`"$SMITHERS" up /home/ralph.guest/work/ralph-1/.runs/113-seq/workflow/seq.tsx --run-id fabrik-113 --input - --no-post-failure <"$CONTROL_DIR/input.json" &`);
    expect(s).not.toContain("$(cat");
    expect(s).toMatch(/^umask 077$/m);
    const legacy = buildLauncherScript({ ...base, dialect: "legacy", engineVersion: "0.5.0", engine: startEngineArgs("legacy", base.workflowPath, "fabrik-113") });
    expect(legacy).toContain(`FABRIK_INPUT_FILE="$CONTROL_DIR/input.json" "$BUN" --preload "$CONTROL_DIR/fabrik-input.js" "$SMITHERS" run`);
    expect(legacy).not.toContain("--input");
    expect(s).toContain("export SMITHERS_DB_PATH=/home/ralph.guest/work/ralph-1/.runs/113-seq/.smithers/run-113.db");
  });
  it("resume scripts never use `smithers resume` and always carry the run id", () => {
    for (const dialect of ["modern", "legacy"] as const) {
      const cmds = [resumeEngineArgs(dialect, "/w/wf.tsx", "fabrik-9"), resumeEngineArgs(dialect, "/w/wf.tsx", "fabrik-9", "step-3")];
      for (const engine of cmds) {
        const s = buildLauncherScript({ ...base, dialect, mode: "resume", engine, banner: ["Completed: 15/18 tasks", "Continuing from: 16:impl"] });
        expect(s).not.toMatch(/smithers resume/);
        expect(s).not.toMatch(/"\$SMITHERS" resume/);
        expect(s).toContain("fabrik-9");
        expect(s).toContain("log 'Completed: 15/18 tasks'");
        expect(s).toContain("log 'Continuing from: 16:impl'");
      }
    }
    expect(resumeEngineArgs("modern", "/w", "r").args).toEqual(["/w", "--resume", "r"]);
    expect(resumeEngineArgs("legacy", "/w", "r").args).toEqual(["/w", "--run-id", "r", "--resume"]);
    expect(resumeEngineArgs("modern", "/w", "r", "n").verb).toBe("retry-task");
  });
  it("names things after the host id", () => {
    expect(smithersRunIdFor(113)).toBe("fabrik-113");
    expect(runDirName(7, "My Run!.tsx")).toBe("7-my-run");
    expect(runDirName(7, "")).toBe("7-run");
    expect(runDbPath("/c", 7)).toBe("/c/.smithers/run-7.db");
  });
});
