/** `fabrik vm start NAME...`: carries on past failures, reports them all. */
import { defineCommand } from "../command.js";
import { count, vmNames } from "../args.js";

export default defineCommand({
  command: "start <names..>",
  describe: "start one or more VMs",
  positionals: { names: { type: "string", array: true, demandOption: true, coerce: vmNames } },
  options: { timeout: { type: "string", coerce: count("--timeout", 1, "600"), default: "600", describe: "seconds to wait for each VM" } },
  async run(ctx, a) {
    const { startVms } = await import("../vm-service.js");
    return startVms(ctx, a.names, { timeoutMs: a.timeout * 1000 });
  },
});
