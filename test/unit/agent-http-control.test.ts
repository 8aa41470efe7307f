import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from '../../src/agent/metrics.ts';
import { startHealthServer } from '../../src/agent/http.ts';
import { controlConsole, controlRequest, ControlUnavailableError, mconsoleCommandProblem, startControlServer, type ControlHandlers } from '../../src/agent/control.ts';

const logger = pino({ level: 'silent' });
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'umlmon-ctl-'));
  dirs.push(d);
  return d;
}

test('health server: /healthz, /readyz following ready(), /metrics in text format', async () => {
  const metrics = new Registry();
  metrics.counter('umlmon_reconciles_total', 'Reconciles.', ['result']).inc({ result: 'ok' });
  let ready = false;
  const server = await startHealthServer({ listen: { host: '127.0.0.1', port: 0 }, ready: () => ready, metrics, logger });
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 503);
    ready = true;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const m = await fetch(`${base}/metrics`);
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await m.text();
    assert.match(text, /^umlmon_reconciles_total\{result="ok"\} 1$/m);
    assert.match(text, /^process_resident_memory_bytes \d+$/m);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
  } finally {
    await server.close();
  }
});

test('mconsole allow-list: reads and sysrq s only', () => {
  for (const ok of ['version', 'help', 'proc uptime', 'proc partitions', 'proc sys/kernel/hostname', 'config ubd1', 'config eth0', 'sysrq s']) {
    assert.equal(mconsoleCommandProblem(ok), undefined, ok);
  }
  for (const bad of ['halt', 'reboot', 'cad', 'stop', 'go', 'config ubd1=/etc/shadow', 'remove ubd1', 'sysrq c', 'sysrq b', 'log hi', 'stack 1', 'proc ../etc', 'proc', 'version x']) {
    assert.match(mconsoleCommandProblem(bad) ?? '', /not allowed/, bad);
  }
});

function handlers(calls: string[]): ControlHandlers {
  return {
    list: () => [{ machine: 'default/a', phase: 'Running' }],
    status: (m) => { if (m !== 'default/a') throw new Error(`machine ${m} is not known to this agent`); return { phase: 'Running' }; },
    drain: async (t) => { calls.push(`drain ${t}`); return [{ machine: 'default/a', outcome: 'stopped' }]; },
    mconsole: async (m, c) => { calls.push(`${m} ${c}`); return 'Linux umlguest 0.0.0-test'; },
    resize: async (m, rows, cols) => { calls.push(`resize ${m} ${rows}x${cols}`); },
  };
}

test('unix control socket: mode 0600, ops, errors, refused commands, stale socket replaced', async () => {
  const dir = tempDir();
  const path = join(dir, 'run', 'control.sock');
  const calls: string[] = [];
  const address = { kind: 'unix' as const, path };
  const server = await startControlServer({ address, handlers: handlers(calls), logger, defaultDrainTimeoutSeconds: 120 });
  assert.ok(server);
  try {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const ask = (r: Parameters<typeof controlRequest>[1]) => controlRequest(address, r, { timeoutMs: 5000 });
    assert.equal(await ask({ op: 'ping' }), 'pong');
    assert.deepEqual(await ask({ op: 'list' }), [{ machine: 'default/a', phase: 'Running' }]);
    assert.deepEqual(await ask({ op: 'status', machine: 'default/a' }), { phase: 'Running' });
    await assert.rejects(ask({ op: 'status', machine: 'default/b' }), /default\/b is not known/);
    assert.equal(await ask({ op: 'mconsole', machine: 'default/a', command: 'version' }), 'Linux umlguest 0.0.0-test');
    await assert.rejects(ask({ op: 'mconsole', machine: 'default/a', command: 'halt' }), /not allowed/);
    await ask({ op: 'drain' });
    await ask({ op: 'drain', timeoutSeconds: 5 });
    assert.equal(await ask({ op: 'resize', machine: 'default/a', rows: 40, cols: 120 }), 'resized');
    for (const [rows, cols] of [[0, 80], [24, 1.5], [24, 10_001], ['24', 80]] as const) {
      await assert.rejects(ask({ op: 'resize', machine: 'default/a', rows, cols } as never), /a terminal size is rows and cols, whole numbers from 1 to 10000/, `${rows}x${cols}`);
    }
    assert.deepEqual(calls, ['default/a version', 'drain 120', 'drain 5', 'resize default/a 40x120']);
    await assert.rejects(startControlServer({ address, handlers: handlers([]), logger, defaultDrainTimeoutSeconds: 1 }), /another agent already listens/);
  } finally {
    await server.close();
  }
  assert.equal(existsSync(path), false);
  await assert.rejects(controlRequest(address, { op: 'ping' }, { timeoutMs: 1000 }), ControlUnavailableError);
  // A stale socket file (an agent that was SIGKILLed) is replaced.
  writeFileSync(path, '');
  const again = await startControlServer({ address, handlers: handlers([]), logger, defaultDrainTimeoutSeconds: 1 });
  assert.ok(again);
  assert.equal(await controlRequest(address, { op: 'ping' }, { timeoutMs: 5000 }), 'pong');
  await again.close();
});

test('tcp control socket needs the token', async () => {
  const token = 'abcdefghijklmnop-0123';
  await assert.rejects(startControlServer({ address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, handlers: handlers([]), logger, defaultDrainTimeoutSeconds: 1 }), /without a bearer token/);
  const server = await startControlServer({ address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, token, handlers: handlers([]), logger, defaultDrainTimeoutSeconds: 1 });
  assert.ok(server);
  try {
    const port = Number(/:(\d+)$/.exec(server.url())?.[1]);
    const address = { kind: 'tcp' as const, host: '127.0.0.1', port };
    await assert.rejects(controlRequest(address, { op: 'list' }, { timeoutMs: 5000 }), /unauthorized/);
    await assert.rejects(controlRequest(address, { op: 'list' }, { timeoutMs: 5000, token: 'wrong-token-wrong-token' }), /unauthorized/);
    assert.deepEqual(await controlRequest(address, { op: 'list' }, { timeoutMs: 5000, token }), [{ machine: 'default/a', phase: 'Running' }]);
  } finally {
    await server.close();
  }
});

test('control console: after the reply line, raw bytes both ways; the agent side can end it; errors end the connection', async () => {
  const dir = tempDir();
  const address = { kind: 'unix' as const, path: join(dir, 'control.sock') };
  const typed: string[] = [];
  let send: ((b: Buffer) => void) | undefined;
  let end: ((why: string) => void) | undefined;
  let closed = 0;
  const server = await startControlServer({
    address, logger, defaultDrainTimeoutSeconds: 120,
    handlers: {
      ...handlers([]),
      console: (machine, options, onData) => {
        if (machine !== 'default/a') throw new Error(`no machine ${machine} on n1`);
        send = onData;
        return { info: { machine, holder: options.holder, readOnly: options.readOnly }, write: (b) => { typed.push(b.toString()); return true; }, close: () => { closed++; }, onEnd: (cb) => { end = cb; } };
      },
    },
  });
  try {
    const { socket, info } = await controlConsole(address, { op: 'console', machine: 'default/a', readOnly: false, holder: 'alice' }, { timeoutMs: 5000 });
    assert.deepEqual(info, { machine: 'default/a', holder: 'alice via the unix control socket', readOnly: false });
    const received: string[] = [];
    socket.on('data', (d: Buffer) => received.push(d.toString()));
    socket.write('ls\r');
    send!(Buffer.from('umlguest:~# '));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(typed, ['ls\r']);
    assert.equal(received.join(''), 'umlguest:~# ');
    const gone = new Promise((r) => socket.once('close', r));
    end!('the guest\'s kernel exited');
    await gone;
    assert.match(received.join(''), /\[umlmon: the guest's kernel exited\]/);
    for (let i = 0; i < 100 && closed === 0; i++) await new Promise((r) => setTimeout(r, 20)); // the server sees its side close next
    assert.equal(closed, 1, 'the session is closed with the connection');
    await assert.rejects(controlConsole(address, { op: 'console', machine: 'default/b', readOnly: true, holder: 'bob' }, { timeoutMs: 5000 }), /no machine default\/b on n1/);
    // A console request's text inside another request's value does not switch the connection to raw bytes.
    assert.deepEqual(await controlRequest(address, { op: 'status', machine: 'default/a', note: '"op":"console"' } as never, { timeoutMs: 5000 }), { phase: 'Running' });
  } finally {
    await server?.close();
  }
});
