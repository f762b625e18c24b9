/** Launcher inputs shared by the unit (text) and integration (bash, shellcheck) tests of run.sh. */
import { startEngineArgs, type LauncherInputs } from "../../vm/launcher.js";

/** A 0.32 start of host run 113 in VM ralph-1. */
export const base: LauncherInputs = {
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
