// The guest's /proc as a real UML guest served it (test/fixtures/guest-proc), and the host's files.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cgroupCpuSeconds, cgroupMemory, controllerDirs, parseDiskstats, parseLoadavg, parseMeminfo, parseProcIo, parseStat, parseVmstat, readNetCounters, VMSTAT_COUNTERS } from '../../src/runtime/guest-stats.ts';
import { REPO_ROOT } from '../support/uml.ts';

const fixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test/fixtures/guest-proc', name), 'utf8');

describe('guest /proc', () => {
  test('meminfo in bytes', () => {
    const m = parseMeminfo(fixture('meminfo'));
    assert.equal(m.MemTotal, 57276 * 1024);
    assert.equal(m.MemAvailable, 51400 * 1024);
    assert.ok(m.MemFree! > 0 && m.MemFree! <= m.MemTotal!);
  });
  test('loadavg', () => {
    assert.deepEqual(parseLoadavg(fixture('loadavg')), { load1: 0, load5: 0, load15: 0, running: 1, total: 21 });
    assert.deepEqual(parseLoadavg('1.50 0.25 0.05 3/120 999\n'), { load1: 1.5, load5: 0.25, load15: 0.05, running: 3, total: 120 });
  });
  test('stat: the aggregate cpu line in seconds (USER_HZ 100), context switches, forks', () => {
    const cpu = parseStat(fixture('stat'))!;
    assert.equal(cpu.seconds.system, 0.15);
    assert.equal(cpu.seconds.idle, 233.76);
    assert.equal(cpu.contextSwitches, 728);
    assert.equal(cpu.forks, 31);
    assert.equal(cpu.procsRunning, 1);
  });
  test('vmstat counters', () => {
    const v = parseVmstat(fixture('vmstat'));
    assert.equal(typeof v.pgfault, 'number');
    assert.equal(typeof v.pgmajfault, 'number');
    assert.equal(v.nr_unstable, 0);
    assert.equal(Object.keys(v).length, fixture('vmstat').trim().split('\n').length, 'every line of the file');
    // What readGuestStats keeps: the counters the metrics use, the same values.
    const used = parseVmstat(fixture('vmstat'), VMSTAT_COUNTERS);
    assert.deepEqual(used, { pgfault: v.pgfault, pgmajfault: v.pgmajfault, pswpin: v.pswpin, pswpout: v.pswpout });
    // Lines that are not "name value" are skipped, with or without a final newline.
    assert.deepEqual(parseVmstat('a 1\nbroken\nb x\n\nc 3'), { a: 1, c: 3 });
  });
  test('diskstats: whole devices, bytes from 512-byte sectors, seconds from ms', () => {
    assert.deepEqual(parseDiskstats(fixture('diskstats')), [
      { device: 'ubda', reads: 103, readBytes: 3690 * 512, readSeconds: 0.076, writes: 3, writtenBytes: 4 * 512, writeSeconds: 0 },
    ]);
    assert.deepEqual(parseDiskstats(' 98 1 ubda1 1 0 2 0 0 0 0 0 0 0 0\n  7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n'), []);
  });
});

describe('host files', () => {
  test('cgroup v1 and v2 CPU and memory, /proc/<pid>/io, net statistics', () => {
    const dir = mkdtempSync(join(tmpdir(), 'umlmon-host-'));
    try {
      const v1cpu = join(dir, 'cpuacct'); mkdirSync(v1cpu);
      writeFileSync(join(v1cpu, 'cpuacct.usage'), '2500000000\n');
      const v1mem = join(dir, 'memory'); mkdirSync(v1mem);
      writeFileSync(join(v1mem, 'memory.usage_in_bytes'), '7806976\n');
      writeFileSync(join(v1mem, 'memory.limit_in_bytes'), '184549376\n');
      assert.equal(cgroupCpuSeconds([v1mem, v1cpu]), 2.5);
      assert.deepEqual(cgroupMemory([v1cpu, v1mem]), { usage: 7806976, limit: 184549376 });
      // As a v1 node lays them out, <root>/<parent>/<id> in every hierarchy: only the one
      // named after the controller is read (a decoy elsewhere would be taken otherwise).
      const layout = (root: string): string => { const d = join(dir, root, 'umlmon', 'm1'); mkdirSync(d, { recursive: true }); return d; };
      const [blkio, cpuacct, memory] = [layout('blkio'), layout('cpu,cpuacct'), layout('memory')];
      writeFileSync(join(blkio, 'cpuacct.usage'), '1\n');
      writeFileSync(join(blkio, 'memory.usage_in_bytes'), '1\n');
      writeFileSync(join(cpuacct, 'cpuacct.usage'), '3000000000\n');
      writeFileSync(join(memory, 'memory.usage_in_bytes'), '8192\n');
      writeFileSync(join(memory, 'memory.limit_in_bytes'), '9223372036854771712\n');
      assert.deepEqual(controllerDirs([blkio, cpuacct, memory], 'memory'), [memory]);
      assert.equal(cgroupCpuSeconds([blkio, cpuacct, memory]), 3);
      assert.deepEqual(cgroupMemory([blkio, cpuacct, memory]), { usage: 8192, limit: 9223372036854771712 });
      const v2 = join(dir, 'v2'); mkdirSync(v2);
      writeFileSync(join(v2, 'cpu.stat'), 'usage_usec 1500000\nuser_usec 1000000\n');
      writeFileSync(join(v2, 'memory.current'), '4096\n');
      writeFileSync(join(v2, 'memory.max'), 'max\n');
      assert.equal(cgroupCpuSeconds([v2]), 1.5);
      assert.deepEqual(cgroupMemory([v2]), { usage: 4096 });
      assert.deepEqual(controllerDirs([v2], 'memory'), [v2], 'v2: its one directory');
      assert.deepEqual(parseProcIo(readFileSync('/proc/self/io', 'utf8')).readBytes !== undefined, true);
      assert.deepEqual(parseProcIo('rchar: 1\nread_bytes: 4096\nwrite_bytes: 512\n'), { readBytes: 4096, writtenBytes: 512 });
      const lo = readNetCounters('lo');
      assert.ok(lo && lo.rxBytes >= 0 && lo.rxBytes === lo.txBytes, 'lo receives what it sends');
      assert.equal(readNetCounters('no-such-device-x'), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
