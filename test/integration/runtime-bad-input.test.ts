// Bad input, each refused or reported with the machine's name and the cause, while another
// machine keeps running undisturbed (it is asked over mconsole after every case).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime, RuntimeError } from '../../src/runtime/index.ts';
import type { MachineConfig, Runtime, RuntimeEvent } from '../../src/runtime/index.ts';
import { TEST_IMAGE, umlKernel } from '../support/uml.ts';
import { disposeRuntime, MiB, privateStateDir, runInGuest, uniqueId, waitFor } from '../support/runtime.ts';

function isRuntimeError(code: string, ...fragments: (string | RegExp)[]): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof RuntimeError, `expected a RuntimeError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const f of fragments) assert.match(e.message, typeof f === 'string' ? new RegExp(f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : f);
    return true;
  };
}

describe('bad input', () => {
  let stateDir: string;
  let imageRoot: string;
  let rt: Runtime;
  const bystander = uniqueId('by');

  function config(id: string, overrides: Partial<MachineConfig> = {}): MachineConfig {
    return {
      id, name: `test/${id}`, kernel: umlKernel(), memoryBytes: 48 * MiB, cmdline: [],
      defaultArgs: ['lpj=auto'],
      disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], interfaces: [], ...overrides,
    };
  }

  async function bystanderAnswers(): Promise<void> {
    assert.equal(rt.get(bystander)?.state, 'running');
    assert.ok((await rt.guestInfo(bystander)).uptimeSeconds > 0, 'the other machine still answers mconsole');
  }

  before(async () => {
    ({ stateDir, imageRoot } = privateStateDir());
    rt = createRuntime({ stateDir, imageRoot });
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === bystander);
    await rt.start(config(bystander));
    await booted;
  });

  after(() => disposeRuntime(rt, stateDir));

  test('an image name with .. or an absolute path is refused', async () => {
    const id = uniqueId('bi');
    for (const image of ['../busybox.ext4', 'sub/../../etc/passwd', '/etc/passwd']) {
      await assert.rejects(rt.start(config(id, { disks: [{ name: 'ubd0', image, mode: 'cow' }] })),
        isRuntimeError('invalid-config', `test/${id}`, image.startsWith('/') ? 'absolute path' : '".."'));
    }
    assert.equal(existsSync(join(stateDir, 'machines', id)), false, 'nothing was created');
    await bystanderAnswers();
  });

  test('a 253-character machine name works: paths are named by the short umid', async () => {
    const id = uniqueId('ln');
    const name = `ns/${'n'.repeat(250)}`;
    assert.equal(name.length, 253);
    const status = await rt.start(config(id, { name }));
    assert.equal(status.name, name);
    assert.ok(Buffer.byteLength(status.mconsoleSocket!) < 108, status.mconsoleSocket);
    await rt.stop(id, { gracePeriodMs: 0 });
    await rt.remove(id);
    // A long id, though, is refused before any path is made from it.
    await assert.rejects(rt.start(config('x'.repeat(253))), isRuntimeError('invalid-config', 'must be 1-12 characters', '108 bytes'));
    await bystanderAnswers();
  });

  test('a missing or non-executable kernel is refused', async () => {
    const id = uniqueId('bk');
    await assert.rejects(rt.start(config(id, { kernel: '/nonexistent/linux.uml' })),
      isRuntimeError('invalid-config', `test/${id}`, 'kernel /nonexistent/linux.uml does not exist'));
    const notExec = join(stateDir, 'linux-not-executable');
    writeFileSync(notExec, 'not a kernel');
    chmodSync(notExec, 0o644);
    await assert.rejects(rt.start(config(id, { kernel: notExec })), isRuntimeError('invalid-config', `test/${id}`, 'is not executable'));
    await bystanderAnswers();
  });

  test('too little memory is refused', async () => {
    const id = uniqueId('bm');
    await assert.rejects(rt.start(config(id, { memoryBytes: 32 * MiB })), isRuntimeError('invalid-config', `test/${id}`, 'too little', '40 MiB'));
    await bystanderAnswers();
  });

  test('a corrupt image: the kernel cannot mount root, the panic is the exit reason', async () => {
    const id = uniqueId('bc');
    const corrupt = join(imageRoot, 'corrupt.img');
    execFileSync('truncate', ['-s', '8M', corrupt]);
    writeFileSync(corrupt, Buffer.alloc(4096, 0x5a));
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
    let startError: unknown;
    await rt.start(config(id, { disks: [{ name: 'ubd0', image: 'corrupt.img', mode: 'cow' }] })).catch((e) => {
      startError = e;
    });
    const e = await exited;
    assert.ok(e.type === 'exited');
    assert.match(e.exit.panic ?? '', /VFS: Unable to mount root fs/);
    if (startError) assert.match((startError as Error).message, new RegExp(`test/${id}.*VFS: Unable to mount root fs`));
    assert.match(rt.get(id)!.exit!.panic!, /VFS: Unable to mount root fs/);
    await rt.stop(id, { gracePeriodMs: 0 });
    await rt.remove(id);
    await bystanderAnswers();
  });

  test('a stale state directory of a machine that died is cleaned; its private disk is kept', async () => {
    const id = uniqueId('bs');
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === id);
    const first = await rt.start(config(id));
    await booted;
    const cow = join(stateDir, 'machines', id, 'jail', 'disks', 'ubd0.cow');
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
    process.kill(-first.pid!, 'SIGKILL'); // it died: no shutdown, everything left behind
    await exited;
    // A fresh runtime (as after an agent restart) starts it again over the leftovers.
    const rt2 = createRuntime({ stateDir, imageRoot });
    try {
      const booted2 = waitFor(rt2, (e) => e.type === 'booted' && e.id === id);
      const second = await rt2.start(config(id));
      await booted2;
      assert.notEqual(second.pid, first.pid);
      assert.equal(second.state, 'running');
      assert.ok(statSync(cow).size > 0, 'the COW file (guest data) survived');
      assert.ok(existsSync(join(stateDir, 'machines', id, 'console.log.previous')));
      await rt2.stop(id, { gracePeriodMs: 0 });
      await rt2.remove(id);
    } finally {
      await rt2.close();
    }
    await bystanderAnswers();
  });

  test('a tmpfs too small for the guest memory is reported clearly', async () => {
    const id = uniqueId('bt');
    // 16 MiB of memory file for 48 MiB of RAM: the guest boots (it touches little), then fills
    // its RAM with a file on its own tmpfs.
    const small = createRuntime({ stateDir, imageRoot, tmpfsSlackBytes: -32 * MiB });
    try {
      const booted = waitFor(small, (e) => e.type === 'guest-message' && e.id === id && e.message === 'umlmon-guest: booted');
      const exited = waitFor(small, (e) => e.type === 'exited' && e.id === id);
      await small.start(config(id, { cmdline: ['guest.cmd'] }));
      await booted;
      await runInGuest(small, imageRoot, id, 'dd if=/dev/zero of=/tmp/fill bs=1M count=40; echo filled', { expectExit: true });
      const e = await exited;
      assert.ok(e.type === 'exited');
      assert.match(e.exit.panic ?? '', /memory file's tmpfs \(16 MiB\) ran out of space/);
      await small.stop(id, { gracePeriodMs: 0 });
      await small.remove(id);
    } finally {
      await small.close();
    }
    await bystanderAnswers();
  });

  test('a root image without an init: one boot, one booted event, and the fallbacks reported as such', async () => {
    const id = uniqueId('bi');
    const image = 'no-init.ext4';
    copyFileSync(join(imageRoot, TEST_IMAGE), join(imageRoot, image));
    // The test image's busybox also answers as /bin/init: without both, the kernel ends at /bin/sh.
    for (const path of ['/sbin/init', '/bin/init']) execFileSync('debugfs', ['-w', '-R', `rm ${path}`, join(imageRoot, image)], { stdio: 'ignore' });
    const events: RuntimeEvent[] = [];
    const off = rt.onEvent((e) => { if (e.id === id) events.push(e); });
    try {
      const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
      const fellBackToShell = waitFor(rt, (e) => e.type === 'init-fallback' && e.id === id && e.init === '/bin/sh');
      await rt.start(config(id, { disks: [{ name: 'ubd0', image, mode: 'cow' }] }));
      await fellBackToShell;
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]); // a shell on a null console ends soon
      assert.equal(events.filter((e) => e.type === 'booted').length, 1, 'one boot is one booted event');
      const fallbacks = events.flatMap((e) => (e.type === 'init-fallback' ? [[e.failed, e.init]] : []));
      assert.deepEqual(fallbacks, [['/sbin/init', '/etc/init'], ['/etc/init', '/bin/init'], ['/bin/init', '/bin/sh']]);
    } finally {
      off();
      await rt.stop(id, { gracePeriodMs: 0 }).catch(() => undefined);
      await rt.remove(id).catch(() => undefined);
    }
    await bystanderAnswers();
  });

  test('a state directory too long for socket paths is refused up front', () => {
    assert.throws(() => createRuntime({ stateDir: `/tmp/${'d'.repeat(80)}`, imageRoot }), /too long for Unix socket paths.*at most \d+ bytes/);
  });

  test('the machine log names the cause of a jail failure', () => {
    const dir = join(stateDir, 'machines', bystander);
    assert.match(readFileSync(join(dir, 'jail.sh'), 'utf8'), /fail 'mount the jail \(tmpfs, devices, shared directory, disk images\)' '[^']*jail\.fstab'/);
    assert.match(readFileSync(join(dir, 'jail.fstab'), 'utf8'), /^umlmon-mem \S+\/jail\/tmp tmpfs /m);
  });
});
