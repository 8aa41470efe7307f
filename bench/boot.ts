// Boot time of the test image in a jailed kernel, with and without the fast-boot arguments
// (initcall_blacklist=raid6_select_algo lpj=<measured>): from the start() call (jail set-up and
// exec included) to mconsole up, to the kernel finished booting ("Run /sbin/init"), to the
// guest's init reporting through /proc/mconsole. Median (and min/max) of N runs each.
//   node bench/boot.ts [runs=5]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRuntime } from '../src/runtime/index.ts';
import type { MachineConfig, Runtime, RuntimeEvent } from '../src/runtime/index.ts';
import { TEST_IMAGE, testImageRoot, umlKernel } from '../test/support/uml.ts';

const runs = Number(process.argv[2] ?? 5);
const FAST_ARGS = ['initcall_blacklist=raid6_select_algo', 'lpj=auto'];

interface Sample {
  mconsoleUp: number;
  booted: number;
  guestInit: number;
}

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

async function bootOnce(rt: Runtime, id: string, defaultArgs: string[]): Promise<Sample> {
  const config: MachineConfig = {
    id, name: `bench/${id}`, kernel: umlKernel(), memoryBytes: 48 * 1024 * 1024, cmdline: [], defaultArgs,
    disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], interfaces: [],
  };
  const up = once(rt, (e) => e.type === 'mconsole-ready' && e.id === id);
  const booted = once(rt, (e) => e.type === 'booted' && e.id === id);
  const guest = once(rt, (e) => e.type === 'guest-message' && e.id === id);
  const t0 = performance.now();
  await rt.start(config);
  const sample = { mconsoleUp: (await up) - t0, booted: (await booted) - t0, guestInit: (await guest) - t0 };
  await rt.stop(id, { gracePeriodMs: 0 });
  await rt.remove(id);
  return sample;
}

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return `${median.toFixed(0).padStart(5)} ms  (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)})`;
}

const stateDir = mkdtempSync('/tmp/umlbench-');
const rt = createRuntime({ stateDir, imageRoot: testImageRoot() });
try {
  const results: Record<string, Sample[]> = { 'without fast-boot args': [], 'with fast-boot args': [] };
  // Without first: the first boot calibrates the delay loop and caches lpj for `lpj=auto`.
  for (let i = 0; i < runs; i++) results['without fast-boot args']!.push(await bootOnce(rt, `bs${i}`, []));
  await bootOnce(rt, 'bwarm', FAST_ARGS); // learns lpj if the runs above did not
  for (let i = 0; i < runs; i++) results['with fast-boot args']!.push(await bootOnce(rt, `bf${i}`, FAST_ARGS));
  console.log(`boot time of ${TEST_IMAGE}, jailed, mem=48M, ${runs} runs each (median, min, max), from start():`);
  for (const [label, samples] of Object.entries(results)) {
    console.log(`  ${label}:`);
    console.log(`    mconsole up      ${stats(samples.map((s) => s.mconsoleUp))}`);
    console.log(`    kernel booted    ${stats(samples.map((s) => s.booted))}`);
    console.log(`    guest init       ${stats(samples.map((s) => s.guestInit))}`);
  }
} finally {
  await rt.close();
  rmSync(stateDir, { recursive: true, force: true });
}
