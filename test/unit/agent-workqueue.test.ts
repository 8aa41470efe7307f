import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ExponentialBackoffLimiter,
  MaxOfLimiter,
  TokenBucketLimiter,
  WorkQueue,
  defaultRateLimiter,
  runWorkers,
} from '../../src/agent/workqueue.ts';
import { FakeClock } from '../support/clock.ts';

const noLimit = { when: () => 0, forget: () => {}, numRequeues: () => 0 };

describe('WorkQueue', () => {
  it('hands keys out in FIFO order and deduplicates waiting keys', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.length, 0);
  });

  it('never hands a key to two workers at once; re-adds while processing collapse into one re-run', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    q.add('a');
    const first = await q.get();
    assert.equal(first, 'a');
    q.add('a');
    q.add('a');
    q.add('a');
    assert.equal(q.length, 0, 'a key being processed is not queued again until done');
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await new Promise((r) => setImmediate(r));
    assert.equal(second, undefined, 'a second worker does not get the key in flight');
    q.done('a');
    await new Promise((r) => setImmediate(r));
    assert.equal(second, 'a', 'the re-add runs once after done');
    q.done('a');
    assert.equal(q.length, 0, 'and only once');
  });

  it('a key added and done without re-adds is not queued again', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    q.add('a');
    const k = await q.get();
    q.done(k!);
    assert.equal(q.length, 0);
    assert.equal(q.processing, 0);
  });

  it('wakes a waiting worker on add', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    const got = q.get();
    q.add('x');
    assert.equal(await got, 'x');
  });

  it('addAfter holds the key back until its time; the earliest pending time wins', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ rateLimiter: noLimit, clock });
    q.addAfter('a', 100);
    q.addAfter('a', 50);
    q.addAfter('a', 200);
    assert.equal(q.length, 0);
    await clock.advance(49);
    assert.equal(q.length, 0);
    await clock.advance(1);
    assert.equal(q.length, 1);
    await clock.advance(1000);
    assert.equal(q.length, 1, 'the later timers were dropped, not fired as extra adds');
    assert.equal(clock.pending, 0);
  });

  it('addAfter with 0 ms adds at once', () => {
    const q = new WorkQueue({ rateLimiter: noLimit, clock: new FakeClock() });
    q.addAfter('a', 0);
    assert.equal(q.length, 1);
  });

  it('addRateLimited backs off per key exponentially and forget() resets it', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ rateLimiter: new ExponentialBackoffLimiter(5, 1000_000), clock });
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      q.addRateLimited('a');
      const due = clock.nextDueIn()!;
      delays.push(due);
      await clock.advance(due);
      assert.equal(q.length, 1);
      q.done((await q.get())!);
    }
    assert.deepEqual(delays, [5, 10, 20, 40, 80]);
    assert.equal(q.numRequeues('a'), 5);
    q.forget('a');
    assert.equal(q.numRequeues('a'), 0);
    q.addRateLimited('a');
    assert.equal(clock.nextDueIn(), 5);
  });

  it('backs off each key independently', () => {
    const limiter = new ExponentialBackoffLimiter(5, 1000_000);
    assert.equal(limiter.when('a'), 5);
    assert.equal(limiter.when('a'), 10);
    assert.equal(limiter.when('b'), 5);
    assert.equal(limiter.when('a'), 20);
  });

  it('caps the per-key backoff at ~1000 s', () => {
    const limiter = new ExponentialBackoffLimiter(5, 1000_000);
    let last = 0;
    for (let i = 0; i < 2000; i++) last = limiter.when('a');
    assert.equal(last, 1000_000);
  });

  it('the token bucket allows a burst, then the steady rate, and refills over time', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucketLimiter(10, 3, clock);
    assert.deepEqual([bucket.when('a'), bucket.when('b'), bucket.when('c')], [0, 0, 0]);
    assert.equal(bucket.when('d'), 100);
    assert.equal(bucket.when('e'), 200);
    await clock.advance(10_000);
    assert.equal(bucket.when('f'), 0, 'refilled (up to the burst)');
  });

  it('the default limiter takes the larger of per-key backoff and the overall bucket', () => {
    const clock = new FakeClock();
    const limiter = new MaxOfLimiter(new ExponentialBackoffLimiter(5, 1000_000), new TokenBucketLimiter(10, 1, clock));
    assert.equal(limiter.when('a'), 5); // bucket had a token; backoff says 5 ms
    assert.equal(limiter.when('b'), 100); // bucket empty: 100 ms beats b's 5 ms
    assert.equal(defaultRateLimiter(clock).when('x'), 5);
  });

  it('shutDown wakes blocked workers, drops waiting and delayed keys, and refuses new ones', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ rateLimiter: noLimit, clock });
    const blocked = q.get();
    q.shutDown();
    assert.equal(await blocked, undefined);
    q.add('a');
    q.addAfter('b', 10);
    assert.equal(q.length, 0);
    assert.equal(clock.pending, 0);
    assert.equal(await q.get(), undefined);
  });

  it('lets in-flight work finish after shutDown and tells when it drained', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    q.add('a');
    const k = await q.get();
    q.shutDown();
    let drained = false;
    const d = q.drained().then(() => (drained = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(drained, false);
    q.done(k!);
    await d;
    assert.equal(drained, true);
  });

  it('reports its depth', async () => {
    const depths: number[] = [];
    const q = new WorkQueue({ rateLimiter: noLimit, onDepth: (d) => depths.push(d) });
    q.add('a');
    q.add('b');
    await q.get();
    assert.deepEqual(depths, [1, 2, 1]);
  });
});

describe('runWorkers', () => {
  it('processes keys with N workers, never one key twice at once, and ends on shutDown', async () => {
    const q = new WorkQueue({ rateLimiter: noLimit });
    const running = new Set<string>();
    let maxParallel = 0;
    let overlap = false;
    const seen: string[] = [];
    const done = runWorkers(q, 3, async (key) => {
      if (running.has(key)) overlap = true;
      running.add(key);
      maxParallel = Math.max(maxParallel, running.size);
      seen.push(key);
      await new Promise((r) => setTimeout(r, 5));
      running.delete(key);
    });
    for (let round = 0; round < 5; round++) {
      for (const k of ['a', 'b', 'c', 'd']) q.add(k);
      await new Promise((r) => setTimeout(r, 2));
    }
    while (q.length > 0 || q.processing > 0) await new Promise((r) => setTimeout(r, 5));
    q.shutDown();
    await done;
    assert.equal(overlap, false);
    assert.equal(maxParallel, 3);
    for (const k of ['a', 'b', 'c', 'd']) assert.ok(seen.includes(k));
    assert.ok(seen.length < 20, `re-adds were collapsed (${seen.length} runs for 20 adds)`);
  });
});
