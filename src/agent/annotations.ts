// The annotations a user (or `umlmon restart` / `backup`, or the kubectl plugin) sets on a
// UmlMachine to ask for something once, and the pure rules for when such a request is due.

/** Set by `umlmon restart` / `kubectl umlmon restart` (RFC 3339): restart the guest once (plan.ts). */
export const RESTART_REQUEST_ANNOTATION = 'umlmon.io/restart-requested-at';
/** Set by `umlmon backup` / `kubectl umlmon backup`: one backup now, besides any schedule. */
export const BACKUP_REQUEST_ANNOTATION = 'umlmon.io/backup-requested-at';

/** An annotation's RFC 3339 time in ms, or undefined when absent or not a time. */
export function requestTime(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : undefined;
}

/** Pure: a backup request is due when its time has come and no backup ran since it was made. */
export function backupRequestDue(value: string | undefined, lastBackupTime: string | undefined, now: number): boolean {
  const asked = requestTime(value);
  if (asked === undefined || asked > now) return false;
  const last = lastBackupTime !== undefined ? Date.parse(lastBackupTime) : Number.NaN;
  return !(Number.isFinite(last) && last >= asked);
}
