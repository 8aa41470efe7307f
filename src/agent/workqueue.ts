// A rate-limited work queue with client-go's semantics (util/workqueue):
// - a key waits in the queue at most once (adds of a waiting key are deduplicated);
// - a key is never handed to two workers at once: an add while it is being processed marks it
//   dirty, and it is queued again, once, when the worker calls done();
// - addAfter() holds a key back for a while (the earliest pending time wins);
// - addRateLimited() holds it back by the larger of a per-key exponential backoff
//   (5 ms doubling to 1000 s, reset by forget()) and an overall token bucket;
// - shutDown() stops handing out work; in-flight keys finish, and drained() tells when.
// Time comes from an injectable clock so that the tests can drive it.

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Timers of the queue must not keep a process alive on their own: the agent's lifetime is
    // decided by its signal handlers, a test's by its hooks.
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface RateLimiter {
  /** How long to wait before the key may be processed again. Counts a failure. */
  when(key: string): number;
  /** Forgets the key's failures (after a success). */
  forget(key: string): void;
  numRequeues(key: string): number;
}

/** Per-key exponential backoff: base * 2^failures, capped (client-go's ItemExponentialFailureRateLimiter). */
export class ExponentialBackoffLimiter implements RateLimiter {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #failures = new Map<string, number>();

  constructor(baseMs = 5, maxMs = 1000_000) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    // 2^failures overflows to Infinity long before it matters; the cap handles that.
    return Math.min(this.#baseMs * 2 ** failures, this.#maxMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket (client-go's BucketRateLimiter): `burst` retries at once, then
 * `perSecond`. Each when() reserves one token and returns how long to wait for it.
 */
export class TokenBucketLimiter implements RateLimiter {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(perSecond = 10, burst = 100, clock: Clock = realClock) {
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#clock = clock;
    this.#tokens = burst;
    this.#last = clock.now();
  }

  when(_key: string): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#perSecond);
    this.#last = now;
    this.#tokens -= 1;
    if (this.#tokens >= 0) return 0;
    return Math.ceil((-this.#tokens / this.#perSecond) * 1000);
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The larger delay of several limiters (client-go's MaxOfRateLimiter). */
export class MaxOfLimiter implements RateLimiter {
  readonly #limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    let delay = 0;
    for (const l of this.#limiters) delay = Math.max(delay, l.when(key));
    return delay;
  }

  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }

  numRequeues(key: string): number {
    let n = 0;
    for (const l of this.#limiters) n = Math.max(n, l.numRequeues(key));
    return n;
  }
}

export function defaultRateLimiter(clock: Clock = realClock): RateLimiter {
  return new MaxOfLimiter(new ExponentialBackoffLimiter(5, 1000_000), new TokenBucketLimiter(10, 100, clock));
}

export interface WorkQueueOptions {
  rateLimiter?: RateLimiter;
  clock?: Clock;
  /** Called whenever the number of waiting keys changes (for a depth gauge). */
  onDepth?: (depth: number) => void;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  /** Keys that need processing: waiting in #queue, or re-added while being processed. */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #delayed = new Map<string, { at: number; handle: unknown }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  readonly #drainWaiters: (() => void)[] = [];
  readonly #limiter: RateLimiter;
  readonly #clock: Clock;
  readonly #onDepth: (depth: number) => void;
  #shuttingDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.#clock = options.clock ?? realClock;
    this.#limiter = options.rateLimiter ?? defaultRateLimiter(this.#clock);
    this.#onDepth = options.onDepth ?? (() => {});
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // queued again by done()
    this.#enqueue(key);
  }

  /** Adds the key after `ms`; if it is already waiting for an earlier time, that one stands. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.#clock.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.#clock.clearTimeout(pending.handle);
    const handle = this.#clock.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, handle });
  }

  /** Adds the key after its backoff (and the overall rate limit) allows. Counts a failure. */
  addRateLimited(key: string): void {
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Clears the key's failure count: its next failure starts the backoff over. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.#limiter.numRequeues(key);
  }

  /**
   * The next key to process, marked as processing until done(key). Resolves undefined once the
   * queue is shut down (keys still waiting then are dropped: a restarted agent re-lists them).
   */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#take();
    if (key !== undefined) return Promise.resolve(key);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#enqueue(key);
    if (this.#processing.size === 0) this.#drainWaiters.splice(0).forEach((w) => w());
  }

  /** Keys waiting to be handed out (not those being processed or held back by a delay). */
  get length(): number {
    return this.#queue.length;
  }

  get processing(): number {
    return this.#processing.size;
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Stops handing out keys and cancels delayed adds; workers blocked in get() get undefined. */
  shutDown(): void {
    this.#shuttingDown = true;
    for (const { handle } of this.#delayed.values()) this.#clock.clearTimeout(handle);
    this.#delayed.clear();
    this.#queue.length = 0;
    this.#dirty.clear();
    this.#onDepth(0);
    this.#waiters.splice(0).forEach((w) => w(undefined));
  }

  /** Resolves when no key is being processed (call after shutDown to let in-flight work finish). */
  drained(): Promise<void> {
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #enqueue(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      waiter(key);
      return;
    }
    this.#queue.push(key);
    this.#onDepth(this.#queue.length);
  }

  #take(): string | undefined {
    const key = this.#queue.shift();
    if (key === undefined) return undefined;
    this.#onDepth(this.#queue.length);
    this.#dirty.delete(key);
    this.#processing.add(key);
    return key;
  }
}

/**
 * Runs `workers` loops that take keys from the queue and hand them to `handle`. A loop ends
 * when the queue shuts down. handle() must not throw (the caller decides about requeues).
 * `afterDone` is told once the key is no longer processing: what waits for the queue to settle
 * sees it settled then, not one key short.
 */
export function runWorkers(queue: WorkQueue, workers: number, handle: (key: string) => Promise<void>, afterDone: (key: string) => void = () => {}): Promise<void> {
  const loop = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await handle(key);
      } finally {
        queue.done(key);
        afterDone(key);
      }
    }
  };
  return Promise.all(Array.from({ length: Math.max(1, workers) }, loop)).then(() => undefined);
}
