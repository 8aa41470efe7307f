// The runtime on a real, jailed UML kernel: boot, pause/resume, disk hot-plug, a guest panic,
// graceful stop, backup and teardown. One machine is booted and shared by the tests that only
// drive it, to keep CPU use low on a shared node. The whole file runs once per kernel of the
// host's kernel matrix (umlmon's own, and Debian's where this host can run it; where it cannot,
// test/integration/kernel-compat.test.ts asserts how that is reported).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, utimesSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime, defaultCgroupParent, RuntimeError } from '../../src/runtime/index.ts';
import type { Runtime } from '../../src/runtime/index.ts';
import { kernelMatrix, TEST_IMAGE, testImageRoot, type TestKernel } from '../support/uml.ts';
import { kernelVersion } from '../../src/runtime/kernel-probe.ts';
import { disposeRuntime, machineConfig as baseConfig, MiB, uniqueId, waitFor } from '../support/runtime.ts';

function processesInGroup(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return pids;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((p) => p.startsWith(dir));
}

for (const kernel of (await kernelMatrix()).runnable) describeRuntime(kernel);

function describeRuntime(kernel: TestKernel): void {
describe(`runtime on a real UML kernel (${kernel.name}: ${kernel.path})`, () => {
  let stateDir: string;
  let imageRoot: string;
  let rt: Runtime;
  const id = uniqueId('rt');
  const machineConfig = (mid: string, overrides: Parameters<typeof baseConfig>[1] = {}) =>
    baseConfig(mid, { kernel: kernel.path, defaultArgs: ['lpj=auto', ...kernel.args], ...overrides });

  before(() => {
    const images = testImageRoot();
    stateDir = mkdtempSync('/tmp/umlrt-');
    // A private image root: tests add images to it.
    imageRoot = join(stateDir, 'images');
    execFileSync('mkdir', ['-p', imageRoot]);
    copyFileSync(join(images, TEST_IMAGE), join(imageRoot, TEST_IMAGE));
    execFileSync('truncate', ['-s', '8M', join(imageRoot, 'data.img')]);
    execFileSync('mkfs.ext4', ['-q', '-F', join(imageRoot, 'data.img')]);
    rt = createRuntime({ stateDir, imageRoot, logger: process.env.RT_DEBUG ? { info: console.log, warn: console.log, error: console.log, debug: console.log } : undefined });
  });

  after(() => disposeRuntime(rt, stateDir));

  test('boots jailed: mconsole up, then booted, guest message, unprivileged and unrandomized', async () => {
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === id);
    const guest = waitFor(rt, (e) => e.type === 'guest-message' && e.id === id);
    const status = await rt.start(machineConfig(id));
    assert.equal(status.state, 'running');
    // mconsole `version` is the uname of the kernel that was started: its release is what the binary says.
    const release = await kernelVersion(kernel.path);
    assert.ok(release.length > 0 && (status.kernelVersion ?? '').includes(` ${release} `), `${status.kernelVersion} names ${release}`);
    assert.ok(status.pid && status.pid > 0);
    assert.ok(status.mconsoleSocket?.startsWith(join(stateDir, 'machines', id, 'jail')));
    await booted;
    assert.deepEqual(await guest, { type: 'guest-message', id, message: 'umlmon-guest: booted' });
    assert.ok(rt.get(id)?.bootTime instanceof Date);

    const procStatus = readFileSync(`/proc/${status.pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(procStatus)?.[1]);
    assert.ok(uid >= 200000 && uid < 200000 + 65536, `kernel runs as uid ${uid}`);
    assert.match(procStatus, /^NoNewPrivs:\s+1$/m);
    // Out of every cgroup the agent itself is in: a container runtime that kills the agent's
    // cgroups (pod restart) must not reach the guest.
    for (const line of readFileSync(`/proc/${status.pid}/cgroup`, 'utf8').trim().split('\n')) {
      assert.ok(line.endsWith(`/${defaultCgroupParent(stateDir)}/${id}`), `kernel cgroup ${line} is the machine's own`);
    }
    assert.equal(readFileSync(`/proc/${status.pid}/personality`, 'utf8').trim(), '00040000'); // ADDR_NO_RANDOMIZE
    assert.equal(execFileSync('readlink', [`/proc/${status.pid}/root`], { encoding: 'utf8' }).trim(), join(stateDir, 'machines', id, 'jail'));
    // The memory tmpfs and the bind mounts live in the kernel's own mount namespace only.
    assert.deepEqual(mountsUnder(stateDir), []);
    const machineJson = JSON.parse(readFileSync(join(stateDir, 'machines', id, 'machine.json'), 'utf8'));
    assert.equal(machineJson.pid, status.pid);
    assert.equal(machineJson.name, `test/${id}`);
    assert.equal(machineJson.mconsoleSocket, status.mconsoleSocket);
    assert.match(readFileSync(join(stateDir, 'machines', id, 'console.log'), 'utf8'), /Run \/sbin\/init as init process/);
    const info = await rt.guestInfo(id);
    assert.ok(info.uptimeSeconds > 0);
    assert.match(info.loadAverage, /^\d+\.\d+ \d+\.\d+ \d+\.\d+$/);
    // The first boot without lpj= calibrated; the value is cached for the next boots.
    assert.match(readFileSync(join(stateDir, 'shared', 'lpj'), 'utf8'), /^\d+\n$/);
  });

  test('a second start of a running machine is refused and does not disturb it', async () => {
    await assert.rejects(rt.start(machineConfig(id)), (e: unknown) =>
      e instanceof RuntimeError && e.code === 'already-running' && e.message.includes(`test/${id}`));
    assert.equal(rt.get(id)?.state, 'running');
    assert.ok((await rt.guestInfo(id)).uptimeSeconds > 0);
  });

  test('pause and resume, each idempotent', async () => {
    await rt.pause(id);
    await rt.pause(id);
    assert.equal(rt.get(id)?.state, 'paused');
    await rt.resume(id);
    await rt.resume(id);
    assert.equal(rt.get(id)?.state, 'running');
  });

  test('hot-plugs disks both ways, seen in /proc/partitions', async () => {
    const partitions = async (): Promise<string> => (await (rt as unknown as { machines: Map<string, { client: { proc(f: string): Promise<string> } }> })
      .machines.get(id)!.client.proc('partitions'));
    const cow = await rt.attachDisk(id, { name: 'ubd1', image: 'data.img', mode: 'cow' });
    assert.equal(cow.name, 'ubd1');
    assert.match(await partitions(), /\bubdb\b/);
    const ro = await rt.attachDisk(id, { name: 'ubd2', image: 'data.img', mode: 'readOnly' });
    assert.equal(ro.mode, 'readOnly');
    assert.match(await partitions(), /\bubdc\b/);
    assert.deepEqual(rt.get(id)?.disks.map((d) => d.name), ['ubd0', 'ubd1', 'ubd2']);
    assert.ok(existsSync(join(stateDir, 'machines', id, 'jail', 'disks', 'ubd1.cow')));
    await rt.detachDisk(id, 'ubd1');
    await rt.detachDisk(id, 'ubd2');
    assert.doesNotMatch(await partitions(), /\bubd[bc]\b/);
    assert.deepEqual(rt.get(id)?.disks.map((d) => d.name), ['ubd0']);
  });

  test('a readWrite disk: hot-plugged, backed up as the image itself, kept on removal', async () => {
    execFileSync('truncate', ['-s', '4M', join(imageRoot, 'rw.img')]);
    const rw = await rt.attachDisk(id, { name: 'ubd4', image: 'rw.img', mode: 'readWrite' });
    assert.equal(rw.mode, 'readWrite');
    const result = await rt.backup(id, join(stateDir, 'backups', 'rw'));
    assert.equal(result.error, undefined);
    const copied = result.files.find((f) => f.disk === 'ubd4');
    assert.equal(copied?.source, join(imageRoot, 'rw.img'));
    assert.equal(copied?.bytes, 4 * MiB);
    await rt.detachDisk(id, 'ubd4');
  });

  test('refuses a directory as an image and a disk the guest has mounted', async () => {
    execFileSync('mkdir', ['-p', join(imageRoot, 'adir')]);
    await assert.rejects(rt.attachDisk(id, { name: 'ubd3', image: 'adir', mode: 'readOnly' }), /not a regular file/);
    await assert.rejects(rt.detachDisk(id, 'ubd0'), (e: unknown) =>
      e instanceof RuntimeError && e.code === 'disk-in-use' && /ubd0 is open in the guest \(mounted, or held open/.test(e.message) && e.message.includes(id));
    assert.equal(rt.get(id)?.state, 'running');
  });

  test('backup: pauses briefly, copies the COW file sparsely, the guest keeps running', async () => {
    const dest = join(stateDir, 'backups', 'b1');
    const result = await rt.backup(id, dest);
    assert.equal(result.error, undefined);
    assert.equal(result.files.length, 1);
    const file = result.files[0]!;
    assert.equal(file.disk, 'ubd0');
    assert.equal(file.bytes, statSync(file.source).size);
    assert.equal(statSync(file.destination).size, statSync(file.source).size);
    assert.ok(statSync(file.destination).blocks * 512 <= statSync(file.source).size, 'copy is sparse');
    assert.ok(result.pausedMs >= 0 && result.pausedMs < 10000);
    assert.equal(rt.get(id)?.state, 'running');
    const before = (await rt.guestInfo(id)).uptimeSeconds;
    assert.ok(before > 0);
  });

  test('backup resumes the guest even when the copy fails', async () => {
    // A directory where the copy should go: cp fails after the guest was paused.
    const dest = join(stateDir, 'backups', 'b2');
    execFileSync('mkdir', ['-p', join(dest, 'ubd0.cow', 'in-the-way')]);
    const result = await rt.backup(id, dest);
    assert.ok(result.error, 'the failure is reported');
    assert.match(result.error!, new RegExp(id));
    assert.equal(rt.get(id)?.state, 'running');
    assert.ok((await rt.guestInfo(id)).uptimeSeconds > 0);
  });

  test('graceful stop: cad powers the guest off; the whole process group is gone', async () => {
    const pid = rt.get(id)!.pid!;
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
    const t0 = Date.now();
    await rt.stop(id, { gracePeriodMs: 20000 });
    assert.ok(Date.now() - t0 < 20000, 'the guest powered off on cad, before the grace period');
    const event = await exited;
    assert.equal(event.type === 'exited' && event.exit.code, 0);
    assert.deepEqual(processesInGroup(pid), []);
    assert.equal(rt.get(id)?.state, 'exited');
    await assert.rejects(rt.pause(id), /not running/);
  });

  test('graceful stop of a guest whose init does not handle ctrl-alt-del: it reboots, and is halted then, not after the grace period', async () => {
    // /bin/sh as init never tells the kernel it handles ctrl-alt-del (reboot(RB_DISABLE_CAD)),
    // as a guest still booting has not yet: the kernel answers cad by rebooting, in the same process.
    const sid = uniqueId('cad');
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === sid);
    await rt.start(machineConfig(sid, { cmdline: ['init=/bin/sh'] }));
    await booted;
    const pid = rt.get(sid)!.pid!;
    const rebooted = waitFor(rt, (e) => e.type === 'mconsole-ready' && e.id === sid);
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === sid);
    const t0 = Date.now();
    await rt.stop(sid, { gracePeriodMs: 120_000 });
    await rebooted; // the kernel's second MCONSOLE_SOCKET: it rebooted on cad
    assert.ok(Date.now() - t0 < 60_000, 'halted once it rebooted, not after the 120 s grace period');
    const event = await exited;
    assert.equal(event.type, 'exited');
    assert.equal(rt.get(sid)?.state, 'exited');
    assert.deepEqual(processesInGroup(pid), []);
    await rt.remove(sid);
  });

  test('a COW disk whose image changed since: the boot panic says why, in the kernel\'s words and what to do', async () => {
    // A copy of the image of its own: the other tests' COW files must not see it change.
    copyFileSync(join(imageRoot, TEST_IMAGE), join(imageRoot, 'changing.ext4'));
    const cid = uniqueId('cow');
    const config = machineConfig(cid, { disks: [{ name: 'ubd0', image: 'changing.ext4', mode: 'cow' }] });
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === cid);
    await rt.start(config);
    await booted;
    await rt.stop(cid, { gracePeriodMs: 0 });
    // The image is replaced under the machine's COW file (rebuilt, or copied over): a new mtime.
    const later = new Date(Date.now() + 3600_000);
    utimesSync(join(imageRoot, 'changing.ext4'), later, later);
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === cid);
    await rt.start(config);
    const event = await exited;
    assert.equal(event.type, 'exited');
    const panic = event.type === 'exited' ? event.exit.panic ?? '' : '';
    assert.match(panic, /Unable to mount root fs/);
    assert.match(panic, /mtime mismatch \(\d+ vs \d+\) of COW header vs backing file: the disk's COW file was made on another version of its image/);
    assert.match(panic, /delete the machine and create it again/);
    await rt.remove(cid);
  });

  test('teardown leaves no mount, process, socket or file behind', async () => {
    const status = rt.get(id)!;
    await rt.remove(id);
    assert.equal(existsSync(join(stateDir, 'machines', id)), false);
    assert.deepEqual(mountsUnder(stateDir), []);
    assert.deepEqual(processesInGroup(status.pid!), []);
    for (const controller of ['memory', 'pids', 'devices', 'freezer', 'cpuset']) {
      assert.equal(existsSync(`/sys/fs/cgroup/${controller}/${defaultCgroupParent(stateDir)}/${id}`), false, `${controller} cgroup removed`);
    }
    assert.equal(rt.get(id), undefined);
    assert.ok(existsSync(join(imageRoot, TEST_IMAGE)), 'base image kept');
    assert.equal(statSync(join(imageRoot, 'rw.img')).size, 4 * MiB, 'readWrite image kept');
  });

  test('a guest panic (sysrq c) is reported as panic, then exited with the message', async () => {
    const pid2 = uniqueId('pa');
    const booted = waitFor(rt, (e) => e.type === 'booted' && e.id === pid2);
    // loglevel=4 would hide the boot line; the runtime keeps it with ignore_loglevel.
    await rt.start(machineConfig(pid2, { cmdline: ['loglevel=4'] }));
    await booted;
    const panic = waitFor(rt, (e) => e.type === 'panic' && e.id === pid2);
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === pid2);
    const client = (rt as unknown as { machines: Map<string, { client: { sysrq(k: string): Promise<string> } }> }).machines.get(pid2)!.client;
    void client.sysrq('c').catch(() => undefined);
    const p = await panic;
    assert.match(p.type === 'panic' ? p.message : '', /sysrq triggered crash/);
    const e = await exited;
    assert.ok(e.type === 'exited');
    assert.match(e.exit.panic ?? '', /sysrq triggered crash/);
    await rt.stop(pid2, { gracePeriodMs: 0 });
    await rt.remove(pid2);
  });

  test('closing the runtime removes its cgroup parent once no machine is left in it', async () => {
    const parent = defaultCgroupParent(stateDir);
    assert.ok(existsSync(`/sys/fs/cgroup/memory/${parent}`), 'the parent exists while the runtime is open');
    await rt.close();
    for (const controller of ['memory', 'pids', 'devices', 'freezer', 'cpuset']) {
      const dir = `/sys/fs/cgroup/${controller}/${parent}`;
      const left = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${e.name}: ${readFileSync(`${dir}/${e.name}/cgroup.procs`, 'utf8').trim().split('\n').map((p) => p && `${p} ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 60)}`).join('; ')}`) : [];
      assert.equal(existsSync(dir), false, `${controller} parent removed (left in it: ${left.join(' | ') || 'nothing'})`);
    }
  });
});
}
