// docs/metrics.md names every metric the agent serves, and the Grafana dashboard reads only
// metrics that exist.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreMetrics } from '../../src/agent/core-metrics.ts';
import { GuestMetrics } from '../../src/agent/guest-metrics.ts';
import { Registry } from '../../src/agent/metrics.ts';
import { REPO_ROOT } from '../support/uml.ts';

function served(): string[] {
  const registry = new Registry();
  new CoreMetrics(registry);
  new GuestMetrics(registry, { nodeName: 'n', runtime: { list: () => [] }, objects: () => [] });
  return registry.prom.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name);
}

test('every metric is in docs/metrics.md', () => {
  const doc = readFileSync(join(REPO_ROOT, 'docs/metrics.md'), 'utf8');
  const names = served();
  assert.ok(names.length > 40);
  for (const name of names) assert.ok(doc.includes(`\`${name}\``), `${name} is documented`);
});

test('the Grafana dashboard reads metrics the agent serves, by their labels', () => {
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'docs/grafana/umlmon.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[]; templating: { list: { definition?: string }[] } };
  const names = new Set(served());
  const exprs = [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...dashboard.templating.list.map((v) => v.definition ?? '')];
  const used = new Set(exprs.flatMap((e) => e.match(/umlmon_[a-z0-9_]+/g) ?? []));
  assert.ok(used.size >= 10);
  for (const name of used) assert.ok(names.has(name), `${name} exists`);
  for (const e of exprs.filter((x) => x.includes('{'))) assert.match(e, /namespace=~"\$namespace"/, `${e} filters by the dashboard's variables`);
});
