/** `fabrik supervise [--interval 60s] [--once] [--max-resumes 3] [--vm V…] [--retry-failed] [--backoff 60s]`: the fleet's watchdog. */
import { defineCommand } from "../command.js";
import { count, duration, vmNames } from "../args.js";

export default defineCommand({
  command: "$0",
  describe: "watch the fleet: each interval probe every VM and resume orphaned runs with run resume's safety checks (NDJSON with --json)",
  options: {
    interval: { type: "string", coerce: duration("--interval"), default: "60s", describe: "time between passes" },
    once: { type: "boolean", default: false, describe: "one pass, then exit (for cron); exit 1 when a resume attempt failed" },
    "max-resumes": { type: "string", coerce: count("--max-resumes", 1, "3"), default: "3", describe: "resume attempts per run at most (then it is left to you)" },
    backoff: { type: "string", coerce: duration("--backoff"), default: "60s", describe: "wait after an attempt before the next one; doubles each time" },
    vm: { type: "string", array: true, coerce: vmNames, describe: "only these VMs (repeatable; default: every VM)" },
    "retry-failed": { type: "boolean", default: false, describe: "also retry failed runs (never cancelled ones)" },
  },
  async run(ctx, a) {
    const { superviseStream } = await import("../supervise-service.js");
    return superviseStream(ctx, { intervalMs: a.interval, once: a.once, maxResumes: a["max-resumes"], backoffMs: a.backoff, vms: a.vm, retryFailed: a["retry-failed"] });
  },
});
