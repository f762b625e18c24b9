/**
 * A test-controlled gate for the example `seq` workflows (input `gateDir`, see examples/workflows/seq.tsx):
 * task N writes `<dir>/at-N` when it starts, then waits for `<dir>/release-N`. A test that must act while
 * task 3 runs waits for `at-3` (an event, not a time window), acts, and releases the tasks it wants to finish.
 *
 * The folder lives in this run's temp root, which stand-in VMs see at the same path as a Lima mount (their /tmp
 * is their own: helpers/cli.ts `envFor`), the ssh test hosts share with the host, and local VMs see anyway: the
 * same path works on the host and in the guest. It is writable by everyone (sticky, like /tmp), because a Lima
 * guest user and an ssh test host's user are not root.
 * `dispose()` removes the folder, which releases every task of every run still waiting on it.
 */
import fs from "node:fs";
import path from "node:path";
import { waitFor } from "./proc.js";
import { tempDir } from "./test-root.js";

export class Gate {
  readonly dir: string;

  constructor(prefix = "gate-") {
    this.dir = tempDir(prefix);
    // Guests that run as their own user (the ssh test hosts) write `at-N` here: world-writable, sticky, like /tmp.
    fs.chmodSync(this.dir, 0o1777);
  }

  /** The workflow input field that enables the gate. */
  get input(): { gateDir: string } {
    return { gateDir: this.dir };
  }

  /** Let tasks `ns` finish (now or when they get there). */
  release(...ns: number[]): void {
    for (const n of ns) fs.writeFileSync(path.join(this.dir, `release-${n}`), "");
  }

  /** Let tasks 1..n finish. */
  releaseThrough(n: number): void {
    this.release(...Array.from({ length: n }, (_, i) => i + 1));
  }

  /** Whether task n has started (`at-n` exists). */
  reached(n: number): boolean {
    return fs.existsSync(path.join(this.dir, `at-${n}`));
  }

  /** Forget that task n started, so that {@link at} waits for its NEXT attempt. */
  forget(n: number): void {
    fs.rmSync(path.join(this.dir, `at-${n}`), { force: true });
  }

  /** Wait until task n has started. `describe` adds the state of the world to a timeout's message. */
  async at(n: number, opts: { timeoutMs?: number; describe?: () => string | Promise<string> } = {}): Promise<void> {
    await waitFor(() => this.reached(n), {
      timeoutMs: opts.timeoutMs ?? 90_000,
      intervalMs: 50,
      what: `task ${n} to start (${path.join(this.dir, `at-${n}`)} to appear)`,
      describe: async () => `gate folder holds [${this.list().join(", ")}]${opts.describe ? `\n${await opts.describe()}` : ""}`,
    });
  }

  list(): string[] {
    try {
      return fs.readdirSync(this.dir).sort();
    } catch {
      return [];
    }
  }

  /** Remove the folder: every run waiting on it goes on. */
  dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
