/**
 * Abort listeners without piling them up on a shared signal. `runs list` probes many VMs at once with the
 * command's ONE AbortSignal; adding a listener per call put more than 10 on it at a time (Node's
 * `MaxListenersExceededWarning` from 11 VMs on), and a listener a call forgot to remove stayed for the life of
 * the process. {@link onAbort} keeps exactly one real listener per signal and fans out to the callbacks
 * registered with it; each caller removes its own callback with the function it gets back.
 */

const callbacks = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Run `fn` once when `signal` aborts (at once when it already has). Returns the function that unregisters it
 * (call it when the operation ends; calling it twice is harmless). A missing signal registers nothing.
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    fn();
    return () => undefined;
  }
  let set = callbacks.get(signal);
  if (!set) {
    const fresh = new Set<() => void>();
    callbacks.set(signal, fresh);
    signal.addEventListener(
      "abort",
      () => {
        for (const cb of [...fresh]) cb();
        fresh.clear();
      },
      { once: true },
    );
    set = fresh;
  }
  const entry = () => fn(); // a fresh function per registration, so the same fn may be registered twice
  set.add(entry);
  const owner = set;
  return () => {
    owner.delete(entry);
  };
}
