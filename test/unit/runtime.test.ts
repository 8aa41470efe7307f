// The runtime's pure parts: validation, kernel command line, console recognition, MAC and uid
// choice, ldd and /proc parsing, the jail script, paths; plus the shared-directory lock and
// allocations under concurrency (no kernel needed).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { SharedAllocations, macCandidate, pickMac, pickUid } from '../../src/runtime/allocations.ts';
import { diskDeviceNode, diskDeviceSpec, interfaceDeviceSpec, kernelArgs, memoryArg, parseCalibratedLpj, resolveDefaultArgs } from '../../src/runtime/cmdline.ts';
import { classifyConsoleLine, summarizeConsole } from '../../src/runtime/console.ts';
import { parsePartitions } from '../../src/runtime/disks.ts';
import { buildJailFstab, buildJailScript, ensureDeviceTemplate, findJailTools, fstabPath, parseLdd, shellQuote, type JailTools } from '../../src/runtime/jail.ts';

const TOOLS: JailTools = {
  env: '/usr/bin/env', setarch: '/usr/bin/setarch', setpriv: '/usr/bin/setpriv', chroot: '/usr/sbin/chroot', setsid: '/usr/bin/setsid',
  mount: '/usr/bin/mount', prlimit: '/usr/bin/prlimit', nsenter: '/usr/bin/nsenter', mv: '/usr/bin/mv', mkfifo: '/usr/bin/mkfifo',
  cat: '/usr/bin/cat', stty: '/usr/bin/stty', perl: '/usr/bin/perl',
};
import { driverFor, netDriversIn } from '../../src/runtime/kernel-features.ts';
import { withLock } from '../../src/runtime/lock.ts';
import { mountsUnder } from '../../src/runtime/mounts.ts';
import { checkStateDirLength, hostPathFromJail, machinePaths } from '../../src/runtime/paths.ts';
import { parseStatStartTicks } from '../../src/runtime/proc.ts';
import { parseExitStatus } from '../../src/runtime/exit-status.ts';
import type { MachineConfig } from '../../src/runtime/types.ts';
import { configProblems, imageNameProblem, interfaceProblems } from '../../src/runtime/validate.ts';

const MiB = 1024 * 1024;

function config(overrides: Partial<MachineConfig> = {}): MachineConfig {
  return {
    id: 'abc123', name: 'default/web', kernel: '/usr/bin/linux.uml', memoryBytes: 64 * MiB, cmdline: ['loglevel=4'],
    defaultArgs: ['initcall_blacklist=raid6_select_algo', 'lpj=auto'],
    disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }], interfaces: [], ...overrides,
  };
}

describe('validate', () => {
  test('a good config has no problems', () => {
    assert.deepEqual(configProblems(config()), []);
  });

  test('image names that escape the image root are refused', () => {
    assert.match(imageNameProblem('../x.img')!, /"\.\."/);
    assert.match(imageNameProblem('a/../../x.img')!, /"\.\."/);
    assert.match(imageNameProblem('/etc/passwd')!, /absolute path/);
    assert.match(imageNameProblem('a,b.img')!, /comma/);
    assert.equal(imageNameProblem('images/debian-12.img'), undefined);
  });

  test('ids, memory, disks and arguments are checked', () => {
    const problems = configProblems(config({ id: 'X'.repeat(13), memoryBytes: 32 * MiB, cmdline: ['a b'], rootDisk: 'ubd3' }));
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems.join('\n'), /1-12 characters/);
    assert.match(problems.join('\n'), /at least 40 MiB/);
    assert.match(problems.join('\n'), /without whitespace/);
    assert.match(problems.join('\n'), /root disk ubd3 is not among the disks/);
    assert.match(configProblems(config({ disks: [{ name: 'ubd16', image: 'a', mode: 'cow' }] })).join(), /ubd0\.\.ubd15/);
    assert.match(configProblems(config({ disks: [] })).join(), /no disks/);
  });

  test('interfaces: transports per driver and their settings', () => {
    assert.deepEqual(interfaceProblems({ name: 'eth0', transport: 'mcast', mcast: { group: '239.0.0.1', port: 1102 } }), []);
    assert.deepEqual(interfaceProblems({ name: 'eth1', transport: 'daemon', daemon: { switch: 'lan0' } }), []);
    assert.deepEqual(interfaceProblems({ name: 'vec0', transport: 'tap', tap: { ifname: 'umltap0' } }), []);
    assert.match(interfaceProblems({ name: 'eth0', transport: 'mcast', mcast: { group: '300.0.0.1', port: 1 } }).join(), /IPv4/);
    assert.match(interfaceProblems({ name: 'eth0', transport: 'slirp' }).join(), /slirp/);
    assert.match(interfaceProblems({ name: 'vec0', transport: 'mcast' }).join(), /not supported on vecN/);
    assert.match(interfaceProblems({ name: 'wlan0', transport: 'tap' }).join(), /ethN .* or vecN/);
    assert.match(interfaceProblems({ name: 'eth0', transport: 'daemon', daemon: { switch: '../x' } }).join(), /switch/);
    assert.match(interfaceProblems({ name: 'eth0', transport: 'daemon', mac: 'FE:FD:00:00:00:01', daemon: { switch: 'a' } }).join(), /MAC/);
  });
});

describe('kernel command line', () => {
  test('disks by mode, root, mconsole notify, console to fd 1', () => {
    const args = kernelArgs({ config: config({ cmdline: ['console=tty0'], disks: [
      { name: 'ubd0', image: 'root.img', mode: 'cow' },
      { name: 'ubd1', image: 'data.img', mode: 'readWrite' },
      { name: 'ubd2', image: 'iso.img', mode: 'readOnly' },
    ] }), measuredLpj: 4242, interfaceSpecs: ['eth0=mcast,fe:fd:00:00:00:01,239.0.0.1,1102,1'] });
    assert.deepEqual(args, [
      'mem=64M', 'umid=abc123', 'uml_dir=/uml', 'mconsole=notify:/notify', 'con0=fd:0,fd:1', 'con=null', 'ssl=null',
      'ubd0=/disks/ubd0.cow,/disks/ubd0.base', 'ubd1=/disks/ubd1.img', 'ubd2r=/disks/ubd2.img', 'root=/dev/ubda',
      'eth0=mcast,fe:fd:00:00:00:01,239.0.0.1,1102,1', 'initcall_blacklist=raid6_select_algo', 'lpj=4242', 'console=tty0',
    ]);
  });

  test('a quiet console keeps the boot line: ignore_loglevel is added', () => {
    const args = (cmdline: string[]): string[] => kernelArgs({ config: config({ cmdline }), measuredLpj: undefined, interfaceSpecs: [] });
    assert.equal(args(['loglevel=4']).at(-1), 'ignore_loglevel');
    assert.equal(args(['quiet']).at(-1), 'ignore_loglevel');
    assert.equal(args(['loglevel=7']).includes('ignore_loglevel'), false);
    assert.equal(args(['loglevel=4', 'ignore_loglevel']).filter((a) => a === 'ignore_loglevel').length, 1);
  });

  test('lpj=auto becomes the measured value, or is dropped until one is known', () => {
    assert.deepEqual(resolveDefaultArgs(['a', 'lpj=auto'], 123), ['a', 'lpj=123']);
    assert.deepEqual(resolveDefaultArgs(['a', 'lpj=auto'], undefined), ['a']);
    assert.deepEqual(resolveDefaultArgs(['lpj=99'], 123), ['lpj=99']);
  });

  test('the calibrated lpj is read from the console, not the preset one', () => {
    assert.equal(parseCalibratedLpj('Calibrating delay loop... 8408.26 BogoMIPS (lpj=42041344)\n'), 42041344);
    assert.equal(parseCalibratedLpj('Calibrating delay loop (skipped) preset value.. 8408.26 BogoMIPS (lpj=42041344)'), undefined);
  });

  test('device specs', () => {
    assert.equal(memoryArg(48 * MiB), 'mem=48M');
    assert.equal(memoryArg(48 * MiB + 1024), 'mem=49153K');
    assert.equal(diskDeviceNode('ubd0'), 'ubda');
    assert.equal(diskDeviceNode('ubd15'), 'ubdp');
    assert.equal(diskDeviceSpec({ name: 'ubd3', image: 'x', mode: 'readOnly' }), 'ubd3r=/disks/ubd3.img');
    const mac = 'fe:fd:01:02:03:04';
    assert.equal(interfaceDeviceSpec({ name: 'eth1', transport: 'daemon', daemon: { switch: 'lan0' } }, mac, '/shared/switches/lan0/ctl'),
      'eth1=daemon,fe:fd:01:02:03:04,unix,/shared/switches/lan0/ctl');
    assert.equal(interfaceDeviceSpec({ name: 'eth2', transport: 'tuntap', tuntap: { ifname: 'tap9' } }, mac), 'eth2=tuntap,tap9,fe:fd:01:02:03:04');
    assert.equal(interfaceDeviceSpec({ name: 'vec0', transport: 'tap', tap: { ifname: 'tap9' } }, mac), 'vec0:transport=tap,ifname=tap9,mac=fe:fd:01:02:03:04');
  });
});

describe('console', () => {
  test('recognises boot, lpj, panics and a full memory tmpfs', () => {
    assert.deepEqual(classifyConsoleLine('Run /sbin/init as init process'), { type: 'booted', init: '/sbin/init' });
    assert.deepEqual(classifyConsoleLine('<6>Run /init as init process'), { type: 'booted', init: '/init' });
    assert.deepEqual(classifyConsoleLine('Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(98,0)'),
      { type: 'panic', message: 'VFS: Unable to mount root fs on unknown-block(98,0)' });
    assert.equal(classifyConsoleLine('<3>Bus error - the host /dev/shm or /tmp mount likely just ran out of space')?.type, 'memory-file-full');
    // After the console shell's prompt, on the same line (printk starts no new line after it).
    assert.deepEqual(classifyConsoleLine('umlguest:~# \x1b[6nBus error - the host /dev/shm or /tmp mount likely just ran out of space'),
      { type: 'memory-file-full', message: 'Bus error - the host /dev/shm or /tmp mount likely just ran out of space' });
    assert.equal(classifyConsoleLine('sysrq: Emergency Sync complete')?.type, 'sync-complete');
    assert.equal(classifyConsoleLine('random line'), undefined);
    const s = summarizeConsole('Calibrating delay loop... 1.00 BogoMIPS (lpj=5)\nKernel panic - not syncing: first\nKernel panic - not syncing: second\n');
    assert.deepEqual(s, { booted: false, lpj: 5, panic: 'first' });
  });
});

describe('allocations', () => {
  test('MACs are locally administered, stable per key and unique', () => {
    const pool: Record<string, string> = {};
    const a = pickMac(pool, 'm1/eth0');
    assert.match(a, /^fe:fd(:[0-9a-f]{2}){4}$/);
    pool['m1/eth0'] = a;
    assert.equal(pickMac(pool, 'm1/eth0'), a);
    // A collision with the first candidate moves on to the next one.
    const colliding = { other: macCandidate('m2/eth0', 0) };
    assert.equal(pickMac(colliding, 'm2/eth0'), macCandidate('m2/eth0', 1));
    assert.throws(() => pickMac({ other: 'fe:fd:00:00:00:01' }, 'm3/eth0', 'fe:fd:00:00:00:01'), /already used by other/);
  });

  test('uids stay in range, stable and unique', () => {
    const pool: Record<string, string> = {};
    for (let i = 0; i < 10; i++) pool[`m${i}`] = String(pickUid(pool, `m${i}`, 1000, 10));
    assert.deepEqual(new Set(Object.values(pool)).size, 10);
    assert.ok(Object.values(pool).every((u) => Number(u) >= 1000 && Number(u) < 1010));
    assert.equal(pickUid(pool, 'm3', 1000, 10), Number(pool.m3));
    assert.throws(() => pickUid(pool, 'm10', 1000, 10), /no free uid/);
  });

  test('concurrent processes never hand out the same MAC or uid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlrt-alloc-'));
    try {
      const worker = `
        import { SharedAllocations } from ${JSON.stringify(new URL('../../src/runtime/allocations.ts', import.meta.url).pathname)};
        const a = new SharedAllocations(process.argv[1]);
        const tag = process.argv[2];
        for (let i = 0; i < 20; i++) {
          await a.allocateMac('m' + tag + '-' + i, 'eth0');
          await a.allocateUid('m' + tag + '-' + i, 5000, 100);
        }
      `;
      await Promise.all(['a', 'b', 'c'].map((tag) => new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', worker, dir, tag], { stdio: 'inherit' });
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${tag} exited ${code}`))));
      })));
      const macs = JSON.parse(readFileSync(join(dir, 'macpool.json'), 'utf8'));
      const uids = JSON.parse(readFileSync(join(dir, 'uids.json'), 'utf8'));
      assert.equal(Object.keys(macs).length, 60);
      assert.equal(new Set(Object.values(macs)).size, 60);
      assert.equal(new Set(Object.values(uids)).size, 60);
      const a = new SharedAllocations(dir);
      await a.releaseMacs('ma-0');
      await a.releaseUid('ma-0');
      assert.equal(JSON.parse(readFileSync(join(dir, 'macpool.json'), 'utf8'))['ma-0/eth0'], undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('changes asked for at once share one write, and a refused one fails alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlrt-alloc-batch-'));
    try {
      const a = new SharedAllocations(dir);
      await a.allocateMac('first', 'eth0', 'fe:fd:00:00:00:01');
      const writes: string[] = [];
      const watcher = watch(dir, (event, file) => { if (file === 'macpool.json' && event === 'rename') writes.push(file); });
      await new Promise((r) => setTimeout(r, 20));
      const asked = Array.from({ length: 30 }, (_, i) => a.allocateMac(`m${i}`, 'eth0'));
      const taken = a.allocateMac('thief', 'eth0', 'fe:fd:00:00:00:01');
      const macs = await Promise.all(asked);
      await assert.rejects(taken, /fe:fd:00:00:00:01 is already used by first\/eth0/);
      assert.equal(new Set(macs).size, 30);
      const pool = JSON.parse(readFileSync(join(dir, 'macpool.json'), 'utf8'));
      assert.equal(Object.keys(pool).length, 31);
      assert.equal(pool['thief/eth0'], undefined);
      await new Promise((r) => setTimeout(r, 50));
      watcher.close();
      assert.equal(writes.length, 1, 'thirty-one changes, one write of the map');
      assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp.')), [], 'no temporary file left');
      // What comes after a batch began goes into the next one, and is written too.
      const uids = await Promise.all([a.allocateUid('x', 7000, 10), a.allocateUid('y', 7000, 10)]);
      assert.equal(new Set(uids).size, 2);
      await a.releaseUid('x');
      assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(dir, 'uids.json'), 'utf8'))), ['y']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('callers in one process take a lock one at a time, in order, without backing off on each other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlrt-lock-'));
    try {
      const lock = join(dir, 'q.lock');
      const order: number[] = [];
      let inside = 0;
      const holders = Array.from({ length: 50 }, (_, i) => withLock(lock, async () => {
        inside++;
        assert.equal(inside, 1, 'one holder at a time');
        assert.ok(existsSync(lock), 'the lock file is held for the other processes');
        await new Promise((r) => setImmediate(r));
        order.push(i);
        inside--;
      }, { timeoutMs: 1000 }));
      await Promise.all(holders);
      assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => i), 'in the order they asked');
      assert.ok(!existsSync(lock), 'released');
      await assert.rejects(withLock(lock, () => { throw new Error('boom'); }), /boom/);
      assert.equal(await withLock(lock, () => 'after a failure', { timeoutMs: 1000 }), 'after a failure', 'a failing holder releases it');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a lock left by a dead process is broken', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlrt-lock-'));
    try {
      const lock = join(dir, 'x.lock');
      writeFileSync(lock, '999999999\n'); // no such pid
      assert.equal(await withLock(lock, () => 'got it', { timeoutMs: 1000 }), 'got it');
      writeFileSync(lock, `${process.pid}\n`); // held by a live process
      await assert.rejects(withLock(lock, () => 'never', { timeoutMs: 100 }), /timed out waiting for the lock/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('jail', () => {
  test('ldd output gives the libraries and the loader', () => {
    const out = '\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n';
    assert.deepEqual(parseLdd(out), ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
    assert.deepEqual(parseLdd('\tnot a dynamic executable\n'), []);
  });

  test('the script joins the cgroup, mounts, then limits and drops privileges with ASLR off in one chain of execs', () => {
    const paths = machinePaths('/var/lib/umlmon', 'abc');
    const script = buildJailScript({
      paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: ['/sys/fs/cgroup/memory/umlmon/abc'], fstab: paths.jailFstab, makeDevices: false, consolePty: false,
      kernelArgs: ['mem=64M', 'root=/dev/ubda'], rlimits: { openFiles: 1024, processes: 512 }, tools: TOOLS,
    });
    const lines = script.trim().split('\n');
    const order = ['join cgroup', 'mount the jail (tmpfs, devices, shared directory, disk images)'];
    let last = -1;
    for (const step of order) {
      const at = lines.findIndex((l, i) => i > last && l.includes(`fail '${step}'`));
      assert.ok(at > last, `step ${step} in order`);
      last = at;
    }
    assert.ok(lines[last]!.startsWith(`/usr/bin/mount -a --fstab '/var/lib/umlmon/machines/abc/jail.fstab'`), lines[last]);
    const kernelLine = lines.findIndex((l) => l.includes(' /linux '));
    assert.match(lines[kernelLine]!, /^\/usr\/bin\/prlimit --nofile=1024 --nproc=512 --core=0 \/usr\/bin\/setsid \/usr\/bin\/env -i TMPDIR=\/tmp PATH=\/ \/usr\/bin\/setarch x86_64 -R \/usr\/bin\/setpriv --no-new-privs \/usr\/sbin\/chroot --userspec=200001:200001 --groups=200001 '\/var\/lib\/umlmon\/machines\/abc\/jail' \/linux 'mem=64M' 'root=\/dev\/ubda' <&3 3<&- &$/);
    assert.equal(lines[kernelLine - 1], "exec 3<>'/var/lib/umlmon/machines/abc/console.in' || fail 'open the console FIFO' '/var/lib/umlmon/machines/abc/console.in'", 'the console FIFO is opened on fd 3 for the kernel: a background job gets /dev/null');
    assert.ok(kernelLine > last, 'the kernel starts after every step');
    assert.ok(lines.slice(kernelLine).some((l) => l.includes("'/var/lib/umlmon/machines/abc/monitor/exit-status'")), 'the monitor writes the wait status');
    // Outside the kernel's chain: mount always, mkfifo on a machine's first start, nsenter only
    // where the cgroup write is refused, mv once the kernel has exited.
    const tools = Object.values(TOOLS);
    const outside = lines.filter((_, i) => i !== kernelLine).flatMap((l) => l.split(/\s+/)).filter((word) => tools.includes(word));
    assert.deepEqual(outside, ['/usr/bin/nsenter', '/usr/bin/mount', '/usr/bin/mkfifo', '/usr/bin/mv']);
    assert.ok(!script.includes('mknod'), 'the device nodes come from the template');
    const withoutTemplate = buildJailScript({
      paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: [], fstab: paths.jailFstab, makeDevices: true, consolePty: false, kernelArgs: [], rlimits: { openFiles: 1024, processes: 512 }, tools: TOOLS,
    }).split('\n');
    const mounted = withoutTemplate.findIndex((l) => l.includes("fail 'mount the jail"));
    const made = withoutTemplate.findIndex((l) => l.includes("fail 'make device nodes'"));
    assert.ok(mounted >= 0 && made > mounted, 'without a template the nodes are made on the tmpfs, after it is mounted');
    assert.match(withoutTemplate[made]!, /mknod -m 666 '\/var\/lib\/umlmon\/machines\/abc\/jail\/dev\/net\/tun' c 10 200/);
  });

  test('the fstab: memory tmpfs, devices, the shared directory and disk images, in order, read-only where they must be', () => {
    const paths = machinePaths('/var/lib/umlmon', 'abc');
    const fstab = buildJailFstab({
      paths, who: { uid: 200001, gid: 200001 }, tmpfsBytes: 80 * MiB, sharedDir: '/var/lib/umlmon/shared',
      binds: [{ source: "/img/it's a\\disk.img", target: `${paths.disksDir}/ubd0.base`, readOnly: true }, { source: '/img/rw.img', target: `${paths.disksDir}/ubd1.base`, readOnly: false }],
      deviceTemplate: '/var/lib/umlmon/jail-files/dev',
    });
    const entries = fstab.trim().split('\n').filter((l) => !l.startsWith('#')).map((l) => l.split(' '));
    assert.deepEqual(entries.map((e) => e.length), entries.map(() => 6), 'six fields each (no unescaped blank in a path)');
    assert.deepEqual(entries[0], ['umlmon-mem', '/var/lib/umlmon/machines/abc/jail/tmp', 'tmpfs', 'size=83886080,uid=200001,gid=200001,mode=0700,nosuid,nodev', '0', '0']);
    assert.deepEqual(entries[1], ['/var/lib/umlmon/jail-files/dev', '/var/lib/umlmon/machines/abc/jail/dev', 'none', 'bind,ro,nosuid,noexec', '0', '0']);
    assert.deepEqual(entries[2], ['/var/lib/umlmon/shared', '/var/lib/umlmon/machines/abc/jail/shared', 'none', 'bind,ro', '0', '0']);
    assert.deepEqual(entries[3]!.slice(0, 4), ["/img/it's\\040a\\134disk.img", '/var/lib/umlmon/machines/abc/jail/disks/ubd0.base', 'none', 'bind,ro']);
    assert.equal(entries[4]![3], 'bind', 'a readWrite image is bound writable');
    const noTemplate = buildJailFstab({ paths, who: { uid: 200001, gid: 200001 }, tmpfsBytes: 80 * MiB, sharedDir: '/s', binds: [], deviceTemplate: undefined });
    assert.match(noTemplate, /^umlmon-dev \/var\/lib\/umlmon\/machines\/abc\/jail\/dev tmpfs size=64k,mode=0755,nosuid,noexec 0 0$/m);
    assert.equal(fstabPath('a b\tc\nd\\e'), 'a\\040b\\011c\\012d\\134e');
  });

  test('the fstab mounts as written: tmpfs owned by the machine, device nodes of its own, binds read-only, in a namespace of its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlmon-fstab-'));
    try {
      const paths = machinePaths(dir, 'abc');
      for (const d of [paths.tmpDir, paths.sharedMount, paths.disksDir, paths.devDir]) mkdirSync(d, { recursive: true });
      const template = join(dir, 'jail-files', 'dev');
      let made = 0;
      const exec = async (script: string): Promise<void> => { made += 1; execFileSync('sh', ['-ec', script]); };
      assert.equal(await ensureDeviceTemplate(template, exec), true, 'nodes usable where the test runs');
      assert.equal(await ensureDeviceTemplate(template, exec), true);
      assert.equal(made, 1, 'made once, found the next time');
      const shared = join(dir, 'shared dir');
      mkdirSync(shared);
      writeFileSync(join(shared, 'f'), 'shared');
      const image = join(dir, 'an image');
      writeFileSync(image, 'disk');
      writeFileSync(join(paths.disksDir, 'ubd0.base'), '');
      const fstab = join(dir, 'fstab');
      writeFileSync(fstab, buildJailFstab({
        paths, who: { uid: 200001, gid: 200001 }, tmpfsBytes: 4 * MiB, sharedDir: shared,
        binds: [{ source: image, target: join(paths.disksDir, 'ubd0.base'), readOnly: true }], deviceTemplate: template,
      }));
      const probe = [
        `mount -a --fstab ${shellQuote(fstab)}`,
        `stat -c '%u %a' ${shellQuote(paths.tmpDir)}`,
        `cat ${shellQuote(join(paths.sharedMount, 'f'))} ${shellQuote(join(paths.disksDir, 'ubd0.base'))}; echo`,
        `touch ${shellQuote(join(paths.sharedMount, 'g'))} 2>/dev/null && echo shared-writable || echo shared-read-only`,
        `echo x 2>/dev/null > ${shellQuote(join(paths.disksDir, 'ubd0.base'))} && echo image-writable || echo image-read-only`,
        `head -c 4 ${shellQuote(join(paths.devDir, 'urandom'))} | wc -c; echo ok > ${shellQuote(join(paths.devDir, 'null'))} && echo null-ok`,
        `stat -c '%F %a %t:%T' ${shellQuote(join(paths.devDir, 'net', 'tun'))}`,
        `touch ${shellQuote(join(paths.devDir, 'x'))} 2>/dev/null && echo dev-writable || echo dev-read-only`,
      ].join('\n');
      const out = execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-ec', probe], { encoding: 'utf8' });
      assert.deepEqual(out.trim().split('\n'), ['200001 700', 'shareddisk', 'shared-read-only', 'image-read-only', '4', 'null-ok', 'character special file 666 a:c8', 'dev-read-only']);
      assert.ok(!existsSync(join(paths.devDir, 'null')), 'outside the namespace nothing is mounted');
      // A source that is gone: the script stops at its mount step, and the log names the step,
      // the fstab, and mount's own reason with the entry's path.
      writeFileSync(fstab, `${join(dir, 'gone.img')} ${fstabPath(join(paths.disksDir, 'ubd0.base'))} none bind,ro 0 0\n`);
      const script = buildJailScript({ paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: [], fstab, makeDevices: false, consolePty: false, kernelArgs: [], rlimits: { openFiles: 1024, processes: 512 }, tools: { ...TOOLS, mount: 'mount' } });
      const mountStep = script.split('\n').filter((l) => l.startsWith('fail()') || l.includes('mount -a')).join('\n');
      const failed = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', mountStep], { encoding: 'utf8' });
      assert.equal(failed.status, 111);
      assert.match(failed.stderr, new RegExp(`gone\\.img`));
      assert.match(failed.stderr, new RegExp(`step 'mount the jail \\(tmpfs, devices, shared directory, disk images\\)' failed for ${fstab}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the monitor: writes the kernel\'s pid, waits, and writes its wait status (exit code, or 128+signal)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlmon-monitor-'));
    try {
      const paths = { ...machinePaths('/var/lib/umlmon', 'abc'), kernelPidFile: join(dir, 'kernel.pid'), exitStatusFile: join(dir, 'exit-status') };
      const script = buildJailScript({
        paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: [], fstab: paths.jailFstab, makeDevices: false, consolePty: false, kernelArgs: [], rlimits: { openFiles: 1024, processes: 512 }, tools: TOOLS,
      });
      const lines = script.trim().split('\n');
      const monitor = lines.slice(lines.findIndex((l) => l.includes(' /linux ')) + 1).join('\n');
      for (const [kernel, status] of [['sh -c "exit 3"', { code: 3, signal: null }], ['sh -c \'kill -ABRT $$\'', { code: null, signal: 'SIGABRT' }], ['true', { code: 0, signal: null }]] as const) {
        // The kernel's own line needs root and a jail; a stand-in process shows what the monitor does.
        const out = execFileSync('sh', ['-c', `/usr/bin/setsid ${kernel} &\n${monitor}\necho "monitor $$"`], { encoding: 'utf8' });
        assert.match(readFileSync(paths.kernelPidFile, 'utf8'), /^\d+\n$/);
        assert.notEqual(readFileSync(paths.kernelPidFile, 'utf8').trim(), /monitor (\d+)/.exec(out)?.[1], 'the kernel is a child, not the monitor');
        assert.deepEqual(parseExitStatus(readFileSync(paths.exitStatusFile, 'utf8')), status, kernel);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a pty console: the kernel\'s output reaches the log raw, typed input reaches the kernel, and stty on its fd 0 resizes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlmon-pty-'));
    try {
      const tools = findJailTools();
      assert.ok(tools.perl, 'perl is on this host (the pty console needs it)');
      const paths = { ...machinePaths(dir, 'abc'), consoleInput: join(dir, 'console.in'), kernelPidFile: join(dir, 'kernel.pid'), exitStatusFile: join(dir, 'exit-status') };
      const script = buildJailScript({ paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: [], fstab: '/nonexistent', makeDevices: false, consolePty: true, kernelArgs: [], rlimits: { openFiles: 1024, processes: 512 }, tools });
      const lines = script.trim().split('\n');
      const kernelLine = lines.findIndex((l) => l.includes(' /linux'));
      assert.match(lines[kernelLine]!, /^\{ exec 5<>"\/dev\/pts\/\$pts" .*; exec \/usr\/bin\/prlimit .* <&5 >&5 3<&- 4<&- 5<&-; \} &$/, 'the kernel\'s own job opens the pty\'s slave, and reads and writes it');
      // From the FIFO on, with a stand-in for the kernel (its own line needs root and a jail).
      const first = lines.findIndex((l) => l.includes("fail 'make the console FIFO'"));
      const standIn = lines[kernelLine]!.replace(/exec \/usr\/bin\/prlimit .* <&5 >&5/, `exec sh -c 'echo ready; read a; stty size; read b; echo "typed $b"' <&5 >&5`);
      const body = [lines.find((l) => l.startsWith('fail()'))!, ...lines.slice(first, kernelLine), standIn, ...lines.slice(kernelLine + 1)].join('\n');
      const log = join(dir, 'console.log');
      const out = openSync(log, 'a');
      const monitor = spawn('sh', ['-c', body], { stdio: ['ignore', out, out], detached: true });
      closeSync(out);
      const until = async (what: string, check: () => boolean): Promise<void> => {
        for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
        assert.ok(check(), `${what}; log: ${JSON.stringify(readFileSync(log, 'utf8'))}`);
      };
      await until('the stand-in started', () => readFileSync(log, 'utf8').includes('ready'));
      const kernel = Number(readFileSync(paths.kernelPidFile, 'utf8'));
      execFileSync('stty', ['-F', `/proc/${kernel}/fd/0`, 'rows', '40', 'cols', '123']);
      writeFileSync(paths.consoleInput, 'x\nhello\n');
      await until('the stand-in read both lines', () => readFileSync(log, 'utf8').includes('typed hello'));
      await until('the monitor wrote the exit status', () => existsSync(paths.exitStatusFile));
      assert.equal(readFileSync(log, 'utf8'), 'ready\n40 123\ntyped hello\n', 'raw: no \\r added, no echo of what was typed');
      await until('no copy left running', () => { try { process.kill(-monitor.pid!, 0); return false; } catch { return true; } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('wait statuses: exit codes, signals by name, and garbage refused', () => {
    assert.deepEqual(parseExitStatus('0\n'), { code: 0, signal: null });
    assert.deepEqual(parseExitStatus('1'), { code: 1, signal: null });
    assert.deepEqual(parseExitStatus('137\n'), { code: null, signal: 'SIGKILL' });
    assert.deepEqual(parseExitStatus('134\n'), { code: null, signal: 'SIGABRT' });
    assert.deepEqual(parseExitStatus('128\n'), { code: 128, signal: null });
    assert.equal(parseExitStatus(''), undefined);
    assert.equal(parseExitStatus('x'), undefined);
    assert.equal(parseExitStatus('999'), undefined);
  });
});

test('joining a cgroup: the plain write when allowed, the host cgroup namespace when refused, the step named on failure', () => {
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-cgjoin-'));
  try {
    const paths = machinePaths('/var/lib/umlmon', 'abc');
    const joinLines = (cgroupDir: string): string => {
      const script = buildJailScript({
        paths, who: { uid: 200001, gid: 200001 }, cgroupDirs: [cgroupDir], fstab: paths.jailFstab, makeDevices: false, consolePty: false, kernelArgs: [], rlimits: { openFiles: 1024, processes: 512 }, tools: TOOLS,
      });
      const lines = script.split('\n');
      return [lines.find((l) => l.startsWith('fail()'))!, ...lines.filter((l) => l.includes("fail 'join cgroup'"))].join('\n');
    };
    assert.match(joinLines(dir), /\|\| \/usr\/bin\/nsenter --target 1 --cgroup \/bin\/sh -c "echo \$\$ > '[^']+\/cgroup\.procs'"/);
    // Allowed: the shell writes its own pid (the pid that then execs the kernel).
    const out = execFileSync('sh', ['-c', `${joinLines(dir)}\necho "pid $$"`], { encoding: 'utf8' });
    assert.equal(readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim(), /pid (\d+)/.exec(out)?.[1]);
    // Refused everywhere (no such cgroup): the script stops and names the step and the cgroup.
    const missing = join(dir, 'gone', 'umlmon', 'abc');
    const result = spawnSync('sh', ['-c', joinLines(missing)], { encoding: 'utf8' });
    assert.equal(result.status, 111);
    assert.match(result.stderr, new RegExp(`step 'join cgroup' failed for ${missing}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('kernel features', () => {
  test('network drivers from the embedded kernel config', () => {
    const config = Buffer.from('junk\0CONFIG_UML_NET=y\nCONFIG_UML_NET_VECTOR=y\nCONFIG_UML_NET_DAEMON=y\n# CONFIG_UML_NET_MCAST is not set\nCONFIG_UML_NET_TUNTAP=y\n');
    assert.deepEqual(netDriversIn(config), { vector: true, mcast: false, daemon: true, tuntap: true });
    assert.equal(netDriversIn(Buffer.from('no config embedded')), undefined);
    assert.equal(driverFor('vec0', 'tap'), 'vector');
    assert.equal(driverFor('eth0', 'daemon'), 'daemon');
  });

});

describe('paths and /proc', () => {
  test('a state directory that makes socket paths too long is refused', () => {
    checkStateDirLength('/var/lib/umlmon');
    assert.throws(() => checkStateDirLength(`/${'x'.repeat(70)}`), /too long for Unix socket paths/);
  });

  test('paths the kernel reports are translated out of the jail', () => {
    assert.equal(hostPathFromJail('/s/machines/a/jail', '/uml/a/mconsole'), '/s/machines/a/jail/uml/a/mconsole');
    assert.throws(() => hostPathFromJail('/j', 'relative'), /relative/);
  });

  test('start ticks survive odd process names', () => {
    const stat = '1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100';
    assert.equal(parseStatStartTicks(stat), '987654');
  });

  test("the guest's /proc/partitions as device names", () => {
    const text = 'major minor  #blocks  name\n\n  98        0      16384 ubda\n  98       16       8192 ubdb\n';
    assert.deepEqual(parsePartitions(text), ['ubda', 'ubdb']);
  });

  test('mounts under a directory, deepest first, with octal escapes', () => {
    const text = 'tmpfs /a/b tmpfs rw 0 0\ntmpfs /a/b/c\\040d tmpfs rw 0 0\ntmpfs /a/bc tmpfs rw 0 0\n';
    assert.deepEqual(mountsUnder(text, '/a/b'), ['/a/b/c d', '/a/b']);
  });
});
