// The machine state table (src/runtime/transitions.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TRANSITIONS, nextState, type MachineReport } from '../../src/runtime/transitions.ts';
import type { MachineState } from '../../src/runtime/types.ts';

const STATES: MachineState[] = ['starting', 'running', 'paused', 'stopping', 'unknown', 'exited'];
const REPORTS = Object.keys(TRANSITIONS) as MachineReport[];

describe('machine state transitions', () => {
  it('a start goes starting → running when mconsole is up, and → unknown when it never comes', () => {
    assert.equal(nextState('starting', 'mconsole-up'), 'running');
    assert.equal(nextState('starting', 'start-timed-out'), 'unknown');
    assert.equal(nextState('unknown', 'mconsole-up'), 'running', 'a slow start that came up after all');
  });

  it('nothing brings an exited machine back: a new run is a new machine', () => {
    for (const report of REPORTS) assert.equal(nextState('exited', report), 'exited', report);
  });

  it('every live state exits, and every live state can be stopped', () => {
    for (const state of STATES.filter((s) => s !== 'exited')) {
      assert.equal(nextState(state, 'exited'), 'exited', state);
      assert.equal(nextState(state, 'stop-begun'), 'stopping', state);
    }
  });

  it('a stopping machine stays stopping until it exits: no pause, resume, reboot or answer changes it', () => {
    for (const report of REPORTS.filter((r) => r !== 'exited')) assert.equal(nextState('stopping', report), 'stopping', report);
  });

  it('pause and resume move between running and paused, and a reboot (a second mconsole-up) keeps the state', () => {
    assert.equal(nextState('running', 'paused'), 'paused');
    assert.equal(nextState('paused', 'resumed'), 'running');
    assert.equal(nextState('running', 'mconsole-up'), 'running');
    assert.equal(nextState('paused', 'mconsole-up'), 'paused');
  });

  it('adoption: an answer gives the recorded state, silence gives unknown, no socket yet gives starting', () => {
    assert.equal(nextState('unknown', 'answered'), 'running');
    assert.equal(nextState('unknown', 'answered-paused'), 'paused');
    assert.equal(nextState('running', 'silent'), 'unknown');
    assert.equal(nextState('unknown', 'awaiting-mconsole'), 'starting');
  });

  it('every entry of the table names a real state', () => {
    for (const [report, row] of Object.entries(TRANSITIONS)) {
      for (const [from, to] of Object.entries(row)) {
        assert.ok(STATES.includes(from as MachineState) && STATES.includes(to), `${report}: ${from} → ${to}`);
      }
    }
  });
});
