// Host tap devices for `tuntap` (ethN) and `tap` (vecN) interfaces. The jailed kernel has no
// capabilities, so the device must exist and be owned by the machine's uid before the kernel
// attaches to it: the runtime creates it (and later deletes it) unless it already exists.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

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
export function ensureTapDevice(ifname: string, uid: number, gid: number): boolean {
  if (existsSync(sysNet(ifname))) {
    const problem = tapDeviceProblem(ifname, uid);
    if (problem) throw new Error(problem);
    return false;
  }
  try {
    execFileSync('ip', ['tuntap', 'add', 'dev', ifname, 'mode', 'tap', 'user', String(uid), 'group', String(gid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('ip', ['link', 'set', ifname, 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot create tap device ${ifname}: ${stderr || (error as Error).message} (needs CAP_NET_ADMIN on the host)`);
  }
  return true;
}

export function deleteTapDevice(ifname: string): void {
  if (!existsSync(sysNet(ifname))) return;
  execFileSync('ip', ['link', 'del', ifname], { stdio: ['ignore', 'ignore', 'pipe'] });
}
