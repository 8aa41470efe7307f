// Every mconsole command against a real UML kernel (umlmon's own, booting the busybox test
// image), the notify socket's messages, and `umlmon mconsole` end to end. Each kernel runs in
// its own temp dir on its own copy of the image, un-jailed (test/support/plain-uml.ts).
// `stack` is tried on umlmon's kernel only: it crashes Debian's 6.1 build (uml-facts.md).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MconsoleClient, MconsoleError, MconsoleIncompleteReplyError, REPLY_PART_GAP_MS } from '../../src/runtime/mconsole/index.ts';
import { KERNEL_BOOTED, bootPlainUml } from '../support/plain-uml.ts';
import type { PlainUml } from '../support/plain-uml.ts';
import { REPO_ROOT } from '../support/uml.ts';

const GUEST_BOOTED = 'umlmon-guest: booted\n';

/** Boots a kernel and waits until the guest's init has reported itself (mconsole up, kernel booted). */
async function bootGuest(): Promise<{ uml: PlainUml; socketPath: string; client: MconsoleClient }> {
  const { uml, socketPath } = await bootPlainUml();
  try {
    await uml.waitForConsole(KERNEL_BOOTED, 60_000);
    await uml.waitForNotify((m) => m.type === 'user' && m.message === GUEST_BOOTED, { timeoutMs: 60_000 });
  } catch (error) {
    await uml.destroy();
    throw error;
  }
  return { uml, socketPath, client: new MconsoleClient(socketPath, { timeoutMs: 10_000 }) };
}

async function rejectsWith(promise: Promise<unknown>, code: number, reply: string | RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof MconsoleError, `expected an MconsoleError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (typeof reply === 'string') assert.equal(e.reply, reply);
    else assert.match(e.reply, reply);
    return true;
  });
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'mconsole', ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('mconsole on a running kernel', () => {
  let uml: PlainUml;
  let socketPath: string;
  let client: MconsoleClient;
  before(async () => { ({ uml, socketPath, client } = await bootGuest()); });
  after(async () => { client?.close(); await uml?.destroy(); });

  it('hears mconsole come up, then the guest\'s own message, on the notify socket', () => {
    assert.deepEqual(uml.notifications[0], { type: 'socket', path: socketPath });
    assert.ok(statSync(socketPath).isSocket());
    assert.ok(uml.notifications.some((m) => m.type === 'user' && m.message === GUEST_BOOTED));
    assert.deepEqual(uml.notifyErrors, []);
  });

  it('version', async () => {
    assert.match(await client.version(), /^Linux \S+ \d+\.\d+\.\d+ #\d+ .* x86_64$/);
  });

  it('help (a multi-part reply)', async () => {
    const help = await client.help();
    assert.ok(help.length > 511, `help spans several datagrams (${help.length} bytes)`);
    for (const line of ['version - Get kernel version', 'config <dev>=<config>', 'proc <file>', 'stack <pid>']) assert.ok(help.includes(line), line);
  });

  it('proc uptime, partitions, meminfo, loadavg', async () => {
    assert.match(await client.proc('uptime'), /^\d+\.\d+ \d+\.\d+\n$/);
    assert.match(await client.proc('partitions'), /\bubda\n/);
    const meminfo = await client.proc('meminfo');
    assert.match(meminfo, /^MemTotal: +\d+ kB\n/);
    assert.ok(meminfo.length > 511, 'meminfo spans several datagrams');
    assert.match(meminfo, /\nDirectMap|\nHugepagesize|\nCommitted_AS/);
    assert.match(await client.proc('loadavg'), /^\d+\.\d+ \d+\.\d+ \d+\.\d+ \d+\/\d+ \d+\n$/);
    await rejectsWith(client.proc('1/status'), 1, 'Read of file failed');
  });

  it('config queries a device', async () => {
    assert.equal(await client.config('con0'), 'null');
    assert.equal(await client.config('ubd0'), uml.image);
  });

  it('config adds a disk and remove takes it away, with the kernel\'s errors in between', async () => {
    const disk = join(uml.dir, 'second.img');
    writeFileSync(disk, '');
    truncateSync(disk, 4 * 1024 * 1024);
    assert.equal(await client.config('ubd1', disk), '');
    assert.match(await client.proc('partitions'), /\bubdb\n/);
    assert.equal(await client.config('ubd1'), disk);
    await rejectsWith(client.config('ubd1', disk), -16, 'Device is already configured');
    await rejectsWith(client.config('ubd0', disk), -16, 'Device is already configured');
    await rejectsWith(client.config('ubd2', join(uml.dir, 'missing.img')), -2, /Couldn't determine size/);
    // Right after a hot-plug the guest's partition scan holds the new device open for about a
    // second on 7.x: until then the kernel answers -16 "Device is currently open" (which is why
    // the runtime retries a detach for a while).
    const deadline = Date.now() + 3000;
    for (;;) {
      try {
        assert.equal(await client.remove('ubd1'), '');
        break;
      } catch (error) {
        if (!(error instanceof MconsoleError && error.code === -16 && error.reply === 'Device is currently open' && Date.now() < deadline)) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.doesNotMatch(await client.proc('partitions'), /\bubdb\n/);
    await rejectsWith(client.remove('ubd1'), -19, "Device doesn't exist");
  });

  it('stack: a reply longer than the receive queue ends with what arrived, never hangs, and the next request works', async () => {
    const started = performance.now();
    const outcome = await client.stack(1).then((text) => ({ complete: text }), (error: unknown) => ({ error }));
    const took = performance.now() - started;
    if ('error' in outcome) {
      assert.ok(outcome.error instanceof MconsoleIncompleteReplyError, `got ${String(outcome.error)}`);
      assert.ok(outcome.error.partial.length > 0, 'the parts that arrived are kept');
      assert.ok(took < REPLY_PART_GAP_MS + 3000, `gave up after the gap, not the 10 s timeout (${Math.round(took)} ms)`);
    } else {
      assert.ok(outcome.complete.length > 0); // a short stack fits the queue
    }
    assert.match(await client.version(), /^Linux /);
  });

  it('sysrq s', async () => {
    assert.match(await client.sysrq('s'), /Emergency Sync/);
  });

  it('stop and go, and their errors', async () => {
    assert.equal(await client.stop(), 'stopped');
    await rejectsWith(client.stop(), 1, 'Already stopped');
    assert.match(await client.version(), /^Linux /, 'mconsole still answers while the guest is stopped');
    assert.equal(await client.go(), '');
    await rejectsWith(client.go(), 1, 'Not stopped');
    assert.match(await client.proc('uptime'), /^\d/);
  });

  it('log writes to the kernel log', async () => {
    const text = `umlmon-mconsole-test-${randomBytes(4).toString('hex')}`;
    assert.equal(await client.log(text), '');
    // printk holds a line without a newline back until the next message ends it.
    await client.sysrq('s');
    await uml.waitForConsole(new RegExp(text), 10_000);
  });

  it('umlmon mconsole prints OK/ERR like uml_mconsole and exits 0/1', async () => {
    const ok = await cli([socketPath, 'version']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^OK Linux \S+ \d+\.\d+\.\d+ .*\n$/);
    const err = await cli([socketPath, 'remove', 'ubd7']);
    assert.equal(err.code, 1, err.stderr);
    assert.equal(err.stdout, "ERR Device doesn't exist\n");
  });

  it('umlmon mconsole finds a machine by name in the state directory', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'umlmon-mc-state-'));
    try {
      mkdirSync(join(stateDir, 'machines', uml.umid), { recursive: true });
      writeFileSync(join(stateDir, 'machines', uml.umid, 'machine.json'), JSON.stringify({ name: `test/${uml.umid}`, mconsoleSocket: socketPath }));
      const byName = await cli(['--state-dir', stateDir, `test/${uml.umid}`, 'config', 'con0']);
      assert.deepEqual(byName, { code: 0, stdout: 'OK null\n', stderr: '' });
      const byUmid = await cli(['--state-dir', stateDir, '--timeout', '10', uml.umid, 'proc', 'uptime']);
      assert.equal(byUmid.code, 0, byUmid.stderr);
      assert.match(byUmid.stdout, /^OK \n\d+\.\d+ \d+\.\d+\n\n$/);
      const unknown = await cli(['--state-dir', stateDir, 'test/nobody', 'version']);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no mconsole socket or machine called 'test\/nobody'/);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('a client nobody closes lets its process exit once idle', async () => {
    const index = join(REPO_ROOT, 'src/runtime/mconsole/index.ts');
    const script = `import { MconsoleClient } from ${JSON.stringify(index)};
      const client = new MconsoleClient(${JSON.stringify(socketPath)}, { idleCloseMs: 50 });
      console.log(await client.version());`;
    // No close(), no process.exit(): the child must end by itself.
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 }, (error, out, err) => {
        if (error) reject(new Error(`${error.message}\n${err}`)); else resolve(out);
      });
    });
    assert.match(stdout, /^Linux \S+ \d+\.\d+/);
  });

  it('reboot restarts the kernel: a second socket notify, and the guest boots again', async () => {
    const seen = uml.notifications.length;
    assert.equal(await client.reboot(), '');
    const again = await uml.waitForNotify((m) => m.type === 'socket', { from: seen, timeoutMs: 60_000 });
    assert.deepEqual(again, { type: 'socket', path: socketPath });
    await uml.waitForNotify((m) => m.type === 'user' && m.message === GUEST_BOOTED, { from: seen, timeoutMs: 60_000 });
    assert.match(await client.version(), /^Linux /);
    assert.equal(uml.exitStatus, undefined, 'the same process keeps running');
  });

  it('halt ends the kernel process', async () => {
    assert.equal(await client.halt(), '');
    const exit = await uml.waitForExit(30_000);
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});

describe('cad on a guest whose init powers off on ctrl-alt-del', () => {
  let uml: PlainUml;
  let client: MconsoleClient;
  before(async () => { ({ uml, client } = await bootGuest()); });
  after(async () => { client?.close(); await uml?.destroy(); });

  it('powers the guest off and the kernel process exits', async () => {
    assert.equal(await client.cad(), '');
    const exit = await uml.waitForExit(60_000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(uml.console, /reboot: (Power down|System halted)/);
  });
});

describe('a guest panic', () => {
  let uml: PlainUml;
  let client: MconsoleClient;
  before(async () => { ({ uml, client } = await bootGuest()); });
  after(async () => { client?.close(); await uml?.destroy(); });

  it('arrives on the notify socket as a panic message, and the kernel exits', async () => {
    const seen = uml.notifications.length;
    // sysrq c crashes the kernel before mconsole can answer: the request is not expected to succeed.
    const answer = client.request('sysrq c', { timeoutMs: 30_000 }).then(() => 'answered', (e: unknown) => e);
    const panic = await uml.waitForNotify((m) => m.type === 'panic', { from: seen, timeoutMs: 30_000 }).catch((e: unknown) => e);
    assert.deepEqual(panic, { type: 'panic', message: 'sysrq triggered crash' });
    const exit = await uml.waitForExit(30_000);
    assert.notDeepEqual(exit, { code: 0, signal: null }, 'a panicked kernel does not exit cleanly');
    assert.equal(exit.signal, 'SIGABRT', 'UML aborts after a panic');
    client.close();
    await answer;
  });
});
