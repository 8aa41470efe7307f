// Whether a UML kernel can run userspace on this host, and how to say so when it cannot. Pure
// (the console line that gives it away, the host's CPU features that cause it, and the
// message), but for describeIncompatibleKernel, which reads the host's /proc/cpuinfo.
//
// Debian's UML kernels 6.1 and 6.12 keep the guest's FP registers in a fixed 832-byte buffer
// (x87/SSE + AVX). The host's PTRACE_SETREGSET NT_X86_XSTATE refuses anything but its whole
// XSAVE area, which AVX-512 and AMX make ~11 KB: the first userspace process dies with
// "userspace - ptrace set fp regs failed, errno = 14" and init's death panics the kernel.
// Linux 7.2 asks the host for the size (host_fp_size). This is a fact about the node, not a
// crash of the guest: restarting cannot help.
import { readFileSync } from 'node:fs';

/** The console line of a kernel whose FP state does not fit this host's. */
export const FP_REGS_FAILURE = /ptrace set fp regs failed, errno = -?\d+/;

/** CPU flags (from /proc/cpuinfo) that enlarge the XSAVE area beyond what old UML kernels hold. */
const LARGE_XSAVE_FLAGS: Record<string, string> = {
  avx512f: 'AVX-512',
  amx_tile: 'AMX',
};

/** "AVX-512, AMX" for the flags of /proc/cpuinfo's first processor; empty when none. */
export function largeXsaveFeatures(cpuinfo: string): string[] {
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '').split(/\s+/));
  return Object.entries(LARGE_XSAVE_FLAGS).filter(([flag]) => flags.has(flag)).map(([, name]) => name);
}

/** Ready=False / KernelIncompatible message: the kernel, what the host has, and the fix. */
export function kernelIncompatibleMessage(kernel: string, consoleLine: string, features: string[]): string {
  const host = features.length > 0
    ? `this host's XSAVE area is larger than the kernel's fixed FP register buffer (the CPU has ${features.join(' and ')})`
    : "this host's XSAVE area is larger than the kernel's fixed FP register buffer";
  return `kernel ${kernel} cannot run userspace on this node ("${consoleLine.trim()}"): ${host}. ` +
    'Use a kernel that sizes its FP state from the host: Linux 7.2 does, 6.12 and older do not ' +
    "(umlmon's own kernel, built by hack/build-kernel.sh, is installed as /usr/local/lib/umlmon/linux)";
}

/** The message for a kernel that showed the line, with this host's CPU features. */
export function describeIncompatibleKernel(kernel: string, line: string): string {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    /* features unknown: the message says less */
  }
  return kernelIncompatibleMessage(kernel, line, largeXsaveFeatures(cpuinfo));
}
