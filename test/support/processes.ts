// The long-running processes test support starts (etcd, the API server, containerd, the
// kubelet, ...): each in a session and process group of its own, so that a kill of the group
// reaches everything it forked and nothing else; its output in a log file; its exit recorded.
// control-plane.ts and node.ts start theirs through here.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

export interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
  /** How it ended ("exited with 1", "killed by SIGKILL", "failed to start: ..."); undefined while it runs. */
  exitStatus?: string;
}

/** Starts command detached, its stdout and stderr appended to log; onGone runs once it has ended. */
export function startProc(name: string, command: string, args: string[], log: string, onGone: (p: Proc) => void = () => {}): Proc {
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const p: Proc = { name, child, log, exited: Promise.resolve() };
  p.exited = new Promise<void>((done) => {
    child.once('error', (err) => {
      p.exitStatus ??= `failed to start: ${err.message}`;
      onGone(p);
      done();
    });
    child.once('exit', (code, signal) => {
      p.exitStatus ??= signal ? `killed by ${signal}` : `exited with ${code}`;
      onGone(p);
      done();
    });
  });
  // The test process may exit while these run (the caller's exit hook kills them then).
  child.unref();
  return p;
}

export function killGroup(p: Proc, signal: NodeJS.Signals): void {
  if (p.child.pid === undefined || p.exitStatus !== undefined) return;
  try {
    process.kill(-p.child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM to the group, SIGKILL after graceMs; waits for the leader, then kills what is left of the group. */
export async function stopProc(p: Proc, graceMs = 10_000): Promise<void> {
  if (p.exitStatus !== undefined) return;
  p.child.ref();
  killGroup(p, 'SIGTERM');
  const timer = setTimeout(() => killGroup(p, 'SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
  // What the leader forked may outlive it in the group.
  killGroup(p, 'SIGKILL');
}

/**
 * Runs cleanup when the test process exits, or gets SIGINT, SIGTERM or SIGHUP without having
 * stopped what it started; then lets the signal do what it would have done (unless someone
 * else handles it).
 */
export function onExitOrSignal(cleanup: () => void): void {
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      cleanup();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Ports the kernel hands out for port 0 on host (all addresses when undefined), all held at once so they differ. */
export async function freePorts(count: number, host?: string): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((done, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => done(s));
  })));
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((done) => s.close(() => done()))));
  return ports;
}

/** Polls check every intervalMs until it is true; fails at the deadline or as soon as one of procs has exited. */
export async function waitUntil(what: string, deadline: number, procs: Proc[], check: () => Promise<boolean>, intervalMs = 200): Promise<void> {
  let last = '';
  for (;;) {
    const dead = procs.find((p) => p.exitStatus !== undefined);
    if (dead) throw new Error(`${dead.name} ${dead.exitStatus} while waiting for ${what}`);
    try {
      if (await check()) return;
      last = 'not yet';
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((done) => setTimeout(done, intervalMs));
  }
}
