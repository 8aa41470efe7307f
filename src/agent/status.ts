// The status the agent reports for a machine, built by a pure function from what the
// reconciler knows after a pass: the object, its validation, the runtime's view and the plan.
// The status is written only when statusEqual() says it changed, and a condition keeps its
// lastTransitionTime while its status (True/False/Unknown) stays the same, as
// meta.SetStatusCondition does. Nothing in it changes while a guest just runs: no figure that
// moves by itself (uptime follows from bootTime; load and memory are metrics), so an idle guest
// costs no status write, whatever the source (1,000 nodes x 100 guests refreshing every 30 s
// would be 3,300 writes a second to the API server for nothing).
//
// Conditions: Ready, Paused, DevicesSynced, SpecValid (api.md) and RestartRequired (ours):
// True while the running guest differs from its spec in something that only a restart applies
// (memory, kernel, cmdline, root disk). The agent never restarts a guest for it.
import type { Condition, Phase, UmlMachine, UmlMachineStatus } from '../api/types.ts';
import { formatBytes } from '../api/quantity.ts';
import type { MachineSnapshot } from '../runtime/types.ts';
import { stableJson, type DesiredMachine, type Plan } from './plan.ts';

export const CONDITION_TYPES = ['Ready', 'Paused', 'DevicesSynced', 'SpecValid', 'RestartRequired'] as const;

export interface StatusInput {
  now: Date;
  nodeName: string;
  machine: UmlMachine;
  desired: DesiredMachine;
  /** The runtime's view after this pass's actions. */
  actual: MachineSnapshot | undefined;
  plan: Plan;
  /** The exit of `actual` happened while the user wanted it Stopped. */
  exitAcknowledged: boolean;
  restartCount: number;
  lastBackup?: UmlMachineStatus['lastBackup'];
  /** The error that ended this pass's actions, if one did, and which kind of action failed. */
  error?: { message: string; devices: boolean };
}

export function phaseOf(input: StatusInput): Phase {
  const { desired, actual, plan } = input;
  const alive = actual !== undefined && actual.state !== 'exited';
  if (desired.deleting) return alive ? 'Stopping' : 'Stopped';
  const state = desired.spec.valid ? desired.spec.state : undefined;
  if (actual === undefined) {
    if (!desired.spec.valid) return 'Failed';
    return state === 'Stopped' || plan.waiting?.reason === 'Draining' ? 'Stopped' : 'Pending';
  }
  switch (actual.state) {
    case 'starting':
      return 'Starting';
    case 'running':
      return actual.bootTime === undefined ? 'Starting' : 'Running';
    case 'paused':
      return 'Paused';
    case 'stopping':
      return 'Stopping';
    case 'unknown':
      return 'Unknown';
    case 'exited':
      if (state === 'Stopped' || input.exitAcknowledged) return 'Stopped';
      if (plan.waiting?.reason === 'Completed' || plan.waiting?.reason === 'Draining') return 'Stopped';
      return 'Failed';
  }
}

/** Condition statuses, reasons and messages for this pass (lastTransitionTime added later). */
function conditionsOf(input: StatusInput, phase: Phase): Omit<Condition, 'lastTransitionTime'>[] {
  const { desired, actual, plan } = input;
  const spec = desired.spec;
  const conditions: Omit<Condition, 'lastTransitionTime'>[] = [];

  // Ready: the guest kernel is up and answers mconsole.
  if (actual?.state === 'running' && actual.bootTime !== undefined) {
    conditions.push({ type: 'Ready', status: 'True', reason: 'Booted', message: 'the guest kernel booted and answers mconsole' });
  } else if (actual?.state === 'unknown') {
    conditions.push({ type: 'Ready', status: 'Unknown', reason: 'Unreachable', message: actual.message ?? 'the kernel process is present but mconsole does not answer' });
  } else {
    conditions.push({ type: 'Ready', status: 'False', ...notReady(input, phase) });
  }

  conditions.push(
    actual?.state === 'paused'
      ? { type: 'Paused', status: 'True', reason: 'Paused', message: 'the guest is stopped with mconsole stop; state Running resumes it' }
      : { type: 'Paused', status: 'False', reason: 'NotPaused', message: '' },
  );

  const refused = alive(actual) ? refusedDevices(actual) : [];
  if (input.error?.devices) {
    conditions.push({ type: 'DevicesSynced', status: 'False', reason: 'HotplugFailed', message: input.error.message });
  } else if (plan.devicesPendingReason === 'DiskInUse' && plan.devicesPending !== undefined) {
    conditions.push({ type: 'DevicesSynced', status: 'False', reason: 'DiskInUse', message: plan.devicesPending });
  } else if (actual === undefined || actual.state === 'exited') {
    conditions.push({ type: 'DevicesSynced', status: 'Unknown', reason: 'NotRunning', message: 'the guest is not running' });
  } else if (refused.length > 0) {
    conditions.push({ type: 'DevicesSynced', status: 'False', reason: 'DeviceRefused', message: `the kernel does not have ${refused.join('; ')}` });
  } else if (plan.devicesPending !== undefined) {
    conditions.push({ type: 'DevicesSynced', status: 'False', reason: 'Pending', message: plan.devicesPending });
  } else {
    conditions.push({ type: 'DevicesSynced', status: 'True', reason: 'Synced', message: 'attached disks and interfaces match the spec' });
  }

  conditions.push(
    spec.valid
      ? { type: 'SpecValid', status: 'True', reason: 'Valid', message: '' }
      : { type: 'SpecValid', status: 'False', reason: 'InvalidSpec', message: describeSpecErrors(spec.errors) },
  );

  conditions.push(
    plan.pendingRestart.length > 0
      ? { type: 'RestartRequired', status: 'True', reason: 'SpecChanged', message: `applied at the next restart: ${plan.pendingRestart.join('; ')}` }
      : { type: 'RestartRequired', status: 'False', reason: 'UpToDate', message: '' },
  );
  return conditions;
}

function notReady(input: StatusInput, phase: Phase): { reason: string; message: string } {
  if (input.plan.waiting) return { reason: input.plan.waiting.reason, message: input.plan.waiting.message };
  if (input.error && !input.error.devices) return { reason: 'Error', message: input.error.message };
  switch (phase) {
    case 'Pending':
      return { reason: 'Pending', message: 'the guest is not started yet' };
    case 'Starting':
      return { reason: 'Booting', message: 'the guest kernel is booting' };
    case 'Paused':
      return { reason: 'Paused', message: 'the guest is paused' };
    case 'Stopping':
      return { reason: 'Stopping', message: 'the guest is shutting down' };
    case 'Stopped':
      return { reason: 'Stopped', message: 'the guest is not running' };
    case 'Failed':
      return input.desired.spec.valid ? { reason: 'Failed', message: 'the guest is not running' } : { reason: 'InvalidSpec', message: 'the spec is invalid; see condition SpecValid' };
    default:
      return { reason: phase, message: '' };
  }
}

export function describeSpecErrors(errors: { field: string; message: string }[]): string {
  return errors.map((e) => `${e.field}: ${e.message}`).join('; ');
}

function alive(actual: MachineSnapshot | undefined): actual is MachineSnapshot {
  return actual !== undefined && actual.state !== 'exited';
}

/** "ubd1 (<the kernel's words>)" for each device the kernel was given but does not have. */
function refusedDevices(actual: MachineSnapshot): string[] {
  return [
    ...actual.disks.flatMap((d) => (d.refused !== undefined ? [`${d.name} (${d.refused})`] : [])),
    ...actual.interfaces.flatMap((i) => (i.refused !== undefined ? [`${i.name} (${i.refused})`] : [])),
  ];
}

/** Keeps lastTransitionTime from the previous condition of the same type while its status is the same. */
export function mergeConditions(previous: Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime'>[], now: Date, generation: number | undefined): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : now.toISOString();
    const condition: Condition = { ...c, lastTransitionTime };
    if (generation !== undefined) condition.observedGeneration = generation;
    return condition;
  });
}

export function buildStatus(input: StatusInput): UmlMachineStatus {
  const { machine, desired, actual } = input;
  const previous = machine.status;
  const phase = phaseOf(input);
  const alive = actual !== undefined && actual.state !== 'exited';
  const status: UmlMachineStatus = {
    phase,
    observedGeneration: machine.metadata.generation,
    nodeName: input.nodeName,
    umid: desired.id,
  };
  if (alive && actual.pid !== undefined) status.pid = actual.pid;
  if (alive && actual.startTime) status.startTime = actual.startTime.toISOString();
  if (alive && actual.bootTime) status.bootTime = actual.bootTime.toISOString();
  if (actual?.kernelVersion) status.kernelVersion = actual.kernelVersion;
  else if (previous?.kernelVersion) status.kernelVersion = previous.kernelVersion;
  status.restartCount = input.restartCount;
  if (alive) status.memory = formatBytes(actual.config.memoryBytes);
  else if (desired.spec.valid) status.memory = formatBytes(desired.spec.config.memoryBytes);

  const disks = disksOf(desired, alive ? actual : undefined);
  if (disks.length > 0) status.disks = disks;
  const interfaces = interfacesOf(desired, alive ? actual : undefined);
  if (interfaces.length > 0) status.interfaces = interfaces;
  if (alive && actual.consoles.length > 0) status.consoles = actual.consoles.map((c) => ({ ...c }));
  const lastBackup = input.lastBackup ?? previous?.lastBackup;
  if (lastBackup) status.lastBackup = lastBackup;
  status.conditions = mergeConditions(previous?.conditions, conditionsOf(input, phase), input.now, machine.metadata.generation);
  return status;
}

function disksOf(desired: DesiredMachine, actual: MachineSnapshot | undefined): NonNullable<UmlMachineStatus['disks']> {
  const attached = actual?.disks ?? [];
  const result: NonNullable<UmlMachineStatus['disks']> = [];
  const wanted = desired.spec.valid ? desired.spec.config.disks : [];
  for (const d of wanted) {
    const a = attached.find((x) => x.name === d.name);
    const same = a !== undefined && a.image === d.image && a.mode === d.mode;
    // What the kernel has: a disk it was given but could not open is not attached.
    result.push({ name: d.name, image: d.image, mode: d.mode, attached: same && a.refused === undefined, ...(same && a.refused !== undefined ? { message: a.refused } : {}) });
  }
  // Still attached, no longer (or not as such) in the spec: shown until detached.
  for (const a of attached) {
    if (!wanted.some((d) => d.name === a.name && d.image === a.image && d.mode === a.mode)) result.push({ name: a.name, image: a.image, mode: a.mode, attached: true });
  }
  return result;
}

function interfacesOf(desired: DesiredMachine, actual: MachineSnapshot | undefined): NonNullable<UmlMachineStatus['interfaces']> {
  const attached = actual?.interfaces ?? [];
  const result: NonNullable<UmlMachineStatus['interfaces']> = [];
  const wanted = desired.spec.valid ? desired.spec.config.interfaces : [];
  for (const i of wanted) {
    const a = attached.find((x) => x.name === i.name && x.transport === i.transport);
    result.push({ name: i.name, transport: i.transport, mac: a?.mac ?? i.mac ?? '', attached: a !== undefined && a.refused === undefined, ...(a?.refused !== undefined ? { message: a.refused } : {}) });
  }
  for (const a of attached) {
    if (!wanted.some((i) => i.name === a.name && i.transport === a.transport)) result.push({ name: a.name, transport: a.transport, mac: a.mac, attached: true });
  }
  return result;
}

/** True when writing `next` would change nothing (key order and undefined fields ignored). */
export function statusEqual(a: UmlMachineStatus | undefined, b: UmlMachineStatus | undefined): boolean {
  return stableJson(a ?? {}) === stableJson(b ?? {});
}

export function conditionOf(status: UmlMachineStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/**
 * The JSON merge patch (RFC 7386) that turns `previous` into `next`: fields that `next` drops
 * become null, so that a merge patch removes them (a kernel that is gone has no pid). Arrays
 * are replaced whole, as merge patches do.
 */
export function statusPatch(previous: UmlMachineStatus | undefined, next: UmlMachineStatus): UmlMachineStatus {
  return mergePatchBetween(previous ?? {}, next) as UmlMachineStatus;
}

function mergePatchBetween(previous: unknown, next: unknown): unknown {
  if (!isPlainObject(next) || !isPlainObject(previous)) return next;
  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(next)) {
    if (v !== undefined) patch[k] = mergePatchBetween(previous[k], v);
  }
  for (const k of Object.keys(previous)) {
    if (next[k] === undefined && previous[k] !== undefined) patch[k] = null;
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
