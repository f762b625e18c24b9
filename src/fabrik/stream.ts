/**
 * Turning a push-based producer (callbacks from a follower, a refresh loop) into the async generator a
 * {@link StreamResult} hands to `cli.ts`. Items are delivered in order; the producer's return value becomes the
 * generator's return value (the exit code); a producer error is thrown by the generator after the items before it.
 */
import type { StreamItem } from "./command.js";

/** Emit functions a producer gets. */
export interface Emitter<E> {
  data(e: E): void;
  notice(message: string): void;
  warning(message: string): void;
}

/**
 * Run `producer` and yield what it emits. If the consumer stops early (`return()`), `stop` is called so the
 * producer can wind down (e.g. abort its refresh loop).
 */
export function channel<E>(producer: (emit: Emitter<E>) => Promise<number>, stop?: () => void): AsyncGenerator<StreamItem<E>, number, void> {
  const queue: StreamItem<E>[] = [];
  let wake: (() => void) | undefined;
  let finished: { ok: true; code: number } | { ok: false; error: unknown } | undefined;
  const push = (x: StreamItem<E>) => {
    queue.push(x);
    wake?.();
  };
  producer({
    data: (data) => push({ type: "data", data }),
    notice: (message) => push({ type: "notice", message }),
    warning: (message) => push({ type: "warning", message }),
  }).then(
    (code) => {
      finished = { ok: true, code };
      wake?.();
    },
    (error: unknown) => {
      finished = { ok: false, error };
      wake?.();
    },
  );
  return (async function* () {
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (finished) {
          if (!finished.ok) throw finished.error;
          return finished.code;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      if (!finished) stop?.();
    }
  })();
}

/** Resolves after `ms` (milliseconds), or at once when `signal` aborts; never rejects (a refresh loop's wait). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
