// The online backup primitive: flush, pause, sparse copy of the writable files, resume. The
// guest resumes whatever happens to the copy; a guest the user had paused stays paused.
import { execFile } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { util } from '../builtins.ts';
import { describeMachine, errorText } from './errors.ts';
import { within, type OperationContext } from './machine.ts';
import { MconsoleError } from './mconsole/index.ts';
import type { BackupResult } from './types.ts';

const execFileAsync = util.promisify(execFile);

export interface BackupFile {
  disk: string;
  source: string;
  destination: string;
}

export async function backupMachine(ctx: OperationContext, files: BackupFile[], destinationDir: string): Promise<BackupResult> {
  const { m, client, log } = ctx;
  const id = m.record.id;
  const failed = (what: string): string => `backup of machine ${describeMachine(m.record)} failed: ${what}`;
  const startedAt = new Date();
  try {
    mkdirSync(destinationDir, { recursive: true });
  } catch (error) {
    // Before pausing anything: the guest is not touched.
    return { startedAt, finishedAt: new Date(), pausedMs: 0, files: [], error: failed(`cannot create ${destinationDir}: ${errorText(error)}`) };
  }
  const wasPaused = m.state === 'paused';
  const result: BackupResult = { startedAt, finishedAt: startedAt, pausedMs: 0, files: [] };
  if (!wasPaused) {
    // Flush before pausing: a stopped UML kernel runs no work queues, so an emergency sync asked
    // for while stopped completes only after `go` (seen here: "Emergency Sync complete" appears
    // on the console after go, not before).
    const synced = new Promise<void>((ok) => m.syncWaiters.add(ok));
    await client.sysrq('s').catch((error) => log.warn({ machine: id, err: errorText(error) }, 'sysrq s failed'));
    if (!(await within(synced, 5000))) log.warn({ machine: id }, 'no "Emergency Sync complete" on the console within 5 s; copying anyway');
  }
  const pausedAt = Date.now();
  try {
    if (!wasPaused) {
      try {
        await client.stop();
      } catch (error) {
        if (!(error instanceof MconsoleError && /already stopped/i.test(error.reply))) throw error;
      }
    }
    for (const file of files) {
      // --no-target-directory: a directory in the way is an error, not a place to copy into.
      await execFileAsync('cp', ['--sparse=always', '--reflink=auto', '--no-target-directory', file.source, file.destination]);
      result.files.push({ ...file, bytes: statSync(file.destination).size });
    }
  } catch (error) {
    result.error = failed(errorText(error));
  } finally {
    if (!wasPaused) await resumeAfterBackup(ctx);
    result.pausedMs = Date.now() - pausedAt;
  }
  result.finishedAt = new Date();
  return result;
}

/** The guest must run again whatever happened to the copy: retry `go` a few times. */
async function resumeAfterBackup({ m, client, log }: OperationContext): Promise<void> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      await client.go();
      return;
    } catch (error) {
      if (error instanceof MconsoleError && /not stopped/i.test(error.reply)) return;
      log.error({ machine: m.record.id, attempt, err: errorText(error) }, 'could not resume the guest after a backup');
      await sleep(200 * attempt);
    }
  }
  m.message = 'the guest could not be resumed after a backup: mconsole `go` failed five times';
}
