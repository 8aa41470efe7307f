// Who uses which disk image on this node, and when a use must wait: a readWrite image belongs to
// one machine at a time (its kernel writes it; anyone else reading it would see it change under
// them, and a second writer would corrupt it). readOnly and cow uses of one base share it. Pure:
// the agent's plan decides with it, and the runtime checks it again before it touches a kernel.
import type { DiskConfig, DiskMode, MachineSnapshot } from './types.ts';

export interface ImageHolder {
  /** The holding machine's name (e.g. "default/db") and id. */
  machine: string;
  id: string;
  disk: string;
  image: string;
  mode: DiskMode;
}

/** The disks of the machines that are alive (not exited) and have them, except `exceptId`'s. */
export function imageHoldersOf(machines: MachineSnapshot[], exceptId?: string): ImageHolder[] {
  return machines
    .filter((m) => m.id !== exceptId && m.state !== 'exited')
    .flatMap((m) => m.disks.filter((d) => d.refused === undefined).map((d) => ({ machine: m.name, id: m.id, disk: d.name, image: d.image, mode: d.mode })));
}

/** The holder this disk must wait for, if any. */
export function imageConflict(disk: Pick<DiskConfig, 'image' | 'mode'>, holders: ImageHolder[]): ImageHolder | undefined {
  return holders.find((h) => h.image === disk.image && (disk.mode === 'readWrite' || h.mode === 'readWrite'));
}

export function imageInUseMessage(disk: Pick<DiskConfig, 'name' | 'image' | 'mode'>, holder: ImageHolder): string {
  const why = disk.mode === 'readWrite'
    ? `a readWrite image belongs to one machine at a time, and machine ${holder.machine} has it (${holder.mode}, as ${holder.disk})`
    : `machine ${holder.machine} has it readWrite (as ${holder.disk}), and a readWrite image belongs to one machine at a time`;
  return `disk ${disk.name}: image ${disk.image} is in use: ${why}; it is attached here once that machine lets go`;
}
