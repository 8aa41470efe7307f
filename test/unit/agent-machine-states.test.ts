// The per-machine state store (src/agent/machine-states.ts) and the echo predicate over it
// (src/agent/predicates.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MachineStates } from '../../src/agent/machine-states.ts';
import { objectFingerprint, unchangedSinceLastPass } from '../../src/agent/predicates.ts';
import type { UmlMachine } from '../../src/api/types.ts';
import { umlMachine } from '../support/fixtures.ts';

const machine = (over: Partial<UmlMachine['spec']> = {}): UmlMachine =>
  umlMachine({ name: 'web', namespace: 'default', metadata: { uid: 'u1', generation: 1 }, spec: { nodeName: 'n', disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }], ...over } });

describe('MachineStates', () => {
  it('keeps one memory per key, made on first use, and forgets it', () => {
    const states = new MachineStates();
    assert.equal(states.peek('default/web'), undefined, 'peek makes nothing');
    states.of('default/web').phase = 'Running';
    states.of('default/db').diskInUseReported = 'disk ubd1: image data.img is in use';
    assert.equal(states.of('default/web').phase, 'Running', 'the same memory again');
    assert.deepEqual(states.phases(), ['Running']);
    assert.deepEqual(states.keysWaitingForDisks(), ['default/db']);
    states.markBackupDue('default/web');
    assert.equal(states.peek('default/web')?.backupDue, true);
    states.forget('default/web');
    assert.equal(states.peek('default/web'), undefined);
  });

  it('tracks a stop per machine id: a second begin of the same stop is refused until it ends', () => {
    const states = new MachineStates();
    assert.equal(states.beginStop('id1', 'default/web'), true);
    assert.equal(states.beginStop('id1', 'default/web'), false);
    assert.equal(states.isStopping('id1'), true);
    assert.equal(states.stopsInFlight(), 1);
    states.endStop('id1');
    assert.equal(states.isStopping('id1'), false);
    assert.equal(states.stopsInFlight(), 0);
  });

  it('hands a start request out once, and holds the drain deadline', () => {
    const states = new MachineStates();
    states.startRequested('id1', 1000);
    assert.equal(states.takeStartRequest('id1'), 1000);
    assert.equal(states.takeStartRequest('id1'), undefined);
    assert.equal(states.isDraining(), false);
    states.beginDrain(5000);
    assert.equal(states.isDraining(), true);
    assert.equal(states.drainDeadline(), 5000);
  });
});

describe('unchangedSinceLastPass', () => {
  it('is true for the echo of a status write and false for a change of spec, labels or deletion', () => {
    const states = new MachineStates();
    const seen = machine();
    assert.equal(unchangedSinceLastPass(states, 'default/web', seen), false, 'no pass has seen it yet');
    states.of('default/web').objectSeen = objectFingerprint(seen);
    assert.equal(unchangedSinceLastPass(states, 'default/web', { ...seen, status: { phase: 'Failed' } }), true);
    assert.equal(unchangedSinceLastPass(states, 'default/web', machine({ state: 'Stopped' })), false);
    assert.equal(unchangedSinceLastPass(states, 'default/web', { ...seen, metadata: { ...seen.metadata, labels: { a: 'b' } } }), false);
    assert.equal(unchangedSinceLastPass(states, 'default/web', { ...seen, metadata: { ...seen.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } }), false);
    assert.equal(unchangedSinceLastPass(states, 'default/web', undefined), false, 'a deletion is a change');
  });
});
