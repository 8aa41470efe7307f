// Shared by the runtime's integration tests: a machine config for the test image, unique ids,
// and waiting for one runtime event.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { killMachineCgroup, removeCgroupWhenEmpty, removeEmptyCgroupParent } from '../../src/runtime/cgroup.ts';
import { defaultCgroupParent, type MachineConfig, type Runtime, type RuntimeEvent } from '../../src/runtime/index.ts';
import { TEST_IMAGE, testImageRoot, umlKernel } from './uml.ts';

export const MiB = 1024 * 1024;

/** A machine id (umid) unique enough for parallel test files: prefix + random, 12 chars at most. */
export function uniqueId(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 9)}`.slice(0, 12);
}

/** A 48 MiB machine booting the test image from ubd0 (cow) on umlmon's kernel, with lpj=auto. */
export function machineConfig(id: string, overrides: Partial<MachineConfig> = {}): MachineConfig {
  return {
    id,
    name: `test/${id}`,
    kernel: umlKernel(),
    memoryBytes: 48 * MiB,
    cmdline: [],
    defaultArgs: ['lpj=auto'],
    disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }],
    interfaces: [],
    ...overrides,
  };
}

/** A fresh state directory with an image root of its own holding the test image (tests add images to it). */
export function privateStateDir(): { stateDir: string; imageRoot: string } {
  const stateDir = mkdtempSync('/tmp/umlrt-');
  const imageRoot = join(stateDir, 'images');
  mkdirSync(imageRoot);
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  return { stateDir, imageRoot };
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

let guestCommands = 0;

/**
 * Runs a shell script in a guest booted with `guest.cmd` on its kernel command line (the test
 * image's command disk, hack/build-rootfs.sh): the script is written to an image under
 * imageRoot, hot-plugged as ubd15, and what the guest reports back is returned. The disk is
 * detached again unless `keepDisk` (a script that kills the guest cannot wait for that).
 */
export async function runInGuest(rt: Runtime, imageRoot: string, id: string, script: string, options: { timeoutMs?: number; expectExit?: boolean } = {}): Promise<string> {
  guestCommands += 1;
  const image = `cmd-${process.pid}-${guestCommands}.img`;
  const body = Buffer.alloc(4096);
  // A number of its own: the guest runs a disk's text once, and the same command twice in a row
  // must still run twice.
  body.write(`: ${guestCommands}; ${script}`);
  writeFileSync(join(imageRoot, image), body);
  const ran = waitFor(rt, (e) => e.type === 'guest-message' && e.id === id && e.message.startsWith('umlmon-guest: ran:'), options.timeoutMs ?? 30_000);
  await rt.attachDisk(id, { name: 'ubd15', image, mode: 'readOnly' });
  if (options.expectExit) {
    ran.catch(() => undefined);
    return '';
  }
  const event = await ran;
  await rt.detachDisk(id, 'ubd15');
  rmSync(join(imageRoot, image), { force: true });
  return event.type === 'guest-message' ? event.message.slice('umlmon-guest: ran:'.length).trim() : '';
}

/** Stops and removes every machine the runtime knows, closes it, and deletes its state dir. */
/**
 * Removes the cgroups of a state directory's machines, and their parent, for a test whose agent
 * is gone and whose guests it killed itself: no runtime is left to remove them. Anything still
 * in one (a UML helper in a session of its own) is SIGKILLed first. Call it before the state
 * directory is deleted: the machines' ids are read from it.
 */
export async function removeMachineCgroups(stateDir: string): Promise<void> {
  const parent = defaultCgroupParent(stateDir);
  const machines = join(stateDir, 'machines');
  for (const id of existsSync(machines) ? readdirSync(machines) : []) {
    killMachineCgroup(parent, id);
    await removeCgroupWhenEmpty(parent, id, 5000);
  }
  removeEmptyCgroupParent(parent);
}

export async function disposeRuntime(rt: Runtime, stateDir: string): Promise<void> {
  for (const m of rt.list()) {
    if (m.state !== 'exited') await rt.stop(m.id, { gracePeriodMs: 0 }).catch(() => undefined);
    await rt.remove(m.id).catch(() => undefined);
  }
  await rt.close();
  rmSync(stateDir, { recursive: true, force: true });
}
