// The agent end to end on real jailed UML kernels, in directory mode and in Kubernetes mode
// against a real 1.20 API server (test/support/control-plane.ts), with every figure of issue 10
// printed beside the raw floor measured in the same run (the runtime alone, in this process):
//   - create → Ready, 1 machine (median of several) vs raw boot (runtime start → booted);
//   - pause / resume, spec edit → Paused condition (p99) vs mconsole stop / go itself;
//   - 30 machines at once → all Ready, and N (default 100) at once → all Running, vs the runtime
//     starting as many at once, and under that as many bare kernels (un-jailed, one shell);
//   - graceful stop of a guest that powers off on ctrl-alt-del (spec state Stopped → phase
//     Stopped) vs runtime.stop() with a grace period;
//   - drain of N guests (the control socket's drain) vs the runtime stopping N at once;
//   - with N idle guests over the idle window: agent RSS (vs a bare Node process), CPU, wakeups
//     (context switches of all its threads), status writes; then what a /metrics scrape of N
//     guests costs the agent (time, CPU, RSS after);
//   - Kubernetes mode: requests to the API server, idle and per started guest (the agent's own
//     user's, from the audit log), and the watch events an agent receives, extrapolated on paper
//     to 1,000 nodes × 100 guests.
// The agent runs as a node runs it: compiled (dist/, `npm run build`) with the node flags of the
// Containerfile's ENTRYPOINT. Its at-start RSS from the checkout's sources (Node's type stripping included) is
// printed as well.
//   node bench/agent.ts [--mode directory|kubernetes|both] [--guests N] [--idle-seconds 60]
//                       [--cycles 10] [--single-repeats 5] [--form dist|src]
//   UMLMON_BENCH_GUESTS=N overrides the default of 100 (each guest takes ~50 MiB of RAM).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, watch, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { availableParallelism, freemem } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { UmlMachineStatus } from '../src/api/types.ts';
import { controlRequest } from '../src/agent/control.ts';
import { createRuntime, defaultCgroupParent } from '../src/runtime/index.ts';
import type { MachineConfig, Runtime, RuntimeEvent } from '../src/runtime/index.ts';
import { startControlPlane, type AuditRecord, type ControlPlane } from '../test/support/control-plane.ts';
import { crdEstablished } from '../test/support/kubectl.ts';
import { freePorts } from '../test/support/processes.ts';
import { FAST_BOOT_ARGS, KERNEL_BOOTED } from '../test/support/plain-uml.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../test/support/uml.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const MODE = args.get('mode') ?? 'both';
const MiB = 2 ** 20;
const GUEST_MEMORY = 48 * MiB;
const requestedGuests = Number(args.get('guests') ?? process.env.UMLMON_BENCH_GUESTS ?? 100);
// Each guest needs its memory file on a tmpfs and a few MiB of host memory besides: never more
// than half of what is free now.
const GUESTS = Math.max(1, Math.min(requestedGuests, Math.floor(freemem() / 2 / (GUEST_MEMORY + 16 * MiB))));
const MID = Math.min(30, GUESTS);
const IDLE_SECONDS = Number(args.get('idle-seconds') ?? 60);
const CYCLES = Number(args.get('cycles') ?? 10);
const SINGLE_REPEATS = Number(args.get('single-repeats') ?? 5);
const FORM = args.get('form') ?? 'dist';
const FAST_ARGS = ['lpj=auto'];
const NODE = 'bench';
/** The agent's user on the bench's control plane. */
const AGENT_USER = 'umlmon-bench-agent';

const base = mkdtempSync('/tmp/umlmon-bench-agent-');
const imageRoot = join(base, 'i');
const tag = Math.random().toString(36).slice(2, 6);

// ---- small helpers ------------------------------------------------------------------------

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}
const median = (xs: number[]): number => quantile(xs, 0.5);
const ms = (x: number): string => (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : x >= 20 ? `${x.toFixed(0)} ms` : `${x.toFixed(1)} ms`);
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));

/** One line of the report: the figure, the floor and their ratio. */
interface Row { figure: string; value: string; floor?: string; ratio?: number; target: string }
const report = new Map<string, Row[]>();
function row(mode: string, r: Row): void {
  if (!report.has(mode)) report.set(mode, []);
  report.get(mode)!.push(r);
  console.log(`  ${r.figure}: ${r.value}${r.floor ? `  (floor ${r.floor}${r.ratio !== undefined ? `, ×${r.ratio.toFixed(2)}` : ''})` : ''}  target ${r.target}`);
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}
/** Context switches of every thread: each is one wakeup of the agent (or a preemption). */
function switches(pid: number): number {
  let sum = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      sum += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    } catch {
      /* thread gone */
    }
  }
  return sum;
}

/**
 * CPU time (ms) used so far by a runtime's machines, their jails included (each jail joins its
 * machine's cgroup first): the cgroup parent's cpuacct (v1) or cpu.stat (v2). 0 before the
 * parent exists; NaN on a node without either.
 */
function machinesCpuMs(stateDir: string): number {
  const parent = defaultCgroupParent(stateDir);
  if (existsSync('/sys/fs/cgroup/cpuacct/cpuacct.usage')) {
    return existsSync(`/sys/fs/cgroup/cpuacct/${parent}`) ? Number(readFileSync(`/sys/fs/cgroup/cpuacct/${parent}/cpuacct.usage`, 'utf8')) / 1e6 : 0;
  }
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const m = existsSync(`/sys/fs/cgroup/${parent}/cpu.stat`) ? /^usage_usec (\d+)/m.exec(readFileSync(`/sys/fs/cgroup/${parent}/cpu.stat`, 'utf8')) : null;
    return m ? Number(m[1]) / 1000 : 0;
  }
  return NaN;
}

/** CPU used so far (ms): by the machines and their jails, the agent, the control plane's processes. */
interface CpuMark { machines: number; agent: number; controlPlane: number }
const cpuMs = (pid: number): number => {
  try {
    return cpuTicks(pid) * 10;
  } catch {
    return 0; // gone
  }
};

function cpuNow(stateDir: string, pid: number, controlPlane: number[]): CpuMark {
  return { machines: machinesCpuMs(stateDir), agent: cpuMs(pid), controlPlane: controlPlane.reduce((sum, p) => sum + cpuMs(p), 0) };
}

/**
 * Where the CPU of n machines started at once went until all were Ready: the guests with their
 * jails, the agent, and (Kubernetes mode) the test's control plane, which shares the host's
 * cores here as it would not on a real cluster's node. Spread over every core of the host, that
 * much CPU takes at least the time printed as the floor: a start of n can be no faster whatever
 * the agent does, but for its own share.
 */
function cpuRow(mode: string, n: number, since: CpuMark, stateDir: string, pid: number, controlPlane: number[]): void {
  const now = cpuNow(stateDir, pid, controlPlane);
  const guests = (now.machines - since.machines) / n;
  const agentMs = (now.agent - since.agent) / n;
  const cp = (now.controlPlane - since.controlPlane) / n;
  const cores = availableParallelism();
  row(mode, {
    figure: `${n} at once: CPU per machine until all Ready`,
    value: `${guests.toFixed(0)} ms the guest and its jail, ${agentMs.toFixed(0)} ms the agent${controlPlane.length ? `, ${cp.toFixed(0)} ms the API server and etcd` : ''}`,
    floor: `that CPU on ${cores} cores: ${ms(((guests + agentMs + cp) * n) / cores)}, the guests' and jails' alone ${ms((guests * n) / cores)}`,
    target: '-',
  });
}

/** The processes of the bench's control plane (their command lines name its directory; so does the agent's kubeconfig). */
function controlPlanePids(cp: ControlPlane | undefined, agentPid: number): number[] {
  if (!cp) return [];
  return spawnSync('pgrep', ['-f', cp.dir], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number).filter((p) => p !== agentPid);
}

/** RSS of a Node process that only waits, from the same binary: the floor of any agent. */
async function bareNodeRss(flags: string[] = [], script = 'setInterval(() => {}, 1e6)'): Promise<number> {
  const child = spawn(process.execPath, [...flags, '-e', script], { stdio: 'ignore' });
  await sleep(1500);
  const rss = rssKiB(child.pid!);
  child.kill('SIGKILL');
  return rss / 1024;
}

// ---- the raw floor: the runtime alone -----------------------------------------------------

interface Floors { boot: number; startMid: number; startAll: number; stop: number; drainAll: number; bareMid: number; bareAll: number }

/**
 * The floor under the runtime's: n kernels, un-jailed, started in one burst by one shell (no
 * spawn per kernel from Node, which waits for each child's exec), each on a COW file over the
 * test image, until every one has printed that it runs init. What the kernels and the guests'
 * own init cost on this host's CPUs, with nothing of umlmon's around them.
 */
async function bareKernels(n: number): Promise<number> {
  const dir = mkdtempSync(join(base, 'bare-'));
  // The guests' memory files on a tmpfs, as the runtime's jail has them: on a disk-backed /tmp
  // they made every page fault slower and left gigabytes of dirty pages to write back after.
  const memory = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/umlmon-bench-bare-') : dir;
  const image = join(imageRoot, TEST_IMAGE);
  let script = '';
  for (let i = 0; i < n; i++) {
    const d = join(dir, String(i));
    mkdirSync(d);
    script += `TMPDIR=${memory} ${umlKernel()} ubd0=${d}/cow,${image} mem=${GUEST_MEMORY / MiB}M umid=bare${tag}${i} uml_dir=${d} ${FAST_BOOT_ARGS.join(' ')} </dev/null >${d}/console 2>&1 &\n`;
  }
  writeFileSync(join(dir, 'start.sh'), script);
  const waiting = new Set(Array.from({ length: n }, (_, i) => join(dir, String(i), 'console')));
  const t0 = performance.now();
  spawn('/bin/sh', [join(dir, 'start.sh')], { stdio: 'ignore' });
  try {
    while (waiting.size > 0) {
      if (performance.now() - t0 > 120_000) throw new Error(`bare kernels: ${waiting.size} of ${n} did not boot within 120 s`);
      await sleep(10);
      for (const file of waiting) if (KERNEL_BOOTED.test(readFileIfAny(file))) waiting.delete(file);
    }
    return performance.now() - t0;
  } finally {
    // The kernels and their guests' processes all carry uml_dir=<dir>/... in their command line.
    spawnSync('pkill', ['-KILL', '-f', `uml_dir=${dir}/`]);
    for (let i = 0; i < 200 && spawnSync('pgrep', ['-f', `uml_dir=${dir}/`]).status === 0; i++) await sleep(50);
    rmSync(dir, { recursive: true, force: true });
    rmSync(memory, { recursive: true, force: true });
  }
}

function readFileIfAny(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function rawConfig(id: string): MachineConfig {
  return {
    id, name: `bench/${id}`, kernel: umlKernel(), memoryBytes: GUEST_MEMORY, cmdline: [], defaultArgs: FAST_ARGS,
    disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], interfaces: [],
  };
}

function allSaw(rt: Runtime, ids: string[], type: RuntimeEvent['type']): Promise<number> {
  const waiting = new Set(ids);
  return new Promise((resolve) => {
    const off = rt.onEvent((e: RuntimeEvent) => {
      if (e.type === type && waiting.delete(e.id) && waiting.size === 0) {
        off();
        resolve(performance.now());
      }
    });
  });
}

/** Starts n at once: the time until every kernel has booted. Returns once every guest's init runs (cad powers it off from then on). */
async function startMany(rt: Runtime, prefix: string, n: number): Promise<{ ids: string[]; ms: number }> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${tag}${i}`.slice(0, 12));
  const all = allSaw(rt, ids, 'booted');
  const init = allSaw(rt, ids, 'guest-message');
  const t0 = performance.now();
  await Promise.all(ids.map((id) => rt.start(rawConfig(id))));
  const t = (await all) - t0;
  await init;
  return { ids, ms: t };
}

async function rawFloors(stateDir: string): Promise<Floors> {
  const rt = createRuntime({ stateDir, imageRoot });
  try {
    const boots: number[] = [];
    for (let i = 0; i < SINGLE_REPEATS; i++) {
      const { ids, ms: t } = await startMany(rt, 'rb', 1);
      boots.push(t);
      await rt.stop(ids[0]!, { gracePeriodMs: 0 });
      await rt.remove(ids[0]!);
    }
    const mid = await startMany(rt, 'rm', MID);
    const stops: number[] = [];
    for (const id of mid.ids.slice(0, Math.min(5, MID))) {
      const t0 = performance.now();
      await rt.stop(id, { gracePeriodMs: 10_000 });
      stops.push(performance.now() - t0);
    }
    await Promise.all(mid.ids.map(async (id) => {
      await rt.stop(id, { gracePeriodMs: 0 });
      await rt.remove(id);
    }));
    const all = await startMany(rt, 'ra', GUESTS);
    const t0 = performance.now();
    await Promise.all(all.ids.map((id) => rt.stop(id, { gracePeriodMs: 10_000 })));
    const drainAll = performance.now() - t0;
    for (const id of all.ids) await rt.remove(id);
    const bareMid = await bareKernels(MID);
    const bareAll = await bareKernels(GUESTS);
    return { boot: median(boots), startMid: mid.ms, startAll: all.ms, stop: median(stops), drainAll, bareMid, bareAll };
  } finally {
    await rt.close();
  }
}

// ---- the two sources, as the bench drives them ---------------------------------------------

interface Counters {
  /** Status writes: status files replaced (directory), status PATCHes (Kubernetes). */
  statusWrites: number;
}

interface Driver {
  readonly mode: 'directory' | 'kubernetes';
  agentArgs: string[];
  write(name: string, state: string): Promise<void>;
  remove(name: string): Promise<void>;
  status(name: string): UmlMachineStatus | undefined;
  /** Resolves at the next change the bench can see (a status file, a watch event). */
  changed(): Promise<void>;
  counters(): Promise<Counters>;
  close(): Promise<void>;
}

function manifest(name: string, state: string): Record<string, unknown> {
  return {
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name, namespace: 'default' },
    spec: { nodeName: NODE, state, memory: '48Mi', shutdownGracePeriodSeconds: 10, disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }] },
  };
}

class Waiters {
  #waiters: (() => void)[] = [];
  wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
  next(): Promise<void> {
    return new Promise((r) => {
      this.#waiters.push(r);
      setTimeout(r, 250).unref();
    });
  }
}

function directoryDriver(dir: string): Driver {
  mkdirSync(dir, { recursive: true });
  const cache = new Map<string, UmlMachineStatus | undefined>();
  const waiters = new Waiters();
  let writes = 0;
  const read = (name: string): void => {
    try {
      cache.set(name, (parse(readFileSync(join(dir, `${name}.status.yaml`), 'utf8')) as { status?: UmlMachineStatus }).status);
    } catch {
      cache.delete(name);
    }
  };
  // The agent writes a status file by renaming a temporary file over it: one rename event each.
  const watcher = watch(dir, (type, file) => {
    const f = file?.toString() ?? '';
    if (!f.endsWith('.status.yaml')) return;
    if (type === 'rename') writes++;
    read(f.slice(0, -'.status.yaml'.length));
    waiters.wake();
  });
  return {
    mode: 'directory',
    agentArgs: ['--source', 'directory', '--machines-dir', dir],
    async write(name, state) {
      const tmp = join(dir, `.${name}.tmp`);
      writeFileSync(tmp, JSON.stringify(manifest(name, state)));
      renameSync(tmp, join(dir, `${name}.yaml`));
    },
    async remove(name) {
      rmSync(join(dir, `${name}.yaml`), { force: true });
    },
    status: (name) => cache.get(name),
    changed: () => waiters.next(),
    counters: async () => ({ statusWrites: writes }),
    async close() {
      watcher.close();
    },
  };
}

/** The API server's own counters: requests by verb/resource/subresource, watch events and bytes. */
interface ApiCounts { requests: Map<string, number>; watchEvents: number; watchBytes: number }

function kubernetesDriver(cp: ControlPlane, kubeconfigFile: string): Driver & { api(): Promise<ApiCounts>; ownWatch: { events: number; bytes: number }; watchEnds: { count: number } } {
  const ca = readFileSync(cp.caFile);
  const url = new URL(cp.url);
  const cache = new Map<string, UmlMachineStatus | undefined>();
  const waiters = new Waiters();
  const ownWatch = { events: 0, bytes: 0 };
  const path = '/apis/umlmon.io/v1alpha1/namespaces/default/umlmachines';

  function call(method: string, p: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: url.hostname, port: url.port, path: p, method, ca, headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': contentType, accept: 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  // The bench's own view of the machines. The API server may end a watch at any time (its
  // timeout, or its watch cache closing a watcher it finds slow while a hundred guests boot on
  // two cores): a watch that ended is started again, without a resourceVersion, so the server
  // replays every machine as ADDED and nothing changed meanwhile is missed.
  let watchReq: ReturnType<typeof httpsRequest> | undefined;
  let closed = false;
  const watchEnds = { count: 0 };
  function rewatch(why: string): void {
    if (closed) return;
    watchEnds.count++;
    console.log(`  (the bench's watch ended: ${why}; watching again)`);
    setTimeout(startWatch, 100).unref();
  }
  function startWatch(): void {
    if (closed) return;
    let ended = false;
    const end = (why: string): void => {
      if (!ended) {
        ended = true;
        rewatch(why);
      }
    };
    watchReq = httpsRequest({ host: url.hostname, port: url.port, path: `${path}?watch=1&allowWatchBookmarks=false`, ca, headers: { authorization: `Bearer ${cp.adminToken}` } }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          ownWatch.events++;
          ownWatch.bytes += Buffer.byteLength(line);
          const e = JSON.parse(line) as { type: string; object: { metadata: { name: string }; status?: UmlMachineStatus } };
          if (e.type === 'ERROR') continue; // the server ends the watch after it
          if (e.type === 'DELETED') cache.delete(e.object.metadata.name);
          else cache.set(e.object.metadata.name, e.object.status);
          waiters.wake();
        }
      });
      res.on('end', () => end(`HTTP ${res.statusCode}, response ended`));
      res.on('error', (error) => end(error.message));
    });
    watchReq.on('error', (error) => end(error.message));
    watchReq.end();
  }
  startWatch();

  async function api(): Promise<ApiCounts> {
    const text = (await call('GET', '/metrics')).text;
    const requests = new Map<string, number>();
    let watchEvents = 0;
    let watchBytes = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('apiserver_request_total{')) {
        const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
        if (labels.resource !== 'umlmachines' && labels.resource !== 'events') continue;
        const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
        requests.set(key, (requests.get(key) ?? 0) + Number(line.split(' ').at(-1)));
      } else if (line.includes('kind="UmlMachine"')) {
        if (line.startsWith('apiserver_watch_events_total{')) watchEvents += Number(line.split(' ').at(-1));
        if (line.startsWith('apiserver_watch_events_sizes_sum{')) watchBytes += Number(line.split(' ').at(-1));
      }
    }
    return { requests, watchEvents, watchBytes };
  }

  return {
    mode: 'kubernetes',
    agentArgs: ['--source', 'kubernetes', '--kubeconfig', kubeconfigFile],
    ownWatch,
    api,
    async write(name, state) {
      const patched = await call('PATCH', `${path}/${name}`, { spec: { state } }, 'application/merge-patch+json');
      if (patched.status === 404) {
        const created = await call('POST', path, manifest(name, state));
        if (created.status >= 300) throw new Error(`create ${name}: ${created.status} ${created.text}`);
      } else if (patched.status >= 300) {
        throw new Error(`patch ${name}: ${patched.status} ${patched.text}`);
      }
    },
    async remove(name) {
      await call('DELETE', `${path}/${name}`);
    },
    status: (name) => cache.get(name),
    changed: () => waiters.next(),
    async counters() {
      const a = await api();
      return { statusWrites: [...a.requests].filter(([k]) => k.endsWith('umlmachines/status') && !k.startsWith('GET') && !k.startsWith('WATCH')).reduce((s, [, v]) => s + v, 0) };
    },
    watchEnds,
    async close() {
      closed = true;
      watchReq?.destroy();
    },
  };
}

// ---- the agent ------------------------------------------------------------------------------

let agent: ChildProcess | undefined;

/** node's flags of the image's ENTRYPOINT (Containerfile), so the bench runs the agent as a node does. */
function entrypointFlags(): string[] {
  // UMLMON_BENCH_NODE_FLAGS="" (or other flags) measures the agent without (or with) them instead.
  if (process.env.UMLMON_BENCH_NODE_FLAGS !== undefined) return process.env.UMLMON_BENCH_NODE_FLAGS.split(' ').filter(Boolean);
  const line = readFileSync(join(REPO_ROOT, 'Containerfile'), 'utf8').split('\n').findLast((l) => l.startsWith('ENTRYPOINT '));
  const argv = line ? (JSON.parse(line.slice('ENTRYPOINT '.length)) as string[]) : [];
  return argv.slice(1, -1).filter((a) => a.startsWith('--'));
}

function agentEntry(form: string): string[] {
  return form === 'src' ? [join(REPO_ROOT, 'src/cli/main.ts')] : [...entrypointFlags(), join(REPO_ROOT, 'dist/cli/main.js')];
}

function startAgent(driver: Driver, stateDir: string, port: number, control: string, form = FORM): ChildProcess {
  const out = openSync(join(base, `agent-${driver.mode}.log`), 'a');
  const child = spawn(process.execPath, [
    ...agentEntry(form), 'run', ...driver.agentArgs, '--state-dir', stateDir, '--image-root', imageRoot,
    '--backup-dir', join(base, 'b'), '--node-name', NODE, '--kernel', `default=${umlKernel()}`,
    '--listen', `127.0.0.1:${port}`, '--control', control, '--log-level', 'info',
  ], { stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

async function untilReady(port: number): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > end) throw new Error('bench: the agent did not get ready within 60 s');
    await sleep(100);
  }
}

async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : undefined;
}

async function until<T>(driver: Driver, what: string, probe: () => T | undefined | false, timeoutMs = 300_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await driver.changed();
  }
}

const condition = (s: UmlMachineStatus | undefined, type: string) => s?.conditions?.find((c) => c.type === type);

function readyAt(driver: Driver, name: string): number | undefined {
  const s = driver.status(name);
  const ready = condition(s, 'Ready');
  return s?.phase === 'Running' && ready?.status === 'True' ? Date.parse(ready.lastTransitionTime) : undefined;
}

async function createToReady(driver: Driver, names: string[]): Promise<number[]> {
  const t0 = Date.now();
  await Promise.all(names.map((n) => driver.write(n, 'Running')));
  try {
    return await until(driver, `${names.length} machines Ready`, () => {
      const at = names.map((n) => readyAt(driver, n));
      return at.every((x) => x !== undefined) ? at.map((x) => x! - t0) : undefined;
    });
  } catch (error) {
    // Which ones, and what the bench last saw of them: a status never written, or one not seen.
    const late = names.filter((n) => readyAt(driver, n) === undefined);
    const seen = late.slice(0, 10).map((n) => `${n}: ${driver.status(n)?.phase ?? 'no status seen'}`);
    throw new Error(`${(error as Error).message}; not Ready: ${late.length} (${seen.join(', ')})`, { cause: error });
  }
}

async function removeAll(driver: Driver, stateDir: string, names: string[]): Promise<void> {
  await Promise.all(names.map((n) => driver.remove(n)));
  const machines = join(stateDir, 'machines');
  const end = Date.now() + 300_000;
  while (existsSync(machines) && readdirSync(machines).length > 0) {
    if (Date.now() > end) throw new Error('bench: machines were not removed within 300 s');
    await sleep(100);
  }
}

async function pauseResume(driver: Driver, name: string): Promise<{ pause: number[]; resume: number[] }> {
  const pause: number[] = [];
  const resume: number[] = [];
  for (let i = 0; i < CYCLES; i++) {
    for (const [state, want, into] of [['Paused', 'True', pause], ['Running', 'False', resume]] as const) {
      const t0 = Date.now();
      await driver.write(name, state);
      const at = await until(driver, state, () => {
        const c = condition(driver.status(name), 'Paused');
        return c?.status === want && Date.parse(c.lastTransitionTime) >= t0 && Date.parse(c.lastTransitionTime);
      });
      into.push(at - t0);
    }
  }
  return { pause, resume };
}

/** spec state Stopped → phase Stopped, seen by the bench (a guest whose init powers off on cad). */
async function gracefulStops(driver: Driver, name: string, times: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < times; i++) {
    await driver.write(name, 'Running');
    await until(driver, 'Running again', () => readyAt(driver, name));
    await sleep(500); // the guest's init runs (before it, the kernel answers cad by rebooting)
    const t0 = performance.now();
    await driver.write(name, 'Stopped');
    await until(driver, 'Stopped', () => driver.status(name)?.phase === 'Stopped');
    out.push(performance.now() - t0);
  }
  return out;
}

// ---- one mode -------------------------------------------------------------------------------

async function runMode(mode: 'directory' | 'kubernetes', floors: Floors, nodeRss: number): Promise<void> {
  console.log(`\n== ${mode} mode: ${GUESTS} guests${GUESTS < requestedGuests ? ` (of ${requestedGuests} asked: limited by free memory)` : ''}, agent ${FORM === 'src' ? 'from the sources' : 'compiled (dist/)'} ==`);
  const stateDir = join(base, 's'); // shared with the raw floor: the lpj it measured serves both
  const controlPath = join(base, `control-${mode}.sock`);
  let cp: ControlPlane | undefined;
  let driver: Driver | undefined;
  let kube: ReturnType<typeof kubernetesDriver> | undefined;
  try {
    if (mode === 'kubernetes') {
      // The agent has an identity of its own, so that the API server's audit log tells its
      // requests from the bench's and the controller manager's (printApiLoad).
      cp = await startControlPlane({ extraUsers: [{ name: AGENT_USER, groups: ['system:masters'] }] });
      const apply = spawnSync('kubectl', ['--kubeconfig', cp.adminKubeconfig, 'apply', '--validate=false', '-f', join(REPO_ROOT, 'crds')], { encoding: 'utf8' });
      if (apply.status !== 0) throw new Error(`kubectl apply crds: ${apply.stderr}`);
      await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
      kube = kubernetesDriver(cp, cp.kubeconfigFor(AGENT_USER));
      driver = kube;
    } else {
      driver = directoryDriver(join(base, 'm'));
    }
    // A port the kernel gives out once the control plane has its own: a random one collided with them.
    const port = (await freePorts(1, '127.0.0.1'))[0]!;
    agent = startAgent(driver, stateDir, port, `unix://${controlPath}`);
    await untilReady(port);
    const pid = agent.pid!;
    console.log(`  agent pid ${pid}, RSS at start ${(rssKiB(pid) / 1024).toFixed(1)} MiB (a bare node process: ${nodeRss.toFixed(1)} MiB)`);

    // create → Ready, one machine at a time; the last one stays for pause/resume and stop.
    const singles: number[] = [];
    for (let i = 0; i < SINGLE_REPEATS; i++) {
      const name = `one-${tag}-${i}`;
      singles.push((await createToReady(driver, [name]))[0]!);
      if (i < SINGLE_REPEATS - 1) await removeAll(driver, stateDir, [name]);
    }
    const one = `one-${tag}-${SINGLE_REPEATS - 1}`;
    row(mode, { figure: 'create → Ready, 1 machine (median)', value: ms(median(singles)), floor: `raw boot ${ms(floors.boot)}`, ratio: median(singles) / floors.boot, target: `≤ raw × 1.05 + 50 ms = ${ms(floors.boot * 1.05 + 50)}` });
    console.log(`    each: ${singles.map((x) => x.toFixed(0)).join(', ')} ms`);

    const pr = await pauseResume(driver, one);
    const mean = async (m: string): Promise<number> => ((await metric(port, `${m}_sum`))! / (await metric(port, `${m}_count`))!) * 1000;
    const stopMs = await mean('umlmon_pause_seconds');
    const goMs = await mean('umlmon_resume_seconds');
    row(mode, { figure: `pause, spec edit → Paused=True (p99 of ${CYCLES})`, value: `${ms(quantile(pr.pause, 0.99))} (median ${ms(median(pr.pause))})`, floor: `mconsole stop ${ms(stopMs)}`, ratio: quantile(pr.pause, 0.99) / stopMs, target: '≤ 20 ms' });
    row(mode, { figure: `resume, spec edit → Paused=False (p99 of ${CYCLES})`, value: `${ms(quantile(pr.resume, 0.99))} (median ${ms(median(pr.resume))})`, floor: `mconsole go ${ms(goMs)}`, ratio: quantile(pr.resume, 0.99) / goMs, target: '≤ 20 ms' });

    // Kubernetes mode's memory target is for one guest: measured while `one` runs.
    await sleep(3000);
    row(mode, { figure: 'agent RSS, 1 guest', value: `${(rssKiB(pid) / 1024).toFixed(1)} MiB`, floor: `bare node ${nodeRss.toFixed(1)} MiB`, ratio: rssKiB(pid) / 1024 / nodeRss, target: mode === 'kubernetes' ? '≤ 80 MiB' : '-' });

    const stops = await gracefulStops(driver, one, 3);
    row(mode, { figure: 'graceful stop, guest powers off on ctrl-alt-del (median of 3)', value: ms(median(stops)), floor: `runtime.stop ${ms(floors.stop)}`, ratio: median(stops) / floors.stop, target: '≤ 200 ms' });
    await removeAll(driver, stateDir, [one]);

    const midNames = Array.from({ length: MID }, (_, i) => `mid-${tag}-${i}`);
    const cpPids = controlPlanePids(cp, pid);
    const cpuMid = cpuNow(stateDir, pid, cpPids);
    const mid = await createToReady(driver, midNames);
    row(mode, { figure: `${MID} machines at once, all Ready`, value: `${ms(Math.max(...mid))} (median ${ms(median(mid))})`, floor: `runtime ${ms(floors.startMid)}; bare kernels ${ms(floors.bareMid)}`, ratio: Math.max(...mid) / floors.startMid, target: MID === 30 ? '≤ 1.2 s' : '-' });
    cpuRow(mode, MID, cpuMid, stateDir, pid, cpPids);
    await removeAll(driver, stateDir, midNames);

    const api0 = await kube?.api();
    const ownWatch0 = kube ? { ...kube.ownWatch } : undefined;
    const audit0 = cp?.requests().length;
    const names = Array.from({ length: GUESTS }, (_, i) => `g-${tag}-${i}`);
    const cpuAll = cpuNow(stateDir, pid, cpPids);
    const all = await createToReady(driver, names);
    row(mode, { figure: `${GUESTS} machines at once, all Running`, value: `${ms(Math.max(...all))} (median ${ms(median(all))})`, floor: `runtime ${ms(floors.startAll)}; bare kernels ${ms(floors.bareAll)}`, ratio: Math.max(...all) / floors.startAll, target: GUESTS === 100 ? '≤ 3 s' : '-' });
    cpuRow(mode, GUESTS, cpuAll, stateDir, pid, cpPids);
    // Let the last status writes and Events of the starts land before counting the idle ones.
    await sleep(5000);
    const api1 = await kube?.api();
    const ownWatch1 = kube ? { ...kube.ownWatch } : undefined;
    const audit1 = cp?.requests().length;

    // Idle.
    const w0 = (await driver.counters()).statusWrites;
    const c0 = cpuTicks(pid);
    const s0 = switches(pid);
    const t0 = performance.now();
    let peak = rssKiB(pid);
    const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid))), 1000);
    await sleep(IDLE_SECONDS * 1000);
    clearInterval(sampler);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = (cpuTicks(pid) - c0) / 100 / seconds;
    const wakeups = (switches(pid) - s0) / seconds;
    const writes = (await driver.counters()).statusWrites - w0;
    const api2 = await kube?.api();
    const audit = cp?.requests();
    const audit2 = audit?.length;
    const rss = rssKiB(pid) / 1024;
    const heap = ((await metric(port, 'nodejs_heap_used_bytes')) ?? NaN) / MiB;
    row(mode, { figure: `agent RSS, ${GUESTS} idle guests`, value: `${rss.toFixed(1)} MiB (peak ${(peak / 1024).toFixed(1)}; V8 heap in use ${heap.toFixed(1)})`, floor: `bare node ${nodeRss.toFixed(1)} MiB`, ratio: rss / nodeRss, target: mode === 'directory' ? '≤ 60 MiB at 100 guests' : '≤ 80 MiB at 1 guest' });
    row(mode, { figure: `agent CPU, ${GUESTS} idle guests, ${seconds.toFixed(0)} s`, value: `${(cpu * 100).toFixed(2)} % of a core`, target: '≤ 1 %' });
    row(mode, { figure: `agent wakeups, ${GUESTS} idle guests`, value: `${wakeups.toFixed(1)} /s (context switches, all threads)`, target: 'a few a second' });
    row(mode, { figure: `status writes, ${GUESTS} idle guests, ${seconds.toFixed(0)} s`, value: String(writes), target: '0' });
    await scrapes(mode, port, pid);

    if (kube && api0 && api1 && api2 && ownWatch0 && ownWatch1 && audit && audit0 !== undefined && audit1 !== undefined && audit2 !== undefined) {
      printApiLoad(api0, api1, api2, audit.slice(audit0, audit1), audit.slice(audit1, audit2), ownWatch0, ownWatch1, seconds);
      console.log(`  the API server ended the bench's own watch ${kube.watchEnds.count} time(s) so far (each resumed)`);
    }

    // Drain through the control socket, as `umlmon drain` asks a running agent.
    const d0 = performance.now();
    await controlRequest({ kind: 'unix', path: controlPath }, { op: 'drain', timeoutSeconds: 60 }, { timeoutMs: 120_000 });
    const drain = performance.now() - d0;
    row(mode, { figure: `drain of ${GUESTS} guests`, value: ms(drain), floor: `runtime ${ms(floors.drainAll)}`, ratio: drain / floors.drainAll, target: '≤ 3 s at 100' });
    await removeAll(driver, stateDir, names);

  } finally {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await exited;
    }
    agent = undefined;
    killLeftovers(stateDir);
    await driver?.close();
    await cp?.stop();
  }
}

/**
 * What Prometheus costs the agent, after the idle window (so that it is not in it): three scrapes
 * of /metrics, each past the 5 s for which the agent reuses a guest's reading, so each asks every
 * guest again (six /proc files through mconsole). CPU is the agent's, the garbage of the scrape
 * included.
 */
async function scrapes(mode: string, port: number, pid: number): Promise<void> {
  const wall: number[] = [];
  const cpu: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 3; i++) {
    await sleep(5500);
    const c0 = cpuTicks(pid);
    const t0 = performance.now();
    bytes = (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).length;
    wall.push(performance.now() - t0);
    await sleep(500);
    cpu.push((cpuTicks(pid) - c0) * 10);
  }
  const perScrape = median(cpu);
  row(mode, { figure: `a /metrics scrape, ${GUESTS} guests (median of 3)`, value: `${ms(median(wall))}, agent CPU ${perScrape.toFixed(0)} ms, ${(bytes / 1024).toFixed(0)} KiB`, target: '-' });
  row(mode, { figure: `agent CPU of one scrape every 15 s / 30 s, ${GUESTS} guests`, value: `${((perScrape / 15_000) * 100).toFixed(2)} % / ${((perScrape / 30_000) * 100).toFixed(2)} % of a core`, target: '≤ 1 % with the idle CPU' });
  row(mode, { figure: `agent RSS after the scrapes, ${GUESTS} guests`, value: `${(rssKiB(pid) / 1024).toFixed(1)} MiB`, target: '-' });
}

function printApiLoad(api0: ApiCounts, api1: ApiCounts, api2: ApiCounts, startRecords: AuditRecord[], idleRecords: AuditRecord[],
  ownWatch0: { events: number; bytes: number }, ownWatch1: { events: number; bytes: number }, idleSeconds: number): void {
  // The agent's requests, by its user in the API server's audit log. A watch is counted once,
  // when its response starts.
  const agentRequests = (records: AuditRecord[]): Map<string, number> => {
    const out = new Map<string, number>();
    for (const r of records) {
      if (r.user !== AGENT_USER) continue;
      const key = `${r.verb.toUpperCase()} ${r.resource}${r.subresource ? `/${r.subresource}` : ''}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  };
  const sum = (m: Map<string, number>): number => [...m.values()].reduce((s, v) => s + v, 0);
  const describe = (m: Map<string, number>): string => [...m].map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const starts = agentRequests(startRecords);
  const idle = agentRequests(idleRecords);
  const perGuest = sum(starts) / GUESTS;
  const idlePerMinute = (sum(idle) / idleSeconds) * 60;
  console.log('  API-server load from this agent (its own user\'s requests in the API server\'s audit log):');
  console.log(`    per started guest: ${perGuest.toFixed(1)} requests (${describe(starts)}; over ${GUESTS} starts)`);
  console.log(`    idle, ${GUESTS} guests: ${idlePerMinute.toFixed(1)} requests/minute (${describe(idle)})`);
  // Watch events: the server counts every event it sends to every watcher; the bench's own watch is taken out.
  const events = api1.watchEvents - api0.watchEvents - (ownWatch1.events - ownWatch0.events);
  const bytes = api1.watchBytes - api0.watchBytes - (ownWatch1.bytes - ownWatch0.bytes);
  const eventsPerGuest = events / GUESTS;
  const bytesPerEvent = events > 0 ? bytes / events : 0;
  console.log(`    watch events to the agent per started guest: ${eventsPerGuest.toFixed(1)} (${bytesPerEvent.toFixed(0)} bytes each); idle: ${api2.watchEvents - api1.watchEvents} in ${idleSeconds.toFixed(0)} s (the bench's own watch included)`);
  const nodes = 1000;
  const perNode = 100;
  console.log(`  on paper, ${nodes} nodes × ${perNode} guests:`);
  console.log(`    idle: ${((idlePerMinute / GUESTS) * perNode * nodes).toFixed(0)} requests/minute to the API server (${((idlePerMinute / GUESTS) * perNode * nodes / 60).toFixed(1)}/s)`);
  console.log(`    starting every guest once: ${(perGuest * perNode * nodes).toFixed(0)} requests`);
  const mine = eventsPerGuest * perNode;
  const everyone = eventsPerGuest * perNode * nodes;
  console.log(`    watch traffic per agent for one start of its ${perNode} guests: ${mine.toFixed(0)} events (${(mine * bytesPerEvent / MiB).toFixed(2)} MiB) where the server filters by spec.nodeName (1.32+ selectable fields);`);
  console.log(`      on 1.20 every agent receives every machine's: ${everyone.toFixed(0)} events (${(everyone * bytesPerEvent / MiB).toFixed(0)} MiB) per agent, ×${nodes} agents = ${(everyone * nodes * bytesPerEvent / 2 ** 30).toFixed(0)} GiB sent by the server`);
}

function killLeftovers(stateDir: string): void {
  const dir = join(stateDir, 'machines');
  for (const id of existsSync(dir) ? readdirSync(dir) : []) {
    try {
      const { pid } = JSON.parse(readFileSync(join(dir, id, 'machine.json'), 'utf8')) as { pid?: number };
      if (pid) process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

async function main(): Promise<void> {
  mkdirSync(imageRoot, { recursive: true });
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  if (FORM === 'dist') {
    const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: REPO_ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`npm run build failed: ${build.stdout}${build.stderr}`);
  }
  console.log(`agent: ${FORM === 'src' ? 'node src/cli/main.ts' : `node ${agentEntry('dist').join(' ')}`} (the Containerfile's ENTRYPOINT)`);
  console.log(`bench/agent.ts: ${GUESTS} guests of ${GUEST_MEMORY / MiB} MiB, idle window ${IDLE_SECONDS} s, ${CYCLES} pause/resume cycles, ${SINGLE_REPEATS} single creates`);
  const nodeRss = await bareNodeRss();
  const tsRss = await bareNodeRss([], `import(${JSON.stringify(join(REPO_ROOT, 'src/api/umid.ts'))}).then(() => setInterval(() => {}, 1e6))`);
  console.log(`  a bare node process: ${nodeRss.toFixed(1)} MiB RSS; one that has loaded one .ts file (type stripping): ${tsRss.toFixed(1)} MiB`);

  console.log(`\n== raw floor: the runtime alone (jailed, ${GUESTS} guests, this process) ==`);
  const floors = await rawFloors(join(base, 's'));
  console.log(`  boot (start → booted, median of ${SINGLE_REPEATS}) ${ms(floors.boot)}; ${MID} at once ${ms(floors.startMid)}; ${GUESTS} at once ${ms(floors.startAll)}`);
  console.log(`  graceful stop (cad → poweroff → exit, median of 5) ${ms(floors.stop)}; ${GUESTS} stopped at once ${ms(floors.drainAll)}`);
  console.log(`  under it, bare kernels (un-jailed, started by one shell, to "Run /sbin/init"): ${MID} at once ${ms(floors.bareMid)}; ${GUESTS} at once ${ms(floors.bareAll)}`);

  const modes = MODE === 'both' ? (['directory', 'kubernetes'] as const) : [MODE as 'directory' | 'kubernetes'];
  for (const mode of modes) await runMode(mode, floors, nodeRss);

  // The agent from the checkout's sources, as `npm start` runs it: what type stripping adds.
  {
    const driver = directoryDriver(join(base, 'm-src'));
    const port = (await freePorts(1, '127.0.0.1'))[0]!;
    agent = startAgent(driver, join(base, 's'), port, 'none', 'src');
    await untilReady(port);
    await sleep(1000);
    console.log(`\nagent from the sources (node src/cli/main.ts), directory mode, no guests: RSS ${(rssKiB(agent.pid!) / 1024).toFixed(1)} MiB`);
    const exited = new Promise((r) => agent!.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
    agent = undefined;
    await driver.close();
  }

  console.log('\n== summary (figure | value | floor | ×floor | target) ==');
  for (const [mode, rows] of report) {
    console.log(`${mode}:`);
    for (const r of rows) console.log(`  | ${r.figure} | ${r.value} | ${r.floor ?? '-'} | ${r.ratio !== undefined ? r.ratio.toFixed(2) : '-'} | ${r.target} |`);
  }
}

async function cleanup(): Promise<void> {
  if (agent && agent.exitCode === null) agent.kill('SIGKILL');
  for (const s of existsSync(base) ? readdirSync(base).filter((f) => f === 's') : []) killLeftovers(join(base, s));
  rmSync(base, { recursive: true, force: true });
}

main().then(
  () => cleanup(),
  async (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    for (const f of existsSync(base) ? readdirSync(base).filter((x) => x.endsWith('.log')) : []) copyFileSync(join(base, f), `/tmp/umlmon-bench-failed-${f}`);
    console.error('agent logs kept as /tmp/umlmon-bench-failed-agent-*.log');
    process.exitCode = 1;
    await cleanup();
  },
);
