// The wait status the jail's monitor writes when the kernel exits (jail.ts): the shell's $?,
// which is the exit code, or 128+N when signal N ended the process. Pure.
import { constants } from 'node:os';

/** Number → name; the first name wins where several share a number (SIGABRT, not SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

export interface WaitStatus {
  code: number | null;
  signal: string | null;
}

/** "0\n" → code 0; "134\n" → SIGABRT; anything else → undefined (not a status). */
export function parseExitStatus(text: string): WaitStatus | undefined {
  const m = /^\s*(\d{1,3})\s*$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  if (n > 255) return undefined;
  const signal = n > 128 ? SIGNAL_NAMES.get(n - 128) : undefined;
  return signal ? { code: null, signal } : { code: n, signal: null };
}

/**
 * The kernel's pid as the monitor wrote it, or undefined when it has not (yet). The monitor
 * writes it without a rename, in one write ending in a newline: a read that races the write
 * sees no newline yet, and no prefix of the pid is taken for a pid.
 */
export function parseKernelPid(text: string): number | undefined {
  const m = /^(\d+)\n$/.exec(text);
  return m ? Number(m[1]) : undefined;
}
