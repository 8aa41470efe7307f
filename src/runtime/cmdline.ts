// The kernel command line and the mconsole `config` strings for devices. Pure functions: what
// the kernel is told, decided from the config and the jail's layout.
import { IN_JAIL } from './paths.ts';
import type { DiskConfig, InterfaceConfig, MachineConfig } from './types.ts';

/** Files of one disk inside the jail. */
export function diskFilesInJail(disk: DiskConfig): { image: string; cow?: string } {
  if (disk.mode === 'cow') return { image: `${IN_JAIL.disks}/${disk.name}.base`, cow: `${IN_JAIL.disks}/${disk.name}.cow` };
  return { image: `${IN_JAIL.disks}/${disk.name}.img` };
}

/** `ubdN=cow,base` (UML makes the COW file), `ubdNr=img` (read-only) or `ubdN=img`. */
export function diskDeviceSpec(disk: DiskConfig): string {
  const files = diskFilesInJail(disk);
  if (disk.mode === 'cow') return `${disk.name}=${files.cow},${files.image}`;
  if (disk.mode === 'readOnly') return `${disk.name}r=${files.image}`;
  return `${disk.name}=${files.image}`;
}

/** /dev/ubda for ubd0, ... /dev/ubdp for ubd15. */
export function diskDeviceNode(name: string): string {
  const n = Number(name.slice(3));
  return `ubd${String.fromCharCode(97 + n)}`;
}

export function interfaceDeviceSpec(iface: InterfaceConfig, mac: string, switchControlInJail?: string): string {
  switch (iface.transport) {
    case 'mcast': {
      const m = iface.mcast!;
      return `${iface.name}=mcast,${mac},${m.group},${m.port},${m.ttl ?? 1}`;
    }
    case 'daemon':
      if (!switchControlInJail) throw new Error(`interface ${iface.name}: daemon transport without a switch socket`);
      return `${iface.name}=daemon,${mac},unix,${switchControlInJail}`;
    case 'tuntap':
      return `${iface.name}=tuntap,${iface.tuntap!.ifname},${mac}`;
    case 'tap':
      return `${iface.name}:transport=tap,ifname=${iface.tap!.ifname},mac=${mac}`;
    default:
      throw new Error(`interface ${iface.name}: transport ${iface.transport} is not supported`);
  }
}

/** mem= in the largest unit that is exact. */
export function memoryArg(bytes: number): string {
  if (bytes % 1048576 === 0) return `mem=${bytes / 1048576}M`;
  return `mem=${Math.ceil(bytes / 1024)}K`;
}

/**
 * The agent's default arguments with `lpj=auto` replaced by the value measured on this node,
 * or dropped while none is known (the kernel then calibrates and we learn it).
 */
export function resolveDefaultArgs(defaultArgs: string[], measuredLpj: number | undefined): string[] {
  return defaultArgs.flatMap((arg) => {
    if (arg !== 'lpj=auto') return [arg];
    return measuredLpj ? [`lpj=${measuredLpj}`] : [];
  });
}

export interface KernelArgsInput {
  config: MachineConfig;
  measuredLpj: number | undefined;
  /** One `ethN=...`/`vecN:...` spec per interface known at start, MACs resolved. */
  interfaceSpecs: string[];
}

/**
 * `quiet` or a console loglevel below 7 would hide the KERN_INFO "Run /sbin/init as init process"
 * line the runtime takes as "booted" (and panics' context): the console is a file in the state
 * directory, so the runtime keeps everything in it with ignore_loglevel.
 */
export function hidesBootLine(args: string[]): boolean {
  if (args.includes('ignore_loglevel')) return false;
  return args.some((arg) => arg === 'quiet' || /^loglevel=[0-6]$/.test(arg));
}

export function kernelArgs({ config, measuredLpj, interfaceSpecs }: KernelArgsInput): string[] {
  const rootDisk = config.rootDisk ?? 'ubd0';
  const extra = [...resolveDefaultArgs(config.defaultArgs, measuredLpj), ...config.cmdline];
  return [
    memoryArg(config.memoryBytes),
    `umid=${config.id}`,
    `uml_dir=${IN_JAIL.umlDir}`,
    `mconsole=notify:${IN_JAIL.notify}`,
    // The console reads fd 0, a FIFO in the state directory (console.in, where `umlmon console`
    // writes), and writes fd 1, console.log opened for append. No pty: a pty needs a reader that
    // outlives the agent, a file never blocks the guest and loses nothing while no agent runs.
    'con0=fd:0,fd:1',
    'con=null',
    'ssl=null',
    ...config.disks.map(diskDeviceSpec),
    `root=/dev/${diskDeviceNode(rootDisk)}`,
    ...interfaceSpecs,
    ...extra,
    ...(hidesBootLine(extra) ? ['ignore_loglevel'] : []),
  ];
}

/** "Calibrating delay loop... 8408.26 BogoMIPS (lpj=42041344)"; not the "(skipped)" preset line. */
export function parseCalibratedLpj(consoleText: string): number | undefined {
  const m = /Calibrating delay loop\.\.\. [\d.]+ BogoMIPS \(lpj=(\d+)\)/.exec(consoleText);
  return m ? Number(m[1]) : undefined;
}
