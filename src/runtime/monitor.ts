// The agent's side of the jail's monitor (jail.ts): reading the kernel's pid and its wait
// status from the machine's monitor/ directory, and hearing the exit of a kernel this runtime
// did not start (after an agent restart) from that directory with inotify: no polling, no
// helper process, nothing woken while the guest runs.
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseExitStatus, parseKernelPid, type WaitStatus } from './exit-status.ts';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readKernelPid(path: string): number | undefined {
  const text = readText(path);
  return text === undefined ? undefined : parseKernelPid(text);
}

export function readWaitStatus(path: string): WaitStatus | undefined {
  const text = readText(path);
  return text === undefined ? undefined : parseExitStatus(text);
}

/**
 * The kernel's pid, once the monitor has written it (right after it forks the kernel, a few
 * milliseconds after exec). Undefined when the monitor exited without starting a kernel (a
 * jail step failed) or nothing came within timeoutMs.
 */
export async function waitForKernelPid(path: string, monitorExited: () => boolean, timeoutMs: number): Promise<number | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const pid = readKernelPid(path);
    if (pid !== undefined) return pid;
    if (monitorExited() || performance.now() > deadline) return readKernelPid(path);
    await sleep(delay);
  }
}

/** Calls onExit once with the wait status, when the monitor writes it into its directory. */
export class ExitStatusWatcher {
  private readonly statusFile: string;
  private readonly onExit: (status: WaitStatus) => void;
  private watcher: FSWatcher | undefined;
  private done = false;

  constructor(monitorDir: string, statusFile: string, onExit: (status: WaitStatus) => void) {
    this.statusFile = statusFile;
    this.onExit = onExit;
    this.watcher = watch(monitorDir, { persistent: false }, (_event, file) => {
      if (file === null || file === basename(statusFile)) this.check();
    });
    this.watcher.on('error', () => this.check());
    this.check(); // written before the watch began
  }

  private check(): void {
    if (this.done) return;
    const status = readWaitStatus(this.statusFile);
    if (status === undefined) return;
    this.close();
    this.onExit(status);
  }

  close(): void {
    this.done = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
