import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createEventRecorder, microTime, type EventSink } from '../../src/agent/events.ts';
import type { UmlMachine } from '../../src/api/types.ts';

const machine: UmlMachine = {
  apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine',
  metadata: { name: 'web', namespace: 'lab', uid: 'u-1', resourceVersion: '7' },
  spec: { nodeName: 'n1' },
};

function fakeSink(opts: { noEventsV1?: boolean } = {}) {
  const calls: { op: string; namespace: string; name?: string; body: Record<string, unknown> }[] = [];
  const sink: EventSink = {
    async createV1(namespace, body) {
      if (opts.noEventsV1) throw Object.assign(new Error('not found'), { code: 404 });
      calls.push({ op: 'createV1', namespace, body });
    },
    async patchV1(namespace, name, body) { calls.push({ op: 'patchV1', namespace, name, body }); },
    async createCore(namespace, body) { calls.push({ op: 'createCore', namespace, body }); },
    async patchCore(namespace, name, body) { calls.push({ op: 'patchCore', namespace, name, body }); },
  };
  return { sink, calls };
}

const logger = pino({ level: 'silent' });

test('microTime has six fractional digits', () => {
  assert.equal(microTime(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05.678000Z');
});

test('an Event is created as events.k8s.io/v1 with the reporting fields', async () => {
  const { sink, calls } = fakeSink();
  const r = createEventRecorder({ nodeName: 'n1', logger, sink });
  r.record(machine, 'Normal', 'Booted', 'guest booted in 0.6 s');
  await r.stop();
  assert.equal(calls.length, 1);
  const body = calls[0]!.body;
  assert.equal(calls[0]!.op, 'createV1');
  assert.equal(calls[0]!.namespace, 'lab');
  assert.equal(body.reportingController, 'umlmon.io/agent');
  assert.equal(body.reportingInstance, 'n1');
  assert.equal(body.reason, 'Booted');
  assert.equal(body.action, 'Booted');
  assert.equal(body.type, 'Normal');
  assert.equal(body.note, 'guest booted in 0.6 s');
  assert.deepEqual(body.regarding, { apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', namespace: 'lab', name: 'web', uid: 'u-1', resourceVersion: '7' });
  assert.match(String(body.eventTime), /\.\d{6}Z$/);
  assert.match(String((body.metadata as { name: string }).name), /^web\.[0-9a-f]+$/);
});

test('repeats fold into one Event with a series, patched once per burst', async () => {
  const { sink, calls } = fakeSink();
  const r = createEventRecorder({ nodeName: 'n1', logger, sink, seriesFlushMs: 20 });
  for (let i = 0; i < 5; i++) r.record(machine, 'Warning', 'BackOff', 'restarting in 10s');
  r.record(machine, 'Warning', 'BackOff', 'restarting in 20s'); // a different note: a new Event
  await new Promise((res) => setTimeout(res, 100));
  r.record(machine, 'Warning', 'BackOff', 'restarting in 10s');
  await r.stop();
  const creates = calls.filter((c) => c.op === 'createV1');
  const patches = calls.filter((c) => c.op === 'patchV1');
  assert.equal(creates.length, 2);
  assert.equal(patches.length, 2);
  assert.equal((patches[0]!.body.series as { count: number }).count, 5);
  assert.equal((patches[1]!.body.series as { count: number }).count, 6);
  assert.equal(patches[0]!.name, (creates[0]!.body.metadata as { name: string }).name);
});

test('servers without events.k8s.io get core/v1 Events', async () => {
  const { sink, calls } = fakeSink({ noEventsV1: true });
  const r = createEventRecorder({ nodeName: 'n1', logger, sink, seriesFlushMs: 10 });
  r.record(machine, 'Warning', 'GuestPanic', 'sysrq triggered crash');
  r.record(machine, 'Warning', 'GuestPanic', 'sysrq triggered crash');
  await new Promise((res) => setTimeout(res, 60));
  await r.stop();
  assert.equal(calls[0]?.op, 'createCore');
  const body = calls[0]!.body;
  assert.equal(body.message, 'sysrq triggered crash');
  assert.deepEqual(body.source, { component: 'umlmon.io/agent', host: 'n1' });
  assert.equal(body.count, 1);
  assert.equal(calls[1]?.op, 'patchCore');
  assert.equal(calls[1]!.body.count, 2);
});

test('a token bucket drops Events beyond the burst; a failing sink never throws', async () => {
  const { sink, calls } = fakeSink();
  const r = createEventRecorder({ nodeName: 'n1', logger, sink, burst: 3, perSecond: 0.001 });
  for (let i = 0; i < 10; i++) r.record(machine, 'Normal', 'GuestMessage', `line ${i}`);
  await r.stop();
  assert.equal(calls.length, 3);
  const failing = createEventRecorder({ nodeName: 'n1', logger, sink: { ...sink, createV1: async () => { throw new Error('boom'); } } });
  failing.record(machine, 'Normal', 'Booted', 'x');
  await failing.stop();
});
