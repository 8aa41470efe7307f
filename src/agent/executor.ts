// Carries out one action of a plan through the runtime and the source, and says what it did as
// an Event. Each action is a thin shell over one runtime call; the decisions were plan()'s.
//
// A stop is the one action that does not finish here: it takes up to a grace period, so it is
// begun and runs beside the workers (a hundred guests of a drain would otherwise wait for each
// other in batches of the worker count). Its end is reported, and handed to the controller,
// which queues the key for the pass that acts on it.
import type { Logger } from 'pino';
import type { UmlMachine } from '../api/types.ts';
import { RuntimeError, errorText } from '../runtime/errors.ts';
import type { Runtime } from '../runtime/types.ts';
import { RESTART_REQUEST_ANNOTATION } from './annotations.ts';
import { DEFAULT_RETAIN, runBackup } from './backups.ts';
import type { CoreMetrics } from './core-metrics.ts';
import type { EventReporter } from './event-reporter.ts';
import type { MachineStates } from './machine-states.ts';
import type { MachineKey } from './object-key.ts';
import { describeExit, type Action } from './plan.ts';
import type { EventType, MachineSource } from './source.ts';

/** Actions on a running guest's devices: their errors belong to DevicesSynced, not Ready. */
export const DEVICE_ACTIONS: ReadonlySet<Action['type']> = new Set<Action['type']>(['attachDisk', 'detachDisk', 'attachInterface', 'detachInterface']);

export interface ExecutorDeps {
  runtime: Runtime;
  source: MachineSource;
  states: MachineStates;
  events: EventReporter;
  logger: Logger;
  metrics?: CoreMetrics;
  backupDir: string;
  now: () => Date;
}

/** The pass an action belongs to: its key, the object (absent for an orphan) and the pass's log. */
export interface ActionContext {
  key: MachineKey;
  machine: UmlMachine | undefined;
  log: Logger;
}

export class Executor {
  readonly #deps: ExecutorDeps;
  #disksReleased: () => void = () => {};
  #stopDone: (key: MachineKey) => void = () => {};

  constructor(deps: ExecutorDeps) {
    this.#deps = deps;
  }

  /** Called when a machine lets go of its disks (stopped, removed, a disk detached). */
  onDisksReleased(listener: () => void): void {
    this.#disksReleased = listener;
  }

  /** Called when a stop has finished, well or not: the key's next pass acts on it. */
  onStopDone(listener: (key: MachineKey) => void): void {
    this.#stopDone = listener;
  }

  async execute(action: Action, ctx: ActionContext): Promise<void> {
    const { runtime: rt, states, metrics } = this.#deps;
    const { key, machine } = ctx;
    const event = (type: EventType, reason: string, message: string): void => this.#deps.events.record(machine, type, reason, message, key);
    switch (action.type) {
      case 'addFinalizer':
        if (machine) {
          await this.#deps.source.ensureFinalizer(machine, true);
          states.of(key).finalizerAddedFor = machine.metadata.uid;
        }
        return;
      case 'removeFinalizer':
        if (machine) await this.#deps.source.ensureFinalizer(machine, false);
        return;
      case 'start': {
        const c = action.config;
        event('Normal', 'Starting', `${action.restart ? 'restarting' : 'starting'} kernel ${c.kernel} with ${c.memoryBytes / 2 ** 20} MiB and ${c.disks.length} disk(s)`);
        states.startRequested(c.id, this.#deps.now().getTime());
        try {
          await rt.start(c);
        } catch (error) {
          states.takeStartRequest(c.id);
          // Not a failure to retry: the exit is recorded, and the status (KernelIncompatible)
          // and its Event come from it.
          if (error instanceof RuntimeError && error.code === 'kernel-incompatible') return;
          throw error;
        }
        const memory = states.of(key);
        if (action.restart) memory.restartCount = (memory.restartCount ?? 0) + 1;
        memory.acknowledgedExitAt = undefined;
        return;
      }
      case 'pause':
        metrics?.pauseSeconds.observe(await secondsOf(() => rt.pause(action.id)));
        event('Normal', 'Paused', 'the guest is paused (mconsole stop)');
        return;
      case 'resume':
        metrics?.resumeSeconds.observe(await secondsOf(() => rt.resume(action.id)));
        event('Normal', 'Resumed', 'the guest is running again (mconsole go)');
        return;
      case 'stop': {
        const why = {
          desired: 'state is Stopped', deleting: 'the machine is being deleted', orphan: 'its object is gone',
          restart: `a restart was asked for (${RESTART_REQUEST_ANNOTATION})`, drain: 'the node is being drained',
        }[action.reason];
        event('Normal', 'Stopping', `shutting the guest down (${why}): ctrl-alt-del, then halt after ${Math.round(action.gracePeriodMs / 1000)} s`);
        this.#beginStop(action, key, event, ctx.log);
        return;
      }
      case 'remove':
        await rt.remove(action.id);
        this.#disksReleased();
        ctx.log.info({ id: action.id }, 'removed the machine\'s jail and private files (readWrite disks kept)');
        return;
      case 'attachDisk': {
        const d = await rt.attachDisk(action.id, action.disk);
        event('Normal', 'DiskAttached', `${d.name} attached: ${d.image} (${d.mode})`);
        return;
      }
      case 'detachDisk':
        await rt.detachDisk(action.id, action.name);
        this.#disksReleased();
        event('Normal', 'DiskDetached', `${action.name} detached`);
        return;
      case 'attachInterface': {
        const i = await rt.attachInterface(action.id, action.iface);
        event('Normal', 'InterfaceAttached', `${i.name} attached: ${i.transport}, MAC ${i.mac}`);
        return;
      }
      case 'detachInterface':
        await rt.detachInterface(action.id, action.name);
        event('Normal', 'InterfaceDetached', `${action.name} detached`);
        return;
      case 'backup': {
        const retain = machine?.spec.backup?.retain ?? DEFAULT_RETAIN;
        const filed = await runBackup(rt, action.id, this.#deps.backupDir, key, retain, this.#deps.now());
        const time = filed.result.finishedAt.toISOString();
        const memory = states.of(key);
        if (filed.result.error === undefined) {
          memory.lastBackup = { time, result: 'Succeeded', location: filed.location };
          const bytes = filed.result.files.reduce((n, f) => n + f.bytes, 0);
          event('Normal', 'BackupSucceeded', `${filed.result.files.length} file(s), ${bytes} bytes, to ${filed.location} (guest paused ${filed.result.pausedMs} ms)`);
        } else {
          memory.lastBackup = { time, result: 'Failed', location: filed.location, message: filed.result.error };
          event('Warning', 'BackupFailed', `backup failed (the guest was resumed): ${filed.result.error}`);
        }
        return;
      }
    }
  }

  /**
   * Runs one stop to its end beside the workers, then reports it and hands the key back to the
   * controller. A stop that fails is reported the same way; the next pass sees the machine as
   * the runtime left it.
   */
  #beginStop(action: Extract<Action, { type: 'stop' }>, key: MachineKey, event: (type: EventType, reason: string, message: string) => void, log: Logger): void {
    const { runtime, states } = this.#deps;
    if (!states.beginStop(action.id, key)) return;
    void runtime.stop(action.id, { gracePeriodMs: action.gracePeriodMs }).then(
      () => {
        const exit = runtime.get(action.id)?.exit;
        // Asked for (state Stopped, or a restart): the next pass starts it again only if wanted,
        // and never counts it as a crash.
        const memory = states.peek(key);
        if ((action.reason === 'desired' || action.reason === 'restart') && exit && memory) memory.acknowledgedExitAt = exit.at.getTime();
        this.#disksReleased();
        event('Normal', 'Stopped', exit ? `the guest is down: ${describeExit(exit)}` : 'the guest is down');
      },
      (error: unknown) => {
        log.warn({ err: errorText(error) }, 'stop failed');
        event('Warning', 'Failed', `stop failed: ${errorText(error)}`);
      },
    ).finally(() => {
      states.endStop(action.id);
      this.#stopDone(key);
    });
  }
}

/** How long an operation took, in seconds (for the latency histograms). */
async function secondsOf(operation: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await operation();
  return (performance.now() - t0) / 1000;
}
