/**
 * vitest global setup: make sure dist/guest/<name>.js (the bundled guest programs the host loads; see
 * src/vm/guest-programs.ts) exist and are not older than their sources. Builds them in-process with the esbuild
 * API (scripts/build-guest.mjs) — well under a second — so unit tests never need `npm run build`.
 */
export default async function setup(): Promise<void> {
  // @ts-expect-error: a plain ESM script without type declarations
  const { buildGuestPrograms } = (await import("../../../scripts/build-guest.mjs")) as {
    buildGuestPrograms(opts: { onlyIfStale: boolean }): Promise<{ name: string; built: boolean }[]>;
  };
  await buildGuestPrograms({ onlyIfStale: true });
}
