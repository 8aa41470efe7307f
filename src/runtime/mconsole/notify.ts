// The notify socket: the kernel started with `mconsole=notify:PATH` sends a datagram to PATH
// when its mconsole is ready (`socket`), when it panics (`panic`), and for each write the guest
// makes to /proc/mconsole (`user`).
//
// What it does not tell: a kernel that panics before its mconsole is up, or is killed
// (SIGKILL, cgroup OOM), sends nothing. Exit detection must watch the process, not this socket.
// The kernel writes to PATH as resolved inside its own root: a jailed kernel needs PATH (or a
// bind mount of it) inside the jail, and write permission for its uid on the socket file.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { DgramSocket } from 'node-unix-socket';
import { decodeNotify } from './protocol.ts';
import type { NotifyMessage } from './protocol.ts';

export interface NotifyListener {
  /** Stops listening and removes the socket file (if it is still the one bound here). Idempotent. */
  close(): void;
}

/** The socket file at `path`, or undefined when there is none. Throws for any other file. */
function existingSocket(path: string): { dev: number; ino: number } | undefined {
  let stats;
  try {
    stats = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (!stats.isSocket()) throw new Error(`notify socket path ${path} exists and is not a socket; refusing to replace it`);
  return { dev: stats.dev, ino: stats.ino };
}

/**
 * Binds a SOCK_DGRAM socket at `path` (removing a stale socket file first: a previous agent's
 * socket is dead once that agent is gone) and calls onMessage for each decoded datagram.
 * Malformed datagrams go to onError and never throw. Setup failures (the path is a regular
 * file, its directory is missing) throw. `mode` is applied to the socket file after binding,
 * e.g. 0o666 so that a kernel running as an unprivileged uid may send to it.
 */
export function listenNotify(
  path: string,
  onMessage: (message: NotifyMessage) => void,
  onError: (error: Error) => void = (error) => process.emitWarning(error.message, 'MconsoleNotifyWarning'),
  options: { mode?: number } = {},
): NotifyListener {
  if (existingSocket(path) !== undefined) unlinkSync(path);
  const socket = new DgramSocket();
  try {
    socket.bind(path);
    if (options.mode !== undefined) chmodSync(path, options.mode);
  } catch (error) {
    socket.close();
    throw new Error(`cannot listen for mconsole notifications on ${path}: ${(error as Error).message}`, { cause: error });
  }
  const bound = existingSocket(path);
  let closed = false;
  socket.on('data', (datagram: Buffer) => {
    if (closed) return;
    let message: NotifyMessage;
    try {
      message = decodeNotify(datagram);
    } catch (error) {
      onError(new Error(`ignoring a malformed datagram on notify socket ${path}: ${(error as Error).message}`, { cause: error }));
      return;
    }
    onMessage(message);
  });
  socket.on('error', (error: Error) => {
    if (!closed) onError(new Error(`notify socket ${path} failed: ${error.message}`, { cause: error }));
  });
  return {
    close() {
      if (closed) return;
      closed = true;
      socket.close();
      try {
        const current = existingSocket(path);
        if (current !== undefined && bound !== undefined && current.dev === bound.dev && current.ino === bound.ino) unlinkSync(path);
      } catch {
        // Someone else's file now, or already gone: not ours to remove.
      }
    },
  };
}
