// mconsole round trip: the native client vs. spawning uml_mconsole per command (what umlmon
// used to do). Boots one test kernel, waits until the guest has booted, then times `version`.
//   node bench/mconsole.ts [--native N] [--spawn N]
import { execFile } from 'node:child_process';
import { MconsoleClient } from '../src/runtime/mconsole/index.ts';
import { KERNEL_BOOTED, bootPlainUml } from '../test/support/plain-uml.ts';

export interface LatencySummary { count: number; medianMs: number; p99Ms: number; meanMs: number }
export interface MconsoleBenchResult { native: LatencySummary; spawn: LatencySummary; speedup: number }

function summarize(samplesMs: number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
  return { count: sorted.length, medianMs: at(0.5), p99Ms: at(0.99), meanMs: sorted.reduce((s, x) => s + x, 0) / sorted.length };
}

function elapsedMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function umlMconsole(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('uml_mconsole', [socketPath, 'version'], { timeout: 10_000 }, (error, stdout) => {
      if (error) reject(new Error(`uml_mconsole ${socketPath} version failed: ${error.message}`));
      else resolve(stdout);
    });
  });
}

export async function runMconsoleBench(options: { native?: number; spawn?: number } = {}): Promise<MconsoleBenchResult> {
  const nativeCount = options.native ?? 2000;
  const spawnCount = options.spawn ?? 100;
  const { uml, socketPath } = await bootPlainUml();
  const client = new MconsoleClient(socketPath);
  try {
    await uml.waitForConsole(KERNEL_BOOTED, 60_000);
    await uml.waitForNotify((m) => m.type === 'user', { timeoutMs: 60_000 });
    // Warm up both paths (JIT, page cache for the uml_mconsole binary).
    for (let i = 0; i < 50; i += 1) await client.version();
    for (let i = 0; i < 3; i += 1) await umlMconsole(socketPath);

    const native: number[] = [];
    for (let i = 0; i < nativeCount; i += 1) {
      const start = process.hrtime.bigint();
      const reply = await client.version();
      native.push(elapsedMs(start));
      if (!reply.startsWith('Linux')) throw new Error(`version answered ${JSON.stringify(reply)}`);
    }
    const spawned: number[] = [];
    for (let i = 0; i < spawnCount; i += 1) {
      const start = process.hrtime.bigint();
      const out = await umlMconsole(socketPath);
      spawned.push(elapsedMs(start));
      if (!out.startsWith('OK Linux')) throw new Error(`uml_mconsole answered ${JSON.stringify(out)}`);
    }
    const nativeSummary = summarize(native);
    const spawnSummary = summarize(spawned);
    return { native: nativeSummary, spawn: spawnSummary, speedup: spawnSummary.medianMs / nativeSummary.medianMs };
  } finally {
    client.close();
    await uml.destroy();
  }
}

export function formatMconsoleBench(result: MconsoleBenchResult): string {
  const row = (label: string, s: LatencySummary) =>
    `  ${label.padEnd(28)} n=${String(s.count).padStart(5)}  median ${s.medianMs.toFixed(3).padStart(7)} ms  p99 ${s.p99Ms.toFixed(3).padStart(7)} ms  mean ${s.meanMs.toFixed(3).padStart(7)} ms`;
  return [
    'mconsole round trip (`version`, one kernel, sequential):',
    row('native MconsoleClient', result.native),
    row('spawn uml_mconsole', result.spawn),
    `  speed-up (median): ${result.speedup.toFixed(1)}x`,
  ].join('\n');
}

function flag(name: string): number | undefined {
  const i = process.argv.indexOf(name);
  if (i === -1) return undefined;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} takes a positive integer`);
  return value;
}

if (import.meta.main) {
  const result = await runMconsoleBench({ native: flag('--native'), spawn: flag('--spawn') });
  console.log(formatMconsoleBench(result));
}
