// @kubernetes/client-node 2.x against a real Kubernetes 1.20 API server (etcd, kube-apiserver
// and kube-controller-manager: test/support/control-plane.ts): list+watch resumption after the
// server ends a watch, bookmarks, 410 Gone from a real etcd compaction and an informer's relist,
// 409 Conflict, the status subresource, field selectors refused, RBAC with a real
// ServiceAccount token. What a 1.20 server cannot show (sendInitialEvents, 1.27+; selectable
// fields, 1.31+) runs against the emulator at the end (test/emulator/README.md says why).
import { after, before, describe as suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { waitFor } from '../support/kubectl.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CRD_FILE = join(ROOT, 'crds', 'umlmachines.umlmon.io.yaml');
const crd = parseYaml(readFileSync(CRD_FILE, 'utf8'));
const GROUP = 'umlmon.io';
const VERSION: string = crd.spec.versions.find((v: any) => v.storage).name;
const PLURAL = 'umlmachines';
const run = promisify(execFile);

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

/**
 * The CRD as docs/install.md installs it on 1.20: `kubectl apply --validate=false` (the server
 * drops the CEL rules and selectable fields it does not know). Not through client-node's typed
 * ApiextensionsV1Api: its serializer maps JSON keys to model properties and silently drops
 * `x-kubernetes-int-or-string`, which a real server then refuses ("type: Required value").
 */
async function installCrdOnRealServer(cp: ControlPlane): Promise<void> {
  await run('kubectl', ['--kubeconfig', cp.adminKubeconfig, 'apply', '--validate=false', '-f', CRD_FILE]);
  await run('kubectl', ['--kubeconfig', cp.adminKubeconfig, 'wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=60s']);
}

async function createNamespace(kc: k8s.KubeConfig): Promise<string> {
  const ns = unique('cn');
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  return ns;
}

interface Seen { type: string; obj: any }

/** A watch that collects its events until it ends or is stopped. */
async function collect(kc: k8s.KubeConfig, path: string, params: Record<string, string | number | boolean | undefined>): Promise<{ events: Seen[]; done: Promise<unknown>; stop(): void }> {
  const events: Seen[] = [];
  let resolveDone!: (v: unknown) => void;
  const done = new Promise((r) => { resolveDone = r; });
  const ctl = await new k8s.Watch(kc).watch(path, params, (type, obj) => events.push({ type, obj }), (err) => resolveDone(err ?? null));
  return { events, done, stop: () => ctl.abort() };
}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

suite('client-node against a real 1.20 API server', () => {
  let cp: ControlPlane;
  let kc: k8s.KubeConfig;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    cp = await startControlPlane();
    ({ kc, custom } = clientsFor(cp.adminKubeconfig));
    await installCrdOnRealServer(cp);
  });
  after(async () => {
    await cp?.stop();
  });

  test('list, then watch from the list resourceVersion; resume after the server ends the watch, without gaps or repeats', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('m1', 'n1') });
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    assert.equal(list.items.length, 1);
    const w1 = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 3 });
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('m2', 'n1') });
    await waitFor('ADDED m2', () => w1.events.some((e) => e.type === 'ADDED' && e.obj.metadata.name === 'm2'));
    assert.ok(!w1.events.some((e) => e.obj.metadata?.name === 'm1'), 'm1 was in the list; the watch must not repeat it');
    assert.equal(await w1.done, null, 'the server ends a watch at its timeoutSeconds, cleanly');
    const lastRv = w1.events.at(-1)!.obj.metadata.resourceVersion;
    // changes while no watch is open are delivered on resumption
    await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'm1', body: { metadata: { labels: { x: 'y' } } } }, mergePatch);
    await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'm2' });
    const w2 = await collect(kc, path, { resourceVersion: lastRv });
    await waitFor('MODIFIED m1 and DELETED m2', () => w2.events.length >= 2);
    assert.deepEqual(w2.events.map((e) => `${e.type} ${e.obj.metadata.name}`), ['MODIFIED m1', 'DELETED m2']);
    // Clients treat resourceVersions as opaque; this server's are etcd revisions, which grow.
    const rvs = w2.events.map((e) => Number(e.obj.metadata.resourceVersion));
    assert.ok(rvs[0]! > Number(lastRv) && rvs[1]! > rvs[0]!, `resourceVersions increase: ${lastRv} → ${rvs}`);
    w2.stop();
  });

  test('allowWatchBookmarks delivers a BOOKMARK with the current resourceVersion before the watch times out', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    // 1.20's watch cache sends a watcher its bookmark 2 s before the watch's deadline.
    const w = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 5 });
    // a change elsewhere moves the resourceVersion; the bookmark carries it
    const other: any = await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'default', plural: PLURAL, body: machine(unique('other'), 'n1') });
    const rvNow = Number(other.metadata.resourceVersion);
    const bm = await waitFor('a bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && Number(e.obj.metadata.resourceVersion) >= rvNow), 10_000);
    assert.equal(bm.obj.kind, 'UmlMachine');
    assert.equal(w.events.filter((e) => e.type !== 'BOOKMARK').length, 0, 'nothing in this namespace changed');
    w.stop();
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
      mergePatch,
    );
    assert.equal(patched.status.phase, 'Running');
    assert.equal(patched.spec.nodeName, 'n1');
    assert.equal(patched.metadata.generation, 1);
    // strategic merge patch is not offered for custom resources
    const err = await errorOf(custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 's', body: { status: { phase: 'Stopped' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    ));
    assert.equal(err.code, 415);
  });

  test('a fieldSelector on spec.nodeName is refused by 1.20 (no selectable fields), so a client filters by label or locally', async () => {
    const ns = await createNamespace(kc);
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('x1', 'node-x') });
    const err = await errorOf(custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, fieldSelector: 'spec.nodeName=node-x' }));
    assert.equal(err.code, 400);
    assert.equal(JSON.parse(err.body).message, 'field label not supported: spec.nodeName');
    // metadata.name is a field every kind can be selected by
    const byName = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, fieldSelector: 'metadata.name=x1' });
    assert.deepEqual(byName.items.map((o: any) => o.metadata.name), ['x1']);
  });

  test('a ServiceAccount may do what its ClusterRole allows and nothing else (403 with the API server\'s wording)', async () => {
    const ns = await createNamespace(kc);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent' } } });
    await rbac.createClusterRole({ body: {
      metadata: { name: `machine-reader-${ns}` },
      rules: [
        { apiGroups: [GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['patch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ],
    } });
    await rbac.createClusterRoleBinding({ body: {
      metadata: { name: `agent-machine-reader-${ns}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `machine-reader-${ns}` },
      subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
    } });
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('r1', 'n1') });

    const { kc: saKc, custom: saCustom } = clientsFor(await cp.serviceAccountKubeconfig(ns, 'agent'));
    const user = `system:serviceaccount:${ns}:agent`;
    // The authorizer learns of new bindings through its informers, a moment after they are made.
    const list = await waitFor('the binding in effect', () => saCustom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL }).catch(() => undefined), 30_000);
    const from = cp.requests().filter((r) => r.user === user).length - 1; // the list that succeeded
    assert.deepEqual(list.items.map((o: any) => o.metadata.name), ['r1']);
    await saCustom.patchNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'r1', body: { status: { phase: 'Running' } } }, mergePatch);

    const denied = await errorOf(saCustom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'r1', body: { spec: { memory: '1Gi' } } }, mergePatch));
    assert.equal(denied.code, 403);
    assert.equal(JSON.parse(denied.body).message, `umlmachines.umlmon.io "r1" is forbidden: User "${user}" cannot patch resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
    const deniedCreate = await errorOf(saCustom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('r2', 'n1') }));
    assert.equal(JSON.parse(deniedCreate.body).message, `umlmachines.umlmon.io is forbidden: User "${user}" cannot create resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
    const saCore = saKc.makeApiClient(k8s.CoreV1Api);
    const deniedCm = await errorOf(saCore.listNamespacedConfigMap({ namespace: ns }));
    assert.equal(deniedCm.code, 403);
    assert.match(JSON.parse(deniedCm.body).message, /^configmaps is forbidden: User ".*" cannot list resource "configmaps" in API group "" in the namespace/);
    await saCore.createNamespacedEvent({ namespace: ns, body: {
      metadata: { generateName: 'r1.' }, involvedObject: { apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine', name: 'r1', namespace: ns }, reason: 'Booted', message: 'guest booted', type: 'Normal',
    } });

    // the API server's audit log says who did what
    const mine = cp.requests().filter((r) => r.user === user).slice(from);
    assert.deepEqual(mine.map((r) => `${r.verb} ${r.resource}${r.subresource ? '/' + r.subresource : ''} ${r.code}`), [
      'list umlmachines 200', 'patch umlmachines/status 200', 'patch umlmachines 403', 'create umlmachines 403', 'list configmaps 403', 'create events 201',
    ]);
    // a RoleBinding grants within its namespace only (it may name a ClusterRole made later)
    await rbac.createNamespacedRoleBinding({ namespace: ns, body: {
      metadata: { name: 'cm-read' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `cm-reader-${ns}` }, subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
    } });
    await rbac.createClusterRole({ body: { metadata: { name: `cm-reader-${ns}` }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }] } });
    await waitFor('the RoleBinding in effect', () => saCore.listNamespacedConfigMap({ namespace: ns }).catch(() => undefined), 30_000);
    assert.equal((await errorOf(saCore.listNamespacedConfigMap({ namespace: 'default' }))).code, 403);
  });

  test('a request with a token the server does not know is 401', async () => {
    const kc401 = new k8s.KubeConfig();
    kc401.loadFromOptions({
      clusters: [{ name: 'real', server: cp.url, caFile: cp.caFile }],
      users: [{ name: 'nobody', token: 'nope' }],
      contexts: [{ name: 'real', cluster: 'real', user: 'nobody' }],
      currentContext: 'real',
    });
    const err = await errorOf(kc401.makeApiClient(k8s.CoreV1Api).listNamespace());
    assert.equal(err.code, 401);
  });
});

suite('client-node and a real etcd compaction (watch cache off)', () => {
  let cp: ControlPlane;
  let kc: k8s.KubeConfig;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    // Without the watch cache, etcd serves every watch, and the API server compacts etcd every
    // second: a watch from a resourceVersion older than the compaction is answered 410 Gone.
    // Watches without timeoutSeconds (an informer's) end after 3 to 6 s.
    cp = await startControlPlane({ watchCache: false, compactionIntervalSeconds: 1, minRequestTimeoutSeconds: 3 });
    ({ kc, custom } = clientsFor(cp.adminKubeconfig));
    await installCrdOnRealServer(cp);
  });
  after(async () => {
    await cp?.stop();
  });

  test('a watch from a compacted resourceVersion gets 410 Gone, and an informer relists and carries on', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    let lists = 0;
    const listFn = async (): Promise<any> => {
      lists++;
      return custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
    };
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('before', 'n1') });
    const informer = k8s.makeInformer(kc, path, listFn);
    const added: string[] = [];
    informer.on('add', (o) => added.push(o.metadata!.name!));
    await informer.start();
    const during: any = await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('during', 'n1') });
    await waitFor('the informer sees "during" through its watch', () => informer.get('during', ns));
    assert.equal(lists, 1);
    // The informer's resourceVersion is now that of "during". Writes elsewhere move etcd on,
    // and the compactor passes it: a plain watch from there is refused.
    const oldRv = during.metadata.resourceVersion as string;
    const expired = await waitFor('etcd compacted past "during"', async () => {
      await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: 'default', plural: PLURAL, body: machine(unique('elsewhere'), 'n1') });
      const w = await collect(kc, path, { resourceVersion: oldRv, timeoutSeconds: 1 });
      await w.done;
      return w.events[0]?.type === 'ERROR' ? w.events : undefined;
    }, 30_000);
    assert.equal(expired.length, 1);
    assert.equal(expired[0]!.obj.code, 410);
    assert.equal(expired[0]!.obj.reason, 'Expired');
    assert.match(expired[0]!.obj.message, /too old/);
    // When the server ends the informer's watch, it watches again from that version, is told
    // 410, relists, and carries on.
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('after', 'n1') });
    await waitFor('the informer relisted', () => lists > 1, 30_000);
    await waitFor('the informer sees every object', () => ['before', 'during', 'after'].every((n) => informer.get(n, ns)), 30_000);
    await informer.stop();
    assert.deepEqual([...added].sort(), ['after', 'before', 'during']);
  });
});

suite('client-node against the emulator: what a 1.20 server cannot show', () => {
  let emu: Emulator;
  let kc: k8s.KubeConfig;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    emu = await startEmulator({ bookmarkIntervalMs: 200, watchHistory: 1000 });
    ({ kc, custom } = clientsFor(emu.kubeconfigPath));
    await kc.makeApiClient(k8s.ApiextensionsV1Api).createCustomResourceDefinition({ body: crd });
  });
  after(async () => {
    await emu?.close();
  });

  test('sendInitialEvents (1.27+) streams the state, then a bookmark marking its end', async () => {
    const ns = await createNamespace(kc);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine('a', 'n1') });
    const w = await collect(kc, path, { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: 'NotOlderThan' });
    const end = await waitFor('initial-events-end bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && e.obj.metadata.annotations?.['k8s.io/initial-events-end'] === 'true'));
    assert.deepEqual(w.events.slice(0, w.events.indexOf(end)).map((e) => `${e.type} ${e.obj.metadata.name}`), ['ADDED a']);
    w.stop();
  });

  test('fieldSelector on the selectable spec.nodeName (1.31+) lists only that node\'s machines; a watch sees one leave as DELETED', async () => {
    const ns = await createNamespace(kc);
    for (const [n, node] of [['x1', 'node-x'], ['y1', 'node-y'], ['x2', 'node-x']] as const) {
      await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: machine(n, node) });
    }
    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, fieldSelector: 'spec.nodeName=node-x' });
    assert.deepEqual(list.items.map((o: any) => o.metadata.name), ['x1', 'x2']);
    const all = await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, fieldSelector: 'spec.nodeName=node-y' });
    assert.deepEqual(all.items.map((o: any) => o.metadata.name), ['y1']);
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
    const w = await collect(kc, path, { resourceVersion: list.metadata.resourceVersion, fieldSelector: 'spec.nodeName=node-x' });
    await custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'x2', body: { spec: { nodeName: 'node-y' } } }, mergePatch);
    await waitFor('DELETED x2', () => w.events.some((e) => e.type === 'DELETED' && e.obj.metadata.name === 'x2'));
    w.stop();
  });
});
