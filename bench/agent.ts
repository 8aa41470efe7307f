// The agent end to end, in directory mode on real jailed UML kernels (`umlmon run` as a child
// process, as a user runs it):
//   - raw boot time of the same image through the runtime alone (start() → 'booted'), sequential;
//   - create→Ready latency for 1, 10 and 30 machines written at once (median and p99), from the
//     moment the files are written to the Ready condition's lastTransitionTime (the agent's clock,
//     same host), so status-file polling does not add to it;
//   - pause and resume latency: spec edit → phase Paused / Running (and the mconsole part, from
//     the agent's umlmon_pause_seconds / umlmon_resume_seconds);
//   - the agent's RSS and CPU over 30 s with 30 idle guests (guest info refresh at its 30 s default).
//   node bench/agent.ts [--sizes 1,10,30] [--idle-seconds 30] [--boots 5] [--cycles 10]
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { UmlMachineStatus } from '../src/api/types.ts';
import { createRuntime } from '../src/runtime/index.ts';
import type { MachineConfig, RuntimeEvent } from '../src/runtime/index.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../test/support/uml.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const SIZES = (args.get('sizes') ?? '1,10,30').split(',').map(Number);
const IDLE_SECONDS = Number(args.get('idle-seconds') ?? 30);
const BOOTS = Number(args.get('boots') ?? 5);
const CYCLES = Number(args.get('cycles') ?? 10);
/** Single-machine creates are repeated for a median worth the name. */
const SINGLE_REPEATS = Number(args.get('single-repeats') ?? 5);
const FAST_ARGS = ['lpj=auto'];
const CLI = join(REPO_ROOT, 'src/cli/main.ts');
const MiB = 2 ** 20;

const base = mkdtempSync('/tmp/umlmon-bench-agent-');
const machinesDir = join(base, 'm');
const stateDir = join(base, 's');
const imageRoot = join(base, 'i');
const tag = Math.random().toString(36).slice(2, 7);
const port = 20000 + Math.floor(Math.random() * 40000);
let agent: ChildProcess | undefined;

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}
const ms = (x: number): string => `${x.toFixed(0)} ms`;

function sleep(msec: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msec));
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 300_000, everyMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---- raw boot through the runtime ---------------------------------------------------------

async function rawBoots(): Promise<number[]> {
  // The agent's own state directory: the lpj the first boot measures there serves both.
  const rt = createRuntime({ stateDir, imageRoot });
  const samples: number[] = [];
  try {
    for (let i = 0; i < BOOTS; i++) {
      const id = `rb${tag}${i}`.slice(0, 12);
      const config: MachineConfig = {
        id, name: `bench/${id}`, kernel: umlKernel(), memoryBytes: 48 * MiB, cmdline: [], defaultArgs: FAST_ARGS,
        disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], interfaces: [],
      };
      const booted = new Promise<number>((resolve) => {
        const off = rt.onEvent((e: RuntimeEvent) => {
          if (e.type === 'booted' && e.id === id) {
            off();
            resolve(performance.now());
          }
        });
      });
      const t0 = performance.now();
      await rt.start(config);
      samples.push((await booted) - t0);
      await rt.stop(id, { gracePeriodMs: 0 });
      await rt.remove(id);
    }
  } finally {
    await rt.close();
  }
  return samples;
}

// ---- the agent ------------------------------------------------------------------------------

function startAgent(): ChildProcess {
  const out = openSync(join(base, 'agent.log'), 'a');
  const child = spawn(process.execPath, [
    CLI, 'run', '--source', 'directory', '--machines-dir', machinesDir, '--state-dir', stateDir, '--image-root', imageRoot,
    '--backup-dir', join(base, 'b'), '--node-name', 'bench', '--kernel', `default=${umlKernel()}`,
    '--listen', `127.0.0.1:${port}`, '--control', 'none', '--log-level', 'info',
  ], { stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

const nameOf = (i: number): string => `b${tag}-${i}`;

function writeMachine(name: string, state = 'Running'): void {
  const doc = {
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name },
    spec: { nodeName: 'bench', state, memory: '48Mi', shutdownGracePeriodSeconds: 10, disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }] },
  };
  const tmp = join(machinesDir, `.${name}.tmp`);
  writeFileSync(tmp, JSON.stringify(doc));
  renameSync(tmp, join(machinesDir, `${name}.yaml`));
}

function status(name: string): UmlMachineStatus | undefined {
  try {
    return (parse(readFileSync(join(machinesDir, `${name}.status.yaml`), 'utf8')) as { status?: UmlMachineStatus }).status;
  } catch {
    return undefined;
  }
}

function readyAt(name: string): number | undefined {
  const s = status(name);
  const ready = s?.conditions?.find((c) => c.type === 'Ready');
  return s?.phase === 'Running' && ready?.status === 'True' ? Date.parse(ready.lastTransitionTime) : undefined;
}

async function removeAll(names: string[]): Promise<void> {
  for (const n of names) rmSync(join(machinesDir, `${n}.yaml`), { force: true });
  await until('machines removed', () => !existsSync(join(stateDir, 'machines')) || readdirSync(join(stateDir, 'machines')).length === 0, 300_000, 200);
}

async function createToReady(n: number): Promise<{ names: string[]; latencies: number[]; wall: number }> {
  const names = Array.from({ length: n }, (_, i) => nameOf(i));
  const t0 = Date.now();
  for (const name of names) writeMachine(name);
  const latencies = await until(`${n} machines Ready`, () => {
    const at = names.map(readyAt);
    return at.every((x) => x !== undefined) ? at.map((x) => x! - t0) : undefined;
  });
  return { names, latencies, wall: Math.max(...latencies) };
}

async function pauseResume(name: string): Promise<{ pause: number[]; resume: number[] }> {
  const pause: number[] = [];
  const resume: number[] = [];
  for (let i = 0; i < CYCLES; i++) {
    let t0 = Date.now();
    writeMachine(name, 'Paused');
    const p = await until('Paused', () => {
      const c = status(name)?.conditions?.find((x) => x.type === 'Paused');
      return c?.status === 'True' && Date.parse(c.lastTransitionTime) >= t0 && Date.parse(c.lastTransitionTime);
    });
    pause.push(p - t0);
    t0 = Date.now();
    writeMachine(name, 'Running');
    const r = await until('Running', () => {
      const c = status(name)?.conditions?.find((x) => x.type === 'Paused');
      return c?.status === 'False' && Date.parse(c.lastTransitionTime) >= t0 && Date.parse(c.lastTransitionTime);
    });
    resume.push(r - t0);
  }
  return { pause, resume };
}

async function metric(name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : undefined;
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

async function main(): Promise<void> {
  mkdirSync(machinesDir, { recursive: true });
  mkdirSync(imageRoot, { recursive: true });
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));

  const raw = await rawBoots();
  console.log(`raw boot (runtime start → booted, jailed, ${raw.length} sequential): median ${ms(quantile(raw, 0.5))}, p99 ${ms(quantile(raw, 0.99))}`);

  agent = startAgent();
  await until('agent ready', () => {
    void fetch(`http://127.0.0.1:${port}/readyz`).then((r) => { if (r.ok) readyFlag = true; }, () => {});
    return readyFlag;
  }, 60_000, 100);
  console.log(`agent pid ${agent.pid}, RSS at start ${(rssKiB(agent.pid!) / 1024).toFixed(1)} MiB`);

  console.log('\ncreate → Ready (files written at once; Ready lastTransitionTime − write time)');
  for (const n of SIZES) {
    if (n === 1 && SINGLE_REPEATS > 1) {
      const singles: number[] = [];
      for (let i = 1; i < SINGLE_REPEATS; i++) {
        const one = await createToReady(1);
        singles.push(one.latencies[0]!);
        await removeAll(one.names);
      }
      const last = await createToReady(1);
      singles.push(last.latencies[0]!);
      console.log(`   1 machine, ${singles.length} times: median ${ms(quantile(singles, 0.5))}, p99 ${ms(quantile(singles, 0.99))} (each: ${singles.map((x) => x.toFixed(0)).join(', ')} ms)`);
      await measurePauseResume(last.names[0]!);
      await removeAll(last.names);
      continue;
    }
    const { names, latencies, wall } = await createToReady(n);
    console.log(`  ${String(n).padStart(2)} machines: median ${ms(quantile(latencies, 0.5))}, p99 ${ms(quantile(latencies, 0.99))}, all Ready after ${ms(wall)}`);
    if (n === SIZES[0]) await measurePauseResume(names[0]!);
    if (n === Math.max(...SIZES)) await measureIdle(n);
    await removeAll(names);
  }
}

async function measurePauseResume(name: string): Promise<void> {
  const pr = await pauseResume(name);
  const mean = async (metricName: string): Promise<string> =>
    (((await metric(`${metricName}_sum`))! / (await metric(`${metricName}_count`))!) * 1000).toFixed(2);
  console.log(`  pause  (spec edit → Paused=True, ${CYCLES}x): median ${ms(quantile(pr.pause, 0.5))}, p99 ${ms(quantile(pr.pause, 0.99))}; mconsole stop itself: mean ${await mean('umlmon_pause_seconds')} ms`);
  console.log(`  resume (spec edit → Paused=False, ${CYCLES}x): median ${ms(quantile(pr.resume, 0.5))}, p99 ${ms(quantile(pr.resume, 0.99))}; mconsole go itself: mean ${await mean('umlmon_resume_seconds')} ms`);
}

async function measureIdle(n: number): Promise<void> {
  await sleep(5000);
  const pid = agent!.pid!;
  const hz = 100; // USER_HZ on Linux
  const c0 = cpuTicks(pid);
  const t0 = performance.now();
  let peakRss = rssKiB(pid);
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssKiB(pid))), 1000);
  await sleep(IDLE_SECONDS * 1000);
  clearInterval(sampler);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (cpuTicks(pid) - c0) / hz / seconds;
  console.log(`  agent with ${n} idle guests over ${seconds.toFixed(0)} s: CPU ${(cpu * 100).toFixed(2)} % of one core, RSS ${(rssKiB(pid) / 1024).toFixed(1)} MiB (peak ${(peakRss / 1024).toFixed(1)} MiB)`);
}

let readyFlag = false;

async function cleanup(): Promise<void> {
  for (const f of existsSync(machinesDir) ? readdirSync(machinesDir) : []) if (f.endsWith('.yaml') && !f.includes('.status.')) rmSync(join(machinesDir, f));
  if (agent && agent.exitCode === null) {
    await until('machines removed', () => !existsSync(join(stateDir, 'machines')) || readdirSync(join(stateDir, 'machines')).length === 0, 120_000, 200).catch(() => {});
    const exited = new Promise((r) => agent!.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
  }
  // Whatever is left (a failed run): kill the kernels this bench recorded.
  for (const dir of [join(stateDir, 'machines')]) {
    for (const id of existsSync(dir) ? readdirSync(dir) : []) {
      try {
        const { pid } = JSON.parse(readFileSync(join(dir, id, 'machine.json'), 'utf8')) as { pid?: number };
        if (pid) process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  rmSync(base, { recursive: true, force: true });
}

main().then(
  () => cleanup(),
  async (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    console.error(`agent log: ${join(base, 'agent.log')} (kept)`);
    process.exitCode = 1;
    const log = join(base, 'agent.log');
    if (existsSync(log)) copyFileSync(log, '/tmp/umlmon-bench-agent-failed.log');
    await cleanup();
  },
);
