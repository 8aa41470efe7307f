// The controller: wires the source's changes, the runtime's node events, a slow resync and
// backup schedules into one work queue, and runs reconcile(key) on workers. Nothing here polls
// a machine: an idle guest wakes the agent for nothing (one resync timer for the whole node).
//
// Startup order matters (kubevirt #18763, #18981): subscribe to runtime events, adopt the
// machines that kept running while the agent was away, wait for the source's initial list,
// and only then start the workers. Until then nothing is acted on, so an empty view never
// looks like deleted machines.
import type { Logger } from 'pino';
import { errorText } from '../runtime/errors.ts';
import type { MachineSnapshot, Runtime, RuntimeEvent } from '../runtime/types.ts';
import { BackupScheduler } from './backups.ts';
import type { CoreMetrics } from './core-metrics.ts';
import type { EventReporter } from './event-reporter.ts';
import type { Executor } from './executor.ts';
import { keyFromLabels } from './machine-config.ts';
import type { MachineStates } from './machine-states.ts';
import { describeExit, isAlive } from './plan.ts';
import { unchangedSinceLastPass } from './predicates.ts';
import { TerminalError, type Reconciler } from './reconcile.ts';
import { keyOf, type EventType, type MachineKey, type MachineSource } from './source.ts';
import { WorkQueue, realClock, runWorkers, type Clock } from './workqueue.ts';

export interface ControllerOptions {
  workers: number;
  resyncPeriodSeconds: number;
}

export interface ControllerDeps {
  source: MachineSource;
  runtime: Runtime;
  reconciler: Reconciler;
  states: MachineStates;
  executor: Executor;
  events: EventReporter;
  logger: Logger;
  metrics?: CoreMetrics;
  clock?: Clock;
}

/** How often a failed source start is tried again. */
const SOURCE_RETRY_MS = 5_000;

export class Controller {
  readonly #options: ControllerOptions;
  readonly #source: MachineSource;
  readonly #runtime: Runtime;
  readonly #reconciler: Reconciler;
  readonly #states: MachineStates;
  readonly #events: EventReporter;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #metrics: CoreMetrics | undefined;
  readonly queue: WorkQueue;
  readonly #backups: BackupScheduler;
  #unsubscribe: (() => void) | undefined;
  #workers: Promise<void> | undefined;
  #timers: NodeJS.Timeout[] = [];
  readonly #changeWaiters = new Set<() => void>();
  #adopted = false;
  #started = false;
  #stopped = false;

  constructor(options: ControllerOptions, deps: ControllerDeps) {
    this.#options = options;
    this.#source = deps.source;
    this.#runtime = deps.runtime;
    this.#reconciler = deps.reconciler;
    this.#states = deps.states;
    this.#events = deps.events;
    this.#clock = deps.clock ?? realClock;
    this.#logger = deps.logger;
    this.#metrics = deps.metrics;
    // A machine waiting for a readWrite image another one has is looked at again whenever a
    // machine lets go of disks (the holder's own exit comes as a runtime event, below).
    deps.executor.onDisksReleased(() => this.#wakeDiskWaiters());
    // A stop runs beside the workers; when it ends, its key's next pass acts on the result.
    deps.executor.onStopDone((key) => {
      this.queue.add(key);
      this.#changed();
    });
    this.queue = new WorkQueue({ onDepth: (d) => this.#metrics?.workqueueDepth.set(d), clock: this.#clock });
    this.#backups = new BackupScheduler((key) => {
      this.#states.markBackupDue(key);
      this.queue.add(key);
    }, this.#logger);
  }

  /** Cache synced and the runtime's machines adopted: reconciling is safe. */
  ready(): boolean {
    return this.#adopted && this.#started && this.#source.synced();
  }

  /**
   * Adopts the runtime's machines (awaited: it is local and fast), then starts the source and,
   * once its initial list is in, the workers. Resolves after adoption; `synced` resolves when
   * the workers run.
   */
  async start(): Promise<{ adopted: MachineSnapshot[]; synced: Promise<void> }> {
    this.#unsubscribe = this.#runtime.onEvent((e) => this.#onRuntimeEvent(e));
    const adopted = await this.#runtime.adoptAll();
    this.#adopted = true;
    this.#logger.info({ machines: adopted.length, alive: adopted.filter(isAlive).length }, 'adopted the machines found in the state directory');
    const synced = this.#startSource().then(() => {
      if (this.#stopped) return;
      this.#reportAdopted(adopted);
      this.#started = true;
      this.enqueueAll();
      // A finished pass wakes a drain waiting for the queue to settle, once the key is done.
      this.#workers = runWorkers(this.queue, this.#options.workers, (key) => this.#handle(key), () => this.#changed());
      // The resync timer is also what keeps the process alive while the agent runs: without a
      // listener or a guest, nothing else may hold the event loop (it is cleared by stop()).
      const resync = this.#options.resyncPeriodSeconds > 0;
      this.#every(resync ? this.#options.resyncPeriodSeconds : 3600, () => {
        if (resync) this.enqueueAll();
      }, { keepAlive: true });
      this.#logger.info({ source: this.#source.kind, workers: this.#options.workers }, 'source synced; reconciling');
    });
    return { adopted, synced };
  }

  async #startSource(): Promise<void> {
    for (;;) {
      try {
        await this.#source.start((key) => this.#onSourceChange(key));
        return;
      } catch (error) {
        if (this.#stopped) return;
        this.#logger.error({ source: this.#source.kind, err: errorText(error) }, `starting the ${this.#source.kind} source failed; retrying in ${SOURCE_RETRY_MS / 1000} s (guests are left alone meanwhile)`);
        await new Promise((r) => this.#clock.setTimeout(() => r(undefined), SOURCE_RETRY_MS));
        if (this.#stopped) return;
      }
    }
  }

  #onSourceChange(key: MachineKey): void {
    // A key backing off after a failure waits for its timer unless the object really changed:
    // otherwise the echo of the status written with the error would retry it at once, and a
    // failure whose message varies would spin.
    if (this.queue.numRequeues(key) > 0 && unchangedSinceLastPass(this.#states, key, this.#source.get(key))) return;
    this.queue.add(key);
  }

  enqueue(key: MachineKey): void {
    this.queue.add(key);
  }

  /** Every key the source knows and every key the runtime's machines carry. */
  enqueueAll(): void {
    for (const key of this.keys()) this.queue.add(key);
  }

  keys(): Set<MachineKey> {
    const keys = new Set<MachineKey>(this.#source.list().map((m) => keyOf(m)));
    for (const m of this.#runtime.list()) {
      const key = keyFromLabels(m.config.labels);
      if (key) keys.add(key);
    }
    return keys;
  }

  async #handle(key: MachineKey): Promise<void> {
    try {
      const result = await this.#reconciler.reconcile(key);
      this.queue.forget(key);
      if (result.kind === 'requeueAfter') {
        this.queue.addAfter(key, result.ms);
        this.#metrics?.reconcileTotal.inc({ result: 'requeue' });
      } else {
        this.#metrics?.reconcileTotal.inc({ result: 'done' });
      }
    } catch (error) {
      this.#metrics?.reconcileErrors.inc();
      if (error instanceof TerminalError) {
        // Retrying cannot help; a change to the object enqueues the key again.
        this.queue.forget(key);
        this.#metrics?.reconcileTotal.inc({ result: 'terminal' });
        this.#logger.error({ machine: key, err: errorText(error) }, 'reconcile failed; not retried until the machine changes');
      } else {
        this.#metrics?.reconcileTotal.inc({ result: 'error' });
        this.#logger.warn({ machine: key, err: errorText(error), retries: this.queue.numRequeues(key) }, 'reconcile failed; retrying with backoff');
        this.queue.addRateLimited(key);
      }
    }
    const machine = this.#source.get(key);
    this.#backups.sync(key, machine && machine.metadata.deletionTimestamp === undefined ? machine.spec.backup?.schedule : undefined);
  }

  #reportAdopted(adopted: MachineSnapshot[]): void {
    for (const m of adopted) {
      if (!isAlive(m)) continue;
      const key = keyFromLabels(m.config.labels);
      const machine = key ? this.#source.get(key) : undefined;
      const message = `found the running kernel again after an agent restart: pid ${m.pid ?? '?'}, state ${m.state}`;
      if (machine) this.#events.record(machine, 'Normal', 'Adopted', message);
      else this.#logger.info({ machine: key ?? m.name, id: m.id }, `${message}; its object is gone, so it will be shut down`);
    }
  }

  #onRuntimeEvent(e: RuntimeEvent): void {
    this.#changed();
    const m = this.#runtime.get(e.id);
    const key = keyFromLabels(m?.config.labels);
    if (!key) {
      this.#logger.debug({ id: e.id, event: e.type }, 'runtime event for a machine without an object key');
      return;
    }
    switch (e.type) {
      case 'mconsole-ready':
        break;
      case 'booted': {
        const requested = this.#states.takeStartRequest(e.id);
        const seconds = requested !== undefined ? (e.at.getTime() - requested) / 1000 : undefined;
        if (seconds !== undefined && seconds >= 0) this.#metrics?.bootSeconds.observe(seconds);
        this.#event(key, 'Normal', 'Booted', seconds !== undefined ? `the guest kernel booted in ${seconds.toFixed(2)} s` : 'the guest kernel booted');
        break;
      }
      case 'init-fallback':
        this.#event(key, 'Warning', 'InitFallback', e.init === '/bin/sh'
          ? `the guest's init ${e.failed} could not run, and the kernel fell back to a shell (/bin/sh) as init: the root image has no working init`
          : `the guest's init ${e.failed} could not run; the kernel is trying ${e.init} instead`);
        return; // the same boot: nothing to reconcile
      case 'panic':
        this.#event(key, 'Warning', 'GuestPanic', `the guest kernel panicked: ${e.message.trim()}`);
        break;
      case 'hang':
        this.#event(key, 'Warning', 'GuestHang', 'the guest kernel reported a hang');
        break;
      case 'guest-message':
        this.#event(key, 'Normal', 'GuestMessage', e.message.trim());
        return; // nothing to reconcile
      case 'exited':
        // A stop of ours: its end queues the key (and frees the disks) once its cleanup is done;
        // a pass now would only see it still stopping. A hundred of them in a drain add up.
        if (this.#states.isStopping(e.id)) return;
        if (!this.#states.isDraining()) this.#logger.info({ machine: key, exit: e.exit }, `the kernel exited: ${describeExit(e.exit)}`);
        this.#wakeDiskWaiters();
        break;
      case 'devices-checked':
        break; // what the kernel has may differ from what it was told: status says so
    }
    this.queue.add(key);
  }

  #wakeDiskWaiters(): void {
    for (const key of this.#states.keysWaitingForDisks()) this.queue.add(key);
  }

  #event(key: MachineKey, type: EventType, reason: string, message: string): void {
    this.#events.recordFor(key, type, reason, message);
  }

  #every(seconds: number, fn: () => void, options: { keepAlive?: boolean } = {}): void {
    if (!(seconds > 0)) return;
    const t = setInterval(fn, seconds * 1000);
    if (!options.keepAlive) t.unref();
    this.#timers.push(t);
  }

  /**
   * Shuts every guest down gracefully (each with its own grace period, at most the timeout),
   * then forces the ones still there. Drain is a desired state: from here on every pass plans
   * its machine's stop (plan.ts, planDrain) and nothing starts; the stops run beside each other
   * (not one per worker), and this waits, woken by their ends and the kernels' exits, until no
   * guest is left and every status is written. A start already in flight when the drain began
   * is stopped by the pass its boot brings.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = this.#clock.now() + timeoutMs;
    this.#states.beginDrain(deadline);
    this.#logger.info({ machines: this.#runtime.list().filter(isAlive).length, timeoutMs }, 'draining: shutting every guest down');
    // Past the deadline, plus what a forced stop takes, stop waiting: the node is going down.
    const giveUp = deadline + 15_000;
    const settled = (): boolean => this.queue.length === 0 && this.queue.processing === 0 && this.#states.stopsInFlight() === 0;
    const now = (): number => this.#clock.now();
    while (now() < giveUp) {
      this.enqueueAll();
      while (!settled() && now() < giveUp) await this.#nextChange(Math.min(1000, giveUp - now()));
      if (!this.#runtime.list().some(isAlive)) break;
      await this.#nextChange(Math.min(1000, giveUp - now()));
    }
  }

  /** Resolves at the next finished pass, finished stop or runtime event, or after ms. */
  #nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.#clock.clearTimeout(timer);
        this.#changeWaiters.delete(wake);
        resolve();
      };
      const timer = this.#clock.setTimeout(wake, Math.max(0, ms));
      this.#changeWaiters.add(wake);
    });
  }

  #changed(): void {
    for (const wake of [...this.#changeWaiters]) wake();
  }

  /** Stops watching and the workers; in-flight passes finish. Guests keep running. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#unsubscribe?.();
    this.#backups.stop();
    await this.#source.stop().catch((error: unknown) => this.#logger.warn({ err: errorText(error) }, 'stopping the source failed'));
    this.queue.shutDown();
    await this.queue.drained();
    await this.#workers;
  }
}
