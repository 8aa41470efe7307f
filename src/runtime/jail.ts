// The jail, as a short ordered list of steps (Firecracker's jailer is the model). Host-side steps
// run here and name the step and path when they fail; the steps that must happen inside the
// machine's own mount namespace (tmpfs, bind mounts, rlimits, chroot, uid drop) are a generated
// shell script run under `unshare --mount`, so every mount vanishes when the kernel exits.
import { execFileSync } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { diskFilesInJail } from './cmdline.ts';
import { IN_JAIL, type MachinePaths } from './paths.ts';
import type { DiskConfig } from './types.ts';

export class JailStepError extends Error {
  readonly step: string;
  readonly path: string;
  constructor(step: string, path: string, cause: unknown) {
    super(`jail step "${step}" failed for ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'JailStepError';
    this.step = step;
    this.path = path;
  }
}

function step<T>(name: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new JailStepError(name, path, error);
  }
}

/** Shared libraries (and the loader) a dynamic binary needs, from ldd; empty for a static one. */
export function parseLdd(output: string): string[] {
  const libs = new Set<string>();
  for (const line of output.split('\n')) {
    const arrow = /=>\s+(\/\S+)/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(0x/.exec(line);
    const path = arrow?.[1] ?? bare?.[1];
    if (path) libs.add(path);
  }
  return [...libs];
}

/**
 * Libraries glibc loads at run time without ldd seeing them. A UML kernel with I/O threads
 * (7.x: ubd runs in a thread) calls pthread_cancel when it powers off, and glibc dlopens
 * libgcc_s.so.1 for it: missing from the jail, the kernel aborts ("libgcc_s.so.1 must be
 * installed for pthread_cancel to work", SIGABRT) instead of exiting 0.
 */
export function dlopenedLibraries(linked: string[], exists: (path: string) => boolean): string[] {
  const extra: string[] = [];
  for (const lib of linked) {
    if (!lib.endsWith('/libc.so.6')) continue;
    const candidate = join(dirname(lib), 'libgcc_s.so.1');
    if (exists(candidate)) extra.push(candidate);
  }
  return extra;
}

/**
 * ldd's answer per kernel file (path and identity): ldd is a synchronous child process of ~10 ms,
 * which a hundred machines starting at once ran one after the other, blocking everything else.
 */
const librariesOf = new Map<string, string[]>();

function kernelLibraries(kernel: string): string[] {
  const st = statSync(kernel);
  const key = `${kernel}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  const known = librariesOf.get(key);
  if (known) return known;
  let linked: string[];
  try {
    linked = parseLdd(execFileSync('ldd', [kernel], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch {
    return []; // "not a dynamic executable" (asked again next time: a failure may pass)
  }
  const libraries = [...linked, ...dlopenedLibraries(linked, existsSync)];
  librariesOf.set(key, libraries);
  return libraries;
}

export interface JailIdentity {
  uid: number;
  gid: number;
}

function mountPointFile(path: string): void {
  if (!existsSync(path)) writeFileSync(path, '', { mode: 0o600 });
}

/** Host-side jail contents: directories, the kernel and its libraries, mount points. Idempotent. */
export function prepareJail(paths: MachinePaths, kernel: string, who: JailIdentity, disks: DiskConfig[]): void {
  step('create machine directory', paths.dir, () => mkdirSync(paths.dir, { recursive: true, mode: 0o755 }));
  step('create jail directory', paths.jailDir, () => {
    mkdirSync(paths.jailDir, { recursive: true, mode: 0o755 });
    chmodSync(paths.jailDir, 0o755);
  });
  step('copy kernel', paths.kernel, () => {
    copyFileSync(kernel, paths.kernel, constants.COPYFILE_FICLONE);
    chmodSync(paths.kernel, 0o555);
  });
  for (const lib of kernelLibraries(kernel)) {
    const target = join(paths.jailDir, lib);
    step('copy kernel library', target, () => {
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      copyFileSync(lib, target, constants.COPYFILE_FICLONE);
      chmodSync(target, 0o555);
    });
  }
  for (const dir of [paths.tmpDir, paths.sharedMount, paths.devDir]) {
    step('create directory', dir, () => mkdirSync(dir, { recursive: true, mode: 0o755 }));
  }
  for (const dir of [paths.umlDir, paths.disksDir]) {
    step('create kernel-writable directory', dir, () => {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chownSync(dir, who.uid, who.gid);
      chmodSync(dir, 0o700);
    });
  }
  for (const disk of disks) {
    const target = join(paths.jailDir, diskFilesInJail(disk).image);
    step('create disk mount point', target, () => mountPointFile(target));
  }
}

/** Checks a disk's image on the host and makes it usable by the jailed uid. */
export function prepareDiskImage(disk: DiskConfig, imagePath: string, who: JailIdentity): void {
  const st = step('stat image', imagePath, () => statSync(imagePath));
  if (!st.isFile() && !st.isBlockDevice()) {
    // UML accepts a directory and shows the guest a 4-block disk (uml-facts.md): refuse it here.
    throw new Error(`image ${imagePath} for ${disk.name} is not a regular file or block device`);
  }
  if (disk.mode === 'readWrite') {
    // The jailed kernel opens it read-write as its own uid: the image becomes that machine's.
    step('give image to the machine uid', imagePath, () => chownSync(imagePath, who.uid, who.gid));
  } else {
    step('check image is readable', imagePath, () => {
      if ((st.mode & 0o004) === 0 && st.uid !== who.uid) {
        throw new Error(`the jailed kernel (uid ${who.uid}) cannot read it: make it world-readable (chmod o+r)`);
      }
      accessSync(imagePath, constants.R_OK);
    });
  }
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Bind mounts for the disks' images (COW files need none: the kernel makes them in /disks). */
export function diskBindMounts(paths: MachinePaths, disks: { disk: DiskConfig; imagePath: string }[]): BindMount[] {
  return disks.map(({ disk, imagePath }) => ({
    source: imagePath,
    target: join(paths.jailDir, diskFilesInJail(disk).image),
    readOnly: disk.mode !== 'readWrite',
  }));
}

function bindCommands(mount: BindMount): string {
  const target = shellQuote(mount.target);
  const bind = `mount --bind ${shellQuote(mount.source)} ${target}`;
  return mount.readOnly ? `${bind} && mount -o remount,bind,ro ${target}` : bind;
}

export interface JailScriptInput {
  paths: MachinePaths;
  who: JailIdentity;
  tmpfsBytes: number;
  cgroupDirs: string[];
  sharedDir: string;
  binds: BindMount[];
  kernelArgs: string[];
  rlimits: { openFiles: number; processes: number };
  tools: JailTools;
}

/** Absolute paths of the host tools the script execs (the environment is cleared before them). */
export interface JailTools {
  env: string;
  setarch: string;
  setpriv: string;
  chroot: string;
  setsid: string;
}

export function findJailTools(): JailTools {
  const find = (name: string): string => {
    for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
      const path = join(dir, name);
      try {
        accessSync(path, constants.X_OK);
        return path;
      } catch {
        /* next */
      }
    }
    throw new Error(`${name} is not installed (util-linux / coreutils): the jail needs it`);
  };
  return { env: find('env'), setarch: find('setarch'), setpriv: find('setpriv'), chroot: find('chroot'), setsid: find('setsid') };
}

/** The in-namespace steps, each failing with the step's name and path on the console log. */
export function buildJailScript(input: JailScriptInput): string {
  const { paths, who } = input;
  const lines: string[] = [
    '#!/bin/sh',
    '# Generated by umlmon: runs inside the machine\'s own mount namespace (unshare --mount).',
    `fail() { echo "umlmon-jail: step '$1' failed for $2" >&2; exit 111; }`,
  ];
  const run = (name: string, path: string, command: string): void => {
    lines.push(`${command} || fail ${shellQuote(name)} ${shellQuote(path)}`);
  };
  // On cgroup v2 a container runtime usually gives the agent a private cgroup namespace, and
  // the kernel refuses to move a process into a cgroup outside it. The agent runs with hostPID,
  // so when the plain write is refused the script writes its own pid from the host's cgroup
  // namespace (pid 1's) instead. Where the plain write works (cgroup v1, a host cgroupns),
  // nothing else runs.
  for (const dir of input.cgroupDirs) {
    const procs = shellQuote(join(dir, 'cgroup.procs'));
    run('join cgroup', dir, `{ echo $$ > ${procs}; } 2>/dev/null || nsenter --target 1 --cgroup sh -c "echo $$ > ${procs}"`);
  }
  run(
    'mount memory tmpfs',
    paths.tmpDir,
    `mount -t tmpfs -o size=${input.tmpfsBytes},uid=${who.uid},gid=${who.gid},mode=0700,nosuid,nodev umlmon-mem ${shellQuote(paths.tmpDir)}`,
  );
  // A private /dev with only the nodes the kernel may use: null (the null console), urandom,
  // and net/tun for tap interfaces (opening it grants nothing: attaching to a tap device needs
  // it to be owned by the machine's uid, creating one needs CAP_NET_ADMIN).
  run('mount /dev tmpfs', paths.devDir, `mount -t tmpfs -o size=64k,mode=0755,nosuid,noexec umlmon-dev ${shellQuote(paths.devDir)}`);
  const dev = (name: string): string => shellQuote(join(paths.devDir, name));
  run('make device nodes', paths.devDir, [
    `mknod -m 666 ${dev('null')} c 1 3`,
    `mknod -m 444 ${dev('urandom')} c 1 9`,
    `mkdir -m 755 ${dev('net')}`,
    `mknod -m 666 ${dev('net/tun')} c 10 200`,
  ].join(' && '));
  run('bind shared directory read-only', paths.sharedMount, bindCommands({ source: input.sharedDir, target: paths.sharedMount, readOnly: true }));
  for (const bind of input.binds) run(bind.readOnly ? 'bind disk image read-only' : 'bind disk image', bind.source, bindCommands(bind));
  run('set rlimits', 'prlimit', `prlimit --pid $$ --nofile=${input.rlimits.openFiles} --nproc=${input.rlimits.processes} --core=0`);
  // setarch -R: ADDR_NO_RANDOMIZE is mandatory (uml-facts.md). chroot --userspec drops to the
  // machine's uid/gid after the chroot; no-new-privs keeps it there.
  const { tools } = input;
  const kernel = [
    `${tools.setsid} ${tools.env} -i TMPDIR=/tmp PATH=/`,
    `${tools.setarch} x86_64 -R`,
    `${tools.setpriv} --no-new-privs`,
    `${tools.chroot} --userspec=${who.uid}:${who.gid} --groups=${who.gid} ${shellQuote(paths.jailDir)} ${IN_JAIL.kernel}`,
    ...input.kernelArgs.map(shellQuote),
  ].join(' ');
  // The monitor, as container runtimes have one (conmon, containerd-shim): this shell stays
  // the kernel's parent, waits for it and writes its wait status where any agent, restarted or
  // not, reads how the guest ended (an adopted kernel's exit code is otherwise unknowable). The
  // kernel gets a session and process group of its own (setsid; a background job of this
  // shell is no group leader, so setsid does not fork and $! is the kernel's pid): signals to
  // its group never reach the monitor, and the monitor never signals anything. Status: the
  // shell's $? (128+N when a signal N ended the kernel).
  const pidFile = shellQuote(paths.kernelPidFile);
  const statusFile = shellQuote(paths.exitStatusFile);
  lines.push(
    // A background job of a shell without job control has its stdin replaced by /dev/null
    // before its own redirections (POSIX; so `<&0` would dup /dev/null): the console's input
    // FIFO is kept on fd 3 and given back to the kernel as its stdin.
    'exec 3<&0',
    `${kernel} <&3 3<&- &`,
    'exec 3<&-',
    'kernel=$!',
    `echo "$kernel" > ${pidFile}.tmp && mv -f ${pidFile}.tmp ${pidFile}`,
    // wait returns early if a trapped signal arrives; none is trapped, but loop until the kernel is gone.
    'while :; do wait "$kernel"; status=$?; kill -0 "$kernel" 2>/dev/null || break; done',
    `echo "$status" > ${statusFile}.tmp && mv -f ${statusFile}.tmp ${statusFile}`,
  );
  return `${lines.join('\n')}\n`;
}

/** Runs commands inside a running kernel's mount namespace (hot-plugged disks' bind mounts). */
export function inMachineNamespace(pid: number, script: string): void {
  execFileSync('nsenter', [`--target=${pid}`, '--mount', '--', 'sh', '-ec', script], { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function bindMountScript(mount: BindMount): string {
  return bindCommands(mount);
}
