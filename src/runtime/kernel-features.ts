// Which network drivers a UML kernel binary was built with, from the kernel configuration it
// embeds (CONFIG_IKCONFIG, as Debian's build has). Read once per binary. When a binary carries no
// configuration, nothing is known and nothing is refused here: the kernel's own answer decides.
import { readFileSync, statSync } from 'node:fs';

export type NetDriver = 'vector' | 'mcast' | 'daemon' | 'tuntap';

const OPTION: Record<NetDriver, string> = {
  vector: 'CONFIG_UML_NET_VECTOR',
  mcast: 'CONFIG_UML_NET_MCAST',
  daemon: 'CONFIG_UML_NET_DAEMON',
  tuntap: 'CONFIG_UML_NET_TUNTAP',
};

/** Drivers present (true), absent (false), or unknown (undefined) in a kernel binary's bytes. */
export function netDriversIn(binary: Buffer): Record<NetDriver, boolean> | undefined {
  if (binary.indexOf('CONFIG_UML_NET=') < 0 && binary.indexOf('CONFIG_UML_NET_VECTOR') < 0) return undefined;
  const has = (name: string): boolean => binary.indexOf(`${name}=y`) >= 0;
  return { vector: has(OPTION.vector), mcast: has(OPTION.mcast), daemon: has(OPTION.daemon), tuntap: has(OPTION.tuntap) };
}

const cache = new Map<string, Record<NetDriver, boolean> | undefined>();

export function kernelNetDrivers(kernel: string): Record<NetDriver, boolean> | undefined {
  let key: string;
  try {
    const st = statSync(kernel);
    key = `${kernel}:${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
  if (!cache.has(key)) cache.set(key, netDriversIn(readFileSync(kernel)));
  return cache.get(key);
}

export function driverFor(ifaceName: string, transport: string): NetDriver | undefined {
  if (ifaceName.startsWith('vec')) return 'vector';
  if (transport === 'mcast' || transport === 'daemon' || transport === 'tuntap') return transport;
  return undefined;
}
