// reconcile(key): one level-triggered pass for one machine, a short pipeline:
//   observe  desired (the source's cached object, validated) and actual (the runtime's view)
//   plan     plan() decides (pure, plan.ts)
//   execute  the executor carries the actions out (executor.ts)
//   report   the status (pure, status.ts) is written if it changed; Events for transitions
// What a pass remembers for the next one lives in the state store (machine-states.ts).
//
// Three outcomes, as controller-runtime has them:
//   { kind: 'done' }                       nothing more to do until something changes
//   { kind: 'requeueAfter', ms }           look again later (a timer, not a failure)
//   throws                                 retry with per-key exponential backoff
//   throws TerminalError                   not retried until the object changes
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FINALIZER, type UmlMachine } from '../api/types.ts';
import { validateMachine, type ValidationLimits } from '../api/validate.ts';
import { RuntimeError, errorText } from '../runtime/errors.ts';
import { imageHoldersOf, type ImageHolder } from '../runtime/image-use.ts';
import type { MachineSnapshot, Runtime } from '../runtime/types.ts';
import { BACKUP_REQUEST_ANNOTATION, RESTART_REQUEST_ANNOTATION, backupRequestDue, requestTime } from './annotations.ts';
import type { CoreMetrics } from './core-metrics.ts';
import type { EventReporter } from './event-reporter.ts';
import { DEVICE_ACTIONS, type Executor } from './executor.ts';
import {
  gracePeriodMsFromLabels,
  gracePeriodSecondsOf,
  machineConfigFor,
  machineIdOf,
  type KernelEntry,
} from './machine-config.ts';
import type { MachineMemory, MachineStates } from './machine-states.ts';
import { plan, stableJson, type DesiredMachine, type Plan } from './plan.ts';
import { labelsOfKey } from './object-key.ts';
import { objectFingerprint } from './predicates.ts';
import { ObjectGoneError, type MachineKey, type MachineSource } from './source.ts';
import { buildStatus, conditionOf, statusEqual, statusPatch } from './status.ts';

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
  states: MachineStates;
  executor: Executor;
  events: EventReporter;
  logger: Logger;
  metrics?: CoreMetrics;
  now: () => Date;
}

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

/** What a pass observed: the object, what it asks for, and this key's machines on the node. */
interface Observed {
  machine: UmlMachine | undefined;
  desired: DesiredMachine | undefined;
  /** This key's machines: by label, or by the object's umid. */
  machines: MachineSnapshot[];
  actual: MachineSnapshot | undefined;
  strays: MachineSnapshot[];
  orphan: MachineSnapshot | undefined;
  exitAcknowledged: boolean;
}

/** How executing a plan went. */
interface Executed {
  failure: Failure | undefined;
  finalizerRemoved: boolean;
  /** A stop was begun: the plan's later actions are the next pass's. */
  stopBegun: boolean;
}

export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #source: MachineSource;
  readonly #runtime: Runtime;
  readonly #states: MachineStates;
  readonly #executor: Executor;
  readonly #events: EventReporter;
  readonly #logger: Logger;
  readonly #metrics: CoreMetrics | undefined;
  readonly #now: () => Date;
  /** desiredOf's results, by object (read-only: callers copy what they change). */
  readonly #desired = new WeakMap<UmlMachine, { images: string; desired: DesiredMachine }>();

  constructor(options: ReconcilerOptions, deps: ReconcilerDeps) {
    this.#options = options;
    this.#source = deps.source;
    this.#runtime = deps.runtime;
    this.#states = deps.states;
    this.#executor = deps.executor;
    this.#events = deps.events;
    this.#logger = deps.logger;
    this.#metrics = deps.metrics;
    this.#now = deps.now;
  }

  /** The runtime's view, except that a machine whose stop has not finished is still stopping. */
  #withStops(m: MachineSnapshot | undefined): MachineSnapshot | undefined {
    return m !== undefined && m.state === 'exited' && this.#states.isStopping(m.id) ? { ...m, state: 'stopping' } : m;
  }

  /**
   * The runtime machines that belong to a key: by label (the runtime's index), or by the
   * object's umid; as the reconciler sees them (a stop in flight is still stopping).
   */
  machinesOf(key: MachineKey, id: string | undefined): MachineSnapshot[] {
    const machines = this.#runtime.select(labelsOfKey(key));
    const byId = id !== undefined && !machines.some((m) => m.id === id) ? this.#runtime.get(id) : undefined;
    if (byId) machines.push(byId);
    return machines.map((m) => this.#withStops(m)!);
  }

  /** The disks of the node's live machines but these (image-use.ts). */
  #imageHoldersBut(own: MachineSnapshot[]): ImageHolder[] {
    return imageHoldersOf(this.#runtime.list().map((m) => this.#withStops(m)!).filter((m) => !own.some((o) => o.id === m.id)));
  }

  /**
   * Validation as the API server would do it, plus this node's kernels, memory bounds and images.
   * Remembered per object (the source's cache hands out the same object until it changes) and
   * the presence of the images it names: a pass over an unchanged machine validates nothing
   * again, and an image that appears or goes since is seen at the next pass.
   */
  desiredOf(machine: UmlMachine): DesiredMachine {
    const images = imagesPresent(machine, this.#options.imageRoot);
    const known = this.#desired.get(machine);
    if (known && known.images === images) return known.desired;
    const desired = this.#validate(machine);
    this.#desired.set(machine, { images, desired });
    return desired;
  }

  #validate(machine: UmlMachine): DesiredMachine {
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
    const memory = this.#states.of(key);
    const log = this.#logger.child({ machine: key });
    const observed = this.#observe(key, memory);
    if (memory.terminalAt !== undefined && memory.terminalAt === this.#fingerprint(key, observed.desired?.id)) return { kind: 'done' };
    memory.terminalAt = undefined;
    const decided = this.#plan(observed, memory, log);
    const executed = await this.#execute(key, observed, decided, log);
    return this.#report(key, observed, decided, executed, memory, log);
  }

  /** Desired and actual, once per pass: the object, and this key's machines from the runtime's index. */
  #observe(key: MachineKey, memory: MachineMemory): Observed {
    const machine = this.#source.get(key);
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
    const machines = this.machinesOf(key, desired?.id);
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
    return { machine, desired, machines, actual, strays, orphan, exitAcknowledged };
  }

  #plan(o: Observed, memory: MachineMemory, log: Logger): Plan {
    const { machine, desired, actual, orphan, strays, machines } = o;
    const now = this.#now().getTime();
    const backupRequest = machine?.metadata.annotations?.[BACKUP_REQUEST_ANNOTATION];
    const backupAsked = backupRequestDue(backupRequest, memory.lastBackup?.time ?? machine?.status?.lastBackup?.time, now) && memory.backupRequestHandled !== backupRequest;
    if (backupAsked) memory.backupRequestHandled = backupRequest;
    const backupDue = memory.backupDue === true || backupAsked;
    memory.backupDue = false;
    const restartRequestedAt = requestTime(machine?.metadata.annotations?.[RESTART_REQUEST_ANNOTATION]);
    const drainDeadline = this.#states.drainDeadline();

    const decided = plan({
      now,
      ...(restartRequestedAt !== undefined ? { restartRequestedAt } : {}),
      sourceSynced: this.#source.synced(),
      draining: drainDeadline !== undefined,
      ...(drainDeadline !== undefined ? { drainDeadline } : {}),
      desired,
      actual: actual ?? orphan,
      strays,
      backoff: memory.backoff,
      exitAcknowledged: o.exitAcknowledged,
      backupDue,
      orphanGracePeriodMs: gracePeriodMsFromLabels((orphan ?? strays[0])?.config.labels),
      kernelUnchanged: actual?.state === 'exited' && actual.exit?.kernelIncompatible !== undefined ? kernelUnchangedSince(actual) : undefined,
      imageHolders: () => this.#imageHoldersBut(machines),
    });
    if (decided.backoff) memory.backoff = decided.backoff;
    if (decided.clearBackoff) memory.backoff = undefined;
    if (decided.actions.length > 0) log.debug({ actions: decided.actions.map((a) => a.type) }, 'plan');
    if (decided.backupSkipped && machine) this.#events.record(machine, 'Warning', 'BackupFailed', `backup skipped: ${decided.backupSkipped}`);
    return decided;
  }

  /** The plan's actions in order, up to the first failure or a stop (which only begins here). */
  async #execute(key: MachineKey, o: Observed, decided: Plan, log: Logger): Promise<Executed> {
    const executed: Executed = { failure: undefined, finalizerRemoved: false, stopBegun: false };
    for (const action of decided.actions) {
      try {
        await this.#executor.execute(action, { key, machine: o.machine, log });
        if (action.type === 'removeFinalizer') executed.finalizerRemoved = true;
      } catch (error) {
        executed.failure = { error, what: action.type, devices: DEVICE_ACTIONS.has(action.type) };
        break;
      }
      // A stop has only begun: what the plan has after it (remove, the finalizer) is the next
      // pass's, once the stop has finished and told the controller.
      if (action.type === 'stop') {
        executed.stopBegun = true;
        break;
      }
    }
    this.#events.failure(key, o.machine, executed.failure);
    return executed;
  }

  /** The status, built from what the kernel has after the actions, written if it changed. */
  async #report(key: MachineKey, o: Observed, decided: Plan, executed: Executed, memory: MachineMemory, log: Logger): Promise<ReconcileResult> {
    const { machine, desired } = o;
    let { failure } = executed;
    if (!machine || !desired) {
      // The object is gone: forget the key once nothing of it is left on the node.
      if (this.machinesOf(key, undefined).length === 0) this.#states.forget(key);
      else memory.phase = undefined;
      return this.#finish(key, decided, failure, memory, desired?.id);
    }

    if (executed.stopBegun && !failure && this.#states.isStopping(desired.id)) {
      // Most guests are down within a second of ctrl-alt-del: their status goes from Running to
      // Stopped in one write, when the stop's end queues the key. One that takes longer shows
      // Stopping from the pass STOPPING_STATUS_AFTER_MS from now. (A drain wrote two each.)
      return this.#finish(key, { ...decided, requeueAfterMs: STOPPING_STATUS_AFTER_MS }, failure, memory, desired.id);
    }

    if (executed.finalizerRemoved) {
      this.#states.forget(key);
      return this.#finish(key, decided, failure, memory, desired.id);
    }
    const after = this.#withStops(this.#runtime.get(desired.id));
    const status = buildStatus({
      now: this.#now(),
      nodeName: this.#options.nodeName,
      machine,
      desired,
      actual: after,
      plan: decided,
      exitAcknowledged: o.exitAcknowledged || (after?.state === 'exited' && after.exit?.at.getTime() === memory.acknowledgedExitAt),
      restartCount: memory.restartCount ?? 0,
      ...(memory.lastBackup ? { lastBackup: memory.lastBackup } : {}),
      ...(failure ? { error: { message: errorText(failure.error), devices: failure.devices === true } } : {}),
    });
    memory.phase = status.phase;
    this.#events.transitions(key, machine, desired, decided, status, after);
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
    return this.#finish(key, decided, failure, memory, desired.id);
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

  #finish(key: MachineKey, decided: Plan, failure: Failure | undefined, memory: MachineMemory, id: string | undefined): ReconcileResult {
    this.#metrics?.setPhases(this.#states.phases());
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

/** Which of the images a spec names are files now ("a.img:1,b.img:0"), read from a spec of any shape. */
function imagesPresent(machine: UmlMachine, imageRoot: string): string {
  const disks: unknown = (machine.spec as { disks?: unknown } | undefined)?.disks;
  if (!Array.isArray(disks)) return '';
  return disks.map((d: unknown) => {
    const image = (d as { image?: unknown } | null)?.image;
    return typeof image === 'string' ? `${image}:${isFile(join(imageRoot, image)) ? 1 : 0}` : '-';
  }).join(',');
}

function isFile(path: string): boolean {
  try {
    return existsSync(path) && statSync(path).isFile();
  } catch {
    return false;
  }
}
