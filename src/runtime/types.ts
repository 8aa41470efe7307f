// The runtime's contract: what the node agent asks of the UML layer, and what it hears back.
// The runtime knows nothing about Kubernetes. Everything here is resolved and validated by the
// caller (the agent): paths are absolute, memory is in bytes, names are already checked.

export type DiskMode = 'cow' | 'readWrite' | 'readOnly';

export interface DiskConfig {
  /** ubd0 .. ubd15 */
  name: string;
  /** File name under the runtime's image root (validated: no absolute path, no ".."). */
  image: string;
  mode: DiskMode;
}

export type Transport = 'tap' | 'raw' | 'hybrid' | 'gre' | 'l2tpv3' | 'mcast' | 'daemon' | 'tuntap' | 'slirp' | 'vde';

export interface InterfaceConfig {
  /** ethN (legacy driver) or vecN (vector driver) */
  name: string;
  transport: Transport;
  /** Fixed MAC; when absent the runtime allocates a stable one from the node's MAC pool. */
  mac?: string;
  /** ifname: the host tap device (made by the runtime unless it exists); switch: a node LAN to join. */
  tap?: { ifname?: string; switch?: string };
  raw?: { ifname: string };
  tuntap?: { ifname: string };
  mcast?: { group: string; port: number; ttl?: number };
  daemon?: { switch: string };
  [transportSettings: string]: unknown;
}

export interface MachineConfig {
  /** umid: short ([a-z0-9], at most 12 chars), derived from the object's uid. Names the state dir. */
  id: string;
  /** Human name for logs and errors, e.g. "default/web-1". */
  name: string;
  /** Absolute path of the UML kernel binary on the node (resolved from the agent's kernel table). */
  kernel: string;
  /** Guest RAM in bytes (mem=). */
  memoryBytes: number;
  /** Extra kernel arguments, already checked against the options the runtime owns. */
  cmdline: string[];
  /** Kernel arguments the agent's config adds to every boot (the fast-boot defaults). */
  defaultArgs: string[];
  disks: DiskConfig[];
  interfaces: InterfaceConfig[];
  /** The disk that holds the root filesystem (default ubd0). */
  rootDisk?: string;
  /** Free-form data the caller wants back after adoption (e.g. the object's uid, spec hash). */
  labels?: Record<string, string>;
}

/** The runtime's view of one machine. */
export type MachineState =
  | 'starting' // process exec'd, mconsole not yet up
  | 'running' // mconsole answers; see `booted` for kernel boot completion
  | 'paused' // mconsole `stop`
  | 'stopping' // graceful shutdown in progress
  | 'exited' // the kernel process is gone
  | 'unknown'; // process present but mconsole does not answer: never killed for it

export interface AttachedDisk {
  name: string;
  image: string;
  mode: DiskMode;
  /** What the kernel reports (mconsole `config ubdN`), e.g. the backing file inside the jail. */
  backing?: string;
  /**
   * The kernel was told about the disk but does not have it (absent from the guest's
   * /proc/partitions), in the kernel's words. It stays so until the next start: removing a
   * device the kernel failed to open panics it.
   */
  refused?: string;
}

export interface AttachedInterface {
  name: string;
  transport: Transport;
  mac: string;
  /** The node LAN the interface is on: a `daemon` interface's uml_switch, or a `tap` interface's bridge. */
  switch?: string;
  /** The host bridge that makes the LAN of a vector `tap: {switch}` interface. */
  lanBridge?: string;
  /** The host tap device of a `tuntap`/`tap` interface. */
  hostInterface?: string;
  /** True when the runtime created that tap device (and deletes it with the machine). */
  hostInterfaceCreated?: boolean;
  /** The kernel was told about the interface but has no such device, and why. */
  refused?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** The last panic message seen on the notify socket, if any. */
  panic?: string;
  /**
   * Set when the kernel cannot run userspace on this host (its FP state does not fit the
   * host's XSAVE area): why, in words naming the kernel and the fix. Restarting cannot help.
   */
  kernelIncompatible?: string;
  at: Date;
}

/**
 * What the runtime knows of one machine at the moment it was asked (list(), get(), start()): a
 * fresh object, not a live view (its config is shared: do not change it). The API's
 * UmlMachineStatus is what the agent reports from it.
 */
export interface MachineSnapshot {
  id: string;
  name: string;
  state: MachineState;
  pid?: number;
  /** When the kernel process started (from /proc/<pid>/stat, survives agent restarts). */
  startTime?: Date;
  /** When the kernel finished booting ("Run /init as init process" seen). */
  bootTime?: Date;
  kernelVersion?: string;
  config: MachineConfig;
  disks: AttachedDisk[];
  interfaces: AttachedInterface[];
  consoles: { name: string; hostDevice: string }[];
  exit?: ExitInfo;
  /** Why the state is `unknown`, or the last error talking to the machine. */
  message?: string;
  /** Host path of the kernel's mconsole socket (as the kernel reported it, outside the jail). */
  mconsoleSocket?: string;
  /** Host path of the kernel's console and log file. */
  consoleLog?: string;
  /** Host path of the FIFO the console reads (absent for kernels started without one). */
  consoleInput?: string;
  /** The machine's cgroup directories (empty where the node has none): its CPU and memory figures. */
  cgroupDirs?: string[];
}

export type RuntimeEvent =
  | { type: 'mconsole-ready'; id: string }
  | { type: 'booted'; id: string; at: Date }
  /** After boot the runtime checked the kernel's devices: some may be `refused` now. */
  | { type: 'devices-checked'; id: string }
  /**
   * The init the kernel started first failed and it tried the next (its fallbacks: /sbin/init,
   * /etc/init, /bin/init, /bin/sh). The same boot, not another one: `init` is what it tries now.
   */
  | { type: 'init-fallback'; id: string; failed: string; init: string }
  | { type: 'panic'; id: string; message: string }
  | { type: 'hang'; id: string }
  | { type: 'guest-message'; id: string; message: string }
  | { type: 'exited'; id: string; exit: ExitInfo };

export interface GuestInfo {
  uptimeSeconds: number;
  loadAverage: string;
}

export interface BackupResult {
  startedAt: Date;
  finishedAt: Date;
  /** How long the guest was paused. */
  pausedMs: number;
  /** One entry per copied file. */
  files: { disk: string; source: string; destination: string; bytes: number }[];
  /** Set when the copy failed; the guest was resumed anyway. */
  error?: string;
}

export interface StopOptions {
  /** cad, then wait this long for the kernel to exit, then halt, then kill the process group. */
  gracePeriodMs: number;
}

/**
 * The runtime. One instance per agent process. Machines outlive it: close() releases sockets
 * and watchers but never stops a guest.
 */
export interface Runtime {
  /** Finds every machine in the state directory again (after an agent restart) and takes it over. */
  adoptAll(): Promise<MachineSnapshot[]>;
  list(): MachineSnapshot[];
  get(id: string): MachineSnapshot | undefined;
  /** The machines whose config.labels include every pair given (an index: no scan of the node). */
  select(labels: Record<string, string>): MachineSnapshot[];
  /** Jail, start, and wait until mconsole answers. Booting completes later ('booted' event). */
  start(config: MachineConfig): Promise<MachineSnapshot>;
  /** Graceful stop: cad, grace period, halt, kill. Resolves when the process group is gone. */
  stop(id: string, options: StopOptions): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  attachDisk(id: string, disk: DiskConfig): Promise<AttachedDisk>;
  detachDisk(id: string, name: string): Promise<void>;
  attachInterface(id: string, iface: InterfaceConfig): Promise<AttachedInterface>;
  detachInterface(id: string, name: string): Promise<void>;
  /** stop, sysrq s, sparse copy of writable files into destinationDir, go (always). */
  backup(id: string, destinationDir: string): Promise<BackupResult>;
  guestInfo(id: string): Promise<GuestInfo>;
  /** Removes the machine's jail and state (private COW files too); readWrite images are kept. */
  remove(id: string): Promise<void>;
  /** Subscribe to node events. Returns an unsubscribe function. */
  onEvent(listener: (event: RuntimeEvent) => void): () => void;
  close(): Promise<void>;
}

/** pino-compatible logger: the runtime logs structured objects with a message. */
export interface RuntimeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface RuntimeOptions {
  /** Where machines, locks and the MAC pool live (default /var/lib/umlmon). Keep it short: socket paths below it must stay under 108 bytes. */
  stateDir?: string;
  /** Directory that DiskConfig.image names are relative to. */
  imageRoot: string;
  /** Per-machine unprivileged uids/gids are taken from [first, first + count) (default 200000, 65536). */
  uidRange?: { first: number; count: number };
  /** The memory file's tmpfs is memory + this many bytes (default 16 MiB). */
  tmpfsSlackBytes?: number;
  /** The cgroup memory limit is memory + tmpfs slack + this many bytes (default 96 MiB). */
  cgroupOverheadBytes?: number;
  /** Name of the parent cgroup the machines' cgroups are made under (default "umlmon"). */
  cgroupParent?: string;
  /** Timeout for one mconsole request (default 5000 ms). */
  mconsoleTimeoutMs?: number;
  /** How long start() waits for mconsole to come up (default 60000 ms). */
  startTimeoutMs?: number;
  /** The uml_switch binary used for `daemon` interfaces (default "uml_switch"). */
  umlSwitch?: string;
  /** console.log is rotated (one old copy, console.log.1) once larger than this (default 4 MiB; 0: never). */
  consoleLogMaxBytes?: number;
  /**
   * con0 is a pty, which passes a terminal's size to the guest (jail.ts), where the node has
   * perl (default); false: the FIFO and the log alone, as on a node without perl.
   */
  consolePty?: boolean;
  logger?: RuntimeLogger;
}
