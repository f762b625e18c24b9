/** `fabrik runs evidence --id N [-o FILE] [--max-size 200MB]`: a tar.gz for a bug report, secrets masked everywhere. */
import { defineCommand, view } from "../command.js";
import { runId, size } from "../args.js";

export default defineCommand({
  command: "evidence",
  describe: "bundle a run's evidence (DB snapshot, control files, log tail, show/doctor output, versions) into a tar.gz, secrets masked",
  options: {
    id: { type: "string", coerce: runId(), demandOption: true, describe: "run id" },
    output: { alias: "o", type: "string", describe: "output file (default fabrik-evidence-run-<id>-<time>.tar.gz here); never overwritten" },
    "max-size": { type: "string", coerce: size("--max-size"), default: "200MB", describe: "the bundle's size limit; the DB's big values, then the DB, are cut to fit (the manifest says what)" },
  },
  async run(ctx, a) {
    const [{ makeEvidence }, { renderEvidence }] = await Promise.all([import("../evidence-service.js"), import("../render/evidence.js")]);
    const { view: v, warnings } = await makeEvidence(ctx, { id: a.id, out: a.output, maxBytes: a["max-size"] });
    return view(v, renderEvidence, { warnings });
  },
});
