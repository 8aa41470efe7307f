// The agent's memory of each machine between passes: one owner for it, read and changed only
// through here. The reconciler, the executor, the event reporter and the controller each hold
// this store, not each other's fields. It is lost on restart and rebuilt from what the status
// says (restart count, a Stopped guest, the last backup), as client-go's informers rebuild
// theirs from a list.
import type { Phase, UmlMachineStatus } from '../api/types.ts';
import type { MachineKey } from './object-key.ts';
import type { RestartBackoff } from './plan.ts';

/** What the agent remembers of one key between passes. */
export interface MachineMemory {
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
  /** The object (not its status) as the last pass saw it (predicates.ts). */
  objectSeen?: string;
}

export class MachineStates {
  readonly #byKey = new Map<MachineKey, MachineMemory>();
  /**
   * The stops in flight: machine id → its key. A stop runs beside the workers (executor.ts);
   * until it has finished (the kernel gone, its process group and cgroup with it) the machine
   * counts as stopping, so no pass starts it again under the stop's cleanup.
   */
  readonly #stops = new Map<string, MachineKey>();
  /** When each machine id was asked to start (ms), for the boot-time histogram. */
  readonly #startRequested = new Map<string, number>();
  /** The drain's deadline (ms since the epoch) while the node is being drained. */
  #drainDeadline: number | undefined;

  /** The key's memory, made empty on first use. */
  of(key: MachineKey): MachineMemory {
    let m = this.#byKey.get(key);
    if (!m) {
      m = {};
      this.#byKey.set(key, m);
    }
    return m;
  }

  /** The key's memory if it has any; never makes one. */
  peek(key: MachineKey): MachineMemory | undefined {
    return this.#byKey.get(key);
  }

  /** The object is gone and nothing of it is left on the node. */
  forget(key: MachineKey): void {
    this.#byKey.delete(key);
  }

  phases(): Phase[] {
    return [...this.#byKey.values()].flatMap((m) => (m.phase ? [m.phase] : []));
  }

  /** Keys whose machine waits for a disk another machine has (condition DevicesSynced, DiskInUse). */
  keysWaitingForDisks(): MachineKey[] {
    return [...this.#byKey.entries()].filter(([, m]) => m.diskInUseReported !== undefined).map(([key]) => key);
  }

  /** A scheduled backup is due: the next pass runs it. */
  markBackupDue(key: MachineKey): void {
    this.of(key).backupDue = true;
  }

  // ---- stops ---------------------------------------------------------------------------------

  /** Records a stop as begun; false when one is already in flight for this machine. */
  beginStop(id: string, key: MachineKey): boolean {
    if (this.#stops.has(id)) return false;
    this.#stops.set(id, key);
    return true;
  }

  endStop(id: string): void {
    this.#stops.delete(id);
  }

  /** True while the agent itself is stopping this machine (its exit is expected). */
  isStopping(id: string): boolean {
    return this.#stops.has(id);
  }

  stopsInFlight(): number {
    return this.#stops.size;
  }

  // ---- starts --------------------------------------------------------------------------------

  startRequested(id: string, at: number): void {
    this.#startRequested.set(id, at);
  }

  /** The time a start of this machine was requested, consumed by the first 'booted' event. */
  takeStartRequest(id: string): number | undefined {
    const at = this.#startRequested.get(id);
    this.#startRequested.delete(id);
    return at;
  }

  // ---- drain ---------------------------------------------------------------------------------

  /** From now on every pass shuts its machine down (plan.ts, planDrain), no grace period past the deadline. */
  beginDrain(deadline: number): void {
    this.#drainDeadline = deadline;
  }

  drainDeadline(): number | undefined {
    return this.#drainDeadline;
  }

  isDraining(): boolean {
    return this.#drainDeadline !== undefined;
  }
}
