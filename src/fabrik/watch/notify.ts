/** `runs watch --notify`: a desktop notification when a run ends (osascript on macOS, notify-send elsewhere); silently skipped when there is no notifier. */
export async function notifyDesktop(title: string, body: string): Promise<void> {
  const { execa } = await import("execa");
  const tries: [string, string[]][] =
    process.platform === "darwin"
      ? // Values as arguments of the script, never spliced into its text.
        [["osascript", ["-e", "on run argv", "-e", "display notification (item 1 of argv) with title (item 2 of argv)", "-e", "end run", body, title]]]
      : [["notify-send", [title, body]]];
  for (const [cmd, args] of tries) {
    try {
      await execa(cmd, args, { timeout: 5000, reject: true, stdio: "ignore" });
      return;
    } catch {
      /* no notifier: skipped */
    }
  }
}
