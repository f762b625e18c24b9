/**
 * The VM layer's abort fan-out (src/vm/abort.ts) and its one retry helper (src/vm/retry.ts).
 */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { onAbort } from "../../vm/abort.js";
import { runProcess } from "../../vm/process.js";
import { RECONNECT_BACKOFF, backoffDelayMs, retryUntil } from "../../vm/retry.js";

describe("onAbort: one listener per signal, whatever the number of calls", () => {
  it("20 concurrent processes on one signal: one real listener, none left afterwards, no MaxListeners warning", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const ctl = new AbortController();
      const runs = Array.from({ length: 20 }, () => runProcess("sh", ["-c", "sleep 0.2"], { timeoutMs: 10_000, signal: ctl.signal }));
      expect(getEventListeners(ctl.signal, "abort")).toHaveLength(1);
      const results = await Promise.all(runs);
      expect(results.every((r) => r.exitCode === 0 && !r.aborted)).toBe(true);
      await new Promise((r) => setImmediate(r));
      expect(warnings).not.toContain("MaxListenersExceededWarning");
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("fans out to every registered callback once; an unregistered one is not called; an aborted signal calls at once", () => {
    const ctl = new AbortController();
    const calls: string[] = [];
    onAbort(ctl.signal, () => calls.push("a"));
    const off = onAbort(ctl.signal, () => calls.push("b"));
    onAbort(ctl.signal, () => calls.push("c"));
    off();
    off();
    ctl.abort();
    ctl.abort();
    expect(calls).toEqual(["a", "c"]);
    onAbort(ctl.signal, () => calls.push("late"));
    expect(calls).toEqual(["a", "c", "late"]);
    expect(() => onAbort(undefined, () => calls.push("never"))()).not.toThrow();
  });

  it("aborting kills a running process", async () => {
    const ctl = new AbortController();
    const p = runProcess("sh", ["-c", "sleep 30"], { timeoutMs: 60_000, signal: ctl.signal });
    setTimeout(() => ctl.abort(), 100);
    const r = await p;
    expect(r.aborted).toBe(true);
  });
});

describe("retryUntil", () => {
  it("backs off 100 ms doubling to 5 s", () => {
    expect([0, 1, 2, 5, 6, 20].map((n) => backoffDelayMs(RECONNECT_BACKOFF, n))).toEqual([100, 200, 400, 3200, 5000, 5000]);
  });

  it("retries until success, within the deadline", async () => {
    let n = 0;
    const fast = { firstMs: 5, factor: 2, maxMs: 20 };
    const v = await retryUntil(
      async (attempt) => {
        n = attempt;
        if (attempt < 3) throw new Error(`fail ${attempt}`);
        return "ok";
      },
      { deadlineAt: Date.now() + 5_000, backoff: fast },
    );
    expect(v).toBe("ok");
    expect(n).toBe(3);
  });

  it("stops when shouldRetry says no or the next wait would reach the deadline, rethrowing the last failure unchanged", async () => {
    const marker = { not: "an Error" };
    await expect(retryUntil(() => Promise.reject(marker), { deadlineAt: Date.now() + 5_000, shouldRetry: () => false })).rejects.toBe(marker);
    const started = Date.now();
    let attempts = 0;
    const err = await retryUntil(
      () => {
        attempts++;
        return Promise.reject(new Error("down"));
      },
      { deadlineAt: Date.now() + 350 },
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe("down");
    // 100 + 200 ms of waits fit before the deadline, 400 more would not: 3 attempts, well before 350 + 400 ms.
    expect(attempts).toBe(3);
    expect(Date.now() - started).toBeLessThan(700);
  });

  it("an abort stops the waiting", async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("stopped")), 50);
    await expect(retryUntil(() => Promise.reject(new Error("down")), { deadlineAt: Date.now() + 60_000, signal: ctl.signal })).rejects.toThrow("stopped");
  });
});
