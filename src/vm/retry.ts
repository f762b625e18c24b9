/**
 * ONE retry helper for the VM layer: exponential backoff with a deadline, built on `p-retry`. The SSH transport
 * (connect, channel open, probe channel restart) and the session's follow loop all retry through it, so their
 * backoff cannot drift apart.
 */
import pRetry from "p-retry";

/** An exponential backoff: first delay, factor, cap (ms). */
export interface Backoff {
  readonly firstMs: number;
  readonly factor: number;
  readonly maxMs: number;
}

/** Reconnect backoff of the VM layer: 100 ms doubling to 5 s. */
export const RECONNECT_BACKOFF: Backoff = { firstMs: 100, factor: 2, maxMs: 5_000 };

/** The wait before retry number `n` (0 = the first retry), ms: `min(firstMs × factor^n, maxMs)`. */
export function backoffDelayMs(backoff: Backoff, n: number): number {
  return Math.min(Math.round(backoff.firstMs * backoff.factor ** Math.max(0, n)), backoff.maxMs);
}

/** Options of {@link retryUntil}. */
export interface RetryOptions {
  /** Epoch ms: no attempt starts when its backoff wait would end at or after this moment. */
  deadlineAt: number;
  backoff?: Backoff | undefined;
  /** Whether a failure is worth another attempt (default: every failure). */
  shouldRetry?: ((err: unknown) => boolean) | undefined;
  /** Called after each failed attempt (1-based `attempt`), before deciding to retry. */
  onFailedAttempt?: ((err: unknown, attempt: number) => void) | undefined;
  /** Aborting stops waiting and rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/**
 * Call `fn(attempt)` (attempt = 1, 2, …) until it resolves. After a failure, waits `backoffDelayMs(backoff, k)`
 * (k = retries so far) and tries again — unless `shouldRetry` says no or the wait would reach `deadlineAt`.
 * @returns what `fn` resolved with.
 * @throws the last failure of `fn` (unchanged), or the abort reason when `signal` aborts.
 */
export async function retryUntil<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const backoff = opts.backoff ?? RECONNECT_BACKOFF;
  // p-retry wraps anything that is not an Error; keep the original failure to rethrow it unchanged.
  const failures = new WeakMap<Error, unknown>();
  try {
    return await pRetry(
      async (attempt) => {
        try {
          return await fn(attempt);
        } catch (err) {
          if (err instanceof Error && !(err instanceof TypeError)) throw err;
          const wrapped = new Error(err instanceof Error ? err.message : String(err));
          failures.set(wrapped, err);
          throw wrapped;
        }
      },
      {
        retries: Number.POSITIVE_INFINITY,
        factor: backoff.factor,
        minTimeout: backoff.firstMs,
        maxTimeout: backoff.maxMs,
        signal: opts.signal,
        onFailedAttempt: ({ error, attemptNumber }) => opts.onFailedAttempt?.(failures.get(error) ?? error, attemptNumber),
        shouldRetry: ({ error, retriesConsumed }) =>
          (opts.shouldRetry?.(failures.get(error) ?? error) ?? true) && Date.now() + backoffDelayMs(backoff, retriesConsumed) < opts.deadlineAt,
      },
    );
  } catch (err) {
    throw err instanceof Error && failures.has(err) ? failures.get(err) : err;
  }
}
