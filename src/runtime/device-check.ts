// What the kernel really has, as opposed to what it was told: a ubd device the kernel could not
// open (its image locked by another kernel, unreadable) is configured but absent from the
// guest's /proc/partitions; an interface whose transport failed has no entry under
// /proc/sys/net. The runtime asks after boot and after every hot-plug, and a device that is
// not there is reported with the kernel's own words from its console. Pure functions here; the
// mconsole queries are in runtime.ts and disks.ts.
import { diskDeviceNode } from './cmdline.ts';

/** errno values the ubd driver prints, in words. */
const ERRNO_WORDS: Record<string, string> = {
  '2': 'no such file',
  '11': 'the image is locked by another process (another kernel has it open read-write)',
  '13': 'permission denied',
  '22': 'invalid argument',
  '30': 'read-only file system',
};

/**
 * The console lines about one ubd device's failure, e.g. for ubd1: "F_SETLK failed, file
 * already locked by pid 123", "ubdb: Can't open \"/disks/ubd1.img\": errno = 11", "Failed to
 * initialize ubd device 1 :(null)". Undefined when the console says nothing about it.
 */
export function diskFailureReason(consoleText: string, diskName: string): string | undefined {
  const n = diskName.slice(3);
  const node = diskDeviceNode(diskName);
  const lines = consoleText.split('\n').map((l) => l.replace(/^<\d>/, '').trim());
  const failedAt = lines.findIndex((l) => new RegExp(`^Failed to initialize ubd device ${n}\\b`).test(l));
  const openAt = lines.findIndex((l) => l.startsWith(`${node}: Can't open`));
  const open = openAt >= 0 ? lines[openAt] : undefined;
  if (failedAt < 0 && open === undefined) return undefined;
  const parts: string[] = [];
  if (open !== undefined) {
    const errno = /errno = (\d+)/.exec(open)?.[1];
    parts.push(errno !== undefined && ERRNO_WORDS[errno] ? `${open} (${ERRNO_WORDS[errno]})` : open);
  }
  // The lock failure, or the COW file's complaint about its backing file, is printed just
  // before the device's own lines.
  // (Debian's 6.1 kernel prints no "Failed to initialize" line: then it is the open's.)
  const end = failedAt >= 0 ? failedAt : openAt;
  const before = lines.slice(Math.max(0, Math.min(end, openAt >= 0 ? openAt : end) - 4), end);
  const lock = before.find((l) => /F_SETLK failed|Failed to lock/.test(l));
  if (lock !== undefined) parts.push(lock);
  const cow = before.find((l) => /(mtime|size) mismatch .* of COW header vs backing file/.test(l));
  if (cow !== undefined) {
    parts.push(`${cow}: the disk's COW file was made on another version of its image, which has changed since; ` +
      'put the old image back, or delete the machine and create it again to start over from the new image (the guest\'s changes in the COW file are lost)');
  }
  if (failedAt >= 0) parts.push(lines[failedAt]!.replace(/ :\(null\)$/, ''));
  return parts.join('; ');
}

/** Disks the guest does not list, among those the runtime configured. */
export function missingDisks(diskNames: string[], partitions: string[]): string[] {
  return diskNames.filter((name) => !partitions.includes(diskDeviceNode(name)));
}

/** The console lines about one network device's failure, or undefined. */
export function interfaceFailureReason(consoleText: string, ifaceName: string): string | undefined {
  const mentions = consoleText.split('\n').map((l) => l.replace(/^<\d>/, '').trim())
    .filter((l) => new RegExp(`\\b${ifaceName}\\b`).test(l) && /fail|error|cannot|can't|unable|invalid/i.test(l));
  return mentions.length > 0 ? mentions.slice(-2).join('; ') : undefined;
}
