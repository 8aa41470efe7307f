// What the machine source's e2e tests share, whichever server they run against: kubectl bound
// to a kubeconfig, a machine manifest, a logger whose lines a test can read, and polling.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { eventually } from './eventually.ts';

const run = promisify(execFile);

/** Runs the real kubectl with the given kubeconfig; stdin is fed when given. Rejects with kubectl's stderr. */
export function kubectlWith(kubeconfig: () => string): (args: string[], stdin?: string) => Promise<string> {
  return async (args, stdin) => {
    const child = run('kubectl', ['--kubeconfig', kubeconfig(), ...args], { encoding: 'utf8' });
    if (stdin !== undefined) child.child.stdin?.end(stdin);
    try {
      return (await child).stdout;
    } catch (err) {
      throw new Error(`kubectl ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
    }
  };
}

/** A UmlMachine in namespace default, as JSON for kubectl apply. */
export function machine(name: string, node: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name, namespace: 'default' },
    spec: { nodeName: node, memory: '64Mi', disks: [{ name: 'ubd0', image: 'busybox.ext4' }], ...extra },
  });
}

/** A debug-level pino logger that keeps its lines, parsed, for assertions. */
export function memoryLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/** Resolves when `cond()` holds, polling (in-memory state is cheap) every 20 ms (eventually.ts). */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  await eventually(what, cond, { timeoutMs, intervalMs: 20, retryErrors: false });
}
