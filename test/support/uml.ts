// Real parts for integration and end-to-end tests: the UML kernel from Debian's
// user-mode-linux package and the busybox root filesystem the project builds. Nothing here
// skips: a missing kernel or tool throws, so the test fails loudly.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE_DIR = join(REPO_ROOT, '.cache');
/** Image root shared by tests: holds busybox.ext4 (built once, cached by the script's hash). */
export const TEST_IMAGE_ROOT = join(CACHE_DIR, 'images');
export const TEST_IMAGE = 'busybox.ext4';

/** The UML kernel binary. Throws with the fix when it is missing. */
export function umlKernel(): string {
  const path = process.env.UMLMON_TEST_KERNEL ?? '/usr/bin/linux.uml';
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`UML kernel ${path} is missing or not executable: run hack/setup.sh (installs Debian's user-mode-linux)`);
  }
  return path;
}

/** Builds (or reuses) the test root filesystem and returns the image root that holds it. */
export function testImageRoot(): string {
  mkdirSync(TEST_IMAGE_ROOT, { recursive: true });
  execFileSync(join(REPO_ROOT, 'hack/build-rootfs.sh'), [join(TEST_IMAGE_ROOT, TEST_IMAGE)], { stdio: 'inherit' });
  return TEST_IMAGE_ROOT;
}
