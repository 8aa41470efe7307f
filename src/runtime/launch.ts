// A start, up to the spawned jail, as named steps run in order, each with its undo, as
// Firecracker's jailer sequences its set-up. When a step fails, every step that began (the
// failed one too: an undo copes with a step that got half way) is undone in reverse, so that a
// failed start leaves nothing on the host: no tap device, no cgroup, no socket. The machine's
// directory stays, for the next start or remove(). What follows the spawn (the kernel's pid,
// mconsole coming up) is the runtime's: the kernel then exists, and undoing means stopping it.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createMachineCgroup, removeMachineCgroup } from './cgroup.ts';
import { kernelArgs } from './cmdline.ts';
import { RuntimeError, errorText } from './errors.ts';
import { prepareInterface, releaseHostInterface, type HostInterfaceContext } from './interfaces.ts';
import { buildJailFstab, buildJailScript, diskBindMounts, prepareDiskImage, prepareJail, type JailIdentity, type JailTools } from './jail.ts';
import { readMeasuredLpj } from './lpj.ts';
import type { Machine } from './machine.ts';
import { listenNotify, type NotifyMessage } from './mconsole/index.ts';
import type { MachinePaths } from './paths.ts';
import type { AttachedInterface, DiskConfig, MachineConfig, RuntimeLogger } from './types.ts';

/** One step of a sequence: what it does, and how to take it back. */
export interface Step<C> {
  name: string;
  run(ctx: C): void | Promise<void>;
  /** Takes back what run() did, all or part of it; absent for a step that leaves nothing to undo. */
  undo?(ctx: C): void | Promise<void>;
}

/**
 * Runs the steps in order. On a failure, undoes every step that began, the failed one first,
 * then rethrows the step's error. An undo that fails is reported and the rest still run.
 */
export async function runSteps<C>(steps: readonly Step<C>[], ctx: C, onUndoError: (step: string, error: unknown) => void): Promise<void> {
  const begun: Step<C>[] = [];
  try {
    for (const step of steps) {
      begun.push(step);
      await step.run(ctx);
    }
  } catch (error) {
    for (const step of begun.reverse()) {
      try {
        await step.undo?.(ctx);
      } catch (undoError) {
        onUndoError(step.name, undoError);
      }
    }
    throw error;
  }
}

/** The PATH the jail's tools run with, whatever the agent's own environment has. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What a launch needs from the runtime around it. */
export interface LaunchHost {
  sharedDir: string;
  jailFilesDir: string;
  cgroupParent: string;
  /** Bytes of cgroup memory limit beyond the guest's memory and the tmpfs slack. */
  cgroupOverheadBytes: number;
  tmpfsSlackBytes: number;
  consolePty: boolean;
  tools: JailTools;
  hostInterfaces: HostInterfaceContext;
  /** The device template the jails bind as /dev, or undefined where each jail makes its own. */
  deviceTemplate(): Promise<string | undefined>;
  /** The machine as the runtime will hold it, once the jail is ready to spawn. */
  newMachine(launch: Launch): Machine;
  onNotify(m: Machine, message: NotifyMessage): void;
  onMonitorExit(m: Machine, code: number | null, signal: string | null): void;
  log: RuntimeLogger;
}

/** One start in progress: what the steps were given, and what they made. */
export interface Launch {
  config: MachineConfig;
  paths: MachinePaths;
  who: JailIdentity;
  images: { disk: DiskConfig; imagePath: string }[];
  tmpfsBytes: number;
  interfaces: AttachedInterface[];
  interfaceSpecs: string[];
  cgroupDirs: string[];
  consolePty?: boolean;
  machine?: Machine;
  child?: ChildProcess;
}

/** The jail's own failures: the start cannot go on, and says which step and why. */
function jailFailed(config: MachineConfig, error: unknown): RuntimeError {
  return error instanceof RuntimeError ? error : new RuntimeError('jail-failed', config, errorText(error), { cause: error });
}

export function launchSteps(host: LaunchHost): Step<Launch>[] {
  return [
    {
      name: 'host interfaces',
      async run(l) {
        for (const iface of l.config.interfaces) {
          const { attached, spec } = await prepareInterface(host.hostInterfaces, l.config, l.config.kernel, iface, l.who.uid);
          l.interfaces.push(attached);
          l.interfaceSpecs.push(spec);
        }
      },
      async undo(l) {
        for (const attached of l.interfaces) await releaseHostInterface(host.hostInterfaces, l.config.id, attached);
      },
    },
    {
      name: 'cgroup',
      run(l) {
        const memoryBytes = l.config.memoryBytes + Math.max(host.tmpfsSlackBytes, 0) + host.cgroupOverheadBytes;
        try {
          l.cgroupDirs = createMachineCgroup(host.cgroupParent, l.config.id, { memoryBytes, pids: 1024 })?.dirs ?? [];
        } catch (error) {
          throw jailFailed(l.config, error);
        }
      },
      undo(l) {
        removeMachineCgroup(host.cgroupParent, l.config.id);
      },
    },
    {
      // The kernel and its libraries (hard links to jail-files/), the jail's directories, the
      // disks' images made ready for the machine's uid. Kept on failure: the next start reuses them.
      name: 'jail files',
      run(l) {
        try {
          prepareJail(l.paths, l.config.kernel, l.who, l.config.disks, host.jailFilesDir);
          for (const { disk, imagePath } of l.images) prepareDiskImage(disk, imagePath, l.who);
        } catch (error) {
          throw jailFailed(l.config, error);
        }
      },
    },
    {
      name: 'jail script',
      async run(l) {
        const args = kernelArgs({ config: l.config, measuredLpj: readMeasuredLpj(host.sharedDir), interfaceSpecs: l.interfaceSpecs });
        const deviceTemplate = await host.deviceTemplate();
        // A pty console passes a terminal's size to the guest (jail.ts); it needs perl on the host.
        l.consolePty = host.consolePty && host.tools.perl !== undefined;
        const fstab = buildJailFstab({ paths: l.paths, who: l.who, tmpfsBytes: l.tmpfsBytes, sharedDir: host.sharedDir, binds: diskBindMounts(l.paths, l.images), deviceTemplate });
        writeFileSync(l.paths.jailFstab, fstab, { mode: 0o600 });
        const script = buildJailScript({
          paths: l.paths, who: l.who, cgroupDirs: l.cgroupDirs, fstab: l.paths.jailFstab, makeDevices: !deviceTemplate, consolePty: l.consolePty,
          kernelArgs: args, rlimits: { openFiles: 1024, processes: 512 }, tools: host.tools,
        });
        writeFileSync(l.paths.jailScript, script, { mode: 0o700 });
        l.machine = host.newMachine(l);
      },
    },
    {
      name: 'notify socket',
      run(l) {
        const m = l.machine!;
        try {
          m.notify = listenNotify(l.paths.notifySocket, (msg) => host.onNotify(m, msg),
            (error) => host.log.warn({ machine: l.config.id, err: error.message }, 'notify socket problem'), { mode: 0o666 });
        } catch (error) {
          throw jailFailed(l.config, error);
        }
      },
      undo(l) {
        l.machine?.notify?.close();
      },
    },
    {
      name: 'spawn',
      async run(l) {
        const m = l.machine!;
        // Append mode: the log can then be truncated under the kernel (rotation, console-log.ts).
        const consoleFd = openSync(l.paths.consoleLog, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_APPEND, 0o640);
        try {
          // The console's input FIFO is made and opened by the jail script (jail.ts): a child of
          // this process per start would cost a fork of the agent each.
          if (existsSync(l.paths.consoleInput) && !isFifo(l.paths.consoleInput)) rmSync(l.paths.consoleInput, { force: true });
          mkdirSync(l.paths.monitorDir, { recursive: true, mode: 0o755 });
          // detached: a session of its own, so nothing of the agent's reaches it. unshare execs
          // the jail script (no fork): this pid is the monitor's, which then starts the kernel in
          // a session and process group of the kernel's own (jail.ts).
          const child = spawn('unshare', ['--mount', '--propagation', 'private', '/bin/sh', l.paths.jailScript], {
            detached: true, stdio: ['ignore', consoleFd, consoleFd], env: { PATH: SYSTEM_PATH }, cwd: l.paths.dir,
          });
          child.once('exit', (code, signal) => host.onMonitorExit(m, code, signal));
          await new Promise<void>((ok, fail) => {
            child.once('spawn', ok);
            child.once('error', fail);
          });
          l.child = child;
        } catch (error) {
          throw new RuntimeError('start-failed', l.config, `could not spawn the jail: ${errorText(error)}`, { cause: error });
        } finally {
          closeSync(consoleFd);
        }
      },
    },
  ];
}

function isFifo(path: string): boolean {
  try {
    return statSync(path).isFIFO();
  } catch {
    return false;
  }
}
