// The mconsole wire format: request and reply framing, and notify decoding, byte for byte as
// UML's mconsole.h lays them out (little-endian host).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  InvalidMconsoleCommandError, MconsoleProtocolError, commandProblem, decodeNotify, decodeReply,
  decodeRequest, encodeNotify, encodeReply, encodeRequest,
} from '../../src/runtime/mconsole/index.ts';

/** A datagram of little-endian u32 fields followed by raw bytes, as the kernel would send it. */
function frame(fields: number[], data: Buffer | string = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(fields.length * 4);
  fields.forEach((value, i) => header.writeUInt32LE(value >>> 0, i * 4));
  return Buffer.concat([header, typeof data === 'string' ? Buffer.from(data, 'binary') : data]);
}

describe('encodeRequest', () => {
  it('lays out magic, version 2, length and the command in a full 524-byte struct', () => {
    const datagram = encodeRequest('config ubd1=/x');
    assert.equal(datagram.length, 12 + 512);
    assert.equal(datagram.readUInt32LE(0), 0xcafebabe);
    assert.equal(datagram.readUInt32LE(4), 2);
    assert.equal(datagram.readUInt32LE(8), 14);
    assert.equal(datagram.subarray(12, 26).toString(), 'config ubd1=/x');
    assert.ok(datagram.subarray(26).every((b) => b === 0), 'the rest of data is zeroed');
    assert.equal(decodeRequest(datagram), 'config ubd1=/x');
  });

  it('takes 511 bytes (room for the kernel\'s NUL) and refuses 512', () => {
    assert.equal(encodeRequest(`log ${'x'.repeat(507)}`).readUInt32LE(8), 511);
    assert.throws(() => encodeRequest(`log ${'x'.repeat(508)}`), (e: unknown) => e instanceof InvalidMconsoleCommandError && /512 bytes long; mconsole takes at most 511/.test(e.message));
  });

  it('counts UTF-8 bytes, not characters', () => {
    assert.throws(() => encodeRequest(`log ${'é'.repeat(254)}`), InvalidMconsoleCommandError); // 4 + 508 bytes
    assert.equal(encodeRequest(`log ${'é'.repeat(253)}`).readUInt32LE(8), 510);
  });

  it('refuses line breaks, NUL bytes and empty commands', () => {
    for (const bad of ['config ubd1=/x\nhalt', 'log a\rb', 'config ubd1=/x\0halt', '', '   ']) {
      assert.throws(() => encodeRequest(bad), InvalidMconsoleCommandError, JSON.stringify(bad));
      assert.notEqual(commandProblem(bad), undefined);
    }
    assert.equal(commandProblem('version'), undefined);
  });
});

describe('decodeReply', () => {
  it('reads the text up to the kernel\'s NUL', () => {
    assert.deepEqual(decodeReply(frame([0, 0, 8], 'stopped\0')), { err: 0, more: false, text: 'stopped' });
  });

  it('surfaces err as a signed number: u32 4294967280 is -16', () => {
    const reply = decodeReply(frame([4294967280, 0, 29], 'Device is already configured\0'));
    assert.equal(reply.err, -16);
    assert.equal(reply.text, 'Device is already configured');
    assert.equal(decodeReply(frame([4294967277, 0, 1], '\0')).err, -19);
    assert.equal(decodeReply(frame([1, 0, 16], 'Already stopped\0')).err, 1);
  });

  it('reports more=1 for a part that others follow', () => {
    assert.deepEqual(decodeReply(frame([0, 1, 4], 'abc\0')), { err: 0, more: true, text: 'abc' });
  });

  it('accepts an empty reply (len 1: just the NUL)', () => {
    assert.deepEqual(decodeReply(frame([0, 0, 1], '\0')), { err: 0, more: false, text: '' });
  });

  it('rejects truncated and inconsistent datagrams', () => {
    assert.throws(() => decodeReply(Buffer.alloc(11)), MconsoleProtocolError);
    assert.throws(() => decodeReply(frame([0, 0, 20], 'short\0')), MconsoleProtocolError);
    assert.throws(() => decodeReply(frame([0, 0, 513], Buffer.alloc(513))), MconsoleProtocolError);
    assert.throws(() => decodeReply(frame([0, 7, 1], '\0')), MconsoleProtocolError);
  });

  it('round-trips with encodeReply, the fake kernel\'s encoder', () => {
    const reply = { err: -2, more: true, text: "Couldn't determine size of device's file" };
    assert.deepEqual(decodeReply(encodeReply(reply)), reply);
    assert.equal(encodeReply(reply).readUInt32LE(0), 4294967294);
  });
});

describe('decodeNotify', () => {
  it('decodes a socket message, dropping the trailing NUL', () => {
    const path = '/var/lib/umlmon/machines/abc/ctrl/abc/mconsole';
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 0, path.length + 1], `${path}\0`)), { type: 'socket', path });
  });

  it('decodes a panic message', () => {
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 1, 22], 'sysrq triggered crash\0')), { type: 'panic', message: 'sysrq triggered crash' });
  });

  it('decodes a hang message', () => {
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 2, 0])), { type: 'hang' });
  });

  it('decodes a user message verbatim (no NUL; its newline kept)', () => {
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 3, 21], 'umlmon-guest: booted\n')), { type: 'user', message: 'umlmon-guest: booted\n' });
    const long = 'y'.repeat(512);
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 3, 512], long)), { type: 'user', message: long });
  });

  it('ignores bytes past len', () => {
    assert.deepEqual(decodeNotify(frame([0xcafebabe, 2, 3, 2], 'hi-and-garbage')), { type: 'user', message: 'hi' });
  });

  it('rejects truncated and garbage datagrams', () => {
    const cases: [string, Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['header cut short', frame([0xcafebabe, 2, 0])],
      ['wrong magic', frame([0xdeadbeef, 2, 3, 2], 'hi')],
      ['wrong version', frame([0xcafebabe, 1, 3, 2], 'hi')],
      ['unknown type', frame([0xcafebabe, 2, 4, 2], 'hi')],
      ['len past the datagram', frame([0xcafebabe, 2, 3, 10], 'hi')],
      ['len over 512', frame([0xcafebabe, 2, 3, 600], Buffer.alloc(600))],
      ['socket without a path', frame([0xcafebabe, 2, 0, 1], '\0')],
      ['text', Buffer.from('umlmon-guest: booted\n')],
    ];
    for (const [what, datagram] of cases) assert.throws(() => decodeNotify(datagram), MconsoleProtocolError, what);
  });

  it('round-trips with encodeNotify, the fake kernel\'s encoder', () => {
    for (const m of [{ type: 'socket', path: '/a/b' }, { type: 'panic', message: 'boom' }, { type: 'hang' }, { type: 'user', message: 'x\n' }] as const) {
      assert.deepEqual(decodeNotify(encodeNotify(m)), m);
    }
  });
});
