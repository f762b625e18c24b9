/** `fabrik config list [--explain]`: every setting, its value and where it came from (flag, env, file, default). */
import { defineCommand, view } from "../command.js";

export default defineCommand({
  command: "list",
  describe: "list every setting with its value and where it came from",
  options: { explain: { type: "boolean", default: false, describe: "also show each setting's default, environment variable and meaning" } },
  async run(ctx, a) {
    const [{ settingViews }, { renderSettings }] = await Promise.all([import("../config.js"), import("../render/config.js")]);
    return view(settingViews(ctx.config), (v, r) => renderSettings(v, { ...r, explain: a.explain, file: ctx.config.file }));
  },
});
