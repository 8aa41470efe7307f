// Host tap devices for `tuntap` (ethN) and `tap` (vecN) interfaces. The jailed kernel has no
// capabilities, so the device must exist and be owned by the machine's uid before the kernel
// attaches to it: the runtime creates it (and later deletes it) unless it already exists.
import { execFile } from 'node:child_process';
import { util } from '../builtins.ts';
import { sha256Hex } from '../sha256.ts';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';

// The agent's one thread runs every machine's reconcile: `ip` runs beside it, not in its way.
const execFileAsync = util.promisify(execFile);

function sysNet(ifname: string, file?: string): string {
  return file ? `/sys/class/net/${ifname}/${file}` : `/sys/class/net/${ifname}`;
}

/** Why an existing host interface cannot serve as this machine's tap device, if it cannot. */
export function tapDeviceProblem(ifname: string, uid: number): string | undefined {
  if (!existsSync(sysNet(ifname, 'tun_flags'))) return `host interface ${ifname} exists and is not a tap device`;
  const owner = readFileSync(sysNet(ifname, 'owner'), 'utf8').trim();
  if (owner !== String(uid)) {
    return `tap device ${ifname} exists but is owned by uid ${owner === '-1' ? '(none)' : owner}, not by this machine's uid ${uid}; ` +
      `delete it or create it with "ip tuntap add dev ${ifname} mode tap user ${uid}"`;
  }
  return undefined;
}

/** Makes sure a tap device the machine's uid may attach to exists; true when created here. */
export async function ensureTapDevice(ifname: string, uid: number, gid: number): Promise<boolean> {
  if (existsSync(sysNet(ifname))) {
    const problem = tapDeviceProblem(ifname, uid);
    if (problem) throw new Error(problem);
    return false;
  }
  try {
    await execFileAsync('ip', ['tuntap', 'add', 'dev', ifname, 'mode', 'tap', 'user', String(uid), 'group', String(gid)]);
    await execFileAsync('ip', ['link', 'set', ifname, 'up']);
  } catch (error) {
    const stderr = (error as { stderr?: string | Buffer }).stderr?.toString().trim();
    throw new Error(`cannot create tap device ${ifname}: ${stderr || (error as Error).message} (needs CAP_NET_ADMIN on the host)`);
  }
  return true;
}

export async function deleteTapDevice(ifname: string): Promise<void> {
  if (!existsSync(sysNet(ifname))) return;
  await ip(['link', 'del', ifname]);
}

// ---- node LANs for the vector driver ------------------------------------------------------
// Kernels >= 6.16 have no uml_switch transport. A LAN that guests share by name (`tap:
// {switch: lan0}`) is a Linux bridge on the host, one per LAN name and state directory, with
// each guest's vector tap device as a port. The bridge has no address: the host does not take
// part in the LAN, and nothing is routed or forwarded (ip_forward stays as it is). The agent
// creates the bridge on first use and deletes it when its last port goes.

/** Interface names are at most 15 bytes: a short hash keeps them unique and within that. */
function shortHash(...parts: string[]): string {
  return sha256Hex(parts.join('\0')).slice(0, 10);
}

/** The host bridge of a node LAN: "umlbr" + a hash of the state directory and the LAN name. */
export function lanBridgeName(stateDir: string, lan: string): string {
  return `umlbr${shortHash(stateDir, lan)}`;
}

/**
 * The tap device the runtime names for a guest interface that gives no ifname of its own:
 * "umltap" + a hash of the state directory, the machine and the interface (machine ids are
 * unique within one state directory, tap names on the whole host).
 */
export function generatedTapName(stateDir: string, machineId: string, ifaceName: string): string {
  return `umltap${shortHash(stateDir, machineId, ifaceName).slice(0, 9)}`;
}

async function ip(args: string[]): Promise<void> {
  try {
    await execFileAsync('ip', args);
  } catch (error) {
    const stderr = (error as { stderr?: string | Buffer }).stderr?.toString().trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr || (error as Error).message} (needs CAP_NET_ADMIN on the host)`);
  }
}

/** The host keeps out of a LAN it only bridges: no IPv6 autoconfiguration on the bridge. */
function keepHostOff(ifname: string): void {
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, '1');
  } catch {
    /* no IPv6 on this host */
  }
}

/** Creates the LAN's bridge unless it exists. */
export async function ensureLanBridge(bridge: string): Promise<void> {
  if (existsSync(sysNet(bridge))) {
    if (!existsSync(sysNet(bridge, 'bridge'))) throw new Error(`host interface ${bridge} exists and is not a bridge`);
    return;
  }
  await ip(['link', 'add', 'name', bridge, 'type', 'bridge']);
  keepHostOff(bridge);
  await ip(['link', 'set', bridge, 'up']);
}

/** Makes the tap device a port of the bridge. */
export async function joinBridge(tap: string, bridge: string): Promise<void> {
  keepHostOff(tap);
  await ip(['link', 'set', tap, 'master', bridge]);
}

/** Takes a tap device out of whatever bridge it is a port of. */
export async function leaveBridge(tap: string): Promise<void> {
  if (existsSync(sysNet(tap, 'master'))) await ip(['link', 'set', tap, 'nomaster']);
}

/** Deletes the bridge once no port is left in it; true when it was deleted. */
export async function deleteLanBridgeIfEmpty(bridge: string): Promise<boolean> {
  if (!existsSync(sysNet(bridge, 'bridge'))) return false;
  let ports: string[];
  try {
    ports = readdirSync(sysNet(bridge, 'brif'));
  } catch {
    return false;
  }
  if (ports.length > 0) return false;
  await ip(['link', 'del', bridge]);
  return true;
}
