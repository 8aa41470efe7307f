// The pure parts of telling whether a kernel runs here: the probe's initramfs (a hand-made ELF
// in a newc cpio), the classification of a probe's console, the console line of a kernel whose
// FP state does not fit the host, and the message users read. The real boots are in
// test/integration/kernel-compat.test.ts. The probe's /init is never executed on the host: it
// powers the machine off.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyConsoleLine, summarizeConsole } from '../../src/runtime/console.ts';
import { FP_REGS_FAILURE, kernelIncompatibleMessage, largeXsaveFeatures } from '../../src/runtime/kernel-compat.ts';
import { classifyProbe, cpioNewc, PROBE_OK_LINE, probeInitElf, probeInitramfs } from '../../src/runtime/kernel-probe.ts';
import { dlopenedLibraries } from '../../src/runtime/jail.ts';

// What Debian's 6.1/6.12 UML kernels print on an AVX-512/AMX host (issue "A kernel for every host").
const AMX_CONSOLE = [
  'Run /sbin/init as init process',
  'userspace - ptrace set fp regs failed, errno = 14',
  'Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b',
].join('\n');
const AMX_CPUINFO = 'processor\t: 0\nflags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512dq amx_bf16 amx_tile amx_int8 xsave\n';

describe('probe initramfs', () => {
  it('its /init is a static x86-64 ELF executable whose code prints the probe line', () => {
    const elf = probeInitElf();
    assert.deepEqual([...elf.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    assert.equal(elf[4], 2, 'ELF64');
    assert.equal(elf.readUInt16LE(16), 2, 'ET_EXEC');
    assert.equal(elf.readUInt16LE(18), 0x3e, 'x86-64');
    const entry = Number(elf.readBigUInt64LE(24));
    assert.equal(elf.readBigUInt64LE(32), 64n, 'program headers follow the ELF header');
    assert.equal(elf.readUInt16LE(56), 1, 'one program header');
    assert.equal(elf.readUInt32LE(64), 1, 'PT_LOAD');
    const vaddr = Number(elf.readBigUInt64LE(80));
    assert.equal(Number(elf.readBigUInt64LE(96)), elf.length, 'the whole file is mapped');
    assert.equal(entry - vaddr, 120, 'entry right after the headers');
    // lea rsi, [rip+disp32] at code offset 10: rip after it is code+17, so disp lands on the message.
    const code = entry - vaddr;
    assert.deepEqual([...elf.subarray(code + 10, code + 13)], [0x48, 0x8d, 0x35]);
    const target = code + 17 + elf.readInt32LE(code + 13);
    const length = elf[code + 18]!;
    assert.equal(elf.subarray(target, target + length).toString(), `${PROBE_OK_LINE}\n`);
  });

  it('the cpio is newc with /dev, /dev/console (c 5:1) and an executable /init, 4-byte aligned, ending in a trailer', () => {
    const archive = probeInitramfs();
    const entries: { name: string; mode: number; size: number; rdev: [number, number] }[] = [];
    let at = 0;
    for (;;) {
      assert.equal(archive.subarray(at, at + 6).toString(), '070701', `header magic at ${at}`);
      const field = (i: number) => parseInt(archive.subarray(at + 6 + i * 8, at + 14 + i * 8).toString(), 16);
      const mode = field(1), size = field(6), nameSize = field(11), rdev: [number, number] = [field(9), field(10)];
      const name = archive.subarray(at + 110, at + 110 + nameSize - 1).toString();
      at += Math.ceil((110 + nameSize) / 4) * 4;
      at += Math.ceil(size / 4) * 4;
      if (name === 'TRAILER!!!') break;
      entries.push({ name, mode, size, rdev });
    }
    assert.equal(at, archive.length, 'nothing after the trailer');
    assert.deepEqual(entries.map((e) => [e.name, e.mode.toString(8)]), [['dev', '40755'], ['dev/console', '20600'], ['init', '100755']]);
    assert.deepEqual(entries[1]!.rdev, [5, 1]);
    assert.equal(entries[2]!.size, probeInitElf().length);
  });

  it('pads names and data to 4 bytes for any length', () => {
    for (const n of [1, 2, 3, 4, 5]) {
      const archive = cpioNewc([{ name: 'x'.repeat(n), mode: 0o100644, data: Buffer.alloc(n, 1) }]);
      assert.equal(archive.length % 4, 0);
    }
  });
});

describe('probe outcome', () => {
  // The version is whatever the kernel binary prints; the outcome never depends on it.
  const VERSION = 'x.y.z-from-the-binary';

  it('runs: the probe line reached the console', () => {
    const r = classifyProbe('/k', VERSION, `Run /init as init process\n${PROBE_OK_LINE}\nreboot: Power down\n`, true, '');
    assert.equal(r.outcome, 'runs');
    assert.equal(r.version, VERSION);
  });

  it('incompatible: the fp regs line, with the kernel, the CPU features and the fix', () => {
    const r = classifyProbe('/usr/bin/linux.uml', VERSION, AMX_CONSOLE, true, AMX_CPUINFO);
    assert.equal(r.outcome, 'incompatible');
    assert.equal(r.version, VERSION);
    assert.ok(r.outcome === 'incompatible');
    assert.equal(r.message, 'kernel /usr/bin/linux.uml cannot run userspace on this node ("userspace - ptrace set fp regs failed, errno = 14"): ' +
      "this host's XSAVE area is larger than the kernel's fixed FP register buffer (the CPU has AVX-512 and AMX). " +
      'Use a kernel that sizes its FP state from the host: Linux 7.2 does, 6.12 and older do not ' +
      "(umlmon's own kernel, built by hack/build-kernel.sh, is installed as /usr/local/lib/umlmon/linux)");
  });

  it('failed: a kernel without initrd support says so; anything else quotes the console', () => {
    const noInitrd = classifyProbe('/k', VERSION, 'VFS: Unable to mount root fs on unknown-block(0,0)\nKernel panic', true, '');
    assert.equal(noInitrd.outcome, 'failed');
    assert.match(noInitrd.outcome === 'failed' ? noInitrd.message : '', /CONFIG_BLK_DEV_INITRD/);
    const silent = classifyProbe('/k', '', '', false, '');
    assert.match(silent.outcome === 'failed' ? silent.message : '', /did not finish before its first userspace program ran: \(no console output\)/);
  });
});

describe('an incompatible kernel on the console', () => {
  it('is recognised line by line and in a summary read after the fact', () => {
    assert.deepEqual(classifyConsoleLine('userspace - ptrace set fp regs failed, errno = 14'),
      { type: 'kernel-incompatible', line: 'userspace - ptrace set fp regs failed, errno = 14' });
    const summary = summarizeConsole(AMX_CONSOLE);
    assert.equal(summary.kernelIncompatible, 'userspace - ptrace set fp regs failed, errno = 14');
    assert.equal(summary.panic, 'Attempted to kill init! exitcode=0x0000000b');
    assert.ok(FP_REGS_FAILURE.test('<3>userspace - ptrace set fp regs failed, errno = -14'));
  });

  it('names only the CPU features that enlarge the XSAVE area', () => {
    assert.deepEqual(largeXsaveFeatures(AMX_CPUINFO), ['AVX-512', 'AMX']);
    assert.deepEqual(largeXsaveFeatures('flags\t: fpu sse avx avx2 xsave\n'), []);
    assert.match(kernelIncompatibleMessage('/k', 'x', []), /larger than the kernel's fixed FP register buffer\. Use a kernel/);
  });
});

describe('jail libraries', () => {
  it('adds libgcc_s beside libc (glibc dlopens it for pthread_cancel when a threaded UML powers off)', () => {
    const linked = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'];
    assert.deepEqual(dlopenedLibraries(linked, (p) => p === '/lib/x86_64-linux-gnu/libgcc_s.so.1'), ['/lib/x86_64-linux-gnu/libgcc_s.so.1']);
    assert.deepEqual(dlopenedLibraries(linked, () => false), [], 'absent on the host: nothing to copy');
    assert.deepEqual(dlopenedLibraries([], () => true), [], 'a static kernel needs none');
  });
});

describe('node LAN names', () => {
  it('bridge and tap names fit the 15-byte interface name limit and differ per state directory', async () => {
    const { generatedTapName, lanBridgeName } = await import('../../src/runtime/netdev.ts');
    for (const name of [lanBridgeName('/var/lib/umlmon', 'lan0'), lanBridgeName('/var/lib/umlmon', 'x'.repeat(32)), generatedTapName('/var/lib/umlmon', 'abcdefghijkl', 'vec99')]) {
      assert.ok(name.length <= 15, `${name} is at most 15 bytes`);
      assert.match(name, /^[a-z0-9]+$/);
    }
    assert.notEqual(lanBridgeName('/var/lib/umlmon', 'lan0'), lanBridgeName('/tmp/other', 'lan0'));
    assert.equal(lanBridgeName('/var/lib/umlmon', 'lan0'), lanBridgeName('/var/lib/umlmon', 'lan0'), 'stable');
    assert.notEqual(generatedTapName('/s', 'm1', 'vec0'), generatedTapName('/s', 'm1', 'vec1'));
  });
});

describe('what the kernel has', () => {
  it('a disk the kernel could not lock, in its own words', async () => {
    const { diskFailureReason, missingDisks } = await import('../../src/runtime/device-check.ts');
    const console = [
      'F_SETLK failed, file already locked by pid 26572',
      "Failed to lock '/disks/ubd1.img', err = 11",
      "ubdb: Can't open \"/disks/ubd1.img\": errno = 11",
      'Failed to initialize ubd device 1 :(null)',
      'EXT4-fs (ubda): mounted filesystem',
    ].join('\n');
    assert.equal(diskFailureReason(console, 'ubd1'),
      'ubdb: Can\'t open "/disks/ubd1.img": errno = 11 (the image is locked by another process (another kernel has it open read-write)); ' +
      'F_SETLK failed, file already locked by pid 26572; Failed to initialize ubd device 1');
    assert.equal(diskFailureReason(console, 'ubd2'), undefined, 'nothing said about another disk');
    assert.deepEqual(missingDisks(['ubd0', 'ubd1'], ['ubda']), ['ubd1']);
  });

  it('a COW file made on another version of its image, in the kernel\'s words and what to do', async () => {
    const { diskFailureReason } = await import('../../src/runtime/device-check.ts');
    // As a 7.2 kernel prints it when busybox.ext4 was rebuilt under a machine's COW file.
    const console = [
      'Initializing software serial port version 1',
      'mtime mismatch (1796132319 vs 1796144317) of COW header vs backing file',
      "Failed to open '/disks/ubd0.cow', errno = 22",
      'ubda: Can\'t open "/disks/ubd0.cow": errno = 22',
      'Failed to initialize ubd device 0 :(null)',
      '/dev/root: Can\'t open blockdev',
      'VFS: Cannot open root device "/dev/ubda" or unknown-block(0,0): error -6',
    ].join('\n');
    const reason = diskFailureReason(console, 'ubd0') ?? '';
    assert.match(reason, /^ubda: Can't open "\/disks\/ubd0\.cow": errno = 22 \(invalid argument\); /);
    assert.match(reason, /mtime mismatch \(1796132319 vs 1796144317\) of COW header vs backing file: the disk's COW file was made on another version of its image/);
    assert.match(reason, /put the old image back, or delete the machine and create it again/);
    assert.match(reason, /; Failed to initialize ubd device 0$/);
  });

  it('status: a refused disk is attached false with the reason, and DevicesSynced says DeviceRefused', async () => {
    const { buildStatus } = await import('../../src/agent/status.ts');
    const cfg = { id: 'abc', name: 'default/web', kernel: '/k', memoryBytes: 64 * 2 ** 20, cmdline: [], defaultArgs: [],
      disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' as const }, { name: 'ubd1', image: 'data.img', mode: 'readWrite' as const }], interfaces: [] };
    const s = buildStatus({
      now: new Date(), nodeName: 'n',
      machine: { apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'web', namespace: 'default', uid: 'u', generation: 1 }, spec: { nodeName: 'n' } },
      desired: { id: 'abc', deleting: false, hasFinalizer: true, spec: { valid: true, config: cfg, state: 'Running', restartPolicy: 'Always', gracePeriodMs: 1000 } },
      actual: { id: 'abc', name: 'default/web', state: 'running', pid: 1, startTime: new Date(), bootTime: new Date(), config: cfg,
        disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readWrite', refused: 'locked by pid 1' }], interfaces: [], consoles: [] },
      plan: { actions: [], pendingRestart: [] }, exitAcknowledged: false, restartCount: 0,
    });
    assert.deepEqual(s.disks?.[1], { name: 'ubd1', image: 'data.img', mode: 'readWrite', attached: false, message: 'locked by pid 1' });
    const devices = s.conditions?.find((c) => c.type === 'DevicesSynced');
    assert.equal(devices?.status, 'False');
    assert.equal(devices?.reason, 'DeviceRefused');
    assert.equal(devices?.message, 'the kernel does not have ubd1 (locked by pid 1)');
  });
});
