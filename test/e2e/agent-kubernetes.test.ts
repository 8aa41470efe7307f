// Issue 4's "Done means", end to end: the agent as a child process (`node src/cli/main.ts run`,
// so that it can be SIGKILLed) against a real Kubernetes 1.20 control plane
// (test/support/control-plane.ts), driven with the real kubectl, running real UML kernels. The steps build on each other and run in order; every wait is on an
// observable condition (status, Events, processes), with generous timeouts for a busy 2-core
// machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../support/uml.ts';
import { kernelVersion } from '../../src/runtime/kernel-probe.ts';
import { eventually } from '../support/eventually.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { umlMachineJson } from '../support/fixtures.ts';

const run = promisify(execFile);
const MAIN = join(REPO_ROOT, 'src/cli/main.ts');
const suffix = Math.random().toString(36).slice(2, 7);
const NODE = `e2e-node-${suffix}`;
const NAME = `guest-${suffix}`;
const BAD = `bad-${suffix}`;

let cp: ControlPlane;
let dir: string;
let stateDir: string;
let imageRoot: string;
let configFile: string;
let agent: ChildProcess | undefined;
let agentLog: string;
let agentStarts = 0;
let healthPort = 0;

before(async () => {
  const kernel = umlKernel();
  // Short paths: mconsole sockets live below the state directory (108-byte limit).
  dir = mkdtempSync(join(tmpdir(), 'ume2e-'));
  stateDir = join(dir, 's');
  imageRoot = join(dir, 'img');
  mkdirSync(imageRoot);
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  const data = join(imageRoot, 'data.img');
  closeSync(openSync(data, 'w'));
  truncateSync(data, 8 * 2 ** 20);
  cp = await startControlPlane();
  configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, [
    `nodeName: ${NODE}`,
    'source: kubernetes',
    `kubeconfig: ${cp.adminKubeconfig}`,
    `stateDir: ${stateDir}`,
    `imageRoot: ${imageRoot}`,
    'listen: "127.0.0.1:0"',
    `kernels: {default: {path: ${kernel}}}`,
    'memory: {min: 48Mi, max: 256Mi, default: 64Mi}',
    'workers: 2',
    'resyncPeriodSeconds: 600',
    'logLevel: debug',
    '',
  ].join('\n'));
  agentLog = join(dir, 'agent.log');
  // 1.20 knows neither CEL rules nor selectable fields: kubectl's client-side validation refuses
  // those fields, the server drops them (the agent checks what they would have).
  await kubectl(['apply', '--validate=false', '-f', join(REPO_ROOT, 'crds')]);
  await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
  await until('the CRD served', async () => { await kubectl(['get', 'uml']); return true; }, 30_000);
});

after(async () => {
  if (agent && agent.exitCode === null) {
    agent.kill('SIGKILL');
    await new Promise((r) => agent?.once('exit', r));
  }
  // Every guest down, whatever state the steps left: drain through the state directory.
  if (stateDir && existsSync(stateDir)) {
    await run(process.execPath, [MAIN, 'drain', '-f', configFile, '--timeout', '30s'], { encoding: 'utf8' }).catch((err: unknown) => {
      console.error(`drain after the test failed: ${String((err as { stdout?: string }).stdout ?? err)}`);
    });
    // Only this test's kernels: the umids in its own state directory (other tests run guests too).
    const umids = existsSync(join(stateDir, 'machines')) ? readdirSync(join(stateDir, 'machines')) : [];
    for (const umid of umids) {
      for (const pid of kernelPids(umid)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
  }
  await cp?.stop();
  if (process.env.UMLMON_E2E_KEEP) console.error(`kept ${dir}`);
  else if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const child = run('kubectl', ['--kubeconfig', cp.adminKubeconfig, ...args], { encoding: 'utf8' });
  if (stdin !== undefined) child.child.stdin?.end(stdin);
  try {
    return (await child).stdout;
  } catch (err) {
    throw new Error(`kubectl ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

async function umlmon(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface Machine {
  metadata: { uid: string; finalizers?: string[]; generation: number };
  spec: Record<string, unknown>;
  status?: {
    phase?: string; pid?: number; umid?: string; kernelVersion?: string; restartCount?: number; observedGeneration?: number;
    disks?: { name: string; attached: boolean }[]; interfaces?: { name: string; attached: boolean }[];
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

async function getMachine(name = NAME): Promise<Machine> {
  return JSON.parse(await kubectl(['get', 'uml', name, '-o', 'json'])) as Machine;
}

function manifest(name: string, spec: Record<string, unknown>): string {
  return umlMachineJson({ name, namespace: 'default', spec: { nodeName: NODE, memory: '64Mi', disks: [{ name: 'ubd0', image: TEST_IMAGE }], restartPolicy: 'Always', shutdownGracePeriodSeconds: 10, ...spec } });
}

async function patchSpec(spec: Record<string, unknown>, name = NAME): Promise<void> {
  await kubectl(['patch', 'uml', name, '--type=merge', '-p', JSON.stringify({ spec })]);
}

function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 90_000): Promise<T> {
  return eventually(what, probe, { timeoutMs, intervalMs: 250, context: () => `--- agent log tail ---\n${tail(agentLog, 30)}` });
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function phaseIs(phase: string, name = NAME): Promise<Machine | undefined> {
  const m = await getMachine(name);
  return m.status?.phase === phase && m.status.observedGeneration === m.metadata.generation ? m : undefined;
}

function condition(m: Machine, type: string) {
  return m.status?.conditions?.find((c) => c.type === type);
}

interface Event { reason: string; note?: string; type: string; regarding: { name: string }; series?: { count: number } }

async function events(name = NAME): Promise<Event[]> {
  const list = JSON.parse(await kubectl(['get', 'events.v1.events.k8s.io', '-n', 'default', '-o', 'json'])) as { items: Event[] };
  return list.items.filter((e) => e.regarding.name === name);
}

async function eventCount(reason: string, name = NAME): Promise<number> {
  return (await events(name)).filter((e) => e.reason === reason).reduce((n, e) => n + (e.series?.count ?? 1), 0);
}

/**
 * The count once the agent has written it: a repeat folds into its Event's series, which the
 * agent patches up to a second later (src/agent/events.ts, seriesFlushMs). Counting right after
 * the repeat would see the old count and the next count would include it.
 */
async function settledEventCount(reason: string, name = NAME): Promise<number> {
  let last = await eventCount(reason, name);
  for (;;) {
    await new Promise((r) => setTimeout(r, 1500));
    const now = await eventCount(reason, name);
    if (now === last) return now;
    last = now;
  }
}

/** Host pids whose command line carries umid=<umid> (every process of a UML instance does). */
function kernelPids(umid: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmd.includes(`umid=${umid}`)) pids.push(Number(entry));
    } catch { /* exited */ }
  }
  return pids;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function startTheAgent(): Promise<void> {
  agentStarts++;
  const log = openSync(agentLog, 'a');
  agent = spawn(process.execPath, [MAIN, 'run', '-f', configFile], { stdio: ['ignore', log, log] });
  closeSync(log);
  const startedAt = readFileSync(agentLog, 'utf8').length;
  healthPort = await until('the agent to serve /healthz', () => {
    const text = readFileSync(agentLog, 'utf8').slice(startedAt);
    const m = /"address":"127\.0\.0\.1:(\d+)","msg":"serving \/healthz/.exec(text);
    if (agent?.exitCode !== null && agent?.exitCode !== undefined) throw new Error(`the agent exited with ${agent.exitCode}`);
    return m ? Number(m[1]) : undefined;
  }, 30_000);
  await until('/readyz', async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status === 200, 60_000);
}

async function stopTheAgent(signal: NodeJS.Signals): Promise<number> {
  const child = agent;
  assert.ok(child && child.exitCode === null, 'the agent is running');
  const started = Date.now();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------
// The scenario

test('kubectl apply → Running, Ready=True, kernel version; kubectl wait works', async () => {
  await startTheAgent();
  await kubectl(['apply', '-f', '-'], manifest(NAME, {}));
  await kubectl(['wait', '--for=condition=Ready', `uml/${NAME}`, '--timeout=120s']);
  const m = await until('phase Running', () => phaseIs('Running'));
  assert.equal(condition(m, 'Ready')?.status, 'True');
  const release = await kernelVersion(umlKernel());
  assert.ok(release !== '' && (m.status?.kernelVersion ?? '').includes(` ${release} `), `${m.status?.kernelVersion} is the uname of ${release}`);
  assert.ok(m.status?.pid && alive(m.status.pid));
  assert.deepEqual(m.metadata.finalizers, ['umlmon.io/machine']);
  assert.ok(await eventCount('Starting') >= 1);
  const printed = await kubectl(['get', 'uml', NAME, '-o', 'wide']);
  assert.match(printed, new RegExp(`${NAME}\\s+${NODE}\\s+Running\\s+Running`));
  const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
  assert.match(metrics, /^# TYPE \S+ (counter|gauge|histogram)$/m);
});

test('state Paused → guest stopped, phase Paused; Running again', async () => {
  await patchSpec({ state: 'Paused' });
  const paused = await until('phase Paused', () => phaseIs('Paused'));
  assert.equal(condition(paused, 'Paused')?.status, 'True');
  const reply = await umlmon(['mconsole', '--state-dir', stateDir, `default/${NAME}`, 'stop']);
  assert.match(reply.stdout, /Already stopped/i, 'the kernel itself says it is stopped');
  await patchSpec({ state: 'Running' });
  const running = await until('phase Running again', () => phaseIs('Running'));
  assert.equal(running.status?.pid, paused.status?.pid, 'pause and resume keep the same kernel');
  assert.ok(await eventCount('Paused') >= 1);
  assert.ok(await eventCount('Resumed') >= 1);
});

test('a disk added to the spec is attached in the guest, removed again it is detached', async () => {
  await patchSpec({ disks: [{ name: 'ubd0', image: TEST_IMAGE }, { name: 'ubd1', image: 'data.img' }] });
  await until('ubd1 attached', async () => (await getMachine()).status?.disks?.find((d) => d.name === 'ubd1')?.attached === true);
  const withDisk = await umlmon(['mconsole', '--state-dir', stateDir, `default/${NAME}`, 'proc', 'partitions']);
  assert.match(withDisk.stdout, /\bubdb\b/, withDisk.stdout + withDisk.stderr);
  await patchSpec({ disks: [{ name: 'ubd0', image: TEST_IMAGE }] });
  await until('ubd1 gone from status', async () => (await getMachine()).status?.disks?.every((d) => d.name !== 'ubd1'));
  const without = await umlmon(['mconsole', '--state-dir', stateDir, `default/${NAME}`, 'proc', 'partitions']);
  assert.doesNotMatch(without.stdout, /\bubdb\b/);
  assert.ok(await eventCount('DiskAttached') >= 1);
  assert.ok(await eventCount('DiskDetached') >= 1);
});

test('an interface added to the spec appears in the kernel, removed it disappears', async () => {
  // A vector interface on a node LAN (umlmon's kernel has no legacy ethN driver).
  await patchSpec({ interfaces: [{ name: 'vec1', transport: 'tap', tap: { switch: `lan-${Math.random().toString(36).slice(2, 8)}` } }] });
  await until('vec1 attached', async () => (await getMachine()).status?.interfaces?.find((i) => i.name === 'vec1')?.attached === true);
  // The kernel's own view: /proc/sys/net/ipv4/conf/<dev> exists exactly while the device is
  // registered (mconsole proc cannot read /proc/net, a link into /proc/self).
  const dev = await umlmon(['mconsole', '--state-dir', stateDir, `default/${NAME}`, 'proc', 'sys/net/ipv4/conf/vec1/forwarding']);
  assert.match(dev.stdout, /^OK/, dev.stdout + dev.stderr);
  await patchSpec({ interfaces: [] });
  await until('vec1 gone from status', async () => ((await getMachine()).status?.interfaces ?? []).every((i) => i.name !== 'vec1'));
  const after = await umlmon(['mconsole', '--state-dir', stateDir, `default/${NAME}`, 'proc', 'sys/net/ipv4/conf/vec1/forwarding']);
  assert.match(after.stdout, /^ERR Failed to open file/, after.stdout + after.stderr);
  assert.ok(await eventCount('InterfaceAttached') >= 1);
  assert.ok(await eventCount('InterfaceDetached') >= 1);
});

test('state Stopped → kernel gone, phase Stopped; Running boots it again', async () => {
  const before = (await getMachine()).status;
  await patchSpec({ state: 'Stopped' });
  await until('phase Stopped', () => phaseIs('Stopped'), 120_000);
  assert.ok(before?.pid !== undefined && !alive(before.pid), 'the kernel process is gone');
  assert.deepEqual(kernelPids(before?.umid ?? 'none'), []);
  await patchSpec({ state: 'Running' });
  await kubectl(['wait', '--for=condition=Ready', `uml/${NAME}`, '--timeout=120s']);
  await until('phase Running', () => phaseIs('Running'));
});

test('SIGKILL of the agent while the guest runs: restarted, it adopts the same kernel (Adopted)', async () => {
  const before = (await getMachine()).status;
  assert.ok(before?.pid);
  const adoptedBefore = await settledEventCount('Adopted');
  const startingBefore = await settledEventCount('Starting');
  await stopTheAgent('SIGKILL');
  assert.ok(alive(before.pid), 'the guest outlives its agent');
  await startTheAgent();
  await until('an Adopted Event', async () => (await eventCount('Adopted')) > adoptedBefore);
  const after = await until('Running after adoption', () => phaseIs('Running'));
  assert.equal(after.status?.pid, before.pid, 'same kernel process');
  assert.equal(await settledEventCount('Starting'), startingBefore, 'nothing was started again');
});

test('guest panic → GuestPanic Event and a restart per restartPolicy Always', async () => {
  const before = (await getMachine()).status;
  // The kernel crashes on it, so there may be no reply: the Event is the evidence.
  await umlmon(['mconsole', '--timeout', '2', '--state-dir', stateDir, `default/${NAME}`, 'sysrq', 'c']);
  await until('a GuestPanic Event', async () => (await eventCount('GuestPanic')) >= 1);
  const after = await until('restarted and Running', async () => {
    const m = await phaseIs('Running');
    return m && (m.status?.restartCount ?? 0) >= 1 && m.status?.pid !== before?.pid ? m : undefined;
  }, 120_000);
  assert.ok(after.status?.pid && alive(after.status.pid));
});

test('an invalid spec only the agent rejects → SpecValid=False and InvalidSpec; the others keep running', async () => {
  const pid = (await getMachine()).status?.pid;
  // 44Mi passes the CRD (any positive quantity) but is below this node's minimum (48Mi).
  await kubectl(['apply', '--validate=false', '-f', '-'], manifest(BAD, { memory: '44Mi' }));
  const bad = await until('SpecValid=False', async () => {
    const m = await getMachine(BAD);
    return condition(m, 'SpecValid')?.status === 'False' ? m : undefined;
  });
  assert.match(condition(bad, 'SpecValid')?.message ?? '', /memory/);
  assert.ok(condition(bad, 'SpecValid')?.reason);
  await until('an InvalidSpec Event', async () => (await eventCount('InvalidSpec', BAD)) >= 1);
  assert.equal(bad.status?.pid, undefined, 'nothing was started for it');
  assert.equal((await getMachine()).status?.pid, pid, 'the valid machine kept running');
  await kubectl(['delete', 'uml', BAD, '--timeout=60s']);
});

test('API outage (the API server stopped for 30 s): guests untouched, the agent catches up', async () => {
  const before = (await getMachine()).status;
  assert.ok(before?.pid);
  await cp.stopApiServer();
  const outageEnds = Date.now() + 30_000;
  await new Promise((r) => setTimeout(r, 15_000));
  assert.ok(alive(before.pid), 'the guest runs through the outage');
  assert.equal(agent?.exitCode, null, 'the agent keeps running');
  await new Promise((r) => setTimeout(r, Math.max(0, outageEnds - Date.now())));
  await cp.startApiServer();
  // A change made as soon as the API answers again is applied once the agent is back.
  await until('the API to answer', async () => { await patchSpec({ state: 'Paused' }); return true; }, 30_000);
  const paused = await until('the change applied after the outage', () => phaseIs('Paused'), 120_000);
  assert.equal(paused.status?.pid, before.pid, 'the same kernel');
  await patchSpec({ state: 'Running' });
  await until('Running', () => phaseIs('Running'));
});

test('410 Gone (a watch from history the server no longer has) → relist, no duplicate starts', async () => {
  const before = (await getMachine()).status;
  const startingBefore = await settledEventCount('Starting');
  const logBefore = readFileSync(agentLog, 'utf8').length;
  // The agent frozen (its guests run on), the cluster moves on without it (objects it does not
  // watch), and the API server restarts: its watch cache begins after the agent's last
  // resourceVersion, so the agent's next watch is answered 410 Gone.
  process.kill(agent!.pid!, 'SIGSTOP');
  try {
    for (let i = 0; i < 5; i++) await kubectl(['create', 'configmap', `move-on-${suffix}-${i}`, '-n', 'default']);
    await cp.stopApiServer();
    await cp.startApiServer();
    for (let i = 5; i < 10; i++) await kubectl(['create', 'configmap', `move-on-${suffix}-${i}`, '-n', 'default']);
  } finally {
    process.kill(agent!.pid!, 'SIGCONT');
  }
  await until('the agent relisted after 410 Gone', () => readFileSync(agentLog, 'utf8').slice(logBefore).includes('watch expired (410 Gone); relisting'), 60_000);
  await kubectl(['label', 'uml', NAME, `relist=${Date.now()}`]);
  await patchSpec({ state: 'Paused' });
  await until('Paused after the relist', () => phaseIs('Paused'));
  await patchSpec({ state: 'Running' });
  const m = await until('Running', () => phaseIs('Running'));
  assert.equal(m.status?.pid, before?.pid);
  assert.equal(await settledEventCount('Starting'), startingBefore, 'no second start');
  const kernels = (await run(process.execPath, ['-e', `
    const net = require('node:net'); const s = net.createConnection(${JSON.stringify(join(stateDir, 'control.sock'))});
    s.end(JSON.stringify({ op: 'list' }) + '\\n'); let b = ''; s.on('data', (d) => b += d); s.on('end', () => process.stdout.write(b));`], { encoding: 'utf8' })).stdout;
  const rows = (JSON.parse(kernels) as { result: { machine: string; pid: number }[] }).result.filter((r) => r.machine === `default/${NAME}`);
  assert.equal(rows.length, 1, 'one kernel for the machine');
  assert.equal(rows[0]?.pid, before?.pid);
});

test('SIGTERM: the agent exits within seconds and leaves the guest running', async () => {
  const pid = (await getMachine()).status?.pid;
  assert.ok(pid);
  const ms = await stopTheAgent('SIGTERM');
  assert.ok(ms < 10_000, `exited in ${ms} ms`);
  assert.equal(agent?.exitCode, 0);
  assert.ok(alive(pid), 'the guest keeps running');
  await startTheAgent();
  const m = await until('adopted again', () => phaseIs('Running'));
  assert.equal(m.status?.pid, pid);
});

test('delete → finalizer cleanup: no kernel, jail, mount or state left', async () => {
  const m = await getMachine();
  const umid = m.status?.umid;
  assert.ok(umid);
  await kubectl(['delete', 'uml', NAME, '--timeout=120s']);
  await until('the object gone', async () => {
    try { await getMachine(); return false; } catch (err) { return /NotFound|not found/i.test(String(err)); }
  });
  assert.deepEqual(kernelPids(umid), [], 'no kernel process left');
  assert.equal(existsSync(join(stateDir, 'machines', umid)), false, 'no machine directory (jail) left');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(join(stateDir, 'machines', umid)));
  assert.deepEqual(mounts, [], 'no mount left');
  assert.ok(await eventCount('Stopping') >= 1 || await eventCount('Stopped') >= 1);
  assert.equal(agentStarts, 3);
  // The object being gone is the end of the story, not a failed status write (HTTP 404).
  await new Promise((r) => setTimeout(r, 500));
  assert.doesNotMatch(readFileSync(agentLog, 'utf8'), /writing status failed.*(404|not found)/i);
});

test('umlmon drain through the running agent: every guest shut down gracefully and kept down', async () => {
  const name = `drained-${suffix}`;
  await kubectl(['apply', '-f', '-'], manifest(name, {}));
  await kubectl(['wait', '--for=condition=Ready', `uml/${name}`, '--timeout=120s']);
  const { pid, umid } = (await getMachine(name)).status ?? {};
  assert.ok(pid && umid);
  const drained = await umlmon(['drain', '-f', configFile, '--timeout', '60s']);
  assert.equal(drained.code, 0, drained.stdout + drained.stderr);
  assert.match(drained.stdout, /drained by the running agent/);
  assert.match(drained.stdout, new RegExp(`default/${name}\\s+stopped`));
  assert.equal(alive(pid), false);
  assert.equal(agent?.exitCode, null, 'the agent keeps running after a drain');
  // Nothing restarts while drained (restartPolicy Always notwithstanding).
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(kernelPids(umid), []);
});
