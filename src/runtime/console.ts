// Reads the kernel's console log as it grows (fs.watch, no polling) and recognises the few lines
// the runtime acts on. classifyConsoleLine is pure; ConsoleFollower is the thin effectful shell.
import { LogTail, rotateConsoleLog, shouldRotate } from './console-log.ts';
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
  // Not anchored: printk does not start a new line after what the guest wrote to its console
  // (a shell's prompt), so the message can follow it on the same line.
  const busError = /Bus error - the host .* ran out of space.*$/.exec(line);
  if (busError) return { type: 'memory-file-full', message: busError[0] };
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

export interface ConsoleRotation {
  /** Rotate once the log is larger than this (console-log.ts); 0: never. */
  maxBytes: number;
  /** Whether the writer appends (checked by the caller, once per kernel). */
  canRotate: () => boolean;
}

/** Calls onSignal for each recognised line appended to the file from `offset` on; rotates it. */
export class ConsoleFollower {
  private readonly path: string;
  private readonly tail: LogTail;
  private readonly rotation: ConsoleRotation | undefined;
  private readonly onSignal: (signal: ConsoleSignal) => void;
  private carry = '';

  constructor(path: string, offset: number, onSignal: (signal: ConsoleSignal) => void, rotation?: ConsoleRotation) {
    this.path = path;
    this.onSignal = onSignal;
    this.rotation = rotation;
    this.tail = new LogTail(path, offset, (chunk) => this.consume(chunk.toString('utf8')));
    this.drain();
  }

  /** Reads what was appended since the last call, then rotates a log past its limit. Safe to call any time (e.g. on exit). */
  drain(): void {
    this.tail.drain();
    if (!this.rotation) return;
    let size: number;
    try {
      size = LogTail.sizeOf(this.path);
    } catch {
      return;
    }
    if (!shouldRotate(size, this.rotation.maxBytes) || !this.rotation.canRotate()) return;
    this.tail.drain(); // whatever came in since: read before it moves to console.log.1
    try {
      rotateConsoleLog(this.path);
    } catch {
      return; // tried again on the next write
    }
    this.tail.drain(); // sees the truncation: reads from the new start
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
    this.tail.close();
  }
}
