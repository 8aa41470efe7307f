// listenNotify on a real datagram socket: a fake kernel sends what UML sends (and garbage).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DgramSocket } from 'node-unix-socket';
import { encodeNotify, listenNotify } from '../../src/runtime/mconsole/index.ts';
import type { NotifyMessage } from '../../src/runtime/mconsole/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'umlmon-notify-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function send(path: string, datagrams: Buffer[]): Promise<void> {
  const sender = new DgramSocket();
  return new Promise((resolve, reject) => {
    let left = datagrams.length;
    for (const d of datagrams) {
      sender.sendTo(d, 0, d.length, path, (error) => {
        if (error) { sender.close(); reject(error); return; }
        left -= 1;
        if (left === 0) { sender.close(); resolve(); }
      });
    }
  });
}

describe('listenNotify', () => {
  it('decodes each datagram, sends malformed ones to onError, and keeps listening', async () => {
    const path = join(dir, 'notify-a');
    const messages: NotifyMessage[] = [];
    const errors: Error[] = [];
    let expected = 0;
    let wake: () => void = () => {};
    const arrived = (n: number) => new Promise<void>((resolve) => { expected = n; wake = resolve; if (messages.length + errors.length >= n) resolve(); });
    const check = () => { if (messages.length + errors.length >= expected) wake(); };
    const listener = listenNotify(path, (m) => { messages.push(m); check(); }, (e) => { errors.push(e); check(); });
    try {
      const all = arrived(6);
      await send(path, [
        encodeNotify({ type: 'socket', path: '/x/umid/mconsole' }),
        Buffer.from('not a notify datagram'),
        encodeNotify({ type: 'user', message: 'umlmon-guest: booted\n' }),
        encodeNotify({ type: 'socket', path: '/x/umid/mconsole' }).subarray(0, 20),
        encodeNotify({ type: 'panic', message: 'sysrq triggered crash' }),
        encodeNotify({ type: 'hang' }),
      ]);
      await all;
      assert.deepEqual(messages, [
        { type: 'socket', path: '/x/umid/mconsole' },
        { type: 'user', message: 'umlmon-guest: booted\n' },
        { type: 'panic', message: 'sysrq triggered crash' },
        { type: 'hang' },
      ]);
      assert.equal(errors.length, 2);
      for (const e of errors) assert.match(e.message, new RegExp(`malformed datagram on notify socket ${path}`));
    } finally {
      listener.close();
    }
    assert.equal(existsSync(path), false, 'close() removes the socket file');
  });

  it('replaces a stale socket file left by a previous listener', async () => {
    const path = join(dir, 'notify-b');
    const stale = new DgramSocket();
    stale.bind(path);
    stale.close();
    assert.ok(lstatSync(path).isSocket(), 'the stale socket file is there');
    const got = new Promise<NotifyMessage>((resolve) => {
      const listener = listenNotify(path, (m) => { listener.close(); resolve(m); });
      void send(path, [encodeNotify({ type: 'user', message: 'hi' })]);
    });
    assert.deepEqual(await got, { type: 'user', message: 'hi' });
  });

  it('refuses to replace a file that is not a socket', () => {
    const path = join(dir, 'notify-c');
    writeFileSync(path, 'user data');
    assert.throws(() => listenNotify(path, () => {}), /notify socket path .*notify-c exists and is not a socket; refusing to replace it/);
    assert.ok(lstatSync(path).isFile());
  });

  it('names the path when it cannot bind', () => {
    const path = join(dir, 'missing-dir', 'notify');
    assert.throws(() => listenNotify(path, () => {}), /cannot listen for mconsole notifications on .*missing-dir\/notify/);
  });

  it('applies a mode to the socket file so an unprivileged kernel may send to it', () => {
    const path = join(dir, 'notify-d');
    const listener = listenNotify(path, () => {}, undefined, { mode: 0o666 });
    try {
      assert.equal(lstatSync(path).mode & 0o777, 0o666);
    } finally {
      listener.close();
    }
  });
});
