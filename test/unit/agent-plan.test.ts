import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BACKOFF_MAX_MS,
  deviceDiff,
  exitedCleanly,
  nextBackoff,
  pendingRestart,
  plan,
  shouldRestart,
  type Action,
  type DesiredMachine,
  type Plan,
  type PlanInput,
} from '../../src/agent/plan.ts';
import type { DesiredState, RestartPolicy } from '../../src/api/types.ts';
import type { ExitInfo, MachineConfig, MachineState, MachineSnapshot } from '../../src/runtime/types.ts';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const ID = 'abc123defg';
const MiB = 2 ** 20;

function config(over: Partial<MachineConfig> = {}): MachineConfig {
  return {
    id: ID,
    name: 'default/web',
    kernel: '/usr/bin/linux.uml',
    memoryBytes: 64 * MiB,
    cmdline: [],
    defaultArgs: ['lpj=auto'],
    disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }],
    interfaces: [],
    ...over,
  };
}

function desired(over: {
  state?: DesiredState;
  restartPolicy?: RestartPolicy;
  config?: MachineConfig;
  deleting?: boolean;
  hasFinalizer?: boolean;
  invalid?: boolean;
} = {}): DesiredMachine {
  return {
    id: ID,
    deleting: over.deleting ?? false,
    hasFinalizer: over.hasFinalizer ?? true,
    spec: over.invalid
      ? { valid: false, errors: [{ field: 'spec.memory', message: 'too small' }] }
      : { valid: true, config: over.config ?? config(), state: over.state ?? 'Running', restartPolicy: over.restartPolicy ?? 'Always', gracePeriodMs: 30_000 },
  };
}

function actual(state: MachineState, over: Partial<MachineSnapshot> = {}): MachineSnapshot {
  const cfg = over.config ?? config();
  return {
    id: ID,
    name: 'default/web',
    state,
    pid: 4242,
    startTime: new Date(NOW - 60_000),
    bootTime: state === 'starting' ? undefined : new Date(NOW - 59_000),
    config: cfg,
    disks: cfg.disks.map((d) => ({ ...d })),
    interfaces: cfg.interfaces.map((i) => ({ name: i.name, transport: i.transport, mac: i.mac ?? 'fe:fd:00:00:00:01' })),
    consoles: [],
    ...over,
  };
}

function exited(exit: Partial<ExitInfo>, over: Partial<MachineSnapshot> = {}): MachineSnapshot {
  return actual('exited', { exit: { code: 0, signal: null, at: new Date(NOW - 1_000), ...exit }, ...over });
}

function input(over: Partial<PlanInput>): PlanInput {
  return {
    now: NOW,
    sourceSynced: true,
    draining: false,
    desired: desired(),
    actual: undefined,
    strays: [],
    backoff: undefined,
    exitAcknowledged: false,
    backupDue: false,
    orphanGracePeriodMs: 30_000,
    ...over,
  };
}

const types = (p: Plan): string[] => p.actions.map((a) => a.type);

describe('plan: desired state', () => {
  const cases: { name: string; in: Partial<PlanInput>; actions: string[]; requeue?: number; waiting?: string }[] = [
    { name: 'Running, nothing runs → start', in: {}, actions: ['start'] },
    { name: 'Running, no finalizer yet → finalizer first, then start', in: { desired: desired({ hasFinalizer: false }) }, actions: ['addFinalizer', 'start'] },
    { name: 'Running, running and booted → nothing', in: { actual: actual('running') }, actions: [] },
    { name: 'Running, running without our finalizer → add it', in: { desired: desired({ hasFinalizer: false }), actual: actual('running') }, actions: ['addFinalizer'] },
    { name: 'Running, paused → resume', in: { actual: actual('paused') }, actions: ['resume'] },
    { name: 'Running, starting → wait', in: { actual: actual('starting') }, actions: [], requeue: 2000 },
    { name: 'Running, stopping → wait', in: { actual: actual('stopping') }, actions: [], requeue: 2000 },
    { name: 'Running, unknown → never touched, watched', in: { actual: actual('unknown') }, actions: [], requeue: 10_000 },
    { name: 'Paused, running → pause', in: { desired: desired({ state: 'Paused' }), actual: actual('running') }, actions: ['pause'] },
    { name: 'Paused, paused → nothing', in: { desired: desired({ state: 'Paused' }), actual: actual('paused') }, actions: [] },
    { name: 'Paused, nothing runs → start (paused once it runs)', in: { desired: desired({ state: 'Paused' }) }, actions: ['start'] },
    { name: 'Paused, unknown → untouched', in: { desired: desired({ state: 'Paused' }), actual: actual('unknown') }, actions: [], requeue: 10_000 },
    { name: 'Stopped, running → graceful stop', in: { desired: desired({ state: 'Stopped' }), actual: actual('running') }, actions: ['stop'] },
    { name: 'Stopped, paused → resume so init sees cad, then stop', in: { desired: desired({ state: 'Stopped' }), actual: actual('paused') }, actions: ['resume', 'stop'] },
    { name: 'Stopped, unknown → the user asked: stop (cad, then halt/kill)', in: { desired: desired({ state: 'Stopped' }), actual: actual('unknown') }, actions: ['stop'] },
    { name: 'Stopped, stopping → wait', in: { desired: desired({ state: 'Stopped' }), actual: actual('stopping') }, actions: [], requeue: 2000 },
    { name: 'Stopped, exited → nothing (disks kept)', in: { desired: desired({ state: 'Stopped' }), actual: exited({}) }, actions: [] },
    { name: 'Stopped, nothing → nothing, no finalizer needed', in: { desired: desired({ state: 'Stopped', hasFinalizer: false }) }, actions: [] },
    { name: 'draining: nothing is started', in: { draining: true }, actions: [], waiting: 'Draining' },
    { name: 'draining: no restart either', in: { draining: true, actual: exited({ code: 1 }) }, actions: [], waiting: 'Draining' },
    { name: 'draining: a running guest → graceful stop, whatever its spec', in: { draining: true, actual: actual('running') }, actions: ['stop'], waiting: 'Draining' },
    { name: 'draining: a paused one → resume, then stop', in: { draining: true, desired: desired({ state: 'Paused' }), actual: actual('paused') }, actions: ['resume', 'stop'], waiting: 'Draining' },
    { name: 'draining: a starting one → stop (cad, or halt before the boot)', in: { draining: true, actual: actual('starting') }, actions: ['stop'], waiting: 'Draining' },
    { name: 'draining: stopping → wait', in: { draining: true, actual: actual('stopping') }, actions: [], requeue: 2000, waiting: 'Draining' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = plan(input(c.in));
      assert.deepEqual(types(p), c.actions);
      assert.equal(p.requeueAfterMs, c.requeue);
      assert.equal(p.waiting?.reason, c.waiting);
    });
  }

  it('a drain stops with the guest\'s own grace period, cut to what is left of the drain', () => {
    const running = actual('running');
    assert.deepEqual(plan(input({ draining: true, drainDeadline: NOW + 60_000, actual: running })).actions, [{ type: 'stop', id: ID, gracePeriodMs: 30_000, reason: 'drain' }]);
    assert.deepEqual(plan(input({ draining: true, drainDeadline: NOW + 5_000, actual: running })).actions, [{ type: 'stop', id: ID, gracePeriodMs: 5_000, reason: 'drain' }]);
    assert.deepEqual(plan(input({ draining: true, drainDeadline: NOW - 1, actual: running })).actions, [{ type: 'stop', id: ID, gracePeriodMs: 0, reason: 'drain' }]);
    assert.deepEqual(plan(input({ draining: true, desired: desired({ invalid: true }), actual: running, orphanGracePeriodMs: 7_000 })).actions, [{ type: 'stop', id: ID, gracePeriodMs: 7_000, reason: 'drain' }], 'an invalid spec does not keep a guest up through a drain');
    assert.equal(plan(input({ draining: true, actual: running, backupDue: true })).backupSkipped, 'the node is being drained');
  });

  it('stops with the spec grace period and the reason', () => {
    const p = plan(input({ desired: desired({ state: 'Stopped' }), actual: actual('running') }));
    assert.deepEqual(p.actions, [{ type: 'stop', id: ID, gracePeriodMs: 30_000, reason: 'desired' }]);
    assert.equal(p.clearBackoff, true);
  });

  it('starts with the desired config', () => {
    const cfg = config({ memoryBytes: 96 * MiB });
    const p = plan(input({ desired: desired({ config: cfg }) }));
    assert.deepEqual(p.actions, [{ type: 'start', config: cfg, restart: false }]);
  });
});

describe('plan: invalid spec', () => {
  for (const state of ['running', 'paused', 'starting', 'exited'] as const) {
    it(`touches nothing on a ${state} guest`, () => {
      const p = plan(input({ desired: desired({ invalid: true }), actual: actual(state) }));
      assert.deepEqual(p.actions, []);
    });
  }
  it('starts nothing when nothing runs', () => {
    assert.deepEqual(plan(input({ desired: desired({ invalid: true }) })).actions, []);
  });
  it('watches an unreachable guest', () => {
    assert.equal(plan(input({ desired: desired({ invalid: true }), actual: actual('unknown') })).requeueAfterMs, 10_000);
  });
  it('is still deleted when the object is deleted', () => {
    const p = plan(input({ desired: desired({ invalid: true, deleting: true }), actual: actual('running') }));
    assert.deepEqual(types(p), ['stop', 'remove', 'removeFinalizer']);
  });
});

describe('plan: deletion', () => {
  const cases: { name: string; in: Partial<PlanInput>; actions: string[]; requeue?: number }[] = [
    { name: 'running → stop, remove jail, remove finalizer', in: { desired: desired({ deleting: true }), actual: actual('running') }, actions: ['stop', 'remove', 'removeFinalizer'] },
    { name: 'paused → resume, stop, remove, finalizer', in: { desired: desired({ deleting: true }), actual: actual('paused') }, actions: ['resume', 'stop', 'remove', 'removeFinalizer'] },
    { name: 'exited → remove, finalizer', in: { desired: desired({ deleting: true }), actual: exited({}) }, actions: ['remove', 'removeFinalizer'] },
    { name: 'nothing → finalizer only', in: { desired: desired({ deleting: true }) }, actions: ['removeFinalizer'] },
    { name: 'nothing, no finalizer → nothing', in: { desired: desired({ deleting: true, hasFinalizer: false }) }, actions: [] },
    { name: 'stopping → wait for it', in: { desired: desired({ deleting: true }), actual: actual('stopping') }, actions: [], requeue: 2000 },
    { name: 'unknown → the user asked: stop (halt/kill after grace)', in: { desired: desired({ deleting: true }), actual: actual('unknown') }, actions: ['stop', 'remove', 'removeFinalizer'] },
    { name: 'while draining → still cleaned up', in: { draining: true, desired: desired({ deleting: true }), actual: actual('running') }, actions: ['stop', 'remove', 'removeFinalizer'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = plan(input(c.in));
      assert.deepEqual(types(p), c.actions);
      assert.equal(p.requeueAfterMs, c.requeue);
    });
  }
  it('never adds a finalizer to an object being deleted', () => {
    const p = plan(input({ desired: desired({ deleting: true, hasFinalizer: false }), actual: actual('running') }));
    assert.ok(!types(p).includes('addFinalizer'));
    assert.equal((p.actions[0] as Extract<Action, { type: 'stop' }>).reason, 'deleting');
  });
});

describe('plan: orphans (object gone)', () => {
  it('an orphan is shut down gracefully and removed once the source is synced', () => {
    const p = plan(input({ desired: undefined, actual: actual('running'), orphanGracePeriodMs: 12_000 }));
    assert.deepEqual(p.actions, [
      { type: 'stop', id: ID, gracePeriodMs: 12_000, reason: 'orphan' },
      { type: 'remove', id: ID },
    ]);
  });
  it('nothing is touched while the source is not synced (kubevirt #18763)', () => {
    for (const state of ['running', 'paused', 'unknown', 'exited'] as const) {
      const p = plan(input({ sourceSynced: false, desired: undefined, actual: actual(state) }));
      assert.deepEqual(p.actions, [], state);
      assert.equal(p.requeueAfterMs, 2000);
    }
  });
  it('an exited orphan is only removed', () => {
    assert.deepEqual(types(plan(input({ desired: undefined, actual: exited({}) }))), ['remove']);
  });
  it('a paused orphan is resumed before its shutdown', () => {
    assert.deepEqual(types(plan(input({ desired: undefined, actual: actual('paused') }))), ['resume', 'stop', 'remove']);
  });
  it('no object and no machine → nothing', () => {
    const p = plan(input({ desired: undefined }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.requeueAfterMs, undefined);
  });
  it('a stray of an older object with the same name goes, the new one starts', () => {
    const stray = actual('running', { id: 'oldoldold1' });
    const p = plan(input({ strays: [stray] }));
    assert.deepEqual(types(p), ['stop', 'remove', 'start']);
    assert.equal((p.actions[0] as Extract<Action, { type: 'stop' }>).id, 'oldoldold1');
  });
});

describe('plan: restart policy and crash-loop backoff', () => {
  const panic = { code: null, signal: 'SIGABRT', panic: 'sysrq triggered crash' };
  const cases: { policy: RestartPolicy; exit: Partial<ExitInfo>; restart: boolean; waiting?: string }[] = [
    { policy: 'Always', exit: { code: 0 }, restart: true },
    { policy: 'Always', exit: { code: 1 }, restart: true },
    { policy: 'Always', exit: panic, restart: true },
    { policy: 'OnFailure', exit: { code: 0 }, restart: false, waiting: 'Completed' },
    { policy: 'OnFailure', exit: { code: 3 }, restart: true },
    { policy: 'OnFailure', exit: panic, restart: true },
    { policy: 'OnFailure', exit: { code: null, signal: 'SIGKILL' }, restart: true },
    { policy: 'Never', exit: { code: 0 }, restart: false, waiting: 'Completed' },
    { policy: 'Never', exit: panic, restart: false, waiting: 'Failed' },
    { policy: 'Never', exit: { code: 1 }, restart: false, waiting: 'Failed' },
  ];
  for (const c of cases) {
    it(`${c.policy}, exit ${JSON.stringify(c.exit)} → ${c.restart ? 'restart' : 'stay down'}`, () => {
      const p = plan(input({ desired: desired({ restartPolicy: c.policy }), actual: exited(c.exit) }));
      if (c.restart) assert.deepEqual(p.actions, [{ type: 'start', config: config(), restart: true }]);
      else assert.deepEqual(p.actions, []);
      assert.equal(p.waiting?.reason, c.waiting);
    });
  }

  it('an exit the user asked for (Stopped, then Running) is a start, not a restart, whatever the policy', () => {
    const p = plan(input({ desired: desired({ restartPolicy: 'Never' }), actual: exited({ code: 0 }), exitAcknowledged: true }));
    assert.deepEqual(p.actions, [{ type: 'start', config: config(), restart: false }]);
  });

  it('first crash restarts at once; further crashes wait 10 s, 20 s, 40 s ... capped at 5 min', () => {
    let backoff = undefined;
    const waits: number[] = [];
    let now = NOW;
    for (let crash = 1; crash <= 9; crash++) {
      const exitAt = now;
      const a = exited({ code: 1, at: new Date(exitAt) }, { startTime: new Date(exitAt - 5_000) });
      const p = plan(input({ now, actual: a, backoff }));
      backoff = p.backoff ?? backoff;
      assert.ok(backoff);
      waits.push(backoff.notBefore - exitAt);
      if (backoff.notBefore > now) {
        assert.deepEqual(p.actions, []);
        assert.equal(p.waiting?.reason, 'BackOff');
        assert.equal(p.requeueAfterMs, backoff.notBefore - now);
        // Later, once the wait is over, the same exit starts it.
        const later = plan(input({ now: backoff.notBefore, actual: a, backoff }));
        assert.deepEqual(types(later), ['start']);
        assert.equal(later.backoff, undefined, 'the same exit does not count twice');
      } else {
        assert.deepEqual(types(p), ['start']);
      }
      now = backoff.notBefore + 5_000;
    }
    assert.deepEqual(waits, [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  });

  it('a run of 10 minutes resets the backoff', () => {
    const b = nextBackoff({ exitAt: NOW - 1_000_000, crashes: 6, notBefore: NOW - 700_000 }, NOW, NOW - 600_000);
    assert.deepEqual(b, { exitAt: NOW, crashes: 1, notBefore: NOW });
    const c = nextBackoff({ exitAt: NOW - 1_000_000, crashes: 6, notBefore: NOW - 700_000 }, NOW, NOW - 599_000);
    assert.equal(c.crashes, 7);
    assert.equal(c.notBefore - NOW, BACKOFF_MAX_MS);
  });

  it('a guest running for 10 minutes clears its backoff entry', () => {
    const a = actual('running', { startTime: new Date(NOW - 600_000) });
    const p = plan(input({ actual: a, backoff: { exitAt: NOW - 700_000, crashes: 4, notBefore: NOW - 650_000 } }));
    assert.equal(p.clearBackoff, true);
    const young = plan(input({ actual: actual('running'), backoff: { exitAt: NOW - 70_000, crashes: 4, notBefore: NOW - 65_000 } }));
    assert.equal(young.clearBackoff, undefined);
  });

  it('classifies exits', () => {
    assert.equal(exitedCleanly({ code: 0, signal: null, at: new Date() }), true);
    assert.equal(exitedCleanly({ code: 0, signal: null, panic: 'x', at: new Date() }), false);
    assert.equal(exitedCleanly(undefined), false);
    assert.equal(shouldRestart('OnFailure', undefined), true);
  });
});

describe('plan: hot-plug', () => {
  const withDisk = config({ disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readWrite' }] });
  const withIface = config({ interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: 'lan0' } }] });

  it('attaches a disk added to the spec once booted', () => {
    const p = plan(input({ desired: desired({ config: withDisk }), actual: actual('running') }));
    assert.deepEqual(p.actions, [{ type: 'attachDisk', id: ID, disk: { name: 'ubd1', image: 'data.img', mode: 'readWrite' } }]);
    assert.deepEqual(p.pendingRestart, []);
  });
  it('waits for the boot before plugging anything (a too-early config panics the kernel later)', () => {
    const p = plan(input({ desired: desired({ config: withDisk }), actual: actual('running', { bootTime: undefined }) }));
    assert.deepEqual(p.actions, []);
    assert.match(p.devicesPending ?? '', /booting/);
    assert.equal(p.requeueAfterMs, 2000);
  });
  it('detaches a disk removed from the spec', () => {
    const p = plan(input({ actual: actual('running', { config: withDisk }) }));
    assert.deepEqual(p.actions, [{ type: 'detachDisk', id: ID, name: 'ubd1' }]);
  });
  it('replaces a disk whose image changed: detach, then attach', () => {
    const changed = config({ disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd1', image: 'other.img', mode: 'readWrite' }] });
    const p = plan(input({ desired: desired({ config: changed }), actual: actual('running', { config: withDisk }) }));
    assert.deepEqual(types(p), ['detachDisk', 'attachDisk']);
  });
  it('never hot-plugs the root disk: a change is a pending restart', () => {
    const changed = config({ disks: [{ name: 'ubd0', image: 'new-root.img', mode: 'cow' }] });
    const p = plan(input({ desired: desired({ config: changed }), actual: actual('running') }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.pendingRestart.length, 1);
    assert.match(p.pendingRestart[0]!, /root disk ubd0/);
  });
  it('attaches and detaches interfaces', () => {
    const add = plan(input({ desired: desired({ config: withIface }), actual: actual('running') }));
    assert.deepEqual(add.actions, [{ type: 'attachInterface', id: ID, iface: withIface.interfaces[0] }]);
    const remove = plan(input({ actual: actual('running', { config: withIface }) }));
    assert.deepEqual(remove.actions, [{ type: 'detachInterface', id: ID, name: 'eth0' }]);
  });
  it('replaces an interface whose transport settings changed', () => {
    const moved = config({ interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: 'lan1' } }] });
    const p = plan(input({ desired: desired({ config: moved }), actual: actual('running', { config: withIface }) }));
    assert.deepEqual(types(p), ['detachInterface', 'attachInterface']);
  });
  it('an allocated MAC is not a change; a different fixed MAC is', () => {
    const running = actual('running', { config: withIface });
    assert.deepEqual(deviceDiff(withIface, running).attachInterfaces, []);
    const fixed = config({ interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: 'lan0' }, mac: 'FE:FD:00:00:00:01' }] });
    assert.deepEqual(deviceDiff(fixed, running).attachInterfaces, [], 'same MAC in other case');
    const other = config({ interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: 'lan0' }, mac: 'fe:fd:00:00:00:09' }] });
    assert.equal(deviceDiff(other, running).attachInterfaces.length, 1);
  });
  it('no hot-plug while paused (reported as pending)', () => {
    const p = plan(input({ desired: desired({ config: withDisk, state: 'Paused' }), actual: actual('paused') }));
    assert.deepEqual(p.actions, []);
    assert.match(p.devicesPending ?? '', /paused/);
  });
  it('detaches before it attaches', () => {
    const swap = config({ disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd2', image: 'b.img', mode: 'readOnly' }] });
    const p = plan(input({ desired: desired({ config: swap }), actual: actual('running', { config: withDisk }) }));
    assert.deepEqual(types(p), ['detachDisk', 'attachDisk']);
  });
});

describe('plan: changes that need a restart', () => {
  it('memory, kernel and cmdline are reported, never applied by killing the guest', () => {
    const changed = config({ memoryBytes: 128 * MiB, kernel: '/opt/uml/linux-6.6', cmdline: ['loglevel=4'] });
    const p = plan(input({ desired: desired({ config: changed }), actual: actual('running') }));
    assert.deepEqual(p.actions, []);
    assert.deepEqual(p.pendingRestart, ['memory 64Mi → 128Mi', 'kernel /usr/bin/linux.uml → /opt/uml/linux-6.6', 'cmdline [] → [loglevel=4]']);
  });
  it('nothing pending when equal', () => {
    assert.deepEqual(pendingRestart(config(), actual('running')), []);
  });
  it('a restart picks up the new config', () => {
    const changed = config({ memoryBytes: 128 * MiB });
    const p = plan(input({ desired: desired({ config: changed }), actual: exited({ code: 1 }) }));
    assert.deepEqual(p.actions, [{ type: 'start', config: changed, restart: true }]);
  });
});

describe('plan: backups', () => {
  it('a due backup runs on a booted, running guest', () => {
    assert.deepEqual(types(plan(input({ backupDue: true, actual: actual('running') }))), ['backup']);
  });
  it('is skipped with a reason otherwise', () => {
    assert.match(plan(input({ backupDue: true, actual: actual('paused', {}), desired: desired({ state: 'Paused' }) })).backupSkipped ?? '', /paused/);
    assert.match(plan(input({ backupDue: true, desired: desired({ state: 'Stopped' }) })).backupSkipped ?? 'none', /none/);
    assert.match(plan(input({ backupDue: true, actual: exited({ code: 0 }), desired: desired({ restartPolicy: 'Never' }) })).backupSkipped ?? '', /not running/);
    assert.match(plan(input({ backupDue: true, actual: actual('running', { bootTime: undefined }) })).backupSkipped ?? '', /booting/);
  });
});

describe('plan: a kernel that cannot run userspace on this host', () => {
  const incompatible = { code: null, signal: 'SIGABRT', panic: 'Attempted to kill init! exitcode=0x0000000b', kernelIncompatible: 'kernel /usr/bin/linux.uml cannot run userspace on this node' };

  for (const policy of ['Always', 'OnFailure', 'Never'] as RestartPolicy[]) {
    it(`${policy}: waits with reason KernelIncompatible, no restart, no crash-loop entry`, () => {
      const p = plan(input({ desired: desired({ restartPolicy: policy }), actual: exited(incompatible), kernelUnchanged: true }));
      assert.deepEqual(p.actions, []);
      assert.deepEqual(p.waiting, { reason: 'KernelIncompatible', message: incompatible.kernelIncompatible });
      assert.equal(p.backoff, undefined);
      assert.equal(p.requeueAfterMs, undefined, 'nothing to look at until the spec or the kernel changes');
    });
  }

  it('the kernel file replaced since that run: starts again', () => {
    const p = plan(input({ actual: exited(incompatible), kernelUnchanged: false }));
    assert.deepEqual(types(p), ['start']);
  });

  it('the spec changed (another kernel, or anything else): starts with the new spec', () => {
    const other = config({ kernel: '/usr/local/lib/umlmon/linux' });
    const p = plan(input({ desired: desired({ config: other }), actual: exited(incompatible), kernelUnchanged: true }));
    assert.deepEqual(p.actions, [{ type: 'start', config: other, restart: true }]);
  });
});

describe('plan: a readWrite image is one machine\'s at a time', () => {
  const rw = config({ disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readWrite' }] });
  const holder = (mode: 'cow' | 'readWrite' | 'readOnly') => [{ machine: 'default/db', id: 'other', disk: 'ubd3', image: 'data.img', mode }];

  it('a start that needs an image another machine has readWrite waits: DiskInUse, no action, not a crash', () => {
    const p = plan(input({ desired: desired({ config: rw }), imageHolders: holder('readWrite') }));
    assert.deepEqual(p.actions, []);
    assert.equal(p.waiting?.reason, 'DiskInUse');
    assert.match(p.waiting?.message ?? '', /disk ubd1: image data\.img is in use: .*machine default\/db has it \(readWrite, as ubd3\)/);
    assert.equal(p.devicesPendingReason, 'DiskInUse');
    assert.equal(p.backoff, undefined);
  });

  it('readWrite wanted while another machine reads it (cow or readOnly): waits too', () => {
    for (const mode of ['cow', 'readOnly'] as const) {
      const p = plan(input({ desired: desired({ config: rw }), imageHolders: holder(mode) }));
      assert.equal(p.waiting?.reason, 'DiskInUse', mode);
      assert.match(p.waiting?.message ?? '', /a readWrite image belongs to one machine at a time/);
    }
  });

  it('readOnly and cow uses of one image share it', () => {
    const ro = config({ disks: [{ name: 'ubd0', image: 'data.img', mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readOnly' }] });
    for (const mode of ['cow', 'readOnly'] as const) {
      assert.deepEqual(types(plan(input({ desired: desired({ config: ro }), imageHolders: holder(mode) }))), ['start']);
    }
  });

  it('free again: starts', () => {
    assert.deepEqual(types(plan(input({ desired: desired({ config: rw }), imageHolders: [] }))), ['start']);
  });

  it('a hot-plug of an image in use is held back with the reason; the other devices go ahead', () => {
    const running = actual('running');
    const want = config({ disks: [...config().disks, { name: 'ubd1', image: 'data.img', mode: 'readWrite' }, { name: 'ubd2', image: 'free.img', mode: 'cow' }] });
    const p = plan(input({ desired: desired({ config: want }), actual: running, imageHolders: holder('readWrite') }));
    assert.deepEqual(p.actions, [{ type: 'attachDisk', id: ID, disk: { name: 'ubd2', image: 'free.img', mode: 'cow' } }]);
    assert.equal(p.devicesPendingReason, 'DiskInUse');
    assert.match(p.devicesPending ?? '', /disk ubd1: image data\.img is in use/);
  });
});

describe('plan: a restart asked for (umlmon.io/restart-requested-at)', () => {
  it('a guest started before the request is shut down gracefully, also when paused', () => {
    const running = plan(input({ actual: actual('running'), restartRequestedAt: NOW - 1_000 }));
    assert.deepEqual(running.actions, [{ type: 'stop', id: ID, gracePeriodMs: 30_000, reason: 'restart' }]);
    assert.deepEqual(types(plan(input({ actual: actual('paused'), desired: desired({ state: 'Paused' }), restartRequestedAt: NOW - 1_000 }))), ['resume', 'stop']);
  });
  it('after the stop, the acknowledged exit starts again whatever the restart policy', () => {
    const p = plan(input({ actual: exited({ code: 0 }), desired: desired({ restartPolicy: 'Never' }), exitAcknowledged: true, restartRequestedAt: NOW - 1_000 }));
    assert.deepEqual(types(p), ['start']);
  });
  it('a guest started after the request is left alone: a request is taken once', () => {
    assert.deepEqual(types(plan(input({ actual: actual('running', { startTime: new Date(NOW - 500) }), restartRequestedAt: NOW - 1_000 }))), []);
  });
  it('a request ahead of this node\'s clock waits for its time', () => {
    const p = plan(input({ actual: actual('running'), restartRequestedAt: NOW + 5_000 }));
    assert.deepEqual(types(p), []);
    assert.equal(p.requeueAfterMs, 5_000);
  });
  it('a Stopped machine stays stopped', () => {
    assert.deepEqual(types(plan(input({ actual: exited({ code: 0 }), desired: desired({ state: 'Stopped' }), exitAcknowledged: true, restartRequestedAt: NOW - 1_000 }))), []);
  });
});
