// Prometheus metrics without a dependency: counters, gauges and histograms with labels, and
// their rendering in the text exposition format 0.0.4 (what /metrics serves). Small on purpose:
// the agent has a dozen metrics and needs nothing a client library adds beyond this.

type Labels = Record<string, string> | undefined;

/** Label values escaped as the exposition format requires: backslash, double quote, newline. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A series key and its rendered label set, in the metric's declared label order. */
function seriesOf(metric: string, labelNames: readonly string[], labels: Labels): { key: string; rendered: string } {
  const given = labels ?? {};
  for (const name of Object.keys(given)) {
    if (!labelNames.includes(name)) throw new Error(`metric ${metric}: unknown label '${name}' (declared: ${labelNames.join(', ') || 'none'})`);
  }
  const values = labelNames.map((n) => given[n] ?? '');
  const rendered = labelNames.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? '')}"`).join(',');
  return { key: JSON.stringify(values), rendered };
}

function withLabels(name: string, rendered: string, extra?: string): string {
  const all = [rendered, extra].filter((s) => s !== undefined && s !== '').join(',');
  return all === '' ? name : `${name}{${all}}`;
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: 'counter' | 'gauge' | 'histogram';

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!NAME_RE.test(name)) throw new Error(`invalid metric name '${name}'`);
    for (const l of labelNames) {
      if (!LABEL_RE.test(l) || l.startsWith('__') || l === 'le') throw new Error(`metric ${name}: invalid label name '${l}'`);
    }
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  header(): string[] {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
  }

  abstract samples(): string[];
}

export class Counter extends Metric {
  readonly type = 'counter';
  private readonly values = new Map<string, { rendered: string; value: number }>();

  /** Adds n (default 1, never negative) to the series with these labels. */
  inc(labels?: Record<string, string>, n = 1): void {
    if (n < 0) throw new Error(`counter ${this.name}: cannot decrease (inc by ${n})`);
    const { key, rendered } = seriesOf(this.name, this.labelNames, labels);
    const s = this.values.get(key);
    if (s) s.value += n;
    else this.values.set(key, { rendered, value: n });
  }

  get(labels?: Record<string, string>): number {
    return this.values.get(seriesOf(this.name, this.labelNames, labels).key)?.value ?? 0;
  }

  samples(): string[] {
    if (this.values.size === 0 && this.labelNames.length === 0) return [`${this.name} 0`];
    return [...this.values.values()].map((s) => `${withLabels(this.name, s.rendered)} ${formatValue(s.value)}`);
  }
}

export class Gauge extends Metric {
  readonly type = 'gauge';
  private readonly values = new Map<string, { rendered: string; value: number }>();

  set(labels: Record<string, string> | undefined, v: number): void {
    const { key, rendered } = seriesOf(this.name, this.labelNames, labels);
    this.values.set(key, { rendered, value: v });
  }

  get(labels?: Record<string, string>): number | undefined {
    return this.values.get(seriesOf(this.name, this.labelNames, labels).key)?.value;
  }

  /** Forgets every series (for gauges recomputed from scratch, e.g. guests by phase). */
  reset(): void {
    this.values.clear();
  }

  samples(): string[] {
    if (this.values.size === 0 && this.labelNames.length === 0) return [`${this.name} 0`];
    return [...this.values.values()].map((s) => `${withLabels(this.name, s.rendered)} ${formatValue(s.value)}`);
  }
}

/** Buckets suited to latencies from milliseconds (mconsole) to a minute (boots, shutdowns). */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Histogram extends Metric {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly series = new Map<string, { rendered: string; counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[]) {
    super(name, help, labelNames);
    const sorted = [...buckets].filter((b) => b !== Infinity).sort((a, b) => a - b);
    if (sorted.length === 0) throw new Error(`histogram ${name}: needs at least one bucket`);
    this.buckets = sorted;
  }

  observe(labels: Record<string, string> | undefined, seconds: number): void {
    const { key, rendered } = seriesOf(this.name, this.labelNames, labels);
    let s = this.series.get(key);
    if (!s) {
      s = { rendered, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) {
      if (seconds <= (this.buckets[i] as number)) s.counts[i] = (s.counts[i] ?? 0) + 1;
    }
    s.sum += seconds;
    s.count += 1;
  }

  /** Count and sum of the series with these labels (for tests and benchmarks). */
  get(labels?: Record<string, string>): { count: number; sum: number } {
    const s = this.series.get(seriesOf(this.name, this.labelNames, labels).key);
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }

  samples(): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        out.push(`${withLabels(`${this.name}_bucket`, s.rendered, `le="${formatValue(b)}"`)} ${s.counts[i] ?? 0}`);
      });
      out.push(`${withLabels(`${this.name}_bucket`, s.rendered, 'le="+Inf"')} ${s.count}`);
      out.push(`${withLabels(`${this.name}_sum`, s.rendered)} ${formatValue(s.sum)}`);
      out.push(`${withLabels(`${this.name}_count`, s.rendered)} ${s.count}`);
    }
    return out;
  }
}

/**
 * The agent's metrics. Asking twice for the same name returns the same metric (so two modules
 * may share one); asking for it with a different type or labels is a programming error.
 */
export class Registry {
  private readonly metrics = new Map<string, Metric>();

  private register<M extends Metric>(metric: M): M {
    const existing = this.metrics.get(metric.name);
    if (existing) {
      if (existing.type !== metric.type || existing.labelNames.join() !== metric.labelNames.join()) {
        throw new Error(`metric ${metric.name} registered twice with different type or labels`);
      }
      return existing as M;
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.register(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.register(new Gauge(name, help, labelNames));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DEFAULT_BUCKETS, labelNames: readonly string[] = []): Histogram {
    return this.register(new Histogram(name, help, buckets, labelNames));
  }

  /** Text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4). */
  render(): string {
    const lines: string[] = [];
    for (const m of this.metrics.values()) lines.push(...m.header(), ...m.samples());
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
