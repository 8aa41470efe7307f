// The guest's console on a real kernel, both ways it is wired (jail.ts): a pty whose size the
// guest sees and follows, and, where the node has no perl, the FIFO and the log alone. Typed
// input goes in through console.in as a session writes it; output is read off console.log.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime, type Runtime } from '../../src/runtime/index.ts';
import { writesAppending } from '../../src/runtime/console-log.ts';
import { findMachine, resizeConsole } from '../../src/runtime/console-session.ts';
import { eventually } from '../support/eventually.ts';
import { disposeRuntime, machineConfig, privateStateDir, uniqueId, waitFor } from '../support/runtime.ts';

/** Types a line into the guest's shell and returns the console log from there on, once `expect` is in it. */
async function typeAndRead(stateDir: string, id: string, line: string, expect: RegExp): Promise<string> {
  const dir = join(stateDir, 'machines', id);
  const from = readFileSync(join(dir, 'console.log'), 'utf8').length;
  writeFileSync(join(dir, 'console.in'), `${line}\n`);
  return eventually(`${expect} on the console`, () => {
    const text = readFileSync(join(dir, 'console.log'), 'utf8').slice(from);
    return expect.test(text) ? text : undefined;
  }, { timeoutMs: 20_000, intervalMs: 50 });
}

for (const pty of [true, false]) {
  describe(pty ? 'a pty console' : 'a console without a pty (a node without perl)', () => {
    let stateDir: string;
    let rt: Runtime;
    const id = uniqueId(pty ? 'cp' : 'cf');

    before(async () => {
      const dirs = privateStateDir();
      stateDir = dirs.stateDir;
      rt = createRuntime({ stateDir, imageRoot: dirs.imageRoot, consolePty: pty });
      const booted = waitFor(rt, (e) => e.type === 'guest-message' && e.id === id && e.message === 'umlmon-guest: booted');
      await rt.start(machineConfig(id));
      await booted;
    });

    after(() => disposeRuntime(rt, stateDir));

    test('what is typed reaches the guest\'s shell, and its answer the log', async () => {
      await typeAndRead(stateDir, id, 'echo typed-$((6*7))', /^typed-42\r?$/m);
    });

    test(pty ? 'the kernel reads and writes a pty; the log is appended to by the copy of its master' : 'the kernel reads the FIFO and appends to the log itself', () => {
      const pid = rt.get(id)!.pid!;
      const dir = join(stateDir, 'machines', id);
      if (pty) {
        assert.match(readlinkSync(`/proc/${pid}/fd/0`), /^\/dev\/pts\/\d+$/);
        assert.equal(readlinkSync(`/proc/${pid}/fd/2`), join(dir, 'console.log'));
        assert.ok(writesAppending(pid, 2), 'rotation can truncate under it');
      } else {
        assert.equal(readlinkSync(`/proc/${pid}/fd/0`), join(dir, 'console.in'));
        assert.equal(readlinkSync(`/proc/${pid}/fd/1`), join(dir, 'console.log'));
        assert.ok(writesAppending(pid, 1), 'rotation can truncate under it');
      }
    });

    test(pty ? 'a resize reaches the guest: stty size in its shell answers it' : 'a resize is refused with the stty line that sets the size in the guest', async () => {
      const { record } = findMachine(stateDir, id);
      if (pty) {
        await resizeConsole(record, `default/${id}`, 33, 111);
        await typeAndRead(stateDir, id, 'stty size', /^33 111\r?$/m);
        await resizeConsole(record, `default/${id}`, 24, 80);
        await typeAndRead(stateDir, id, 'echo now $(stty size)', /^now 24 80\r?$/m);
      } else {
        await assert.rejects(resizeConsole(record, `default/${id}`, 33, 111), /carries no terminal size .*stty rows 33 cols 111/);
      }
    });
  });
}
