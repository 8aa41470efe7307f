// Which kernels run userspace on this host, and how one that cannot is reported. umlmon's own
// kernel must run everywhere. Debian's packaged kernel runs on some CPUs and not on others
// (AVX-512/AMX hosts: "ptrace set fp regs failed"): where it runs, the probe and a real jailed
// boot say so; where it cannot, the probe, the runtime and the agent's plan say
// KernelIncompatible, with the kernel and the fix. Either branch asserts; neither skips.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { plan } from '../../src/agent/plan.ts';
import { createRuntime, type Runtime } from '../../src/runtime/index.ts';
import { probeKernel } from '../../src/runtime/kernel-probe.ts';
import { DEBIAN_KERNEL_ARGS, debianKernel, kernelMatrix, REPO_ROOT, testImageRoot, umlKernel } from '../support/uml.ts';
import { disposeRuntime, machineConfig, uniqueId, waitFor } from '../support/runtime.ts';

const matrix = await kernelMatrix();
const debianRuns = matrix.runnable.some((k) => k.name === 'debian');

describe('kernel probe (umlmon check)', () => {
  test("umlmon's own kernel boots to userspace on this host", async () => {
    const result = await probeKernel(umlKernel());
    assert.equal(result.outcome, 'runs', JSON.stringify(result));
    assert.match(result.version, /^\d+\.\d+/);
  });

  test('umlmon check prints every configured kernel with its version and whether it runs here', async (t) => {
    const dir = mkdtempSync('/tmp/umlmon-check-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `kernels:\n  default: {path: ${umlKernel()}}\n  debian: {path: ${debianKernel()}, args: [${DEBIAN_KERNEL_ARGS.join(', ')}]}\n  gone: {path: /nonexistent/linux}\n`);
    const run = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'check', '-f', config, '--machines-dir', join(dir, 'none'), '--state-dir', join(dir, 'state')], { encoding: 'utf8' })
      .catch((error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }));
    const out = run.stdout;
    assert.match(out, new RegExp(`^kernel default: ${umlKernel()}: \\d+\\.\\d+\\S*: runs here`, 'm'), out);
    assert.match(out, /^kernel gone: \/nonexistent\/linux: missing$/m, out);
    assert.match(out, /^warning: kernels\.gone: \/nonexistent\/linux does not exist on this node$/m, out);
    if (debianRuns) {
      assert.match(out, new RegExp(`^kernel debian: ${debianKernel()}: \\d+\\.\\S+: runs here`, 'm'), out);
    } else {
      assert.match(out, new RegExp(`^kernel debian: ${debianKernel()}: \\S+: cannot run here$`, 'm'), out);
      assert.match(out, /^warning: kernels\.debian: kernel \/usr\/bin\/linux\.uml cannot run userspace on this node .*Use a kernel that sizes its FP state from the host/m, out);
    }
    assert.match(out, /^configuration OK/m, 'other kernels than the default only warn');
  });
});

describe(`Debian's kernel on this host (${debianRuns ? 'it runs here' : 'it cannot run here'})`, () => {
  let stateDir: string;
  let rt: Runtime;

  before(() => {
    stateDir = mkdtempSync('/tmp/umlrt-');
    rt = createRuntime({ stateDir, imageRoot: testImageRoot() });
  });
  after(() => disposeRuntime(rt, stateDir));

  const debianConfig = (id: string) => machineConfig(id, { kernel: debianKernel(), defaultArgs: ['lpj=auto', ...DEBIAN_KERNEL_ARGS] });

  if (debianRuns) {
    test('a jailed boot reaches userspace and powers off cleanly; nothing is reported incompatible', async () => {
      const id = uniqueId('dk');
      const message = waitFor(rt, (e) => e.type === 'guest-message' && e.id === id && e.message === 'umlmon-guest: booted');
      await rt.start(debianConfig(id));
      await message;
      await rt.stop(id, { gracePeriodMs: 10_000 });
      const exit = rt.get(id)!.exit!;
      assert.equal(exit.code, 0);
      assert.equal(exit.kernelIncompatible, undefined);
    });
  } else {
    test('the probe names the kernel, what the host has and the fix', () => {
      const debian = matrix.incompatible.find((k) => k.name === 'debian')!;
      assert.match(debian.message, /^kernel \/usr\/bin\/linux\.uml cannot run userspace on this node \(".*ptrace set fp regs failed/);
      assert.match(debian.message, /Use a kernel that sizes its FP state from the host/, 'the fix, whatever this host runs');
    });

    test('a jailed boot exits with kernelIncompatible, and the plan waits instead of restarting', async () => {
      const id = uniqueId('dk');
      const exited = waitFor(rt, (e) => e.type === 'exited' && e.id === id);
      await rt.start(debianConfig(id)).catch(() => undefined); // mconsole may come up before userspace fails
      const event = await exited;
      assert.ok(event.type === 'exited');
      assert.match(event.exit.kernelIncompatible ?? '', /cannot run userspace on this node/);
      const actual = rt.get(id)!;
      const config = debianConfig(id);
      const decided = plan({
        now: Date.now(), sourceSynced: true, draining: false,
        desired: { id, deleting: false, hasFinalizer: true, spec: { valid: true, config: actual.config, state: 'Running', restartPolicy: 'Always', gracePeriodMs: 1000 } },
        actual, strays: [], backoff: undefined, exitAcknowledged: false, backupDue: false, orphanGracePeriodMs: 1000, kernelUnchanged: true,
      });
      assert.deepEqual(decided.actions, [], 'no restart loop');
      assert.equal(decided.waiting?.reason, 'KernelIncompatible');
      assert.equal(config.kernel, debianKernel());
    });
  }
});
