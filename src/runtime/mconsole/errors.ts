// What can go wrong talking to a UML kernel's mconsole, one class per cause so callers can
// tell "the kernel said no" (MconsoleError) from "the kernel did not answer" (timeout,
// unreachable): only the latter may mean the machine is in trouble, and neither is a reason to
// stop a guest.

/** Names the target in messages: "machine default/web-1" or "mconsole socket /path". */
export function describeTarget(socketPath: string, name?: string): string {
  const printable = printableSocketPath(socketPath);
  return name !== undefined ? `machine ${name} (mconsole ${printable})` : `mconsole socket ${printable}`;
}

/** An abstract-namespace address ("\0name") written as ss(8) shows it: "@name". */
export function printableSocketPath(socketPath: string): string {
  return socketPath.startsWith('\0') ? `@${socketPath.slice(1)}` : socketPath;
}

/** The kernel answered with err != 0. `reply` is its text, e.g. "Device is already configured". */
export class MconsoleError extends Error {
  readonly command: string;
  /** Signed: a negative errno (-16 EBUSY, -19 ENODEV, -2 ENOENT) or the kernel's positive code (1). */
  readonly code: number;
  readonly reply: string;
  constructor(command: string, code: number, reply: string, target?: string) {
    super(`${target ?? 'mconsole'}: '${command}' failed: ${reply === '' ? '(no reason given)' : reply} (error ${code})`);
    this.name = 'MconsoleError';
    this.command = command;
    this.code = code;
    this.reply = reply;
  }
}

/** No (complete) reply within the timeout. The kernel may be busy, stopped hard, or gone. */
export class MconsoleTimeoutError extends Error {
  readonly command: string;
  readonly timeoutMs: number;
  constructor(command: string, timeoutMs: number, target?: string) {
    super(`${target ?? 'mconsole'}: no reply to '${command}' within ${timeoutMs} ms; the kernel may be busy, hung or not running`);
    this.name = 'MconsoleTimeoutError';
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A multi-part reply stopped before its last part. The kernel sends one datagram per part
 * without waiting; a reply longer than the client's receive queue (net.unix.max_dgram_qlen, 10
 * by default; `stack` on 7.x) loses parts, and the last one never comes. `partial` is what did.
 */
export class MconsoleIncompleteReplyError extends Error {
  readonly command: string;
  readonly partial: string;
  constructor(command: string, partial: string, parts: number, target?: string) {
    super(`${target ?? 'mconsole'}: the reply to '${command}' stopped after ${parts} part(s) without its last one ` +
      "(a long reply overflows the socket's receive queue, net.unix.max_dgram_qlen); what arrived is kept in .partial");
    this.name = 'MconsoleIncompleteReplyError';
    this.command = command;
    this.partial = partial;
  }
}

/** The request could not be sent: no socket at the path, or nothing listening on it (kernel gone). */
export class MconsoleUnreachableError extends Error {
  readonly command: string;
  readonly socketPath: string;
  constructor(command: string, socketPath: string, cause: Error, target?: string) {
    super(`${target ?? describeTarget(socketPath)}: could not send '${command}': ${cause.message}; is the kernel running and its mconsole up?`, { cause });
    this.name = 'MconsoleUnreachableError';
    this.command = command;
    this.socketPath = socketPath;
  }
}

/** The command was refused before sending (empty, too long, or contains a line break or NUL). */
export class InvalidMconsoleCommandError extends Error {
  readonly command: string;
  constructor(command: string, problem: string) {
    super(`refusing to send mconsole command ${JSON.stringify(command.length > 80 ? `${command.slice(0, 80)}…` : command)}: ${problem}`);
    this.name = 'InvalidMconsoleCommandError';
    this.command = command;
  }
}

/** A datagram that is not what UML sends (wrong magic, version, type, or length). */
export class MconsoleProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MconsoleProtocolError';
  }
}

/** The client was closed while the request was queued or waiting for its reply. */
export class MconsoleClosedError extends Error {
  readonly command: string;
  constructor(command: string, target?: string) {
    super(`${target ?? 'mconsole'}: client closed before '${command}' was answered`);
    this.name = 'MconsoleClosedError';
    this.command = command;
  }
}
