import { describe, it, expect } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { buildLauncherScript, resumeEngineArgs, runDirName, smithersRunIdFor, startEngineArgs, runDbPath, type LauncherInputs } from "../../vm/launcher.js";
import { ENGINE_INSTALL_SCRIPT } from "../../vm/engine.js";
import { LAUNCH_SCRIPT } from "../../fabrik/launch.js";

const base: LauncherInputs = {
  hostRunId: 113,
  smithersRunId: "fabrik-113",
  vm: "ralph-1",
  controlDir: "/home/ralph.guest/work/ralph-1/.runs/113-seq",
  workflowPath: "/home/ralph.guest/work/ralph-1/.runs/113-seq/workflow/seq.tsx",
  dbPath: "/home/ralph.guest/work/ralph-1/.runs/113-seq/.smithers/run-113.db",
  engineVersion: "0.32.0",
  dialect: "modern",
  engineDir: "/home/ralph.guest/.fabrik/engines/0.32.0",
  heartbeatIntervalS: 10,
  engine: startEngineArgs("modern", "/home/ralph.guest/work/ralph-1/.runs/113-seq/workflow/seq.tsx", "fabrik-113"),
  mode: "start",
  launchId: "launch-0123456789abcdef",
  banner: [],
};

const hasShellcheck = spawnSync("shellcheck", ["--version"]).status === 0;

function bashN(text: string): void {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-sh-")), "s.sh");
  fs.writeFileSync(f, text);
  const r = spawnSync("bash", ["-n", f], { encoding: "utf8" });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  if (hasShellcheck) {
    const sc = spawnSync("shellcheck", ["-S", "warning", "-s", "bash", f], { encoding: "utf8" });
    expect(sc.stdout).toBe("");
    expect(sc.status).toBe(0);
  }
}

describe("run.sh generator", () => {
  it("matches the golden text (0.32 start)", async () => {
    await expect(buildLauncherScript(base)).toMatchFileSnapshot("golden/run-0.32.sh");
  });
  it("matches the golden text (0.5 start)", async () => {
    const legacy = { ...base, engineVersion: "0.5.0", dialect: "legacy" as const, engineDir: "/home/ralph.guest/.fabrik/engines/0.5.0", engine: startEngineArgs("legacy", base.workflowPath, "fabrik-113") };
    await expect(buildLauncherScript(legacy)).toMatchFileSnapshot("golden/run-0.5.sh");
  });
  it("is valid bash (bash -n; shellcheck when installed)", () => {
    bashN(buildLauncherScript(base));
    bashN(buildLauncherScript({ ...base, mode: "resume", engine: resumeEngineArgs("modern", base.workflowPath, "fabrik-113"), banner: ["Completed: 2/6 tasks", "Continuing from: step-3"] }));
    bashN(ENGINE_INSTALL_SCRIPT);
    bashN(LAUNCH_SCRIPT);
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
  it("quotes hostile paths so they stay one word", () => {
    const evil = "/home/u/work/x/.runs/1-a b'$(touch /tmp/pwn)`id`";
    const s = buildLauncherScript({ ...base, controlDir: evil });
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "fabrik-sh-")), "s.sh");
    // Evaluate only the assignment line and print it back.
    const line = s.split("\n").find((l) => l.startsWith("CONTROL_DIR="))!;
    fs.writeFileSync(f, `${line}\nprintf '%s' "$CONTROL_DIR"`);
    expect(spawnSync("bash", [f], { encoding: "utf8" }).stdout).toBe(evil);
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
