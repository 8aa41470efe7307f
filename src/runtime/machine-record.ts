// machine.json: what was started, so a fresh runtime can find and verify the kernel again.
// Written atomically (tmp + rename); the `umlmon mconsole` CLI reads `name` and `mconsoleSocket`.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonIfExists, writeJsonAtomic } from './atomic-file.ts';
import { machineStateRoot } from './paths.ts';
import type { AttachedDisk, AttachedInterface, MachineConfig } from './types.ts';

export interface MachineRecord {
  id: string;
  name: string;
  /** Host pid of the kernel's main process (also its process group and session id). */
  pid: number;
  /** ISO time the process started, from /proc/<pid>/stat. */
  startTime: string;
  /** Raw starttime field of /proc/<pid>/stat: pid + this identify the process across restarts. */
  startTicks: string;
  /**
   * The jail's monitor: the kernel's parent, which writes its wait status to exit-status when
   * it exits (jail.ts). Absent in records of runtimes before it, and when it failed to start.
   */
  monitorPid?: number;
  monitorStartTicks?: string;
  config: MachineConfig;
  /** Host path of the mconsole socket, as the kernel reported it (translated out of the jail). */
  mconsoleSocket?: string;
  notifySocket: string;
  jailDir: string;
  consoleLog: string;
  uid: number;
  gid: number;
  /** cgroup directories the kernel runs in (empty where the node has none). */
  cgroupDirs: string[];
  disks: AttachedDisk[];
  interfaces: AttachedInterface[];
  kernelVersion?: string;
  bootTime?: string;
  /** con0 is a pty (jail.ts): `stty rows R cols C` on the kernel's fd 0 resizes the guest's console. */
  consolePty?: boolean;
  /** Paused with mconsole `stop` by the runtime. */
  paused?: boolean;
  exit?: { code: number | null; signal: string | null; panic?: string; kernelIncompatible?: string; at: string };
}

export function writeMachineRecord(path: string, record: MachineRecord): void {
  writeJsonAtomic(path, record);
}

export function readMachineRecord(path: string): MachineRecord | undefined {
  // Written without fsync (atomic-file.ts): a record a host crash tore describes a dead kernel.
  return readJsonIfExists<MachineRecord>(path, { tornIsAbsent: true });
}

/** Every machine directory's record; unreadable ones are reported, not fatal. */
export function readAllMachineRecords(stateDir: string): { records: MachineRecord[]; problems: { id: string; error: string }[] } {
  const records: MachineRecord[] = [];
  const problems: { id: string; error: string }[] = [];
  let ids: string[];
  try {
    ids = readdirSync(machineStateRoot(stateDir));
  } catch {
    return { records, problems };
  }
  for (const id of ids) {
    try {
      const record = readMachineRecord(join(machineStateRoot(stateDir), id, 'machine.json'));
      if (record) records.push(record);
    } catch (error) {
      problems.push({ id, error: (error as Error).message });
    }
  }
  return { records, problems };
}
