// Where desired machines come from, and where their status and Events go. Two
// implementations (a Kubernetes informer filtered to this node, a directory of YAML files) sit
// behind this one interface; the reconciler does not know which one it has.
import type { UmlMachine, UmlMachineStatus } from '../api/types.ts';

import type { MachineKey } from './object-key.ts';
export { keyOf, type MachineKey } from './object-key.ts';

export type EventType = 'Normal' | 'Warning';

/**
 * The object no longer exists where the source keeps it (HTTP 404, a removed file). Writing
 * its status is then pointless, not a failure: the deletion reaches the reconciler through the
 * watch on its own.
 */
export class ObjectGoneError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ObjectGoneError';
  }
}

export interface MachineSource {
  /** A word for logs: "kubernetes" or "directory". */
  readonly kind: string;
  /**
   * Starts watching and calls onChange(key) for every add, update and delete (also for objects
   * that fail to parse: get() then returns them with whatever could be read, or undefined).
   * Resolves once the initial list is in the cache, so that a reconcile never mistakes a
   * cache still filling for machines that were deleted.
   */
  start(onChange: (key: MachineKey) => void): Promise<void>;
  /** True once the initial list is cached; false again while relisting after a 410 Gone. */
  synced(): boolean;
  /** The cached object, as the API server (or the file) last showed it. */
  get(key: MachineKey): UmlMachine | undefined;
  list(): UmlMachine[];
  /**
   * Writes status: a merge patch on the status subresource, or `<name>.status.yaml`. Rejects
   * with ObjectGoneError when the object is gone.
   */
  patchStatus(machine: UmlMachine, status: UmlMachineStatus): Promise<void>;
  /** Adds or removes the agent's finalizer (no-ops where the source has no finalizers). */
  ensureFinalizer(machine: UmlMachine, present: boolean): Promise<void>;
  /** Records an Event about the machine (events.k8s.io/v1 with series, or the agent's log). */
  event(machine: UmlMachine, type: EventType, reason: string, message: string): void;
  stop(): Promise<void>;
}
