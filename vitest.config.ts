import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/__tests__/**/*.test.ts"],
    // Bundles the guest programs (dist/guest/*.js) when missing or older than their sources.
    globalSetup: ["src/__tests__/setup/build-guest.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // End-to-end files start VMs, sshd and real engines: run files one at a time on 2 cores.
    fileParallelism: false,
    pool: "forks",
  },
});
