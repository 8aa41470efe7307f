// The metrics the agent's core records, by name. The registry (metrics.ts) renders them on
// /metrics. Names and labels:
//   umlmon_reconcile_total{result}       reconcile passes by outcome: done | requeue | error | terminal
//   umlmon_reconcile_errors_total        reconcile passes that failed (retried with backoff, or terminal)
//   umlmon_workqueue_depth               keys waiting in the work queue
//   umlmon_guests{phase}                 machines on this node by status phase
//   umlmon_boot_seconds                  start requested → the guest kernel reported it booted
//   umlmon_pause_seconds                 mconsole stop round trip
//   umlmon_resume_seconds                mconsole go round trip
import type { Phase } from '../api/types.ts';
import type { Counter, Gauge, Histogram, Registry } from './metrics.ts';

const PHASES: Phase[] = ['Pending', 'Starting', 'Running', 'Paused', 'Stopping', 'Stopped', 'Failed', 'Unknown'];

export class CoreMetrics {
  readonly reconcileTotal: Counter;
  readonly reconcileErrors: Counter;
  readonly workqueueDepth: Gauge;
  readonly guests: Gauge;
  readonly bootSeconds: Histogram;
  readonly pauseSeconds: Histogram;
  readonly resumeSeconds: Histogram;

  constructor(registry: Registry) {
    this.reconcileTotal = registry.counter('umlmon_reconcile_total', 'Reconcile passes by result (done, requeue, error, terminal).', ['result']);
    this.reconcileErrors = registry.counter('umlmon_reconcile_errors_total', 'Reconcile passes that ended in an error.');
    this.workqueueDepth = registry.gauge('umlmon_workqueue_depth', 'Machine keys waiting in the work queue.');
    this.guests = registry.gauge('umlmon_guests', 'Machines on this node by status phase.', ['phase']);
    this.bootSeconds = registry.histogram('umlmon_boot_seconds', 'Time from starting a kernel to the guest reporting it booted.', [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]);
    this.pauseSeconds = registry.histogram('umlmon_pause_seconds', 'Time to pause a guest (mconsole stop).', [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]);
    this.resumeSeconds = registry.histogram('umlmon_resume_seconds', 'Time to resume a guest (mconsole go).', [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]);
    for (const phase of PHASES) this.guests.set({ phase }, 0);
    this.workqueueDepth.set(0);
  }

  setPhases(phases: Iterable<Phase>): void {
    const counts = new Map<Phase, number>(PHASES.map((p) => [p, 0]));
    for (const p of phases) counts.set(p, (counts.get(p) ?? 0) + 1);
    for (const [phase, n] of counts) this.guests.set({ phase }, n);
  }
}
