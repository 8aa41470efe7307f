// The jail, as a short ordered list of steps (Firecracker's jailer is the model). Host-side steps
// run here and name the step and path when they fail; the steps that must happen inside the
// machine's own mount namespace (mounts, rlimits, chroot, uid drop) are a generated shell script
// run under `unshare --mount`, so every mount vanishes when the kernel exits.
//
// What a start costs is mostly processes: every exec of a tool is a millisecond or two of CPU,
// and a hundred machines starting at once on two cores wait for each other's. So the script
// mounts everything with one `mount -a` over a per-machine fstab, and the rest (limits, session,
// personality, no-new-privs, chroot and uid) is one chain of execs without a fork between them.
// The kernel file and its libraries are hard links to one copy per file in the state directory,
// not a copy per start.
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, chmodSync, chownSync, closeSync, constants, copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { util } from '../builtins.ts';
import { sha256Hex } from '../sha256.ts';
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

/**
 * The one read-only copy of a host file (a kernel, a library) that jails link to, named after
 * the file's identity: a new kernel build or a library upgrade is a new entry, and a running
 * kernel keeps the inode it was started from.
 */
function cachedCopy(cacheDir: string, source: string): string {
  const st = statSync(source);
  const key = sha256Hex(`${source}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`).slice(0, 16);
  const cached = join(cacheDir, `${key}-${source.split('/').pop()}`);
  if (existsSync(cached)) return cached;
  mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
  const tmp = `${cached}.tmp.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
  copyFileSync(source, tmp, constants.COPYFILE_FICLONE);
  chmodSync(tmp, 0o555);
  renameSync(tmp, cached);
  return cached;
}

/**
 * Puts a hard link to `cached` at `target` (nothing to do when it is one already). Root owns the
 * cached file and no one may write it, so the jailed uid can no more change it through its link
 * than it could change a copy. A jail on another filesystem than the cache gets a copy.
 */
function linkFromCache(cached: string, target: string): void {
  const want = statSync(cached);
  try {
    const have = lstatSync(target);
    if (have.ino === want.ino && have.dev === want.dev) return;
    rmSync(target, { force: true });
  } catch {
    /* no such file yet */
  }
  try {
    linkSync(cached, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    copyFileSync(cached, target, constants.COPYFILE_FICLONE);
    chmodSync(target, 0o555);
  }
}

/**
 * Removes cached files no jail links to any more (link count 1) once they are an hour old: the
 * age leaves alone an entry another runtime instance has just made and is about to link.
 */
export function pruneFileCache(cacheDir: string, now = Date.now()): void {
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(cacheDir, name);
    try {
      const st = lstatSync(path);
      if (st.isFile() && st.nlink === 1 && now - st.mtimeMs > 3600_000) rmSync(path, { force: true });
    } catch {
      /* gone meanwhile */
    }
  }
}

/**
 * The jail's /dev: only the nodes the kernel may use. null (the null console), urandom, and
 * net/tun for tap interfaces; opening tun grants nothing (attaching to a tap device needs it to
 * be owned by the machine's uid, creating one needs CAP_NET_ADMIN), but the host's own node is
 * often root's alone (0600), so the jail gets nodes of its own with these modes.
 */
export const JAIL_DEVICE_NODES = [
  { name: 'null', mode: 0o666, major: 1, minor: 3 },
  { name: 'urandom', mode: 0o444, major: 1, minor: 9 },
  { name: 'net/tun', mode: 0o666, major: 10, minor: 200 },
] as const;

/** glibc's makedev(), as stat's rdev reports it. */
function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12);
}

function isNode(path: string, node: typeof JAIL_DEVICE_NODES[number]): boolean {
  try {
    const st = statSync(path);
    return st.isCharacterDevice() && st.rdev === makedev(node.major, node.minor) && (st.mode & 0o777) === node.mode;
  } catch {
    return false;
  }
}

function mknodCommands(dir: string, mkdir = 'mkdir', mknod = 'mknod'): string {
  return [
    `${mkdir} -p -m 755 ${shellQuote(join(dir, 'net'))}`,
    ...JAIL_DEVICE_NODES.map((n) => `${mknod} -m ${n.mode.toString(8)} ${shellQuote(join(dir, n.name))} c ${n.major} ${n.minor}`),
  ].join(' && ');
}

/**
 * Makes the device nodes once, in `dir` (the state directory's jail-files), for every jail to
 * bind read-only as its /dev: one mount entry instead of a tmpfs and four tools per start.
 * False when nodes there cannot be opened (a state directory on a `nodev` filesystem): each jail
 * then makes its own on a tmpfs, as its script's `make device nodes` step.
 */
export async function ensureDeviceTemplate(dir: string, exec: (script: string) => Promise<void>): Promise<boolean> {
  if (!JAIL_DEVICE_NODES.every((n) => isNode(join(dir, n.name), n))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    try {
      await exec(mknodCommands(dir));
    } catch {
      return false;
    }
  }
  try {
    closeSync(openSync(join(dir, 'null'), 'w'));
    return true;
  } catch {
    return false;
  }
}

/** Host-side jail contents: directories, the kernel and its libraries, mount points. Idempotent. */
export function prepareJail(paths: MachinePaths, kernel: string, who: JailIdentity, disks: DiskConfig[], fileCache: string): void {
  step('create machine directory', paths.dir, () => mkdirSync(paths.dir, { recursive: true, mode: 0o755 }));
  step('create jail directory', paths.jailDir, () => {
    mkdirSync(paths.jailDir, { recursive: true, mode: 0o755 });
    chmodSync(paths.jailDir, 0o755);
  });
  step('link kernel', paths.kernel, () => linkFromCache(cachedCopy(fileCache, kernel), paths.kernel));
  for (const lib of kernelLibraries(kernel)) {
    const target = join(paths.jailDir, lib);
    step('link kernel library', target, () => {
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      linkFromCache(cachedCopy(fileCache, lib), target);
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

/** A path as fstab(5) spells it: space, tab, newline and backslash in octal. */
export function fstabPath(path: string): string {
  return path.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

export interface FstabInput {
  paths: MachinePaths;
  who: JailIdentity;
  tmpfsBytes: number;
  sharedDir: string;
  binds: BindMount[];
  /** The directory of device nodes (ensureDeviceTemplate) bound as the jail's /dev; undefined: a tmpfs the script fills. */
  deviceTemplate: string | undefined;
}

/**
 * Every mount of the jail, in order, for one `mount -a --fstab` (util-linux 2.27+ does `bind,ro`
 * in one entry): the memory file's tmpfs, the device nodes, the shared directory read-only, the
 * disk images.
 */
export function buildJailFstab(input: FstabInput): string {
  const { paths, who } = input;
  const lines = [
    '# Generated by umlmon: mounted inside the machine\'s own mount namespace by jail.sh.',
    `umlmon-mem ${fstabPath(paths.tmpDir)} tmpfs size=${input.tmpfsBytes},uid=${who.uid},gid=${who.gid},mode=0700,nosuid,nodev 0 0`,
  ];
  const bind = (source: string, target: string, readOnly: boolean, extra = ''): void => {
    lines.push(`${fstabPath(source)} ${fstabPath(target)} none bind${readOnly ? ',ro' : ''}${extra} 0 0`);
  };
  if (input.deviceTemplate) bind(input.deviceTemplate, paths.devDir, true, ',nosuid,noexec');
  else lines.push(`umlmon-dev ${fstabPath(paths.devDir)} tmpfs size=64k,mode=0755,nosuid,noexec 0 0`);
  bind(input.sharedDir, paths.sharedMount, true);
  for (const b of input.binds) bind(b.source, b.target, b.readOnly);
  return `${lines.join('\n')}\n`;
}

export interface JailScriptInput {
  paths: MachinePaths;
  who: JailIdentity;
  cgroupDirs: string[];
  /** Where buildJailFstab's output was written. */
  fstab: string;
  /** The fstab gives /dev as an empty tmpfs (no device template): the script makes the nodes. */
  makeDevices: boolean;
  /** The console is a pty (consolePtyLines; needs tools.perl), not the FIFO alone. */
  consolePty: boolean;
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
  mount: string;
  prlimit: string;
  nsenter: string;
  mv: string;
  mkfifo: string;
  cat: string;
  stty: string;
  /** For the console's pty (consolePtyLines); without perl the console is the FIFO alone. */
  perl: string | undefined;
}

export function findJailTools(): JailTools {
  const lookup = (name: string): string | undefined => {
    for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
      const path = join(dir, name);
      try {
        accessSync(path, constants.X_OK);
        return path;
      } catch {
        /* next */
      }
    }
    return undefined;
  };
  const find = (name: string): string => {
    const path = lookup(name);
    if (path === undefined) throw new Error(`${name} is not installed (util-linux / coreutils): the jail needs it`);
    return path;
  };
  return {
    env: find('env'), setarch: find('setarch'), setpriv: find('setpriv'), chroot: find('chroot'), setsid: find('setsid'),
    mount: find('mount'), prlimit: find('prlimit'), nsenter: find('nsenter'), mv: find('mv'), mkfifo: find('mkfifo'),
    cat: find('cat'), stty: find('stty'), perl: lookup('perl'),
  };
}

/** TIOCSPTLCK (unlock the pty's slave) and TIOCGPTN (its number), from <asm-generic/ioctls.h> on x86-64. */
const UNLOCK_PTY = 'my $z = pack("i", 0); ioctl(STDIN, 0x40045431, $z) or die "TIOCSPTLCK: $!\\n"; ' +
  'my $n = pack("i", 0); ioctl(STDIN, 0x80045430, $n) or die "TIOCGPTN: $!\\n"; print unpack("i", $n), "\\n"';

/**
 * The console as a pty, so that a terminal's size reaches the guest. UML learns its console's
 * size from TIOCGWINSZ on the console's host fd, and hears of a change (SIGWINCH, through a
 * helper thread that makes the pty its controlling terminal) only when the console's output fd
 * is a tty: a FIFO and a file, as before, carry no size. So con0 (fd:0,fd:1) is the pty's slave
 * both ways, and the master is held by this monitor's own processes, for the guest's whole life,
 * whatever the agent does (conmon holds a container's pty the same way):
 * - `cat` copies the master to the console log (this shell's stdout, opened for append), so the
 *   log is still written with no agent running and the kernel never blocks on it;
 * - another `cat` copies the console FIFO into the master: what `umlmon console` types;
 * - a resize is `stty rows R cols C` on the kernel's /proc/<pid>/fd/0 (console-session.ts).
 * POSIX sh cannot unlock a pty (unlockpt is an ioctl), so perl does that one step; where perl is
 * missing the console is the FIFO alone, with no size (findJailTools).
 * fds: 3 the FIFO, 4 the master, 5 the slave (the kernel's job only); each background job
 * closes the ones it does not use, or the master would outlive the kernel in a stray copy.
 */
function addConsolePty(perl: string, tools: JailTools, kernel: string, run: (name: string, path: string, command: string) => void, push: (line: string) => void): void {
  // The ptmx of the devpts mounted at /dev/pts, not /dev/ptmx: where /dev/ptmx is a device node
  // of its own (an old host, some container runtimes) it opens the host's first devpts, whose
  // numbers are not those of /dev/pts in this namespace. Root opens it whatever its mode.
  run('open a pty for the console', '/dev/pts/ptmx', 'exec 4<>/dev/pts/ptmx');
  run('unlock the console pty', '/dev/pts/ptmx', `pts=$(${perl} -e ${shellQuote(UNLOCK_PTY)} <&4)`);
  // Its end is an I/O error (EIO: no slave left), the normal end, not worth a line in the log.
  push(`${tools.cat} <&4 2>/dev/null 3<&- 4<&- &`);
  push(`${tools.cat} <&3 >&4 3<&- 4<&- &`);
  push('typed=$!');
  // The slave is opened in the kernel's own job, not by this shell: a session leader (this
  // monitor is one) opening a tty it has none makes it its controlling terminal, and UML's
  // helper could then not take it for SIGWINCH (TIOCSCTTY fails with EPERM). It is made raw
  // before the kernel runs: what the kernel prints before it sets its console raw itself (early
  // boot messages, a CPU it cannot run on) reaches the log as written, without \r added. The
  // job execs the kernel, so $! is still the kernel's pid.
  const fail = (step: string): string => `fail ${shellQuote(step)} "/dev/pts/$pts"`;
  push(`{ exec 5<>"/dev/pts/$pts" || ${fail('open the console pty')}; ${tools.stty} raw -echo <&5 || ${fail('make the console pty raw')}; exec ${kernel} <&5 >&5 3<&- 4<&- 5<&-; } &`);
}

/** The in-namespace steps, each failing with the step's name and path on the console log. */
export function buildJailScript(input: JailScriptInput): string {
  const { paths, who, tools } = input;
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
  // nothing else runs: echo is the shell's own.
  for (const dir of input.cgroupDirs) {
    const procs = shellQuote(join(dir, 'cgroup.procs'));
    run('join cgroup', dir, `{ echo $$ > ${procs}; } 2>/dev/null || ${tools.nsenter} --target 1 --cgroup /bin/sh -c "echo $$ > ${procs}"`);
  }
  // mount prints which entry failed and why before the step's own line.
  run('mount the jail (tmpfs, devices, shared directory, disk images)', input.fstab, `${tools.mount} -a --fstab ${shellQuote(input.fstab)}`);
  if (input.makeDevices) run('make device nodes', paths.devDir, mknodCommands(paths.devDir));
  // One chain of execs, no fork between them: limits (prlimit runs the rest), a session of the
  // kernel's own, an empty environment, ASLR off (setarch -R: ADDR_NO_RANDOMIZE is mandatory,
  // uml-facts.md), no-new-privs, then chroot --userspec drops to the machine's uid/gid. A tool
  // that fails here prints its reason on the console log and the monitor records its status.
  const kernel = [
    `${tools.prlimit} --nofile=${input.rlimits.openFiles} --nproc=${input.rlimits.processes} --core=0`,
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
  // The console's input: a FIFO the kernel holds open for reading and writing, so it never sees
  // end-of-file when a `umlmon console` session ends (UML's generic_read takes end-of-file for
  // an I/O error on the console). It holds no data once no process has it open, so the one
  // made for a machine's first start serves every later one. Opened on fd 3: a background job
  // of a shell without job control has its stdin replaced by /dev/null (POSIX).
  const fifo = shellQuote(paths.consoleInput);
  run('make the console FIFO', paths.consoleInput, `{ [ -p ${fifo} ] || ${tools.mkfifo} -m 0600 ${fifo}; }`);
  run('open the console FIFO', paths.consoleInput, `exec 3<>${fifo}`);
  if (input.consolePty && tools.perl) {
    addConsolePty(tools.perl, tools, kernel, run, (line) => lines.push(line));
    lines.push('exec 3<&- 4<&-');
  } else {
    lines.push(`${kernel} <&3 3<&- &`, 'exec 3<&-');
  }
  lines.push(
    'kernel=$!',
    // One write of the pid and its newline, with no rename (an exec): a reader takes only a
    // line that ends in a newline (monitor.ts), so it never takes half a pid.
    `echo "$kernel" > ${pidFile}`,
    // wait returns early if a trapped signal arrives; none is trapped, but loop until the kernel is gone.
    'while :; do wait "$kernel"; status=$?; kill -0 "$kernel" 2>/dev/null || break; done',
    `echo "$status" > ${statusFile}.tmp && ${tools.mv} -f ${statusFile}.tmp ${statusFile}`,
  );
  // The copy of the output ends by itself once the kernel's last process has let go of the
  // pty (it drains what the kernel wrote last first); the copy of typed input would wait on
  // the FIFO forever.
  if (input.consolePty && tools.perl) lines.push('kill "$typed" 2>/dev/null');
  return `${lines.join('\n')}\n`;
}

const execFileAsync = util.promisify(execFile);

/** Runs commands inside a running kernel's mount namespace (hot-plugged disks' bind mounts), beside the event loop. */
export async function inMachineNamespace(pid: number, script: string): Promise<void> {
  await execFileAsync('nsenter', [`--target=${pid}`, '--mount', '--', 'sh', '-ec', script]);
}

export function bindMountScript(mount: BindMount): string {
  return bindCommands(mount);
}
