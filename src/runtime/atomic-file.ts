// Whole-file replacement by write-to-temp + rename, so readers never see half a file.
//
// Durability (fsync before the rename) is asked for per file, because it is what costs: a
// synchronous fsync on the event loop took ~30 ms per machine start on a virtio disk, and a
// hundred starts at once waited for each other's. What survives a host crash decides it:
// - machine records (pid, socket paths, boot time) describe kernels that die with the host, so
//   after a crash there is nothing they could be right about: not durable. A record torn by the
//   crash (a rename that reached the disk before its data) reads as no record.
// - allocations (a machine's MAC and uid) must outlive the host: a guest whose MAC changed after
//   a power cut loses its DHCP lease and its name. Durable, and written only when a value is new.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

export interface WriteOptions {
  mode?: number;
  /** fsync before the rename: the new content survives a host crash, not only a process crash. */
  durable?: boolean;
}

export function writeFileAtomic(path: string, content: string, options: WriteOptions = {}): void {
  const tmp = `${path}.tmp.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
  const fd = openSync(tmp, 'w', options.mode ?? 0o644);
  try {
    writeSync(fd, content);
    if (options.durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function writeJsonAtomic(path: string, value: unknown, options: WriteOptions = {}): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, options);
}

/**
 * Parsed JSON, or undefined when the file does not exist. Unparseable JSON throws, unless
 * `tornIsAbsent`: for a file written without fsync, which a host crash can leave empty or cut.
 */
export function readJsonIfExists<T>(path: string, options: { tornIsAbsent?: boolean } = {}): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (!options.tornIsAbsent) return JSON.parse(text) as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
