// The agent's control socket: vmd's control socket, addressed as rump_sp addresses its server
// (unix:///path or tcp://host:port). Newline-delimited JSON, one request per line, one reply
// line per request:
//   {"op":"list"}                                      every machine the agent knows
//   {"op":"status","machine":"ns/name"}                one machine's object status and runtime view
//   {"op":"drain","timeoutSeconds":120}                shut every guest down gracefully, keep them down
//   {"op":"mconsole","machine":"ns/name","command":"version"}   a read-only mconsole command
//   {"op":"resize","machine":"ns/name","rows":40,"cols":120}   the console's terminal size
//   {"op":"console","machine":"ns/name","readOnly":false,"holder":"root@laptop"}
//                                                      attach to the guest's console: after the
//                                                      reply line the connection carries raw bytes,
//                                                      typed input one way, console output the other
//   {"op":"ping"}
// Replies: {"ok":true,"result":...} or {"ok":false,"error":"..."}.
// Access: a unix socket is mode 0600 in the root-owned state directory (root only); a tcp
// socket needs the bearer token in every request ("token":"..."), and the config refuses tcp
// without one. mconsole commands are limited to an allow-list that cannot change a guest.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { ControlAddress } from './config.ts';
import { terminalSizeProblem } from '../runtime/console-session.ts';

export type ControlRequest =
  | { op: 'ping' }
  | { op: 'list' }
  | { op: 'status'; machine: string }
  | { op: 'drain'; timeoutSeconds?: number }
  | { op: 'mconsole'; machine: string; command: string }
  | { op: 'console'; machine: string; readOnly: boolean; holder: string }
  | { op: 'resize'; machine: string; rows: number; cols: number };

/** An attached console as the control socket relays it (console-session.ts). */
export interface ControlConsole {
  /** Sent in the reply line: what the client prints on attaching. */
  info: Record<string, unknown>;
  write(bytes: Buffer): boolean;
  close(): void;
  /** Calls back once when the session ends on the agent's side (the guest exited), with why. */
  onEnd?(callback: (why: string) => void): void;
}

export type ControlReply = { ok: true; result: unknown } | { ok: false; error: string };

export interface ControlHandlers {
  list(): Promise<unknown> | unknown;
  status(machine: string): Promise<unknown> | unknown;
  drain(timeoutSeconds: number): Promise<unknown>;
  mconsole(machine: string, command: string): Promise<string>;
  /** Sets a guest's console to a terminal's size (console-session.ts, resizeConsole). */
  resize?(machine: string, rows: number, cols: number): Promise<void>;
  console?(machine: string, options: { readOnly: boolean; holder: string }, onData: (chunk: Buffer) => void): ControlConsole;
}

export interface ControlServerOptions {
  address: ControlAddress;
  token?: string;
  handlers: ControlHandlers;
  logger: Logger;
  /** Used when a drain request gives no timeout. */
  defaultDrainTimeoutSeconds: number;
}

export interface ControlServer {
  /** Where it listens, as a URL (the real port for tcp://host:0). */
  url(): string;
  close(): Promise<void>;
}

const MAX_LINE_BYTES = 64 * 1024;

/**
 * The mconsole commands the control socket passes on: they read, or flush (sysrq s), and
 * never change what runs. Everything else (halt, reboot, cad, stop, go, config with '=',
 * remove, other sysrq keys, log, stack — which crashes Debian's 6.1 build and overflows the reply queue on 7.x) is refused: the
 * agent owns those, and a guest must not be changed behind its back.
 */
export function mconsoleCommandProblem(command: string): string | undefined {
  const words = command.trim().split(/\s+/);
  const [verb, arg, ...rest] = words;
  const refuse = (why: string): string => `mconsole command '${command}' is not allowed over the control socket: ${why}`;
  switch (verb) {
    case 'version':
    case 'help':
      return arg === undefined ? undefined : refuse(`${verb} takes no argument`);
    case 'proc':
      if (arg === undefined || rest.length > 0) return refuse('use proc <file>, e.g. proc uptime');
      if (!/^[A-Za-z0-9_.:-]+(\/[A-Za-z0-9_.:-]+)*$/.test(arg) || arg.split('/').includes('..')) return refuse('a /proc file name relative to /proc');
      return undefined;
    case 'config':
      if (arg === undefined || rest.length > 0 || arg.includes('=')) return refuse('only queries (config <device>) are allowed');
      return /^[a-z]+[0-9]*$/.test(arg) ? undefined : refuse(`'${arg}' is not a device name`);
    case 'sysrq':
      return arg === 's' && rest.length === 0 ? undefined : refuse('only sysrq s (emergency sync) is allowed');
    default:
      return refuse('allowed are version, help, proc <file>, config <device>, sysrq s');
  }
}

function isConsoleRequest(line: string): boolean {
  try {
    return (JSON.parse(line) as { op?: unknown } | null)?.op === 'console';
  } catch {
    return false;
  }
}

function sameToken(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false;
  // Loaded only where a token is set (a tcp:// address): a directory agent on its unix socket
  // never needs OpenSSL (src/sha256.ts says what that costs).
  const { createHash, timingSafeEqual } = process.getBuiltinModule('node:crypto');
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Checks one request's shape; returns the typed request or a reason. */
export function parseControlRequest(value: unknown): ControlRequest | string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'a request is a JSON object with "op"';
  const r = value as Record<string, unknown>;
  const machineOk = (m: unknown): m is string => typeof m === 'string' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(m);
  switch (r.op) {
    case 'ping':
    case 'list':
      return { op: r.op };
    case 'status':
      return machineOk(r.machine) ? { op: 'status', machine: r.machine } : '"machine" must be "<namespace>/<name>"';
    case 'drain':
      if (r.timeoutSeconds !== undefined && (typeof r.timeoutSeconds !== 'number' || !Number.isInteger(r.timeoutSeconds) || r.timeoutSeconds < 0)) return '"timeoutSeconds" must be a whole number >= 0';
      return r.timeoutSeconds === undefined ? { op: 'drain' } : { op: 'drain', timeoutSeconds: r.timeoutSeconds };
    case 'console': {
      if (!machineOk(r.machine)) return '"machine" must be "<namespace>/<name>"';
      if (r.readOnly !== undefined && typeof r.readOnly !== 'boolean') return '"readOnly" must be true or false';
      const holder = typeof r.holder === 'string' ? r.holder.replace(/[^\x20-\x7e]/g, '').slice(0, 100) : 'unknown';
      return { op: 'console', machine: r.machine, readOnly: r.readOnly === true, holder };
    }
    case 'resize': {
      if (!machineOk(r.machine)) return '"machine" must be "<namespace>/<name>"';
      const problem = terminalSizeProblem(r.rows, r.cols);
      return problem ?? { op: 'resize', machine: r.machine, rows: r.rows as number, cols: r.cols as number };
    }
    case 'mconsole': {
      if (!machineOk(r.machine)) return '"machine" must be "<namespace>/<name>"';
      if (typeof r.command !== 'string') return '"command" must be a string';
      const problem = mconsoleCommandProblem(r.command);
      return problem ?? { op: 'mconsole', machine: r.machine, command: r.command.trim() };
    }
    default:
      return `unknown op ${JSON.stringify(r.op)}: use list, status, drain, mconsole, console, resize or ping`;
  }
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer | undefined> {
  const { address } = opts;
  if (address.kind === 'none') return undefined;
  const log = opts.logger.child({ component: 'control' });
  if (address.kind === 'tcp' && (opts.token === undefined || opts.token.length < 16)) {
    throw new Error(`control: refusing tcp://${address.host}:${address.port} without a bearer token (set controlToken or controlTokenFile)`);
  }
  const sockets = new Set<Socket>();
  /** Connections that became a console session: raw bytes from then on. */
  const consoles = new Map<Socket, ControlConsole>();

  async function handle(line: string, socket: Socket): Promise<ControlReply> {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return { ok: false, error: 'not JSON: send one JSON object per line' };
    }
    if (address.kind === 'tcp' && !sameToken((value as { token?: unknown } | null)?.token, opts.token as string)) {
      log.warn('control request with a missing or wrong token refused');
      return { ok: false, error: 'unauthorized: a valid "token" is required' };
    }
    const request = parseControlRequest(value);
    if (typeof request === 'string') return { ok: false, error: request };
    log.info({ op: request.op, ...('machine' in request ? { machine: request.machine } : {}) }, 'control request');
    try {
      switch (request.op) {
        case 'ping': return { ok: true, result: 'pong' };
        case 'list': return { ok: true, result: await opts.handlers.list() };
        case 'status': return { ok: true, result: await opts.handlers.status(request.machine) };
        case 'drain': return { ok: true, result: await opts.handlers.drain(request.timeoutSeconds ?? opts.defaultDrainTimeoutSeconds) };
        case 'mconsole': return { ok: true, result: await opts.handlers.mconsole(request.machine, request.command) };
        case 'resize':
          if (!opts.handlers.resize) return { ok: false, error: 'this agent does not serve consoles' };
          await opts.handlers.resize(request.machine, request.rows, request.cols);
          return { ok: true, result: 'resized' };
        case 'console': {
          if (!opts.handlers.console) return { ok: false, error: 'this agent does not serve consoles' };
          const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'the unix control socket';
          const attached = opts.handlers.console(request.machine, { readOnly: request.readOnly, holder: `${request.holder} via ${peer}` }, (chunk) => {
            if (!socket.destroyed) socket.write(chunk);
          });
          consoles.set(socket, attached);
          attached.onEnd?.((why) => {
            if (!socket.destroyed) socket.end(`\r\n[umlmon: ${why}]\r\n`);
          });
          return { ok: true, result: attached.info };
        }
      }
    } catch (err) {
      return { ok: false, error: errorText(err) };
    }
  }

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      consoles.get(socket)?.close();
      consoles.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    let buffer = Buffer.alloc(0);
    let chain = Promise.resolve();
    let raw = false;
    const toConsole = (bytes: Buffer): void => {
      if (bytes.length > 0) consoles.get(socket)?.write(bytes);
    };
    socket.on('data', (chunk: Buffer) => {
      if (raw) { toConsole(chunk); return; }
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length > MAX_LINE_BYTES) {
        socket.end(`${JSON.stringify({ ok: false, error: 'request line too long' })}\n`);
        return;
      }
      let nl: number;
      while (!raw && (nl = buffer.indexOf(0x0a)) >= 0) {
        const line = buffer.subarray(0, nl).toString('utf8').trim();
        buffer = buffer.subarray(nl + 1);
        if (line === '') continue;
        // A console request ends the line protocol on this connection: what follows is input.
        if (isConsoleRequest(line)) raw = true;
        // Requests on one connection are answered in order.
        const rest = raw ? buffer : undefined;
        if (raw) buffer = Buffer.alloc(0);
        chain = chain.then(async () => {
          const reply = await handle(line, socket);
          if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
          if (raw && !reply.ok) socket.end();
          else if (rest) toConsole(rest);
        });
      }
    });
  });

  if (address.kind === 'unix') {
    mkdirSync(dirname(address.path), { recursive: true, mode: 0o755 });
    if (existsSync(address.path)) {
      if (await answers(address.path)) throw new Error(`control: another agent already listens on unix://${address.path}`);
      unlinkSync(address.path); // left behind by an agent that was killed
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`control: cannot listen on ${describe(address)}: ${err.message}`)));
    if (address.kind === 'unix') server.listen(address.path, resolve);
    else server.listen(address.port, address.host, resolve);
  });
  if (address.kind === 'unix') chmodSync(address.path, 0o600);
  const url = address.kind === 'unix' ? `unix://${address.path}` : (() => {
    const a = server.address() as { address: string; port: number };
    return `tcp://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  })();
  log.info({ url }, 'control socket listening');
  return {
    url: () => url,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
      if (address.kind === 'unix') { try { unlinkSync(address.path); } catch { /* already gone */ } }
    }),
  };
}

function describe(address: ControlAddress): string {
  return address.kind === 'unix' ? `unix://${address.path}` : address.kind === 'tcp' ? `tcp://${address.host}:${address.port}` : 'none';
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** No agent listens at the address (nothing there, connection refused). */
export class ControlUnavailableError extends Error {
  override readonly name = 'ControlUnavailableError';
}

/** Sends one request to a running agent and returns its result; throws its error. */
export function controlRequest(address: ControlAddress, request: ControlRequest, options: { token?: string; timeoutMs: number }): Promise<unknown> {
  if (address.kind === 'none') return Promise.reject(new ControlUnavailableError('no control address configured'));
  return new Promise((resolve, reject) => {
    const socket = address.kind === 'unix' ? createConnection(address.path) : createConnection(address.port, address.host);
    let buffer = '';
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`no reply from the agent at ${describe(address)} within ${options.timeoutMs} ms`))), options.timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      socket.write(`${JSON.stringify(options.token !== undefined ? { ...request, token: options.token } : request)}\n`);
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      let reply: ControlReply;
      try {
        reply = JSON.parse(buffer.slice(0, nl)) as ControlReply;
      } catch {
        finish(() => reject(new Error(`the agent at ${describe(address)} answered something that is not JSON`)));
        return;
      }
      finish(() => (reply.ok ? resolve(reply.result) : reject(new Error(reply.error))));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const unavailable = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
      finish(() => reject(unavailable
        ? new ControlUnavailableError(`no agent answers at ${describe(address)} (${err.code})`)
        : new Error(`control socket ${describe(address)}: ${err.message}`)));
    });
    socket.once('close', () => finish(() => reject(new Error(`the agent at ${describe(address)} closed the connection without a reply`))));
  });
}

/**
 * Asks a running agent for a console session; on success the returned socket carries raw
 * bytes (write what is typed, read console output; end it to detach). `leftover` is output
 * that arrived with the reply line.
 */
export function controlConsole(address: ControlAddress, request: Extract<ControlRequest, { op: 'console' }>, options: { token?: string; timeoutMs: number }): Promise<{ socket: Socket; info: Record<string, unknown>; leftover: Buffer }> {
  if (address.kind === 'none') return Promise.reject(new ControlUnavailableError('no control address configured'));
  return new Promise((resolve, reject) => {
    const socket = address.kind === 'unix' ? createConnection(address.path) : createConnection(address.port, address.host);
    let buffer = Buffer.alloc(0);
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`no reply from the agent at ${describe(address)} within ${options.timeoutMs} ms`)), options.timeoutMs);
    socket.once('connect', () => {
      socket.write(`${JSON.stringify(options.token !== undefined ? { ...request, token: options.token } : request)}\n`);
    });
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const nl = buffer.indexOf(0x0a);
      if (nl < 0) return;
      let reply: ControlReply;
      try {
        reply = JSON.parse(buffer.subarray(0, nl).toString('utf8')) as ControlReply;
      } catch {
        fail(new Error(`the agent at ${describe(address)} answered something that is not JSON`));
        return;
      }
      if (!reply.ok) { fail(new Error(reply.error)); return; }
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      resolve({ socket, info: (reply.result ?? {}) as Record<string, unknown>, leftover: buffer.subarray(nl + 1) });
    };
    socket.on('data', onData);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const unavailable = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
      fail(unavailable ? new ControlUnavailableError(`no agent answers at ${describe(address)} (${err.code})`) : new Error(`control socket ${describe(address)}: ${err.message}`));
    });
    socket.once('close', () => fail(new Error(`the agent at ${describe(address)} closed the connection without a reply`)));
  });
}
