/**
 * vitest setup file: every test file must leave the host's `/dev/null` a character device. The stand-in VMs and
 * the ssh test hosts share the host's /dev, and their guests run as root or with sudo: once, during two test runs
 * at the same time, /dev/null became a regular file (then ssh `-F /dev/null` failed on whatever was written into
 * it, and every later VM call with it). This check names the file that did it, and puts the device back (as
 * root) so the rest of the run is not poisoned.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { afterAll, expect } from "vitest";

const testPath = expect.getState().testPath ?? "";
if (!/[\\/]src[\\/]__tests__[\\/]unit[\\/]/.test(testPath)) {
  afterAll(() => {
    const st = fs.lstatSync("/dev/null", { throwIfNoEntry: false });
    if (st?.isCharacterDevice()) return;
    let restored = "not restored (not root)";
    if (process.getuid?.() === 0) {
      fs.rmSync("/dev/null", { force: true });
      execFileSync("mknod", ["-m", "666", "/dev/null", "c", "1", "3"]);
      restored = "restored with mknod";
    }
    throw new Error(`/dev/null is no longer a character device after ${testPath} (${st ? `a ${st.isFile() ? "regular file" : "non-device"} of ${st.size} bytes` : "missing"}; ${restored})`);
  });
}
