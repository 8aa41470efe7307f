// Which source events are worth a pass, as controller-runtime's predicates decide it. The one
// the controller needs: a change that is only the echo of the agent's own status write (the
// object as the last pass saw it, status aside). A key backing off after a failure waits for its
// timer on such an echo, instead of retrying at once on every write of its own error.
import type { UmlMachine } from '../api/types.ts';
import type { MachineStates } from './machine-states.ts';
import type { MachineKey } from './object-key.ts';
import { stableJson } from './plan.ts';

/** What of an object a pass acts on: all of it but its status. */
export function objectFingerprint(machine: UmlMachine | undefined): string {
  if (!machine) return 'none';
  const { uid, generation, deletionTimestamp, finalizers, labels, annotations } = machine.metadata;
  return stableJson({ spec: machine.spec, uid, generation, deletionTimestamp, finalizers, labels, annotations });
}

/** True when the object differs from what the last pass saw only in its status, or not at all. */
export function unchangedSinceLastPass(states: MachineStates, key: MachineKey, machine: UmlMachine | undefined): boolean {
  const seen = states.peek(key)?.objectSeen;
  return seen !== undefined && seen === objectFingerprint(machine);
}
