// The one poll-until of the end-to-end tests: waits for probe to return a value (anything but
// undefined or false), polling every intervalMs, and fails at the timeout with what it waited
// for, the probe's last error and whatever context the test adds (an agent's log tail, say).
export interface EventuallyOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** A probe that throws is tried again (default); false makes its error the test's at once. */
  retryErrors?: boolean;
  /** Appended to the timeout's message: what the test can show of why. */
  context?: () => string;
}

export async function eventually<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, options: EventuallyOptions = {}): Promise<T> {
  const { timeoutMs = 90_000, intervalMs = 200, retryErrors = true, context } = options;
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (!retryErrors) throw error;
      last = error;
    }
    if (Date.now() > end) {
      const cause = last === undefined ? '' : ` (last error: ${(last as Error).message ?? String(last)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${context ? `\n${context()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
