// A terminal a test drives as a person would: a tmux server of its own (-L, so other sessions'
// tmux servers are never touched), a window running one command, keys sent with send-keys and
// the screen read with capture-pane. kill() ends the server and everything it runs.
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export class Terminal {
  readonly socket: string;
  private started = false;

  constructor(name: string) {
    this.socket = `umlmon-test-${name}-${process.pid}`;
  }

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /**
   * Runs `command` (a shell command line) in a new window of `columns` x `rows`. When it ends,
   * its exit status is printed on the screen ("[exit N]", read by exitStatus) and the window stays.
   */
  open(window: string, command: string, columns = 120, rows = 40): void {
    const wrapped = `${command}; echo "[exit $?]"; sleep 3600`;
    if (!this.started) {
      this.tmux('new-session', '-d', '-s', window, '-x', String(columns), '-y', String(rows), wrapped);
      this.started = true;
    } else {
      this.tmux('new-window', '-d', '-n', window, wrapped);
    }
  }

  /** Resizes the window, as a person drags a terminal's corner (the program in it gets SIGWINCH). */
  resize(window: string, columns: number, rows: number): void {
    this.tmux('resize-window', '-t', window, '-x', String(columns), '-y', String(rows));
  }

  /** tmux key names (Enter, C-c, C-]) or literal text with literal = true. */
  keys(window: string, keys: string, literal = false): void {
    this.tmux('send-keys', '-t', window, ...(literal ? ['-l', keys] : [keys]));
  }

  type(window: string, line: string): void {
    this.keys(window, line, true);
    this.keys(window, 'Enter');
  }

  screen(window: string): string {
    return this.tmux('capture-pane', '-p', '-J', '-t', window, '-S', '-200');
  }

  /** Whether the window's command has ended, and its exit status. */
  exitStatus(window: string): number | undefined {
    const m = /^\[exit (\d+)\]$/m.exec(this.screen(window));
    return m ? Number(m[1]) : undefined;
  }

  /** Waits until the screen matches; throws with the screen when it does not in time. */
  async waitFor(window: string, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const text = this.screen(window);
      if (pattern.test(text)) return text;
      if (Date.now() > end) throw new Error(`terminal ${window}: ${pattern} not on screen within ${timeoutMs} ms; screen:\n${text}`);
      await sleep(100);
    }
  }

  async waitForExit(window: string, timeoutMs = 20_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const status = this.exitStatus(window);
      if (status !== undefined) return status;
      if (Date.now() > end) throw new Error(`terminal ${window}: the command did not end within ${timeoutMs} ms; screen:\n${this.screen(window)}`);
      await sleep(100);
    }
  }

  kill(): void {
    try {
      this.tmux('kill-server');
    } catch {
      /* not running */
    }
  }
}
