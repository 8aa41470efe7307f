// Shared by the runtime's integration tests: a machine config for the test image, unique ids,
// and waiting for one runtime event.
import { rmSync } from 'node:fs';
import type { MachineConfig, Runtime, RuntimeEvent } from '../../src/runtime/index.ts';
import { TEST_IMAGE, umlKernel } from './uml.ts';

export const MiB = 1024 * 1024;

/** A machine id (umid) unique enough for parallel test files: prefix + random, 12 chars at most. */
export function uniqueId(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 9)}`.slice(0, 12);
}

/** A 48 MiB machine booting the test image from ubd0 (cow) with the fast-boot arguments. */
export function machineConfig(id: string, overrides: Partial<MachineConfig> = {}): MachineConfig {
  return {
    id,
    name: `test/${id}`,
    kernel: umlKernel(),
    memoryBytes: 48 * MiB,
    cmdline: [],
    defaultArgs: ['initcall_blacklist=raid6_select_algo', 'lpj=auto'],
    disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }],
    interfaces: [],
    ...overrides,
  };
}

/** The first runtime event that matches, or a rejection after timeoutMs. */
export function waitFor(rt: Runtime, match: (e: RuntimeEvent) => boolean, timeoutMs = 60000): Promise<RuntimeEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching runtime event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = rt.onEvent((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** Stops and removes every machine the runtime knows, closes it, and deletes its state dir. */
export async function disposeRuntime(rt: Runtime, stateDir: string): Promise<void> {
  for (const m of rt.list()) {
    if (m.state !== 'exited') await rt.stop(m.id, { gracePeriodMs: 0 }).catch(() => undefined);
    await rt.remove(m.id).catch(() => undefined);
  }
  await rt.close();
  rmSync(stateDir, { recursive: true, force: true });
}
