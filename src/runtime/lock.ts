// A lock shared by every process on the node that touches the shared directory (several agents,
// the CLI): an O_EXCL lock file holding the owner's pid. flock is avoided on purpose (the state
// directory may be on a filesystem where it is not reliable, and Node has no flock). A lock whose
// owner is gone is broken, so a SIGKILLed agent cannot wedge the node.
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
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

/**
 * Creates the lock file with its content in one step: the pid goes into a private temp file that
 * is then hard-linked to the lock path (link fails with EEXIST when the lock is held). A reader
 * never sees an empty lock file, which it would take for a dead owner's.
 */
function tryAcquire(lockPath: string): boolean {
  const tmp = `${lockPath}.${process.pid}.${Math.random().toString(36).slice(2, 10)}`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, lockPath);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(tmp);
  }
}

/** Breaks a lock whose owner died: rename first, so two breakers cannot both succeed. */
function breakStaleLock(lockPath: string): void {
  const aside = `${lockPath}.stale.${process.pid}`;
  try {
    renameSync(lockPath, aside);
  } catch {
    return;
  }
  // Another process may have broken and re-taken it between our check and the rename: put a
  // live owner's lock back (link: never over a lock taken in the meantime).
  if (ownerAlive(aside)) {
    try {
      linkSync(aside, lockPath);
    } catch {
      /* a lock was taken in the meantime; the live owner's stays valid in practice */
    }
  }
  unlinkSync(aside);
}

/** Holders and waiters of each lock in this process, in order. */
const queues = new Map<string, Promise<void>>();

/**
 * Runs fn holding the lock. Callers in this process queue for it in order (a hundred machines
 * starting at once would otherwise find the lock file taken by one another and back off by up
 * to 50 ms each time); the lock file is what serialises this process against the others.
 */
export async function withLock<T>(lockPath: string, fn: () => T | Promise<T>, options: LockOptions = {}): Promise<T> {
  const previous = queues.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const mine = previous.then(() => held);
  queues.set(lockPath, mine);
  await previous;
  try {
    return await withFileLock(lockPath, fn, options);
  } finally {
    release();
    if (queues.get(lockPath) === mine) queues.delete(lockPath);
  }
}

async function withFileLock<T>(lockPath: string, fn: () => T | Promise<T>, options: LockOptions): Promise<T> {
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
