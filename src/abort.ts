// Waiting that an AbortSignal cuts short: every wait in tripdump goes through here, so Ctrl-C ends it at once.

/** Resolves after ms, or as soon as the signal aborts (without error: callers check signal.aborted). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
  });
}
