// @kubernetes/client-node 2.x against the Kubernetes API emulator: list+watch resumption,
// bookmarks, 410 Gone and relist, 409 Conflict, status merge patch, field selectors, RBAC.
import { after, before, describe as suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { waitFor } from '../emulator/kubectl.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const crd = parseYaml(readFileSync(join(ROOT, 'crds', 'umlmachines.umlmon.io.yaml'), 'utf8'));
const GROUP = 'umlmon.io';
const VERSION: string = crd.spec.versions.find((v: any) => v.storage).name;
const PLURAL = 'umlmachines';

let seq = 0;
const unique = (prefix: string): string => `${prefix}-${process.pid}-${++seq}`;

function machine(name: string, nodeName: string): any {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine', metadata: { name }, spec: { nodeName, disks: [{ name: 'ubd0', image: 'busybox.ext4' }] } };
}

function clientsFor(kubeconfigPath: string): { kc: k8s.KubeConfig; custom: k8s.CustomObjectsApi } {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return { kc, custom: kc.makeApiClient(k8s.CustomObjectsApi) };
}

async function errorOf(p: Promise<unknown>): Promise<k8s.ApiException<string>> {
  try {
    await p;
  } catch (err) {
    if (err instanceof k8s.ApiException) return err as k8s.ApiException<string>;
    throw err;
  }
  throw new Error('expected the request to fail');
}

async function installCrd(kc: k8s.KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  await ext.createCustomResourceDefinition({ body: crd });
}

async function createNamespace(kc: k8s.KubeConfig): Promise<string> {
  const ns = unique('cn');
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  return ns;
}

interface Seen { type: string; obj: any }

/** A watch that collects its events until stopped. */
async function collect(kc: k8s.KubeConfig, path: string, params: Record<string, string | number | boolean | undefined>): Promise<{ events: Seen[]; done: Promise<unknown>; stop(): void }> {
  const events: Seen[] = [];
  let resolveDone!: (v: unknown) => void;
  const done = new Promise((r) => { resolveDone = r; });
  const ctl = await new k8s.Watch(kc).watch(path, params, (type, obj) => events.push({ type, obj }), (err) => resolveDone(err ?? null));
  return { events, done, stop: () => ctl.abort() };
}

suite('client-node against the emulator', () => {
  let emu: Emulator;
  let kc: k8s.KubeConfig;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    emu = await startEmulator({ bookmarkIntervalMs: 200, watchHistory: 1000 });
    ({ kc, custom } = clientsFor(emu.kubeconfigPath));
    await installCrd(kc);
  });
  after(async () => {
    await emu?.close();
  });

  test('list, then watch from the list resourceVersion; resume after a dropped watch without gaps or repeats', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('m1', 'n1') });
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    assert.equal(list.items.length, 1);
    const w1 = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion });
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('m2', 'n1') });
    await waitFor('ADDED m2', () => w1.events.some((e) => e.type === 'ADDED' && e.obj.metadata.name === 'm2'));
    assert.ok(!w1.events.some((e) => e.obj.metadata?.name === 'm1'), 'm1 was in the list; the watch must not repeat it');
    emu.faults.dropWatches();
    assert.equal(await w1.done, null, 'a dropped watch ends cleanly');
    const lastRv = w1.events.at(-1)!.obj.metadata.resourceVersion;
    // changes while no watch is open are delivered on resumption
    await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'm1', body: { metadata: { labels: { x: 'y' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'm2' });
    const w2 = await collect(kc, path, { resourceVersion: lastRv });
    await waitFor('MODIFIED m1 and DELETED m2', () => w2.events.length >= 2);
    assert.deepEqual(w2.events.map((e) => `${e.type} ${e.obj.metadata.name}`), ['MODIFIED m1', 'DELETED m2']);
    const rvs = w2.events.map((e) => Number(e.obj.metadata.resourceVersion));
    assert.ok(rvs[0]! > Number(lastRv) && rvs[1]! > rvs[0]!, `resourceVersions increase: ${lastRv} → ${rvs}`);
    w2.stop();
  });

  test('allowWatchBookmarks delivers BOOKMARK events with the current resourceVersion', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    const w = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true });
    // a change elsewhere moves the global resourceVersion; the bookmark carries it
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'default', plural: PLURAL, body: machine(unique('other'), 'n1') });
    const rvNow = emu.resourceVersion();
    const bm = await waitFor('a bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && Number(e.obj.metadata.resourceVersion) >= rvNow));
    assert.equal(bm.obj.kind, 'UmlMachine');
    assert.equal(w.events.filter((e) => e.type !== 'BOOKMARK').length, 0, 'nothing in this namespace changed');
    w.stop();
  });

  test('sendInitialEvents streams the state, then a bookmark marking its end', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('a', 'n1') });
    const w = await collect(kc, path, { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: 'NotOlderThan' });
    const end = await waitFor('initial-events-end bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && e.obj.metadata.annotations?.['k8s.io/initial-events-end'] === 'true'));
    assert.deepEqual(w.events.slice(0, w.events.indexOf(end)).map((e) => `${e.type} ${e.obj.metadata.name}`), ['ADDED a']);
    w.stop();
  });

  test('after compact() a watch from an old resourceVersion gets 410 Gone, and an informer relists', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const listFn = async (): Promise<any> => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('before', 'n1') });
    const informer = k8s.makeInformer(kc, path, listFn);
    const added: string[] = [];
    informer.on('add', (o) => added.push(o.metadata!.name!));
    await informer.start();
    await waitFor('informer watching', () => emu.requests.some((r) => r.verb === 'watch' && r.namespace === ns));
    const oldRv = String(emu.resourceVersion());
    const listsBefore = emu.requests.filter((r) => r.verb === 'list' && r.namespace === ns).length;
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('during', 'n1') });
    emu.faults.compact();
    // a plain watch from before the compaction: ERROR event with a 410 Status
    const w = await collect(kc, path, { resourceVersion: oldRv });
    await w.done;
    assert.equal(w.events.length, 1);
    assert.equal(w.events[0]!.type, 'ERROR');
    assert.equal(w.events[0]!.obj.code, 410);
    assert.equal(w.events[0]!.obj.reason, 'Expired');
    assert.match(w.events[0]!.obj.message, /too old resource version/);
    // the informer's next watch resumes from a compacted version: 410, relist, carry on.
    // (Its resourceVersion is that of the last event it saw; writes elsewhere move past it.)
    await waitFor('informer saw "during"', () => informer.get('during', ns));
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'default', plural: PLURAL, body: machine(unique('elsewhere'), 'n1') });
    emu.faults.compact();
    emu.faults.dropWatches();
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('after', 'n1') });
    await waitFor('informer relisted', () => emu.requests.filter((r) => r.verb === 'list' && r.namespace === ns).length > listsBefore, 30_000);
    await waitFor('informer sees every object', () => ['before', 'during', 'after'].every((n) => informer.get(n, ns)), 30_000);
    await informer.stop();
    assert.deepEqual([...added].sort(), ['after', 'before', 'during']);
  });

  test('an update with a stale resourceVersion is refused with 409 Conflict', async () => {
    const ns = await createNamespace(kc);
    const obj: any = await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('c', 'n1') });
    const fresh = { ...obj, spec: { ...obj.spec, memory: '64Mi' } };
    const updated: any = await custom.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'c', body: fresh });
    assert.notEqual(updated.metadata.resourceVersion, obj.metadata.resourceVersion);
    assert.equal(updated.metadata.generation, 2);
    const stale = { ...obj, spec: { ...obj.spec, memory: '256Mi' } };
    const err = await errorOf(custom.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'c', body: stale }));
    assert.equal(err.code, 409);
    const status = JSON.parse(err.body);
    assert.equal(status.reason, 'Conflict');
    assert.equal(status.message, 'Operation cannot be fulfilled on umlmachines.umlmon.io "c": the object has been modified; please apply your changes to the latest version and try again');
  });

  test('merge patch on the status subresource changes status only', async () => {
    const ns = await createNamespace(kc);
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('s', 'n1') });
    const patched: any = await custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 's', body: { spec: { nodeName: 'other' }, status: { phase: 'Running', observedGeneration: 1 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    assert.equal(patched.status.phase, 'Running');
    assert.equal(patched.spec.nodeName, 'n1');
    assert.equal(patched.metadata.generation, 1);
    // strategic merge patch is not offered for custom resources (415), as on a real server
    const err = await errorOf(custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 's', body: { status: { phase: 'Stopped' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    ));
    assert.equal(err.code, 415);
  });

  test('fieldSelector on spec.nodeName lists only that node\'s machines', async () => {
    const ns = await createNamespace(kc);
    for (const [n, node] of [['x1', 'node-x'], ['y1', 'node-y'], ['x2', 'node-x']] as const) {
      await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine(n, node) });
    }
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, fieldSelector: 'spec.nodeName=node-x' });
    assert.deepEqual(list.items.map((o: any) => o.metadata.name), ['x1', 'x2']);
    const all = await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, fieldSelector: 'spec.nodeName=node-y' });
    assert.deepEqual(all.items.map((o: any) => o.metadata.name), ['y1']);
    // a watch with the selector sees a machine leave the node as DELETED
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const w = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion, fieldSelector: 'spec.nodeName=node-x' });
    await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'x2', body: { spec: { nodeName: 'node-y' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await waitFor('DELETED x2', () => w.events.some((e) => e.type === 'DELETED' && e.obj.metadata.name === 'x2'));
    w.stop();
  });
});

suite('client-node with RBAC enforced', () => {
  let emu: Emulator;
  let admin: k8s.KubeConfig;

  before(async () => {
    emu = await startEmulator({ rbac: true });
    ({ kc: admin } = clientsFor(emu.kubeconfigPath));
    await installCrd(admin);
  });
  after(async () => {
    await emu?.close();
  });

  test('a service account may do what its ClusterRole allows and nothing else (403 with the API server wording)', async () => {
    const ns = await createNamespace(admin);
    const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createClusterRole({ body: {
      metadata: { name: 'machine-reader' },
      rules: [
        { apiGroups: [GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['patch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ],
    } });
    await rbac.createClusterRoleBinding({ body: {
      metadata: { name: 'agent-machine-reader' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'machine-reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
    } });
    const { custom: adminCustom } = clientsFor(emu.kubeconfigPath);
    await adminCustom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('r1', 'n1') });

    const { kc, custom } = clientsFor(await emu.kubeconfigFor(ns, 'agent'));
    const user = `system:serviceaccount:${ns}:agent`;
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    assert.deepEqual(list.items.map((o: any) => o.metadata.name), ['r1']);
    await custom.patchNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'r1', body: { status: { phase: 'Running' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));

    const denied = await errorOf(custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'r1', body: { spec: { memory: '1Gi' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)));
    assert.equal(denied.code, 403);
    assert.equal(JSON.parse(denied.body).message, `umlmachines.umlmon.io "r1" is forbidden: User "${user}" cannot patch resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
    const deniedCreate = await errorOf(custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('r2', 'n1') }));
    assert.equal(JSON.parse(deniedCreate.body).message, `umlmachines.umlmon.io is forbidden: User "${user}" cannot create resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
    const deniedCm = await errorOf(kc.makeApiClient(k8s.CoreV1Api).listNamespacedConfigMap({ namespace: ns }));
    assert.equal(deniedCm.code, 403);
    assert.match(JSON.parse(deniedCm.body).message, /^configmaps is forbidden: User ".*" cannot list resource "configmaps" in API group "" in the namespace/);
    await kc.makeApiClient(k8s.CoreV1Api).createNamespacedEvent({ namespace: ns, body: {
      metadata: { generateName: 'r1.' }, involvedObject: { apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine', name: 'r1', namespace: ns }, reason: 'Booted', message: 'guest booted', type: 'Normal',
    } });

    // the request log says who did what
    const mine = emu.requests.filter((r) => r.user === user);
    assert.deepEqual(mine.map((r) => `${r.verb} ${r.resource}${r.subresource ? '/' + r.subresource : ''} ${r.code}`), [
      'list umlmachines 200', 'patch umlmachines/status 200', 'patch umlmachines 403', 'create umlmachines 403', 'list configmaps 403', 'create events 201',
    ]);
    // a RoleBinding grants within its namespace only
    await rbac.createNamespacedRoleBinding({ namespace: ns, body: {
      metadata: { name: 'cm-read' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cm-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
    } });
    await rbac.createClusterRole({ body: { metadata: { name: 'cm-reader' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'], resourceNames: [] }] } });
    await kc.makeApiClient(k8s.CoreV1Api).listNamespacedConfigMap({ namespace: ns });
    assert.equal((await errorOf(kc.makeApiClient(k8s.CoreV1Api).listNamespacedConfigMap({ namespace: 'default' }))).code, 403);
  });

  test('requests without a known token are 401 when RBAC is on', async () => {
    const res = await fetch(`${emu.url}/api/v1/namespaces`, { headers: { Authorization: 'Bearer nope' } });
    assert.equal(res.status, 401);
  });
});
