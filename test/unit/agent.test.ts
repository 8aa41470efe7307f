// The reconciler and controller against an in-memory source and runtime: the wiring (events,
// status writes, finalizers, adoption, sync gating, restarts, drain) without a kernel. The
// real kernel path is covered by test/e2e/agent-directory.test.ts.
import { FakeClock } from '../support/clock.ts';
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startAgent, type Agent, type AgentOptions } from '../../src/agent/agent.ts';
import { Registry } from '../../src/agent/metrics.ts';
import { machineConfigFor } from '../../src/agent/machine-config.ts';
import { FINALIZER, type UmlMachine, type UmlMachineStatus } from '../../src/api/types.ts';
import { umidFor } from '../../src/api/umid.ts';
import { RuntimeError } from '../../src/runtime/errors.ts';
import { eventually } from '../support/eventually.ts';
import { FakeRuntime, FakeSource } from '../support/fakes.ts';
import { umlMachine } from '../support/fixtures.ts';

const MiB = 2 ** 20;

const imageRoot = mkdtempSync(join(tmpdir(), 'umlmon-agent-unit-'));
writeFileSync(join(imageRoot, 'root.img'), 'x');
writeFileSync(join(imageRoot, 'data.img'), 'x');

const options: AgentOptions = {
  nodeName: 'node-1',
  imageRoot,
  backupDir: join(imageRoot, 'backups'),
  kernels: { default: { path: '/usr/bin/linux.uml' } },
  defaultKernelArgs: ['lpj=auto'],
  memory: { minBytes: 32 * MiB, maxBytes: 1024 * MiB, defaultBytes: 64 * MiB },
  workers: 2,
  resyncPeriodSeconds: 0,
};

function machine(name: string, spec: Partial<UmlMachine['spec']> = {}, meta: Partial<UmlMachine['metadata']> = {}): UmlMachine {
  return umlMachine({ name, namespace: 'default', metadata: { uid: `uid-${name}`, ...meta }, spec: { nodeName: 'node-1', memory: '64Mi', disks: [{ name: 'ubd0', image: 'root.img', mode: 'cow' }], ...spec } });
}

const logger = pino({ level: 'silent' });
let agents: Agent[] = [];

async function agentWith(source: FakeSource, runtime: FakeRuntime, over: Partial<AgentOptions> = {}, clock?: FakeClock): Promise<Agent> {
  const agent = await startAgent({ ...options, ...over }, { source, runtime, logger, metrics: new Registry(), ...(clock ? { clock } : {}) });
  agents.push(agent);
  return agent;
}

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  await eventually(what, check, { timeoutMs, intervalMs: 5, retryErrors: false });
}

const statusOf = (s: FakeSource, key: string): UmlMachineStatus | undefined => s.get(key)?.status;
const cond = (st: UmlMachineStatus | undefined, type: string) => st?.conditions?.find((c) => c.type === type);

afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  agents = [];
});

describe('agent core with an in-memory source and runtime', () => {
  it('starts a machine, puts its finalizer on, and reports it Running and Ready after the boot', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('web'));
    const agent = await agentWith(source, runtime);
    await until('ready', () => agent.ready());
    await until('Running', () => statusOf(source, 'default/web')?.phase === 'Running');
    const st = statusOf(source, 'default/web')!;
    assert.equal(cond(st, 'Ready')?.status, 'True');
    assert.equal(st.umid, umidFor('uid-web'));
    assert.equal(st.kernelVersion, 'Linux 0.0.0-test');
    assert.equal(st.observedGeneration, 1);
    assert.deepEqual(source.get('default/web')!.metadata.finalizers, [FINALIZER]);
    assert.deepEqual(source.reasons('default/web'), ['Starting', 'Booted']);
    assert.equal(runtime.calls.filter((c) => c.startsWith('start')).length, 1);
  });

  it('writes status only when it changed (its own write-back does not loop)', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('quiet'));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/quiet')?.phase === 'Running');
    await new Promise((r) => setTimeout(r, 100));
    const writes = source.patches.length;
    source.put({ ...source.get('default/quiet')! }); // a no-op update
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(source.patches.length, writes);
    assert.ok(writes <= 3, `${writes} status writes for one start`);
  });

  it('does nothing before the source synced; then adopts, reports Adopted, and removes orphans', async () => {
    const source = new FakeSource(false);
    const runtime = new FakeRuntime();
    const keep = machine('keep');
    const cfgKeep = machineConfigFor(keep, { kernels: options.kernels, defaultKernelArgs: options.defaultKernelArgs, defaultMemoryBytes: 64 * MiB });
    const cfgGone = machineConfigFor(machine('gone'), { kernels: options.kernels, defaultKernelArgs: options.defaultKernelArgs, defaultMemoryBytes: 64 * MiB });
    for (const c of [cfgKeep, cfgGone]) {
      runtime.machines.set(c.id, { id: c.id, name: c.name, state: 'running', pid: 77, startTime: new Date(), bootTime: new Date(), config: c, disks: c.disks.map((d) => ({ ...d })), interfaces: [], consoles: [] });
    }
    const agent = await agentWith(source, runtime);
    source.objects.set('default/keep', keep); // the cache fills, not synced yet
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(agent.ready(), false);
    assert.deepEqual(runtime.calls, ['adoptAll'], 'nothing is touched while the cache is incomplete');
    source.sync();
    await until('orphan removed', () => !runtime.machines.has(cfgGone.id));
    assert.ok(agent.ready());
    assert.ok(runtime.calls.includes(`stop ${cfgGone.id}`), 'the orphan is shut down before its removal');
    assert.equal(runtime.machines.get(cfgKeep.id)?.pid, 77, 'the adopted guest keeps running, same pid');
    assert.ok(!runtime.calls.some((c) => c.startsWith('start')));
    assert.ok(source.reasons('default/keep').includes('Adopted'));
    await until('status', () => statusOf(source, 'default/keep')?.phase === 'Running');
  });

  it('an invalid spec leaves the running guest alone and says so once, while others run', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('bad'));
    source.put(machine('good'));
    await agentWith(source, runtime);
    await until('both running', () => statusOf(source, 'default/bad')?.phase === 'Running' && statusOf(source, 'default/good')?.phase === 'Running');
    const before = [...runtime.calls];
    source.put({ ...machine('bad', { memory: '1Mi' }), status: statusOf(source, 'default/bad')! });
    await until('SpecValid=False', () => cond(statusOf(source, 'default/bad'), 'SpecValid')?.status === 'False');
    const st = statusOf(source, 'default/bad')!;
    assert.equal(st.phase, 'Running');
    assert.match(cond(st, 'SpecValid')!.message, /memory/);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(runtime.calls, before, 'nothing was done to any guest');
    assert.equal(source.reasons('default/bad').filter((r) => r === 'InvalidSpec').length, 1);
    assert.equal(statusOf(source, 'default/good')?.phase, 'Running');
  });

  it('pauses, resumes, stops and starts again as the state says', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('toggle', { restartPolicy: 'Never' }));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/toggle')?.phase === 'Running');
    const set = (state: 'Running' | 'Paused' | 'Stopped') => source.put({ ...source.get('default/toggle')!, spec: { ...source.get('default/toggle')!.spec, state } });
    set('Paused');
    await until('Paused', () => statusOf(source, 'default/toggle')?.phase === 'Paused');
    assert.equal(cond(statusOf(source, 'default/toggle'), 'Paused')?.status, 'True');
    set('Running');
    await until('Running again', () => statusOf(source, 'default/toggle')?.phase === 'Running');
    set('Stopped');
    await until('Stopped', () => statusOf(source, 'default/toggle')?.phase === 'Stopped');
    assert.equal(cond(statusOf(source, 'default/toggle'), 'Ready')?.reason, 'Stopped');
    set('Running');
    await until('Running after Stopped (a start, not a restart: policy Never)', () => statusOf(source, 'default/toggle')?.phase === 'Running');
    assert.equal(statusOf(source, 'default/toggle')?.restartCount, 0);
    const reasons = source.reasons('default/toggle');
    for (const r of ['Paused', 'Resumed', 'Stopping', 'Stopped']) assert.ok(reasons.includes(r), r);
  });

  it('restarts a panicked guest (Always) and reports GuestPanic and restartCount', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('crash'));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/crash')?.phase === 'Running');
    const id = umidFor('uid-crash');
    const firstPid = runtime.get(id)!.pid;
    runtime.exit(id, { code: null, signal: 'SIGABRT', panic: 'sysrq triggered crash' });
    await until('restarted', () => statusOf(source, 'default/crash')?.restartCount === 1 && statusOf(source, 'default/crash')?.phase === 'Running');
    assert.notEqual(runtime.get(id)!.pid, firstPid);
    assert.ok(source.reasons('default/crash').includes('GuestPanic'));
    // A second crash right away waits 10 s: BackOff.
    runtime.exit(id, { code: null, signal: 'SIGABRT', panic: 'again' });
    await until('BackOff', () => cond(statusOf(source, 'default/crash'), 'Ready')?.reason === 'BackOff');
    assert.equal(statusOf(source, 'default/crash')?.phase, 'Failed');
    assert.ok(source.reasons('default/crash').includes('BackOff'));
  });

  it('a clean poweroff under OnFailure stays Stopped', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('done', { restartPolicy: 'OnFailure' }));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/done')?.phase === 'Running');
    runtime.exit(umidFor('uid-done'), { code: 0 });
    await until('Stopped', () => statusOf(source, 'default/done')?.phase === 'Stopped');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(runtime.calls.filter((c) => c.startsWith('start')).length, 1);
  });

  it('hot-plugs a disk only after the boot, and reports a failure in DevicesSynced with a retry', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    runtime.autoBoot = false;
    source.put(machine('disks'));
    await agentWith(source, runtime);
    await until('Starting', () => statusOf(source, 'default/disks')?.phase === 'Starting');
    const m = source.get('default/disks')!;
    source.put({ ...m, spec: { ...m.spec, disks: [...m.spec.disks!, { name: 'ubd1', image: 'data.img', mode: 'readWrite' }] } });
    await until('pending', () => cond(statusOf(source, 'default/disks'), 'DevicesSynced')?.reason === 'Pending');
    assert.ok(!runtime.calls.some((c) => c.startsWith('attachDisk')));
    runtime.failNext.attachDisk = new Error('machine default/disks: config ubd1 failed: Device is busy');
    runtime.boot(umidFor('uid-disks'));
    await until('synced after a retry', () => cond(statusOf(source, 'default/disks'), 'DevicesSynced')?.status === 'True');
    assert.equal(runtime.calls.filter((c) => c.startsWith('attachDisk')).length, 2);
    assert.ok(source.patches.some((p) => p.status.conditions?.some((c) => c.type === 'DevicesSynced' && c.reason === 'HotplugFailed')));
    assert.ok(source.reasons('default/disks').includes('DiskAttached'));
    const failed = source.events.filter((e) => e.key === 'default/disks' && e.reason === 'Failed');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.message, /attachDisk failed: .*Device is busy/);
  });

  it('deletion: graceful stop, remove, then the finalizer', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('del'));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/del')?.phase === 'Running');
    const m = source.get('default/del')!;
    source.put({ ...m, metadata: { ...m.metadata, deletionTimestamp: new Date().toISOString() } });
    await until('object gone', () => source.get('default/del') === undefined);
    const id = umidFor('uid-del');
    const order = runtime.calls.filter((c) => c.endsWith(id) && !c.startsWith('start'));
    assert.deepEqual(order, [`stop ${id}`, `remove ${id}`]);
  });

  it('a removed object (directory mode: file deleted) is shut down and removed', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('file'));
    await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/file')?.phase === 'Running');
    source.remove('default/file');
    await until('removed', () => runtime.machines.size === 0);
  });

  it('a machine whose image is missing starts once the image appears, with no change to its object', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    const image = `later-${process.pid}.img`;
    source.put(machine('later', { disks: [{ name: 'ubd0', image, mode: 'cow' }] }));
    // A resync every 20 ms: passes over the same object, whose validation the agent remembers.
    await agentWith(source, runtime, { resyncPeriodSeconds: 0.02 });
    await until('SpecValid=False', () => cond(statusOf(source, 'default/later'), 'SpecValid')?.status === 'False');
    assert.match(cond(statusOf(source, 'default/later'), 'SpecValid')!.message, /not in this node's image root/);
    writeFileSync(join(imageRoot, image), 'x');
    await until('Running', () => statusOf(source, 'default/later')?.phase === 'Running');
    assert.equal(cond(statusOf(source, 'default/later'), 'SpecValid')?.status, 'True');
  });

  it('drain stops every guest and nothing restarts', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('d1'));
    source.put(machine('d2'));
    const agent = await agentWith(source, runtime);
    await until('both Running', () => ['d1', 'd2'].every((n) => statusOf(source, `default/${n}`)?.phase === 'Running'));
    await agent.drain(5000);
    assert.ok(runtime.list().every((m) => m.state === 'exited'));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(runtime.calls.filter((c) => c.startsWith('start')).length, 2, 'no restarts while draining');
    await until('Stopped', () => ['d1', 'd2'].every((n) => statusOf(source, `default/${n}`)?.phase === 'Stopped'));
  });

  it('drain returns once the last guest is down and its status written, not at a timer', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    const clock = new FakeClock(); // time stands still: only what happens may end the drain
    source.put(machine('q1'));
    source.put(machine('q2'));
    const agent = await agentWith(source, runtime, {}, clock);
    await until('both Running', () => ['q1', 'q2'].every((n) => statusOf(source, `default/${n}`)?.phase === 'Running'));
    let drained = false;
    const drain = agent.drain(5000).then(() => { drained = true; });
    await until('drained with the clock standing still', () => drained);
    await drain;
    assert.ok(['q1', 'q2'].every((n) => statusOf(source, `default/${n}`)?.phase === 'Stopped'), 'every status written before drain returns');
  });

  it('drain also stops a guest whose start was in flight when the drain began', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    runtime.startDelayMs = 150;
    const agent = await agentWith(source, runtime);
    await until('ready', () => agent.ready());
    source.put(machine('late'));
    await until('start in flight', () => runtime.calls.some((c) => c.startsWith('start')));
    await agent.drain(5000);
    assert.ok(runtime.list().length === 1 && runtime.list().every((m) => m.state === 'exited'), JSON.stringify(runtime.list().map((m) => m.state)));
  });

  it('a terminal runtime error is reported and not retried; a transient one is retried with backoff', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    runtime.failNext.start = new RuntimeError('invalid-config', { id: umidFor('uid-term'), name: 'default/term' }, 'interface eth0: transport vde is not available on this node');
    source.put(machine('term'));
    await agentWith(source, runtime);
    await until('error in status', () => cond(statusOf(source, 'default/term'), 'Ready')?.reason === 'Error');
    assert.match(cond(statusOf(source, 'default/term'), 'Ready')!.message, /transport vde/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(runtime.calls.filter((c) => c.startsWith('start')).length, 1, 'not retried');

    runtime.failNext.start = new Error('machine default/flaky: jail set-up failed: mount: resource busy');
    source.put(machine('flaky'));
    await until('flaky Running after a retry', () => statusOf(source, 'default/flaky')?.phase === 'Running');
    assert.equal(runtime.calls.filter((c) => c.startsWith(`start ${umidFor('uid-flaky')}`)).length, 2);
  });

  it('a failure whose message varies backs off instead of spinning on its own status echo', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    runtime.failStartAlways = true;
    source.put(machine('spin'));
    // Time moves only when the test says so: the count is exact, however slow the machine.
    const clock = new FakeClock();
    await agentWith(source, runtime, {}, clock);
    await until('the first attempt', () => runtime.calls.some((c) => c.startsWith('start')));
    await clock.advance(400);
    const attempts = runtime.calls.filter((c) => c.startsWith('start')).length;
    // 5 ms doubling: retries at 5, 15, 35, 75, 155 and 315 ms after the first attempt, so 7
    // attempts within 400 ms; a loop driven by its own status echo would make hundreds.
    assert.equal(attempts, 7, `${attempts} attempts`);
    // A real change still goes through at once.
    runtime.failStartAlways = false;
    const m = source.get('default/spin')!;
    source.put({ ...m, spec: { ...m.spec, memory: '96Mi' } });
    await until('Running after the fix', () => statusOf(source, 'default/spin')?.phase === 'Running', 1000);
  });

  it('an object deleted while its status is being written is done, not a failed reconcile', async () => {
    const { Writable } = await import('node:stream');
    const lines: string[] = [];
    const captured = pino({ level: 'debug' }, new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb(); } }));
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('gone'));
    source.goneOnPatch.add('default/gone');
    const agent = await startAgent(options, { source, runtime, logger: captured, metrics: new Registry() });
    agents.push(agent);
    await until('the write found it gone', () => !source.goneOnPatch.has('default/gone'));
    await until('its guest shut down as an orphan', () => runtime.calls.some((c) => c.startsWith('remove')));
    const log = lines.join('');
    assert.doesNotMatch(log, /writing status failed/);
    assert.doesNotMatch(log, /"level":(40|50).*reconcile failed/);
    assert.ok(!source.events.some((e) => e.reason === 'Failed'), 'no Failed Event');
  });

  it('an idle guest causes no status write: passes over a running guest as time goes by write nothing', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    const metrics = new Registry();
    source.put(machine('idle'));
    // A resync every 20 ms: many passes over a guest that just runs.
    agents.push(await startAgent({ ...options, resyncPeriodSeconds: 0.02 }, { source, runtime, logger, metrics }));
    await until('Running', () => statusOf(source, 'default/idle')?.phase === 'Running');
    const passes = async (): Promise<number> => Number(/^umlmon_reconcile_total\{result="done"\} (\d+)$/m.exec(await metrics.render())?.[1] ?? 0);
    await new Promise((r) => setTimeout(r, 100));
    const writes = source.patches.length;
    const before = await passes();
    for (const end = Date.now() + 3000; (await passes()) < before + 10;) {
      if (Date.now() > end) throw new Error('timed out waiting for: ten more passes');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(source.patches.length, writes, 'no status write for an idle guest');
    assert.ok(statusOf(source, 'default/idle')?.bootTime, 'uptime follows from status.bootTime');
  });

  it('stop() leaves guests running', async () => {
    const source = new FakeSource();
    const runtime = new FakeRuntime();
    source.put(machine('stay'));
    const agent = await agentWith(source, runtime);
    await until('Running', () => statusOf(source, 'default/stay')?.phase === 'Running');
    await agent.stop();
    assert.ok(!runtime.calls.some((c) => c.startsWith('stop')));
    assert.equal(runtime.list()[0]?.state, 'running');
  });
});

process.on('exit', () => rmSync(imageRoot, { recursive: true, force: true }));
