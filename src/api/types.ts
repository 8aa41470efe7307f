// TypeScript types of the UmlMachine API (umlmon.io/v1alpha1). The CRD in
// crds/umlmachines.umlmon.io.yaml is the single source of truth; a unit test checks that these
// types and the CRD schema name the same fields.
import type { DiskMode, Transport } from '../runtime/types.ts';

export const GROUP = 'umlmon.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'UmlMachine';
export const PLURAL = 'umlmachines';
export const FINALIZER = 'umlmon.io/machine';

export type DesiredState = 'Running' | 'Paused' | 'Stopped';
export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';
export type Phase = 'Pending' | 'Starting' | 'Running' | 'Paused' | 'Stopping' | 'Stopped' | 'Failed' | 'Unknown';

export interface DiskSpec {
  name: string;
  image: string;
  mode?: DiskMode;
}

export interface InterfaceSpec {
  name: string;
  transport: Transport;
  mac?: string;
  /** Exactly the settings block of `transport` is present (none for slirp). */
  /** A host tap device (ifname), a node LAN (switch), or both. */
  tap?: { ifname?: string; switch?: string };
  raw?: { ifname: string };
  hybrid?: { ifname: string };
  tuntap?: { ifname: string };
  mcast?: { group: string; port: number; ttl?: number };
  daemon?: { switch: string };
  vde?: { switch: string };
  gre?: { local: string; remote: string; key?: number };
  l2tpv3?: { local: string; remote: string; localPort?: number; remotePort?: number; session?: number };
}

export interface BackupSpec {
  schedule: string;
  retain?: number;
}

export interface UmlMachineSpec {
  nodeName: string;
  state?: DesiredState;
  kernel?: string;
  /** A quantity such as "128Mi". validateMachine turns an integer (int-or-string) into a string. */
  memory?: string;
  cmdline?: string[];
  disks?: DiskSpec[];
  interfaces?: InterfaceSpec[];
  restartPolicy?: RestartPolicy;
  shutdownGracePeriodSeconds?: number;
  backup?: BackupSpec;
}

export interface Condition {
  type: 'Ready' | 'Paused' | 'DevicesSynced' | 'SpecValid' | string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface UmlMachineStatus {
  phase?: Phase;
  observedGeneration?: number;
  nodeName?: string;
  umid?: string;
  pid?: number;
  startTime?: string;
  bootTime?: string;
  kernelVersion?: string;
  restartCount?: number;
  memory?: string;
  /** message: why the kernel does not have a device it was given (attached false). */
  disks?: { name: string; image: string; mode: DiskMode; attached: boolean; message?: string }[];
  interfaces?: { name: string; transport: Transport; mac: string; attached: boolean; message?: string }[];
  consoles?: { name: string; hostDevice: string }[];
  lastBackup?: { time: string; result: 'Succeeded' | 'Failed'; location?: string; message?: string };
  conditions?: Condition[];
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface UmlMachine {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: UmlMachineSpec;
  status?: UmlMachineStatus;
}
