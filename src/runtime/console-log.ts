// The console log on disk: the kernel writes console.log itself (fd 1, opened O_APPEND), so the
// log is complete whether or not an agent runs. Its size is bounded by copy-and-truncate
// rotation (logrotate's copytruncate: the kernel's fd stays valid, its appends land at the new
// end): console.log is copied to console.log.1 and truncated once it passes the limit. Only a
// kernel whose fd 1 really is O_APPEND is rotated: truncating under a plain writer (a kernel
// started before this module) would leave it writing at its old offset, a file of holes.
import { closeSync, copyFileSync, fstatSync, openSync, readFileSync, readSync, renameSync, statSync, truncateSync, watch, type FSWatcher } from 'node:fs';

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Where a rotated log goes: one generation is kept. */
export function rotatedLogPath(path: string): string {
  return `${path}.1`;
}

/** Linux open flags as /proc/<pid>/fdinfo/<fd> shows them (octal). O_APPEND is 02000. */
export function fdinfoHasAppend(fdinfo: string): boolean {
  const m = /^flags:\s*([0-7]+)$/m.exec(fdinfo);
  return m !== undefined && m !== null && (Number.parseInt(m[1]!, 8) & 0o2000) !== 0;
}

/**
 * Whether process `pid` writes its fd `fd` in append mode (what rotation needs); false when
 * unknown. The kernel's fd 1 is the log itself, or with a pty console (jail.ts) its fd 2 is the
 * log's open file, which the copy of the pty's output shares.
 */
export function writesAppending(pid: number, fd = 1): boolean {
  try {
    return fdinfoHasAppend(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
  } catch {
    return false;
  }
}

/** Pure: rotate when the log has grown past the limit (0 or less: never). */
export function shouldRotate(size: number, maxBytes: number): boolean {
  return maxBytes > 0 && size > maxBytes;
}

/**
 * Copies the log aside and truncates it. What the kernel appends between the copy and the
 * truncate (microseconds) is lost, as with logrotate's copytruncate; nothing else is.
 */
export function rotateConsoleLog(path: string): void {
  const aside = rotatedLogPath(path);
  const tmp = `${aside}.tmp`;
  copyFileSync(path, tmp);
  renameSync(tmp, aside);
  truncateSync(path, 0);
}

/**
 * Follows a growing log from `offset` on and hands each appended chunk to `onData` (fs.watch,
 * no polling). Rotation is followed: each one makes a new console.log.1 (a new inode, by rename),
 * and when it appears the rest of the old content is read from there before the new log; a
 * size below the offset alone cannot tell, since the log may have grown again by then.
 */
/**
 * One read buffer for every tail: reads are synchronous and onData gets a copy, so no two use
 * it at once. (A 64 KiB buffer per follower is 6.4 MiB of RSS at a hundred guests.)
 */
const readBuffer = Buffer.alloc(64 * 1024);

export class LogTail {
  private readonly path: string;
  private readonly onData: (chunk: Buffer) => void;
  private offset: number;
  private rotatedIno: number | undefined;
  private watcher: FSWatcher | undefined;
  private closed = false;

  constructor(path: string, offset: number, onData: (chunk: Buffer) => void) {
    this.path = path;
    this.onData = onData;
    this.offset = offset;
    this.rotatedIno = inodeOf(rotatedLogPath(path));
    this.watcher = watch(path, { persistent: false }, () => this.drain());
    this.watcher.on('error', () => this.close());
  }

  /** The log's size now: where a tail that wants only new output starts. */
  static sizeOf(path: string): number {
    const fd = openSync(path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  }

  /** Reads what was appended since the last call; safe to call any time. */
  drain(): void {
    if (this.closed) return;
    const rotated = inodeOf(rotatedLogPath(this.path));
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return;
    }
    try {
      let size = fstatSync(fd).size;
      if (rotated !== undefined && rotated !== this.rotatedIno) {
        this.rotatedIno = rotated;
        const rotatedSize = this.readRange(rotatedLogPath(this.path), this.offset);
        size = fstatSync(fd).size;
        // Caught between the copy and the truncate, the log still holds the copied bytes.
        this.offset = size >= rotatedSize ? rotatedSize : 0;
      } else if (size < this.offset) {
        this.offset = 0;
      }
      this.offset = this.readFd(fd, this.offset, size);
    } finally {
      closeSync(fd);
    }
  }

  /** Reads `path` from `from` to its end; returns its size (0 when it cannot be read). */
  private readRange(path: string, from: number): number {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return 0;
    }
    try {
      const size = fstatSync(fd).size;
      this.readFd(fd, from, size);
      return size;
    } finally {
      closeSync(fd);
    }
  }

  private readFd(fd: number, from: number, to: number): number {
    let at = from;
    while (at < to && !this.closed) {
      const n = readSync(fd, readBuffer, 0, Math.min(readBuffer.length, to - at), at);
      if (n <= 0) break;
      at += n;
      this.onData(Buffer.from(readBuffer.subarray(0, n)));
    }
    return at;
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
