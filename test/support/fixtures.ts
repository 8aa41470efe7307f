// The one UmlMachine fixture: the object's shape (apiVersion, kind, metadata, spec) written once.
// Each test file keeps its own defaults (its node, memory, disks) in a one-line helper of its
// own; what a UmlMachine looks like is here.
import type { UmlMachine } from '../../src/api/types.ts';

export interface MachineFixture {
  name: string;
  /** Left out of metadata when undefined (a manifest may name none). */
  namespace?: string;
  /** The API version's name (default v1alpha1, the CRD's storage version). */
  version?: string;
  metadata?: Record<string, unknown>;
  spec?: Record<string, unknown>;
  status?: UmlMachine['status'];
}

export function umlMachine(f: MachineFixture): UmlMachine {
  return {
    // Another version is for tests of what the API server does with it (the emulator's).
    apiVersion: `umlmon.io/${f.version ?? 'v1alpha1'}` as UmlMachine['apiVersion'],
    kind: 'UmlMachine',
    metadata: { name: f.name, ...(f.namespace !== undefined ? { namespace: f.namespace } : {}), ...f.metadata },
    spec: { ...f.spec } as unknown as UmlMachine['spec'],
    ...(f.status ? { status: f.status } : {}),
  };
}

/** The same as a manifest's text: JSON, which is YAML. */
export function umlMachineJson(f: MachineFixture): string {
  return JSON.stringify(umlMachine(f));
}
