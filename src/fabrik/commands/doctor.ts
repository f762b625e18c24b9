/** `fabrik doctor [--vm NAME]`: host and per-VM checks, each ok/warn/fail with the command that fixes it; exit 1 on a failure. */
import { defineCommand, view } from "../command.js";
import { vmName } from "../args.js";

export default defineCommand({
  command: "$0",
  describe: "check the host and the VMs (node, limactl, registry, config; bun, engines, disk, clock, locks, control dirs); exit 1 on a failure",
  options: { vm: { type: "string", coerce: vmName, describe: "check only this VM (host checks always run)" } },
  lenientConfig: true,
  async run(ctx, a) {
    const [{ doctorReport }, { renderDoctor }] = await Promise.all([import("../doctor-service.js"), import("../render/doctor.js")]);
    const { view: v, warnings } = await doctorReport(ctx, { vm: a.vm });
    return view(v, renderDoctor, { warnings, exitCode: v.ok ? 0 : 1 });
  },
});
