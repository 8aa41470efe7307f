// A start's steps and their undo (src/runtime/launch.ts): the sequencing alone, with steps
// that record what they do. The real steps run in test/integration/runtime-bad-input.test.ts
// (a failed start leaves no tap device, cgroup or socket behind).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runSteps, type Step } from '../../src/runtime/launch.ts';

function recorder(names: string[], failAt?: string, undoFailsAt?: string): { log: string[]; steps: Step<string[]>[] } {
  const log: string[] = [];
  const steps = names.map((name): Step<string[]> => ({
    name,
    run: async () => {
      log.push(`run ${name}`);
      if (name === failAt) throw new Error(`${name} failed`);
    },
    undo: () => {
      log.push(`undo ${name}`);
      if (name === undoFailsAt) throw new Error(`undoing ${name} failed`);
    },
  }));
  return { log, steps };
}

describe('runSteps', () => {
  it('runs every step in order and undoes nothing when all succeed', async () => {
    const { log, steps } = recorder(['a', 'b', 'c']);
    await runSteps(steps, [], () => assert.fail('no undo'));
    assert.deepEqual(log, ['run a', 'run b', 'run c']);
  });

  it('on a failure, undoes the failed step and those before it, in reverse, and rethrows its error', async () => {
    const { log, steps } = recorder(['a', 'b', 'c', 'd'], 'c');
    await assert.rejects(runSteps(steps, [], () => assert.fail('no undo fails')), /c failed/);
    assert.deepEqual(log, ['run a', 'run b', 'run c', 'undo c', 'undo b', 'undo a']);
  });

  it('an undo that fails is reported, and the other undos still run', async () => {
    const { log, steps } = recorder(['a', 'b', 'c'], 'c', 'b');
    const undoErrors: string[] = [];
    await assert.rejects(runSteps(steps, [], (step, error) => undoErrors.push(`${step}: ${(error as Error).message}`)), /c failed/);
    assert.deepEqual(log, ['run a', 'run b', 'run c', 'undo c', 'undo b', 'undo a']);
    assert.deepEqual(undoErrors, ['b: undoing b failed']);
  });

  it('steps without an undo are passed over when undoing', async () => {
    const log: string[] = [];
    const steps: Step<null>[] = [
      { name: 'a', run: () => void log.push('run a'), undo: () => void log.push('undo a') },
      { name: 'b', run: () => void log.push('run b') },
      { name: 'c', run: () => { throw new Error('c failed'); } },
    ];
    await assert.rejects(runSteps(steps, null, () => {}), /c failed/);
    assert.deepEqual(log, ['run a', 'run b', 'undo a']);
  });
});
