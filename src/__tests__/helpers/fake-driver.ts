/**
 * A VmDriver fake for in-process command tests: every call must have been announced with `expect…`;
 * anything else throws AND is recorded. Product code may catch that throw (e.g. an unreachable VM becomes a
 * row), so the throw alone could go unnoticed: a fake created inside a test registers an `onTestFinished`
 * check that fails the test when any unexpected call was recorded.
 */
import { onTestFinished } from "vitest";
import type { CreateOptions, ExecOptions, ExecResult, SshTarget, StreamHandle, VmDriver, VmInfo } from "../../vm/driver.js";
import type { DriverName } from "../../fabrik/config.js";

type Handler = (...args: unknown[]) => unknown;

export class FakeDriver implements VmDriver {
  readonly name: DriverName;
  readonly calls: { method: string; args: unknown[] }[] = [];
  readonly unexpected: string[] = [];
  private readonly handlers = new Map<string, Handler[]>();

  constructor(name: DriverName = "lima") {
    this.name = name;
    onTestFinished(() => this.assertNoUnexpectedCalls());
  }

  /** Throw when any call was not announced with `expect` (also run automatically when the test finishes). */
  assertNoUnexpectedCalls(): void {
    if (this.unexpected.length) throw new Error(`FakeDriver(${this.name}) got ${this.unexpected.length} unexpected call(s):\n  ${this.unexpected.join("\n  ")}`);
  }

  /** Allow the next call of `method` (FIFO); `times` calls when given. */
  expect(method: keyof VmDriver, handler: Handler, times = 1): this {
    const list = this.handlers.get(method) ?? [];
    for (let i = 0; i < times; i++) list.push(handler);
    this.handlers.set(method, list);
    return this;
  }

  private call<T>(method: string, args: unknown[]): T {
    this.calls.push({ method, args });
    const h = this.handlers.get(method)?.shift();
    if (!h) {
      const msg = `unexpected call ${method}(${JSON.stringify(args).slice(0, 200)})`;
      this.unexpected.push(msg);
      throw new Error(msg);
    }
    return h(...args) as T;
  }

  async list(opts: { timeoutMs: number }): Promise<VmInfo[]> {
    return this.call("list", [opts]);
  }
  async inspect(name: string, opts: { timeoutMs: number }): Promise<VmInfo | undefined> {
    return this.call("inspect", [name, opts]);
  }
  async create(opts: CreateOptions): Promise<void> {
    return this.call("create", [opts]);
  }
  async start(name: string, opts: { timeoutMs: number }): Promise<void> {
    return this.call("start", [name, opts]);
  }
  async stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    return this.call("stop", [name, opts]);
  }
  async delete(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<void> {
    return this.call("delete", [name, opts]);
  }
  async exec(name: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    return this.call("exec", [name, argv, opts]);
  }
  async stream(name: string, argv: readonly string[], opts: unknown): Promise<StreamHandle> {
    return this.call("stream", [name, argv, opts]);
  }
  async copyIn(name: string, hostPaths: readonly string[], guestDir: string, opts: { timeoutMs: number }): Promise<void> {
    return this.call("copyIn", [name, hostPaths, guestDir, opts]);
  }
  async copyOut(name: string, guestPath: string, hostPath: string, opts: { timeoutMs: number }): Promise<void> {
    return this.call("copyOut", [name, guestPath, hostPath, opts]);
  }
  async shell(name: string, argv: readonly string[] | undefined, opts: { cwd?: string | undefined }): Promise<number> {
    return this.call("shell", [name, argv, opts]);
  }
  async sshTarget(name: string): Promise<SshTarget | undefined> {
    return this.call("sshTarget", [name]);
  }
}

/** A VmInfo with sensible defaults. */
export function vmInfo(name: string, over: Partial<VmInfo> = {}): VmInfo {
  return {
    name,
    driver: "lima",
    status: "Running",
    guestHome: "/home/u.guest",
    guestUser: "u",
    cpus: 2,
    memoryBytes: 4 * 1024 ** 3,
    diskBytes: 20 * 1024 ** 3,
    arch: "x86_64",
    vmType: "qemu",
    dir: `/lima/${name}`,
    sshConfigFile: `/lima/${name}/ssh.config`,
    sshLocalPort: 40000,
    errors: [],
    ...over,
  };
}
