// Probes whether a UML kernel boots and runs userspace on this host, without any user image:
// the kernel boots an initramfs of our own (initrd=) whose /init is a 204-byte static x86-64
// program that prints one line and powers the machine off. `umlmon check` runs it for every
// configured kernel. The initramfs is made here in memory (cpio "newc"), so the probe needs
// nothing but the kernel, setarch and a temporary directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FP_REGS_FAILURE, kernelIncompatibleMessage, largeXsaveFeatures } from './kernel-compat.ts';

export const PROBE_OK_LINE = 'umlmon-probe: userspace runs';

export type ProbeResult =
  | { outcome: 'runs'; version: string; bootMs: number }
  | { outcome: 'incompatible'; version: string; message: string }
  | { outcome: 'failed'; version: string; message: string };

/**
 * A static ELF64 executable: write(1, PROBE_OK_LINE + "\n"); reboot(POWER_OFF); then pause()
 * forever should the reboot be refused. Assembled by hand (no toolchain at run time).
 */
export function probeInitElf(): Buffer {
  const message = Buffer.from(`${PROBE_OK_LINE}\n`);
  const code = Buffer.from([
    0xb8, 0x01, 0x00, 0x00, 0x00, //             mov eax, 1 (write)
    0xbf, 0x01, 0x00, 0x00, 0x00, //             mov edi, 1
    0x48, 0x8d, 0x35, 0x26, 0x00, 0x00, 0x00, // lea rsi, [rip+38]  (the message after the code)
    0xba, message.length, 0x00, 0x00, 0x00, //   mov edx, len
    0x0f, 0x05, //                               syscall
    0xb8, 0xa9, 0x00, 0x00, 0x00, //             mov eax, 169 (reboot)
    0xbf, 0xad, 0xde, 0xe1, 0xfe, //             mov edi, LINUX_REBOOT_MAGIC1
    0xbe, 0x69, 0x19, 0x12, 0x28, //             mov esi, LINUX_REBOOT_MAGIC2
    0xba, 0xdc, 0xfe, 0x21, 0x43, //             mov edx, LINUX_REBOOT_CMD_POWER_OFF
    0x0f, 0x05, //                               syscall
    0xb8, 0x22, 0x00, 0x00, 0x00, //             mov eax, 34 (pause)
    0x0f, 0x05, //                               syscall
    0xeb, 0xf7, //                               jmp back to pause
  ]);
  if (code.length !== 55) throw new Error('probe init: the rip-relative offset assumes 55 bytes of code');
  const base = 0x400000;
  const headers = 64 + 56;
  const size = headers + code.length + message.length;
  const elf = Buffer.alloc(size);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(elf, 0); // ELF64, little-endian, SysV
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(0x3e, 18); // x86-64
  elf.writeUInt32LE(1, 20);
  elf.writeBigUInt64LE(BigInt(base + headers), 24); // entry
  elf.writeBigUInt64LE(64n, 32); // program headers right after this header
  elf.writeUInt16LE(64, 52);
  elf.writeUInt16LE(56, 54);
  elf.writeUInt16LE(1, 56);
  elf.writeUInt16LE(64, 58);
  // One PT_LOAD, read + execute, mapping the whole file.
  elf.writeUInt32LE(1, 64);
  elf.writeUInt32LE(5, 68);
  elf.writeBigUInt64LE(0n, 72);
  elf.writeBigUInt64LE(BigInt(base), 80);
  elf.writeBigUInt64LE(BigInt(base), 88);
  elf.writeBigUInt64LE(BigInt(size), 96);
  elf.writeBigUInt64LE(BigInt(size), 104);
  elf.writeBigUInt64LE(0x1000n, 112);
  code.copy(elf, headers);
  message.copy(elf, headers + code.length);
  return elf;
}

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: [number, number];
}

/** An uncompressed cpio archive in the "newc" format the kernel unpacks as an initramfs. */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((entry, index) => {
    const data = entry.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${entry.name}\0`);
    const fields = [
      index + 1, entry.mode, 0, 0, (entry.mode & 0o170000) === 0o040000 ? 2 : 1, 0, data.length,
      0, 0, entry.rdev?.[0] ?? 0, entry.rdev?.[1] ?? 0, name.length, 0,
    ];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  });
  return Buffer.concat(parts);
}

export function probeInitramfs(): Buffer {
  return cpioNewc([
    { name: 'dev', mode: 0o040755 },
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] },
    { name: 'init', mode: 0o100755, data: probeInitElf() },
  ]);
}

/** What `<kernel> --version` prints (UML prints its release), or "" when it prints nothing. */
export async function kernelVersion(kernel: string): Promise<string> {
  const { output } = await run(kernel, ['--version'], {}, 5000);
  return output.trim().split('\n')[0] ?? '';
}

/** Classifies a probe's console output. Pure. */
export function classifyProbe(kernel: string, version: string, consoleText: string, exited: boolean, cpuinfo: string): ProbeResult {
  if (consoleText.includes(PROBE_OK_LINE)) return { outcome: 'runs', version, bootMs: 0 };
  const fp = FP_REGS_FAILURE.exec(consoleText);
  if (fp) {
    const line = consoleText.split('\n').find((l) => FP_REGS_FAILURE.test(l)) ?? fp[0];
    return { outcome: 'incompatible', version, message: kernelIncompatibleMessage(kernel, line, largeXsaveFeatures(cpuinfo)) };
  }
  const tail = consoleText.trim().split('\n').slice(-3).join(' | ') || '(no console output)';
  if (/VFS: Unable to mount root fs|No working init found/.test(consoleText)) {
    return { outcome: 'failed', version, message: `kernel ${kernel} did not run the probe's initramfs (is CONFIG_BLK_DEV_INITRD set?): ${tail}` };
  }
  return { outcome: 'failed', version, message: `kernel ${kernel} ${exited ? 'exited' : 'did not finish'} before its first userspace program ran: ${tail}` };
}

/** Boots the kernel on the probe initramfs and says whether userspace ran. */
export async function probeKernel(kernel: string, options: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const version = await kernelVersion(kernel).catch(() => '');
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-probe-'));
  try {
    const initrd = join(dir, 'probe.cpio');
    writeFileSync(initrd, probeInitramfs());
    const umid = `probe${process.pid}${Date.now().toString(36)}`.slice(0, 30);
    const started = performance.now();
    const { output, exited } = await run('setarch', ['x86_64', '-R', kernel, 'mem=40M', `umid=${umid}`, `uml_dir=${dir}`,
      `initrd=${initrd}`, 'con0=null,fd:1', 'con=null', 'ssl=null', 'ubd0=/dev/null', 'loglevel=7',
      // Skips the RAID6 benchmark of kernels that have it built in (6.x and 7.x name it differently).
      'initcall_blacklist=raid6_select_algo,raid6_init'],
    { TMPDIR: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' }, options.timeoutMs ?? 20_000, PROBE_OK_LINE);
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch { /* features unknown */ }
    const result = classifyProbe(kernel, version, output, exited, cpuinfo);
    if (result.outcome === 'runs') result.bootMs = Math.round(performance.now() - started);
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs a command in its own process group and collects its output until it exits, `until`
 * appears, or the timeout passes; then the whole group is killed and waited for.
 */
function run(command: string, args: string[], env: Record<string, string>, timeoutMs: number, until?: string): Promise<{ output: string; exited: boolean }> {
  return new Promise((resolve) => {
    let output = '';
    let exited = false;
    const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch { /* gone */ }
    };
    const timer = setTimeout(kill, timeoutMs);
    const collect = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (output.length > 256 * 1024) output = output.slice(-128 * 1024);
      // The line is the answer; the power-off that follows may take a moment, no need to wait.
      if (until !== undefined && output.includes(until)) kill();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', (error) => { output += `\n${error.message}`; });
    child.once('close', () => {
      exited = true;
      clearTimeout(timer);
      // UML's helpers share the group and can linger a moment after the main process.
      kill();
      resolve({ output, exited });
    });
  });
}
