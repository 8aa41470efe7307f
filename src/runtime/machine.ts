// One machine as the runtime holds it in memory: its record (machine.json), what it is doing,
// and the sockets and watchers attached to it. Plus the two small waiting helpers its
// operations share.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsoleFollower } from './console.ts';
import { RuntimeError, errorText } from './errors.ts';
import type { MachineRecord } from './machine-record.ts';
import { MconsoleError, type MconsoleClient, type NotifyListener } from './mconsole/index.ts';
import type { MachinePaths } from './paths.ts';
import type { ExitWatcher } from './proc.ts';
import type { ExitStatusWatcher } from './monitor.ts';
import type { ExitInfo, MachineState, RuntimeLogger } from './types.ts';

/** A value that arrives once, which several callers may await (resolving again is a no-op). */
export class Once<T> {
  readonly promise: Promise<T>;
  resolved = false;
  private resolveFn!: (value: T) => void;
  constructor() {
    this.promise = new Promise<T>((resolve) => {
      this.resolveFn = resolve;
    });
  }
  resolve(value: T): void {
    if (this.resolved) return;
    this.resolved = true;
    this.resolveFn(value);
  }
}

/** Resolves true when the promise settles within ms, false otherwise. */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  const result = await Promise.race([promise.then(() => true), sleep(ms, false, { signal: timer.signal }).catch(() => false)]);
  timer.abort();
  return result;
}

export interface Machine {
  record: MachineRecord;
  paths: MachinePaths;
  state: MachineState;
  message?: string;
  client?: MconsoleClient;
  notify?: NotifyListener;
  console?: ConsoleFollower;
  exitWatcher?: ExitWatcher;
  /** An adopted kernel's exit, from its monitor's status file. */
  statusWatcher?: ExitStatusWatcher;
  child?: ChildProcess;
  lastPanic?: string;
  panicReported?: boolean;
  memoryFileFull?: string;
  /** The init this boot's kernel last said it runs ("Run X as init process"). */
  bootInit?: string;
  /** The console line that shows the kernel cannot run userspace on this host. */
  kernelIncompatible?: string;
  tmpfsBytes?: number;
  mconsoleUp: Once<string>;
  exited: Once<ExitInfo>;
  /**
   * Whether the kernel reads its console from the FIFO console.in: every kernel this runtime
   * starts does; one adopted from an older umlmon may not (known once, at adoption, so that
   * status() does not stat it for every machine on every list()).
   */
  consoleInput: boolean;
  /** Set while a graceful stop waits: the guest rebooted instead of shutting down. */
  rebootedWhileStopping?: Once<void>;
  syncWaiters: Set<() => void>;
  /** Serialises device and state operations on this machine. */
  busy: Promise<unknown>;
}

/** A failed mconsole operation as the runtime reports it: the machine, the operation, the kernel's words. */
export function operationError(m: Machine, operation: string, error: unknown): RuntimeError {
  if (error instanceof RuntimeError) return error;
  const cause = error instanceof MconsoleError ? `the kernel said "${error.reply}" (error ${error.code})` : errorText(error);
  return new RuntimeError('device-failed', m.record, `${operation} failed: ${cause}`, { cause: error });
}

/** What device and backup operations need from the runtime around them. */
export interface OperationContext {
  m: Machine;
  client: MconsoleClient;
  log: RuntimeLogger;
}
