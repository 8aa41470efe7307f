// Adoption: taking over a machine from its record (machine.json) after an agent restart,
// without starting or stopping anything. A kernel whose process is gone is recorded as exited,
// with what its console and its monitor's wait status tell of how it ended. A live one gets a
// notify socket of ours, an exit watcher (its monitor's status file through inotify, or its pid)
// and a console follower; it is asked `version` and nothing else. A live process whose mconsole
// does not answer is `unknown` and is never killed for it (KubeVirt #18763).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { summarizeConsole, type ConsoleFollower } from './console.ts';
import { describeMachine, errorText } from './errors.ts';
import { describeIncompatibleKernel } from './kernel-compat.ts';
import { Once, type Machine } from './machine.ts';
import type { MachineRecord } from './machine-record.ts';
import { MconsoleClient, listenNotify, type NotifyMessage } from './mconsole/index.ts';
import { ExitStatusWatcher, readWaitStatus } from './monitor.ts';
import { machinePaths } from './paths.ts';
import { isSameProcessAlive } from './proc.ts';
import { nextState } from './transitions.ts';
import type { MachineState, RuntimeLogger } from './types.ts';

/** What adoption needs from the runtime around it. */
export interface AdoptHost {
  stateDir: string;
  tmpfsSlackBytes: number;
  mconsoleTimeoutMs: number;
  /** Holds the machine from now on (before anything can report on it). */
  register(m: Machine): void;
  persist(m: Machine): void;
  onNotify(m: Machine, message: NotifyMessage): void;
  onExit(m: Machine, code: number | null, signal: string | null): void;
  /** Exit detection by the kernel's pid, for a kernel whose monitor is gone. */
  watchKernelExit(m: Machine): void;
  followConsole(m: Machine, offset: number): ConsoleFollower;
  log: RuntimeLogger;
}

/** Takes over one recorded machine without starting or stopping anything. */
export async function adoptMachine(record: MachineRecord, host: AdoptHost): Promise<Machine> {
  const paths = machinePaths(host.stateDir, record.id);
  const m: Machine = {
    record, paths, state: 'unknown', consoleInput: existsSync(paths.consoleInput),
    mconsoleUp: new Once(), exited: new Once(), syncWaiters: new Set(), busy: Promise.resolve(),
  };
  m.tmpfsBytes = record.config.memoryBytes + host.tmpfsSlackBytes;
  host.register(m);
  if (!record.pid || !isSameProcessAlive(record.pid, record.startTicks)) {
    m.state = nextState(m.state, 'exited');
    if (!record.exit) {
      let summary: ReturnType<typeof summarizeConsole> = { booted: false };
      try {
        summary = summarizeConsole(readFileSync(paths.consoleLog, 'utf8'));
      } catch {
        /* no console log */
      }
      const { panic } = summary;
      const kernelIncompatible = summary.kernelIncompatible ? describeIncompatibleKernel(record.config.kernel, summary.kernelIncompatible) : undefined;
      // How it ended, as its monitor saw it (unknown for a kernel without one).
      const status = readWaitStatus(paths.exitStatusFile);
      record.exit = {
        code: status?.code ?? null, signal: status?.signal ?? null, at: new Date().toISOString(), ...(panic ? { panic } : {}),
        ...(kernelIncompatible ? { kernelIncompatible } : {}),
      };
      host.persist(m);
    }
    m.exited.resolve({ ...record.exit, at: new Date(record.exit.at) });
    host.log.info({ machine: record.id }, 'adopted a machine whose kernel is gone');
    return m;
  }
  // The kernel now reports to a socket we own. A stale socket file of the previous agent is
  // replaced; nothing is sent to the kernel but `version`.
  try {
    m.notify = listenNotify(paths.notifySocket, (msg) => host.onNotify(m, msg),
      (error) => host.log.warn({ machine: record.id, err: error.message }, 'notify socket problem'), { mode: 0o666 });
  } catch (error) {
    m.message = `cannot listen on its notify socket: ${errorText(error)}`;
  }
  if (record.monitorPid && record.monitorStartTicks && isSameProcessAlive(record.monitorPid, record.monitorStartTicks)) {
    // Its monitor writes the wait status when the kernel exits: heard through inotify.
    m.statusWatcher = new ExitStatusWatcher(paths.monitorDir, paths.exitStatusFile, (status) => host.onExit(m, status.code, status.signal));
  } else {
    host.watchKernelExit(m);
  }
  let offset = 0;
  try {
    // Already booted: only new lines matter. Not yet: read from the start to see the boot line.
    if (record.bootTime) offset = statSync(paths.consoleLog).size;
  } catch {
    /* no console log yet */
  }
  try {
    m.console = host.followConsole(m, offset);
  } catch (error) {
    host.log.warn({ machine: record.id, err: errorText(error) }, 'cannot follow the console log');
  }
  const socket = record.mconsoleSocket ?? (existsSync(paths.expectedMconsoleSocket) ? paths.expectedMconsoleSocket : undefined);
  if (!socket) {
    m.state = nextState(m.state, 'awaiting-mconsole');
    m.message = 'adopted before its mconsole came up';
    return m;
  }
  if ((m.state as MachineState) === 'exited') return m;
  m.client ??= new MconsoleClient(socket, { timeoutMs: host.mconsoleTimeoutMs, name: describeMachine(record) });
  try {
    record.kernelVersion = (await m.client.version()).trim();
    record.mconsoleSocket = socket;
    m.mconsoleUp.resolve(socket);
    m.state = nextState(m.state, record.paused ? 'answered-paused' : 'answered');
    m.message = undefined;
    host.persist(m);
  } catch (error) {
    // Present but silent: reported, never killed (KubeVirt #18763).
    if ((m.state as MachineState) !== 'exited') {
      m.state = nextState(m.state, 'silent');
      m.message = `process ${record.pid} is alive but mconsole does not answer: ${errorText(error)}`;
    }
  }
  host.log.info({ machine: record.id, pid: record.pid, state: m.state }, 'adopted a running kernel');
  return m;
}
