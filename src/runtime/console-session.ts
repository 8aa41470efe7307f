// One attachment to a guest's console (con0): its output is console.log as it grows (the kernel
// writes it, console-log.ts), its input the FIFO console.in the kernel reads. Both `umlmon
// console` on the node and the agent's control socket (for remote and kubectl sessions) attach
// through here, so one lock file decides the single writer for all of them: console.writer,
// holding the writer's pid and name; a writer that died leaves a lock the next one breaks.
// Read-only sessions take no lock and never write.
import { execFile } from 'node:child_process';
import { closeSync, constants, linkSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LogTail } from './console-log.ts';
import { readMachineRecord, type MachineRecord } from './machine-record.ts';
import { machinePaths, machineStateRoot, type MachinePaths } from './paths.ts';
import { isSameProcessAlive } from './proc.ts';

/** Who holds the console for writing. */
export interface ConsoleHolder {
  pid: number;
  holder: string;
  since: string;
}

export class ConsoleBusyError extends Error {
  override readonly name = 'ConsoleBusyError';
  readonly holder: ConsoleHolder;
  constructor(machine: string, holder: ConsoleHolder) {
    super(`the console of ${machine} is in use by ${holder.holder} (pid ${holder.pid}, since ${holder.since}); ` +
      'attach with --read-only to watch it, or ask them to detach (Ctrl-])');
    this.holder = holder;
  }
}

export class ConsoleUnavailableError extends Error {
  override readonly name = 'ConsoleUnavailableError';
}

function readHolder(path: string): ConsoleHolder | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<ConsoleHolder>;
    if (typeof value.pid === 'number' && typeof value.holder === 'string') return { pid: value.pid, holder: value.holder, since: String(value.since ?? '') };
  } catch {
    /* gone, or being written this instant */
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the writer lock for `holder` (by this process), or throws ConsoleBusyError naming the
 * live holder. The content is written before the lock appears (hard link of a private file), so
 * a reader never sees an empty lock. Returns the release function.
 */
export function acquireConsoleWriter(lockPath: string, machine: string, holder: string, pid = process.pid): () => void {
  const mine: ConsoleHolder = { pid, holder, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    const tmp = `${lockPath}.${process.pid}.${Math.random().toString(36).slice(2, 10)}`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(mine)}\n`);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, lockPath);
      return () => {
        // Only our own lock: a broken-and-retaken one belongs to someone else now.
        if (readHolder(lockPath)?.since === mine.since && readHolder(lockPath)?.pid === pid) {
          try { unlinkSync(lockPath); } catch { /* already gone */ }
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(tmp);
    }
    const current = readHolder(lockPath);
    if (current && pidAlive(current.pid)) throw new ConsoleBusyError(machine, current);
    // The holder died (or the file is garbage): move it aside and try again.
    try {
      renameSync(lockPath, `${lockPath}.stale.${process.pid}`);
      unlinkSync(`${lockPath}.stale.${process.pid}`);
    } catch {
      /* someone else broke it first */
    }
  }
  throw new ConsoleUnavailableError(`could not take the console lock ${lockPath}: it keeps changing hands`);
}

/** A machine of the state directory, by umid or by name ("default/web-1" or "web-1"). */
export function findMachine(stateDir: string, target: string): { record: MachineRecord; paths: MachinePaths } {
  const dir = machineStateRoot(stateDir);
  if (/^[a-z0-9]{1,12}$/.test(target)) {
    const record = readMachineRecord(join(dir, target, 'machine.json'));
    if (record) return { record, paths: machinePaths(stateDir, record.id) };
  }
  let ids: string[] = [];
  try {
    ids = readdirSync(dir);
  } catch {
    /* no machines at all */
  }
  const matches: MachineRecord[] = [];
  for (const id of ids) {
    let record: MachineRecord | undefined;
    try {
      record = readMachineRecord(join(dir, id, 'machine.json'));
    } catch {
      continue;
    }
    if (!record) continue;
    const key = keyOfRecord(record);
    if (record.name === target || key === target || (!target.includes('/') && key === `default/${target}`)) matches.push(record);
  }
  if (matches.length === 1) return { record: matches[0]!, paths: machinePaths(stateDir, matches[0]!.id) };
  if (matches.length > 1) throw new ConsoleUnavailableError(`${matches.length} machines are called '${target}' in ${dir} (${matches.map((m) => m.id).join(', ')}): give the umid`);
  throw new ConsoleUnavailableError(`no machine called '${target}' on this node (no such name or umid in ${dir})`);
}

/** "namespace/name" from the labels the agent puts on a machine (machine-config.ts), else its name. */
export function keyOfRecord(record: MachineRecord): string {
  const labels = record.config.labels ?? {};
  const ns = labels['umlmon.io/namespace'];
  const name = labels['umlmon.io/name'];
  return ns && name ? `${ns}/${name}` : record.name;
}

/** Why `record` has no console to attach to now, or undefined when it has one. */
export function consoleProblem(record: MachineRecord, paths: MachinePaths, machine: string, fifoExists: boolean): string | undefined {
  if (record.exit || !record.pid || !isSameProcessAlive(record.pid, record.startTicks)) {
    return `${machine} is not running (its kernel has exited${record.exit ? `: ${record.exit.panic ?? `code ${record.exit.code ?? 'unknown'}`}` : ''}); start it first`;
  }
  if (!fifoExists) return `${machine} was started without console input (${paths.consoleInput} is missing: started by an older umlmon); restart it to get an interactive console`;
  return undefined;
}

export interface ConsoleSessionOptions {
  machine: string;
  readOnly: boolean;
  /** Who attaches, as shown to a second writer ("root@node1 (pts/3)"). */
  holder: string;
  /** The lock's pid: the process whose death frees it (default: this one). */
  pid?: number;
  /** Called with console output as it is written, from the moment of attaching. */
  onData: (chunk: Buffer) => void;
}

/** Bytes typed while the guest does not read (paused) wait here, up to this much. */
const MAX_PENDING_INPUT = 64 * 1024;

/** The biggest terminal a resize may ask for (tmux's own limit is 10000). */
export const MAX_TERMINAL_SIDE = 10_000;

/** Why `rows` x `cols` is not a terminal size, or undefined. */
export function terminalSizeProblem(rows: unknown, cols: unknown): string | undefined {
  const ok = (n: unknown): boolean => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_TERMINAL_SIDE;
  return ok(rows) && ok(cols) ? undefined : `a terminal size is rows and cols, whole numbers from 1 to ${MAX_TERMINAL_SIDE}`;
}

/**
 * Sets the size of a running guest's console to the terminal's: TIOCSWINSZ on the pty its
 * kernel reads (jail.ts), reached through /proc/<pid>/fd/0 from any mount namespace; the kernel
 * hears it (SIGWINCH) and resizes the guest's tty, whose foreground job gets SIGWINCH in turn.
 * Node has no ioctl, so stty (coreutils) makes the call.
 */
export function resizeConsole(record: MachineRecord, machine: string, rows: number, cols: number): Promise<void> {
  const problem = terminalSizeProblem(rows, cols);
  if (problem) return Promise.reject(new ConsoleUnavailableError(problem));
  if (!record.consolePty) {
    return Promise.reject(new ConsoleUnavailableError(`${machine}'s console carries no terminal size (it was started without a pty console: no perl on the node, or an older umlmon); set it in the guest with stty rows ${rows} cols ${cols}`));
  }
  if (!isSameProcessAlive(record.pid, record.startTicks)) return Promise.reject(new ConsoleUnavailableError(`${machine} is not running`));
  return new Promise((resolve, reject) => {
    execFile('stty', ['-F', `/proc/${record.pid}/fd/0`, 'rows', String(rows), 'cols', String(cols)], { timeout: 5000 }, (error, _stdout, stderr) => {
      if (error) reject(new ConsoleUnavailableError(`could not resize ${machine}'s console: ${String(stderr).trim() || error.message}`));
      else resolve();
    });
  });
}

export class ConsoleSession {
  readonly readOnly: boolean;
  /** The console passes a terminal's size (a pty: resize() works). */
  readonly sized: boolean;
  private readonly record: MachineRecord | undefined;
  private readonly machine: string;
  private readonly tail: LogTail;
  private readonly release: (() => void) | undefined;
  private readonly input: number | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(paths: MachinePaths, options: ConsoleSessionOptions, record?: MachineRecord) {
    this.readOnly = options.readOnly;
    this.record = record;
    this.machine = options.machine;
    this.sized = record?.consolePty === true;
    if (!options.readOnly) {
      this.release = acquireConsoleWriter(paths.consoleWriterLock, options.machine, options.holder, options.pid);
      try {
        // Non-blocking: the kernel holds the FIFO's read end, so this opens at once, and a full
        // pipe (a paused guest) never blocks the caller.
        this.input = openSync(paths.consoleInput, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (error) {
        this.release();
        throw new ConsoleUnavailableError(`cannot open ${paths.consoleInput}: ${(error as Error).message}`);
      }
    }
    try {
      this.tail = new LogTail(paths.consoleLog, LogTail.sizeOf(paths.consoleLog), options.onData);
    } catch (error) {
      this.closeInput();
      throw new ConsoleUnavailableError(`cannot read ${paths.consoleLog}: ${(error as Error).message}`);
    }
  }

  /** Sends typed bytes to the guest. Returns false (and drops them) past the pending limit. */
  write(bytes: Buffer): boolean {
    if (this.closed || this.input === undefined) return false;
    if (this.pendingBytes + bytes.length > MAX_PENDING_INPUT) return false;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.flush();
    return true;
  }

  private flush(): void {
    if (this.input === undefined) return;
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      let n: number;
      try {
        n = writeSync(this.input, head);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') { this.pending = []; this.pendingBytes = 0; return; }
        this.retry ??= setTimeout(() => { this.retry = undefined; this.flush(); }, 50);
        return;
      }
      this.pendingBytes -= n;
      if (n < head.length) this.pending[0] = head.subarray(n);
      else this.pending.shift();
    }
  }

  private closeInput(): void {
    if (this.retry) clearTimeout(this.retry);
    if (this.input !== undefined) closeSync(this.input);
    this.release?.();
  }

  /** The guest's console takes the terminal's size; a read-only session never changes it. */
  resize(rows: number, cols: number): Promise<void> {
    if (this.readOnly) return Promise.reject(new ConsoleUnavailableError('a read-only session does not set the console\'s size'));
    if (!this.record) return Promise.reject(new ConsoleUnavailableError(`${this.machine}: no machine record to resize from`));
    return resizeConsole(this.record, this.machine, rows, cols);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tail.close();
    this.closeInput();
  }
}

/** Opens a session on a machine of the state directory, with every check a person needs. */
export function openConsole(stateDir: string, target: string, options: Omit<ConsoleSessionOptions, 'machine'>, fifoExists: (path: string) => boolean): { session: ConsoleSession; machine: string; record: MachineRecord } {
  const { record, paths } = findMachine(stateDir, target);
  const machine = keyOfRecord(record);
  const problem = consoleProblem(record, paths, machine, fifoExists(paths.consoleInput));
  if (problem) throw new ConsoleUnavailableError(problem);
  return { session: new ConsoleSession(paths, { ...options, machine }, record), machine, record };
}
