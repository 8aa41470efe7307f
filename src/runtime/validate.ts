// Checks a MachineConfig before anything touches the node. Pure: the effects (does the kernel
// exist, is the image a file) are checked where they happen, in runtime.ts's start. The agent validates too; this is defence in
// depth, because the runtime is the layer that turns names into paths.
import type { DiskConfig, InterfaceConfig, MachineConfig } from './types.ts';
import { MACHINE_ID_PATTERN } from './paths.ts';

export const MIN_MEMORY_BYTES = 40 * 1024 * 1024;
export const DISK_NAME_PATTERN = /^ubd([0-9]|1[0-5])$/;
export const ETH_NAME_PATTERN = /^eth([0-9]|[1-9][0-9])$/;
export const VEC_NAME_PATTERN = /^vec([0-9]|[1-9][0-9])$/;
export const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME_PATTERN = /^[a-zA-Z0-9_.-]{1,15}$/;
const SWITCH_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
const IPV4_PATTERN = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Returns the problems found, each a sentence; empty when the config is usable. */
export function configProblems(config: MachineConfig): string[] {
  const problems: string[] = [];
  if (!MACHINE_ID_PATTERN.test(config.id)) {
    problems.push(`id "${config.id}" must be 1-12 characters of [a-z0-9] (it names socket paths, which must stay under 108 bytes)`);
  }
  if (!config.kernel.startsWith('/')) problems.push(`kernel path "${config.kernel}" must be absolute`);
  if (!Number.isInteger(config.memoryBytes) || config.memoryBytes < MIN_MEMORY_BYTES) {
    problems.push(
      `memory ${config.memoryBytes} bytes is too little: UML needs at least ${MIN_MEMORY_BYTES / 1048576} MiB ` +
        `(below that it may deadlock on memory while booting)`,
    );
  }
  for (const arg of [...config.cmdline, ...config.defaultArgs]) {
    if (/[\s\0]/.test(arg) || arg === '') problems.push(`kernel argument "${arg}" must be one non-empty word without whitespace or NUL`);
  }
  const diskNames = new Set<string>();
  for (const disk of config.disks) {
    problems.push(...diskProblems(disk));
    if (diskNames.has(disk.name)) problems.push(`disk ${disk.name} is listed twice`);
    diskNames.add(disk.name);
  }
  const rootDisk = config.rootDisk ?? 'ubd0';
  if (!DISK_NAME_PATTERN.test(rootDisk)) problems.push(`root disk "${rootDisk}" is not a ubd device name (ubd0..ubd15)`);
  else if (config.disks.length > 0 && !diskNames.has(rootDisk)) problems.push(`root disk ${rootDisk} is not among the disks`);
  if (config.disks.length === 0) problems.push('no disks: the root filesystem needs one (ubd0)');
  const ifNames = new Set<string>();
  for (const iface of config.interfaces) {
    problems.push(...interfaceProblems(iface));
    if (ifNames.has(iface.name)) problems.push(`interface ${iface.name} is listed twice`);
    ifNames.add(iface.name);
  }
  return problems;
}

export function imageNameProblem(image: string): string | undefined {
  if (image === '' || image.includes('\0')) return `image name "${image}" is empty or contains NUL`;
  if (image.startsWith('/')) return `image "${image}" is an absolute path; name a file under the image root`;
  if (image.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    return `image "${image}" contains "..", "." or an empty path segment; name a file under the image root`;
  }
  if (/[,\s=:]/.test(image)) return `image "${image}" contains a comma, colon, "=" or whitespace, which the kernel command line cannot carry`;
  return undefined;
}

export function diskProblems(disk: DiskConfig): string[] {
  const problems: string[] = [];
  if (!DISK_NAME_PATTERN.test(disk.name)) problems.push(`disk name "${disk.name}" must be ubd0..ubd15`);
  const imageProblem = imageNameProblem(disk.image);
  if (imageProblem) problems.push(`disk ${disk.name}: ${imageProblem}`);
  if (!['cow', 'readWrite', 'readOnly'].includes(disk.mode)) problems.push(`disk ${disk.name}: mode "${disk.mode}" must be cow, readWrite or readOnly`);
  return problems;
}

export function interfaceProblems(iface: InterfaceConfig): string[] {
  const problems: string[] = [];
  const where = `interface ${iface.name}`;
  if (iface.mac !== undefined && !MAC_PATTERN.test(iface.mac)) problems.push(`${where}: MAC "${iface.mac}" must look like fe:fd:0a:00:00:01 (lower case)`);
  if (ETH_NAME_PATTERN.test(iface.name)) {
    switch (iface.transport) {
      case 'mcast': {
        const m = iface.mcast;
        if (!m || !isIpv4(m.group) || !isPort(m.port) || (m.ttl !== undefined && !(Number.isInteger(m.ttl) && m.ttl >= 0 && m.ttl <= 255))) {
          problems.push(`${where}: mcast needs {group: IPv4 address, port: 1-65535, ttl?: 0-255}`);
        }
        break;
      }
      case 'daemon':
        if (!iface.daemon || !SWITCH_NAME_PATTERN.test(iface.daemon.switch)) {
          problems.push(`${where}: daemon needs {switch: name of [a-z0-9-], at most 32 characters}`);
        }
        break;
      case 'tuntap':
        if (!iface.tuntap || !IFNAME_PATTERN.test(iface.tuntap.ifname)) problems.push(`${where}: tuntap needs {ifname: a host interface name}`);
        break;
      default:
        problems.push(`${where}: transport "${iface.transport}" is not supported on the legacy ethN driver here (use mcast, daemon or tuntap)`);
    }
  } else if (VEC_NAME_PATTERN.test(iface.name)) {
    if (iface.transport !== 'tap') problems.push(`${where}: transport "${iface.transport}" is not supported on vecN here (use tap)`);
    else if (!iface.tap || (iface.tap.ifname === undefined && iface.tap.switch === undefined)) {
      problems.push(`${where}: tap needs {ifname: a host tap device} or {switch: a node LAN name}, or both`);
    } else {
      if (iface.tap.ifname !== undefined && !IFNAME_PATTERN.test(iface.tap.ifname)) problems.push(`${where}: tap.ifname "${iface.tap.ifname}" is not a host interface name`);
      if (iface.tap.switch !== undefined && !SWITCH_NAME_PATTERN.test(iface.tap.switch)) problems.push(`${where}: tap.switch needs a name of [a-z0-9-], at most 32 characters`);
    }
  } else {
    problems.push(`interface name "${iface.name}" must be ethN (legacy driver) or vecN (vector driver)`);
  }
  return problems;
}

function isIpv4(s: unknown): boolean {
  if (typeof s !== 'string') return false;
  const m = IPV4_PATTERN.exec(s);
  return m !== null && m.slice(1).every((part) => Number(part) <= 255);
}

function isPort(n: unknown): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 65536;
}
