// Host mounts under a directory, to make sure nothing is left mounted before a directory is
// deleted (a bind-mounted image would otherwise be deleted through its mount point).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Mount points at or under `dir` in /proc/mounts text, deepest first. Octal escapes decoded. */
export function mountsUnder(mountsText: string, dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mountsText
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

export function hostMountsUnder(dir: string): string[] {
  return mountsUnder(readFileSync('/proc/self/mounts', 'utf8'), dir);
}

/** Unmounts everything under dir on the host; returns what could not be unmounted. */
export function unmountAllUnder(dir: string): string[] {
  const left: string[] = [];
  for (const mountPoint of hostMountsUnder(dir)) {
    try {
      execFileSync('umount', ['--lazy', mountPoint], { stdio: 'ignore' });
    } catch {
      left.push(mountPoint);
    }
  }
  return left;
}
