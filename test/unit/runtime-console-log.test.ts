// The console log's rotation and tail, and the console writer lock, on real files.
import assert from 'node:assert/strict';
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, constants } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LogTail, fdinfoHasAppend, rotateConsoleLog, shouldRotate, writesAppending } from '../../src/runtime/console-log.ts';
import { ConsoleFollower } from '../../src/runtime/console.ts';
import { ConsoleBusyError, acquireConsoleWriter, resizeConsole, terminalSizeProblem } from '../../src/runtime/console-session.ts';
import type { MachineRecord } from '../../src/runtime/machine-record.ts';
import { machineKey, splitAtDetach } from '../../src/cli/commands/console.ts';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'umlmon-console-log-'));
}

describe('console log', () => {
  test('rotation: past the limit only, never with a limit of 0', () => {
    assert.equal(shouldRotate(10, 0), false);
    assert.equal(shouldRotate(10, 10), false);
    assert.equal(shouldRotate(11, 10), true);
  });

  test('O_APPEND from /proc/<pid>/fdinfo: this process\'s own fds, appending and not', async () => {
    assert.equal(fdinfoHasAppend('pos:\t0\nflags:\t0102001\nmnt_id:\t29\n'), true);
    assert.equal(fdinfoHasAppend('pos:\t0\nflags:\t0100001\nmnt_id:\t29\n'), false);
    const d = dir();
    try {
      for (const append of [true, false]) {
        const fd = openSync(join(d, 'log'), constants.O_WRONLY | constants.O_CREAT | (append ? constants.O_APPEND : 0));
        const child = spawn('sleep', ['5'], { stdio: ['ignore', fd, 'ignore'] });
        closeSync(fd);
        await new Promise((r) => child.once('spawn', r));
        assert.equal(writesAppending(child.pid!), append);
        child.kill();
      }
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('a writer appending while the log rotates: nothing written before or after is lost, the tail follows', () => {
    const d = dir();
    try {
      const path = join(d, 'console.log');
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND);
      const seen: string[] = [];
      const tail = new LogTail(path, 0, (chunk) => seen.push(chunk.toString()));
      appendFileSync(fd, 'one\n');
      tail.drain();
      appendFileSync(fd, 'two\n'); // not read yet when the log rotates: the tail finds it in console.log.1
      rotateConsoleLog(path);
      appendFileSync(fd, 'three\n');
      tail.drain();
      closeSync(fd);
      tail.close();
      assert.equal(seen.join(''), 'one\ntwo\nthree\n');
      assert.equal(readFileSync(`${path}.1`, 'utf8'), 'one\ntwo\n');
      assert.equal(readFileSync(path, 'utf8'), 'three\n', 'the appending writer went on at the new start, no holes');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('the follower rotates a log past its limit when the writer appends, and still sees every line', () => {
    const d = dir();
    try {
      const path = join(d, 'console.log');
      writeFileSync(path, '');
      const signals: string[] = [];
      let appends = false;
      const follower = new ConsoleFollower(path, 0, (s) => signals.push(s.type), { maxBytes: 64, canRotate: () => appends });
      appendFileSync(path, `${'x'.repeat(100)}\nRun /init as init process\n`);
      follower.drain();
      assert.equal(existsSync(`${path}.1`), false, 'not rotated under a writer that does not append');
      appends = true;
      appendFileSync(path, 'Kernel panic - not syncing: test\n');
      follower.drain();
      follower.close();
      assert.deepEqual(signals, ['booted', 'panic']);
      assert.equal(readFileSync(path, 'utf8'), '');
      assert.match(readFileSync(`${path}.1`, 'utf8'), /Kernel panic/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('console writer lock', () => {
  test('one holder; a second is refused with its name; a dead holder\'s lock is broken; release frees it', async () => {
    const d = dir();
    try {
      const lock = join(d, 'console.writer');
      const release = acquireConsoleWriter(lock, 'default/vm', 'alice@laptop');
      assert.throws(() => acquireConsoleWriter(lock, 'default/vm', 'bob@desk'), (e: unknown) => e instanceof ConsoleBusyError && /in use by alice@laptop/.test(e.message));
      release();
      assert.equal(existsSync(lock), false);
      // A holder that died: its pid is gone.
      const child = spawn('true');
      await new Promise((r) => child.once('exit', r));
      acquireConsoleWriter(lock, 'default/vm', 'ghost', child.pid!);
      const mine = acquireConsoleWriter(lock, 'default/vm', 'bob@desk');
      assert.match(readFileSync(lock, 'utf8'), /bob@desk/);
      mine();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('umlmon console arguments', () => {
  test('Ctrl-] ends what is sent; names default to the default namespace', () => {
    assert.deepEqual(splitAtDetach(Buffer.from('ls\r')), { send: Buffer.from('ls\r'), detach: false });
    assert.deepEqual(splitAtDetach(Buffer.from('ab\x1dcd')), { send: Buffer.from('ab'), detach: true });
    assert.equal(machineKey('web'), 'default/web');
    assert.equal(machineKey('prod/web'), 'prod/web');
  });
});

describe('console size', () => {
  const record = (over: Partial<MachineRecord>): MachineRecord => ({
    id: 'abc', name: 'default/a', pid: process.pid, startTime: '', startTicks: '', config: { id: 'abc', name: 'default/a', kernel: '/k', memoryBytes: 1, cmdline: [], defaultArgs: [], disks: [], interfaces: [] },
    notifySocket: '', jailDir: '', consoleLog: '', uid: 1, gid: 1, cgroupDirs: [], disks: [], interfaces: [], ...over,
  });

  test('a size is two whole numbers from 1 to 10000', () => {
    assert.equal(terminalSizeProblem(40, 120), undefined);
    assert.equal(terminalSizeProblem(1, 10_000), undefined);
    for (const [rows, cols] of [[0, 1], [1, 0], [24.5, 80], [24, 10_001], ['24', 80], [undefined, 80]]) {
      assert.match(terminalSizeProblem(rows, cols) ?? '', /whole numbers from 1 to 10000/, `${rows}x${cols}`);
    }
  });

  test('a console without a pty says why its size stays, and how to set it in the guest', async () => {
    await assert.rejects(resizeConsole(record({ consolePty: false }), 'default/a', 30, 100), /carries no terminal size .*stty rows 30 cols 100/);
    await assert.rejects(resizeConsole(record({ consolePty: true, pid: 999_999_999 }), 'default/a', 30, 100), /default\/a is not running/);
  });
});
