// `umlmon console [--read-only] <machine>`: the terminal attached to a guest's console (con0),
// as `virtctl console` and `vmctl console` do. It asks the running agent over its control
// socket (unix, or tcp with the token: how remote and kubectl sessions get in); when no agent
// answers, it attaches directly through the state directory. Either way the kernel's own files
// are used (console-session.ts): what the guest writes is read from console.log as it grows,
// what is typed goes into the FIFO the kernel reads, and one writer at a time holds the lock.
// Ctrl-] detaches; the guest keeps running.
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import type { Socket } from 'node:net';
import { CONFIG_FLAGS_HELP } from '../../agent/config.ts';
import { controlConsole, controlRequest, ControlUnavailableError } from '../../agent/control.ts';
import { ConsoleBusyError, ConsoleUnavailableError, openConsole } from '../../runtime/console-session.ts';
import { isSameProcessAlive } from '../../runtime/proc.ts';
import { loadProcessConfig } from '../process-config.ts';

/** Ctrl-]: telnet's and virtctl's escape character. */
export const DETACH_BYTE = 0x1d;

const USAGE = `usage: umlmon console [--read-only] [--holder NAME] [config options] <machine>

Attaches this terminal to a guest's console (con0): what the guest writes is
shown, what you type goes to the guest. Detach with Ctrl-] (the guest keeps
running). The machine is namespace/name, a name in "default", or a umid.

One session at a time may type: a second one is refused with the name of the
holder, unless it asks for --read-only (watch only, typing is ignored).

It goes through the running agent's control socket (--control: unix:///path,
or tcp://host:port with --control-token-file); when no agent answers there, it
attaches directly through the state directory (--state-dir).

Everything the console shows is also in <state-dir>/machines/<umid>/console.log
(rotated to console.log.1 past 4 MiB), whether or not anyone is attached.

The guest does not learn this terminal's size: UML's console channel is a FIFO
and a file, which carry none. Set it in the guest (stty rows R cols C); the
banner prints the command for this terminal.

  --read-only     watch without typing; does not need the console to be free
  --holder NAME   how a second session sees you (default user@host)

${CONFIG_FLAGS_HELP}`;

/** Splits typed bytes at the detach key: what to send, and whether to detach after it. */
export function splitAtDetach(bytes: Buffer): { send: Buffer; detach: boolean } {
  const at = bytes.indexOf(DETACH_BYTE);
  return at < 0 ? { send: bytes, detach: false } : { send: bytes.subarray(0, at), detach: true };
}

/** The machine key the agent knows: "name" means "default/name". */
export function machineKey(target: string): string {
  return target.includes('/') ? target : `default/${target}`;
}

interface Attached {
  write(bytes: Buffer): void;
  /** Gives the guest's console this terminal's size. */
  resize(rows: number, cols: number): Promise<void>;
  /** The console passes a terminal's size (its con0 is a pty). */
  sized: boolean;
  close(): void;
  /** Resolves when the other side ends the session (the agent went away, the guest exited). */
  ended: Promise<string>;
  how: string;
}

async function attachThroughAgent(socket: Socket, leftover: Buffer, info: Record<string, unknown>, out: (b: Buffer) => void, resize: (rows: number, cols: number) => Promise<void>): Promise<Attached> {
  if (leftover.length) out(leftover);
  socket.on('data', out);
  const ended = new Promise<string>((resolve) => {
    socket.once('close', () => resolve('the agent ended the session'));
    socket.once('error', (err) => resolve(`the connection to the agent failed: ${err.message}`));
  });
  return {
    write: (bytes) => { socket.write(bytes); },
    resize,
    sized: info.sized === true,
    close: () => { socket.end(); socket.destroy(); },
    ended,
    how: `through the agent on ${String(info.node ?? 'this node')}`,
  };
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const loaded = loadProcessConfig(argv, { extraOptions: { 'read-only': { type: 'boolean' }, holder: { type: 'string' } }, allowPositionals: true });
  if (!loaded.ok) {
    for (const e of loaded.errors) console.error(`umlmon console: ${e}`);
    return 2;
  }
  if (loaded.positionals.length !== 1) {
    console.error(`umlmon console: ${loaded.positionals.length === 0 ? 'missing the machine' : 'one machine at a time'}\nRun 'umlmon console --help' for usage.`);
    return 2;
  }
  const { config } = loaded;
  const target = loaded.positionals[0]!;
  const readOnly = loaded.extra['read-only'] === true;
  const holder = (loaded.extra.holder as string | undefined) ?? `${userInfo().username}@${hostname()}${process.stdin.isTTY ? '' : ' (no tty)'}`;
  const stdout = process.stdout;
  const out = (b: Buffer): void => { stdout.write(b); };

  let attached: Attached;
  let machine = machineKey(target);
  try {
    const auth = config.controlToken !== undefined ? { token: config.controlToken } : {};
    const { socket, info, leftover } = await controlConsole(config.controlAddress, { op: 'console', machine, readOnly, holder }, { timeoutMs: 10_000, ...auth });
    // A resize is a request of its own, beside the session's byte stream.
    const resize = async (rows: number, cols: number): Promise<void> => {
      await controlRequest(config.controlAddress, { op: 'resize', machine, rows, cols }, { timeoutMs: 10_000, ...auth });
    };
    attached = await attachThroughAgent(socket, leftover, info, out, resize);
  } catch (err) {
    if (!(err instanceof ControlUnavailableError)) {
      console.error(`umlmon console: ${(err as Error).message}`);
      return 1;
    }
    // No agent: the state directory has everything (as root on the node).
    try {
      const opened = openConsole(config.stateDir, target, { readOnly, holder, onData: out }, existsSync);
      machine = opened.machine;
      const { record, session } = opened;
      let poll: NodeJS.Timeout | undefined;
      const ended = new Promise<string>((resolve) => {
        poll = setInterval(() => {
          if (!isSameProcessAlive(record.pid, record.startTicks)) resolve('the guest\'s kernel exited');
        }, 1000);
      });
      attached = {
        write: (bytes) => { session.write(bytes); },
        resize: (rows, cols) => session.resize(rows, cols),
        sized: session.sized,
        close: () => { clearInterval(poll); session.close(); },
        ended,
        how: `directly (no agent answers at ${config.control})`,
      };
    } catch (error) {
      const message = error instanceof ConsoleBusyError || error instanceof ConsoleUnavailableError ? error.message : String((error as Error).message ?? error);
      console.error(`umlmon console: ${message}`);
      return 1;
    }
  }

  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  // The guest's console follows this terminal's size, now and on every resize (SIGWINCH), when
  // its con0 is a pty and this session may type; otherwise the banner says how to set it.
  const follows = attached.sized && !readOnly && stdout.isTTY === true;
  const size = stdout.isTTY && !follows ? `; this terminal is ${stdout.columns}x${stdout.rows}: stty rows ${stdout.rows} cols ${stdout.columns} in the guest sets it` : '';
  process.stderr.write(`Connected to the console of ${machine} ${attached.how}${readOnly ? ', read-only' : ''}. Detach with Ctrl-]${size}.\r\n`);
  let warned = false;
  const sendSize = (): void => {
    attached.resize(stdout.rows, stdout.columns).catch((error: unknown) => {
      if (!warned) process.stderr.write(`[umlmon: the guest's console keeps its size: ${(error as Error).message}]\r\n`);
      warned = true;
    });
  };
  if (follows) {
    sendSize();
    stdout.on('resize', sendSize);
  }
  if (tty) stdin.setRawMode(true);

  const why = await new Promise<string>((resolve) => {
    stdin.on('data', (chunk: Buffer) => {
      const { send, detach } = splitAtDetach(chunk);
      if (!readOnly && send.length > 0) attached.write(send);
      if (detach) resolve('detached');
    });
    stdin.once('end', () => resolve(readOnly ? 'detached' : 'input ended'));
    void attached.ended.then(resolve);
    stdin.resume();
  });
  if (tty) stdin.setRawMode(false);
  stdout.off('resize', sendSize);
  stdin.pause();
  attached.close();
  process.stderr.write(why === 'detached' ? `\r\nDetached (${machine} keeps running).\r\n` : `\r\nSession ended: ${why}.\r\n`);
  return why === 'detached' || why === 'input ended' ? 0 : 1;
}
