// Kubernetes Events about UmlMachines, written as events.k8s.io/v1 (reportingController
// "umlmon.io/agent", reportingInstance the node). Like client-go's EventRecorder and its
// correlator: the same (object, type, reason, note) seen again within the window becomes one
// Event whose `series {count, lastObservedTime}` is patched, not one object per occurrence; a
// token bucket limits the rate; everything runs in the background, so reconcile never waits
// for (or fails because of) an Event. Servers without events.k8s.io get core/v1 Events (with
// count and lastTimestamp) instead.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeClient, Resource } from './kube-client.ts';
import type { UmlMachine } from '../api/types.ts';
import type { EventType } from './source.ts';
import { namespaceOf } from './object-key.ts';

export const REPORTING_CONTROLLER = 'umlmon.io/agent';

export interface EventRecorder {
  /** Queues an Event; never throws, never waits. */
  record(machine: UmlMachine, type: EventType, reason: string, note: string, action?: string): void;
  /** Waits (briefly) for queued writes, then stops. */
  stop(): Promise<void>;
}

/** What the recorder writes through: the API, or a fake in unit tests. */
export interface EventSink {
  createV1(namespace: string, body: Record<string, unknown>): Promise<void>;
  patchV1(namespace: string, name: string, patch: Record<string, unknown>): Promise<void>;
  createCore(namespace: string, body: Record<string, unknown>): Promise<void>;
  patchCore(namespace: string, name: string, patch: Record<string, unknown>): Promise<void>;
}

export interface EventRecorderOptions {
  nodeName: string;
  logger: Logger;
  client?: KubeClient;
  sink?: EventSink;
  /** Repeats within this window fold into a series (default 10 min). */
  seriesWindowMs?: number;
  /** Series updates are coalesced for this long (default 1 s). */
  seriesFlushMs?: number;
  /** Token bucket: burst and refill per second (default 25 and 1, client-go's spam filter). */
  burst?: number;
  perSecond?: number;
  now?: () => Date;
}

/** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function statusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  return typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
}

/** What the recorder writes (chart-rbac.test.ts checks the ClusterRole grants each call). */
const EVENTS_V1: Resource = { group: 'events.k8s.io', version: 'v1', resource: 'events' };
const CORE_EVENTS: Resource = { group: '', version: 'v1', resource: 'events' };

export function apiEventSink(client: KubeClient): EventSink {
  return {
    // MicroTime strings are sent as they are (six fractional digits).
    async createV1(namespace, body) { await client.call('create', EVENTS_V1, { namespace, body }); },
    async patchV1(namespace, name, patch) { await client.call('patch', EVENTS_V1, { namespace, name, body: patch }); },
    async createCore(namespace, body) { await client.call('create', CORE_EVENTS, { namespace, body }); },
    async patchCore(namespace, name, patch) { await client.call('patch', CORE_EVENTS, { namespace, name, body: patch }); },
  };
}

interface Series {
  name: string;
  namespace: string;
  api: 'v1' | 'core';
  count: number;
  /** Count last written to the server. */
  written: number;
  firstSeen: number;
  lastObserved: Date;
  created: Promise<boolean>;
  flushTimer?: NodeJS.Timeout;
}

export function createEventRecorder(opts: EventRecorderOptions): EventRecorder {
  const log = opts.logger.child({ component: 'events' });
  const sink = opts.sink ?? apiEventSink(opts.client ?? (() => { throw new Error('events: a client or a sink is needed'); })());
  const windowMs = opts.seriesWindowMs ?? 10 * 60_000;
  const flushMs = opts.seriesFlushMs ?? 1000;
  const burst = opts.burst ?? 25;
  const perSecond = opts.perSecond ?? 1;
  const now = opts.now ?? (() => new Date());

  const series = new Map<string, Series>();
  const pending = new Set<Promise<unknown>>();
  let api: 'v1' | 'core' = 'v1';
  let tokens = burst;
  let lastRefill = Date.now();
  let dropped = 0;
  let stopped = false;

  function takeToken(): boolean {
    const t = Date.now();
    tokens = Math.min(burst, tokens + ((t - lastRefill) / 1000) * perSecond);
    lastRefill = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }

  function track<T>(p: Promise<T>): Promise<T> {
    pending.add(p);
    void p.finally(() => pending.delete(p)).catch(() => {});
    return p;
  }

  function eventName(machine: UmlMachine): string {
    // client-go names Events "<object>.<hex nanoseconds>"; random bits avoid collisions
    // between agents restarted within the same nanosecond-resolution clock tick.
    return `${machine.metadata.name}.${(BigInt(Date.now()) * 1_000_000n).toString(16)}${randomBytes(2).toString('hex')}`;
  }

  function regarding(m: UmlMachine): Record<string, unknown> {
    const ref: Record<string, unknown> = { apiVersion: m.apiVersion, kind: m.kind, namespace: namespaceOf(m), name: m.metadata.name };
    if (m.metadata.uid) ref.uid = m.metadata.uid;
    if (m.metadata.resourceVersion) ref.resourceVersion = m.metadata.resourceVersion;
    return ref;
  }

  async function create(machine: UmlMachine, type: EventType, reason: string, note: string, action: string, name: string, at: Date): Promise<'v1' | 'core' | undefined> {
    const namespace = namespaceOf(machine);
    const ref = regarding(machine);
    if (api === 'v1') {
      try {
        await sink.createV1(namespace, {
          apiVersion: 'events.k8s.io/v1', kind: 'Event',
          metadata: { name, namespace },
          eventTime: microTime(at),
          reportingController: REPORTING_CONTROLLER,
          reportingInstance: opts.nodeName.slice(0, 128),
          action, reason, type, note: note.slice(0, 1024), regarding: ref,
        });
        return 'v1';
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
        // 404 on create: no events.k8s.io on this server (or the namespace is gone; core/v1 then
        // fails the same way and the mode does not matter).
        api = 'core';
        log.info('the API server has no events.k8s.io/v1; writing core/v1 Events');
      }
    }
    const time = at.toISOString().replace(/\.\d{3}Z$/, 'Z');
    await sink.createCore(namespace, {
      apiVersion: 'v1', kind: 'Event',
      metadata: { name, namespace },
      involvedObject: ref,
      reason, message: note.slice(0, 1024), type, action,
      source: { component: REPORTING_CONTROLLER, host: opts.nodeName },
      reportingComponent: REPORTING_CONTROLLER,
      reportingInstance: opts.nodeName.slice(0, 128),
      firstTimestamp: time, lastTimestamp: time, count: 1,
    });
    return 'core';
  }

  async function flushSeries(key: string): Promise<void> {
    const s = series.get(key);
    if (!s) return;
    s.flushTimer = undefined;
    if (!(await s.created) || s.count === s.written) return;
    const count = s.count;
    const patch = s.api === 'v1'
      ? { series: { count, lastObservedTime: microTime(s.lastObserved) } }
      : { count, lastTimestamp: s.lastObserved.toISOString().replace(/\.\d{3}Z$/, 'Z') };
    try {
      if (s.api === 'v1') await sink.patchV1(s.namespace, s.name, patch);
      else await sink.patchCore(s.namespace, s.name, patch);
      s.written = count;
    } catch (err) {
      log.debug({ event: s.name, err: String(err) }, 'updating an Event series failed');
      if (statusCode(err) === 404) series.delete(key); // deleted (TTL): the next one starts anew
    }
  }

  return {
    record(machine, type, reason, note, action = reason) {
      if (stopped) return;
      const at = now();
      const ns = namespaceOf(machine);
      const key = JSON.stringify([ns, machine.metadata.name, machine.metadata.uid ?? '', type, reason, note]);
      const existing = series.get(key);
      if (existing && at.getTime() - existing.lastObserved.getTime() < windowMs) {
        existing.count += 1;
        existing.lastObserved = at;
        existing.flushTimer ??= setTimeout(() => { void track(flushSeries(key)); }, flushMs);
        return;
      }
      if (!takeToken()) {
        dropped++;
        if (dropped === 1 || dropped % 100 === 0) log.warn({ dropped, machine: `${ns}/${machine.metadata.name}`, reason }, 'too many Events; dropping some');
        return;
      }
      // Old series for the same tuple that fell out of the window are forgotten.
      for (const [k, s] of series) {
        if (at.getTime() - s.lastObserved.getTime() >= windowMs && s.flushTimer === undefined) series.delete(k);
      }
      const name = eventName(machine);
      const entry: Series = {
        name, namespace: ns, api, count: 1, written: 1, firstSeen: at.getTime(), lastObserved: at,
        created: Promise.resolve(false),
      };
      entry.created = track(create(machine, type, reason, note, action, name, at).then((used) => {
        entry.api = used ?? api;
        return true;
      }, (err: unknown) => {
        log.warn({ machine: `${ns}/${machine.metadata.name}`, reason, err: String((err as Error)?.message ?? err) }, 'writing an Event failed');
        series.delete(key);
        return false;
      }));
      series.set(key, entry);
    },

    async stop() {
      stopped = true;
      const flushes: Promise<void>[] = [];
      for (const [key, s] of series) {
        if (s.flushTimer) {
          clearTimeout(s.flushTimer);
          flushes.push(track(flushSeries(key)));
        }
      }
      const all = Promise.allSettled([...pending, ...flushes]);
      await Promise.race([all, new Promise((r) => setTimeout(r, 2000).unref())]);
    },
  };
}
