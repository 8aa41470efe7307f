// UML's mconsole wire format (arch/um/include/shared/mconsole.h, drivers/mconsole_user.c), as
// pure functions: no sockets here, so every framing rule is unit-tested without a kernel.
//
//   request:  u32 magic 0xcafebabe, u32 version 2, u32 len, char data[512]
//   reply:    u32 err, u32 more, u32 len, char data[512]   (len counts the kernel's NUL)
//   notify:   u32 magic, u32 version 2, u32 type, u32 len, char data[len]
//
// All fields are in host byte order: UML runs on the same machine as its client.
import { endianness } from 'node:os';
import { InvalidMconsoleCommandError, MconsoleProtocolError } from './errors.ts';

export const MCONSOLE_MAGIC = 0xcafebabe;
export const MCONSOLE_VERSION = 2;
/** Size of the data array in every mconsole struct. */
export const MCONSOLE_MAX_DATA = 512;
/** The kernel NUL-terminates the command in place, so one byte of data must stay free. */
export const MCONSOLE_MAX_COMMAND_BYTES = MCONSOLE_MAX_DATA - 1;
const REQUEST_HEADER_BYTES = 12;
const REPLY_HEADER_BYTES = 12;
const NOTIFY_HEADER_BYTES = 16;

const LITTLE_ENDIAN = endianness() === 'LE';

function readU32(buf: Buffer, offset: number): number {
  return LITTLE_ENDIAN ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
}

function writeU32(buf: Buffer, value: number, offset: number): void {
  if (LITTLE_ENDIAN) buf.writeUInt32LE(value, offset);
  else buf.writeUInt32BE(value, offset);
}

/**
 * Why a command cannot be sent, or undefined when it can. A newline or NUL would let text from
 * a spec smuggle a second line (or cut the command short) in the kernel's parser.
 */
export function commandProblem(command: string): string | undefined {
  if (command.trim() === '') return 'the command is empty';
  if (command.includes('\0')) return 'the command contains a NUL byte';
  if (/[\r\n]/.test(command)) return 'the command contains a line break';
  const bytes = Buffer.byteLength(command, 'utf8');
  if (bytes > MCONSOLE_MAX_COMMAND_BYTES) {
    return `the command is ${bytes} bytes long; mconsole takes at most ${MCONSOLE_MAX_COMMAND_BYTES}`;
  }
  return undefined;
}

/** One request datagram, full struct size as uml_mconsole sends it. Throws InvalidMconsoleCommandError. */
export function encodeRequest(command: string): Buffer {
  const problem = commandProblem(command);
  if (problem !== undefined) throw new InvalidMconsoleCommandError(command, problem);
  const data = Buffer.from(command, 'utf8');
  const datagram = Buffer.alloc(REQUEST_HEADER_BYTES + MCONSOLE_MAX_DATA);
  writeU32(datagram, MCONSOLE_MAGIC, 0);
  writeU32(datagram, MCONSOLE_VERSION, 4);
  writeU32(datagram, data.length, 8);
  data.copy(datagram, REQUEST_HEADER_BYTES);
  return datagram;
}

/** A request datagram as the kernel reads it (mconsole_get_request); for fake kernels in tests. */
export function decodeRequest(datagram: Buffer): string {
  if (datagram.length < REQUEST_HEADER_BYTES) throw new MconsoleProtocolError(`request of ${datagram.length} bytes is shorter than its header`);
  const magic = readU32(datagram, 0);
  if (magic !== MCONSOLE_MAGIC) throw new MconsoleProtocolError(`request has magic 0x${magic.toString(16)}`);
  const version = readU32(datagram, 4);
  if (version !== MCONSOLE_VERSION) throw new MconsoleProtocolError(`request has version ${version}`);
  const len = readU32(datagram, 8);
  if (len >= MCONSOLE_MAX_DATA || REQUEST_HEADER_BYTES + len > datagram.length) throw new MconsoleProtocolError(`request claims ${len} data bytes`);
  return datagram.subarray(REQUEST_HEADER_BYTES, REQUEST_HEADER_BYTES + len).toString('utf8');
}

/** The kernel's u32 err read as the signed int it was written from (4294967280 → -16). */
function signed32(value: number): number {
  return value | 0;
}

/** Text of a NUL-terminated C string inside `data` (everything when no NUL). */
function cString(data: Buffer): string {
  const end = data.indexOf(0);
  return data.subarray(0, end === -1 ? data.length : end).toString('utf8');
}

/** One reply datagram (one part of a possibly multi-part reply). Throws MconsoleProtocolError. */
export function decodeReply(datagram: Buffer): { err: number; more: boolean; text: string } {
  if (datagram.length < REPLY_HEADER_BYTES) {
    throw new MconsoleProtocolError(`reply of ${datagram.length} bytes is shorter than the ${REPLY_HEADER_BYTES}-byte header`);
  }
  const err = signed32(readU32(datagram, 0));
  const more = readU32(datagram, 4);
  const len = readU32(datagram, 8);
  if (more > 1) throw new MconsoleProtocolError(`reply has more=${more}; expected 0 or 1`);
  if (len > MCONSOLE_MAX_DATA) throw new MconsoleProtocolError(`reply claims ${len} data bytes; at most ${MCONSOLE_MAX_DATA} fit`);
  if (REPLY_HEADER_BYTES + len > datagram.length) {
    throw new MconsoleProtocolError(`reply claims ${len} data bytes but carries ${datagram.length - REPLY_HEADER_BYTES}`);
  }
  return { err, more: more === 1, text: cString(datagram.subarray(REPLY_HEADER_BYTES, REPLY_HEADER_BYTES + len)) };
}

/** A reply datagram as the kernel builds it (mconsole_reply_len); for fake peers in tests and tools. */
export function encodeReply(reply: { err: number; more: boolean; text: string }): Buffer {
  const data = Buffer.from(reply.text, 'utf8');
  if (data.length > MCONSOLE_MAX_DATA - 1) throw new RangeError(`reply text of ${data.length} bytes does not fit one datagram`);
  const datagram = Buffer.alloc(REPLY_HEADER_BYTES + data.length + 1);
  writeU32(datagram, reply.err >>> 0, 0);
  writeU32(datagram, reply.more ? 1 : 0, 4);
  writeU32(datagram, data.length + 1, 8);
  data.copy(datagram, REPLY_HEADER_BYTES);
  return datagram;
}

export type NotifyMessage =
  /** mconsole is ready; `path` is the socket the kernel really bound (trust it over a guess). */
  | { type: 'socket'; path: string }
  /** The kernel panicked; the process exits right after. */
  | { type: 'panic'; message: string }
  | { type: 'hang' }
  /** One write by the guest to /proc/mconsole, verbatim (no NUL added, at most 512 bytes). */
  | { type: 'user'; message: string };

const NOTIFY_TYPES = ['socket', 'panic', 'hang', 'user'] as const;

/** One notify datagram. Throws MconsoleProtocolError for anything UML would not send. */
export function decodeNotify(datagram: Buffer): NotifyMessage {
  if (datagram.length < NOTIFY_HEADER_BYTES) {
    throw new MconsoleProtocolError(`notify datagram of ${datagram.length} bytes is shorter than the ${NOTIFY_HEADER_BYTES}-byte header`);
  }
  const magic = readU32(datagram, 0);
  if (magic !== MCONSOLE_MAGIC) {
    throw new MconsoleProtocolError(`notify datagram has magic 0x${magic.toString(16)}; expected 0x${MCONSOLE_MAGIC.toString(16)}`);
  }
  const version = readU32(datagram, 4);
  if (version !== MCONSOLE_VERSION) {
    throw new MconsoleProtocolError(`notify datagram has version ${version}; expected ${MCONSOLE_VERSION}`);
  }
  const typeCode = readU32(datagram, 8);
  const type = NOTIFY_TYPES[typeCode];
  if (type === undefined) throw new MconsoleProtocolError(`notify datagram has unknown type ${typeCode}`);
  const len = readU32(datagram, 12);
  if (len > MCONSOLE_MAX_DATA) throw new MconsoleProtocolError(`notify datagram claims ${len} data bytes; at most ${MCONSOLE_MAX_DATA} fit`);
  if (NOTIFY_HEADER_BYTES + len > datagram.length) {
    throw new MconsoleProtocolError(`notify datagram claims ${len} data bytes but carries ${datagram.length - NOTIFY_HEADER_BYTES}`);
  }
  const data = datagram.subarray(NOTIFY_HEADER_BYTES, NOTIFY_HEADER_BYTES + len);
  switch (type) {
    case 'socket': {
      const path = cString(data);
      if (path === '') throw new MconsoleProtocolError('notify socket message carries no path');
      return { type, path };
    }
    case 'panic':
      return { type, message: cString(data) };
    case 'hang':
      return { type };
    case 'user':
      return { type, message: data.toString('utf8') };
  }
}

/** A notify datagram as the kernel builds it (mconsole_notify); for fake kernels in tests. */
export function encodeNotify(message: NotifyMessage): Buffer {
  let data: Buffer;
  switch (message.type) {
    case 'socket': data = Buffer.from(`${message.path}\0`, 'utf8'); break;
    case 'panic': data = Buffer.from(`${message.message}\0`, 'utf8'); break;
    case 'hang': data = Buffer.alloc(0); break;
    case 'user': data = Buffer.from(message.message, 'utf8'); break;
  }
  data = data.subarray(0, MCONSOLE_MAX_DATA);
  const datagram = Buffer.alloc(NOTIFY_HEADER_BYTES + data.length);
  writeU32(datagram, MCONSOLE_MAGIC, 0);
  writeU32(datagram, MCONSOLE_VERSION, 4);
  writeU32(datagram, NOTIFY_TYPES.indexOf(message.type), 8);
  writeU32(datagram, data.length, 12);
  data.copy(datagram, NOTIFY_HEADER_BYTES);
  return datagram;
}
