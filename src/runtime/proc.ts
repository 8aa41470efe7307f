// Host processes: identity (pid + start time, so a recycled pid is never mistaken for our kernel),
// process groups, and exit detection that works for processes we did not start.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Field 22 of /proc/<pid>/stat (starttime, clock ticks after boot); undefined if the pid is gone. */
export function readStartTicks(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseStatStartTicks(stat);
}

export function parseStatStartTicks(stat: string): string | undefined {
  // comm may contain spaces and parentheses: fields resume after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field 22 is rest[19].
  return rest[19];
}

/** Field 3 (state): 'Z' for a zombie. */
export function readProcessState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux ABI Node runs on

function bootTimeSeconds(): number {
  const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
  if (!m) throw new Error('/proc/stat has no btime line');
  return Number(m[1]);
}

export function startTimeFromTicks(ticks: string): Date {
  return new Date((bootTimeSeconds() + Number(ticks) / CLOCK_TICKS_PER_SECOND) * 1000);
}

/** Alive and the same process (same start time): not a recycled pid, not a zombie. */
export function isSameProcessAlive(pid: number, startTicks: string): boolean {
  return readStartTicks(pid) === startTicks && readProcessState(pid) !== 'Z';
}

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * Waits until no process of the group is left. Only used while stopping, where UML leaves one
 * helper for 1–2 s now and then (uml-facts.md), so a short bounded poll is fine here.
 */
export async function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/**
 * Calls onExit once when the process exits, for any pid, including kernels this process did not
 * start (after adoption, Node cannot wait for them and has no pidfd): `tail --pid` is a tiny
 * helper that exits when the pid does. It checks once a second (coreutils' default interval):
 * one wakeup per second per adopted machine, and an exit is seen within a second.
 */
export class ExitWatcher {
  private child: ChildProcess | undefined;
  private done = false;

  constructor(pid: number, onExit: () => void) {
    this.child = spawn('tail', [`--pid=${pid}`, '-s', '1', '-f', '/dev/null'], { stdio: 'ignore' });
    this.child.unref();
    const fire = (): void => {
      if (this.done) return;
      this.done = true;
      this.child = undefined;
      onExit();
    };
    this.child.on('exit', fire);
    this.child.on('error', fire);
  }

  close(): void {
    this.done = true;
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }
}
