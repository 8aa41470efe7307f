// Figures about a running machine without anything installed in the guest: what its kernel
// serves through mconsole `proc` (meminfo, loadavg, stat, vmstat, diskstats, uptime) and what
// the host sees of it (its cgroup's CPU time and memory, the storage I/O of its kernel process,
// its tap devices' counters). The parsers are pure; the readers are thin and never throw: a
// file a kernel does not serve (or a figure the host does not have) is simply absent.
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { MconsoleClient } from './mconsole/index.ts';

/** USER_HZ: /proc/stat counts in 1/100 s on every Linux ABI, UML included. */
const TICKS_PER_SECOND = 100;
const SECTOR_BYTES = 512;

export interface GuestCpu {
  /** Seconds per mode, from the aggregate "cpu" line of /proc/stat. */
  seconds: Record<string, number>;
  contextSwitches?: number;
  forks?: number;
  procsRunning?: number;
  procsBlocked?: number;
}

export interface GuestDisk {
  device: string;
  reads: number;
  readBytes: number;
  readSeconds: number;
  writes: number;
  writtenBytes: number;
  writeSeconds: number;
}

export interface GuestStats {
  /** /proc/meminfo in bytes, by field name (MemTotal, MemAvailable, ...). */
  memory?: Record<string, number>;
  load?: { load1: number; load5: number; load15: number; running: number; total: number };
  cpu?: GuestCpu;
  /** /proc/vmstat counters by name: those of VMSTAT_COUNTERS. */
  vmstat?: Record<string, number>;
  disks?: GuestDisk[];
  uptimeSeconds?: number;
}

export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?$/.exec(line.trim());
    if (m) out[m[1]!] = Number(m[2]) * (line.trim().endsWith('kB') ? 1024 : 1);
  }
  return out;
}

export function parseLoadavg(text: string): GuestStats['load'] {
  const m = /^([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\/(\d+)/.exec(text.trim());
  if (!m) return undefined;
  return { load1: Number(m[1]), load5: Number(m[2]), load15: Number(m[3]), running: Number(m[4]), total: Number(m[5]) };
}

const CPU_MODES = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;

export function parseStat(text: string): GuestCpu | undefined {
  let cpu: GuestCpu | undefined;
  for (const line of text.split('\n')) {
    const [key, ...fields] = line.trim().split(/\s+/);
    if (key === 'cpu') {
      cpu ??= { seconds: {} };
      CPU_MODES.forEach((mode, i) => {
        const v = fields[i];
        if (v !== undefined && /^\d+$/.test(v)) cpu!.seconds[mode] = Number(v) / TICKS_PER_SECOND;
      });
    } else if (cpu && fields.length === 1 && /^\d+$/.test(fields[0]!)) {
      const v = Number(fields[0]);
      if (key === 'ctxt') cpu.contextSwitches = v;
      else if (key === 'processes') cpu.forks = v;
      else if (key === 'procs_running') cpu.procsRunning = v;
      else if (key === 'procs_blocked') cpu.procsBlocked = v;
    }
  }
  return cpu;
}

/** The /proc/vmstat counters the guest's metrics use (guest-metrics.ts), of its ~180. */
export const VMSTAT_COUNTERS: ReadonlySet<string> = new Set(['pgfault', 'pgmajfault', 'pswpin', 'pswpout']);

/**
 * /proc/vmstat's "name value" lines, only the names in `only` when it is given. One line at a
 * time with indexOf, no regular expression: a hundred guests' files are ~18,000 lines a scrape,
 * and a match per line was the largest piece of JavaScript in a scrape under --lite-mode.
 */
export function parseVmstat(text: string, only?: ReadonlySet<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let start = 0; start < text.length;) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const space = text.indexOf(' ', start);
    if (space > start && space < end) {
      const name = text.slice(start, space);
      if (only === undefined || only.has(name)) {
        const digits = text.slice(space + 1, end).trim();
        if (/^\d+$/.test(digits)) out[name] = Number(digits);
      }
    }
    start = end + 1;
  }
  return out;
}

/** Block devices of /proc/diskstats, partitions and idle loop/ram devices left out. */
export function parseDiskstats(text: string): GuestDisk[] {
  const out: GuestDisk[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14) continue;
    const device = f[2]!;
    const n = f.slice(3).map(Number);
    if (n.some((v) => !Number.isFinite(v))) continue;
    // ubda1 is a partition of ubda; loop/ram devices nobody used are noise.
    if (/^ubd[a-z]+\d+$/.test(device)) continue;
    if (/^(loop|ram)\d+$/.test(device) && n[0] === 0 && n[4] === 0) continue;
    out.push({
      device,
      reads: n[0]!, readBytes: n[2]! * SECTOR_BYTES, readSeconds: n[3]! / 1000,
      writes: n[4]!, writtenBytes: n[6]! * SECTOR_BYTES, writeSeconds: n[7]! / 1000,
    });
  }
  return out;
}

/** The guest files read per sample, in the order they are asked for. */
export const GUEST_PROC_FILES = ['meminfo', 'loadavg', 'stat', 'vmstat', 'diskstats', 'uptime'] as const;

/**
 * Reads the guest's /proc through mconsole, one request at a time on the given client (its
 * own socket: the runtime's client and the reconciler's requests are never queued behind it).
 * A file the kernel does not serve is left out; the first timeout ends the sample (a guest
 * that does not answer one request will not answer the next).
 */
export async function readGuestStats(client: MconsoleClient): Promise<GuestStats> {
  const stats: GuestStats = {};
  for (const file of GUEST_PROC_FILES) {
    let text: string;
    try {
      text = await client.proc(file);
    } catch (error) {
      if ((error as Error).name === 'MconsoleTimeoutError') break;
      continue;
    }
    switch (file) {
      case 'meminfo': stats.memory = parseMeminfo(text); break;
      case 'loadavg': { const load = parseLoadavg(text); if (load) stats.load = load; break; }
      case 'stat': { const cpu = parseStat(text); if (cpu) stats.cpu = cpu; break; }
      case 'vmstat': stats.vmstat = parseVmstat(text, VMSTAT_COUNTERS); break;
      case 'diskstats': stats.disks = parseDiskstats(text); break;
      case 'uptime': { const up = Number(text.trim().split(/\s+/)[0]); if (Number.isFinite(up)) stats.uptimeSeconds = up; break; }
    }
  }
  return stats;
}

export interface NetCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxErrors: number;
  txErrors: number;
  rxDropped: number;
  txDropped: number;
}

export interface HostStats {
  /** The machine's cgroup: CPU time of everything in it (kernel, helpers, guest processes). */
  cpuSeconds?: number;
  memoryBytes?: number;
  memoryLimitBytes?: number;
  /** /proc/<pid>/io of the kernel process: bytes it made the host read from and write to storage. */
  readBytes?: number;
  writtenBytes?: number;
  /** Counters of host tap devices, by the guest interface they back (host view: rx = what the guest sent). */
  interfaces: { name: string; hostDevice: string; counters: NetCounters }[];
}

function readNumber(path: string): number | undefined {
  try {
    const v = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The directories to read a controller's files from. On v1 a machine has a directory in every
 * hierarchy, `<root>/<parent>/<id>`, and a root is named after the controllers mounted there
 * (`memory`, `cpu,cpuacct`): only that hierarchy's is read. Trying each in turn threw a dozen
 * ENOENT errors per machine and scrape, a tenth of a 100-guest scrape's CPU under --lite-mode.
 * Elsewhere (v2's one directory, a root named otherwise) every directory is tried, in order.
 */
export function controllerDirs(dirs: string[], controller: string): string[] {
  const own = dirs.filter((dir) => basename(dirname(dirname(dir))).split(',').includes(controller));
  return own.length > 0 ? own : dirs;
}

/** cpuacct.usage (v1, ns) or cpu.stat usage_usec (v2), from whichever directory has it. */
export function cgroupCpuSeconds(dirs: string[]): number | undefined {
  for (const dir of controllerDirs(dirs, 'cpuacct')) {
    const v1 = readNumber(join(dir, 'cpuacct.usage'));
    if (v1 !== undefined) return v1 / 1e9;
    try {
      const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'));
      if (m) return Number(m[1]) / 1e6;
    } catch {
      /* not this hierarchy */
    }
  }
  return undefined;
}

/** memory.usage_in_bytes / memory.limit_in_bytes (v1) or memory.current / memory.max (v2). */
export function cgroupMemory(dirs: string[]): { usage?: number; limit?: number } {
  for (const dir of controllerDirs(dirs, 'memory')) {
    const usage = readNumber(join(dir, 'memory.usage_in_bytes')) ?? readNumber(join(dir, 'memory.current'));
    if (usage === undefined) continue;
    const limit = readNumber(join(dir, 'memory.limit_in_bytes')) ?? readNumber(join(dir, 'memory.max'));
    return limit !== undefined ? { usage, limit } : { usage };
  }
  return {};
}

export function parseProcIo(text: string): { readBytes?: number; writtenBytes?: number } {
  const read = /^read_bytes:\s*(\d+)$/m.exec(text);
  const write = /^write_bytes:\s*(\d+)$/m.exec(text);
  return { ...(read ? { readBytes: Number(read[1]) } : {}), ...(write ? { writtenBytes: Number(write[1]) } : {}) };
}

export function readNetCounters(device: string, sysClassNet = '/sys/class/net'): NetCounters | undefined {
  const dir = join(sysClassNet, device, 'statistics');
  const get = (name: string): number | undefined => readNumber(join(dir, name));
  const rxBytes = get('rx_bytes');
  if (rxBytes === undefined) return undefined;
  return {
    rxBytes, txBytes: get('tx_bytes') ?? 0, rxPackets: get('rx_packets') ?? 0, txPackets: get('tx_packets') ?? 0,
    rxErrors: get('rx_errors') ?? 0, txErrors: get('tx_errors') ?? 0, rxDropped: get('rx_dropped') ?? 0, txDropped: get('tx_dropped') ?? 0,
  };
}

/** What the host knows of a machine now: cheap file reads, no request to the guest. */
export function readHostStats(machine: { pid?: number; cgroupDirs?: string[]; interfaces: { name: string; hostInterface?: string }[] }): HostStats {
  const stats: HostStats = { interfaces: [] };
  const dirs = machine.cgroupDirs ?? [];
  const cpu = cgroupCpuSeconds(dirs);
  if (cpu !== undefined) stats.cpuSeconds = cpu;
  const memory = cgroupMemory(dirs);
  if (memory.usage !== undefined) stats.memoryBytes = memory.usage;
  // v1 reports "no limit" as a huge page-rounded number; v2 as "max" (not a number: absent).
  if (memory.limit !== undefined && memory.limit < 2 ** 60) stats.memoryLimitBytes = memory.limit;
  if (machine.pid) {
    try {
      Object.assign(stats, parseProcIo(readFileSync(`/proc/${machine.pid}/io`, 'utf8')));
    } catch {
      /* gone, or no task I/O accounting */
    }
  }
  for (const iface of machine.interfaces) {
    if (!iface.hostInterface) continue;
    const counters = readNetCounters(iface.hostInterface);
    if (counters) stats.interfaces.push({ name: iface.name, hostDevice: iface.hostInterface, counters });
  }
  return stats;
}
