// A lock shared by every process on the node that touches the shared directory (several agents,
// the CLI): an O_EXCL lock file holding the owner's pid. flock is avoided on purpose (the state
// directory may be on a filesystem where it is not reliable, and Node has no flock). A lock whose
// owner is gone is broken, so a SIGKILLed agent cannot wedge the node.
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockOptions {
  timeoutMs?: number;
}

function ownerAlive(lockPath: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(lockPath, 'utf8').trim());
  } catch {
    return true; // vanished or unreadable this instant: treat as held and retry
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryAcquire(lockPath: string): boolean {
  let fd: number;
  try {
    fd = openSync(lockPath, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Breaks a lock whose owner died: rename first, so two breakers cannot both succeed. */
function breakStaleLock(lockPath: string): void {
  const aside = `${lockPath}.stale.${process.pid}`;
  try {
    renameSync(lockPath, aside);
  } catch {
    return;
  }
  // Another process may have broken and re-taken it between our check and the rename.
  if (ownerAlive(aside)) {
    try {
      renameSync(aside, lockPath);
    } catch {
      /* the new owner's lock is gone either way; it will notice nothing */
    }
    return;
  }
  unlinkSync(aside);
}

export async function withLock<T>(lockPath: string, fn: () => T | Promise<T>, options: LockOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let delay = 2;
  while (!tryAcquire(lockPath)) {
    if (!ownerAlive(lockPath)) {
      breakStaleLock(lockPath);
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the lock ${lockPath} (held by another umlmon process)`);
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lockPath);
    } catch {
      /* already gone */
    }
  }
}
