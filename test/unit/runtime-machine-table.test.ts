// The runtime's machines by id and by label (src/runtime/machine-table.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MachineTable } from '../../src/runtime/machine-table.ts';

const machine = (id: string, labels?: Record<string, string>) => ({ record: { id, config: labels ? { labels } : {} } });

describe('MachineTable', () => {
  it('selects by every pair of the selector, and an empty selector selects nothing', () => {
    const t = new MachineTable<ReturnType<typeof machine>>();
    t.set(machine('a', { ns: 'default', name: 'web' }));
    t.set(machine('b', { ns: 'default', name: 'db' }));
    t.set(machine('c', { ns: 'other', name: 'web' }));
    t.set(machine('d'));
    assert.deepEqual(t.select({ ns: 'default', name: 'web' }).map((m) => m.record.id), ['a']);
    assert.deepEqual(t.select({ ns: 'default' }).map((m) => m.record.id), ['a', 'b']);
    assert.deepEqual(t.select({ name: 'web' }).map((m) => m.record.id), ['a', 'c']);
    assert.deepEqual(t.select({ ns: 'nowhere' }), []);
    assert.deepEqual(t.select({}), []);
    assert.equal(t.size, 4);
  });

  it('keeps the index true when a machine is replaced or deleted', () => {
    const t = new MachineTable<ReturnType<typeof machine>>();
    t.set(machine('a', { ns: 'default', name: 'web' }));
    t.set(machine('a', { ns: 'default', name: 'web2' }));
    assert.deepEqual(t.select({ name: 'web' }), []);
    assert.deepEqual(t.select({ name: 'web2' }).map((m) => m.record.id), ['a']);
    t.delete('a');
    assert.deepEqual(t.select({ ns: 'default' }), []);
    assert.equal(t.get('a'), undefined);
    t.delete('a'); // twice is nothing
    assert.equal(t.size, 0);
  });
});
