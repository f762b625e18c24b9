/** `fabrik config get KEY [--explain]`: one setting's value (and, with --explain, where it came from). */
import { defineCommand, view } from "../command.js";

export default defineCommand({
  command: "get <key>",
  describe: "print one setting's value",
  positionals: { key: { type: "string", demandOption: true, describe: "setting key, e.g. probe.timeout_ms" } },
  options: { explain: { type: "boolean", default: false, describe: "say where the value came from" } },
  async run(ctx, a) {
    const [{ settingOf, settingViews }, { renderSettingExplained }] = await Promise.all([import("../config.js"), import("../render/config.js")]);
    const key = settingOf(a.key).key;
    const s = settingViews(ctx.config).find((x) => x.key === key)!;
    return view(s, (v) => (a.explain ? renderSettingExplained(v) : `${v.value ?? ""}\n`));
  },
});
