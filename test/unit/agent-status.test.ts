import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildStatus, conditionOf, mergeConditions, phaseOf, statusEqual, type StatusInput } from '../../src/agent/status.ts';
import type { DesiredMachine, Plan } from '../../src/agent/plan.ts';
import type { UmlMachine } from '../../src/api/types.ts';
import type { MachineConfig, MachineState, MachineSnapshot } from '../../src/runtime/types.ts';
import { umlMachine } from '../support/fixtures.ts';

const NOW = new Date('2026-01-01T12:00:00Z');
const EARLIER = '2026-01-01T11:00:00.000Z';
const MiB = 2 ** 20;

const cfg: MachineConfig = {
  id: 'abc123defg',
  name: 'default/web',
  kernel: '/usr/bin/linux.uml',
  memoryBytes: 64 * MiB,
  cmdline: [],
  defaultArgs: [],
  disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readWrite' }],
  interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: 'lan0' } }],
};

function machine(status?: UmlMachine['status']): UmlMachine {
  return umlMachine({ name: 'web', namespace: 'default', metadata: { uid: 'u-1', generation: 3 }, spec: { nodeName: 'node-1' }, ...(status ? { status } : {}) });
}

const valid: DesiredMachine = { id: 'abc123defg', deleting: false, hasFinalizer: true, spec: { valid: true, config: cfg, state: 'Running', restartPolicy: 'Always', gracePeriodMs: 30_000 } };

function actual(state: MachineState, over: Partial<MachineSnapshot> = {}): MachineSnapshot {
  return {
    id: 'abc123defg',
    name: 'default/web',
    state,
    pid: 777,
    startTime: new Date('2026-01-01T11:59:00Z'),
    bootTime: new Date('2026-01-01T11:59:01Z'),
    kernelVersion: 'Linux 0.0.0-test #1',
    config: cfg,
    disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }],
    interfaces: [],
    consoles: [{ name: 'con0', hostDevice: 'null' }],
    ...over,
  };
}

const noPlan: Plan = { actions: [], pendingRestart: [] };

function input(over: Partial<StatusInput>): StatusInput {
  return { now: NOW, nodeName: 'node-1', machine: machine(), desired: valid, actual: actual('running'), plan: noPlan, exitAcknowledged: false, restartCount: 0, ...over };
}

describe('phaseOf', () => {
  const cases: [string, Partial<StatusInput>, string][] = [
    ['nothing runs yet', { actual: undefined }, 'Pending'],
    ['starting', { actual: actual('starting') }, 'Starting'],
    ['running, not booted', { actual: actual('running', { bootTime: undefined }) }, 'Starting'],
    ['running and booted', {}, 'Running'],
    ['paused', { actual: actual('paused') }, 'Paused'],
    ['stopping', { actual: actual('stopping') }, 'Stopping'],
    ['unreachable', { actual: actual('unknown') }, 'Unknown'],
    ['exited in backoff', { actual: actual('exited'), plan: { ...noPlan, waiting: { reason: 'BackOff', message: '' } } }, 'Failed'],
    ['exited, restartPolicy says no after a failure', { actual: actual('exited'), plan: { ...noPlan, waiting: { reason: 'Failed', message: '' } } }, 'Failed'],
    ['exited cleanly, not restarted', { actual: actual('exited'), plan: { ...noPlan, waiting: { reason: 'Completed', message: '' } } }, 'Stopped'],
    ['exited, user wanted it stopped', { actual: actual('exited'), exitAcknowledged: true }, 'Stopped'],
    ['Stopped and nothing runs', { actual: undefined, desired: { ...valid, spec: { ...valid.spec, state: 'Stopped' } as DesiredMachine['spec'] } }, 'Stopped'],
    ['invalid spec, nothing runs', { actual: undefined, desired: { ...valid, spec: { valid: false, errors: [] } } }, 'Failed'],
    ['invalid spec, guest keeps running', { desired: { ...valid, spec: { valid: false, errors: [] } } }, 'Running'],
    ['deleting, still running', { desired: { ...valid, deleting: true } }, 'Stopping'],
    ['deleting, gone', { desired: { ...valid, deleting: true }, actual: undefined }, 'Stopped'],
  ];
  for (const [name, over, phase] of cases) it(name, () => assert.equal(phaseOf(input(over)), phase));
});

describe('buildStatus', () => {
  it('reports a running machine with the printer-column fields and conditions', () => {
    const s = buildStatus(input({ restartCount: 2 }));
    assert.equal(s.phase, 'Running');
    assert.equal(s.observedGeneration, 3);
    assert.equal(s.nodeName, 'node-1');
    assert.equal(s.umid, 'abc123defg');
    assert.equal(s.pid, 777);
    assert.equal(s.startTime, '2026-01-01T11:59:00.000Z');
    assert.equal(s.bootTime, '2026-01-01T11:59:01.000Z');
    assert.equal(s.kernelVersion, 'Linux 0.0.0-test #1');
    assert.equal(s.restartCount, 2);
    assert.equal(s.memory, '64Mi');
    assert.deepEqual(s.consoles, [{ name: 'con0', hostDevice: 'null' }]);
    assert.deepEqual(s.disks, [
      { name: 'ubd0', image: 'root.img', mode: 'cow', attached: true },
      { name: 'ubd1', image: 'data.img', mode: 'readWrite', attached: false },
    ]);
    assert.deepEqual(s.interfaces, [{ name: 'eth0', transport: 'daemon', mac: '', attached: false }]);
    const ready = conditionOf(s, 'Ready');
    assert.equal(ready?.status, 'True');
    assert.equal(ready?.lastTransitionTime, NOW.toISOString());
    assert.equal(ready?.observedGeneration, 3);
    assert.deepEqual(s.conditions?.map((c) => c.type), ['Ready', 'Paused', 'DevicesSynced', 'SpecValid', 'RestartRequired']);
  });

  it('shows a disk still attached but gone from the spec until it is detached', () => {
    const s = buildStatus(input({ desired: { ...valid, spec: { ...valid.spec, config: { ...cfg, disks: [cfg.disks[0]!], interfaces: [] } } as DesiredMachine['spec'] }, actual: actual('running', { disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd2', image: 'x.img', mode: 'readOnly' }] }) }));
    assert.deepEqual(s.disks?.map((d) => `${d.name}:${d.attached}`), ['ubd0:true', 'ubd2:true']);
  });

  it('an invalid spec: SpecValid=False with the errors, the running guest still reported', () => {
    const s = buildStatus(input({ desired: { ...valid, spec: { valid: false, errors: [{ field: 'spec.memory', message: 'must be at least 40Mi' }] } } }));
    const c = conditionOf(s, 'SpecValid');
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'InvalidSpec');
    assert.equal(c?.message, 'spec.memory: must be at least 40Mi');
    assert.equal(s.pid, 777);
    assert.equal(s.phase, 'Running');
  });

  it('RestartRequired names the changes a restart will apply', () => {
    const s = buildStatus(input({ plan: { ...noPlan, pendingRestart: ['memory 64Mi → 128Mi'] } }));
    const c = conditionOf(s, 'RestartRequired');
    assert.equal(c?.status, 'True');
    assert.match(c?.message ?? '', /memory 64Mi → 128Mi/);
  });

  it('DevicesSynced: pending, failed, synced, not running', () => {
    assert.equal(conditionOf(buildStatus(input({ plan: { ...noPlan, devicesPending: 'waiting for boot' } })), 'DevicesSynced')?.reason, 'Pending');
    const failed = conditionOf(buildStatus(input({ error: { message: 'machine default/web: attach ubd1 failed: Device is already configured', devices: true } })), 'DevicesSynced');
    assert.equal(failed?.status, 'False');
    assert.match(failed?.message ?? '', /already configured/);
    assert.equal(conditionOf(buildStatus(input({})), 'DevicesSynced')?.status, 'True');
    assert.equal(conditionOf(buildStatus(input({ actual: undefined })), 'DevicesSynced')?.status, 'Unknown');
  });

  it('Ready=False carries the backoff reason; Ready=Unknown for an unreachable guest', () => {
    const s = buildStatus(input({ actual: actual('exited'), plan: { ...noPlan, waiting: { reason: 'BackOff', message: 'restarting in 10 s' } } }));
    assert.equal(conditionOf(s, 'Ready')?.reason, 'BackOff');
    assert.equal(s.pid, undefined, 'no pid for a kernel that is gone');
    assert.equal(s.kernelVersion, 'Linux 0.0.0-test #1', 'the last kernel version is kept');
    assert.equal(conditionOf(buildStatus(input({ actual: actual('unknown') })), 'Ready')?.status, 'Unknown');
  });

  it('Paused=True while paused', () => {
    const s = buildStatus(input({ actual: actual('paused') }));
    assert.equal(conditionOf(s, 'Paused')?.status, 'True');
  });

  it('a guest that just runs has the same status an hour later: nothing to write', () => {
    const first = buildStatus(input({ now: new Date(EARLIER) }));
    const later = buildStatus(input({ machine: machine(first), now: new Date(Date.parse(EARLIER) + 3600_000) }));
    assert.ok(statusEqual(first, later), 'no figure in status moves by itself');
    assert.ok(!('guest' in later), 'no guest uptime or load in status: uptime follows from bootTime');
    assert.equal(later.bootTime, '2026-01-01T11:59:01.000Z');
  });

  it('keeps lastTransitionTime while a condition status stays the same', () => {
    const first = buildStatus(input({ now: new Date(EARLIER) }));
    const again = buildStatus(input({ machine: machine(first), now: NOW }));
    assert.equal(conditionOf(again, 'Ready')?.lastTransitionTime, EARLIER);
    assert.ok(statusEqual(first, again), 'nothing changed: no write');
    const paused = buildStatus(input({ machine: machine(first), now: NOW, actual: actual('paused') }));
    assert.equal(conditionOf(paused, 'Ready')?.lastTransitionTime, NOW.toISOString());
    assert.equal(conditionOf(paused, 'SpecValid')?.lastTransitionTime, EARLIER);
    assert.ok(!statusEqual(first, paused));
  });

  it('keeps lastBackup from the previous status', () => {
    const lastBackup = { time: EARLIER, result: 'Succeeded' as const, location: '/b' };
    assert.deepEqual(buildStatus(input({ machine: machine({ lastBackup }) })).lastBackup, lastBackup);
  });
});

describe('statusEqual and mergeConditions', () => {
  it('ignores key order and undefined fields', () => {
    assert.ok(statusEqual({ phase: 'Running', pid: 1 }, { pid: 1, phase: 'Running', umid: undefined }));
    assert.ok(!statusEqual({ phase: 'Running' }, { phase: 'Paused' }));
    assert.ok(statusEqual(undefined, {}));
  });
  it('a reason change alone keeps the transition time', () => {
    const prev = [{ type: 'Ready', status: 'False' as const, reason: 'Booting', message: '', lastTransitionTime: EARLIER }];
    const next = mergeConditions(prev, [{ type: 'Ready', status: 'False', reason: 'BackOff', message: 'x' }], NOW, 1);
    assert.equal(next[0]?.lastTransitionTime, EARLIER);
    assert.equal(next[0]?.reason, 'BackOff');
  });
});

describe('statusPatch', () => {
  it('nulls the fields the new status drops, recursively; arrays are replaced', async () => {
    const { statusPatch } = await import('../../src/agent/status.ts');
    // guest: what an older agent wrote (status.guest is gone): the patch removes it.
    const prev = { phase: 'Running' as const, pid: 5, guest: { uptimeSeconds: 3, loadAverage: '0' }, lastBackup: { time: 't', result: 'Failed' as const, message: 'x' }, disks: [{ name: 'ubd0', image: 'a', mode: 'cow' as const, attached: true }] };
    const next = { phase: 'Stopped' as const, lastBackup: { time: 'u', result: 'Succeeded' as const }, disks: [] };
    assert.deepEqual(statusPatch(prev, next), { phase: 'Stopped', pid: null, guest: null, lastBackup: { time: 'u', result: 'Succeeded', message: null }, disks: [] });
    assert.deepEqual(statusPatch(undefined, next), next);
  });
});
