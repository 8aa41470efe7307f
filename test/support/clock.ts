// A clock the test moves by hand, for code that takes a Clock (src/agent/workqueue.ts): time
// stands still until advance(), which fires due timers in time order and lets the promise
// chains they start settle before the next one. Tests of backoff and delays then count
// exactly, whatever the machine's load.
import type { Clock } from '../../src/agent/workqueue.ts';

interface Timer { at: number; seq: number; fn: () => void }

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, Timer>();

  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
    return seq;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Pending timers. */
  get pending(): number {
    return this.#timers.size;
  }

  /** How long until the next timer is due, or undefined with none pending. */
  nextDueIn(): number | undefined {
    let at: number | undefined;
    for (const t of this.#timers.values()) if (at === undefined || t.at < at) at = t.at;
    return at === undefined ? undefined : at - this.#now;
  }

  /** Moves time forward by ms, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = [...this.#timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#timers.delete(next.seq);
      this.#now = next.at;
      next.fn();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise chains and I/O callbacks run (a few turns of the event loop). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}
