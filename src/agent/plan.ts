// The reconciler's decisions, as a pure function: desired (the object, validated) and actual
// (what the runtime reports) in, an ordered list of actions out. No I/O, no clock of its own:
// everything it needs is in its input, so every rule below is pinned by a table-driven test.
//
// Rules that protect guests (they belong to users):
// - an invalid spec never touches a running guest;
// - a guest that is present but unreachable (`unknown`) is left alone unless the user asked
//   for it to go (state Stopped, deletion);
// - a machine whose object is gone is only shut down once the source has synced, so that a
//   cache still filling after a restart never looks like a deletion (kubevirt #18763);
// - changes that cannot be applied live (memory, kernel, cmdline, root disk) are reported as
//   pending until the guest restarts, never applied by killing it.
import type { DesiredState, RestartPolicy } from '../api/types.ts';
import { imageConflict, imageInUseMessage, type ImageHolder } from '../runtime/image-use.ts';
import type { DiskConfig, ExitInfo, InterfaceConfig, MachineConfig, MachineSnapshot } from '../runtime/types.ts';

export interface SpecError {
  field: string;
  message: string;
}

/** The object as the reconciler wants it, after validation. */
export interface DesiredMachine {
  /** The umid derived from metadata.uid: known even when the spec is invalid. */
  id: string;
  deleting: boolean;
  hasFinalizer: boolean;
  spec:
    | { valid: true; config: MachineConfig; state: DesiredState; restartPolicy: RestartPolicy; gracePeriodMs: number }
    | { valid: false; errors: SpecError[] };
}

/** Crash-loop bookkeeping for one machine, kept by the reconciler between passes. */
export interface RestartBackoff {
  /** The exit this entry was computed for (ms since the epoch). */
  exitAt: number;
  /** Consecutive failed runs, this one included. */
  crashes: number;
  /** Earliest time of the next start (ms since the epoch). */
  notBefore: number;
}

export interface PlanInput {
  now: number;
  /** The source's initial list is cached (and no relist is in progress). */
  sourceSynced: boolean;
  /** The node is being drained: every live machine is shut down, nothing is started or restarted. */
  draining: boolean;
  /** When the drain gives up waiting (ms since the epoch): no grace period runs past it. */
  drainDeadline?: number;
  /** undefined: no object for this key (deleted, or never existed). */
  desired: DesiredMachine | undefined;
  /** The runtime machine with the desired id, if any. */
  actual: MachineSnapshot | undefined;
  /** Other runtime machines that belong to this key (an older object of the same name). */
  strays: MachineSnapshot[];
  /** The last backoff entry computed for this key. */
  backoff: RestartBackoff | undefined;
  /**
   * The current exit of `actual` happened while the user wanted the machine Stopped (or the
   * agent stopped it for them): starting it again is the user's wish, not a restart.
   */
  exitAcknowledged: boolean;
  /** A scheduled backup is due, or one was asked for (annotation umlmon.io/backup-requested-at). */
  backupDue: boolean;
  /**
   * When a restart was asked for (annotation umlmon.io/restart-requested-at, ms since the
   * epoch): a guest whose kernel started before then is shut down gracefully and started again,
   * whatever its restartPolicy. A time still ahead of this node's clock waits until it is past,
   * so the new kernel always starts after it and the request is never taken twice.
   */
  restartRequestedAt?: number;
  /** Grace period for machines whose object is gone (their own, from labels, when known). */
  orphanGracePeriodMs: number;
  /**
   * The kernel file that `actual` ran is the same file now (not replaced since that run
   * started). With an exit that showed the kernel cannot run here, nothing is retried until the
   * spec or the node's kernel changes.
   */
  kernelUnchanged?: boolean;
  /**
   * The disks of the node's other live machines: a readWrite image is one machine's at a time
   * (src/runtime/image-use.ts), so a start or hot-plug that needs one in use waits for it.
   * A function is called only when the plan needs them (a start, a change of devices): a pass
   * over a guest that just runs never looks at the rest of the node.
   */
  imageHolders?: ImageHolder[] | (() => ImageHolder[]);
}

function holdersOf(input: PlanInput): ImageHolder[] {
  const h = input.imageHolders;
  return typeof h === 'function' ? h() : (h ?? []);
}

export type StopReason = 'desired' | 'deleting' | 'orphan' | 'restart' | 'drain';

export type Action =
  | { type: 'addFinalizer' }
  | { type: 'removeFinalizer' }
  | { type: 'start'; config: MachineConfig; restart: boolean }
  | { type: 'pause'; id: string }
  | { type: 'resume'; id: string }
  | { type: 'stop'; id: string; gracePeriodMs: number; reason: StopReason }
  | { type: 'remove'; id: string }
  | { type: 'attachDisk'; id: string; disk: DiskConfig }
  | { type: 'detachDisk'; id: string; name: string }
  | { type: 'attachInterface'; id: string; iface: InterfaceConfig }
  | { type: 'detachInterface'; id: string; name: string }
  | { type: 'backup'; id: string };

/** Why a machine that should run is not running now. */
export type Waiting =
  | { reason: 'BackOff'; message: string }
  | { reason: 'Draining'; message: string }
  | { reason: 'Completed'; message: string }
  | { reason: 'Failed'; message: string }
  | { reason: 'KernelIncompatible'; message: string }
  | { reason: 'DiskInUse'; message: string };

export interface Plan {
  actions: Action[];
  /** Look again after this long (a timer, not an error). */
  requeueAfterMs?: number;
  /** Changes the running guest picks up only after a restart (condition RestartRequired). */
  pendingRestart: string[];
  /** Device changes not applied yet, and why (condition DevicesSynced). */
  devicesPending?: string;
  /** The DevicesSynced reason for devicesPending (default Pending). */
  devicesPendingReason?: 'Pending' | 'DiskInUse';
  /** A new crash-loop entry for the reconciler to keep (undefined: keep the old one). */
  backoff?: RestartBackoff;
  /** Forget the crash-loop entry (the guest ran long enough, or the user stopped it). */
  clearBackoff?: boolean;
  waiting?: Waiting;
  /** A due backup that could not run, and why. */
  backupSkipped?: string;
}

/** kubelet's crash-loop backoff: 10 s doubling to 5 min, reset after 10 min of running. */
export const BACKOFF_INITIAL_MS = 10_000;
export const BACKOFF_MAX_MS = 300_000;
export const BACKOFF_RESET_AFTER_MS = 600_000;
/** Safety-net requeues while waiting for something that also sends an event. */
export const TRANSITION_REQUEUE_MS = 2_000;
export const UNKNOWN_REQUEUE_MS = 10_000;

const ALIVE = new Set(['starting', 'running', 'paused', 'stopping', 'unknown']);

export function isAlive(m: MachineSnapshot | undefined): m is MachineSnapshot {
  return m !== undefined && ALIVE.has(m.state);
}

/** A clean poweroff from inside the guest: exit code 0, no signal, no panic. */
export function exitedCleanly(exit: ExitInfo | undefined): boolean {
  return exit !== undefined && exit.code === 0 && exit.signal === null && exit.panic === undefined;
}

export function describeExit(exit: ExitInfo | undefined): string {
  if (!exit) return 'the kernel exited';
  if (exit.kernelIncompatible !== undefined) return exit.kernelIncompatible;
  if (exit.panic !== undefined) return `the guest panicked: ${exit.panic}`;
  if (exit.signal !== null) return `the kernel was killed by ${exit.signal}`;
  return `the kernel exited with code ${exit.code ?? 'unknown'}`;
}

export function shouldRestart(policy: RestartPolicy, exit: ExitInfo | undefined): boolean {
  if (policy === 'Always') return true;
  if (policy === 'OnFailure') return !exitedCleanly(exit);
  return false;
}

/**
 * The backoff entry for a new exit. The first restart after a healthy run is immediate; each
 * further crash waits 10 s, 20 s, ... up to 5 min. A run of 10 min or more starts over.
 */
export function nextBackoff(previous: RestartBackoff | undefined, exitAt: number, startedAt: number | undefined): RestartBackoff {
  const ranLong = startedAt !== undefined && exitAt - startedAt >= BACKOFF_RESET_AFTER_MS;
  const crashes = previous === undefined || ranLong ? 1 : previous.crashes + 1;
  const delay = crashes === 1 ? 0 : Math.min(BACKOFF_INITIAL_MS * 2 ** (crashes - 2), BACKOFF_MAX_MS);
  return { exitAt, crashes, notBefore: exitAt + delay };
}

export function plan(input: PlanInput): Plan {
  const result: Plan = { actions: [], pendingRestart: [] };
  const { desired } = input;

  planStrays(input, result);

  if (desired === undefined) return result;
  if (desired.deleting) {
    planDeletion(input, desired, result);
    return result;
  }
  if (input.draining) {
    planDrain(input, desired, result);
    return result;
  }
  const spec = desired.spec;
  if (!spec.valid) {
    // Touch nothing: the guest keeps running as it was last configured. Watch an unreachable
    // one so its phase recovers when it answers again.
    if (input.actual?.state === 'unknown') result.requeueAfterMs = UNKNOWN_REQUEUE_MS;
    return result;
  }
  planValid(input, desired, spec, result);
  return result;
}

/** Machines of this key that the object no longer describes: shut down and removed. */
function planStrays(input: PlanInput, result: Plan): void {
  const strays = [...input.strays];
  if (input.desired === undefined && input.actual !== undefined) strays.push(input.actual);
  if (strays.length === 0) return;
  if (!input.sourceSynced) {
    // The cache may still be filling: absence proves nothing yet.
    result.requeueAfterMs = minDelay(result.requeueAfterMs, TRANSITION_REQUEUE_MS);
    return;
  }
  for (const m of strays) {
    if (m.state === 'stopping') {
      result.requeueAfterMs = minDelay(result.requeueAfterMs, TRANSITION_REQUEUE_MS);
      continue;
    }
    if (isAlive(m)) result.actions.push(...stopActions(m, input.orphanGracePeriodMs, 'orphan'));
    result.actions.push({ type: 'remove', id: m.id });
  }
}

/**
 * The node is going down: a live guest is shut down (its own grace period, cut to what is left
 * of the drain's), whatever its spec says, and nothing starts. Drain is a desired state like
 * any other: its stops are the same stop actions, run by the same executor.
 */
function planDrain(input: PlanInput, desired: DesiredMachine, result: Plan): void {
  const { actual } = input;
  result.waiting = { reason: 'Draining', message: 'the node is being drained: no machine is started' };
  if (input.backupDue) result.backupSkipped = 'the node is being drained';
  if (actual?.state === 'stopping') {
    result.requeueAfterMs = minDelay(result.requeueAfterMs, TRANSITION_REQUEUE_MS);
    return;
  }
  if (!isAlive(actual)) return;
  const own = desired.spec.valid ? desired.spec.gracePeriodMs : input.orphanGracePeriodMs;
  const left = input.drainDeadline !== undefined ? Math.max(0, input.drainDeadline - input.now) : own;
  result.actions.push(...stopActions(actual, Math.min(own, left), 'drain'));
}

/** Graceful stop → remove the jail and private COW files → remove the finalizer. */
function planDeletion(input: PlanInput, desired: DesiredMachine, result: Plan): void {
  const { actual } = input;
  const grace = desired.spec.valid ? desired.spec.gracePeriodMs : input.orphanGracePeriodMs;
  if (actual?.state === 'stopping') {
    result.requeueAfterMs = minDelay(result.requeueAfterMs, TRANSITION_REQUEUE_MS);
    return;
  }
  if (isAlive(actual)) result.actions.push(...stopActions(actual, grace, 'deleting'));
  if (actual) result.actions.push({ type: 'remove', id: actual.id });
  if (desired.hasFinalizer) result.actions.push({ type: 'removeFinalizer' });
}

/** A paused guest cannot take ctrl-alt-del: resume it first so that its init shuts down cleanly. */
function stopActions(m: MachineSnapshot, gracePeriodMs: number, reason: StopReason): Action[] {
  const actions: Action[] = [];
  if (m.state === 'paused') actions.push({ type: 'resume', id: m.id });
  actions.push({ type: 'stop', id: m.id, gracePeriodMs, reason });
  return actions;
}

type ValidSpec = Extract<DesiredMachine['spec'], { valid: true }>;

function planValid(input: PlanInput, desired: DesiredMachine, spec: ValidSpec, result: Plan): void {
  const { actual } = input;
  const addFinalizer = (): void => {
    if (!desired.hasFinalizer) result.actions.push({ type: 'addFinalizer' });
  };

  if (spec.state === 'Stopped') {
    result.clearBackoff = true;
    if (actual === undefined) return;
    addFinalizer();
    if (actual.state === 'stopping') {
      result.requeueAfterMs = TRANSITION_REQUEUE_MS;
    } else if (isAlive(actual)) {
      result.actions.push(...stopActions(actual, spec.gracePeriodMs, 'desired'));
    }
    return;
  }

  // Running or Paused: the guest must exist.
  if (actual === undefined || actual.state === 'exited') {
    planStart(input, spec, result, addFinalizer);
    return;
  }
  addFinalizer();
  result.pendingRestart = pendingRestart(spec.config, actual);

  const asked = input.restartRequestedAt;
  if (asked !== undefined && (actual.state === 'running' || actual.state === 'paused') && actual.startTime !== undefined && actual.startTime.getTime() < asked) {
    if (asked <= input.now) {
      result.actions.push(...stopActions(actual, spec.gracePeriodMs, 'restart'));
      if (input.backupDue) result.backupSkipped = 'the guest is restarting';
      return;
    }
    result.requeueAfterMs = Math.min(asked - input.now, 60_000);
  }

  switch (actual.state) {
    case 'starting':
    case 'stopping':
      result.requeueAfterMs = TRANSITION_REQUEUE_MS;
      result.devicesPending = devicesDiffer(spec.config, actual) ? 'the guest is not running yet' : undefined;
      return;
    case 'unknown':
      result.requeueAfterMs = UNKNOWN_REQUEUE_MS;
      return;
    case 'paused':
      if (spec.state === 'Running') result.actions.push({ type: 'resume', id: actual.id });
      else if (devicesDiffer(spec.config, actual)) result.devicesPending = 'the guest is paused; devices change once it runs';
      if (input.backupDue) result.backupSkipped = 'the guest is paused';
      return;
    case 'running':
      if (spec.state === 'Paused') {
        result.actions.push({ type: 'pause', id: actual.id });
        if (input.backupDue) result.backupSkipped = 'the guest is being paused';
        return;
      }
      planDevices(spec.config, actual, result, () => holdersOf(input));
      if (input.backupDue) {
        if (actual.bootTime !== undefined) result.actions.push({ type: 'backup', id: actual.id });
        else result.backupSkipped = 'the guest has not finished booting';
      }
      if (actual.startTime !== undefined && input.backoff !== undefined) {
        // A crash-looping guest that has now run long enough is healthy again.
        const ranFor = input.now - actual.startTime.getTime();
        if (ranFor >= BACKOFF_RESET_AFTER_MS) result.clearBackoff = true;
      }
      return;
  }
}

function planStart(input: PlanInput, spec: ValidSpec, result: Plan, addFinalizer: () => void): void {
  const { actual } = input;
  if (input.backupDue) result.backupSkipped = 'the guest is not running';
  const inUse = diskInUse(spec.config.disks, holdersOf(input));
  if (inUse !== undefined) {
    // Not started now, nor counted as a crash: it starts when the other machine lets go (the
    // controller requeues waiting machines whenever a machine stops or a disk is detached).
    result.waiting = { reason: 'DiskInUse', message: inUse };
    result.devicesPending = inUse;
    result.devicesPendingReason = 'DiskInUse';
    return;
  }
  const exited = actual?.state === 'exited' && !input.exitAcknowledged;
  if (!exited) {
    addFinalizer();
    result.actions.push({ type: 'start', config: spec.config, restart: false });
    return;
  }
  const exit = actual.exit;
  if (exit?.kernelIncompatible !== undefined && input.kernelUnchanged === true && stableJson(spec.config) === stableJson(actual.config)) {
    // Not a crash of the guest: this kernel cannot run userspace on this host. A restart loop
    // would fail the same way; wait for the spec or the kernel to change.
    result.waiting = { reason: 'KernelIncompatible', message: exit.kernelIncompatible };
    result.clearBackoff = true;
    return;
  }
  if (!shouldRestart(spec.restartPolicy, exit)) {
    result.waiting = exitedCleanly(exit)
      ? { reason: 'Completed', message: `the guest powered off and restartPolicy is ${spec.restartPolicy}` }
      : { reason: 'Failed', message: `${describeExit(exit)}; restartPolicy is ${spec.restartPolicy}` };
    return;
  }
  const exitAt = exit?.at.getTime() ?? input.now;
  let backoff = input.backoff;
  if (backoff === undefined || backoff.exitAt !== exitAt) {
    backoff = nextBackoff(backoff, exitAt, actual.startTime?.getTime());
    result.backoff = backoff;
  }
  if (input.now < backoff.notBefore) {
    const seconds = Math.ceil((backoff.notBefore - input.now) / 1000);
    result.waiting = { reason: 'BackOff', message: `${describeExit(exit)}; restarting in ${seconds} s (crash ${backoff.crashes})` };
    result.requeueAfterMs = backoff.notBefore - input.now;
    return;
  }
  addFinalizer();
  result.actions.push({ type: 'start', config: spec.config, restart: true });
}

/** Why these disks cannot be had now (the first in use by another machine), or undefined. */
function diskInUse(disks: DiskConfig[], holders: ImageHolder[]): string | undefined {
  for (const disk of disks) {
    const holder = imageConflict(disk, holders);
    if (holder) return imageInUseMessage(disk, holder);
  }
  return undefined;
}

/** Live changes of disks and interfaces, only once the kernel has booted (see uml-facts.md). */
function planDevices(config: MachineConfig, actual: MachineSnapshot, result: Plan, holders: () => ImageHolder[]): void {
  const diff = deviceDiff(config, actual);
  if (diff.detachDisks.length + diff.attachDisks.length + diff.detachInterfaces.length + diff.attachInterfaces.length === 0) return;
  if (actual.bootTime === undefined) {
    // A disk hot-plugged before the kernel finished booting never appears, and removing it
    // later panics the kernel. The 'booted' event requeues the key.
    result.devicesPending = 'waiting for the guest kernel to finish booting';
    result.requeueAfterMs = TRANSITION_REQUEUE_MS;
    return;
  }
  for (const name of diff.detachDisks) result.actions.push({ type: 'detachDisk', id: actual.id, name });
  for (const name of diff.detachInterfaces) result.actions.push({ type: 'detachInterface', id: actual.id, name });
  const waiting: string[] = [];
  const others = diff.attachDisks.length > 0 ? holders() : [];
  for (const disk of diff.attachDisks) {
    const inUse = diskInUse([disk], others);
    if (inUse !== undefined) waiting.push(inUse);
    else result.actions.push({ type: 'attachDisk', id: actual.id, disk });
  }
  if (waiting.length > 0) {
    result.devicesPending = waiting.join('; ');
    result.devicesPendingReason = 'DiskInUse';
  }
  for (const iface of diff.attachInterfaces) result.actions.push({ type: 'attachInterface', id: actual.id, iface });
}

export interface DeviceDiff {
  attachDisks: DiskConfig[];
  detachDisks: string[];
  attachInterfaces: InterfaceConfig[];
  detachInterfaces: string[];
}

function rootDiskOf(config: MachineConfig): string {
  return config.rootDisk ?? 'ubd0';
}

/** What to plug and unplug so that the guest's devices match the spec (the root disk excluded). */
export function deviceDiff(config: MachineConfig, actual: MachineSnapshot): DeviceDiff {
  const root = rootDiskOf(actual.config);
  const diff: DeviceDiff = { attachDisks: [], detachDisks: [], attachInterfaces: [], detachInterfaces: [] };
  const wantDisks = new Map(config.disks.map((d) => [d.name, d]));
  const haveDisks = new Map(actual.disks.map((d) => [d.name, d]));
  for (const [name, have] of haveDisks) {
    if (name === root) continue;
    const want = wantDisks.get(name);
    if (!want || want.image !== have.image || want.mode !== have.mode) diff.detachDisks.push(name);
  }
  for (const [name, want] of wantDisks) {
    if (name === root) continue;
    const have = haveDisks.get(name);
    if (!have || want.image !== have.image || want.mode !== have.mode) diff.attachDisks.push(want);
  }
  const wantIfaces = new Map(config.interfaces.map((i) => [i.name, i]));
  const haveIfaces = new Map(actual.interfaces.map((i) => [i.name, i]));
  const lastConfigured = new Map(actual.config.interfaces.map((i) => [i.name, i]));
  for (const [name, have] of haveIfaces) {
    const want = wantIfaces.get(name);
    if (!want || interfaceChanged(want, have, lastConfigured.get(name))) diff.detachInterfaces.push(name);
  }
  for (const [name, want] of wantIfaces) {
    const have = haveIfaces.get(name);
    if (!have || interfaceChanged(want, have, lastConfigured.get(name))) diff.attachInterfaces.push(want);
  }
  return diff;
}

function interfaceChanged(want: InterfaceConfig, have: { transport: string; mac: string }, configured: InterfaceConfig | undefined): boolean {
  if (want.transport !== have.transport) return true;
  if (want.mac !== undefined && want.mac.toLowerCase() !== have.mac.toLowerCase()) return true;
  // Transport settings (switch, group, ifname) are only known from what was configured.
  if (configured !== undefined && stableJson({ ...configured, mac: undefined }) !== stableJson({ ...want, mac: undefined })) return true;
  return false;
}

function devicesDiffer(config: MachineConfig, actual: MachineSnapshot): boolean {
  const d = deviceDiff(config, actual);
  return d.attachDisks.length + d.detachDisks.length + d.attachInterfaces.length + d.detachInterfaces.length > 0;
}

/** Differences a running guest cannot take live, in words for the RestartRequired condition. */
export function pendingRestart(config: MachineConfig, actual: MachineSnapshot): string[] {
  const running = actual.config;
  const reasons: string[] = [];
  if (config.memoryBytes !== running.memoryBytes) reasons.push(`memory ${mib(running.memoryBytes)} → ${mib(config.memoryBytes)}`);
  if (config.kernel !== running.kernel) reasons.push(`kernel ${running.kernel} → ${config.kernel}`);
  if (stableJson(config.cmdline) !== stableJson(running.cmdline)) reasons.push(`cmdline [${running.cmdline.join(' ')}] → [${config.cmdline.join(' ')}]`);
  if (rootDiskOf(config) !== rootDiskOf(running)) reasons.push(`root disk ${rootDiskOf(running)} → ${rootDiskOf(config)}`);
  const root = rootDiskOf(running);
  const wantRoot = config.disks.find((d) => d.name === root);
  const haveRoot = actual.disks.find((d) => d.name === root) ?? running.disks.find((d) => d.name === root);
  if (wantRoot && haveRoot && (wantRoot.image !== haveRoot.image || wantRoot.mode !== haveRoot.mode)) {
    reasons.push(`root disk ${root} ${haveRoot.image} (${haveRoot.mode}) → ${wantRoot.image} (${wantRoot.mode})`);
  } else if (!wantRoot && haveRoot) {
    reasons.push(`root disk ${root} removed from the spec`);
  }
  return reasons;
}

function mib(bytes: number): string {
  return bytes % 2 ** 20 === 0 ? `${bytes / 2 ** 20}Mi` : `${bytes} bytes`;
}

function minDelay(a: number | undefined, b: number): number {
  return a === undefined ? b : Math.min(a, b);
}

/** JSON with sorted keys, undefined dropped: equality of plain data regardless of key order. */
export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}
