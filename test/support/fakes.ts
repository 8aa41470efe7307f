// In-memory stand-ins for the agent's two seams (src/agent/source.ts, src/runtime/types.ts), for
// tests of the agent's core without a kernel or an API server. The source behaves as an
// informer's cache does (its own status writes come back as changes, a 404 on patch); the
// runtime keeps machines in a map and the test drives boots, panics and exits.
import { FINALIZER, type UmlMachine, type UmlMachineStatus } from '../../src/api/types.ts';
import { keyOf, ObjectGoneError, type EventType, type MachineKey, type MachineSource } from '../../src/agent/source.ts';
import { mergePatch } from '../../src/agent/sources/directory.ts';
import type {
  AttachedDisk, AttachedInterface, BackupResult, DiskConfig, ExitInfo, GuestInfo, InterfaceConfig, MachineConfig, MachineSnapshot, Runtime, RuntimeEvent, StopOptions,
} from '../../src/runtime/types.ts';

export class FakeSource implements MachineSource {
  readonly kind = 'fake';
  objects = new Map<MachineKey, UmlMachine>();
  events: { key: string; type: EventType; reason: string; message: string }[] = [];
  patches: { key: string; status: UmlMachineStatus }[] = [];
  isSynced = false;
  #onChange: ((key: MachineKey) => void) | undefined;
  #release: (() => void) | undefined;
  readonly #gate: Promise<void>;
  constructor(startSynced = true) {
    this.#gate = new Promise((r) => (this.#release = r));
    if (startSynced) this.sync();
  }
  sync(): void {
    this.isSynced = true;
    this.#release?.();
  }
  async start(onChange: (key: MachineKey) => void): Promise<void> {
    this.#onChange = onChange;
    await this.#gate;
  }
  synced(): boolean {
    return this.isSynced;
  }
  get(key: MachineKey): UmlMachine | undefined {
    return this.objects.get(key);
  }
  list(): UmlMachine[] {
    return [...this.objects.values()];
  }
  put(m: UmlMachine): void {
    const old = this.objects.get(keyOf(m));
    const generation = (old?.metadata.generation ?? 0) + (JSON.stringify(old?.spec) === JSON.stringify(m.spec) ? 0 : 1);
    m.metadata.generation = generation;
    if (old?.status && !m.status) m.status = old.status;
    this.objects.set(keyOf(m), m);
    this.#onChange?.(keyOf(m));
  }
  remove(key: MachineKey): void {
    this.objects.delete(key);
    this.#onChange?.(key);
  }
  /** Keys deleted by "someone else" just before their next status write (an API server's 404). */
  goneOnPatch = new Set<MachineKey>();
  async patchStatus(machine: UmlMachine, status: UmlMachineStatus): Promise<void> {
    const key = keyOf(machine);
    if (this.goneOnPatch.delete(key)) {
      this.objects.delete(key);
      this.#onChange?.(key);
      throw new ObjectGoneError(`machine ${key} is gone (HTTP 404); its status is not written`);
    }
    this.patches.push({ key, status });
    const current = this.objects.get(key);
    if (current) this.objects.set(key, { ...current, status: mergePatch(current.status ?? {}, structuredClone(status)) as UmlMachineStatus });
    // Like a watch: our own write comes back as a change.
    this.#onChange?.(key);
  }
  async ensureFinalizer(machine: UmlMachine, present: boolean): Promise<void> {
    const key = keyOf(machine);
    const current = this.objects.get(key);
    if (!current) return;
    const finalizers = (current.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    if (present) finalizers.push(FINALIZER);
    const next = { ...current, metadata: { ...current.metadata, finalizers } };
    if (!present && next.metadata.deletionTimestamp && finalizers.length === 0) this.objects.delete(key);
    else this.objects.set(key, next);
    this.#onChange?.(key);
  }
  event(machine: UmlMachine, type: EventType, reason: string, message: string): void {
    this.events.push({ key: keyOf(machine), type, reason, message });
  }
  async stop(): Promise<void> {}
  reasons(key: string): string[] {
    return this.events.filter((e) => e.key === key).map((e) => e.reason);
  }
}

/** A runtime that keeps machines in a map; the test drives boots, panics and exits. */
export class FakeRuntime implements Runtime {
  machines = new Map<string, MachineSnapshot>();
  calls: string[] = [];
  listeners = new Set<(e: RuntimeEvent) => void>();
  failNext: Partial<Record<string, Error>> = {};
  autoBoot = true;
  async adoptAll(): Promise<MachineSnapshot[]> {
    this.calls.push('adoptAll');
    return this.list();
  }
  list(): MachineSnapshot[] {
    return [...this.machines.values()];
  }
  get(id: string): MachineSnapshot | undefined {
    return this.machines.get(id);
  }
  select(labels: Record<string, string>): MachineSnapshot[] {
    const pairs = Object.entries(labels);
    return pairs.length === 0 ? [] : this.list().filter((m) => pairs.every(([k, v]) => m.config.labels?.[k] === v));
  }
  failStartAlways = false;
  #fail(op: string): void {
    if (op === 'start' && this.failStartAlways) throw new Error(`machine: start failed (attempt ${this.calls.length})`);
    const e = this.failNext[op];
    if (e) {
      delete this.failNext[op];
      throw e;
    }
  }
  startDelayMs = 0;
  async start(config: MachineConfig): Promise<MachineSnapshot> {
    this.calls.push(`start ${config.id}`);
    this.#fail('start');
    if (this.startDelayMs > 0) await new Promise((r) => setTimeout(r, this.startDelayMs));
    const existing = this.machines.get(config.id);
    if (existing && existing.state !== 'exited') throw new Error('already running');
    const m: MachineSnapshot = {
      id: config.id, name: config.name, state: 'running', pid: 1000 + this.calls.length, startTime: new Date(), kernelVersion: 'Linux 0.0.0-test',
      config, disks: config.disks.map((d) => ({ ...d })), interfaces: [], consoles: [],
    };
    this.machines.set(config.id, m);
    if (this.autoBoot) setImmediate(() => this.boot(config.id));
    return m;
  }
  boot(id: string): void {
    const m = this.machines.get(id);
    if (!m || m.state !== 'running') return;
    m.bootTime = new Date();
    this.emit({ type: 'booted', id, at: m.bootTime });
  }
  exit(id: string, exit: Partial<ExitInfo>): void {
    const m = this.machines.get(id)!;
    m.state = 'exited';
    m.exit = { code: 0, signal: null, at: new Date(), ...exit };
    if (exit.panic) this.emit({ type: 'panic', id, message: exit.panic });
    this.emit({ type: 'exited', id, exit: m.exit });
  }
  async stop(id: string, _o: StopOptions): Promise<void> {
    this.calls.push(`stop ${id}`);
    const m = this.machines.get(id);
    if (m && m.state !== 'exited') this.exit(id, { code: 0 });
  }
  async pause(id: string): Promise<void> {
    this.calls.push(`pause ${id}`);
    this.machines.get(id)!.state = 'paused';
  }
  async resume(id: string): Promise<void> {
    this.calls.push(`resume ${id}`);
    this.machines.get(id)!.state = 'running';
  }
  async attachDisk(id: string, disk: DiskConfig): Promise<AttachedDisk> {
    this.calls.push(`attachDisk ${id} ${disk.name}`);
    this.#fail('attachDisk');
    this.machines.get(id)!.disks.push({ ...disk });
    return disk;
  }
  async detachDisk(id: string, name: string): Promise<void> {
    this.calls.push(`detachDisk ${id} ${name}`);
    const m = this.machines.get(id)!;
    m.disks = m.disks.filter((d) => d.name !== name);
  }
  async attachInterface(id: string, iface: InterfaceConfig): Promise<AttachedInterface> {
    const a = { name: iface.name, transport: iface.transport, mac: iface.mac ?? 'fe:fd:00:00:00:01' };
    this.machines.get(id)!.interfaces.push(a);
    return a;
  }
  async detachInterface(id: string, name: string): Promise<void> {
    const m = this.machines.get(id)!;
    m.interfaces = m.interfaces.filter((i) => i.name !== name);
  }
  async backup(_id: string, _d: string): Promise<BackupResult> {
    throw new Error('not used');
  }
  async guestInfo(_id: string): Promise<GuestInfo> {
    return { uptimeSeconds: 1, loadAverage: '0.00 0.00 0.00' };
  }
  async remove(id: string): Promise<void> {
    this.calls.push(`remove ${id}`);
    this.machines.delete(id);
  }
  onEvent(listener: (e: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(e: RuntimeEvent): void {
    for (const l of this.listeners) l(e);
  }
  async close(): Promise<void> {}
}
