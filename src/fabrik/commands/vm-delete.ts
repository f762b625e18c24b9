/** `fabrik vm delete NAME...`: refuses while a run is active unless --force; carries on past failures. */
import { defineCommand } from "../command.js";
import { vmNames } from "../args.js";

export default defineCommand({
  command: "delete <names..>",
  describe: "delete VMs (refuses while a run is active unless --force)",
  positionals: { names: { type: "string", array: true, demandOption: true, coerce: vmNames } },
  options: { force: { alias: "f", type: "boolean", default: false, describe: "delete even with active runs or while running" } },
  async run(ctx, a) {
    const { deleteVms } = await import("../vm-service.js");
    return deleteVms(ctx, a.names, { force: a.force });
  },
});
