// reconcile(key): one level-triggered pass for one machine. Reads desired (the source's cached
// object, validated) and actual (the runtime's view), asks plan() what to do, does it through
// the runtime, then writes status if it changed and records Events for what happened.
//
// Three outcomes, as controller-runtime has them:
//   { kind: 'done' }                       nothing more to do until something changes
//   { kind: 'requeueAfter', ms }           look again later (a timer, not a failure)
//   throws                                 retry with per-key exponential backoff
//   throws TerminalError                   not retried until the object changes
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FINALIZER, type Phase, type UmlMachine, type UmlMachineStatus } from '../api/types.ts';
import { validateMachine, type ValidationLimits } from '../api/validate.ts';
import { RuntimeError, errorText } from '../runtime/errors.ts';
import { imageHoldersOf } from '../runtime/image-use.ts';
import type { MachineSnapshot, Runtime } from '../runtime/types.ts';
import { DEFAULT_RETAIN, runBackup } from './backups.ts';
import type { CoreMetrics } from './core-metrics.ts';
import {
  gracePeriodMsFromLabels,
  gracePeriodSecondsOf,
  keyFromLabels,
  machineConfigFor,
  machineIdOf,
  type KernelEntry,
} from './machine-config.ts';
import { describeExit, plan, stableJson, type Action, type DesiredMachine, type Plan, type RestartBackoff } from './plan.ts';
import { ObjectGoneError, type EventType, type MachineKey, type MachineSource } from './source.ts';
import { buildStatus, conditionOf, describeSpecErrors, statusEqual, statusPatch } from './status.ts';
import { keyOf } from './object-key.ts';

export type ReconcileResult = { kind: 'done' } | { kind: 'requeueAfter'; ms: number };

/** An error that retrying cannot fix (the spec asks for something this node cannot do). */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export interface ReconcilerOptions {
  nodeName: string;
  imageRoot: string;
  backupDir: string;
  kernels: Record<string, KernelEntry>;
  defaultKernelArgs: string[];
  memory: { minBytes: number; maxBytes: number; defaultBytes: number };
}

export interface ReconcilerDeps {
  source: MachineSource;
  runtime: Runtime;
  logger: Logger;
  metrics?: CoreMetrics;
  now?: () => Date;
}

/** Set by `umlmon restart` / `kubectl umlmon restart` (RFC 3339): restart the guest once (plan.ts). */
export const RESTART_REQUEST_ANNOTATION = 'umlmon.io/restart-requested-at';
/** Set by `umlmon backup` / `kubectl umlmon backup`: one backup now, besides any schedule. */
export const BACKUP_REQUEST_ANNOTATION = 'umlmon.io/backup-requested-at';

/** An annotation's RFC 3339 time in ms, or undefined when absent or not a time. */
export function requestTime(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : undefined;
}

/** Pure: a backup request is due when its time has come and no backup ran since it was made. */
export function backupRequestDue(value: string | undefined, lastBackupTime: string | undefined, now: number): boolean {
  const asked = requestTime(value);
  if (asked === undefined || asked > now) return false;
  const last = lastBackupTime !== undefined ? Date.parse(lastBackupTime) : Number.NaN;
  return !(Number.isFinite(last) && last >= asked);
}

/** What the reconciler remembers about a key between passes (lost on restart, rebuilt from status). */
interface KeyMemory {
  backoff?: RestartBackoff;
  restartCount?: number;
  /** exit.at (ms) of an exit the user asked for (state Stopped, or our stop). */
  acknowledgedExitAt?: number;
  backupDue?: boolean;
  /** The umlmon.io/backup-requested-at value already acted on (a failed one is not retried). */
  backupRequestHandled?: string;
  lastBackup?: UmlMachineStatus['lastBackup'];
  phase?: Phase;
  /** The InvalidSpec message already reported, so that repeats are not new Events. */
  invalidSpecReported?: string;
  /** The crash already reported as BackOff. */
  backoffReportedFor?: number;
  /** The exit already reported as KernelIncompatible. */
  incompatibleReportedFor?: number;
  /** The DiskInUse message already reported; set while the machine waits for a disk. */
  diskInUseReported?: string;
  /**
   * The uid whose finalizer this agent already added. Sources without finalizers (a directory)
   * never show it; remembering it keeps every pass from asking again.
   */
  finalizerAddedFor?: string;
  /** The last action failure reported as an Event, so that retries do not repeat it. */
  failureReported?: string;
  /**
   * What the object and its machines looked like when a pass ended in a terminal error. Until
   * that changes, passes do nothing: our own status write echoing back from the watch must not
   * count as a change.
   */
  terminalAt?: string;
  /** The object (not its status) as the last pass saw it. */
  objectSeen?: string;
}

const DEVICE_ACTIONS = new Set<Action['type']>(['attachDisk', 'detachDisk', 'attachInterface', 'detachInterface']);

/**
 * A guest still stopping this long after the stop began has its status say Stopping (its
 * Stopping Event is immediate). Long enough that the guests of a drain, a few seconds for 100
 * at once, go from Running to Stopped in one write each: at 1 s, a drain of 100 guests on the
 * real API server took 6.2 s instead of 3.9 s (a patch and its watch echo per guest more).
 */
const STOPPING_STATUS_AFTER_MS = 5_000;

/** What ended a pass early: an action of the plan, or writing the status. */
interface Failure {
  error: unknown;
  /** The action's type, or "writing status". */
  what: string;
  /** A device action: the error belongs to DevicesSynced, not Ready. */
  devices?: boolean;
}

export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #source: MachineSource;
  readonly #runtime: Runtime;
  readonly #logger: Logger;
  readonly #metrics: CoreMetrics | undefined;
  readonly #now: () => Date;
  readonly #memory = new Map<MachineKey, KeyMemory>();
  /** When each machine id was asked to start, for the boot-time histogram. */
  readonly #startRequested = new Map<string, number>();
  /**
   * The stops in flight, by machine id. A stop runs beside the workers, not in one: it takes
   * up to a grace period, and a hundred guests stopping at once (a drain) would otherwise wait
   * for each other in batches of the worker count. Until it has finished (the kernel gone, its
   * process group and cgroup with it) the machine counts as stopping, so no pass starts it
   * again under the stop's cleanup.
   */
  readonly #stops = new Map<string, { key: MachineKey }>();
  /** The drain's deadline (ms since the epoch) while the node is being drained. */
  #drainDeadline: number | undefined;
  #disksReleased: () => void = () => {};
  #stopDone: (key: MachineKey) => void = () => {};

  constructor(options: ReconcilerOptions, deps: ReconcilerDeps) {
    this.#options = options;
    this.#source = deps.source;
    this.#runtime = deps.runtime;
    this.#logger = deps.logger;
    this.#metrics = deps.metrics;
    this.#now = deps.now ?? (() => new Date());
  }

  /** Called when a machine lets go of its disks (stopped, removed, a disk detached). */
  onDisksReleased(listener: () => void): void {
    this.#disksReleased = listener;
  }

  /** Called when a stop has finished, well or not: the key's next pass acts on it. */
  onStopDone(listener: (key: MachineKey) => void): void {
    this.#stopDone = listener;
  }

  /** Stops in flight now. */
  stopsInFlight(): number {
    return this.#stops.size;
  }

  /** Keys whose machine waits for a disk another machine has (condition DevicesSynced, DiskInUse). */
  keysWaitingForDisks(): MachineKey[] {
    return [...this.#memory.entries()].filter(([, m]) => m.diskInUseReported !== undefined).map(([key]) => key);
  }

  /** From now on every pass shuts its machine down (plan.ts, planDrain), no grace period past the deadline. */
  beginDrain(deadline: number): void {
    this.#drainDeadline = deadline;
  }

  isDraining(): boolean {
    return this.#drainDeadline !== undefined;
  }

  /** A scheduled backup is due: the next pass runs it. */
  markBackupDue(key: MachineKey): void {
    this.#remember(key).backupDue = true;
  }

  /** True while the agent itself is stopping this machine (its exit is expected). */
  isStoppingByAgent(id: string): boolean {
    return this.#stops.has(id);
  }

  /** The runtime's view, except that a machine whose stop has not finished is still stopping. */
  #withStops(m: MachineSnapshot | undefined): MachineSnapshot | undefined {
    return m !== undefined && m.state === 'exited' && this.#stops.has(m.id) ? { ...m, state: 'stopping' } : m;
  }

  /** The time a start of this machine was requested, consumed by the first 'booted' event. */
  takeStartRequest(id: string): number | undefined {
    const at = this.#startRequested.get(id);
    this.#startRequested.delete(id);
    return at;
  }

  phases(): Phase[] {
    return [...this.#memory.values()].flatMap((m) => (m.phase ? [m.phase] : []));
  }

  /** The runtime machines that belong to a key: by label, or by the object's umid. */
  machinesOf(key: MachineKey, id: string | undefined, onNode: MachineSnapshot[] = this.#runtime.list()): MachineSnapshot[] {
    return onNode.filter((m) => m.id === id || keyFromLabels(m.config.labels) === key);
  }

  /** Validation as the API server would do it, plus this node's kernels, memory bounds and images. */
  desiredOf(machine: UmlMachine): DesiredMachine {
    const id = machineIdOf(machine);
    const deleting = machine.metadata.deletionTimestamp !== undefined;
    const hasFinalizer = machine.metadata.finalizers?.includes(FINALIZER) ?? false;
    const limits: ValidationLimits = {
      kernels: Object.keys(this.#options.kernels),
      memoryMinBytes: this.#options.memory.minBytes,
      memoryMaxBytes: this.#options.memory.maxBytes,
      imageExists: (image) => isFile(join(this.#options.imageRoot, image)),
    };
    const result = validateMachine(structuredClone(machine), limits);
    if (!result.ok) return { id, deleting, hasFinalizer, spec: { valid: false, errors: result.errors } };
    const valid = result.machine;
    if (valid.spec.memory === undefined) valid.spec.memory = String(this.#options.memory.defaultBytes);
    const config = machineConfigFor(valid, {
      kernels: this.#options.kernels,
      defaultKernelArgs: this.#options.defaultKernelArgs,
      defaultMemoryBytes: this.#options.memory.defaultBytes,
    });
    return {
      id,
      deleting,
      hasFinalizer,
      spec: {
        valid: true,
        config,
        state: valid.spec.state ?? 'Running',
        restartPolicy: valid.spec.restartPolicy ?? 'Always',
        gracePeriodMs: gracePeriodSecondsOf(valid) * 1000,
      },
    };
  }

  async reconcile(key: MachineKey): Promise<ReconcileResult> {
    const machine = this.#source.get(key);
    const memory = this.#remember(key);
    const log = this.#logger.child({ machine: key });

    let desired: DesiredMachine | undefined;
    if (machine) {
      try {
        desired = this.desiredOf(machine);
      } catch (error) {
        // No uid, or the kernel table changed under a valid spec: nothing to act on safely.
        throw new TerminalError(`machine ${key}: cannot derive its runtime config: ${errorText(error)}`, { cause: error });
      }
    }
    if (desired && !desired.hasFinalizer && machine?.metadata.uid !== undefined && memory.finalizerAddedFor === machine.metadata.uid) {
      desired = { ...desired, hasFinalizer: true };
    }
    // One snapshot of the node per pass: this key's machines, and the others' disks.
    const onNode = this.#runtime.list().map((m) => this.#withStops(m)!);
    const machines = this.machinesOf(key, desired?.id, onNode);
    if (memory.terminalAt !== undefined && memory.terminalAt === this.#fingerprint(key, desired?.id)) return { kind: 'done' };
    memory.terminalAt = undefined;
    const actual = desired ? machines.find((m) => m.id === desired.id) : undefined;
    const strays = desired ? machines.filter((m) => m.id !== desired.id) : machines.slice(1);
    const orphan = desired ? undefined : machines[0];

    const exitAt = actual?.state === 'exited' ? actual.exit?.at.getTime() : undefined;
    if (exitAt !== undefined && desired?.spec.valid && desired.spec.state === 'Stopped') memory.acknowledgedExitAt = exitAt;
    const exitAcknowledged =
      exitAt !== undefined &&
      (memory.acknowledgedExitAt === exitAt ||
        // After an agent restart: the status we wrote says the user had it stopped.
        (memory.acknowledgedExitAt === undefined && conditionOf(machine?.status, 'Ready')?.reason === 'Stopped'));
    if (memory.restartCount === undefined) memory.restartCount = machine?.status?.restartCount ?? 0;
    const now = this.#now().getTime();
    const backupRequest = machine?.metadata.annotations?.[BACKUP_REQUEST_ANNOTATION];
    const backupAsked = backupRequestDue(backupRequest, memory.lastBackup?.time ?? machine?.status?.lastBackup?.time, now) && memory.backupRequestHandled !== backupRequest;
    if (backupAsked) memory.backupRequestHandled = backupRequest;
    const backupDue = memory.backupDue === true || backupAsked;
    memory.backupDue = false;
    const restartRequestedAt = requestTime(machine?.metadata.annotations?.[RESTART_REQUEST_ANNOTATION]);

    const decided = plan({
      now,
      ...(restartRequestedAt !== undefined ? { restartRequestedAt } : {}),
      sourceSynced: this.#source.synced(),
      draining: this.#drainDeadline !== undefined,
      ...(this.#drainDeadline !== undefined ? { drainDeadline: this.#drainDeadline } : {}),
      desired,
      actual: actual ?? orphan,
      strays,
      backoff: memory.backoff,
      exitAcknowledged,
      backupDue,
      orphanGracePeriodMs: gracePeriodMsFromLabels((orphan ?? strays[0])?.config.labels),
      kernelUnchanged: actual?.state === 'exited' && actual.exit?.kernelIncompatible !== undefined ? kernelUnchangedSince(actual) : undefined,
      imageHolders: imageHoldersOf(onNode.filter((m) => !machines.some((own) => own.id === m.id))),
    });
    if (decided.backoff) memory.backoff = decided.backoff;
    if (decided.clearBackoff) memory.backoff = undefined;
    if (decided.actions.length > 0) log.debug({ actions: decided.actions.map((a) => a.type) }, 'plan');
    if (decided.backupSkipped && machine) this.#event(machine, 'Warning', 'BackupFailed', `backup skipped: ${decided.backupSkipped}`);

    let failure: Failure | undefined;
    let finalizerRemoved = false;
    let stopBegun = false;
    for (const action of decided.actions) {
      try {
        await this.#execute(action, key, machine, memory, log);
        if (action.type === 'removeFinalizer') finalizerRemoved = true;
      } catch (error) {
        failure = { error, what: action.type, devices: DEVICE_ACTIONS.has(action.type) };
        break;
      }
      // A stop has only begun: what the plan has after it (remove, the finalizer) is the next
      // pass's, once the stop has finished and told the controller.
      if (action.type === 'stop') {
        stopBegun = true;
        break;
      }
    }

    if (failure && machine) {
      const message = errorText(failure.error);
      if (memory.failureReported !== message) this.#event(machine, 'Warning', 'Failed', failure.what === 'writing status' ? message : `${failure.what} failed: ${message}`);
      memory.failureReported = message;
    } else if (!failure) {
      memory.failureReported = undefined;
    }

    if (!machine || !desired) {
      // The object is gone: forget the key once nothing of it is left on the node.
      if (this.machinesOf(key, undefined).length === 0) this.#memory.delete(key);
      else memory.phase = undefined;
      return this.#finish(key, decided, failure, memory, desired?.id);
    }

    if (stopBegun && !failure && this.#stops.has(desired.id)) {
      // Most guests are down within a second of ctrl-alt-del: their status goes from Running to
      // Stopped in one write, when the stop's end queues the key. One that takes longer shows
      // Stopping from the pass STOPPING_STATUS_AFTER_MS from now. (A drain wrote two each.)
      return this.#finish(key, { ...decided, requeueAfterMs: STOPPING_STATUS_AFTER_MS }, failure, memory, desired.id);
    }

    if (!finalizerRemoved) {
      const after = this.#withStops(this.#runtime.get(desired.id));
      const status = buildStatus({
        now: this.#now(),
        nodeName: this.#options.nodeName,
        machine,
        desired,
        actual: after,
        plan: decided,
        exitAcknowledged: exitAcknowledged || (after?.state === 'exited' && after.exit?.at.getTime() === memory.acknowledgedExitAt),
        restartCount: memory.restartCount ?? 0,
        ...(memory.lastBackup ? { lastBackup: memory.lastBackup } : {}),
        ...(failure ? { error: { message: errorText(failure.error), devices: failure.devices === true } } : {}),
      });
      memory.phase = status.phase;
      this.#reportTransitions(machine, desired, decided, memory, status, after);
      if (!statusEqual(machine.status, status)) {
        try {
          await this.#source.patchStatus(machine, statusPatch(machine.status, status));
        } catch (error) {
          if (error instanceof ObjectGoneError) {
            // Deleted while this pass ran: the deletion itself is the next pass's business.
            log.debug({ err: errorText(error) }, 'the object is gone; status not written');
          } else if (!failure) {
            // The sources' errors name the machine and say that writing status failed.
            failure = { error, what: 'writing status' };
          }
        }
      }
    } else {
      this.#memory.delete(key);
    }
    return this.#finish(key, decided, failure, memory, desired?.id);
  }

  /**
   * True when the object differs from what the last pass saw only in its status (or not at
   * all): the echo of our own status write. The controller lets a key in backoff wait for its
   * timer instead of retrying on such an echo.
   */
  objectUnchangedSinceLastPass(key: MachineKey): boolean {
    const seen = this.#memory.get(key)?.objectSeen;
    return seen !== undefined && seen === objectFingerprint(this.#source.get(key));
  }

  /**
   * Runs one stop to its end beside the workers (see #stops), then reports it and hands the key
   * back to the controller. A stop that fails is reported the same way; the next pass sees the
   * machine as the runtime left it.
   */
  #beginStop(action: Extract<Action, { type: 'stop' }>, key: MachineKey, event: (type: EventType, reason: string, message: string) => void, log: Logger): void {
    if (this.#stops.has(action.id)) return;
    this.#stops.set(action.id, { key });
    void this.#runtime.stop(action.id, { gracePeriodMs: action.gracePeriodMs }).then(
      () => {
        const exit = this.#runtime.get(action.id)?.exit;
        // Asked for (state Stopped, or a restart): the next pass starts it again only if wanted,
        // and never counts it as a crash.
        const memory = this.#memory.get(key);
        if ((action.reason === 'desired' || action.reason === 'restart') && exit && memory) memory.acknowledgedExitAt = exit.at.getTime();
        this.#disksReleased();
        event('Normal', 'Stopped', exit ? `the guest is down: ${describeExit(exit)}` : 'the guest is down');
      },
      (error: unknown) => {
        log.warn({ err: errorText(error) }, 'stop failed');
        event('Warning', 'Failed', `stop failed: ${errorText(error)}`);
      },
    ).finally(() => {
      this.#stops.delete(action.id);
      this.#stopDone(key);
    });
  }

  /** The object and its machines, as far as a terminal error depends on them. */
  #fingerprint(key: MachineKey, id: string | undefined): string {
    const machine = this.#source.get(key);
    return stableJson({
      spec: machine?.spec,
      meta: machine ? { uid: machine.metadata.uid, generation: machine.metadata.generation, deletion: machine.metadata.deletionTimestamp, finalizers: machine.metadata.finalizers } : undefined,
      machines: this.machinesOf(key, id).map((m) => [m.id, m.state, m.exit?.at.getTime()]),
    });
  }

  #finish(key: MachineKey, decided: Plan, failure: Failure | undefined, memory: KeyMemory, id: string | undefined): ReconcileResult {
    this.#metrics?.setPhases(this.phases());
    memory.objectSeen = objectFingerprint(this.#source.get(key));
    if (failure) {
      const { error } = failure;
      const terminal =
        error instanceof TerminalError ? error
        : error instanceof RuntimeError && (error.code === 'invalid-config' || error.code === 'unsupported') ? new TerminalError(error.message, { cause: error })
        : undefined;
      if (terminal) {
        memory.terminalAt = this.#fingerprint(key, id);
        throw terminal;
      }
      throw error instanceof Error ? error : new Error(`machine ${key}: ${String(error)}`);
    }
    if (decided.requeueAfterMs !== undefined) return { kind: 'requeueAfter', ms: decided.requeueAfterMs };
    return { kind: 'done' };
  }

  async #execute(action: Action, key: MachineKey, machine: UmlMachine | undefined, memory: KeyMemory, log: Logger): Promise<void> {
    const rt = this.#runtime;
    const event = (type: EventType, reason: string, message: string): void => {
      if (machine) this.#event(machine, type, reason, message);
      else log.info({ reason }, message);
    };
    switch (action.type) {
      case 'addFinalizer':
        if (machine) {
          await this.#source.ensureFinalizer(machine, true);
          memory.finalizerAddedFor = machine.metadata.uid;
        }
        return;
      case 'removeFinalizer':
        if (machine) await this.#source.ensureFinalizer(machine, false);
        return;
      case 'start': {
        const c = action.config;
        event('Normal', 'Starting', `${action.restart ? 'restarting' : 'starting'} kernel ${c.kernel} with ${c.memoryBytes / 2 ** 20} MiB and ${c.disks.length} disk(s)`);
        this.#startRequested.set(c.id, Date.now());
        try {
          await rt.start(c);
        } catch (error) {
          this.#startRequested.delete(c.id);
          // Not a failure to retry: the exit is recorded, and the status (KernelIncompatible)
          // and its Event come from it.
          if (error instanceof RuntimeError && error.code === 'kernel-incompatible') return;
          throw error;
        }
        if (action.restart) memory.restartCount = (memory.restartCount ?? 0) + 1;
        memory.acknowledgedExitAt = undefined;
        return;
      }
      case 'pause': {
        const t0 = performance.now();
        await rt.pause(action.id);
        this.#metrics?.pauseSeconds.observe((performance.now() - t0) / 1000);
        event('Normal', 'Paused', 'the guest is paused (mconsole stop)');
        return;
      }
      case 'resume': {
        const t0 = performance.now();
        await rt.resume(action.id);
        this.#metrics?.resumeSeconds.observe((performance.now() - t0) / 1000);
        event('Normal', 'Resumed', 'the guest is running again (mconsole go)');
        return;
      }
      case 'stop': {
        const why = {
          desired: 'state is Stopped', deleting: 'the machine is being deleted', orphan: 'its object is gone',
          restart: `a restart was asked for (${RESTART_REQUEST_ANNOTATION})`, drain: 'the node is being drained',
        }[action.reason];
        event('Normal', 'Stopping', `shutting the guest down (${why}): ctrl-alt-del, then halt after ${Math.round(action.gracePeriodMs / 1000)} s`);
        this.#beginStop(action, key, event, log);
        return;
      }
      case 'remove':
        await rt.remove(action.id);
        this.#disksReleased();
        log.info({ id: action.id }, 'removed the machine\'s jail and private files (readWrite disks kept)');
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
        const filed = await runBackup(rt, action.id, this.#options.backupDir, key, retain, this.#now());
        const time = filed.result.finishedAt.toISOString();
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

  /** Events that come from comparing this pass with what was reported before. */
  #reportTransitions(machine: UmlMachine, desired: DesiredMachine, decided: Plan, memory: KeyMemory, status: UmlMachineStatus, actual: MachineSnapshot | undefined): void {
    if (!desired.spec.valid) {
      const message = describeSpecErrors(desired.spec.errors);
      const previous = conditionOf(machine.status, 'SpecValid');
      if (memory.invalidSpecReported !== message && !(previous?.status === 'False' && previous.message === message)) {
        this.#event(machine, 'Warning', 'InvalidSpec', `${message}${status.pid !== undefined ? ' (the running guest is left as it is)' : ''}`);
      }
      memory.invalidSpecReported = message;
    } else {
      memory.invalidSpecReported = undefined;
    }
    if (decided.devicesPendingReason === 'DiskInUse' && decided.devicesPending !== undefined) {
      if (memory.diskInUseReported !== decided.devicesPending) this.#event(machine, 'Warning', 'DiskInUse', decided.devicesPending);
      memory.diskInUseReported = decided.devicesPending;
    } else {
      memory.diskInUseReported = undefined;
    }
    if (decided.waiting?.reason === 'KernelIncompatible') {
      const exitAt = actual?.exit?.at.getTime();
      if (exitAt !== undefined && memory.incompatibleReportedFor !== exitAt) {
        memory.incompatibleReportedFor = exitAt;
        this.#event(machine, 'Warning', 'KernelIncompatible', decided.waiting.message);
      }
    }
    if (decided.waiting?.reason === 'BackOff' && memory.backoff && memory.backoffReportedFor !== memory.backoff.exitAt) {
      memory.backoffReportedFor = memory.backoff.exitAt;
      this.#event(machine, 'Warning', 'BackOff', decided.waiting.message);
    }
  }

  #event(machine: UmlMachine, type: EventType, reason: string, message: string): void {
    try {
      this.#source.event(machine, type, reason, message);
    } catch (error) {
      this.#logger.warn({ machine: keyOf(machine), reason, err: errorText(error) }, 'recording an Event failed');
    }
  }

  #remember(key: MachineKey): KeyMemory {
    let m = this.#memory.get(key);
    if (!m) {
      m = {};
      this.#memory.set(key, m);
    }
    return m;
  }
}

function objectFingerprint(machine: UmlMachine | undefined): string {
  if (!machine) return 'none';
  const { uid, generation, deletionTimestamp, finalizers, labels, annotations } = machine.metadata;
  return stableJson({ spec: machine.spec, uid, generation, deletionTimestamp, finalizers, labels, annotations });
}

/** The kernel file a machine ran has not been replaced since that run started. */
function kernelUnchangedSince(actual: MachineSnapshot): boolean {
  try {
    const st = statSync(actual.config.kernel);
    return actual.startTime === undefined || Math.max(st.mtimeMs, st.ctimeMs) <= actual.startTime.getTime();
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return existsSync(path) && statSync(path).isFile();
  } catch {
    return false;
  }
}
