// The node agent's entry point for `umlmon run`: the state store, the executor, the event
// reporter, the reconciler and the controller, over the source and runtime the caller built
// from its config. The caller owns the source's construction and
// the runtime's lifetime (it closes the runtime after stop()).
import type { Logger } from 'pino';
import type { Runtime } from '../runtime/types.ts';
import { Controller } from './controller.ts';
import { CoreMetrics } from './core-metrics.ts';
import { EventReporter } from './event-reporter.ts';
import { Executor } from './executor.ts';
import type { KernelEntry } from './machine-config.ts';
import { MachineStates } from './machine-states.ts';
import type { Registry } from './metrics.ts';
import { Reconciler } from './reconcile.ts';
import type { MachineSource } from './source.ts';
import { realClock, type Clock } from './workqueue.ts';

/** What the agent's core needs from the config (AgentConfig maps onto it one to one). */
export interface AgentOptions {
  nodeName: string;
  /** Directory of base images that spec.disks name. */
  imageRoot: string;
  /** Scheduled backups go to backupDir/<ns>/<name>/<disk>/<timestamp>/. */
  backupDir: string;
  /** Kernels by name (spec.kernel); path of the UML binary and extra arguments. */
  kernels: Record<string, KernelEntry>;
  /** Arguments added to every boot, e.g. ["lpj=auto"]. */
  defaultKernelArgs: string[];
  /** Bounds of spec.memory, and its value when a manifest has none. */
  memory: { minBytes: number; maxBytes: number; defaultBytes: number };
  /** Reconcile workers (machines handled in parallel). */
  workers: number;
  /** Every key is reconciled again this often: a safety net, not the mechanism. */
  resyncPeriodSeconds: number;
}

export interface AgentDeps {
  source: MachineSource;
  runtime: Runtime;
  logger: Logger;
  metrics: Registry;
  /** Time for the work queue's delays and backoff, and the reconciler's "now" (tests drive it). */
  clock?: Clock;
}

export interface Agent {
  /** The source's cache is synced and the runtime's machines are adopted. */
  ready(): boolean;
  /** Shuts every guest down gracefully, then forcibly at the timeout; nothing restarts while draining. */
  drain(timeoutMs: number): Promise<void>;
  /** SIGTERM: stop watching, finish in-flight work, leave the guests running. */
  stop(): Promise<void>;
}

/**
 * Adopts the machines already running (awaited), then starts the source and, once it is
 * synced, reconciling (in the background: ready() tells when).
 */
export async function startAgent(options: AgentOptions, deps: AgentDeps): Promise<Agent> {
  const logger = deps.logger.child({ component: 'agent' });
  const metrics = new CoreMetrics(deps.metrics);
  const clock = deps.clock ?? realClock;
  const now = (): Date => new Date(clock.now());
  const { source, runtime } = deps;
  // The one owner of what the agent remembers per machine; everything below reads it through here.
  const states = new MachineStates();
  const events = new EventReporter({ source, states, logger });
  const executor = new Executor({ runtime, source, states, events, logger, metrics, backupDir: options.backupDir, now });
  const reconciler = new Reconciler(options, { source, runtime, states, executor, events, logger, metrics, now });
  const controller = new Controller(options, { source, runtime, reconciler, states, executor, events, logger, metrics, clock });
  const { synced } = await controller.start();
  synced.catch((error: unknown) => logger.error({ err: String(error) }, 'the agent did not start reconciling'));
  return {
    ready: () => controller.ready(),
    drain: (timeoutMs) => controller.drain(timeoutMs),
    stop: () => controller.stop(),
  };
}
