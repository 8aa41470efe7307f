// A validated UmlMachine, turned into what the runtime starts: resolved kernel path, memory in
// bytes, the node's default kernel arguments, and labels that map the runtime's machine back to
// its object after an agent restart (the runtime keeps them in its machine record).
import type { UmlMachine } from '../api/types.ts';
import { parseQuantity } from '../api/quantity.ts';
import { umidFor } from '../api/umid.ts';
import type { MachineConfig } from '../runtime/types.ts';
import { keyLabels, keyOf } from './object-key.ts';
export { keyFromLabels, LABEL_NAME, LABEL_NAMESPACE } from './object-key.ts';

/** A kernel the node offers: its path, and the arguments only it needs. */
export interface KernelEntry {
  path: string;
  /** Arguments added for this kernel, after the node's defaults. */
  args?: string[];
}

export interface MachineConfigOptions {
  kernels: Record<string, KernelEntry>;
  defaultKernelArgs: string[];
  /** spec.memory when the object does not say (the CRD defaults it; a file may not). */
  defaultMemoryBytes: number;
}

export const DEFAULT_KERNEL_NAME = 'default';
export const DEFAULT_GRACE_PERIOD_SECONDS = 30;

/** Labels on the runtime's machine record (the key's own, LABEL_NAMESPACE and LABEL_NAME, are object-key.ts's). */
export const LABEL_UID = 'umlmon.io/uid';
export const LABEL_GENERATION = 'umlmon.io/generation';
export const LABEL_GRACE_PERIOD = 'umlmon.io/grace-period-seconds';

/** The umid of an object: from metadata.uid, so that it survives renames of nothing and restarts of everything. */
export function machineIdOf(machine: UmlMachine): string {
  const uid = machine.metadata.uid;
  if (!uid) throw new Error(`machine ${keyOf(machine)}: metadata.uid is empty; the source must provide one`);
  return umidFor(uid);
}

/** Builds the runtime's config. The machine must have passed validateMachine (kernel known, memory parsed). */
export function machineConfigFor(machine: UmlMachine, options: MachineConfigOptions): MachineConfig {
  const spec = machine.spec;
  const key = keyOf(machine);
  const kernelName = spec.kernel ?? DEFAULT_KERNEL_NAME;
  const kernel = options.kernels[kernelName];
  if (!kernel) throw new Error(`machine ${key}: kernel "${kernelName}" is not in this node's kernel table (${Object.keys(options.kernels).join(', ') || 'empty'})`);
  const config: MachineConfig = {
    id: machineIdOf(machine),
    name: key,
    kernel: kernel.path,
    memoryBytes: spec.memory !== undefined ? parseQuantity(spec.memory) : options.defaultMemoryBytes,
    cmdline: [...(spec.cmdline ?? [])],
    defaultArgs: [...options.defaultKernelArgs, ...(kernel.args ?? [])],
    disks: (spec.disks ?? []).map((d) => ({ name: d.name, image: d.image, mode: d.mode ?? 'cow' })),
    interfaces: (spec.interfaces ?? []).map((i) => {
      const { name, transport, mac, ...settings } = i;
      return { name, transport, ...(mac !== undefined ? { mac } : {}), ...settings };
    }),
    labels: {
      ...keyLabels(machine),
      [LABEL_UID]: machine.metadata.uid ?? '',
      [LABEL_GENERATION]: String(machine.metadata.generation ?? 0),
      [LABEL_GRACE_PERIOD]: String(gracePeriodSecondsOf(machine)),
    },
  };
  return config;
}

export function gracePeriodSecondsOf(machine: UmlMachine): number {
  return machine.spec.shutdownGracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS;
}

/** The grace period a machine was started with, for shutting it down once its object is gone. */
export function gracePeriodMsFromLabels(labels: Record<string, string> | undefined): number {
  const seconds = Number(labels?.[LABEL_GRACE_PERIOD]);
  return (Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_GRACE_PERIOD_SECONDS) * 1000;
}
