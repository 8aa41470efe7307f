// The local verbs' pure parts: editing one field of one document, and the ls and status text.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { editMachineDocument, findMachineDocument, setInDocument, splitMachineName } from '../../src/cli/machine-file.ts';
import { formatDuration, formatTable } from '../../src/cli/commands/machines.ts';

const TWO = `# two machines
apiVersion: umlmon.io/v1alpha1
kind: UmlMachine
metadata:
  name: a
spec:
  # keep me
  state: Running
  cmdline: ["loglevel=4"]
---
apiVersion: umlmon.io/v1alpha1
kind: UmlMachine
metadata:
  name: b
  namespace: prod
spec:
  nodeName: n1
`;

describe('machine files', () => {
  test('one field of one document changes; comments, layout and the other document stay', () => {
    const out = setInDocument(TWO, 0, ['spec', 'state'], 'Paused');
    assert.equal(out, TWO.replace('state: Running', 'state: Paused'));
    const annotated = setInDocument(TWO, 1, ['metadata', 'annotations', 'umlmon.io/restart-requested-at'], '2026-01-01T00:00:00.000Z');
    assert.match(annotated, /name: b\n {2}namespace: prod\n {2}annotations:\n {4}umlmon.io\/restart-requested-at: 2026-01-01T00:00:00.000Z\n/);
    assert.ok(annotated.startsWith(TWO.slice(0, TWO.indexOf('---'))));
  });

  test('found by namespace/name in the directory and edited in place', () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlmon-machines-'));
    try {
      writeFileSync(join(dir, 'both.yaml'), TWO);
      writeFileSync(join(dir, 'a.status.yaml'), 'status: {phase: Running}\n');
      assert.throws(() => findMachineDocument(dir, 'nope'), /no UmlMachine default\/nope in/);
      const b = findMachineDocument(dir, 'prod/b');
      assert.equal(b.index, 1);
      editMachineDocument(b, ['spec', 'state'], 'Stopped');
      assert.match(readFileSync(join(dir, 'both.yaml'), 'utf8'), /nodeName: n1\n {2}state: Stopped\n$/);
      assert.deepEqual(splitMachineName('web'), { namespace: 'default', name: 'web' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('umlmon ls', () => {
  test('kubectl-style table and ages', () => {
    assert.equal(formatDuration(12_000), '12s');
    assert.equal(formatDuration(250_000), '4m10s');
    assert.equal(formatDuration(2 * 3600_000 + 5 * 60_000), '2h5m');
    assert.equal(formatDuration(3 * 86400_000 + 4 * 3600_000), '3d4h');
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(formatTable([
      { machine: 'default/web', state: 'Running', phase: 'Running', kernel: 'default', pid: 4242, memory: '64Mi', startTime: '2026-01-01T11:58:00Z', restarts: 0 },
      { machine: 'prod/db-1', state: 'Stopped', phase: 'Stopped', kernel: 'debian', pid: null, memory: '256Mi', startTime: null, restarts: 3 },
    ], now), [
      'NAME          STATE     PHASE     KERNEL    PID      MEMORY   UPTIME   RESTARTS',
      'default/web   Running   Running   default   4242     64Mi     2m       0',
      'prod/db-1     Stopped   Stopped   debian    <none>   256Mi    <none>   3',
    ].join('\n'));
    assert.equal(formatTable([], now), 'No machines found.');
  });
});
