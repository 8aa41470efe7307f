// Boot time of the test image, for every kernel of this host's matrix (umlmon's own, and
// Debian's where the host can run it; one that cannot is named with the reason):
// - raw: the kernel exec'd un-jailed (test/support/plain-uml.ts) with a fixed lpj=, from spawn
//   to "Run /sbin/init" (kernel booted) and to the guest's first /proc/mconsole message: the
//   floor the runtime is measured against;
// - jailed: the runtime's start() (jail set-up and exec included) to mconsole up, to kernel
//   booted, to guest init, with the node's defaults (lpj=auto, the kernel's own args) and with
//   nothing added (the kernel calibrates its delay loop).
// Median (min, max) of N runs each.
//   node bench/boot.ts [runs=5]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRuntime } from '../src/runtime/index.ts';
import type { MachineConfig, Runtime, RuntimeEvent } from '../src/runtime/index.ts';
import { KERNEL_BOOTED, PlainUml } from '../test/support/plain-uml.ts';
import { kernelMatrix, TEST_IMAGE, testImageRoot, type TestKernel } from '../test/support/uml.ts';
import { kernelVersion } from '../src/runtime/kernel-probe.ts';

const runs = Number(process.argv[2] ?? 5);

interface Sample { [phase: string]: number }

function once(rt: Runtime, match: (e: RuntimeEvent) => boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no event within 60 s')), 60000);
    const off = rt.onEvent((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(performance.now());
    });
  });
}

async function rawOnce(kernel: TestKernel): Promise<Sample> {
  const t0 = performance.now();
  const uml = new PlainUml({ kernel: kernel.path, kernelArgs: kernel.args });
  try {
    await uml.waitForConsole(KERNEL_BOOTED, 60_000);
    const booted = performance.now() - t0;
    await uml.waitForNotify((m) => m.type === 'user', { timeoutMs: 60_000 });
    return { 'kernel booted': booted, 'guest init': performance.now() - t0 };
  } finally {
    await uml.destroy();
  }
}

async function jailedOnce(rt: Runtime, kernel: TestKernel, id: string, defaultArgs: string[]): Promise<Sample> {
  const config: MachineConfig = {
    id, name: `bench/${id}`, kernel: kernel.path, memoryBytes: 48 * 1024 * 1024, cmdline: [], defaultArgs,
    disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], interfaces: [],
  };
  const up = once(rt, (e) => e.type === 'mconsole-ready' && e.id === id);
  const booted = once(rt, (e) => e.type === 'booted' && e.id === id);
  const guest = once(rt, (e) => e.type === 'guest-message' && e.id === id);
  const t0 = performance.now();
  await rt.start(config);
  const sample = { 'mconsole up': (await up) - t0, 'kernel booted': (await booted) - t0, 'guest init': (await guest) - t0 };
  await rt.stop(id, { gracePeriodMs: 0 });
  await rt.remove(id);
  return sample;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
}

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `${median(values).toFixed(0).padStart(5)} ms  (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)})`;
}

function print(label: string, samples: Sample[]): void {
  console.log(`    ${label}:`);
  for (const phase of Object.keys(samples[0] ?? {})) console.log(`      ${phase.padEnd(14)} ${stats(samples.map((s) => s[phase]!))}`);
}

const matrix = await kernelMatrix();
testImageRoot();
console.log(`boot time of ${TEST_IMAGE}, mem=48M, ${runs} runs each (median, min, max):`);
for (const kernel of matrix.runnable) {
  console.log(`  ${kernel.name} kernel ${kernel.path} (${await kernelVersion(kernel.path)}):`);
  const raw: Sample[] = [];
  for (let i = 0; i < runs; i++) raw.push(await rawOnce(kernel));
  print('raw, un-jailed, fixed lpj (the floor)', raw);
  const stateDir = mkdtempSync('/tmp/umlbench-');
  const rt = createRuntime({ stateDir, imageRoot: testImageRoot() });
  try {
    const plain: Sample[] = [];
    // Nothing added first: the first boot also calibrates the delay loop and caches lpj.
    for (let i = 0; i < runs; i++) plain.push(await jailedOnce(rt, kernel, `bp${i}`, []));
    const defaults: Sample[] = [];
    const args = ['lpj=auto', ...kernel.args];
    for (let i = 0; i < runs; i++) defaults.push(await jailedOnce(rt, kernel, `bd${i}`, args));
    print(`jailed, from start(), node defaults [${args.join(' ')}]`, defaults);
    print('jailed, from start(), nothing added (the kernel calibrates)', plain);
    const overhead = median(defaults.map((s) => s['guest init']!)) - median(raw.map((s) => s['guest init']!));
    console.log(`    jail overhead to guest init (medians): ${overhead.toFixed(0)} ms`);
  } finally {
    await rt.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
for (const kernel of matrix.incompatible) console.log(`  ${kernel.name} kernel ${kernel.path}: cannot run here: ${kernel.message}`);
