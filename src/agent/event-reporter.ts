// Events, from one place. A pass reports what it did (the executor), what changed since the last
// report (transitions: an invalid spec, a disk in use, a crash loop), and a failure once per
// distinct message; the controller reports what the runtime saw (booted, panic, adopted). Each
// transition is reported once: the store remembers what was said (machine-states.ts). Recording
// an Event never fails a pass: a lost Event is logged, and the guest is left as it is.
import type { Logger } from 'pino';
import type { UmlMachine, UmlMachineStatus } from '../api/types.ts';
import { errorText } from '../runtime/errors.ts';
import type { MachineSnapshot } from '../runtime/types.ts';
import type { MachineStates } from './machine-states.ts';
import { keyOf, type MachineKey } from './object-key.ts';
import type { DesiredMachine, Plan } from './plan.ts';
import type { EventType, MachineSource } from './source.ts';
import { conditionOf, describeSpecErrors } from './status.ts';

export class EventReporter {
  readonly #source: MachineSource;
  readonly #states: MachineStates;
  readonly #logger: Logger;

  constructor(deps: { source: MachineSource; states: MachineStates; logger: Logger }) {
    this.#source = deps.source;
    this.#states = deps.states;
    this.#logger = deps.logger;
  }

  /** An Event about the machine; with no object (an orphan), a line in the log instead. */
  record(machine: UmlMachine | undefined, type: EventType, reason: string, message: string, key?: MachineKey): void {
    if (!machine) {
      this.#logger.info({ machine: key, reason }, message);
      return;
    }
    try {
      this.#source.event(machine, type, reason, message);
    } catch (error) {
      this.#logger.warn({ machine: keyOf(machine), reason, err: errorText(error) }, 'recording an Event failed');
    }
  }

  /** An Event about the key's object as the source has it now. */
  recordFor(key: MachineKey, type: EventType, reason: string, message: string): void {
    this.record(this.#source.get(key), type, reason, message, key);
  }

  /** A pass's failure, once per distinct message (a retry that fails alike says nothing new). */
  failure(key: MachineKey, machine: UmlMachine | undefined, failure: { what: string; error: unknown } | undefined): void {
    const memory = this.#states.of(key);
    if (failure === undefined) {
      memory.failureReported = undefined;
      return;
    }
    if (!machine) return;
    const message = errorText(failure.error);
    if (memory.failureReported !== message) this.record(machine, 'Warning', 'Failed', failure.what === 'writing status' ? message : `${failure.what} failed: ${message}`);
    memory.failureReported = message;
  }

  /** Events that come from comparing this pass with what was reported before. */
  transitions(key: MachineKey, machine: UmlMachine, desired: DesiredMachine, decided: Plan, status: UmlMachineStatus, actual: MachineSnapshot | undefined): void {
    const memory = this.#states.of(key);
    if (!desired.spec.valid) {
      const message = describeSpecErrors(desired.spec.errors);
      const previous = conditionOf(machine.status, 'SpecValid');
      if (memory.invalidSpecReported !== message && !(previous?.status === 'False' && previous.message === message)) {
        this.record(machine, 'Warning', 'InvalidSpec', `${message}${status.pid !== undefined ? ' (the running guest is left as it is)' : ''}`);
      }
      memory.invalidSpecReported = message;
    } else {
      memory.invalidSpecReported = undefined;
    }
    if (decided.devicesPendingReason === 'DiskInUse' && decided.devicesPending !== undefined) {
      if (memory.diskInUseReported !== decided.devicesPending) this.record(machine, 'Warning', 'DiskInUse', decided.devicesPending);
      memory.diskInUseReported = decided.devicesPending;
    } else {
      memory.diskInUseReported = undefined;
    }
    if (decided.waiting?.reason === 'KernelIncompatible') {
      const exitAt = actual?.exit?.at.getTime();
      if (exitAt !== undefined && memory.incompatibleReportedFor !== exitAt) {
        memory.incompatibleReportedFor = exitAt;
        this.record(machine, 'Warning', 'KernelIncompatible', decided.waiting.message);
      }
    }
    if (decided.waiting?.reason === 'BackOff' && memory.backoff && memory.backoffReportedFor !== memory.backoff.exitAt) {
      memory.backoffReportedFor = memory.backoff.exitAt;
      this.record(machine, 'Warning', 'BackOff', decided.waiting.message);
    }
  }
}
