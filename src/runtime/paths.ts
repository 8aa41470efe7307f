// The fixed layout of the state directory, host side and as the jailed kernel sees it.
// Unix socket paths are limited to 108 bytes (sun_path, NUL included), so every socket path is
// checked here, once, against the longest name it can take.
import { join } from 'node:path';

/** Where the agent keeps its machines unless told otherwise (umlmon's historical path). */
export const DEFAULT_STATE_DIR = '/var/lib/umlmon';
export const SOCKET_PATH_MAX = 107;
/** umids are short so that socket paths stay short, whatever the object's name. */
export const MACHINE_ID_PATTERN = /^[a-z0-9]{1,12}$/;
const MAX_ID = 'x'.repeat(12);

/** Paths inside the jail (the kernel's view after chroot). */
export const IN_JAIL = {
  kernel: '/linux',
  tmp: '/tmp',
  umlDir: '/uml',
  notify: '/notify',
  disks: '/disks',
  shared: '/shared',
} as const;

export interface MachinePaths {
  dir: string;
  machineFile: string;
  consoleLog: string;
  /** A FIFO, the kernel's stdin (con0's input): what `umlmon console` types goes in here. */
  consoleInput: string;
  /** Held by the one `umlmon console` session that may type (console-session.ts). */
  consoleWriterLock: string;
  jailScript: string;
  /** The jail's mounts, for the script's one `mount -a` (jail.ts). */
  jailFstab: string;
  jailDir: string;
  kernel: string;
  tmpDir: string;
  umlDir: string;
  disksDir: string;
  sharedMount: string;
  devDir: string;
  notifySocket: string;
  /** The jail's monitor writes here (and nothing else does: the agent watches it for the exit). */
  monitorDir: string;
  /** Written by the monitor as soon as it has started the kernel: the kernel's pid. */
  kernelPidFile: string;
  /** Written by the monitor when the kernel has exited: its wait status (exit-status.ts). */
  exitStatusFile: string;
  /** Where the kernel puts its mconsole socket unless it picks another umid. */
  expectedMconsoleSocket: string;
}

export function sharedDir(stateDir: string): string {
  return join(stateDir, 'shared');
}

/** One read-only copy of each kernel and library file the jails hard-link to (jail.ts). */
export function jailFilesDir(stateDir: string): string {
  return join(stateDir, 'jail-files');
}

/**
 * <stateDir>/machines: each machine's own directory (machinePaths). Not the agent's
 * `machinesDir` setting, which is the directory source's manifests.
 */
export function machineStateRoot(stateDir: string): string {
  return join(stateDir, 'machines');
}

export function machinePaths(stateDir: string, id: string): MachinePaths {
  const dir = join(machineStateRoot(stateDir), id);
  const jailDir = join(dir, 'jail');
  return {
    dir,
    machineFile: join(dir, 'machine.json'),
    consoleLog: join(dir, 'console.log'),
    consoleInput: join(dir, 'console.in'),
    consoleWriterLock: join(dir, 'console.writer'),
    jailScript: join(dir, 'jail.sh'),
    jailFstab: join(dir, 'jail.fstab'),
    jailDir,
    kernel: join(jailDir, IN_JAIL.kernel),
    tmpDir: join(jailDir, IN_JAIL.tmp),
    umlDir: join(jailDir, IN_JAIL.umlDir),
    disksDir: join(jailDir, IN_JAIL.disks),
    sharedMount: join(jailDir, IN_JAIL.shared),
    devDir: join(jailDir, 'dev'),
    notifySocket: join(jailDir, IN_JAIL.notify),
    monitorDir: join(dir, 'monitor'),
    kernelPidFile: join(dir, 'monitor', 'kernel.pid'),
    exitStatusFile: join(dir, 'monitor', 'exit-status'),
    expectedMconsoleSocket: join(jailDir, IN_JAIL.umlDir, id, 'mconsole'),
  };
}

/** Translates a path the jailed kernel reports (e.g. its mconsole socket) to the host's view. */
export function hostPathFromJail(jailDir: string, inJail: string): string {
  if (!inJail.startsWith('/')) throw new Error(`kernel reported a relative path "${inJail}"`);
  return join(jailDir, inJail);
}

export function switchDir(stateDir: string, name: string): string {
  return join(sharedDir(stateDir), 'switches', name);
}

/** The switch's control socket, host side and as seen inside a jail through /shared. */
export function switchControlSocket(stateDir: string, name: string): { host: string; inJail: string } {
  return { host: join(switchDir(stateDir, name), 'ctl'), inJail: join(IN_JAIL.shared, 'switches', name, 'ctl') };
}

/** Refuses a state directory whose socket paths could not be bound. */
export function checkStateDirLength(stateDir: string): void {
  const longest = machinePaths(stateDir, MAX_ID).expectedMconsoleSocket;
  const bytes = Buffer.byteLength(longest);
  if (bytes > SOCKET_PATH_MAX) {
    const room = SOCKET_PATH_MAX - (bytes - Buffer.byteLength(stateDir));
    throw new Error(
      `state directory "${stateDir}" is too long for Unix socket paths: a machine's mconsole socket would be ` +
        `${bytes} bytes, the limit is ${SOCKET_PATH_MAX}; use a state directory of at most ${room} bytes`,
    );
  }
}

export function checkSocketPath(path: string, what: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > SOCKET_PATH_MAX) {
    throw new Error(`${what} socket path "${path}" is ${bytes} bytes, over the ${SOCKET_PATH_MAX}-byte Unix socket limit`);
  }
}
