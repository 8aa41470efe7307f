// The once-only requests a user sets as annotations (src/agent/annotations.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backupRequestDue, requestTime } from '../../src/agent/annotations.ts';

describe('backup requests (umlmon.io/backup-requested-at)', () => {
  it('due once its time has come and until a backup has run since', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    assert.equal(backupRequestDue(undefined, undefined, now), false);
    assert.equal(backupRequestDue('not a time', undefined, now), false);
    assert.equal(backupRequestDue('2026-01-01T11:59:00Z', undefined, now), true);
    assert.equal(backupRequestDue('2026-01-01T11:59:00Z', '2026-01-01T11:00:00Z', now), true);
    assert.equal(backupRequestDue('2026-01-01T11:59:00Z', '2026-01-01T11:59:30Z', now), false);
    assert.equal(backupRequestDue('2026-01-01T12:05:00Z', undefined, now), false, 'not before its time');
    assert.equal(requestTime('2026-01-01T12:00:00Z'), now);
  });
});
