// MconsoleClient against a fake kernel: a real AF_UNIX datagram socket on an abstract address
// that speaks UML's framing (no mocks of the client's socket). The fake cannot learn an abstract
// sender's address from recvfrom through node-unix-socket, so it replies to client.localAddress,
// read when the request arrives, as the kernel replies to the address it received from.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DgramSocket } from 'node-unix-socket';
import {
  InvalidMconsoleCommandError, MconsoleClient, MconsoleClosedError, MconsoleError,
  MconsoleProtocolError, MconsoleTimeoutError, MconsoleUnreachableError, decodeRequest, encodeReply,
} from '../../src/runtime/mconsole/index.ts';

type Part = { err?: number; more?: boolean; text: string };

interface Received { command: string; from: string | undefined }

/** A fake UML mconsole. `answer` decides what to do with each request. */
class FakeKernel {
  readonly address = `\0umlmon-test-kernel-${process.pid}-${randomBytes(4).toString('hex')}`;
  readonly received: Received[] = [];
  readonly socket = new DgramSocket();
  client: MconsoleClient | undefined;
  answer: (request: Received, index: number) => void = (request) => this.reply(request.from, [{ text: `ok: ${request.command}` }]);
  #waiters: (() => void)[] = [];

  constructor() {
    this.socket.bind(this.address);
    this.socket.on('data', (datagram: Buffer) => {
      const request = { command: decodeRequest(datagram), from: this.client?.localAddress };
      this.received.push(request);
      for (const wake of this.#waiters.splice(0)) wake();
      this.answer(request, this.received.length - 1);
    });
  }

  connect(options?: ConstructorParameters<typeof MconsoleClient>[1]): MconsoleClient {
    this.client = new MconsoleClient(this.address, options);
    return this.client;
  }

  /** Sends reply parts to `to`; errors (nobody listening there any more) are ignored like UML does. */
  reply(to: string | undefined, parts: Part[], onSent?: () => void): void {
    assert.ok(to, 'the client has an address while a request is in flight');
    let pending = parts.length;
    for (const part of parts) {
      const datagram = encodeReply({ err: part.err ?? 0, more: part.more ?? false, text: part.text });
      this.socket.sendTo(datagram, 0, datagram.length, to, () => { pending -= 1; if (pending === 0) onSent?.(); });
    }
  }

  /** Resolves once `count` requests have arrived. */
  async receivedCount(count: number): Promise<void> {
    while (this.received.length < count) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  close(): void {
    this.client?.close();
    this.socket.close();
  }
}

const fakes: FakeKernel[] = [];
function fakeKernel(): FakeKernel {
  const fake = new FakeKernel();
  fakes.push(fake);
  return fake;
}
afterEach(() => { for (const fake of fakes.splice(0)) fake.close(); });

describe('MconsoleClient', () => {
  it('sends one command and resolves with the reply text', async () => {
    const fake = fakeKernel();
    const client = fake.connect();
    assert.equal(await client.request('version'), 'ok: version');
    assert.deepEqual(fake.received.map((r) => r.command), ['version']);
    assert.match(fake.received[0]?.from ?? '', /^\0umlmon-mc-\d+-\d+-[0-9a-f]{8}$/, 'an abstract address naming the process');
  });

  it('joins the parts of a multi-part (`more`) reply', async () => {
    const fake = fakeKernel();
    fake.answer = (r) => fake.reply(r.from, [{ text: '\n', more: true }, { text: 'a'.repeat(511), more: true }, { text: 'tail\n', more: true }, { text: '' }]);
    const client = fake.connect();
    assert.equal(await client.request('proc meminfo'), `\n${'a'.repeat(511)}tail\n`);
  });

  it('rejects with MconsoleError carrying the signed errno and the kernel\'s text', async () => {
    const fake = fakeKernel();
    fake.answer = (r) => {
      if (r.command.startsWith('config')) fake.reply(r.from, [{ err: -16, text: 'Device is already configured' }]);
      else if (r.command === 'help') fake.reply(r.from, [{ err: 1, text: 'part one, ', more: true }, { text: 'part two' }]);
      else fake.reply(r.from, [{ err: 1, text: 'Already stopped' }]);
    };
    const client = fake.connect({ name: 'default/web-1' });
    await assert.rejects(client.config('ubd0', '/img'), (e: unknown) => {
      assert.ok(e instanceof MconsoleError);
      assert.equal(e.code, -16);
      assert.equal(e.reply, 'Device is already configured');
      assert.equal(e.command, 'config ubd0=/img');
      assert.match(e.message, /machine default\/web-1 .*'config ubd0=\/img' failed: Device is already configured \(error -16\)/);
      return true;
    });
    await assert.rejects(client.stop(), (e: unknown) => e instanceof MconsoleError && e.code === 1 && e.reply === 'Already stopped');
    await assert.rejects(client.help(), (e: unknown) => e instanceof MconsoleError && e.code === 1 && e.reply === 'part one, part two');
  });

  it('keeps exactly one request in flight and answers a queue in order', async () => {
    const fake = fakeKernel();
    let outstanding = 0;
    let most = 0;
    fake.answer = (r) => {
      outstanding += 1;
      most = Math.max(most, outstanding);
      // Answer later, so that a client sending eagerly would have a second request out by now.
      setImmediate(() => { outstanding -= 1; fake.reply(r.from, [{ text: `#${r.command}` }]); });
    };
    const client = fake.connect();
    const commands = Array.from({ length: 12 }, (_, i) => `log ${i}`);
    const replies = await Promise.all(commands.map((c) => client.request(c)));
    assert.deepEqual(replies, commands.map((c) => `#${c}`));
    assert.deepEqual(fake.received.map((r) => r.command), commands);
    assert.equal(most, 1, 'never more than one request outstanding at the kernel');
  });

  it('times out, and never takes the late reply to a timed-out request as the next answer', async () => {
    const fake = fakeKernel();
    let slowFrom: string | undefined;
    fake.answer = (r, index) => {
      if (index === 0) { slowFrom = r.from; return; } // the kernel is slow: no answer yet
      // The late answer to the first request arrives first, then the real answer.
      fake.reply(slowFrom, [{ text: 'late answer to version' }], () => fake.reply(r.from, [{ text: 'answer to proc uptime' }]));
    };
    const client = fake.connect({ timeoutMs: 150 });
    const started = Date.now();
    await assert.rejects(client.version(), (e: unknown) => e instanceof MconsoleTimeoutError && e.command === 'version' && /no reply to 'version' within 150 ms/.test(e.message));
    assert.ok(Date.now() - started >= 140, 'waited about the timeout');
    assert.equal(await client.request('proc uptime', { timeoutMs: 5000 }), 'answer to proc uptime');
    assert.notEqual(fake.received[1]?.from, slowFrom, 'a fresh address after the timeout');
  });

  it('times out in the middle of a multi-part reply, and the rest of it is not read later', async () => {
    const fake = fakeKernel();
    let firstFrom: string | undefined;
    fake.answer = (r, index) => {
      if (index === 0) { firstFrom = r.from; fake.reply(r.from, [{ text: 'first half ', more: true }]); return; }
      fake.reply(firstFrom, [{ text: 'second half' }], () => fake.reply(r.from, [{ text: 'fresh' }]));
    };
    const client = fake.connect({ timeoutMs: 150 });
    await assert.rejects(client.help(), MconsoleTimeoutError);
    assert.equal(await client.version(), 'fresh');
  });

  it('a timeout applies to one request only; the queue behind it still runs', async () => {
    const fake = fakeKernel();
    fake.answer = (r) => { if (r.command !== 'stop') fake.reply(r.from, [{ text: r.command }]); };
    const client = fake.connect();
    const results = await Promise.allSettled([client.request('stop', { timeoutMs: 100 }), client.go(), client.version()]);
    assert.ok(results[0]?.status === 'rejected' && results[0].reason instanceof MconsoleTimeoutError);
    assert.deepEqual(results.slice(1), [{ status: 'fulfilled', value: 'go' }, { status: 'fulfilled', value: 'version' }]);
  });

  it('reports an unreachable socket as such, on every attempt', async () => {
    const client = new MconsoleClient(`/nonexistent-${randomBytes(4).toString('hex')}/mconsole`);
    try {
      await assert.rejects(client.version(), (e: unknown) => e instanceof MconsoleUnreachableError && /could not send 'version'/.test(e.message));
      await assert.rejects(client.version(), MconsoleUnreachableError);
    } finally {
      client.close();
    }
  });

  it('rejects a garbled reply and recovers on the next request', async () => {
    const fake = fakeKernel();
    fake.answer = (r, index) => {
      const datagram = index === 0 ? Buffer.from('garbage') : encodeReply({ err: 0, more: false, text: 'fine' });
      fake.socket.sendTo(datagram, 0, datagram.length, r.from ?? '');
    };
    const client = fake.connect();
    await assert.rejects(client.version(), (e: unknown) => e instanceof MconsoleProtocolError && /garbled reply to 'version'/.test(e.message));
    assert.equal(await client.version(), 'fine');
  });

  it('close() rejects the request in flight and every queued one; later requests fail at once', async () => {
    const fake = fakeKernel();
    fake.answer = () => {}; // never answers
    const client = fake.connect();
    const pending = [client.version(), client.help(), client.go()].map((p) => p.then(() => 'resolved', (e: unknown) => e));
    await fake.receivedCount(1);
    client.close();
    for (const outcome of await Promise.all(pending)) assert.ok(outcome instanceof MconsoleClosedError, String(outcome));
    await assert.rejects(client.version(), MconsoleClosedError);
    assert.equal(fake.received.length, 1, 'queued requests were never sent');
  });

  it('refuses bad commands before sending anything', async () => {
    const fake = fakeKernel();
    fake.answer = (r) => fake.reply(r.from, [{ text: 'accepted' }]);
    const client = fake.connect();
    const refused = [
      client.request(`log ${'x'.repeat(508)}`), client.request('config ubd1=/a\nhalt'), client.request('log \0'),
      client.request(''), client.config('ubd1 x', '/img'), client.config('ubd1=/img'), client.remove(''),
      client.sysrq('ss'), client.sysrq(' '), client.stack(-1), client.stack(1.5), client.proc(''), client.proc('a b'),
      client.log('two\nlines'),
    ];
    for (const attempt of refused) await assert.rejects(attempt, InvalidMconsoleCommandError);
    assert.equal(await client.request(`log ${'x'.repeat(507)}`), 'accepted');
    assert.equal(fake.received.length, 1, 'only the valid command reached the kernel');
  });

  it('spells every command as UML\'s parser expects', async () => {
    const fake = fakeKernel();
    fake.answer = (r) => fake.reply(r.from, [{ text: r.command.startsWith('proc') ? '\n0.52 0.00\n' : r.command }]);
    const client = fake.connect();
    const replies = [
      await client.version(), await client.halt(), await client.reboot(), await client.help(), await client.cad(),
      await client.stop(), await client.go(), await client.log('hello there'), await client.config('con0'),
      await client.config('ubd1', '/img/a.ext4'), await client.remove('ubd1'), await client.sysrq('s'), await client.stack(1),
    ];
    assert.deepEqual(replies, ['version', 'halt', 'reboot', 'help', 'cad', 'stop', 'go', 'log hello there', 'config con0',
      'config ubd1=/img/a.ext4', 'remove ubd1', 'sysrq s', 'stack 1']);
    assert.equal(await client.proc('uptime'), '0.52 0.00\n', 'the kernel\'s leading line break is dropped');
    assert.equal(fake.received.at(-1)?.command, 'proc uptime');
  });

  it('binds a fresh address after being idle and keeps working', async () => {
    const fake = fakeKernel();
    const client = fake.connect({ idleCloseMs: 1 });
    assert.equal(await client.version(), 'ok: version');
    const first = fake.received[0]?.from;
    while (client.localAddress !== undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(await client.go(), 'ok: go');
    assert.notEqual(fake.received[1]?.from, first);
  });
});
