// Runs the real kubectl from tests, asynchronously (an in-process server such as the emulator
// would deadlock under a blocking exec), with a discovery cache of its own per kubeconfig.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './eventually.ts';

export const KUBECTL = process.env.KUBECTL ?? '/usr/bin/kubectl';

export interface KubectlResult { code: number | null; stdout: string; stderr: string }

export interface Kubectl {
  (args: string[], options?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Starts kubectl and returns the process plus its collected output so far. */
  start(args: string[]): { child: ChildProcess; output: { stdout: string; stderr: string }; done: Promise<KubectlResult> };
}

/** A kubectl bound to one kubeconfig, with its own discovery cache directory. */
export function kubectlFor(kubeconfig: string): Kubectl {
  const cacheDir = mkdtempSync(join(tmpdir(), 'umlmon-kubectl-cache-'));
  process.once('exit', () => rmSync(cacheDir, { recursive: true, force: true }));
  const env = { ...process.env, KUBECONFIG: kubeconfig, KUBECACHEDIR: cacheDir, HOME: cacheDir };
  const start = (args: string[], input?: string): { child: ChildProcess; output: { stdout: string; stderr: string }; done: Promise<KubectlResult> } => {
    const child = spawn(KUBECTL, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const output = { stdout: '', stderr: '' };
    child.stdout!.on('data', (d: Buffer) => { output.stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { output.stderr += d.toString(); });
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
    const done = new Promise<KubectlResult>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, ...output }));
    });
    return { child, output, done };
  };
  const run = (async (args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> => {
    const { child, done } = start(args, options.input);
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    try {
      return await done;
    } finally {
      clearTimeout(timer);
    }
  }) as Kubectl;
  run.start = (args: string[]) => start(args);
  return run;
}

/** Describes a kubectl result for assertion messages. */
export function describe(r: KubectlResult): string {
  return `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** Polls `check` (every 25 ms) until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  return eventually(what, async () => (await check()) || undefined, { timeoutMs, intervalMs: 25, retryErrors: false }) as Promise<NonNullable<T>>;
}

/**
 * Waits until a CRD is Established. Not `kubectl wait --for=condition=Established`: right
 * after the CRD is created a 1.20 server can show its status.conditions as null, and kubectl
 * 1.32's condition waiter then fails at once ("accessor error: <nil> is of the type <nil>,
 * expected []interface{}") instead of waiting, as a full run of the suite found.
 */
export async function crdEstablished(kubeconfig: string, name: string, timeoutMs = 60_000): Promise<void> {
  const kubectl = kubectlFor(kubeconfig);
  let last: KubectlResult | undefined;
  await eventually(`CRD ${name} to be Established`, async () => {
    last = await kubectl(['get', 'crd', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']);
    return last.code === 0 && last.stdout.trim() === 'True';
  }, { timeoutMs, intervalMs: 100, retryErrors: false, context: () => `last: exit ${last?.code}, ${JSON.stringify(last?.stdout)} ${last?.stderr.trim()}` });
}
