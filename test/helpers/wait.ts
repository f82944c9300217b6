// Waiting for something another process or a worker does: poll until it has happened.

/**
 * Polls `probe` every 50 ms until it gives a value other than undefined or false, and
 * resolves with it. A probe that throws (a server not listening yet) counts as not yet.
 * After `timeoutMs` it throws, naming `what`, the last error and `detail()` if given.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  detail?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${String(lastError)})`;
      throw new Error(`${what} did not happen in time${why}${detail ? `\n${detail()}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
