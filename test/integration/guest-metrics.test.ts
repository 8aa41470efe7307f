// Guest metrics from real, jailed guests: what their kernels serve through mconsole and what the
// host sees of them (cgroup, kernel process I/O, tap devices), as /metrics renders it. Two
// guests on a node LAN so the tap counters carry real traffic; commands run in a guest through
// the test image's command disk. The clock is the test's, so reuse of a reading is asserted
// without timing anything.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GuestMetrics } from '../../src/agent/guest-metrics.ts';
import { Registry } from '../../src/agent/metrics.ts';
import type { UmlMachine } from '../../src/api/types.ts';
import { createRuntime, type Runtime } from '../../src/runtime/index.ts';
import { MiB, disposeRuntime, machineConfig, privateStateDir, runInGuest, uniqueId, waitFor } from '../support/runtime.ts';

const ADDR_A = '169.254.78.1';
const ADDR_B = '169.254.78.2';

/** One sample's value from the exposition text, or undefined when the series is absent. */
function value(text: string, metric: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const inner = line.slice(metric.length + 1, line.lastIndexOf('}'));
    const has = Object.entries(labels).every(([k, v]) => inner.includes(`${k}="${v}"`));
    if (has) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('guest metrics on real guests', () => {
  let stateDir: string;
  let imageRoot: string;
  let rt: Runtime;
  const a = uniqueId('ma');
  const b = uniqueId('mb');
  const lan = uniqueId('mlan');
  let now = Date.parse('2026-01-01T00:00:00Z');
  const registry = new Registry();
  let metrics: GuestMetrics;
  const objects: UmlMachine[] = [a, b].map((id) => ({
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: id, namespace: 'test' },
    spec: { nodeName: 'n1' }, status: { phase: 'Running', restartCount: id === a ? 2 : 0 },
  }));
  const la = { namespace: 'test', name: a, node: 'n1' };
  const lb = { namespace: 'test', name: b, node: 'n1' };

  const scrape = async (advanceMs: number): Promise<string> => {
    now += advanceMs;
    await metrics.update();
    return registry.render();
  };

  before(async () => {
    ({ stateDir, imageRoot } = privateStateDir());
    rt = createRuntime({ stateDir, imageRoot });
    const iface = { name: 'vec0', transport: 'tap' as const, tap: { switch: lan } };
    const booted = [a, b].map((id) => waitFor(rt, (e) => e.type === 'guest-message' && e.id === id && e.message === 'umlmon-guest: booted'));
    await rt.start(machineConfig(a, { interfaces: [iface], cmdline: [`guest.ip=vec0,${ADDR_A}/24`, 'guest.cmd'] }));
    await rt.start(machineConfig(b, { interfaces: [iface], cmdline: [`guest.ip=vec0,${ADDR_B}/24`, 'guest.cmd'] }));
    await Promise.all(booted);
    metrics = new GuestMetrics(registry, { nodeName: 'n1', runtime: rt, objects: () => objects, now: () => now, scrapeBudgetMs: 10_000 });
  });

  after(async () => {
    metrics?.close();
    await disposeRuntime(rt, stateDir);
  });

  test('the guest kernel\'s figures and the host\'s, per machine', async () => {
    const text = await scrape(0);
    const total = value(text, 'umlmon_guest_memory_total_bytes', la)!;
    assert.ok(total > 32 * MiB && total <= 48 * MiB, `MemTotal ${total} is the guest's 48 MiB less the kernel`);
    const available = value(text, 'umlmon_guest_memory_available_bytes', la)!;
    assert.ok(available > 0 && available < total);
    assert.ok(value(text, 'umlmon_guest_uptime_seconds', la)! > 0);
    assert.ok(value(text, 'umlmon_guest_cpu_seconds_total', { ...la, mode: 'idle' })! > 0);
    assert.ok(value(text, 'umlmon_guest_forks_total', la)! > 0);
    assert.ok(value(text, 'umlmon_guest_processes', la)! > 0);
    assert.ok(value(text, 'umlmon_guest_storage_read_bytes_total', { ...la, drive: 'ubda' })! > 0, 'the root disk was read');
    assert.ok(value(text, 'umlmon_guest_storage_iops_read_total', { ...la, drive: 'ubda' })! > 0);
    assert.notEqual(value(text, 'umlmon_guest_memory_pgminfault_total', la), undefined);
    assert.ok(value(text, 'umlmon_machine_cpu_seconds_total', la)! > 0, 'the cgroup used CPU');
    assert.ok(value(text, 'umlmon_machine_memory_usage_bytes', la)! > 0);
    assert.equal(value(text, 'umlmon_machine_memory_limit_bytes', la), (48 + 16 + 96) * MiB, 'memory + tmpfs slack + overhead');
    assert.ok(value(text, 'umlmon_machine_storage_read_bytes_total', la)! >= 0);
    assert.equal(value(text, 'umlmon_machine_phase', { ...la, phase: 'Running' }), 1);
    assert.equal(value(text, 'umlmon_machine_phase', { ...la, phase: 'Paused' }), 0);
    assert.equal(value(text, 'umlmon_machine_restarts', la), 2);
    const boot = value(text, 'umlmon_machine_boot_seconds', la)!;
    assert.ok(boot > 0 && boot < 60);
    assert.equal(value(text, 'umlmon_machine_info', { ...la, umid: a }), 1);
    assert.ok(value(text, 'umlmon_guest_memory_total_bytes', lb)! > 0, 'the other guest has its own series');
  });

  test('what the guest does shows: memory taken, processes forked, packets on its tap device', async () => {
    const before = await scrape(6_000);
    const tap = rt.get(a)!.interfaces[0]!.hostInterface!;
    const l = { ...la, interface: 'vec0', host_device: tap };
    const packetsBefore = value(before, 'umlmon_guest_network_transmit_packets_total', l) ?? 0;
    assert.equal(await runInGuest(rt, imageRoot, a, `dd if=/dev/zero of=/tmp/fill bs=1M count=12 2>/dev/null; ping -c 3 -W 2 ${ADDR_B} >/dev/null && echo answered`), 'answered');
    const after = await scrape(6_000);
    const drop = value(before, 'umlmon_guest_memory_available_bytes', la)! - value(after, 'umlmon_guest_memory_available_bytes', la)!;
    assert.ok(drop >= 8 * MiB, `12 MiB written to the guest's tmpfs: MemAvailable fell by ${drop} bytes`);
    assert.ok(value(after, 'umlmon_guest_forks_total', la)! > value(before, 'umlmon_guest_forks_total', la)!);
    assert.ok(value(after, 'umlmon_guest_network_transmit_packets_total', l)! >= packetsBefore + 3, 'three echo requests sent');
    assert.ok(value(after, 'umlmon_guest_network_receive_packets_total', l)! >= 3, 'three echo replies received');
    assert.ok(value(after, 'umlmon_guest_network_receive_bytes_total', l)! > 0);
    await runInGuest(rt, imageRoot, a, 'rm -f /tmp/fill; echo ok');
  });

  test('a reading is reused for a few seconds: two scrapes in a row ask the guest once', async () => {
    const first = await scrape(6_000);
    assert.equal(value(first, 'umlmon_guest_sample_age_seconds', la), 0);
    await runInGuest(rt, imageRoot, a, 'echo forked');
    const second = await scrape(1_000);
    assert.equal(value(second, 'umlmon_guest_sample_age_seconds', la), 1, 'the same reading, one second old');
    assert.equal(value(second, 'umlmon_guest_forks_total', la), value(first, 'umlmon_guest_forks_total', la));
    const third = await scrape(5_000);
    assert.equal(value(third, 'umlmon_guest_sample_age_seconds', la), 0);
    assert.ok(value(third, 'umlmon_guest_forks_total', la)! > value(first, 'umlmon_guest_forks_total', la)!);
  });

  test('a paused guest is not asked (host figures stay); a stopped one has no series but its phase', async () => {
    await rt.pause(b);
    objects[1]!.status!.phase = 'Paused';
    const paused = await scrape(6_000);
    assert.equal(value(paused, 'umlmon_guest_memory_total_bytes', lb), undefined);
    assert.ok(value(paused, 'umlmon_machine_memory_usage_bytes', lb)! > 0);
    assert.equal(value(paused, 'umlmon_machine_phase', { ...lb, phase: 'Paused' }), 1);
    await rt.resume(b);
    await rt.stop(b, { gracePeriodMs: 10_000 });
    objects[1]!.status!.phase = 'Stopped';
    const stopped = await scrape(6_000);
    assert.equal(value(stopped, 'umlmon_machine_cpu_seconds_total', lb), undefined);
    assert.equal(value(stopped, 'umlmon_guest_uptime_seconds', lb), undefined);
    assert.equal(value(stopped, 'umlmon_machine_phase', { ...lb, phase: 'Stopped' }), 1);
    assert.ok(value(stopped, 'umlmon_guest_uptime_seconds', la)! > 0, 'the other guest is unaffected');
  });
});
