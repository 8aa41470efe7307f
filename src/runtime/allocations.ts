// Node-wide allocations kept in the shared directory: per-machine uids and per-interface MACs.
// Each is a JSON map updated under a lock with an atomic rewrite, so concurrent agents or CLI
// processes never hand out the same value. The choice of a value is a pure function.
import { sha256 } from '../sha256.ts';
import { join } from 'node:path';
import { readJsonIfExists, writeJsonAtomic } from './atomic-file.ts';
import { withLock } from './lock.ts';

export type AllocationMap = Record<string, string>;

/** Locally administered, unicast: fe:fd:xx:xx:xx:xx as UML's own default MACs. */
export function macCandidate(key: string, attempt: number): string {
  const digest = sha256(`${key}#${attempt}`);
  const tail = [...digest.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0'));
  return ['fe', 'fd', ...tail].join(':');
}

/** Stable for (machine, interface), unique among the pool's values. */
export function pickMac(pool: AllocationMap, key: string, fixed?: string): string {
  const taken = new Map(Object.entries(pool).map(([k, v]) => [v, k]));
  if (fixed) {
    const owner = taken.get(fixed);
    if (owner !== undefined && owner !== key) throw new Error(`MAC ${fixed} is already used by ${owner} on this node`);
    return fixed;
  }
  const existing = pool[key];
  if (existing) return existing;
  for (let attempt = 0; ; attempt++) {
    const mac = macCandidate(key, attempt);
    if (!taken.has(mac)) return mac;
  }
}

/** Stable for a machine while allocated; the first free uid from a hash of the id. */
export function pickUid(pool: AllocationMap, machineId: string, first: number, count: number): number {
  const existing = pool[machineId];
  if (existing) return Number(existing);
  const taken = new Set(Object.values(pool).map(Number));
  if (taken.size >= count) throw new Error(`no free uid left in ${first}..${first + count - 1}`);
  const start = new DataView(sha256(machineId).buffer).getUint32(0) % count;
  for (let i = 0; i < count; i++) {
    const uid = first + ((start + i) % count);
    if (!taken.has(uid)) return uid;
  }
  throw new Error(`no free uid left in ${first}..${first + count - 1}`);
}

export class SharedAllocations {
  private readonly dir: string;

  constructor(sharedDir: string) {
    this.dir = sharedDir;
  }

  private async update<T>(file: string, fn: (map: AllocationMap) => T): Promise<T> {
    const path = join(this.dir, file);
    return withLock(`${path}.lock`, () => {
      const map = readJsonIfExists<AllocationMap>(path) ?? {};
      const before = JSON.stringify(map);
      const result = fn(map);
      if (JSON.stringify(map) !== before) writeJsonAtomic(path, map, { durable: true });
      return result;
    });
  }

  allocateMac(machineId: string, ifname: string, fixed?: string): Promise<string> {
    const key = `${machineId}/${ifname}`;
    return this.update('macpool.json', (pool) => {
      const mac = pickMac(pool, key, fixed);
      pool[key] = mac;
      return mac;
    });
  }

  releaseMacs(machineId: string): Promise<void> {
    return this.update('macpool.json', (pool) => {
      for (const key of Object.keys(pool)) if (key.startsWith(`${machineId}/`)) delete pool[key];
    });
  }

  allocateUid(machineId: string, first: number, count: number): Promise<number> {
    return this.update('uids.json', (pool) => {
      const uid = pickUid(pool, machineId, first, count);
      pool[machineId] = String(uid);
      return uid;
    });
  }

  releaseUid(machineId: string): Promise<void> {
    return this.update('uids.json', (pool) => {
      delete pool[machineId];
    });
  }
}
