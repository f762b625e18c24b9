/** `fabrik vm stop NAME...`: refuses while runs are active unless --force; carries on past failures. */
import { defineCommand } from "../command.js";
import { vmNames } from "../args.js";

export default defineCommand({
  command: "stop <names..>",
  describe: "stop one or more VMs (refuses while a run is active unless --force; carries on past failures)",
  positionals: { names: { type: "string", array: true, demandOption: true, coerce: vmNames } },
  options: { force: { alias: "f", type: "boolean", default: false, describe: "stop even with active runs, powering off at once" } },
  async run(ctx, a) {
    const { stopVms } = await import("../vm-service.js");
    return stopVms(ctx, a.names, { force: a.force });
  },
});
