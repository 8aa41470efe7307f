// The agent's Prometheus metrics, on prom-client (the Node ecosystem's client library: the
// exposition format, escaping, histograms and label checks are its job, not ours). This file is
// the small registry the agent's modules ask for metrics: asking twice for the same name returns
// the same metric (so two modules may share one), asking with another type or labels is an
// error. Metrics are prom-client's own Counter, Gauge and Histogram, used with a labels object
// (`inc({ result }, 1)`, `set({ phase }, 3)`, `observe({}, seconds)`).
//
// The four classes come from their own files, not from prom-client's index: the index also
// loads the Pushgateway (node:https, tls, zlib) and the cluster aggregator (node:cluster),
// which the agent never uses, and which cost 7 MiB of RSS (measured, Node 24 --lite-mode).
// prom-client has no "exports" map, and these paths have been its layout since 2016.
import type client from 'prom-client';
import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';
import Histogram from 'prom-client/lib/histogram.js';
import PromRegistry from 'prom-client/lib/registry.js';

type Kind = 'counter' | 'gauge' | 'histogram';
type AnyMetric = client.Counter<string> | client.Gauge<string> | client.Histogram<string>;

/** Buckets suited to latencies from milliseconds (mconsole) to a minute (boots, shutdowns). */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type Counter = client.Counter<string>;
export type Gauge = client.Gauge<string>;
export type Histogram = client.Histogram<string>;

export class Registry {
  /** The prom-client registry: one per agent (never the library's global one, so tests can make many). */
  readonly prom = new PromRegistry();
  private readonly kinds = new Map<string, { kind: Kind; labels: string; metric: AnyMetric }>();

  private register<M extends AnyMetric>(name: string, kind: Kind, labelNames: readonly string[], make: () => M): M {
    const existing = this.kinds.get(name);
    if (existing) {
      if (existing.kind !== kind || existing.labels !== labelNames.join()) throw new Error(`metric ${name} registered twice with different type or labels`);
      return existing.metric as M;
    }
    const metric = make();
    this.kinds.set(name, { kind, labels: labelNames.join(), metric });
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.register(name, 'counter', labelNames, () => new Counter({ name, help, labelNames: [...labelNames], registers: [this.prom] }));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.register(name, 'gauge', labelNames, () => new Gauge({ name, help, labelNames: [...labelNames], registers: [this.prom] }));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DEFAULT_BUCKETS, labelNames: readonly string[] = []): Histogram {
    return this.register(name, 'histogram', labelNames, () => new Histogram({ name, help, buckets: [...buckets], labelNames: [...labelNames], registers: [this.prom] }));
  }

  /** Text exposition format 0.0.4. */
  render(): Promise<string> {
    return this.prom.metrics();
  }
}

export const METRICS_CONTENT_TYPE = PromRegistry.PROMETHEUS_CONTENT_TYPE;
