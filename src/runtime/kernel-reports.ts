// What a running kernel reports, and what the runtime makes of it: its notify socket (mconsole
// up, a panic, a hang, a message from the guest) and its console (the boot line, the init it
// runs, the measured lpj, a panic or a full memory file seen only there, a sync finished), and
// after the boot the check that the kernel has every device it was given. State moves through
// the table in transitions.ts; events go out through the runtime.
import { diskFailureReason, interfaceFailureReason, missingDisks } from './device-check.ts';
import { parsePartitions } from './disks.ts';
import { describeMachine, errorText } from './errors.ts';
import { kernelHasInterface } from './interfaces.ts';
import { recordMeasuredLpj } from './lpj.ts';
import { within, type Machine } from './machine.ts';
import { MconsoleClient, type NotifyMessage } from './mconsole/index.ts';
import { hostPathFromJail } from './paths.ts';
import type { ConsoleSignal } from './console.ts';
import { nextState } from './transitions.ts';
import type { RuntimeEvent, RuntimeLogger } from './types.ts';

/** What the reports need from the runtime around them. */
export interface ReportsHost {
  sharedDir: string;
  mconsoleTimeoutMs: number;
  startTimeoutMs: number;
  persist(m: Machine): void;
  emit(event: RuntimeEvent): void;
  /** Runs fn after the machine's previous operation (the runtime's per-machine serialisation). */
  serial<T>(m: Machine, fn: () => Promise<T>): Promise<T>;
  /** The first part of a console log, where the boot messages are. */
  readConsoleHead(path: string): string;
  log: RuntimeLogger;
}

export class KernelReports {
  readonly #host: ReportsHost;

  constructor(host: ReportsHost) {
    this.#host = host;
  }

  onNotify(m: Machine, message: NotifyMessage): void {
    const id = m.record.id;
    switch (message.type) {
      case 'socket': {
        let socket: string;
        try {
          socket = hostPathFromJail(m.paths.jailDir, message.path);
        } catch (error) {
          this.#host.log.warn({ machine: id, err: errorText(error) }, 'ignoring a bad notify socket message');
          return;
        }
        if (m.client?.socketPath !== socket) {
          m.client?.close();
          m.client = new MconsoleClient(socket, { timeoutMs: this.#host.mconsoleTimeoutMs, name: describeMachine(m.record) });
        }
        m.record.mconsoleSocket = socket;
        m.state = nextState(m.state, 'mconsole-up');
        if (m.mconsoleUp.resolved) {
          // A second MCONSOLE_SOCKET: the guest rebooted in the same process (e.g. after cad).
          m.record.bootTime = undefined;
          m.bootInit = undefined;
          m.rebootedWhileStopping?.resolve();
        }
        m.mconsoleUp.resolve(socket);
        this.#host.persist(m);
        this.#host.emit({ type: 'mconsole-ready', id });
        return;
      }
      case 'panic':
        m.lastPanic = message.message.trim();
        m.panicReported = true;
        this.#host.emit({ type: 'panic', id, message: m.lastPanic });
        return;
      case 'hang':
        this.#host.emit({ type: 'hang', id });
        return;
      case 'user':
        this.#host.emit({ type: 'guest-message', id, message: message.message.replace(/\n$/, '') });
        return;
    }
  }

  onConsole(m: Machine, signal: ConsoleSignal): void {
    switch (signal.type) {
      case 'booted': {
        if (m.bootInit !== undefined && m.record.bootTime !== undefined) {
          // One boot, another init: the one before failed (a root image without /sbin/init).
          const failed = m.bootInit;
          m.bootInit = signal.init;
          this.#host.emit({ type: 'init-fallback', id: m.record.id, failed, init: signal.init });
          return;
        }
        m.bootInit = signal.init;
        const at = new Date();
        m.record.bootTime = at.toISOString();
        this.#host.persist(m);
        this.#host.emit({ type: 'booted', id: m.record.id, at });
        void this.#host.serial(m, () => this.checkDevices(m));
        return;
      }
      case 'lpj':
        try {
          recordMeasuredLpj(this.#host.sharedDir, signal.value);
        } catch (error) {
          this.#host.log.warn({ err: errorText(error) }, 'could not cache the measured lpj');
        }
        return;
      case 'panic':
        m.lastPanic ??= signal.message;
        return;
      case 'memory-file-full':
        m.memoryFileFull = signal.message;
        return;
      case 'kernel-incompatible':
        m.kernelIncompatible ??= signal.line;
        return;
      case 'sync-complete':
        for (const waiter of m.syncWaiters) waiter();
        m.syncWaiters.clear();
        return;
    }
  }

  /**
   * After boot: does the kernel have every device it was told about at start? A disk it could
   * not open is absent from the guest's /proc/partitions, an interface it could not set up has
   * no /proc/sys/net entry. Those are marked `refused` with the kernel's words, so that status
   * reports what the kernel has, not what was intended.
   */
  async checkDevices(m: Machine): Promise<void> {
    // The boot line and mconsole's notify come from two sources: the console can be read first.
    if (!m.client) await within(m.mconsoleUp.promise, this.#host.startTimeoutMs);
    const client = m.client;
    if (!client || m.state === 'exited') {
      this.#host.log.warn({ machine: m.record.id, state: m.state }, 'could not check the kernel\'s devices after boot: its mconsole is not up');
      return;
    }
    let changed = false;
    try {
      const partitions = parsePartitions(await client.proc('partitions'));
      const consoleText = this.#host.readConsoleHead(m.paths.consoleLog);
      for (const disk of m.record.disks) {
        if (disk.refused !== undefined || missingDisks([disk.name], partitions).length === 0) continue;
        disk.refused = diskFailureReason(consoleText, disk.name) ?? `the kernel was given ${disk.name} but the guest does not list it in /proc/partitions`;
        changed = true;
      }
      for (const iface of m.record.interfaces) {
        if (iface.refused !== undefined || (await kernelHasInterface(client, iface.name))) continue;
        iface.refused = interfaceFailureReason(consoleText, iface.name) ?? `the kernel was given ${iface.name} but has no such network device`;
        changed = true;
      }
    } catch (error) {
      this.#host.log.warn({ machine: m.record.id, err: errorText(error) }, 'could not check the kernel\'s devices after boot');
      return;
    }
    if (changed) {
      this.#host.persist(m);
      this.#host.log.warn({ machine: m.record.id, disks: m.record.disks.filter((d) => d.refused), interfaces: m.record.interfaces.filter((i) => i.refused) }, 'the kernel refused devices it was given at start');
    }
    this.#host.emit({ type: 'devices-checked', id: m.record.id });
  }
}
