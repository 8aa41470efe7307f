// Node switches for `daemon` interfaces: one uml_switch per switch name, started on first use,
// shared by every guest naming it. Its control socket lives in the shared directory, which each
// jail sees read-only at /shared (connecting to a socket needs no write access to the mount).
// The data sockets are abstract-namespace addresses on both sides, so the chroot does not matter.
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readJsonIfExists, writeJsonAtomic } from './atomic-file.ts';
import { withLock } from './lock.ts';
import { checkSocketPath, switchControlSocket, switchDir } from './paths.ts';
import { isSameProcessAlive, readStartTicks } from './proc.ts';

interface SwitchRecord {
  pid: number;
  startTicks: string;
}

export interface SwitchHandle {
  name: string;
  pid: number;
  controlSocket: string;
  controlSocketInJail: string;
}

function recordPath(stateDir: string, name: string): string {
  return join(switchDir(stateDir, name), 'switch.json');
}

export function runningSwitch(stateDir: string, name: string): SwitchHandle | undefined {
  const record = readJsonIfExists<SwitchRecord>(recordPath(stateDir, name), { tornIsAbsent: true });
  if (!record || !isSameProcessAlive(record.pid, record.startTicks)) return undefined;
  const ctl = switchControlSocket(stateDir, name);
  return { name, pid: record.pid, controlSocket: ctl.host, controlSocketInJail: ctl.inJail };
}

/** The running switch of that name, started (detached, outliving the agent) if there is none. */
export async function ensureSwitch(stateDir: string, name: string, binary: string): Promise<SwitchHandle> {
  const dir = switchDir(stateDir, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const ctl = switchControlSocket(stateDir, name);
  checkSocketPath(ctl.host, `switch ${name} control`);
  return withLock(join(dir, '..', `${name}.lock`), async () => {
    const running = runningSwitch(stateDir, name);
    if (running) return running;
    rmSync(ctl.host, { force: true });
    const log = openSync(join(dir, 'switch.log'), 'a');
    let pid: number | undefined;
    try {
      const child = spawn(binary, ['-unix', ctl.host], { detached: true, stdio: ['ignore', log, log] });
      pid = await new Promise<number>((resolve, reject) => {
        child.once('error', (error) => reject(new Error(`cannot start switch ${name} (${binary}): ${error.message}`)));
        child.once('spawn', () => resolve(child.pid!));
      });
      child.unref();
    } finally {
      closeSync(log);
    }
    // uml_switch binds its control socket right after exec; wait (bounded) for it to appear.
    const deadline = Date.now() + 5000;
    while (!existsSync(ctl.host)) {
      if (readStartTicks(pid) === undefined || Date.now() > deadline) {
        throw new Error(`switch ${name}: ${binary} did not create its control socket ${ctl.host} (see ${join(dir, 'switch.log')})`);
      }
      await sleep(10);
    }
    // Jailed kernels run as their own uids: they need write permission on the socket to connect.
    chmodSync(ctl.host, 0o666);
    writeJsonAtomic(recordPath(stateDir, name), { pid, startTicks: readStartTicks(pid) ?? '' } satisfies SwitchRecord);
    return { name, pid, controlSocket: ctl.host, controlSocketInJail: ctl.inJail };
  });
}

/** Stops the switch (if it is the one we started) and removes its directory. */
export async function stopSwitch(stateDir: string, name: string): Promise<void> {
  const dir = switchDir(stateDir, name);
  await withLock(join(dir, '..', `${name}.lock`), async () => {
    const running = runningSwitch(stateDir, name);
    if (running) {
      process.kill(running.pid, 'SIGTERM');
      const deadline = Date.now() + 3000;
      while (readStartTicks(running.pid) !== undefined && Date.now() < deadline) await sleep(10);
      if (readStartTicks(running.pid) !== undefined) process.kill(running.pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });
}
