// Reads the kernel's console log as it grows (fs.watch, no polling) and recognises the few lines
// the runtime acts on. classifyConsoleLine is pure; ConsoleFollower is the thin effectful shell.
import { closeSync, fstatSync, openSync, readSync, watch, type FSWatcher } from 'node:fs';
import { FP_REGS_FAILURE } from './kernel-compat.ts';

export type ConsoleSignal =
  /** "Run <init> as init process": printed before each init the kernel tries, in its order. */
  | { type: 'booted'; init: string }
  | { type: 'lpj'; value: number }
  | { type: 'panic'; message: string }
  | { type: 'memory-file-full'; message: string }
  /** The kernel cannot run userspace on this host (kernel-compat.ts): a fact about the node. */
  | { type: 'kernel-incompatible'; line: string }
  | { type: 'sync-complete' };

/** Strips the "<6>" log-level prefix the kernel sometimes writes. */
function stripLevel(line: string): string {
  return line.replace(/^<\d>/, '').trimEnd();
}

export function classifyConsoleLine(raw: string): ConsoleSignal | undefined {
  const line = stripLevel(raw);
  // Printed right before the kernel execs init: it has finished its initcalls (uml-facts.md).
  const run = /^Run (\S+) as init process/.exec(line);
  if (run) return { type: 'booted', init: run[1]! };
  const lpj = /^Calibrating delay loop\.\.\. [\d.]+ BogoMIPS \(lpj=(\d+)\)/.exec(line);
  if (lpj) return { type: 'lpj', value: Number(lpj[1]) };
  const panic = /Kernel panic - not syncing: (.*)$/.exec(line);
  if (panic) return { type: 'panic', message: panic[1]! };
  if (/^Bus error - the host .* ran out of space/.test(line)) return { type: 'memory-file-full', message: line };
  if (/Emergency Sync complete/.test(line)) return { type: 'sync-complete' };
  if (FP_REGS_FAILURE.test(line)) return { type: 'kernel-incompatible', line };
  return undefined;
}

/** Everything the runtime learns from a console log read from the start (adoption, post-mortem). */
export interface ConsoleSummary {
  booted: boolean;
  lpj?: number;
  panic?: string;
  memoryFileFull?: string;
  kernelIncompatible?: string;
}

export function summarizeConsole(text: string): ConsoleSummary {
  const summary: ConsoleSummary = { booted: false };
  for (const line of text.split('\n')) {
    const signal = classifyConsoleLine(line);
    if (!signal) continue;
    if (signal.type === 'booted') summary.booted = true;
    else if (signal.type === 'lpj') summary.lpj = signal.value;
    else if (signal.type === 'panic') summary.panic ??= signal.message;
    else if (signal.type === 'memory-file-full') summary.memoryFileFull ??= signal.message;
    else if (signal.type === 'kernel-incompatible') summary.kernelIncompatible ??= signal.line;
  }
  return summary;
}

/**
 * One read buffer for every follower: reads are synchronous, so no two use it at once. (A
 * 64 KiB buffer per read was garbage the GC saw late: a hundred guests booting left tens of
 * MiB of it in the agent's RSS.)
 */
const readBuffer = Buffer.alloc(64 * 1024);

/** Calls onSignal for each recognised line appended to the file from `offset` on. */
export class ConsoleFollower {
  private readonly path: string;
  private readonly onSignal: (signal: ConsoleSignal) => void;
  private offset: number;
  private carry = '';
  private watcher: FSWatcher | undefined;
  private closed = false;

  constructor(path: string, offset: number, onSignal: (signal: ConsoleSignal) => void) {
    this.path = path;
    this.offset = offset;
    this.onSignal = onSignal;
    this.watcher = watch(path, { persistent: false }, () => this.drain());
    this.watcher.on('error', () => this.close());
    this.drain();
  }

  /** Reads what was appended since the last call. Safe to call any time (e.g. on exit). */
  drain(): void {
    if (this.closed) return;
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return;
    }
    try {
      const size = fstatSync(fd).size;
      if (size < this.offset) this.offset = 0; // truncated: start over
      const buf = readBuffer;
      while (this.offset < size) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        this.consume(buf.subarray(0, n).toString('utf8'));
      }
    } finally {
      closeSync(fd);
    }
  }

  private consume(text: string): void {
    const lines = (this.carry + text).split('\n');
    this.carry = lines.pop() ?? '';
    if (this.carry.length > 4096) this.carry = this.carry.slice(-4096);
    for (const line of lines) {
      const signal = classifyConsoleLine(line);
      if (signal) this.onSignal(signal);
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
