// The agent's Kubernetes client (src/agent/kube-client.ts, node:https and a kubeconfig or the
// in-cluster files) against a real Kubernetes 1.20 API server (etcd, kube-apiserver and
// kube-controller-manager: test/support/control-plane.ts): list+watch resumption after the
// server ends a watch, bookmarks, 410 Gone from a real etcd compaction, 409 Conflict, the status
// subresource, field selectors refused, RBAC with a real ServiceAccount token, 401. What a 1.20
// server cannot show (sendInitialEvents, 1.27+; selectable fields, 1.31+) runs against the
// emulator at the end (test/emulator/README.md says why). The machine source built on this
// client (relists, outages, finalizers, Events) is agent-kubernetes-source.test.ts.
import { after, before, describe as suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { ApiError, KubeClient, loadKubeClient, type Resource } from '../../src/agent/kube-client.ts';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { waitFor } from '../support/kubectl.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { umlMachine } from '../support/fixtures.ts';

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
  return umlMachine({ name, version: VERSION, spec: { nodeName, disks: [{ name: 'ubd0', image: 'busybox.ext4' }] } });
}

const MACHINES: Resource = { group: GROUP, version: VERSION, resource: PLURAL };
const STATUS: Resource = { ...MACHINES, subresource: 'status' };
const NAMESPACES: Resource = { group: '', version: 'v1', resource: 'namespaces' };

async function errorOf(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

/**
 * The CRD as docs/install.md installs it on 1.20: `kubectl apply --validate=false` (the server
 * drops the CEL rules and selectable fields it does not know).
 */
async function installCrdOnRealServer(cp: ControlPlane): Promise<void> {
  await run('kubectl', ['--kubeconfig', cp.adminKubeconfig, 'apply', '--validate=false', '-f', CRD_FILE]);
  await crdEstablished(cp.adminKubeconfig, `${PLURAL}.${GROUP}`);
}

async function createNamespace(client: KubeClient): Promise<string> {
  const ns = unique('cn');
  await client.call('create', NAMESPACES, { body: { metadata: { name: ns } } });
  return ns;
}

const create = (client: KubeClient, ns: string, body: any): Promise<any> => client.call('create', MACHINES, { namespace: ns, body });
const list = (client: KubeClient, ns: string | undefined, query: Record<string, string> = {}): Promise<any> => client.call('list', MACHINES, { ...(ns ? { namespace: ns } : {}), query });

interface Seen { type: string; obj: any }

/**
 * A watch of the machines in one namespace (the agent's client watches cluster-wide, as the
 * agent does; metadata.namespace is a field every kind can be selected by), collecting its
 * events until it ends or is stopped.
 */
async function collect(client: KubeClient, ns: string, query: Record<string, string | number | boolean | undefined>): Promise<{ events: Seen[]; done: Promise<unknown>; stop(): void }> {
  const events: Seen[] = [];
  let resolveDone!: (v: unknown) => void;
  const done = new Promise((res) => { resolveDone = res; });
  const fieldSelector = [`metadata.namespace=${ns}`, query.fieldSelector].filter(Boolean).join(',');
  const ctl = await client.watch(MACHINES, { ...query, fieldSelector }, (type, obj) => events.push({ type, obj }), (err) => resolveDone(err ?? null));
  return { events, done, stop: () => ctl.abort() };
}

suite('the agent\'s client against a real 1.20 API server', () => {
  let cp: ControlPlane;
  let client: KubeClient;

  before(async () => {
    cp = await startControlPlane();
    client = loadKubeClient(cp.adminKubeconfig); // a kubeconfig with the CA and a token inline
    await installCrdOnRealServer(cp);
  });
  after(async () => {
    client?.close();
    await cp?.stop();
  });

  test('list, then watch from the list resourceVersion; resume after the server ends the watch, without gaps or repeats', async () => {
    const ns = await createNamespace(client);
    await create(client, ns, machine('m1', 'n1'));
    const listed = await list(client, ns);
    assert.equal(listed.items.length, 1);
    const w1 = await collect(client, ns, { resourceVersion: listed.metadata.resourceVersion, timeoutSeconds: 3 });
    await create(client, ns, machine('m2', 'n1'));
    await waitFor('ADDED m2', () => w1.events.some((e) => e.type === 'ADDED' && e.obj.metadata.name === 'm2'));
    assert.ok(!w1.events.some((e) => e.obj.metadata?.name === 'm1'), 'm1 was in the list; the watch must not repeat it');
    assert.equal(await w1.done, null, 'the server ends a watch at its timeoutSeconds, cleanly');
    const lastRv = w1.events.at(-1)!.obj.metadata.resourceVersion;
    // changes while no watch is open are delivered on resumption
    await client.call('patch', MACHINES, { namespace: ns, name: 'm1', body: { metadata: { labels: { x: 'y' } } } });
    await run('kubectl', ['--kubeconfig', cp.adminKubeconfig, '-n', ns, 'delete', 'uml', 'm2']);
    const w2 = await collect(client, ns, { resourceVersion: lastRv });
    await waitFor('MODIFIED m1 and DELETED m2', () => w2.events.length >= 2);
    assert.deepEqual(w2.events.map((e) => `${e.type} ${e.obj.metadata.name}`), ['MODIFIED m1', 'DELETED m2']);
    // Clients treat resourceVersions as opaque; this server's are etcd revisions, which grow.
    const rvs = w2.events.map((e) => Number(e.obj.metadata.resourceVersion));
    assert.ok(rvs[0]! > Number(lastRv) && rvs[1]! > rvs[0]!, `resourceVersions increase: ${lastRv} → ${rvs}`);
    w2.stop();
    assert.equal(await w2.done, null, 'a watch stopped by the client ends without an error');
  });

  test('allowWatchBookmarks delivers a BOOKMARK with the current resourceVersion before the watch times out', async () => {
    const ns = await createNamespace(client);
    const listed = await list(client, ns);
    // 1.20's watch cache sends a watcher its bookmark 2 s before the watch's deadline.
    const w = await collect(client, ns, { resourceVersion: listed.metadata.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 5 });
    // a change elsewhere moves the resourceVersion; the bookmark carries it
    const other = await create(client, 'default', machine(unique('other'), 'n1'));
    const rvNow = Number(other.metadata.resourceVersion);
    const bm = await waitFor('a bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && Number(e.obj.metadata.resourceVersion) >= rvNow), 10_000);
    assert.equal(bm.obj.kind, 'UmlMachine');
    assert.equal(w.events.filter((e) => e.type !== 'BOOKMARK').length, 0, 'nothing in this namespace changed');
    w.stop();
  });

  test('an update with a stale resourceVersion is refused with 409 Conflict', async () => {
    const ns = await createNamespace(client);
    const obj = await create(client, ns, machine('c', 'n1'));
    const fresh = { ...obj, spec: { ...obj.spec, memory: '64Mi' } };
    const updated: any = await client.call('update', MACHINES, { namespace: ns, name: 'c', body: fresh });
    assert.notEqual(updated.metadata.resourceVersion, obj.metadata.resourceVersion);
    assert.equal(updated.metadata.generation, 2);
    const stale = { ...obj, spec: { ...obj.spec, memory: '256Mi' } };
    const err = await errorOf(client.call('update', MACHINES, { namespace: ns, name: 'c', body: stale }));
    assert.equal(err.code, 409);
    const status = JSON.parse(err.body);
    assert.equal(status.reason, 'Conflict');
    assert.equal(status.message, 'Operation cannot be fulfilled on umlmachines.umlmon.io "c": the object has been modified; please apply your changes to the latest version and try again');
    assert.match(err.message, /^update umlmachines .*\/c: HTTP 409: Operation cannot be fulfilled/);
  });

  test('merge patch on the status subresource changes status only', async () => {
    const ns = await createNamespace(client);
    await create(client, ns, machine('s', 'n1'));
    const patched: any = await client.call('patch', STATUS, { namespace: ns, name: 's', body: { spec: { nodeName: 'other' }, status: { phase: 'Running', observedGeneration: 1 } } });
    assert.equal(patched.status.phase, 'Running');
    assert.equal(patched.spec.nodeName, 'n1');
    assert.equal(patched.metadata.generation, 1);
    // null deletes a field (RFC 7386)
    const cleared: any = await client.call('patch', STATUS, { namespace: ns, name: 's', body: { status: { observedGeneration: null } } });
    assert.equal(cleared.status.phase, 'Running');
    assert.equal('observedGeneration' in cleared.status, false);
  });

  test('a fieldSelector on spec.nodeName is refused by 1.20 (no selectable fields), so the agent filters locally', async () => {
    const ns = await createNamespace(client);
    await create(client, ns, machine('x1', 'node-x'));
    const err = await errorOf(list(client, ns, { fieldSelector: 'spec.nodeName=node-x' }));
    assert.equal(err.code, 400);
    assert.equal(JSON.parse(err.body).message, 'field label not supported: spec.nodeName');
    // metadata.name is a field every kind can be selected by
    const byName = await list(client, ns, { fieldSelector: 'metadata.name=x1' });
    assert.deepEqual(byName.items.map((o: any) => o.metadata.name), ['x1']);
  });

  test('a ServiceAccount may do what its ClusterRole allows and nothing else (403 with the API server\'s wording)', async () => {
    const ns = await createNamespace(client);
    const rbac = (resource: string): Resource => ({ group: 'rbac.authorization.k8s.io', version: 'v1', resource });
    await client.call('create', { group: '', version: 'v1', resource: 'serviceaccounts' }, { namespace: ns, body: { metadata: { name: 'agent' } } });
    await client.call('create', rbac('clusterroles'), { body: {
      metadata: { name: `machine-reader-${ns}` },
      rules: [
        { apiGroups: [GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['patch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ],
    } });
    await client.call('create', rbac('clusterrolebindings'), { body: {
      metadata: { name: `agent-machine-reader-${ns}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `machine-reader-${ns}` },
      subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
    } });
    await create(client, ns, machine('r1', 'n1'));

    const sa = loadKubeClient(await cp.serviceAccountKubeconfig(ns, 'agent'));
    const user = `system:serviceaccount:${ns}:agent`;
    const configMaps: Resource = { group: '', version: 'v1', resource: 'configmaps' };
    try {
      // The authorizer learns of new bindings through its informers, a moment after they are made.
      const listed = await waitFor('the binding in effect', () => list(sa, ns).catch(() => undefined), 30_000);
      const from = cp.requests().filter((r) => r.user === user).length - 1; // the list that succeeded
      assert.deepEqual(listed.items.map((o: any) => o.metadata.name), ['r1']);
      await sa.call('patch', STATUS, { namespace: ns, name: 'r1', body: { status: { phase: 'Running' } } });

      const denied = await errorOf(sa.call('patch', MACHINES, { namespace: ns, name: 'r1', body: { spec: { memory: '1Gi' } } }));
      assert.equal(denied.code, 403);
      assert.equal(JSON.parse(denied.body).message, `umlmachines.umlmon.io "r1" is forbidden: User "${user}" cannot patch resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
      const deniedCreate = await errorOf(create(sa, ns, machine('r2', 'n1')));
      assert.equal(JSON.parse(deniedCreate.body).message, `umlmachines.umlmon.io is forbidden: User "${user}" cannot create resource "umlmachines" in API group "umlmon.io" in the namespace "${ns}"`);
      const deniedCm = await errorOf(sa.call('list', configMaps, { namespace: ns }));
      assert.equal(deniedCm.code, 403);
      assert.match(JSON.parse(deniedCm.body).message, /^configmaps is forbidden: User ".*" cannot list resource "configmaps" in API group "" in the namespace/);
      await sa.call('create', { group: '', version: 'v1', resource: 'events' }, { namespace: ns, body: {
        metadata: { generateName: 'r1.' }, involvedObject: { apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine', name: 'r1', namespace: ns }, reason: 'Booted', message: 'guest booted', type: 'Normal',
      } });

      // the API server's audit log says who did what
      const mine = cp.requests().filter((r) => r.user === user).slice(from);
      assert.deepEqual(mine.map((r) => `${r.verb} ${r.resource}${r.subresource ? '/' + r.subresource : ''} ${r.code}`), [
        'list umlmachines 200', 'patch umlmachines/status 200', 'patch umlmachines 403', 'create umlmachines 403', 'list configmaps 403', 'create events 201',
      ]);
      // a RoleBinding grants within its namespace only (it may name a ClusterRole made later)
      await client.call('create', rbac('rolebindings'), { namespace: ns, body: {
        metadata: { name: 'cm-read' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `cm-reader-${ns}` }, subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns }],
      } });
      await client.call('create', rbac('clusterroles'), { body: { metadata: { name: `cm-reader-${ns}` }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }] } });
      await waitFor('the RoleBinding in effect', () => sa.call('list', configMaps, { namespace: ns }).catch(() => undefined), 30_000);
      assert.equal((await errorOf(sa.call('list', configMaps, { namespace: 'default' }))).code, 403);
    } finally {
      sa.close();
    }
  });

  test('the real garbage collector deletes what a user made owned by a machine, once the machine is gone', async () => {
    // E.g. a ConfigMap of guest data with an ownerReference to its UmlMachine: the CRD's objects
    // take part in garbage collection like built-in ones (kube-controller-manager's garbagecollector).
    const ns = await createNamespace(client);
    const m = await create(client, ns, machine('owner', 'n1'));
    const configMaps: Resource = { group: '', version: 'v1', resource: 'configmaps' };
    await client.call('create', configMaps, { namespace: ns, body: {
      metadata: { name: 'guest-data', ownerReferences: [{ apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine', name: 'owner', uid: m.metadata.uid }] },
      data: { 'user-data': '#cloud-config\n' },
    } });
    await run('kubectl', ['--kubeconfig', cp.adminKubeconfig, '-n', ns, 'delete', 'uml', 'owner']);
    await waitFor('the owned ConfigMap collected', async () => {
      const err = await client.call('get', configMaps, { namespace: ns, name: 'guest-data' }).then(() => undefined, (e: unknown) => e);
      return err instanceof ApiError && err.code === 404;
    }, 60_000);
  });

  test('a request with a token the server does not know is 401; a server with an unknown CA is refused', async () => {
    const ca = readFileSync(cp.caFile);
    const nobody = new KubeClient({ server: cp.url, ca, token: 'nope' });
    const noCa = new KubeClient({ server: cp.url, token: 'nope' });
    try {
      const err = await errorOf(nobody.call('list', NAMESPACES));
      assert.equal(err.code, 401);
      await assert.rejects(noCa.call('list', NAMESPACES), /self-signed certificate|unable to verify|certificate/);
    } finally {
      nobody.close();
      noCa.close();
    }
  });
});

suite('the agent\'s client and a real etcd compaction (watch cache off)', () => {
  let cp: ControlPlane;
  let client: KubeClient;

  before(async () => {
    // Without the watch cache, etcd serves every watch, and the API server compacts etcd every
    // second: a watch from a resourceVersion older than the compaction is answered 410 Gone.
    cp = await startControlPlane({ watchCache: false, compactionIntervalSeconds: 1 });
    client = loadKubeClient(cp.adminKubeconfig);
    await installCrdOnRealServer(cp);
  });
  after(async () => {
    client?.close();
    await cp?.stop();
  });

  test('a watch from a compacted resourceVersion gets 410 Gone as an ERROR event, then ends', async () => {
    const ns = await createNamespace(client);
    const during = await create(client, ns, machine('during', 'n1'));
    const oldRv = during.metadata.resourceVersion as string;
    // Writes elsewhere move etcd on, and the compactor passes "during": a watch from there is refused.
    const expired = await waitFor('etcd compacted past "during"', async () => {
      await create(client, 'default', machine(unique('elsewhere'), 'n1'));
      const w = await collect(client, ns, { resourceVersion: oldRv, timeoutSeconds: 1 });
      assert.equal(await w.done, null, 'the server ends the refused watch cleanly');
      return w.events[0]?.type === 'ERROR' ? w.events : undefined;
    }, 30_000);
    assert.equal(expired.length, 1);
    assert.equal(expired[0]!.obj.code, 410);
    assert.equal(expired[0]!.obj.reason, 'Expired');
    assert.match(expired[0]!.obj.message, /too old/);
  });
});

suite('the agent\'s client against the emulator: what a 1.20 server cannot show', () => {
  let emu: Emulator;
  let client: KubeClient;

  before(async () => {
    emu = await startEmulator({ bookmarkIntervalMs: 200, watchHistory: 1000 });
    client = loadKubeClient(emu.kubeconfigPath);
    await run('kubectl', ['--kubeconfig', emu.kubeconfigPath, 'apply', '-f', CRD_FILE]);
  });
  after(async () => {
    client?.close();
    await emu?.close();
  });

  test('sendInitialEvents (1.27+) streams the state, then a bookmark marking its end', async () => {
    const ns = await createNamespace(client);
    await create(client, ns, machine('a', 'n1'));
    const w = await collect(client, ns, { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: 'NotOlderThan' });
    const end = await waitFor('initial-events-end bookmark', () => w.events.find((e) => e.type === 'BOOKMARK' && e.obj.metadata.annotations?.['k8s.io/initial-events-end'] === 'true'));
    assert.deepEqual(w.events.slice(0, w.events.indexOf(end)).map((e) => `${e.type} ${e.obj.metadata.name}`), ['ADDED a']);
    w.stop();
  });

  test('fieldSelector on the selectable spec.nodeName (1.31+) lists only that node\'s machines; a watch sees one leave as DELETED', async () => {
    const ns = await createNamespace(client);
    for (const [n, node] of [['x1', 'node-x'], ['y1', 'node-y'], ['x2', 'node-x']] as const) await create(client, ns, machine(n, node));
    const listed = await list(client, ns, { fieldSelector: 'spec.nodeName=node-x' });
    assert.deepEqual(listed.items.map((o: any) => o.metadata.name), ['x1', 'x2']);
    const all = await list(client, undefined, { fieldSelector: 'spec.nodeName=node-y' });
    assert.deepEqual(all.items.map((o: any) => o.metadata.name), ['y1']);
    const w = await collect(client, ns, { resourceVersion: listed.metadata.resourceVersion, fieldSelector: 'spec.nodeName=node-x' });
    await run('kubectl', ['--kubeconfig', emu.kubeconfigPath, '-n', ns, 'delete', 'uml', 'x2']);
    await waitFor('DELETED x2', () => w.events.some((e) => e.type === 'DELETED' && e.obj.metadata.name === 'x2'));
    w.stop();
  });
});
