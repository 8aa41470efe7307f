// Scheduled online backups: node-cron says when, the reconciler runs it (so that a backup never
// overlaps a hot-plug or a shutdown of the same machine), the runtime does the pause/sync/copy/
// resume, and this file files the copies as backupDir/<ns>/<name>/<disk>/<timestamp>/ and keeps
// the newest `retain` per disk.
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { nodeCron } from '../api/cron.ts';
import type { BackupResult, Runtime } from '../runtime/types.ts';
import type { MachineKey } from './source.ts';

export const DEFAULT_RETAIN = 3;

interface ScheduledBackup {
  schedule: string;
  task: { stop(): void | Promise<void>; destroy(): void | Promise<void> };
}

/** One cron task per machine with spec.backup; due backups are handed to `onDue` (which enqueues the key). */
export class BackupScheduler {
  readonly #tasks = new Map<MachineKey, ScheduledBackup>();
  readonly #onDue: (key: MachineKey) => void;
  readonly #logger: Logger;

  constructor(onDue: (key: MachineKey) => void, logger: Logger) {
    this.#onDue = onDue;
    this.#logger = logger;
  }

  /** Makes the key's task match its schedule (undefined removes it). Cheap when unchanged. */
  sync(key: MachineKey, schedule: string | undefined): void {
    const current = this.#tasks.get(key);
    if (current?.schedule === schedule) return;
    if (current) {
      void current.task.destroy();
      this.#tasks.delete(key);
    }
    if (schedule === undefined) return;
    const cron = nodeCron();
    if (!cron.validate(schedule)) {
      // validateMachine refuses these; this is the belt to its braces.
      this.#logger.warn({ machine: key, schedule }, 'backup schedule is not a valid cron expression; no backups scheduled');
      return;
    }
    const task = cron.schedule(schedule, () => this.#onDue(key), { name: `backup ${key}`, noOverlap: true });
    this.#tasks.set(key, { schedule, task });
  }

  scheduled(): MachineKey[] {
    return [...this.#tasks.keys()];
  }

  stop(): void {
    for (const { task } of this.#tasks.values()) void task.destroy();
    this.#tasks.clear();
  }
}

/** "2026-01-01T03:00:00.123Z" → "20260101T030000Z": sortable, and a valid file name everywhere. */
export function backupTimestamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export interface FiledBackup {
  result: BackupResult;
  /** backupDir/<ns>/<name> */
  location: string;
  timestamp: string;
}

/**
 * Runs the runtime's backup into a staging directory, then files each copy under its disk.
 * A failed copy is reported in result.error (the runtime resumed the guest anyway).
 */
export async function runBackup(runtime: Runtime, id: string, backupDir: string, key: MachineKey, retain: number, now: Date): Promise<FiledBackup> {
  const [namespace, name] = splitKey(key);
  const location = join(backupDir, namespace, name);
  const timestamp = backupTimestamp(now);
  const staging = join(location, `.staging-${timestamp}`);
  await mkdir(staging, { recursive: true });
  try {
    const result = await runtime.backup(id, staging);
    if (result.error === undefined) {
      for (const file of result.files) {
        const dir = join(location, file.disk, timestamp);
        await mkdir(dir, { recursive: true });
        const destination = join(dir, basename(file.destination));
        await rename(file.destination, destination);
        file.destination = destination;
      }
      for (const disk of new Set(result.files.map((f) => f.disk))) await pruneBackups(join(location, disk), retain);
    }
    return { result, location, timestamp };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Keeps the newest `retain` timestamp directories in a disk's backup directory. */
export async function pruneBackups(diskDir: string, retain: number): Promise<string[]> {
  const entries = await readdir(diskDir, { withFileTypes: true }).catch(() => []);
  const stamps = entries.filter((e) => e.isDirectory() && /^\d{8}T\d{6}Z$/.test(e.name)).map((e) => e.name).sort();
  const doomed = stamps.slice(0, Math.max(0, stamps.length - Math.max(1, retain)));
  for (const stamp of doomed) await rm(join(diskDir, stamp), { recursive: true, force: true });
  return doomed;
}

function splitKey(key: MachineKey): [string, string] {
  const slash = key.indexOf('/');
  return slash < 0 ? ['default', key] : [key.slice(0, slash), key.slice(slash + 1)];
}
