// A native mconsole client: UML's management console over an AF_UNIX datagram socket, with no
// uml_mconsole process per command.
//
// Why it is shaped this way (see ../../../../shared/design/uml-facts.md):
// - The client binds an abstract-namespace address. The kernel replies to the sender's address
//   resolved inside its own chroot, so a filesystem path outside a jail would never get an answer.
// - Strictly one request in flight; the rest queue behind it. UML drops replies silently beyond
//   ~10 outstanding requests on one socket, and the protocol carries no request id, so a reply
//   can only be matched to "the request in flight".
// - After a timeout (or a garbled reply) the client drops its socket and binds a fresh address
//   for the next request. A late reply to the timed-out request then goes to an address nobody
//   holds (the kernel's sendto fails and it moves on) instead of being read as the answer to
//   the next command. Datagrams arriving while nothing is in flight are discarded.
import { closeSync, openSync, readSync } from 'node:fs';
import { DgramSocket } from 'node-unix-socket';
import {
  InvalidMconsoleCommandError, MconsoleClosedError, MconsoleError, MconsoleIncompleteReplyError, MconsoleProtocolError,
  MconsoleTimeoutError, MconsoleUnreachableError, describeTarget,
} from './errors.ts';
import { decodeReply, encodeRequest } from './protocol.ts';

export const DEFAULT_MCONSOLE_TIMEOUT_MS = 5000;
export const DEFAULT_MCONSOLE_IDLE_CLOSE_MS = 1000;
/**
 * The kernel sends the parts of a reply back to back. A gap this long after a part that
 * promised more means the rest was lost (the receive queue overflowed): the request ends with
 * what arrived instead of waiting out its whole timeout.
 */
export const REPLY_PART_GAP_MS = 1000;

export interface MconsoleClientOptions {
  /**
   * Per-request timeout unless the request gives its own. Default 5000 ms. It counts from when
   * the request is sent, not while it waits in the queue behind another one.
   */
  timeoutMs?: number;
  /** Machine name for error messages, e.g. "default/web-1". */
  name?: string;
  /**
   * Close the socket after this long with nothing to send (the next request binds a new one).
   * An open socket keeps Node's event loop alive and node-unix-socket cannot unref it, so an idle
   * client, even one never closed, lets the process exit after this delay. Default 1000 ms.
   */
  idleCloseMs?: number;
}

interface QueuedRequest {
  command: string;
  datagram: Buffer;
  timeoutMs: number;
  resolve(text: string): void;
  reject(error: Error): void;
}

interface InFlightRequest extends QueuedRequest {
  /** Text of each reply part received so far (multi-part replies set `more`). */
  parts: string[];
  /** The kernel sets err on the first part only. */
  err: number | undefined;
  timer: NodeJS.Timeout;
  /** Armed after each part that promised more (REPLY_PART_GAP_MS). */
  gapTimer?: NodeJS.Timeout;
}

let socketsOpened = 0;
let secret: string | undefined;

/**
 * 4 random bytes from the kernel (8 hex digits, as before), read once per process: what makes
 * this process's addresses unguessable (node:crypto's randomBytes would load OpenSSL into an
 * agent that needs nothing else of it; src/sha256.ts says what that costs).
 */
function processSecret(): string {
  if (secret === undefined) {
    const bytes = Buffer.alloc(4);
    const fd = openSync('/dev/urandom', 'r');
    try {
      readSync(fd, bytes, 0, 4, null);
    } finally {
      closeSync(fd);
    }
    secret = bytes.toString('hex');
  }
  return secret;
}

/** A fresh abstract-namespace address: unique per process, per socket, and unguessable. */
function newClientAddress(): string {
  socketsOpened += 1;
  return `\0umlmon-mc-${process.pid}-${socketsOpened}-${processSecret()}`;
}

function rejection(error: Error): Promise<never> {
  return Promise.reject(error);
}

/** A device name as config/remove take it: ubd1, eth0, con0, mem. No blanks, no '='. */
const DEVICE_NAME = /^[A-Za-z0-9_.:-]+$/;
/** A /proc file name relative to /proc: uptime, partitions, sys/kernel/hostname. */
const PROC_FILE = /^[A-Za-z0-9_.:/-]+$/;

/**
 * Talks to one kernel's mconsole socket. Open a client per machine and close() it when done.
 * Its socket is bound on demand and released after `idleCloseMs` without requests.
 */
export class MconsoleClient {
  readonly socketPath: string;
  readonly #defaultTimeoutMs: number;
  readonly #target: string;
  readonly #idleCloseMs: number;
  #idleTimer: NodeJS.Timeout | undefined;
  #socket: DgramSocket | undefined;
  #address: string | undefined;
  readonly #queue: QueuedRequest[] = [];
  #inFlight: InFlightRequest | undefined;
  #closed = false;

  constructor(socketPath: string, options: MconsoleClientOptions = {}) {
    this.socketPath = socketPath;
    this.#defaultTimeoutMs = options.timeoutMs ?? DEFAULT_MCONSOLE_TIMEOUT_MS;
    this.#target = describeTarget(socketPath, options.name);
    this.#idleCloseMs = options.idleCloseMs ?? DEFAULT_MCONSOLE_IDLE_CLOSE_MS;
  }

  /** The abstract address the kernel replies to ("\0umlmon-mc-..."), once a request has been sent. */
  get localAddress(): string | undefined {
    return this.#address;
  }

  /**
   * Sends one command; resolves with the reply text (multi-part replies joined). Rejects with
   * MconsoleError when the kernel answers err != 0, MconsoleTimeoutError when no complete reply
   * arrives in time, MconsoleUnreachableError when the socket cannot be sent to,
   * InvalidMconsoleCommandError before sending anything, MconsoleClosedError after close().
   */
  request(command: string, options: { timeoutMs?: number } = {}): Promise<string> {
    if (this.#closed) return rejection(new MconsoleClosedError(command, this.#target));
    let datagram: Buffer;
    try {
      datagram = encodeRequest(command);
    } catch (error) {
      return rejection(error as Error);
    }
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ command, datagram, timeoutMs, resolve, reject });
      this.#sendNext();
    });
  }

  /** uname of the guest kernel: "Linux <nodename> <release> <build> <machine>", e.g. "Linux (none) 6.1.176 #1 ... x86_64". */
  version(): Promise<string> { return this.request('version'); }
  /** Stops the kernel at once, without the guest's shutdown (no sync). The process exits. */
  halt(): Promise<string> { return this.request('halt'); }
  /** Restarts the kernel at once, without the guest's shutdown. A new `socket` notify follows. */
  reboot(): Promise<string> { return this.request('reboot'); }
  /** The kernel's list of mconsole commands. */
  help(): Promise<string> { return this.request('help'); }
  /** Ctrl-Alt-Del to the guest's init: a graceful reboot or, if init maps it so, power-off. */
  cad(): Promise<string> { return this.request('cad'); }
  /** Freezes the guest ("stopped"); only mconsole keeps running. Rejects code 1 "Already stopped". */
  stop(): Promise<string> { return this.request('stop'); }
  /** Resumes a stopped guest. Rejects code 1 "Not stopped" when it was not stopped. */
  go(): Promise<string> { return this.request('go'); }
  /** Writes `text` to the kernel log (printk); it does not reach the notify socket. */
  log(text: string): Promise<string> { return this.request(`log ${text}`); }

  /**
   * With `value`: adds a device ("config ubd1=/path"); -16 when it is already configured, -2
   * when the file is missing. Without: the device's current configuration ("config con0" → "null").
   */
  config(device: string, value?: string): Promise<string> {
    if (!DEVICE_NAME.test(device)) return rejection(new InvalidMconsoleCommandError(`config ${device}`, `'${device}' is not a device name`));
    return this.request(value === undefined ? `config ${device}` : `config ${device}=${value}`);
  }

  /** Removes a device: -19 "Device doesn't exist", -16 when the guest still uses it. */
  remove(device: string): Promise<string> {
    if (!DEVICE_NAME.test(device)) return rejection(new InvalidMconsoleCommandError(`remove ${device}`, `'${device}' is not a device name`));
    return this.request(`remove ${device}`);
  }

  /** Magic SysRq: `s` syncs disks, `c` crashes the kernel (a `panic` notify follows). */
  sysrq(key: string): Promise<string> {
    if (!/^[\x21-\x7e]$/.test(key)) return rejection(new InvalidMconsoleCommandError(`sysrq ${key}`, 'the sysrq key must be one printable character'));
    return this.request(`sysrq ${key}`);
  }

  /**
   * Contents of a file under the guest's /proc, e.g. proc('uptime'). The kernel starts its reply
   * with a line break to put the contents on their own line; that line break is removed here.
   * Only global files work (uptime, partitions, meminfo, loadavg), not /proc/<pid>/*.
   */
  async proc(file: string): Promise<string> {
    if (!PROC_FILE.test(file)) throw new InvalidMconsoleCommandError(`proc ${file}`, `'${file}' is not a /proc file name`);
    const text = await this.request(`proc ${file}`);
    return text.startsWith('\n') ? text.slice(1) : text;
  }

  /**
   * Stack trace of a guest process. Warning: it crashes Debian's 6.1 UML build (user-mode-linux
   * in bookworm). On 7.x the reply is one datagram per line and overflows the client's receive
   * queue: it rejects with MconsoleIncompleteReplyError, whose `partial` holds what arrived.
   */
  stack(pid: number): Promise<string> {
    if (!Number.isSafeInteger(pid) || pid < 0) return rejection(new InvalidMconsoleCommandError(`stack ${pid}`, 'the pid must be a non-negative integer'));
    return this.request(`stack ${pid}`);
  }

  /** Rejects the request in flight and every queued one, and releases the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const inFlight = this.#inFlight;
    this.#inFlight = undefined;
    if (inFlight !== undefined) {
      clearTimeout(inFlight.timer);
      inFlight.reject(new MconsoleClosedError(inFlight.command, this.#target));
    }
    for (const queued of this.#queue.splice(0)) queued.reject(new MconsoleClosedError(queued.command, this.#target));
    this.#dropSocket();
  }

  #sendNext(): void {
    if (this.#closed || this.#inFlight !== undefined) return;
    const next = this.#queue.shift();
    if (next === undefined) {
      this.#armIdleClose();
      return;
    }
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const request: InFlightRequest = {
      ...next,
      parts: [],
      err: undefined,
      timer: setTimeout(() => this.#onTimeout(request), next.timeoutMs),
    };
    this.#inFlight = request;
    try {
      const socket = this.#openSocket();
      socket.sendTo(request.datagram, 0, request.datagram.length, this.socketPath, (error) => {
        if (error) this.#settle(request, new MconsoleUnreachableError(request.command, this.socketPath, error, this.#target));
      });
    } catch (error) {
      this.#settle(request, new MconsoleUnreachableError(request.command, this.socketPath, error as Error, this.#target));
    }
  }

  #openSocket(): DgramSocket {
    if (this.#socket !== undefined) return this.#socket;
    const socket = new DgramSocket();
    const address = newClientAddress();
    try {
      socket.bind(address);
    } catch (error) {
      socket.close();
      throw error;
    }
    socket.on('data', (datagram: Buffer) => this.#onDatagram(socket, datagram));
    socket.on('error', (error: Error) => this.#onSocketError(socket, error));
    this.#socket = socket;
    this.#address = address;
    return socket;
  }

  #armIdleClose(): void {
    if (this.#socket === undefined || this.#idleTimer !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#inFlight === undefined && this.#queue.length === 0) this.#dropSocket();
    }, this.#idleCloseMs);
    // The socket holds the event loop until this fires; the timer itself need not.
    this.#idleTimer.unref();
  }

  /** Closes the current socket so that nothing more sent to its address is read. */
  #dropSocket(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#address = undefined;
    socket?.close();
  }

  #onDatagram(socket: DgramSocket, datagram: Buffer): void {
    // Delivered on a later tick: the socket may have been dropped since.
    if (socket !== this.#socket) return;
    const request = this.#inFlight;
    if (request === undefined) return; // nothing outstanding: a stray or late reply
    let part: { err: number; more: boolean; text: string };
    try {
      part = decodeReply(datagram);
    } catch (error) {
      // Lost sync with the kernel's reply stream: start over on a fresh address.
      this.#dropSocket();
      const cause = error as MconsoleProtocolError;
      this.#settle(request, new MconsoleProtocolError(`${this.#target}: garbled reply to '${request.command}': ${cause.message}`));
      return;
    }
    request.err ??= part.err;
    request.parts.push(part.text);
    clearTimeout(request.gapTimer);
    if (part.more) {
      request.gapTimer = setTimeout(() => {
        if (this.#inFlight !== request) return;
        // The socket may still receive the lost reply's stragglers: start over on a fresh one.
        this.#dropSocket();
        this.#settle(request, new MconsoleIncompleteReplyError(request.command, request.parts.join(''), request.parts.length, this.#target));
      }, REPLY_PART_GAP_MS);
      return;
    }
    const text = request.parts.join('');
    this.#settle(request, request.err === 0 ? text : new MconsoleError(request.command, request.err, text, this.#target));
  }

  #onTimeout(request: InFlightRequest): void {
    if (this.#inFlight !== request) return;
    this.#dropSocket();
    this.#settle(request, new MconsoleTimeoutError(request.command, request.timeoutMs, this.#target));
  }

  #onSocketError(socket: DgramSocket, error: Error): void {
    if (socket !== this.#socket) return;
    this.#dropSocket();
    const request = this.#inFlight;
    if (request !== undefined) this.#settle(request, new MconsoleUnreachableError(request.command, this.socketPath, error, this.#target));
  }

  #settle(request: InFlightRequest, outcome: string | Error): void {
    if (this.#inFlight !== request) return;
    clearTimeout(request.timer);
    clearTimeout(request.gapTimer);
    this.#inFlight = undefined;
    if (typeof outcome === 'string') request.resolve(outcome);
    else request.reject(outcome);
    this.#sendNext();
  }
}
