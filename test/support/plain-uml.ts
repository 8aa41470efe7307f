// A minimal, un-jailed UML launcher for the mconsole tests and benchmark: one kernel on a
// private copy of the test image, in its own temp dir and process group, with its console
// captured and its notify socket decoded. The product's launcher (jail, state dir, adoption)
// lives in src/runtime; this one exists so mconsole can be tested on its own.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenNotify } from '../../src/runtime/mconsole/index.ts';
import type { NotifyListener, NotifyMessage } from '../../src/runtime/mconsole/index.ts';
import { TEST_IMAGE, testImageRoot, umlKernel } from './uml.ts';

/** The fast-boot line (lpj fixed, no delay-loop calibration); ubd0, umid, uml_dir and notify are added per boot. */
export const FAST_BOOT_ARGS = ['root=/dev/ubda', 'con0=null,fd:1', 'con=null', 'lpj=42123264'];
/** The kernel prints this right before it execs init: it has finished booting (hot-plug is safe). */
export const KERNEL_BOOTED = /Run \/sbin\/init as init process/;

export interface PlainUmlOptions {
  mem?: string;
  /** Replaces FAST_BOOT_ARGS (e.g. to measure a boot without them). */
  bootArgs?: string[];
  /** The kernel binary (default: umlmon's own) and arguments only it needs. */
  kernel?: string;
  kernelArgs?: string[];
}

export interface ExitStatus { code: number | null; signal: NodeJS.Signals | null }

export class PlainUml {
  readonly dir: string;
  /** Where the guest's memory file lives (TMPDIR): tmpfs where the host has /dev/shm. */
  readonly memoryDir: string;
  readonly umid: string;
  readonly notifyPath: string;
  readonly image: string;
  readonly process: ChildProcess;
  /** Resolves when the kernel process has exited. */
  readonly exited: Promise<ExitStatus>;
  /** Every notify message so far, in arrival order. */
  readonly notifications: NotifyMessage[] = [];
  readonly notifyErrors: Error[] = [];
  #console = '';
  #exitStatus: ExitStatus | undefined;
  #listener: NotifyListener;
  #waiters = new Set<() => void>();

  constructor(options: PlainUmlOptions = {}) {
    const kernel = options.kernel ?? umlKernel();
    const imageRoot = testImageRoot();
    this.dir = mkdtempSync(join(tmpdir(), 'umlmon-mc-'));
    this.umid = `mc${process.pid}${Math.random().toString(36).slice(2, 8)}`;
    this.notifyPath = join(this.dir, 'notify');
    this.image = join(this.dir, 'root.img');
    copyFileSync(join(imageRoot, TEST_IMAGE), this.image);
    this.#listener = listenNotify(this.notifyPath, (m) => { this.notifications.push(m); this.#wake(); }, (e) => { this.notifyErrors.push(e); });
    const args = ['x86_64', '-R', kernel, `ubd0=${this.image}`, `mem=${options.mem ?? '48M'}`, `umid=${this.umid}`,
      `uml_dir=${this.dir}`, `mconsole=notify:${this.notifyPath}`, ...(options.bootArgs ?? FAST_BOOT_ARGS), ...(options.kernelArgs ?? [])];
    // The guest's memory file goes to TMPDIR: on tmpfs, as the runtime's jail has it (a file on
    // a disk-backed /tmp would make every page fault slower than a real machine's).
    this.memoryDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/umlmon-mc-') : this.dir;
    this.process = spawn('setarch', args, { cwd: this.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: this.memoryDir } });
    const collect = (chunk: Buffer) => { this.#console += chunk.toString('utf8'); this.#wake(); };
    this.process.stdout?.on('data', collect);
    this.process.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => { this.#exitStatus = { code, signal }; this.#wake(); resolve(this.#exitStatus); });
      this.process.on('error', (error) => { this.#console += `\n[spawn failed: ${error.message}]\n`; this.#exitStatus = { code: null, signal: null }; this.#wake(); resolve(this.#exitStatus); });
    });
  }

  get console(): string { return this.#console; }
  get exitStatus(): ExitStatus | undefined { return this.#exitStatus; }

  /** The first notify message at index >= `from` that matches; fails when the kernel exits first. */
  waitForNotify(match: (m: NotifyMessage) => boolean, options: { from?: number; timeoutMs?: number } = {}): Promise<NotifyMessage> {
    return this.#waitFor(`a notify message after #${options.from ?? 0}`, options.timeoutMs, () => this.notifications.slice(options.from ?? 0).find(match), true);
  }

  /** The mconsole socket path the kernel reported (waits for the first `socket` notify). */
  async mconsolePath(timeoutMs?: number): Promise<string> {
    const m = await this.waitForNotify((n) => n.type === 'socket', { timeoutMs });
    return (m as { path: string }).path;
  }

  waitForConsole(pattern: RegExp, timeoutMs?: number): Promise<string> {
    return this.#waitFor(`console output ${pattern}`, timeoutMs, () => pattern.exec(this.#console)?.[0], true);
  }

  waitForExit(timeoutMs?: number): Promise<ExitStatus> {
    return this.#waitFor('the kernel to exit', timeoutMs, () => this.#exitStatus, false);
  }

  #waitFor<T>(what: string, timeoutMs = 30_000, check: () => T | undefined, failOnExit: boolean): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const found = check();
        if (found !== undefined) { done(); resolve(found); return; }
        if (failOnExit && this.#exitStatus !== undefined) {
          done();
          reject(new Error(`UML ${this.umid} exited (${JSON.stringify(this.#exitStatus)}) while waiting for ${what}; console tail:\n${this.#console.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from UML ${this.umid}; console tail:\n${this.#console.slice(-2000)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.#waiters.delete(attempt); };
      this.#waiters.add(attempt);
      attempt();
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Kills the whole process group (UML's helpers too), waits for it, removes the temp dir. */
  async destroy(): Promise<void> {
    const pgid = this.process.pid;
    if (pgid !== undefined) {
      try { process.kill(-pgid, 'SIGKILL'); } catch { /* already gone */ }
      await this.waitForExit(10_000).catch(() => undefined);
      // UML's helper processes can outlive the main one by a second or so (uml-facts.md).
      for (let i = 0; i < 100 && groupAlive(pgid); i += 1) await new Promise((r) => setTimeout(r, 50));
    }
    this.#listener.close();
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.memoryDir, { recursive: true, force: true });
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts a kernel and waits until its mconsole is up (first `socket` notify). */
export async function bootPlainUml(options: PlainUmlOptions = {}): Promise<{ uml: PlainUml; socketPath: string }> {
  const uml = new PlainUml(options);
  try {
    const socketPath = await uml.mconsolePath(60_000);
    return { uml, socketPath };
  } catch (error) {
    await uml.destroy();
    throw error;
  }
}
