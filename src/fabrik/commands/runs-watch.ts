/** `fabrik runs watch --vm NAME [--run-id N]`: live view until the runs end; Ctrl-C exits 130 and never touches a run. */
import { defineCommand } from "../command.js";
import { runId, seconds, vmName } from "../args.js";

export default defineCommand({
  command: "watch",
  describe: "watch a VM's runs live until they end",
  options: {
    vm: { type: "string", coerce: vmName, demandOption: true, describe: "VM to watch" },
    "run-id": { type: "string", coerce: runId("--run-id"), describe: "the run to watch (default: the VM's active runs)" },
    interval: { type: "string", coerce: seconds("--interval", 0.5), default: "2", describe: "seconds between refreshes (minimum 0.5)" },
    timeout: { type: "string", coerce: seconds("--timeout"), describe: "give up after this many seconds" },
    "exit-status": { type: "boolean", default: false, describe: "exit with the run's outcome (see `fabrik help exit-codes`)" },
    notify: { type: "boolean", default: false, describe: "desktop notification when the run ends" },
  },
  async run(ctx, a) {
    const { watchStream } = await import("../watch/watch.js");
    return watchStream(ctx, { vm: a.vm, runId: a["run-id"], intervalS: a.interval, timeoutS: a.timeout, exitStatus: a["exit-status"], notify: a.notify });
  },
});
