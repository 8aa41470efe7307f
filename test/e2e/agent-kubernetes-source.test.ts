// The Kubernetes machine source and Event recorder against the API emulator, with the real
// kubectl making the changes: server-side filtering by node, the fallback for API servers that
// refuse the field selector (a CRD without selectableFields answers exactly like a server
// before 1.31: 400 "field label not supported"), watch events, status and finalizer writes,
// Events folded into series, 410 Gone and outages. No kernel here: the agent's own e2e test
// (agent-kubernetes.test.ts) runs guests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { createKubernetesSource } from '../../src/agent/sources/kubernetes.ts';
import { createEventRecorder } from '../../src/agent/events.ts';
import { loadKubeClient, type KubeClient } from '../../src/agent/kube-client.ts';
import type { MachineSource } from '../../src/agent/source.ts';
import { REPO_ROOT } from '../support/uml.ts';

const run = promisify(execFile);
const CRD = join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml');

let emulator: Emulator;
let oldEmulator: Emulator;
let dir: string;
const sources: MachineSource[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'umlmon-k8s-src-'));
  emulator = await startEmulator({ bookmarkIntervalMs: 500, watchHistory: 10_000 });
  oldEmulator = await startEmulator();
  await kubectl(emulator, ['apply', '-f', CRD]);
  // A server before 1.31: the CRD as it would be stored there, without selectable fields.
  const crd = parse(readFileSync(CRD, 'utf8')) as { spec: { versions: Record<string, unknown>[] } };
  for (const v of crd.spec.versions) delete v.selectableFields;
  writeFileSync(join(dir, 'old-crd.yaml'), stringify(crd));
  await kubectl(oldEmulator, ['apply', '-f', join(dir, 'old-crd.yaml')]);
});

after(async () => {
  for (const s of sources) await s.stop();
  await emulator?.close();
  await oldEmulator?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function kubectl(e: Emulator, args: string[], stdin?: string): Promise<string> {
  const child = run('kubectl', ['--kubeconfig', e.kubeconfigPath, ...args], { encoding: 'utf8' });
  if (process.env.EDGE_DEBUG) console.error(`kubectl ${args.join(" ")}`);
  if (stdin !== undefined) { child.child.stdin?.end(stdin); }
  try {
    return (await child).stdout;
  } catch (err) {
    throw new Error(`kubectl ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

function machine(name: string, node: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name, namespace: 'default' },
    spec: { nodeName: node, memory: '64Mi', disks: [{ name: 'ubd0', image: 'busybox.ext4' }], ...extra },
  });
}

function memoryLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

function kc(e: Emulator): KubeClient {
  return loadKubeClient(e.kubeconfigPath);
}

/** Resolves when `cond()` holds, polling the in-memory state (cheap) every 20 ms. */
async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  if (process.env.EDGE_DEBUG) console.error(`until: ${what}`);
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('server-side filtering: only this node\'s machines; watch, status, finalizer, delete', async () => {
  await kubectl(emulator, ['apply', '-f', '-'], machine('mine-1', 'node-a'));
  await kubectl(emulator, ['apply', '-f', '-'], machine('theirs-1', 'node-b'));
  const { logger, lines } = memoryLogger();
  const changed: string[] = [];
  const src = createKubernetesSource({ nodeName: 'node-a', logger, client: kc(emulator), watchTimeoutSeconds: 30 });
  sources.push(src);
  assert.equal(src.synced(), false);
  await src.start((k) => changed.push(k));
  assert.equal(src.synced(), true);
  assert.equal(src.filteringLocally(), false);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['mine-1']);
  assert.equal(src.get('default/mine-1')?.apiVersion, 'umlmon.io/v1alpha1');

  // Watch: add, update.
  await kubectl(emulator, ['apply', '-f', '-'], machine('mine-2', 'node-a'));
  await kubectl(emulator, ['apply', '-f', '-'], machine('theirs-2', 'node-b'));
  await until('mine-2 in the cache', () => src.get('default/mine-2') !== undefined);
  await kubectl(emulator, ['patch', 'uml', 'mine-2', '--type=merge', '-p', '{"spec":{"state":"Paused"}}']);
  await until('mine-2 paused', () => src.get('default/mine-2')?.spec.state === 'Paused');
  assert.equal(src.get('default/theirs-2'), undefined);
  assert.ok(!changed.some((k) => k.includes('theirs')));

  // Status via the status subresource (merge patch); the spec is untouched.
  const m2 = src.get('default/mine-2')!;
  await src.patchStatus(m2, { phase: 'Running', observedGeneration: m2.metadata.generation ?? 0, pid: 4242 });
  const got = JSON.parse(await kubectl(emulator, ['get', 'uml', 'mine-2', '-o', 'json'])) as { spec: { state: string }; status: { phase: string; pid: number } };
  assert.equal(got.status.phase, 'Running');
  assert.equal(got.status.pid, 4242);
  assert.equal(got.spec.state, 'Paused');
  await src.patchStatus(m2, { pid: 4343 });
  const got2 = JSON.parse(await kubectl(emulator, ['get', 'uml', 'mine-2', '-o', 'json'])) as { status: { phase: string; pid: number } };
  assert.deepEqual([got2.status.phase, got2.status.pid], ['Running', 4343]);

  // Finalizer: added with a stale object (conflict → re-read → retry), then removed.
  const stale = src.get('default/mine-2')!;
  await kubectl(emulator, ['label', 'uml', 'mine-2', 'x=1']);
  await src.ensureFinalizer(stale, true);
  const fin = JSON.parse(await kubectl(emulator, ['get', 'uml', 'mine-2', '-o', 'json'])) as { metadata: { finalizers?: string[]; labels?: Record<string, string> } };
  assert.deepEqual(fin.metadata.finalizers, ['umlmon.io/machine']);
  assert.equal(fin.metadata.labels?.x, '1', 'the concurrent label change is kept');
  await src.ensureFinalizer(src.get('default/mine-2')!, true); // idempotent

  // Delete: the object stays (finalizer) with a deletionTimestamp until the finalizer goes.
  await kubectl(emulator, ['delete', 'uml', 'mine-2', '--wait=false']);
  await until('deletionTimestamp seen', () => src.get('default/mine-2')?.metadata.deletionTimestamp !== undefined);
  await src.ensureFinalizer(src.get('default/mine-2')!, false);
  await until('mine-2 gone', () => src.get('default/mine-2') === undefined);
  assert.ok(changed.filter((k) => k === 'default/mine-2').length >= 4);

  // 410 Gone: compaction while watching → relist, nothing lost.
  emulator.faults.compact();
  emulator.faults.dropWatches();
  await kubectl(emulator, ['apply', '-f', '-'], machine('mine-3', 'node-a'));
  await until('mine-3 after compaction', () => src.get('default/mine-3') !== undefined);
  assert.ok(src.synced());

  // Outage: refused requests and dropped watches; a change made meanwhile arrives afterwards.
  emulator.faults.refuseRequests(3000);
  const outageStart = Date.now();
  emulator.faults.dropWatches();
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(src.get('default/mine-1'), 'the cache keeps its machines during an outage');
  await until('the outage is over', async () => {
    try { await kubectl(emulator, ["patch", "uml", "mine-3", "--type=merge", "-p", "{\"spec\":{\"state\":\"Stopped\"}}"]); return true; } catch (err) { if (process.env.EDGE_DEBUG) console.error(`${Date.now() - outageStart} ms into the outage: ${String(err).slice(0, 200)}`); return false; }
  }, 15_000);
  await until('mine-3 stopped after the outage', () => src.get('default/mine-3')?.spec.state === 'Stopped', 40_000);
  assert.ok(lines.some((l) => String(l.msg).includes('failed; retrying')));

  // A machine moved to another node leaves this node's cache.
  await kubectl(emulator, ['delete', 'uml', 'mine-3']);
  await until('mine-3 deleted', () => src.get('default/mine-3') === undefined);
});

test('field selector refused (API server < 1.31): watch everything, filter locally, say so once', async () => {
  await kubectl(oldEmulator, ['apply', '-f', '-'], machine('old-mine', 'node-a'));
  await kubectl(oldEmulator, ['apply', '-f', '-'], machine('old-theirs', 'node-b'));
  // The emulator answers like an old server.
  const probe = await fetch(`${oldEmulator.url}/apis/umlmon.io/v1alpha1/umlmachines?fieldSelector=spec.nodeName%3Dnode-a`);
  assert.equal(probe.status, 400);
  assert.match(await probe.text(), /field label not supported/);

  const { logger, lines } = memoryLogger();
  const src = createKubernetesSource({ nodeName: 'node-a', logger, client: kc(oldEmulator) });
  sources.push(src);
  await src.start(() => {});
  assert.equal(src.filteringLocally(), true);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['old-mine']);
  await kubectl(oldEmulator, ['apply', '-f', '-'], machine('old-mine-2', 'node-a'));
  await kubectl(oldEmulator, ['apply', '-f', '-'], machine('old-theirs-2', 'node-b'));
  await until('old-mine-2', () => src.get('default/old-mine-2') !== undefined);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(src.get('default/old-theirs-2'), undefined);
  // Moving a machine to another node removes it here.
  await kubectl(oldEmulator, ['patch', 'uml', 'old-mine-2', '--type=merge', '-p', '{"spec":{"nodeName":"node-b"}}']).catch(() => {
    // nodeName may be immutable by CEL; then delete instead.
    return kubectl(oldEmulator, ['delete', 'uml', 'old-mine-2']);
  });
  await until('old-mine-2 left', () => src.get('default/old-mine-2') === undefined);
  const notices = lines.filter((l) => String(l.msg).includes('refuses to filter'));
  assert.equal(notices.length, 1);
  assert.match(String(notices[0]?.reason), /field label not supported/);
});

test('Events: events.k8s.io/v1 with the reporting fields, repeats folded into a series', async () => {
  await kubectl(emulator, ['apply', '-f', '-'], machine('evented', 'node-a'));
  const obj = JSON.parse(await kubectl(emulator, ['get', 'uml', 'evented', '-o', 'json']));
  const { logger } = memoryLogger();
  const rec = createEventRecorder({ nodeName: 'node-a', logger, client: kc(emulator), seriesFlushMs: 50 });
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  await new Promise((r) => setTimeout(r, 300));
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  rec.record(obj, 'Normal', 'Booted', 'guest booted');
  await new Promise((r) => setTimeout(r, 300));
  await rec.stop();
  const list = JSON.parse(await kubectl(emulator, ['get', 'events.v1.events.k8s.io', '-o', 'json'])) as { items: { reason: string; reportingController: string; reportingInstance: string; regarding: { name: string; uid: string }; series?: { count: number }; note: string }[] };
  const panics = list.items.filter((e) => e.reason === 'GuestPanic' && e.regarding.name === 'evented');
  assert.equal(panics.length, 1, 'repeats fold into one Event');
  assert.equal(panics[0]?.series?.count, 3);
  assert.equal(panics[0]?.reportingController, 'umlmon.io/agent');
  assert.equal(panics[0]?.reportingInstance, 'node-a');
  assert.equal(panics[0]?.regarding.uid, obj.metadata.uid);
  assert.equal(list.items.filter((e) => e.reason === 'Booted' && e.regarding.name === 'evented').length, 1);
  // kubectl describe shows them on the machine (core/v1 view of the same Events).
  const described = await kubectl(emulator, ['describe', 'uml', 'evented']);
  assert.match(described, /GuestPanic/);
});
