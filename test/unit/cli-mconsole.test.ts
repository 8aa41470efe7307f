// `umlmon mconsole`: argument parsing and finding the socket from a path, a umid or a name.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DgramSocket } from 'node-unix-socket';
import { parseMconsoleArgs, resolveMconsoleTarget } from '../../src/cli/commands/mconsole.ts';

describe('parseMconsoleArgs', () => {
  it('joins the command words and applies defaults', () => {
    assert.deepEqual(parseMconsoleArgs(['web', 'config', 'ubd1=/a'], {}), { kind: 'run', target: 'web', command: 'config ubd1=/a', stateDir: '/var/lib/umlmon', timeoutMs: 5000 });
  });

  it('takes --state-dir and --timeout (both spellings) and UMLMON_STATE_DIR', () => {
    assert.deepEqual(parseMconsoleArgs(['--state-dir', '/s', '--timeout=0.5', 'web', 'version'], { UMLMON_STATE_DIR: '/env' }),
      { kind: 'run', target: 'web', command: 'version', stateDir: '/s', timeoutMs: 500 });
    assert.equal((parseMconsoleArgs(['web', 'version'], { UMLMON_STATE_DIR: '/env' }) as { stateDir: string }).stateDir, '/env');
  });

  it('leaves options after the target to the command', () => {
    assert.equal((parseMconsoleArgs(['web', 'log', '--timeout', '3'], {}) as { command: string }).command, 'log --timeout 3');
    assert.equal((parseMconsoleArgs(['--', '-odd-name', 'version'], {}) as { target: string }).target, '-odd-name');
  });

  it('reports usage errors and --help', () => {
    assert.deepEqual(parseMconsoleArgs(['--help'], {}), { kind: 'help' });
    assert.deepEqual(parseMconsoleArgs(['-h', 'web'], {}), { kind: 'help' });
    for (const [argv, message] of [
      [[], /missing the target/], [['web'], /missing the command to send to web/], [['--bogus', 'web', 'version'], /unknown option '--bogus'/],
      [['--timeout', 'soon', 'web', 'version'], /--timeout must be a positive number of seconds, not 'soon'/],
      [['--timeout', '0', 'web', 'version'], /positive/], [['--state-dir'], /--state-dir needs a value/],
    ] as const) {
      const parsed = parseMconsoleArgs([...argv], {});
      assert.equal(parsed.kind, 'usage-error', JSON.stringify(argv));
      assert.match((parsed as { message: string }).message, message);
    }
  });
});

describe('resolveMconsoleTarget', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'umlmon-mc-cli-'));
  const socketPath = join(stateDir, 'mconsole');
  const socket = new DgramSocket();
  socket.bind(socketPath);
  after(() => { socket.close(); rmSync(stateDir, { recursive: true, force: true }); });
  const machine = (umid: string, record: unknown) => {
    mkdirSync(join(stateDir, 'machines', umid), { recursive: true });
    writeFileSync(join(stateDir, 'machines', umid, 'machine.json'), typeof record === 'string' ? record : JSON.stringify(record));
  };
  machine('a1b2c3', { name: 'default/web-1', mconsoleSocket: '/run/a1b2c3/mconsole', pid: 42 });
  machine('d4e5f6', { name: 'default/twin', mconsoleSocket: '/run/d4e5f6/mconsole' });
  machine('g7h8i9', { name: 'default/twin', mconsoleSocket: '/run/g7h8i9/mconsole' });
  machine('broken', '{ not json');
  machine('nosock', { name: 'default/starting' });

  it('takes an existing socket path as is', () => {
    assert.deepEqual(resolveMconsoleTarget(socketPath, stateDir), { socketPath });
  });

  it('refuses an existing path that is not a socket', () => {
    assert.throws(() => resolveMconsoleTarget(join(stateDir, 'machines'), stateDir), /exists but is not a socket/);
  });

  it('finds a machine by umid and by name', () => {
    assert.deepEqual(resolveMconsoleTarget('a1b2c3', stateDir), { socketPath: '/run/a1b2c3/mconsole', name: 'default/web-1' });
    assert.deepEqual(resolveMconsoleTarget('default/web-1', stateDir), { socketPath: '/run/a1b2c3/mconsole', name: 'default/web-1' });
  });

  it('explains what it tried when nothing matches, and ambiguous or broken records', () => {
    assert.throws(() => resolveMconsoleTarget('default/nope', stateDir), /no mconsole socket or machine called 'default\/nope'.*machines/);
    assert.throws(() => resolveMconsoleTarget('web', join(stateDir, 'absent')), /no mconsole socket or machine called 'web'/);
    assert.throws(() => resolveMconsoleTarget('default/twin', stateDir), /2 machines are named 'default\/twin'/);
    assert.throws(() => resolveMconsoleTarget('broken', stateDir), /cannot read .*broken\/machine.json/);
    assert.throws(() => resolveMconsoleTarget('nosock', stateDir), /no absolute mconsoleSocket path/);
  });
});

describe('umlmon mconsole exit status', () => {
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-mc-cli-exit-'));
  const silent = join(dir, 'mconsole');
  const socket = new DgramSocket(); // a socket that never answers, like a hung kernel
  socket.bind(silent);
  after(() => { socket.close(); rmSync(dir, { recursive: true, force: true }); });
  const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
  const run = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [main, 'mconsole', ...args], { timeout: 20_000, env: { ...process.env, UMLMON_STATE_DIR: dir } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });

  it('is 2 with a clear message when no reply comes in time', async () => {
    const result = await run(['--timeout', '0.2', silent, 'version']);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /no reply to 'version' within 200 ms/);
  });

  it('is 2 for usage errors and refused commands, 0 for --help', async () => {
    const usage = await run([silent]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /missing the command/);
    const refused = await run([silent, 'log', 'x'.repeat(600)]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /refusing to send mconsole command/);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: umlmon mconsole/);
  });
});
