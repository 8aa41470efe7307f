import { test } from 'node:test';
import assert from 'node:assert/strict';
// The registry on prom-client: what /metrics renders, prom-client's escaping and checks.
import { Registry } from '../../src/agent/metrics.ts';

test('counter with labels renders HELP, TYPE and one line per series', async () => {
  const r = new Registry();
  const c = r.counter('umlmon_reconciles_total', 'Reconciles by result.', ['result']);
  c.inc({ result: 'ok' });
  c.inc({ result: 'ok' }, 2);
  c.inc({ result: 'error' });
  assert.equal((await r.render()), [
    '# HELP umlmon_reconciles_total Reconciles by result.',
    '# TYPE umlmon_reconciles_total counter',
    'umlmon_reconciles_total{result="ok"} 3',
    'umlmon_reconciles_total{result="error"} 1',
    '',
  ].join('\n'));
});

test('unlabelled counter and gauge show 0 before first use; gauge set overwrites', async () => {
  const r = new Registry();
  r.counter('a_total', 'A.');
  const g = r.gauge('q', 'Queue depth.');
  assert.match((await r.render()), /^a_total 0$/m);
  assert.match((await r.render()), /^q 0$/m);
  g.set(5);
  g.set(2);
  assert.match((await r.render()), /^q 2$/m);
});

test('histogram is cumulative with +Inf, sum and count', async () => {
  const r = new Registry();
  const h = r.histogram('boot_seconds', 'Boot.', [0.1, 1], ['kernel']);
  h.observe({ kernel: 'default' }, 0.05);
  h.observe({ kernel: 'default' }, 0.5);
  h.observe({ kernel: 'default' }, 3);
  const text = (await r.render());
  assert.match(text, /^boot_seconds_bucket\{le="0.1",kernel="default"\} 1$/m);
  assert.match(text, /^boot_seconds_bucket\{le="1",kernel="default"\} 2$/m);
  assert.match(text, /^boot_seconds_bucket\{le="\+Inf",kernel="default"\} 3$/m);
  assert.match(text, /^boot_seconds_sum\{kernel="default"\} 3.55$/m);
  assert.match(text, /^boot_seconds_count\{kernel="default"\} 3$/m);
});

test('label values are escaped; unknown labels and duplicate registrations are errors', async () => {
  const r = new Registry();
  const g = r.gauge('x', 'X.', ['machine']);
  g.set({ machine: 'a"b\\c\nd' }, 1);
  assert.match((await r.render()), /^x\{machine="a\\"b\\\\c\\nd"\} 1$/m);
  assert.throws(() => g.set({ other: '1' }, 1), /label "other" is not included/);
  assert.equal(r.gauge('x', 'X.', ['machine']), g);
  assert.throws(() => r.counter('x', 'X.'), /registered twice/);
  assert.throws(() => r.counter('bad name', 'B.'), /Invalid metric name/);
});
