// The Kubernetes machine source and Event recorder against a real Kubernetes 1.20 control plane
// (test/support/control-plane.ts), with the real kubectl making the changes: the fallback for
// API servers that refuse the field selector (1.20 has no selectable fields: 400 "field label not
// supported"), watch events, status and finalizer writes, Events folded into series, 410 Gone
// from a real etcd compaction, and an outage of the API server. No kernel here: the agent's own
// e2e tests (agent-kubernetes.test.ts, agent-real-apiserver.test.ts) run guests. Server-side
// filtering by node (1.31+) is agent-kubernetes-source-filter.test.ts, on the emulator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { createKubernetesSource } from '../../src/agent/sources/kubernetes.ts';
import { createEventRecorder } from '../../src/agent/events.ts';
import { loadKubeClient, type KubeClient } from '../../src/agent/kube-client.ts';
import type { MachineSource } from '../../src/agent/source.ts';
import { REPO_ROOT } from '../support/uml.ts';
import { kubectlWith, machine, memoryLogger, until } from '../support/source-kit.ts';
import { crdEstablished } from '../support/kubectl.ts';

const CRD = join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml');

let cp: ControlPlane;
const sources: MachineSource[] = [];

before(async () => {
  // The watch cache off: etcd serves every watch, and the API server compacts etcd every
  // second, so a watch from an old resourceVersion is answered 410 Gone.
  cp = await startControlPlane({ watchCache: false, compactionIntervalSeconds: 1 });
  await kubectl(['apply', '--validate=false', '-f', CRD]);
  await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
});

after(async () => {
  for (const s of sources) await s.stop();
  await cp?.stop();
});

const kubectl = kubectlWith(() => cp.adminKubeconfig);
const kc = (): KubeClient => loadKubeClient(cp.adminKubeconfig);

test('field selector refused (1.20): watch everything, filter locally, say so once; watch, status, finalizer, delete', async () => {
  await kubectl(['apply', '-f', '-'], machine('mine-1', 'node-a'));
  await kubectl(['apply', '-f', '-'], machine('theirs-1', 'node-b'));
  const { logger, lines } = memoryLogger();
  const changed: string[] = [];
  const src = createKubernetesSource({ nodeName: 'node-a', logger, client: kc(), watchTimeoutSeconds: 2 });
  sources.push(src);
  assert.equal(src.synced(), false);
  await src.start((k) => changed.push(k));
  assert.equal(src.synced(), true);
  assert.equal(src.filteringLocally(), true);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['mine-1']);
  assert.equal(src.get('default/mine-1')?.apiVersion, 'umlmon.io/v1alpha1');
  const notices = lines.filter((l) => String(l.msg).includes('refuses to filter'));
  assert.equal(notices.length, 1);
  assert.match(String(notices[0]?.reason), /field label not supported/);

  // Watch: add, update; other nodes' machines stay out.
  await kubectl(['apply', '-f', '-'], machine('mine-2', 'node-a'));
  await kubectl(['apply', '-f', '-'], machine('theirs-2', 'node-b'));
  await until('mine-2 in the cache', () => src.get('default/mine-2') !== undefined);
  await kubectl(['patch', 'uml', 'mine-2', '--type=merge', '-p', '{"spec":{"state":"Paused"}}']);
  await until('mine-2 paused', () => src.get('default/mine-2')?.spec.state === 'Paused');
  assert.equal(src.get('default/theirs-2'), undefined);
  assert.ok(!changed.some((k) => k.includes('theirs')));

  // Status via the status subresource (merge patch); the spec is untouched.
  const m2 = src.get('default/mine-2')!;
  await src.patchStatus(m2, { phase: 'Running', observedGeneration: m2.metadata.generation ?? 0, pid: 4242 });
  const got = JSON.parse(await kubectl(['get', 'uml', 'mine-2', '-o', 'json'])) as { spec: { state: string }; status: { phase: string; pid: number } };
  assert.equal(got.status.phase, 'Running');
  assert.equal(got.status.pid, 4242);
  assert.equal(got.spec.state, 'Paused');
  await src.patchStatus(m2, { pid: 4343 });
  const got2 = JSON.parse(await kubectl(['get', 'uml', 'mine-2', '-o', 'json'])) as { status: { phase: string; pid: number } };
  assert.deepEqual([got2.status.phase, got2.status.pid], ['Running', 4343]);

  // Finalizer: added with a stale object (conflict → re-read → retry), then removed.
  const stale = src.get('default/mine-2')!;
  await kubectl(['label', 'uml', 'mine-2', 'x=1']);
  await src.ensureFinalizer(stale, true);
  const fin = JSON.parse(await kubectl(['get', 'uml', 'mine-2', '-o', 'json'])) as { metadata: { finalizers?: string[]; labels?: Record<string, string> } };
  assert.deepEqual(fin.metadata.finalizers, ['umlmon.io/machine']);
  assert.equal(fin.metadata.labels?.x, '1', 'the concurrent label change is kept');
  await src.ensureFinalizer(src.get('default/mine-2')!, true); // idempotent

  // Delete: the object stays (finalizer) with a deletionTimestamp until the finalizer goes.
  await kubectl(['delete', 'uml', 'mine-2', '--wait=false']);
  await until('deletionTimestamp seen', () => src.get('default/mine-2')?.metadata.deletionTimestamp !== undefined);
  await src.ensureFinalizer(src.get('default/mine-2')!, false);
  await until('mine-2 gone', () => src.get('default/mine-2') === undefined);
  assert.ok(changed.filter((k) => k === 'default/mine-2').length >= 4);

  // Moving a machine to another node removes it here. (1.20 does not enforce the CEL rule that
  // fixes spec.nodeName, so the move is possible there.)
  await kubectl(['apply', '-f', '-'], machine('mine-4', 'node-a'));
  await until('mine-4', () => src.get('default/mine-4') !== undefined);
  await kubectl(['patch', 'uml', 'mine-4', '--type=merge', '-p', '{"spec":{"nodeName":"node-b"}}']);
  await until('mine-4 left', () => src.get('default/mine-4') === undefined);
});

test('410 Gone from a real compaction: the source relists and loses nothing', async () => {
  const { logger, lines } = memoryLogger();
  const src = createKubernetesSource({ nodeName: 'node-c', logger, client: kc(), watchTimeoutSeconds: 2 });
  sources.push(src);
  await kubectl(['apply', '-f', '-'], machine('c-1', 'node-c'));
  await src.start(() => {});
  await until('c-1', () => src.get('default/c-1') !== undefined);
  // Writes the source does not watch move etcd on; the compactor passes the source's
  // resourceVersion; its next watch (every 2 s) is answered 410, and it relists.
  let i = 0;
  await until('a relist after 410 Gone', async () => {
    await kubectl(['create', 'configmap', `move-on-${i++}`]);
    return lines.some((l) => String(l.msg).includes('watch expired (410 Gone); relisting'));
  }, 30_000);
  await kubectl(['apply', '-f', '-'], machine('c-2', 'node-c'));
  await until('c-2 after the relist', () => src.get('default/c-2') !== undefined);
  assert.ok(src.synced());
  assert.deepEqual(src.list().map((m) => m.metadata.name).sort(), ['c-1', 'c-2']);
});

test('the API server down for 5 s: the cache keeps its machines, a change made afterwards arrives', async () => {
  const { logger, lines } = memoryLogger();
  const src = createKubernetesSource({ nodeName: 'node-d', logger, client: kc(), watchTimeoutSeconds: 30 });
  sources.push(src);
  await kubectl(['apply', '-f', '-'], machine('d-1', 'node-d'));
  await src.start(() => {});
  await until('d-1', () => src.get('default/d-1') !== undefined);
  await cp.stopApiServer();
  await new Promise((r) => setTimeout(r, 5000));
  assert.ok(src.get('default/d-1'), 'the cache keeps its machines during an outage');
  await cp.startApiServer();
  await kubectl(['patch', 'uml', 'd-1', '--type=merge', '-p', '{"spec":{"state":"Stopped"}}']);
  await until('d-1 stopped after the outage', () => src.get('default/d-1')?.spec.state === 'Stopped', 60_000);
  assert.ok(lines.some((l) => String(l.msg).includes('failed; retrying')), 'the source said it was retrying');
});

test('Events: events.k8s.io/v1 with the reporting fields, repeats folded into a series', async () => {
  await kubectl(['apply', '-f', '-'], machine('evented', 'node-a'));
  const obj = JSON.parse(await kubectl(['get', 'uml', 'evented', '-o', 'json']));
  const { logger } = memoryLogger();
  const rec = createEventRecorder({ nodeName: 'node-a', logger, client: kc(), seriesFlushMs: 50 });
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  await new Promise((r) => setTimeout(r, 300));
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  rec.record(obj, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  rec.record(obj, 'Normal', 'Booted', 'guest booted');
  await new Promise((r) => setTimeout(r, 300));
  await rec.stop();
  const list = JSON.parse(await kubectl(['get', 'events.v1.events.k8s.io', '-o', 'json'])) as { items: { reason: string; reportingController: string; reportingInstance: string; regarding: { name: string; uid: string }; series?: { count: number }; note: string }[] };
  const panics = list.items.filter((e) => e.reason === 'GuestPanic' && e.regarding.name === 'evented');
  assert.equal(panics.length, 1, 'repeats fold into one Event');
  assert.equal(panics[0]?.series?.count, 3);
  assert.equal(panics[0]?.reportingController, 'umlmon.io/agent');
  assert.equal(panics[0]?.reportingInstance, 'node-a');
  assert.equal(panics[0]?.regarding.uid, obj.metadata.uid);
  assert.equal(list.items.filter((e) => e.reason === 'Booted' && e.regarding.name === 'evented').length, 1);
  // kubectl describe shows them on the machine (core/v1 view of the same Events).
  const described = await kubectl(['describe', 'uml', 'evented']);
  assert.match(described, /GuestPanic/);
});
