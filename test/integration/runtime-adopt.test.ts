// Adoption: the agent dies (SIGKILL, no cleanup) and a fresh runtime instance takes its running
// kernels over without restarting them; a silent kernel is `unknown` and left alone; a dead one
// is `exited`. Exit detection works for kernels this process never started.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime } from '../../src/runtime/index.ts';
import type { Runtime, RuntimeEvent } from '../../src/runtime/index.ts';
import { TEST_IMAGE, testImageRoot, umlKernel } from '../support/uml.ts';
import { waitFor } from '../support/runtime.ts';
import { MconsoleClient } from '../../src/runtime/mconsole/index.ts';
import { alive } from '../support/process.ts';
import { kernelVersion } from '../../src/runtime/kernel-probe.ts';

const RUNTIME_MODULE = new URL('../../src/runtime/index.ts', import.meta.url).pathname;

/** Runs a first "agent" in a child process that starts a machine, reports it, then idles. */
function startInDoomedAgent(stateDir: string, imageRoot: string, id: string): Promise<{ agentPid: number; kernelPid: number }> {
  const script = `
    import { createRuntime } from ${JSON.stringify(RUNTIME_MODULE)};
    const rt = createRuntime({ stateDir: ${JSON.stringify(stateDir)}, imageRoot: ${JSON.stringify(imageRoot)} });
    // The guest's own message, not only the kernel's boot line: it comes a moment later, and
    // must reach this agent, not the next one.
    const booted = new Promise((ok) => rt.onEvent((e) => { if (e.type === 'guest-message') ok(e); }));
    const status = await rt.start({ id: ${JSON.stringify(id)}, name: 'test/adopted', kernel: ${JSON.stringify(umlKernel())},
      memoryBytes: 48 * 1024 * 1024, cmdline: [], defaultArgs: ['lpj=auto'],
      disks: [{ name: 'ubd0', image: ${JSON.stringify(TEST_IMAGE)}, mode: 'cow' }], interfaces: [] });
    await booted;
    process.stdout.write(JSON.stringify({ kernelPid: status.pid }) + '\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve({ agentPid: child.pid!, kernelPid: JSON.parse(out).kernelPid });
    });
    child.on('exit', (code) => reject(new Error(`the first agent exited (${code}) before reporting: ${out}`)));
  });
}

/** Adopts whatever the state directory still has, stops and removes it, and deletes the directory. */
async function removeEverything(stateDir: string, imageRoot: string, runtimes: Runtime[]): Promise<void> {
  const rt = createRuntime({ stateDir, imageRoot });
  await rt.adoptAll();
  for (const m of rt.list()) {
    if (m.state !== 'exited') await rt.stop(m.id, { gracePeriodMs: 0 }).catch(() => undefined);
    await rt.remove(m.id).catch(() => undefined);
  }
  for (const r of [...runtimes, rt]) await r.close();
  rmSync(stateDir, { recursive: true, force: true });
}

describe('adoption after the agent was SIGKILLed', () => {
  let stateDir: string;
  let imageRoot: string;
  const id = `ad${Math.random().toString(36).slice(2, 9)}`;
  let kernelPid = 0;
  const runtimes: Runtime[] = [];

  before(async () => {
    imageRoot = testImageRoot();
    stateDir = mkdtempSync('/tmp/umlrt-');
    const first = await startInDoomedAgent(stateDir, imageRoot, id);
    kernelPid = first.kernelPid;
    process.kill(first.agentPid, 'SIGKILL');
  });

  after(() => removeEverything(stateDir, imageRoot, runtimes));

  test('a fresh runtime adopts the running kernel: same pid, running, booted, no duplicate events', async () => {
    process.kill(kernelPid, 0); // the guest outlived its agent
    const rt = createRuntime({ stateDir, imageRoot });
    runtimes.push(rt);
    const events: RuntimeEvent[] = [];
    rt.onEvent((e) => events.push(e));
    const adopted = await rt.adoptAll();
    assert.equal(adopted.length, 1);
    const m = adopted[0]!;
    assert.equal(m.id, id);
    assert.equal(m.pid, kernelPid);
    assert.equal(m.state, 'running');
    assert.ok(m.bootTime instanceof Date);
    const release = await kernelVersion(umlKernel());
    assert.ok(release !== '' && (m.kernelVersion ?? '').includes(` ${release} `), `${m.kernelVersion} is the uname of ${release}`);
    assert.deepEqual(events, [], 'adoption emits no start events');
    // Driven as if this runtime had started it; adoptAll again is a no-op.
    await rt.pause(id);
    assert.equal((await rt.adoptAll())[0]!.state, 'paused');
    await rt.resume(id);
    assert.ok((await rt.guestInfo(id)).uptimeSeconds > 0);
    await rt.close();
  });

  test('a kernel that is alive but silent is unknown and is not killed', async () => {
    // Its mconsole socket out of reach (moved aside) stands in for a kernel that does not answer.
    const socket = JSON.parse(readFileSync(join(stateDir, 'machines', id, 'machine.json'), 'utf8')).mconsoleSocket as string;
    renameSync(socket, `${socket}.aside`);
    try {
      const rt = createRuntime({ stateDir, imageRoot, mconsoleTimeoutMs: 300 });
      runtimes.push(rt);
      const [m] = await rt.adoptAll();
      assert.equal(m!.state, 'unknown');
      assert.match(m!.message ?? '', /alive but mconsole does not answer/);
      await rt.close();
    } finally {
      renameSync(`${socket}.aside`, socket);
    }
    process.kill(kernelPid, 0);
  });

  test('exit of an adopted kernel is detected with its exit code (from its monitor); a later adoption reports it the same', async () => {
    const rt = createRuntime({ stateDir, imageRoot });
    runtimes.push(rt);
    await rt.adoptAll();
    assert.equal(rt.get(id)!.state, 'running');
    const record = JSON.parse(readFileSync(join(stateDir, 'machines', id, 'machine.json'), 'utf8')) as { monitorPid?: number };
    assert.ok(record.monitorPid && record.monitorPid !== kernelPid, 'the kernel has a monitor of its own');
    process.kill(record.monitorPid, 0);
    const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
    await rt.stop(id, { gracePeriodMs: 20000 });
    const event = await exited;
    // The guest powered off on ctrl-alt-del: a clean exit, known although this runtime did not
    // start the kernel (restartPolicy OnFailure depends on it).
    assert.ok(event.type === 'exited');
    assert.deepEqual({ code: event.exit.code, signal: event.exit.signal }, { code: 0, signal: null });
    assert.equal(rt.get(id)!.state, 'exited');
    assert.throws(() => process.kill(-kernelPid, 0), /ESRCH/);
    await rt.close();

    const later = createRuntime({ stateDir, imageRoot });
    runtimes.push(later);
    const [m] = await later.adoptAll();
    assert.equal(m!.state, 'exited');
    assert.equal(m!.exit?.code, 0);
  });
});

describe('a guest that ended while no agent ran', () => {
  let stateDir: string;
  let imageRoot: string;
  const id = `ae${Math.random().toString(36).slice(2, 9)}`;

  before(() => {
    imageRoot = testImageRoot();
    stateDir = mkdtempSync('/tmp/umlrt-');
  });

  after(() => removeEverything(stateDir, imageRoot, []));

  test('is adopted as exited with the status its monitor recorded, not "unknown"', async () => {
    const first = await startInDoomedAgent(stateDir, imageRoot, id);
    process.kill(first.agentPid, 'SIGKILL');
    const socket = JSON.parse(readFileSync(join(stateDir, 'machines', id, 'machine.json'), 'utf8')).mconsoleSocket as string;
    const client = new MconsoleClient(socket);
    await client.halt().catch(() => undefined); // the kernel exits; nobody of ours is listening
    client.close();
    for (let i = 0; i < 100 && alive(first.kernelPid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(first.kernelPid), false, 'the kernel is gone');
    const rt = createRuntime({ stateDir, imageRoot });
    try {
      const [m] = await rt.adoptAll();
      assert.equal(m!.state, 'exited');
      assert.deepEqual({ code: m!.exit?.code, signal: m!.exit?.signal }, { code: 0, signal: null });
    } finally {
      await rt.close();
    }
  });
});
