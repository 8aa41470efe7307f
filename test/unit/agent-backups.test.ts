import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { BackupScheduler, backupTimestamp, pruneBackups, runBackup } from '../../src/agent/backups.ts';
import type { BackupResult, Runtime } from '../../src/runtime/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'umlmon-backups-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Only backup() is used; it writes one file per disk into the destination, as the runtime does. */
function runtimeWritingBackups(error?: string): Runtime {
  return {
    async backup(_id: string, destinationDir: string): Promise<BackupResult> {
      const files = ['ubd0', 'ubd1'].map((disk) => {
        const destination = join(destinationDir, `${disk}.cow`);
        writeFileSync(destination, `data of ${disk}`);
        return { disk, source: `/jail/disks/${disk}.cow`, destination, bytes: 10 };
      });
      return { startedAt: new Date(), finishedAt: new Date(), pausedMs: 3, files, ...(error ? { error } : {}) };
    },
  } as unknown as Runtime;
}

describe('backups', () => {
  it('timestamps sort in time order and are file-name safe', () => {
    assert.equal(backupTimestamp(new Date('2026-01-02T03:04:05.678Z')), '20260102T030405Z');
  });

  it('files each disk copy under <ns>/<name>/<disk>/<timestamp>/ and keeps the newest N', async () => {
    const root = join(dir, 'b1');
    for (let i = 0; i < 4; i++) {
      const filed = await runBackup(runtimeWritingBackups(), 'id1', root, 'prod/db', 2, new Date(Date.UTC(2026, 0, 1, 3, 0, i)));
      assert.equal(filed.location, join(root, 'prod', 'db'));
      assert.equal(filed.result.files[0]!.destination, join(root, 'prod', 'db', 'ubd0', filed.timestamp, 'ubd0.cow'));
    }
    assert.deepEqual(readdirSync(join(root, 'prod', 'db', 'ubd0')), ['20260101T030002Z', '20260101T030003Z']);
    assert.deepEqual(readdirSync(join(root, 'prod', 'db', 'ubd1')), ['20260101T030002Z', '20260101T030003Z']);
    assert.equal(readFileSync(join(root, 'prod', 'db', 'ubd1', '20260101T030003Z', 'ubd1.cow'), 'utf8'), 'data of ubd1');
    assert.deepEqual(readdirSync(join(root, 'prod', 'db')).sort(), ['ubd0', 'ubd1'], 'no staging directory left');
  });

  it('a failed copy files nothing and prunes nothing', async () => {
    const root = join(dir, 'b2');
    const filed = await runBackup(runtimeWritingBackups('No space left on device'), 'id1', root, 'default/web', 1, new Date());
    assert.equal(filed.result.error, 'No space left on device');
    assert.deepEqual(readdirSync(join(root, 'default', 'web')), []);
  });

  it('prune ignores what it did not make', async () => {
    const d = join(dir, 'b3');
    for (const n of ['20250101T000000Z', '20250102T000000Z', 'notes']) mkdirSync(join(d, n), { recursive: true });
    assert.deepEqual(await pruneBackups(d, 1), ['20250101T000000Z']);
    assert.ok(existsSync(join(d, 'notes')));
  });

  it('the scheduler fires on its cron schedule and can be changed and removed', async () => {
    const due: string[] = [];
    const s = new BackupScheduler((k) => due.push(k), pino({ level: 'silent' }));
    s.sync('default/a', '* * * * * *'); // every second (node-cron's optional seconds field)
    s.sync('default/b', 'not a cron');
    assert.deepEqual(s.scheduled(), ['default/a']);
    const end = Date.now() + 3000;
    while (due.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    assert.ok(due.includes('default/a'));
    s.sync('default/a', undefined);
    assert.deepEqual(s.scheduled(), []);
    s.stop();
  });
});
