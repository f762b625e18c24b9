/** `fabrik fleet [--vm NAME…] [--no-live]`: every VM's state, health, engines, free disk, active runs and idleness. */
import { defineCommand, view } from "../command.js";
import { vmNames } from "../args.js";

export default defineCommand({
  command: "$0",
  describe: "the fleet's health: per VM state, probe history (degraded/down), engines, free disk, active runs, idle VMs",
  options: {
    vm: { type: "string", array: true, coerce: vmNames, describe: "only these VMs (repeatable)" },
    live: { type: "boolean", default: true, describe: "probe the running VMs now (--no-live: judge from the stored probe history)" },
  },
  async run(ctx, a) {
    const [{ fleetReport }, { renderFleet }] = await Promise.all([import("../fleet-service.js"), import("../render/fleet.js")]);
    const { view: v, warnings } = await fleetReport(ctx, { vms: a.vm, live: a.live });
    return view(v, renderFleet, { warnings });
  },
});
