// Real parts for integration and end-to-end tests: umlmon's own UML kernel (hack/build-kernel.sh,
// installed by hack/setup.sh), Debian's packaged kernel for the kernel matrix, and the busybox
// root filesystem the project builds. Nothing here skips: a missing kernel or tool throws, so
// the test fails loudly.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE_DIR = join(REPO_ROOT, '.cache');
/** Image root shared by tests: holds busybox.ext4 (built once, cached by the script's hash). */
export const TEST_IMAGE_ROOT = join(CACHE_DIR, 'images');
export const TEST_IMAGE = 'busybox.ext4';

export const PROJECT_KERNEL = '/usr/local/lib/umlmon/linux';
export const DEBIAN_KERNEL = '/usr/bin/linux.uml';
/** What Debian's kernels need to boot fast (our own has no RAID6 benchmark to skip). */
export const DEBIAN_KERNEL_ARGS = ['initcall_blacklist=raid6_select_algo'];

function requireExecutable(path: string, fix: string): string {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`UML kernel ${path} is missing or not executable: ${fix}`);
  }
  return path;
}

/** umlmon's own UML kernel (or $UMLMON_TEST_KERNEL). Throws with the fix when it is missing. */
export function umlKernel(): string {
  return requireExecutable(process.env.UMLMON_TEST_KERNEL ?? PROJECT_KERNEL, 'run hack/setup.sh (builds and installs umlmon\'s kernel)');
}

/** Debian's packaged UML kernel. Throws with the fix when it is missing. */
export function debianKernel(): string {
  return requireExecutable(DEBIAN_KERNEL, "run hack/setup.sh (installs Debian's user-mode-linux)");
}

export interface TestKernel {
  /** "umlmon" or "debian" */
  name: string;
  path: string;
  /** Arguments this kernel boots fast with, beyond the defaults. */
  args: string[];
}

export interface KernelMatrix {
  /** Kernels that run userspace on this host: the runtime tests run on each. */
  runnable: TestKernel[];
  /** Kernels that cannot, with the probe's message: tests assert that they are reported as such. */
  incompatible: (TestKernel & { message: string })[];
}

let matrix: Promise<KernelMatrix> | undefined;

/**
 * The kernel matrix of this host: umlmon's kernel must run (a probe that says otherwise
 * throws); Debian's runs where the host allows, and is otherwise listed as incompatible.
 */
export function kernelMatrix(): Promise<KernelMatrix> {
  matrix ??= (async () => {
    const { probeKernel } = await import('../../src/runtime/kernel-probe.ts');
    const ours: TestKernel = { name: 'umlmon', path: umlKernel(), args: [] };
    const debian: TestKernel = { name: 'debian', path: debianKernel(), args: DEBIAN_KERNEL_ARGS };
    const result: KernelMatrix = { runnable: [], incompatible: [] };
    for (const kernel of [ours, debian]) {
      const probe = await probeKernel(kernel.path);
      if (probe.outcome === 'runs') result.runnable.push(kernel);
      else if (probe.outcome === 'incompatible' && kernel !== ours) result.incompatible.push({ ...kernel, message: probe.message });
      else throw new Error(`kernel ${kernel.path} cannot be used for the tests: ${probe.message}`);
    }
    return result;
  })();
  return matrix;
}

/** Builds (or reuses) the test root filesystem and returns the image root that holds it. */
export function testImageRoot(): string {
  mkdirSync(TEST_IMAGE_ROOT, { recursive: true });
  execFileSync(join(REPO_ROOT, 'hack/build-rootfs.sh'), [join(TEST_IMAGE_ROOT, TEST_IMAGE)], { stdio: 'inherit' });
  return TEST_IMAGE_ROOT;
}
