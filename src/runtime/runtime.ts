// The runtime: starts jailed UML kernels, finds them again after an agent restart, drives them
// over mconsole, and reports what they do. Decisions live in pure modules (validate, cmdline,
// console, allocations, the state table in transitions.ts); a start's set-up in launch.ts,
// adoption in adopt.ts, what kernels report in kernel-reports.ts, device and backup operations
// in disks.ts, interfaces.ts and backup.ts. This file sequences the machine's lifecycle and
// keeps the per-machine state (machine-table.ts).
import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { util } from '../builtins.ts';
import { sha256Hex } from '../sha256.ts';
import { SharedAllocations } from './allocations.ts';
import { backupMachine } from './backup.ts';
import { killMachineCgroup, removeCgroupWhenEmpty, removeEmptyCgroupParent, removeMachineCgroup } from './cgroup.ts';
import { diskFilesInJail } from './cmdline.ts';
import { ConsoleFollower, type ConsoleRotation } from './console.ts';
import { writesAppending } from './console-log.ts';
import { diskFailureReason } from './device-check.ts';
import { plugInterface, prepareInterface, releaseHostInterface, unplugInterface, type HostInterfaceContext } from './interfaces.ts';
import { imageConflict, imageHoldersOf, imageInUseMessage } from './image-use.ts';
import { attachDisk, detachDisk } from './disks.ts';
import { RuntimeError, errorText } from './errors.ts';
import { ensureDeviceTemplate, findJailTools, pruneFileCache, type JailTools } from './jail.ts';
import { describeIncompatibleKernel } from './kernel-compat.ts';
import { adoptMachine, type AdoptHost } from './adopt.ts';
import { KernelReports } from './kernel-reports.ts';
import { SYSTEM_PATH, launchSteps, runSteps, type Launch, type LaunchHost } from './launch.ts';
import { readKernelPid, readWaitStatus, waitForKernelPid } from './monitor.ts';
import { Once, operationError, within, type Machine } from './machine.ts';
import { readAllMachineRecords, readMachineRecord, writeMachineRecord, type MachineRecord } from './machine-record.ts';
import { MconsoleClient, MconsoleError } from './mconsole/index.ts';
import { unmountAllUnder } from './mounts.ts';
import { MachineTable, type LabelSelector } from './machine-table.ts';
import { DEFAULT_STATE_DIR, checkStateDirLength, jailFilesDir, machinePaths, machineStateRoot, sharedDir, type MachinePaths } from './paths.ts';
import { ExitWatcher, groupAlive, isSameProcessAlive, killGroup, readStartTicks, startTimeFromTicks, waitGroupGone } from './proc.ts';
import { stopSwitch } from './switch.ts';
import { nextState } from './transitions.ts';
import type {
  AttachedDisk, AttachedInterface, BackupResult, DiskConfig, ExitInfo, GuestInfo, InterfaceConfig, MachineConfig,
  MachineSnapshot, Runtime, RuntimeEvent, RuntimeLogger, RuntimeOptions, StopOptions,
} from './types.ts';
import { configProblems, diskProblems } from './validate.ts';

const MiB = 1024 * 1024;

const execFileAsync = util.promisify(execFile);

const silentLogger: RuntimeLogger = { info() {}, warn() {}, error() {}, debug() {} };

interface Settings {
  stateDir: string;
  imageRoot: string;
  uidFirst: number;
  uidCount: number;
  tmpfsSlackBytes: number;
  cgroupOverheadBytes: number;
  cgroupParent: string;
  mconsoleTimeoutMs: number;
  startTimeoutMs: number;
  umlSwitch: string;
  consoleLogMaxBytes: number;
  consolePty: boolean;
  log: RuntimeLogger;
}

/** The first part of a console log, where the boot messages are (the file can grow large). */
function readConsoleHead(path: string, bytes = 256 * 1024): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.alloc(bytes);
      const n = readSync(fd, buffer, 0, bytes, 0);
      return buffer.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

/** A network device exists in the guest kernel exactly while it has an IPv4 conf directory. */
/** The KernelIncompatible message for a kernel whose console showed `line`, with the host's CPU features. */
export function createRuntime(options: RuntimeOptions): Runtime {
  return new UmlRuntime(options);
}

/**
 * Cgroups are host-wide while umids are only unique within one state directory (a directory
 * source derives them from namespace/name): the default state directory's machines live under
 * "umlmon", any other's under "umlmon-<hash of its path>", so two agents (or test runs) never
 * share a machine's cgroup and its memory limit.
 */
export function defaultCgroupParent(stateDir: string): string {
  if (stateDir === DEFAULT_STATE_DIR) return 'umlmon';
  return `umlmon-${sha256Hex(stateDir).slice(0, 8)}`;
}

export class UmlRuntime implements Runtime {
  private readonly settings: Settings;
  private readonly machines = new MachineTable<Machine>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private readonly allocations: SharedAllocations;
  private readonly sharedDir: string;
  private readonly hostInterfaces: HostInterfaceContext;
  private tools: JailTools | undefined;
  /** What the kernels report over their notify sockets and consoles (kernel-reports.ts). */
  private readonly reports: KernelReports;
  /** Whether the jails bind jail-files/dev as their /dev (ensureDeviceTemplate), found once. */
  private deviceTemplate: Promise<boolean> | undefined;
  private closed = false;

  constructor(options: RuntimeOptions) {
    const stateDir = resolve(options.stateDir ?? DEFAULT_STATE_DIR);
    checkStateDirLength(stateDir);
    this.settings = {
      stateDir,
      imageRoot: resolve(options.imageRoot),
      uidFirst: options.uidRange?.first ?? 200000,
      uidCount: options.uidRange?.count ?? 65536,
      tmpfsSlackBytes: options.tmpfsSlackBytes ?? 16 * MiB,
      cgroupOverheadBytes: options.cgroupOverheadBytes ?? 96 * MiB,
      cgroupParent: options.cgroupParent ?? defaultCgroupParent(stateDir),
      mconsoleTimeoutMs: options.mconsoleTimeoutMs ?? 5000,
      startTimeoutMs: options.startTimeoutMs ?? 60000,
      umlSwitch: options.umlSwitch ?? 'uml_switch',
      consoleLogMaxBytes: options.consoleLogMaxBytes ?? 4 * MiB,
      consolePty: options.consolePty ?? true,
      log: options.logger ?? silentLogger,
    };
    this.sharedDir = sharedDir(stateDir);
    mkdirSync(this.sharedDir, { recursive: true, mode: 0o755 });
    pruneFileCache(jailFilesDir(stateDir));
    mkdirSync(machineStateRoot(stateDir), { recursive: true, mode: 0o755 });
    this.allocations = new SharedAllocations(this.sharedDir);
    this.hostInterfaces = { stateDir, sharedDir: this.sharedDir, allocations: this.allocations, umlSwitch: this.settings.umlSwitch, log: this.settings.log };
    this.reports = new KernelReports({
      sharedDir: this.sharedDir,
      mconsoleTimeoutMs: this.settings.mconsoleTimeoutMs,
      startTimeoutMs: this.settings.startTimeoutMs,
      persist: (m) => this.persist(m),
      emit: (event) => this.emit(event),
      serial: (m, fn) => this.serial(m, fn),
      readConsoleHead: (path) => readConsoleHead(path),
      log: this.settings.log,
    });
  }

  // ---- events and status -------------------------------------------------------------------

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: RuntimeEvent): void {
    if (this.closed) return;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.settings.log.error({ err: error, event: event.type, machine: event.id }, 'runtime event listener threw');
      }
    }
  }

  list(): MachineSnapshot[] {
    return [...this.machines.values()].map((m) => this.status(m));
  }

  get(id: string): MachineSnapshot | undefined {
    const m = this.machines.get(id);
    return m ? this.status(m) : undefined;
  }

  select(selector: LabelSelector): MachineSnapshot[] {
    return this.machines.select(selector).map((m) => this.status(m));
  }

  private status(m: Machine): MachineSnapshot {
    const r = m.record;
    const status: MachineSnapshot = {
      id: r.id,
      name: r.name,
      state: m.state,
      pid: r.pid,
      startTime: new Date(r.startTime),
      config: r.config,
      disks: r.disks.map((d) => ({ ...d })),
      interfaces: r.interfaces.map((i) => ({ ...i })),
      consoles: [{ name: 'con0', hostDevice: m.consoleInput ? `fifo:${m.paths.consoleInput},file:${r.consoleLog}` : `file:${r.consoleLog}` }],
      consoleLog: r.consoleLog,
    };
    if (m.consoleInput) status.consoleInput = m.paths.consoleInput;
    if (r.cgroupDirs.length > 0) status.cgroupDirs = [...r.cgroupDirs];
    if (r.bootTime) status.bootTime = new Date(r.bootTime);
    if (r.kernelVersion) status.kernelVersion = r.kernelVersion;
    if (r.mconsoleSocket) status.mconsoleSocket = r.mconsoleSocket;
    if (r.exit && m.state === 'exited') status.exit = { ...r.exit, at: new Date(r.exit.at) };
    if (m.message) status.message = m.message;
    return status;
  }

  private require(id: string): Machine {
    const m = this.machines.get(id);
    if (!m) throw new RuntimeError('not-found', { id }, 'no such machine on this node (not started or adopted by this runtime)');
    return m;
  }

  private requireClient(m: Machine, operation: string): MconsoleClient {
    if (m.state === 'exited') throw new RuntimeError('not-running', m.record, `cannot ${operation}: the kernel is not running`);
    if (!m.client) throw new RuntimeError('not-running', m.record, `cannot ${operation}: its mconsole is not up (state ${m.state})`);
    return m.client;
  }

  private requireBooted(m: Machine, operation: string): MconsoleClient {
    const client = this.requireClient(m, operation);
    if (!m.record.bootTime) {
      // A device configured before the kernel finished its initcalls never appears and a later
      // remove panics the kernel (uml-facts.md, hot-plug timing).
      throw new RuntimeError('not-booted', m.record, `cannot ${operation} yet: the kernel has not finished booting; wait for the 'booted' event`);
    }
    return client;
  }

  private persist(m: Machine): void {
    try {
      writeMachineRecord(m.paths.machineFile, m.record);
    } catch (error) {
      this.settings.log.error({ machine: m.record.id, err: errorText(error) }, 'could not write machine.json');
    }
  }

  /** Runs fn after the machine's previous operation, so two operations never interleave. */
  private serial<T>(m: Machine, fn: () => Promise<T>): Promise<T> {
    const run = m.busy.then(fn, fn);
    m.busy = run.catch(() => undefined);
    return run;
  }

  // ---- start ---------------------------------------------------------------------------------

  private imagePath(machine: { id: string; name: string }, disk: DiskConfig): string {
    const problems = diskProblems(disk);
    if (problems.length) throw new RuntimeError('invalid-config', machine, problems.join('; '));
    const path = resolve(this.settings.imageRoot, disk.image);
    if (!path.startsWith(this.settings.imageRoot + sep)) {
      throw new RuntimeError('invalid-config', machine, `disk ${disk.name}: image "${disk.image}" is outside the image root`);
    }
    if (!existsSync(path)) {
      throw new RuntimeError('invalid-config', machine, `disk ${disk.name}: image "${disk.image}" does not exist under ${this.settings.imageRoot}`);
    }
    return path;
  }

  /** A readWrite image is one machine's at a time (image-use.ts): refused while another has it. */
  private checkImageFree(machine: { id: string; name: string }, disk: DiskConfig): void {
    const holder = imageConflict(disk, imageHoldersOf(this.list(), machine.id));
    if (holder) throw new RuntimeError('disk-in-use', machine, imageInUseMessage(disk, holder));
  }

  /** The device-node directory every jail binds as its /dev, or undefined where nodes cannot live in the state directory. */
  private async jailDeviceTemplate(): Promise<string | undefined> {
    const dir = join(jailFilesDir(this.settings.stateDir), 'dev');
    this.deviceTemplate ??= ensureDeviceTemplate(dir, async (script) => { await execFileAsync('/bin/sh', ['-ec', script], { env: { PATH: SYSTEM_PATH } }); });
    return (await this.deviceTemplate) ? dir : undefined;
  }

  private checkKernel(config: MachineConfig): void {
    let st;
    try {
      st = statSync(config.kernel);
    } catch {
      throw new RuntimeError('invalid-config', config, `kernel ${config.kernel} does not exist on this node`);
    }
    if (!st.isFile()) throw new RuntimeError('invalid-config', config, `kernel ${config.kernel} is not a regular file`);
    if ((st.mode & 0o111) === 0) throw new RuntimeError('invalid-config', config, `kernel ${config.kernel} is not executable`);
  }

  async start(config: MachineConfig): Promise<MachineSnapshot> {
    if (this.closed) throw new RuntimeError('not-running', config, 'the runtime is closed');
    const problems = configProblems(config);
    if (problems.length) throw new RuntimeError('invalid-config', config, problems.join('; '));
    this.checkKernel(config);
    const images = config.disks.map((disk) => ({ disk, imagePath: this.imagePath(config, disk) }));
    const tmpfsBytes = config.memoryBytes + this.settings.tmpfsSlackBytes;
    if (tmpfsBytes < 4 * MiB) throw new RuntimeError('invalid-config', config, `the memory file's tmpfs would be ${tmpfsBytes} bytes: too small to start`);

    for (const disk of config.disks) this.checkImageFree(config, disk);
    const known = this.machines.get(config.id);
    if (known && known.state !== 'exited') {
      throw new RuntimeError('already-running', config, `already running (pid ${known.record.pid}, state ${known.state}); stop it before starting it again`);
    }
    const paths = machinePaths(this.settings.stateDir, config.id);
    const previous = readMachineRecord(paths.machineFile);
    if (previous && isSameProcessAlive(previous.pid, previous.startTicks)) {
      throw new RuntimeError('already-running', config, `already running (pid ${previous.pid}, started by another runtime instance); adopt it instead of starting it again`);
    }
    const tools = (this.tools ??= findJailTools());
    if (known) this.forget(known);
    this.cleanStale(paths, config);

    const uid = await this.allocations.allocateUid(config.id, this.settings.uidFirst, this.settings.uidCount);
    // Until the kernel runs, a failure undoes what was made for it on the host (launch.ts).
    const launch: Launch = { config, paths, who: { uid, gid: uid }, images, tmpfsBytes, interfaces: [], interfaceSpecs: [], cgroupDirs: [] };
    await runSteps(launchSteps(this.launchHost(tools)), launch, (step, error) =>
      this.settings.log.warn({ machine: config.id, step, err: errorText(error) }, 'undoing a step of a failed start failed'));
    const m = launch.machine!;
    const child = launch.child!;
    child.unref();
    const monitorPid = child.pid!;
    m.child = child;
    m.record.pid = monitorPid; // until the monitor says which pid the kernel has
    m.record.monitorPid = monitorPid;
    m.record.monitorStartTicks = readStartTicks(monitorPid) ?? '';
    this.machines.set(m);
    m.console = new ConsoleFollower(paths.consoleLog, 0, (signal) => this.reports.onConsole(m, signal), this.consoleRotation(m));
    const kernelPid = await waitForKernelPid(paths.kernelPidFile, () => child.exitCode !== null || child.signalCode !== null, this.settings.startTimeoutMs);
    const pid = kernelPid ?? monitorPid;
    const startTicks = readStartTicks(pid) ?? '';
    m.record.pid = pid;
    m.record.startTicks = startTicks;
    m.record.startTime = (startTicks ? startTimeFromTicks(startTicks) : new Date()).toISOString();
    this.persist(m);
    this.settings.log.info({ machine: config.id, name: config.name, pid, monitor: monitorPid }, 'kernel started');

    const timer = new AbortController();
    const outcome = await Promise.race([
      m.mconsoleUp.promise.then((socket) => ({ kind: 'up' as const, socket })),
      m.exited.promise.then((exit) => ({ kind: 'exited' as const, exit })),
      sleep(this.settings.startTimeoutMs, undefined, { signal: timer.signal }).then(() => ({ kind: 'timeout' as const }), () => ({ kind: 'cancelled' as const })),
    ]);
    timer.abort();
    if (outcome.kind === 'cancelled') throw new Error('unreachable: start timer cancelled before the race ended');
    if (outcome.kind === 'exited') {
      if (outcome.exit.kernelIncompatible) throw new RuntimeError('kernel-incompatible', config, outcome.exit.kernelIncompatible);
      throw new RuntimeError('start-failed', config, `the kernel exited before its mconsole came up: ${this.describeEarlyExit(m, outcome.exit)}`);
    }
    if (outcome.kind === 'timeout') {
      // Not killed: it may only be slow. The caller decides whether to stop it.
      m.state = nextState(m.state, 'start-timed-out');
      m.message = `mconsole did not come up within ${this.settings.startTimeoutMs} ms`;
      throw new RuntimeError('start-failed', config, `${m.message}; the kernel (pid ${pid}) was left running, see ${paths.consoleLog}`);
    }
    try {
      m.record.kernelVersion = (await m.client!.version()).trim();
    } catch (error) {
      m.message = `mconsole is up but 'version' failed: ${errorText(error)}`;
    }
    this.persist(m);
    return this.status(m);
  }

  /** What the launch steps need of this runtime (launch.ts). */
  private launchHost(tools: JailTools): LaunchHost {
    return {
      sharedDir: this.sharedDir,
      jailFilesDir: jailFilesDir(this.settings.stateDir),
      cgroupParent: this.settings.cgroupParent,
      cgroupOverheadBytes: this.settings.cgroupOverheadBytes,
      tmpfsSlackBytes: this.settings.tmpfsSlackBytes,
      consolePty: this.settings.consolePty,
      tools,
      hostInterfaces: this.hostInterfaces,
      deviceTemplate: () => this.jailDeviceTemplate(),
      newMachine: (l) => ({
        record: {
          id: l.config.id, name: l.config.name, pid: 0, startTime: '', startTicks: '', config: l.config,
          notifySocket: l.paths.notifySocket, jailDir: l.paths.jailDir, consoleLog: l.paths.consoleLog, uid: l.who.uid, gid: l.who.gid,
          cgroupDirs: l.cgroupDirs, consolePty: l.consolePty === true,
          disks: l.config.disks.map((d) => ({ name: d.name, image: d.image, mode: d.mode })), interfaces: l.interfaces,
        },
        paths: l.paths, state: 'starting', tmpfsBytes: l.tmpfsBytes, consoleInput: true,
        mconsoleUp: new Once(), exited: new Once(), syncWaiters: new Set(), busy: Promise.resolve(),
      }),
      onNotify: (m, message) => this.reports.onNotify(m, message),
      onMonitorExit: (m, code, signal) => this.onMonitorExit(m, code, signal),
      log: this.settings.log,
    };
  }

  /** Rotation of a machine's console log, once its kernel is known to append (console-log.ts). */
  private consoleRotation(m: Machine): ConsoleRotation {
    let appends: boolean | undefined;
    return {
      maxBytes: this.settings.consoleLogMaxBytes,
      canRotate: () => {
        // Asked only once the log is past its limit; the kernel's pid is known by then.
        if (appends === undefined && m.record.pid && m.record.startTicks) appends = writesAppending(m.record.pid, m.record.consolePty ? 2 : 1);
        return appends === true;
      },
    };
  }

  /** Leaves nothing of a dead machine's run but its private disks (COW files are guest data). */
  private cleanStale(paths: MachinePaths, machine: { id: string; name: string }): void {
    if (!existsSync(paths.dir)) return;
    const left = unmountAllUnder(paths.dir);
    if (left.length) throw new RuntimeError('jail-failed', machine, `stale mounts under ${paths.dir} could not be unmounted: ${left.join(', ')}`);
    // The console FIFO stays (it holds nothing between runs); the device mount points are remade.
    for (const path of [paths.umlDir, paths.tmpDir, paths.notifySocket, paths.devDir, paths.sharedMount, paths.jailScript, paths.jailFstab, paths.monitorDir, paths.consoleWriterLock]) {
      rmSync(path, { recursive: true, force: true });
    }
    if (existsSync(paths.consoleLog)) renameSync(paths.consoleLog, `${paths.consoleLog}.previous`);
    this.settings.log.info({ machine: machine.id }, 'cleaned the state directory of a previous run');
  }

  private describeEarlyExit(m: Machine, exit: ExitInfo): string {
    const how = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    if (exit.panic) return `${exit.panic} (${how})`;
    let text = '';
    try {
      text = readFileSync(m.paths.consoleLog, 'utf8');
    } catch {
      /* nothing logged */
    }
    const jailLine = /umlmon-jail: .*/.exec(text)?.[0];
    if (jailLine) return `${jailLine} (${how})`;
    const tail = text.trim().split('\n').slice(-3).join(' | ');
    return `${how}; last console lines: ${tail || '(none)'}`;
  }

  /**
   * The monitor exits right after the kernel, having written its wait status. A monitor that
   * exits without a kernel pid never started one (a jail step failed: its own code, 111, and
   * the step on the console). One killed before the kernel ended leaves the kernel running:
   * it is watched directly from then on.
   */
  private onMonitorExit(m: Machine, code: number | null, signal: string | null): void {
    if (readKernelPid(m.paths.kernelPidFile) === undefined) {
      this.onExit(m, code, signal);
      return;
    }
    const status = readWaitStatus(m.paths.exitStatusFile);
    if (status !== undefined) {
      this.onExit(m, status.code, status.signal);
      return;
    }
    this.settings.log.warn({ machine: m.record.id, monitor: m.record.monitorPid, code, signal }, 'the machine\'s monitor ended before its kernel; watching the kernel directly');
    this.watchKernelExit(m);
  }

  /** Exit detection without the monitor: the kernel's pid, checked once a second (proc.ts). */
  private watchKernelExit(m: Machine): void {
    m.exitWatcher?.close();
    m.exitWatcher = new ExitWatcher(m.record.pid, () => {
      const status = readWaitStatus(m.paths.exitStatusFile);
      this.onExit(m, status?.code ?? null, status?.signal ?? null);
    });
  }

  private onExit(m: Machine, code: number | null, signal: string | null): void {
    // The kernel's last datagrams (a panic notify) may still sit unread in the notify socket
    // when the exit is seen: give them a moment before the socket is closed.
    setTimeout(() => this.finishExit(m, code, signal), 50);
  }

  private finishExit(m: Machine, code: number | null, signal: string | null): void {
    if (m.state === 'exited' || this.machines.get(m.record.id) !== m) return;
    m.console?.drain();
    if (m.lastPanic && !m.panicReported) {
      // A panic seen only on the console (e.g. before mconsole was up: no notify is sent).
      m.panicReported = true;
      this.emit({ type: 'panic', id: m.record.id, message: m.lastPanic });
    }
    let panic = m.lastPanic;
    if (m.memoryFileFull) {
      const size = m.tmpfsBytes ? ` (${Math.round(m.tmpfsBytes / MiB)} MiB)` : '';
      panic = `the memory file's tmpfs${size} ran out of space: it must hold the guest's whole memory; ` +
        `raise the tmpfs slack or lower the memory (${m.memoryFileFull}${m.lastPanic ? `; ${m.lastPanic}` : ''})`;
    }
    if (panic !== undefined && /Unable to mount root fs|Cannot open root device/.test(panic)) {
      // Why the root disk could not be opened is on the console, above the panic.
      const consoleText = readConsoleHead(m.paths.consoleLog);
      const reasons = m.record.config.disks.map((d) => diskFailureReason(consoleText, d.name)).filter((r): r is string => r !== undefined);
      if (reasons.length > 0) panic = `${panic}: ${reasons.join('; ')}`;
    }
    const exit: ExitInfo = { code, signal, at: new Date() };
    if (panic) exit.panic = panic;
    if (m.kernelIncompatible) exit.kernelIncompatible = describeIncompatibleKernel(m.record.config.kernel, m.kernelIncompatible);
    m.state = nextState(m.state, 'exited');
    m.record.exit = {
      code, signal, at: exit.at.toISOString(), ...(panic ? { panic } : {}),
      ...(exit.kernelIncompatible ? { kernelIncompatible: exit.kernelIncompatible } : {}),
    };
    this.release(m);
    this.persist(m);
    this.settings.log.info({ machine: m.record.id, code, signal, panic }, 'kernel exited');
    m.exited.resolve(exit);
    this.emit({ type: 'exited', id: m.record.id, exit });
    // The kernel's main process is gone, so what is left of it has nothing to do: UML's helpers
    // in its group, and one in a session of its own (the console's SIGWINCH watcher, which
    // waits forever after a panic and keeps the console's pty open), found by the cgroup. The
    // group cannot have been reused while it had members.
    if (m.record.pid > 1) killGroup(m.record.pid, 'SIGKILL');
    killMachineCgroup(this.settings.cgroupParent, m.record.id);
    // The cgroup can go once the kernel's group is gone and the rest have exited.
    void waitGroupGone(m.record.pid, 5000).then(async (gone) => {
      const current = (): boolean => { const c = this.machines.get(m.record.id); return c === undefined || c === m; };
      if (gone && current()) await removeCgroupWhenEmpty(this.settings.cgroupParent, m.record.id, 2000, current);
    });
  }

  /** Drops sockets and watchers; the kernel itself is not touched. */
  private release(m: Machine): void {
    m.client?.close();
    m.client = undefined;
    m.notify?.close();
    m.notify = undefined;
    m.console?.close();
    m.console = undefined;
    m.exitWatcher?.close();
    m.exitWatcher = undefined;
    m.statusWatcher?.close();
    m.statusWatcher = undefined;
  }

  private forget(m: Machine): void {
    this.release(m);
    m.child?.removeAllListeners('exit');
    this.machines.delete(m.record.id);
  }

  // ---- adoption ------------------------------------------------------------------------------

  async adoptAll(): Promise<MachineSnapshot[]> {
    const { records, problems } = readAllMachineRecords(this.settings.stateDir);
    for (const problem of problems) this.settings.log.warn(problem, 'unreadable machine.json; left alone');
    const adopted: MachineSnapshot[] = [];
    for (const record of records) {
      const known = this.machines.get(record.id);
      if (known) {
        adopted.push(this.status(known));
        continue;
      }
      adopted.push(this.status(await adoptMachine(record, this.adoptHost())));
    }
    return adopted;
  }

  /** What adoption needs of this runtime (adopt.ts). */
  private adoptHost(): AdoptHost {
    return {
      stateDir: this.settings.stateDir,
      tmpfsSlackBytes: this.settings.tmpfsSlackBytes,
      mconsoleTimeoutMs: this.settings.mconsoleTimeoutMs,
      register: (m) => this.machines.set(m),
      persist: (m) => this.persist(m),
      onNotify: (m, message) => this.reports.onNotify(m, message),
      onExit: (m, code, signal) => this.onExit(m, code, signal),
      watchKernelExit: (m) => this.watchKernelExit(m),
      followConsole: (m, offset) => new ConsoleFollower(m.paths.consoleLog, offset, (signal) => this.reports.onConsole(m, signal), this.consoleRotation(m)),
      log: this.settings.log,
    };
  }

  // ---- stop, pause, resume ------------------------------------------------------------------

  async stop(id: string, options: StopOptions): Promise<void> {
    const m = this.require(id);
    const pid = m.record.pid;
    if (m.state !== 'exited') {
      m.state = nextState(m.state, 'stop-begun');
      const client = m.client;
      if (client) {
        // cad asks the guest's init to shut down. Before init runs, the kernel answers cad by
        // rebooting itself, so a machine that has not booted goes straight to halt.
        // Until the guest's init has told the kernel it handles ctrl-alt-del (busybox and
        // systemd do, with reboot(RB_DISABLE_CAD), as they start), the kernel reboots on cad
        // instead: UML starts again in the same process. Waiting out the grace period then only
        // boots the guest a second time, so a reboot during the wait goes straight to halt.
        let exited = false;
        if (m.record.bootTime && options.gracePeriodMs > 0) {
          const rebooted = new Once<void>();
          m.rebootedWhileStopping = rebooted;
          try {
            await client.cad().catch((error) => this.settings.log.warn({ machine: id, err: errorText(error) }, 'cad failed'));
            await within(Promise.race([m.exited.promise, rebooted.promise]), options.gracePeriodMs);
          } finally {
            m.rebootedWhileStopping = undefined;
          }
          exited = m.exited.resolved;
          if (!exited && rebooted.resolved) {
            this.settings.log.info({ machine: id }, 'the guest rebooted on ctrl-alt-del (its init did not handle it yet)');
          }
        }
        if (!exited) {
          this.settings.log.info({ machine: id }, 'halting');
          // (A reboot may have given the kernel a new mconsole socket, and m.client with it.)
          await (m.client ?? client).halt().catch((error) => this.settings.log.warn({ machine: id, err: errorText(error) }, 'halt failed'));
          if (!(await within(m.exited.promise, 3000))) killGroup(pid, 'SIGKILL');
        }
      } else {
        killGroup(pid, 'SIGTERM');
        if (!(await within(m.exited.promise, options.gracePeriodMs))) killGroup(pid, 'SIGKILL');
      }
      if (!(await within(m.exited.promise, 10000))) {
        throw new RuntimeError('not-running', m.record, `process ${pid} did not exit after SIGKILL`);
      }
    }
    // UML leaves a helper behind for 1-2 s now and then. With the kernel's main process gone
    // nothing in its group has anything left to do (and the pgid cannot be reused while the
    // group has members), so the rest is killed; the stop is done when the group is gone.
    killGroup(pid, 'SIGKILL');
    if (!(await waitGroupGone(pid, 5000))) throw new RuntimeError('not-running', m.record, `processes of group ${pid} are still alive after SIGKILL`);
    // UML's SIGWINCH watcher has a session of its own: the cgroup finds it. The monitor and the
    // copies of the console's pty end a moment after the kernel's last process. (Not waited
    // for by process group: once killed, they are zombies until whoever inherited them reaps
    // them, which can take seconds; an exited task has left its cgroup, so the cgroup can go.)
    killMachineCgroup(this.settings.cgroupParent, id);
    await removeCgroupWhenEmpty(this.settings.cgroupParent, id, 2000);
  }

  pause(id: string): Promise<void> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireClient(m, 'pause');
      try {
        await client.stop();
      } catch (error) {
        if (!(error instanceof MconsoleError && /already stopped/i.test(error.reply))) throw operationError(m, 'pause', error);
      }
      m.state = nextState(m.state, 'paused');
      m.record.paused = true;
      this.persist(m);
    });
  }

  resume(id: string): Promise<void> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireClient(m, 'resume');
      try {
        await client.go();
      } catch (error) {
        if (!(error instanceof MconsoleError && /not stopped/i.test(error.reply))) throw operationError(m, 'resume', error);
      }
      m.state = nextState(m.state, 'resumed');
      m.record.paused = false;
      this.persist(m);
    });
  }

  // ---- disks ---------------------------------------------------------------------------------

  attachDisk(id: string, disk: DiskConfig): Promise<AttachedDisk> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireBooted(m, `attach disk ${disk.name}`);
      const imagePath = this.imagePath(m.record, disk);
      if (m.record.disks.some((d) => d.name === disk.name)) {
        throw new RuntimeError('invalid-config', m.record, `disk ${disk.name} is already attached; detach it first`);
      }
      this.checkImageFree(m.record, disk);
      const attached = await attachDisk({ m, client, log: this.settings.log }, disk, imagePath);
      m.record.disks.push(attached);
      this.persist(m);
      return attached;
    });
  }

  detachDisk(id: string, name: string): Promise<void> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireBooted(m, `detach disk ${name}`);
      const attached = m.record.disks.find((d) => d.name === name);
      if (!attached) throw new RuntimeError('invalid-config', m.record, `disk ${name} is not attached`);
      await detachDisk({ m, client, log: this.settings.log }, attached);
      m.record.disks = m.record.disks.filter((d) => d.name !== name);
      this.persist(m);
    });
  }

  // ---- disks ---------------------------------------------------------------------------------

  // ---- interfaces ----------------------------------------------------------------------------

  attachInterface(id: string, iface: InterfaceConfig): Promise<AttachedInterface> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireBooted(m, `attach interface ${iface.name}`);
      if (m.record.interfaces.some((i) => i.name === iface.name)) {
        throw new RuntimeError('invalid-config', m.record, `interface ${iface.name} is already attached; detach it first`);
      }
      const prepared = await prepareInterface(this.hostInterfaces, m.record, m.record.config.kernel, iface, m.record.uid);
      const attached = await plugInterface({ m, client, log: this.settings.log, host: this.hostInterfaces }, iface, prepared);
      m.record.interfaces.push(attached);
      m.record.config = { ...m.record.config, interfaces: [...m.record.config.interfaces.filter((i) => i.name !== iface.name), iface] };
      this.persist(m);
      return attached;
    });
  }

  detachInterface(id: string, name: string): Promise<void> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireBooted(m, `detach interface ${name}`);
      const attached = m.record.interfaces.find((i) => i.name === name);
      if (!attached) throw new RuntimeError('invalid-config', m.record, `interface ${name} is not attached`);
      await unplugInterface({ m, client, log: this.settings.log, host: this.hostInterfaces }, attached);
      m.record.interfaces = m.record.interfaces.filter((i) => i.name !== name);
      m.record.config = { ...m.record.config, interfaces: m.record.config.interfaces.filter((i) => i.name !== name) };
      this.persist(m);
    });
  }

  // ---- backup, guest info --------------------------------------------------------------------

  backup(id: string, destinationDir: string): Promise<BackupResult> {
    const m = this.require(id);
    return this.serial(m, async () => {
      const client = this.requireClient(m, 'back up');
      const files = m.record.disks
        .filter((d) => d.mode !== 'readOnly')
        .map((d) => ({
          disk: d.name,
          source: d.mode === 'cow' ? join(m.paths.jailDir, diskFilesInJail(d).cow!) : resolve(this.settings.imageRoot, d.image),
          destination: join(destinationDir, d.mode === 'cow' ? `${d.name}.cow` : `${d.name}.img`),
        }));
      return backupMachine({ m, client, log: this.settings.log }, files, destinationDir);
    });
  }

  async guestInfo(id: string): Promise<GuestInfo> {
    const m = this.require(id);
    const client = this.requireClient(m, 'read guest info');
    const uptime = await client.proc('uptime');
    const load = await client.proc('loadavg');
    return { uptimeSeconds: Number(uptime.trim().split(/\s+/)[0]), loadAverage: load.trim().split(/\s+/).slice(0, 3).join(' ') };
  }

  // ---- removal, close ------------------------------------------------------------------------

  async remove(id: string): Promise<void> {
    const paths = machinePaths(this.settings.stateDir, id);
    const m = this.machines.get(id);
    const record = m?.record ?? readMachineRecord(paths.machineFile);
    const who = { id, name: record?.name ?? id };
    if (record?.pid && isSameProcessAlive(record.pid, record.startTicks)) {
      throw new RuntimeError('already-running', who, `cannot remove: the kernel is still running (pid ${record.pid}); stop it first`);
    }
    if (record?.pid && groupAlive(record.pid) && !(await waitGroupGone(record.pid, 3000))) {
      throw new RuntimeError('already-running', who, `cannot remove: processes of group ${record.pid} are still alive`);
    }
    // The monitor writes the exit status into the machine directory just after the kernel ends.
    if (record?.monitorPid && record.monitorStartTicks && isSameProcessAlive(record.monitorPid, record.monitorStartTicks) && !(await waitGroupGone(record.monitorPid, 3000))) {
      throw new RuntimeError('already-running', who, `cannot remove: its monitor (pid ${record.monitorPid}) is still alive`);
    }
    if (m) this.forget(m);
    // Mounts in the kernel's namespace went with it; anything on the host side must go before
    // the directory does, or rm would reach through a bind mount into an image.
    const left = unmountAllUnder(paths.dir);
    if (left.length) throw new RuntimeError('jail-failed', who, `cannot remove: still mounted under ${paths.dir}: ${left.join(', ')}`);
    for (const attached of record?.interfaces ?? []) await releaseHostInterface(this.hostInterfaces, id, attached);
    rmSync(paths.dir, { recursive: true, force: true });
    removeMachineCgroup(this.settings.cgroupParent, id);
    await this.allocations.releaseUid(id);
    await this.allocations.releaseMacs(id);
    // A switch nobody on the node is plugged into any more goes too.
    const switchesOf = (r: MachineRecord): string[] => r.interfaces.flatMap((i) => (i.transport === 'daemon' && i.switch ? [i.switch] : []));
    const switches = new Set(record ? switchesOf(record) : []);
    if (switches.size) {
      const users = new Set(readAllMachineRecords(this.settings.stateDir).records.flatMap(switchesOf));
      for (const name of switches) if (!users.has(name)) await stopSwitch(this.settings.stateDir, name);
    }
    this.settings.log.info({ machine: id }, 'removed');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const m of this.machines.values()) this.forget(m);
    this.listeners.clear();
    removeEmptyCgroupParent(this.settings.cgroupParent);
  }
}
