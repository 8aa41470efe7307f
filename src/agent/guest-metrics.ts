// Per-machine figures on /metrics, read on scrape, with nothing installed in the guest: from the
// guest kernel through mconsole `proc` and from the host (src/runtime/guest-stats.ts), plus
// what the agent knows (phase, restarts, boot time). Named after KubeVirt's kubevirt_vmi_*
// family: umlmon_guest_* is what the guest kernel reports, umlmon_machine_* what the host sees
// of the machine and what the agent knows; every series is labelled namespace, name and node.
//
// Cost stays bounded whatever scrapes: nothing is read between scrapes; a guest's reading is
// reused for `maxAgeMs` (two scrapes in a row ask the guest once); each guest has its own
// mconsole client (one request in flight on it, never queued in front of the reconciler's,
// which uses the runtime's), with a short timeout; a scrape waits at most `scrapeBudgetMs` for
// fresh readings and serves the last ones of guests that are slower. Paused guests are not
// asked (the host figures still are).
import type { Phase, UmlMachine } from '../api/types.ts';
import { MconsoleClient } from '../runtime/mconsole/index.ts';
import { readGuestStats, readHostStats, type GuestStats, type HostStats } from '../runtime/guest-stats.ts';
import type { MachineSnapshot, Runtime } from '../runtime/types.ts';
import { keyFromLabels } from './machine-config.ts';
import type { Counter, Gauge, Registry } from './metrics.ts';
import { keyOf, namespaceOf } from './object-key.ts';

const LABELS = ['namespace', 'name', 'node'] as const;
const PHASES: Phase[] = ['Pending', 'Starting', 'Running', 'Paused', 'Stopping', 'Stopped', 'Failed', 'Unknown'];

export interface GuestMetricsOptions {
  nodeName: string;
  runtime: Pick<Runtime, 'list'>;
  /** The machine objects (for phase and restarts, and to label machines not running). */
  objects: () => UmlMachine[];
  /** A guest's reading is reused this long (default 5000 ms). */
  maxAgeMs?: number;
  /** Longest a scrape waits for guests' fresh readings (default 2000 ms). */
  scrapeBudgetMs?: number;
  /** Timeout of one mconsole request of a sample (default 1000 ms). */
  requestTimeoutMs?: number;
  now?: () => number;
}

interface Sampler {
  socket: string;
  client: MconsoleClient;
  reading?: { at: number; stats: GuestStats };
  inFlight?: Promise<void>;
}

type Labels = Record<(typeof LABELS)[number], string>;

export class GuestMetrics {
  readonly #options: Required<Omit<GuestMetricsOptions, 'now'>> & { now: () => number };
  readonly #samplers = new Map<string, Sampler>();
  #scrape: Promise<void> | undefined;
  readonly #g: Record<string, Gauge> = {};
  readonly #c: Record<string, Counter> = {};

  constructor(registry: Registry, options: GuestMetricsOptions) {
    this.#options = {
      maxAgeMs: 5000, scrapeBudgetMs: 2000, requestTimeoutMs: 1000, now: Date.now, ...options,
    };
    const gauge = (name: string, help: string, extra: string[] = []): void => {
      this.#g[name] = registry.gauge(name, help, [...LABELS, ...extra]);
    };
    const counter = (name: string, help: string, extra: string[] = []): void => {
      this.#c[name] = registry.counter(name, help, [...LABELS, ...extra]);
    };
    // What the agent knows.
    gauge('umlmon_machine_phase', 'The machine\'s status phase: 1 for the current one, 0 for the others.', ['phase']);
    gauge('umlmon_machine_restarts', 'Times the agent restarted the guest after it exited (status.restartCount).');
    gauge('umlmon_machine_boot_seconds', 'Seconds from starting the kernel to the guest having booted, for the current run.');
    gauge('umlmon_machine_start_time_seconds', 'Start time of the current kernel process since the Unix epoch.');
    gauge('umlmon_machine_info', 'Always 1: the current kernel\'s umid and version.', ['umid', 'kernel_version']);
    // The host's view.
    counter('umlmon_machine_cpu_seconds_total', 'CPU time used by the machine\'s cgroup (the UML kernel, its helpers and the guest\'s processes).');
    gauge('umlmon_machine_memory_usage_bytes', 'Memory charged to the machine\'s cgroup (guest memory in the tmpfs memory file included).');
    gauge('umlmon_machine_memory_limit_bytes', 'Memory limit of the machine\'s cgroup.');
    counter('umlmon_machine_storage_read_bytes_total', 'Bytes the machine\'s kernel process made the host read from storage (all its disk files).');
    counter('umlmon_machine_storage_write_bytes_total', 'Bytes the machine\'s kernel process made the host write to storage (all its disk files).');
    // The host tap devices, from the guest's side (the tap's transmit is the guest's receive).
    for (const [metric, help] of [
      ['receive_bytes', 'Bytes received by the guest interface, counted on its host tap device.'],
      ['transmit_bytes', 'Bytes sent by the guest interface, counted on its host tap device.'],
      ['receive_packets', 'Packets received by the guest interface, counted on its host tap device.'],
      ['transmit_packets', 'Packets sent by the guest interface, counted on its host tap device.'],
      ['receive_errors', 'Receive errors of the guest interface, counted on its host tap device.'],
      ['transmit_errors', 'Transmit errors of the guest interface, counted on its host tap device.'],
      ['receive_packets_dropped', 'Packets to the guest interface dropped on its host tap device.'],
      ['transmit_packets_dropped', 'Packets from the guest interface dropped on its host tap device.'],
    ] as const) counter(`umlmon_guest_network_${metric}_total`, help, ['interface', 'host_device']);
    // The guest kernel's own figures (mconsole proc).
    gauge('umlmon_guest_memory_total_bytes', 'MemTotal of the guest\'s /proc/meminfo.');
    gauge('umlmon_guest_memory_available_bytes', 'MemAvailable of the guest\'s /proc/meminfo: memory available to start new applications.');
    gauge('umlmon_guest_memory_free_bytes', 'MemFree of the guest\'s /proc/meminfo.');
    gauge('umlmon_guest_memory_cached_bytes', 'Cached of the guest\'s /proc/meminfo (page cache).');
    gauge('umlmon_guest_memory_buffers_bytes', 'Buffers of the guest\'s /proc/meminfo.');
    gauge('umlmon_guest_memory_swap_free_bytes', 'SwapFree of the guest\'s /proc/meminfo.');
    counter('umlmon_guest_memory_pgmajfault_total', 'Major page faults in the guest (/proc/vmstat pgmajfault).');
    counter('umlmon_guest_memory_pgminfault_total', 'Minor page faults in the guest (/proc/vmstat pgfault - pgmajfault).');
    counter('umlmon_guest_memory_swap_in_bytes_total', 'Bytes swapped in by the guest (/proc/vmstat pswpin, 4 KiB pages).');
    counter('umlmon_guest_memory_swap_out_bytes_total', 'Bytes swapped out by the guest (/proc/vmstat pswpout, 4 KiB pages).');
    counter('umlmon_guest_cpu_seconds_total', 'CPU time of the guest by mode, from its /proc/stat.', ['mode']);
    counter('umlmon_guest_context_switches_total', 'Context switches in the guest (/proc/stat ctxt).');
    counter('umlmon_guest_forks_total', 'Processes created in the guest (/proc/stat processes).');
    gauge('umlmon_guest_load1', 'The guest\'s 1-minute load average.');
    gauge('umlmon_guest_load5', 'The guest\'s 5-minute load average.');
    gauge('umlmon_guest_load15', 'The guest\'s 15-minute load average.');
    gauge('umlmon_guest_processes', 'Processes (threads) in the guest (/proc/loadavg).');
    gauge('umlmon_guest_processes_running', 'Runnable processes in the guest (/proc/stat procs_running).');
    gauge('umlmon_guest_uptime_seconds', 'Seconds since the guest kernel booted (/proc/uptime).');
    counter('umlmon_guest_storage_read_bytes_total', 'Bytes read from the guest block device (/proc/diskstats).', ['drive']);
    counter('umlmon_guest_storage_write_bytes_total', 'Bytes written to the guest block device (/proc/diskstats).', ['drive']);
    counter('umlmon_guest_storage_iops_read_total', 'Read requests completed on the guest block device.', ['drive']);
    counter('umlmon_guest_storage_iops_write_total', 'Write requests completed on the guest block device.', ['drive']);
    counter('umlmon_guest_storage_read_times_seconds_total', 'Seconds spent on reads of the guest block device.', ['drive']);
    counter('umlmon_guest_storage_write_times_seconds_total', 'Seconds spent on writes of the guest block device.', ['drive']);
    gauge('umlmon_guest_sample_age_seconds', 'Age of the guest figures served: 0 when read for this scrape, more when the guest was slow to answer.');
  }

  /** Reads what is due and sets every series. Concurrent scrapes share one update. */
  update(): Promise<void> {
    this.#scrape ??= this.#update().finally(() => { this.#scrape = undefined; });
    return this.#scrape;
  }

  async #update(): Promise<void> {
    const now = this.#options.now();
    const machines = this.#options.runtime.list().filter((m) => m.state !== 'exited');
    const live = new Set(machines.map((m) => m.id));
    for (const [id, sampler] of this.#samplers) {
      if (!live.has(id)) { sampler.client.close(); this.#samplers.delete(id); }
    }
    const due: Promise<void>[] = [];
    for (const m of machines) {
      if (m.state !== 'running' || !m.mconsoleSocket) continue;
      const sampler = this.#sampler(m.id, m.mconsoleSocket);
      if (sampler.reading && now - sampler.reading.at < this.#options.maxAgeMs) continue;
      sampler.inFlight ??= readGuestStats(sampler.client)
        .then((stats) => { sampler.reading = { at: this.#options.now(), stats }; })
        .catch(() => { /* the last reading stays */ })
        .finally(() => { sampler.inFlight = undefined; });
      due.push(sampler.inFlight);
    }
    if (due.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(due), new Promise<void>((resolve) => { timer = setTimeout(resolve, this.#options.scrapeBudgetMs); })]);
      clearTimeout(timer);
    }
    this.#render(machines);
  }

  #sampler(id: string, socket: string): Sampler {
    let s = this.#samplers.get(id);
    if (s && s.socket !== socket) {
      s.client.close();
      s = undefined;
    }
    if (!s) {
      s = { socket, client: new MconsoleClient(socket, { timeoutMs: this.#options.requestTimeoutMs, name: id }) };
      this.#samplers.set(id, s);
    }
    return s;
  }

  #render(machines: MachineSnapshot[]): void {
    for (const metric of [...Object.values(this.#g), ...Object.values(this.#c)]) metric.reset();
    const node = this.#options.nodeName;
    const byKey = new Map(machines.map((m) => [keyFromLabels(m.config.labels) ?? m.name, m]));
    const now = this.#options.now();
    for (const object of this.#options.objects()) {
      const key = keyOf(object);
      const labels: Labels = { namespace: namespaceOf(object), name: object.metadata.name, node };
      const phase = object.status?.phase ?? 'Pending';
      for (const p of PHASES) this.#g.umlmon_machine_phase!.set({ ...labels, phase: p }, p === phase ? 1 : 0);
      this.#g.umlmon_machine_restarts!.set(labels, object.status?.restartCount ?? 0);
      const m = byKey.get(key);
      if (m) this.#machine(labels, m, now);
    }
  }

  #machine(labels: Labels, m: MachineSnapshot, now: number): void {
    const g = this.#g;
    const c = this.#c;
    if (m.startTime) g.umlmon_machine_start_time_seconds!.set(labels, m.startTime.getTime() / 1000);
    if (m.startTime && m.bootTime) g.umlmon_machine_boot_seconds!.set(labels, (m.bootTime.getTime() - m.startTime.getTime()) / 1000);
    g.umlmon_machine_info!.set({ ...labels, umid: m.id, kernel_version: m.kernelVersion ?? '' }, 1);
    this.#host(labels, readHostStats(m));
    const reading = this.#samplers.get(m.id)?.reading;
    if (!reading || m.state !== 'running') return;
    g.umlmon_guest_sample_age_seconds!.set(labels, Math.max(0, (now - reading.at) / 1000));
    const s = reading.stats;
    const mem = s.memory ?? {};
    const setIf = (metric: Gauge, v: number | undefined): void => { if (v !== undefined) metric.set(labels, v); };
    setIf(g.umlmon_guest_memory_total_bytes!, mem.MemTotal);
    setIf(g.umlmon_guest_memory_available_bytes!, mem.MemAvailable);
    setIf(g.umlmon_guest_memory_free_bytes!, mem.MemFree);
    setIf(g.umlmon_guest_memory_cached_bytes!, mem.Cached);
    setIf(g.umlmon_guest_memory_buffers_bytes!, mem.Buffers);
    setIf(g.umlmon_guest_memory_swap_free_bytes!, mem.SwapFree);
    const vm = s.vmstat ?? {};
    const incIf = (metric: Counter, v: number | undefined, extra: Record<string, string> = {}): void => {
      if (v !== undefined && v >= 0) metric.inc({ ...labels, ...extra }, v);
    };
    incIf(c.umlmon_guest_memory_pgmajfault_total!, vm.pgmajfault);
    incIf(c.umlmon_guest_memory_pgminfault_total!, vm.pgfault !== undefined && vm.pgmajfault !== undefined ? vm.pgfault - vm.pgmajfault : undefined);
    incIf(c.umlmon_guest_memory_swap_in_bytes_total!, vm.pswpin !== undefined ? vm.pswpin * 4096 : undefined);
    incIf(c.umlmon_guest_memory_swap_out_bytes_total!, vm.pswpout !== undefined ? vm.pswpout * 4096 : undefined);
    if (s.cpu) {
      for (const [mode, seconds] of Object.entries(s.cpu.seconds)) incIf(c.umlmon_guest_cpu_seconds_total!, seconds, { mode });
      incIf(c.umlmon_guest_context_switches_total!, s.cpu.contextSwitches);
      incIf(c.umlmon_guest_forks_total!, s.cpu.forks);
      setIf(g.umlmon_guest_processes_running!, s.cpu.procsRunning);
    }
    if (s.load) {
      g.umlmon_guest_load1!.set(labels, s.load.load1);
      g.umlmon_guest_load5!.set(labels, s.load.load5);
      g.umlmon_guest_load15!.set(labels, s.load.load15);
      g.umlmon_guest_processes!.set(labels, s.load.total);
    }
    setIf(g.umlmon_guest_uptime_seconds!, s.uptimeSeconds);
    for (const d of s.disks ?? []) {
      const drive = { drive: d.device };
      incIf(c.umlmon_guest_storage_read_bytes_total!, d.readBytes, drive);
      incIf(c.umlmon_guest_storage_write_bytes_total!, d.writtenBytes, drive);
      incIf(c.umlmon_guest_storage_iops_read_total!, d.reads, drive);
      incIf(c.umlmon_guest_storage_iops_write_total!, d.writes, drive);
      incIf(c.umlmon_guest_storage_read_times_seconds_total!, d.readSeconds, drive);
      incIf(c.umlmon_guest_storage_write_times_seconds_total!, d.writeSeconds, drive);
    }
  }

  #host(labels: Labels, h: HostStats): void {
    const c = this.#c;
    const g = this.#g;
    if (h.cpuSeconds !== undefined) c.umlmon_machine_cpu_seconds_total!.inc(labels, h.cpuSeconds);
    if (h.memoryBytes !== undefined) g.umlmon_machine_memory_usage_bytes!.set(labels, h.memoryBytes);
    if (h.memoryLimitBytes !== undefined) g.umlmon_machine_memory_limit_bytes!.set(labels, h.memoryLimitBytes);
    if (h.readBytes !== undefined) c.umlmon_machine_storage_read_bytes_total!.inc(labels, h.readBytes);
    if (h.writtenBytes !== undefined) c.umlmon_machine_storage_write_bytes_total!.inc(labels, h.writtenBytes);
    for (const i of h.interfaces) {
      const l = { ...labels, interface: i.name, host_device: i.hostDevice };
      const n = i.counters;
      // The tap's transmit is what the guest receives, and the other way round.
      c.umlmon_guest_network_receive_bytes_total!.inc(l, n.txBytes);
      c.umlmon_guest_network_transmit_bytes_total!.inc(l, n.rxBytes);
      c.umlmon_guest_network_receive_packets_total!.inc(l, n.txPackets);
      c.umlmon_guest_network_transmit_packets_total!.inc(l, n.rxPackets);
      c.umlmon_guest_network_receive_errors_total!.inc(l, n.txErrors);
      c.umlmon_guest_network_transmit_errors_total!.inc(l, n.rxErrors);
      c.umlmon_guest_network_receive_packets_dropped_total!.inc(l, n.txDropped);
      c.umlmon_guest_network_transmit_packets_dropped_total!.inc(l, n.rxDropped);
    }
  }

  close(): void {
    for (const s of this.#samplers.values()) s.client.close();
    this.#samplers.clear();
  }
}
