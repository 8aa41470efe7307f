// The emulator over HTTP without kubectl: discovery and OpenAPI, field validation modes, dry
// run, tables, watches' timeouts, fault injection, Events, Leases, garbage collection,
// namespace and CRD lifecycle.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { umlMachine } from '../support/fixtures.ts';

const crd = parseYaml(readFileSync(join(import.meta.dirname, '..', '..', 'crds', 'umlmachines.umlmon.io.yaml'), 'utf8'));
const VERSION: string = crd.spec.versions.find((v: any) => v.storage).name;
const BASE = `/apis/umlmon.io/${VERSION}`;
let emu: Emulator;
let seq = 0;
const unique = (p: string): string => `${p}-${process.pid}-${++seq}`;

function machine(name: string, extra: Record<string, unknown> = {}): any {
  return umlMachine({ name, version: VERSION, spec: { nodeName: 'n1', disks: [{ name: 'ubd0', image: 'busybox.ext4' }], ...extra } });
}

async function newNamespace(): Promise<string> {
  const ns = unique('u');
  const r = await emu.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return ns;
}

before(async () => {
  emu = await startEmulator({ bookmarkIntervalMs: 100 });
  const r = await emu.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.ok(r.body.status.conditions.some((c: any) => c.type === 'Established' && c.status === 'True'));
});
after(async () => {
  await emu?.close();
});

test('discovery lists the CRD resource with its names, verbs and status subresource; /version is current', async () => {
  const groups = (await emu.request('GET', '/apis')).body;
  assert.ok(groups.groups.some((g: any) => g.name === 'umlmon.io' && g.preferredVersion.version === VERSION));
  const rl = (await emu.request('GET', BASE)).body;
  const res = rl.resources.find((r: any) => r.name === 'umlmachines');
  assert.deepEqual(res.shortNames, crd.spec.names.shortNames);
  assert.equal(res.kind, 'UmlMachine');
  assert.equal(res.namespaced, true);
  assert.ok(res.verbs.includes('watch') && res.verbs.includes('patch'));
  assert.ok(rl.resources.some((r: any) => r.name === 'umlmachines/status'));
  const core = (await emu.request('GET', '/api/v1')).body;
  for (const name of ['namespaces', 'configmaps', 'events', 'serviceaccounts', 'secrets', 'services']) assert.ok(core.resources.some((r: any) => r.name === name), name);
  const v = (await emu.request('GET', '/version')).body;
  assert.equal(v.major, '1');
  assert.ok(Number(v.minor) >= 32);
});

test('OpenAPI v3 serves the CRD schema with its descriptions and the fieldValidation parameter', async () => {
  const index = (await emu.request('GET', '/openapi/v3')).body;
  const url = index.paths[`apis/umlmon.io/${VERSION}`].serverRelativeURL;
  const doc = (await emu.request('GET', url)).body;
  const schema = Object.values<any>(doc.components.schemas).find((s) => s['x-kubernetes-group-version-kind']?.[0]?.kind === 'UmlMachine');
  assert.equal(schema.properties.spec.description, crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.description);
  const patchOp = Object.values<any>(doc.paths).find((p) => p.patch?.['x-kubernetes-group-version-kind']?.kind === 'UmlMachine').patch;
  assert.ok(patchOp.parameters.some((p: any) => p.name === 'fieldValidation' && p.in === 'query'));
  assert.ok(!('application/strategic-merge-patch+json' in patchOp.requestBody.content));
});

test('fieldValidation: Strict refuses unknown fields, Warn warns, Ignore drops them silently', async () => {
  const ns = await newNamespace();
  const body = machine('fv', { colour: 'blue' });
  const strict = await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines?fieldValidation=Strict`, body);
  assert.equal(strict.status, 400);
  assert.equal(strict.body.message, `UmlMachine in version "${VERSION}" cannot be handled as a UmlMachine: strict decoding error: unknown field "spec.colour"`);
  const res = await fetch(`${emu.url}${BASE}/namespaces/${ns}/umlmachines?fieldValidation=Warn`, { method: 'POST', headers: { Authorization: `Bearer ${emu.adminToken}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('warning'), '299 - "unknown field \\"spec.colour\\""');
  const stored: any = await res.json();
  assert.equal(stored.spec.colour, undefined, 'pruned');
  assert.equal(stored.spec.state, 'Running', 'defaulted');
  const ignore = await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines?fieldValidation=Ignore`, { ...body, metadata: { name: 'fv2' } });
  assert.equal(ignore.status, 201);
});

test('dryRun=All validates and answers without storing', async () => {
  const ns = await newNamespace();
  const r = await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines?dryRun=All`, machine('dry'));
  assert.equal(r.status, 201);
  assert.equal((await emu.request('GET', `${BASE}/namespaces/${ns}/umlmachines/dry`)).status, 404);
  const bad = await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines?dryRun=All`, { ...machine('dry'), spec: { disks: [] } });
  assert.equal(bad.status, 422);
  assert.match(bad.body.message, /spec.nodeName: Required value/);
});

test('Table responses carry the printer columns; get of a missing object is a NotFound Status', async () => {
  const ns = await newNamespace();
  await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines`, machine('t1', { memory: '64Mi' }));
  const res = await fetch(`${emu.url}${BASE}/namespaces/${ns}/umlmachines`, { headers: { Authorization: `Bearer ${emu.adminToken}`, Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' } });
  const t: any = await res.json();
  assert.equal(t.kind, 'Table');
  assert.deepEqual(t.columnDefinitions.map((c: any) => c.name), ['Name', ...crd.spec.versions[0].additionalPrinterColumns.map((c: any) => c.name)]);
  const memoryIdx = t.columnDefinitions.findIndex((c: any) => c.name === 'Memory');
  assert.equal(t.rows[0].cells[memoryIdx], '64Mi');
  assert.equal(t.rows[0].object.kind, 'PartialObjectMetadata');
  const missing = await emu.request('GET', `${BASE}/namespaces/${ns}/umlmachines/nope`);
  assert.deepEqual(missing.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'umlmachines.umlmon.io "nope" not found', reason: 'NotFound', details: { name: 'nope', group: 'umlmon.io', kind: 'umlmachines' }, code: 404 });
});

test('watch timeoutSeconds ends the stream', async () => {
  const ns = await newNamespace();
  const started = Date.now();
  const res = await fetch(`${emu.url}${BASE}/namespaces/${ns}/umlmachines?watch=1&timeoutSeconds=1&resourceVersion=${emu.resourceVersion()}`, { headers: { Authorization: `Bearer ${emu.adminToken}` } });
  await res.text();
  assert.ok(Date.now() - started >= 900, 'ended by the timeout');
});

test('core and events.k8s.io Events, including strategic-merge patches of a series', async () => {
  const ns = await newNamespace();
  const ev = await emu.request('POST', `/api/v1/namespaces/${ns}/events`, {
    metadata: { name: 'm.1' }, involvedObject: { kind: 'UmlMachine', name: 'm', namespace: ns }, reason: 'Booted', message: 'guest booted', type: 'Normal', count: 1,
  });
  assert.equal(ev.status, 201);
  const patched = await emu.request('PATCH', `/api/v1/namespaces/${ns}/events/m.1`, { count: 2, lastTimestamp: '2026-01-01T00:00:00Z' }, 'application/strategic-merge-patch+json');
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.count, 2);
  const byObject = await emu.request('GET', `/api/v1/namespaces/${ns}/events?fieldSelector=involvedObject.name%3Dm,reason%3DBooted`);
  assert.equal(byObject.body.items.length, 1);
  const e2 = await emu.request('POST', `/apis/events.k8s.io/v1/namespaces/${ns}/events`, {
    metadata: { name: 'm.2' }, eventTime: '2026-01-01T00:00:00.000000Z', regarding: { kind: 'UmlMachine', name: 'm', namespace: ns }, reason: 'Paused', note: 'paused', type: 'Normal', action: 'Pause', reportingController: 'umlmon.io/agent', reportingInstance: 'node-a',
  });
  assert.equal(e2.status, 201);
  const series = await emu.request('PATCH', `/apis/events.k8s.io/v1/namespaces/${ns}/events/m.2`, { series: { count: 2, lastObservedTime: '2026-01-01T00:01:00.000000Z' } }, 'application/strategic-merge-patch+json');
  assert.equal(series.body.series.count, 2);
  assert.equal(series.body.note, 'paused');
  // one storage, two APIs: what `kubectl describe` (core/v1) shows includes events.k8s.io events
  const core = await emu.request('GET', `/api/v1/namespaces/${ns}/events?fieldSelector=involvedObject.name%3Dm`);
  assert.deepEqual(core.body.items.map((e: any) => `${e.reason}: ${e.message} (${e.reportingComponent ?? e.source?.component ?? ''})`).sort(), ['Booted: guest booted ()', 'Paused: paused (umlmon.io/agent)']);
  const viaEvents = await emu.request('GET', `/apis/events.k8s.io/v1/namespaces/${ns}/events?fieldSelector=regarding.name%3Dm`);
  assert.deepEqual(viaEvents.body.items.map((e: any) => e.note).sort(), ['guest booted', 'paused']);
  assert.equal(viaEvents.body.items.find((e: any) => e.note === 'guest booted').deprecatedCount, 2);
});

test('Leases: optimistic concurrency on renewals', async () => {
  const ns = await newNamespace();
  const l = await emu.request('POST', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, { metadata: { name: 'umlmon-node-a' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } });
  assert.equal(l.status, 201);
  const renewed = await emu.request('PUT', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/umlmon-node-a`, { ...l.body, spec: { ...l.body.spec, renewTime: '2026-01-01T00:00:00.000000Z' } });
  assert.equal(renewed.status, 200);
  const stale = await emu.request('PUT', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/umlmon-node-a`, { ...l.body, spec: { holderIdentity: 'b' } });
  assert.equal(stale.status, 409);
  assert.equal(stale.body.message, 'Operation cannot be fulfilled on leases.coordination.k8s.io "umlmon-node-a": the object has been modified; please apply your changes to the latest version and try again');
});

test('ownerReferences are kept, and dependents go with their owner; generateName works', async () => {
  const ns = await newNamespace();
  const owner = await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines`, machine('owner'));
  const ref = { apiVersion: `umlmon.io/${VERSION}`, kind: 'UmlMachine', name: 'owner', uid: owner.body.metadata.uid };
  const cm = await emu.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { generateName: 'owned-', ownerReferences: [ref] }, data: { a: 'b' } });
  assert.equal(cm.status, 201);
  assert.match(cm.body.metadata.name, /^owned-[a-z0-9]{5}$/);
  assert.deepEqual(cm.body.metadata.ownerReferences, [ref]);
  await emu.request('DELETE', `${BASE}/namespaces/${ns}/umlmachines/owner`);
  assert.equal((await emu.request('GET', `/api/v1/namespaces/${ns}/configmaps/${cm.body.metadata.name}`)).status, 404);
});

test('finalizers hold deletion; no new finalizers once deleting; removal of the last one deletes', async () => {
  const ns = await newNamespace();
  await emu.request('POST', `${BASE}/namespaces/${ns}/umlmachines`, { ...machine('f'), metadata: { name: 'f', finalizers: ['umlmon.io/machine'] } });
  const del = await emu.request('DELETE', `${BASE}/namespaces/${ns}/umlmachines/f`, { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' });
  assert.equal(del.status, 200);
  assert.ok(del.body.metadata.deletionTimestamp);
  const add = await emu.request('PATCH', `${BASE}/namespaces/${ns}/umlmachines/f`, { metadata: { finalizers: ['umlmon.io/machine', 'other'] } }, 'application/merge-patch+json');
  assert.equal(add.status, 422);
  const status = await emu.request('PATCH', `${BASE}/namespaces/${ns}/umlmachines/f/status`, { status: { phase: 'Stopping' } }, 'application/merge-patch+json');
  assert.equal(status.status, 200, 'status can still be written while deleting');
  const rvBefore = emu.resourceVersion();
  const watch = fetch(`${emu.url}${BASE}/namespaces/${ns}/umlmachines?watch=1&resourceVersion=${rvBefore}&timeoutSeconds=1`, { headers: { Authorization: `Bearer ${emu.adminToken}` } }).then((r) => r.text());
  const rm = await emu.request('PATCH', `${BASE}/namespaces/${ns}/umlmachines/f`, [{ op: 'remove', path: '/metadata/finalizers' }], 'application/json-patch+json');
  assert.equal(rm.status, 200);
  const events = (await watch).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => e.type), ['DELETED'], 'removing the last finalizer deletes without an intermediate MODIFIED');
  assert.equal((await emu.request('GET', `${BASE}/namespaces/${ns}/umlmachines/f`)).status, 404);
});

test('deleting a namespace removes its contents; creating in a missing namespace is NotFound', async () => {
  const ns = await newNamespace();
  await emu.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'c' } });
  const del = await emu.request('DELETE', `/api/v1/namespaces/${ns}`);
  assert.equal(del.body.status.phase, 'Terminating');
  const refused = await emu.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: 'd' } });
  assert.equal(refused.status, 403);
  for (let i = 0; i < 100 && (await emu.request('GET', `/api/v1/namespaces/${ns}`)).status !== 404; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await emu.request('GET', `/api/v1/namespaces/${ns}`)).status, 404);
  assert.equal((await emu.request('GET', `/api/v1/namespaces/${ns}/configmaps/c`)).status, 404);
  const missing = await emu.request('POST', `/api/v1/namespaces/${unique('missing')}/configmaps`, { metadata: { name: 'x' } });
  assert.equal(missing.status, 404);
  assert.match(missing.body.message, /^namespaces ".*" not found$/);
});

test('a CRD whose CEL rule does not compile is refused; deleting a CRD removes its resources', async () => {
  const bad = structuredClone(crd);
  bad.metadata.name = 'widgets.example.com';
  bad.spec.group = 'example.com';
  bad.spec.names = { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' };
  bad.spec.versions[0].schema.openAPIV3Schema['x-kubernetes-validations'] = [{ rule: 'self.spec.(' }];
  const refused = await emu.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', bad);
  assert.equal(refused.status, 422);
  assert.match(refused.body.message, /compilation failed/);
  delete bad.spec.versions[0].schema.openAPIV3Schema['x-kubernetes-validations'];
  assert.equal((await emu.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', bad)).status, 201);
  const w = await emu.request('POST', `/apis/example.com/${VERSION}/namespaces/default/widgets`, { ...machine('w'), apiVersion: `example.com/${VERSION}`, kind: 'Widget' });
  assert.equal(w.status, 201, JSON.stringify(w.body));
  await emu.request('DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com');
  assert.equal((await emu.request('GET', `/apis/example.com/${VERSION}/namespaces/default/widgets/w`)).status, 404);
  assert.equal((await emu.request('GET', `/apis/example.com/${VERSION}`)).status, 404);
});

test('lists come in chunks with limit and continue; kubectl-style chunking sees every item once', async () => {
  const ns = await newNamespace();
  for (const n of ['a', 'b', 'c', 'd', 'e']) await emu.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: n } });
  const names: string[] = [];
  let cont = '';
  let chunks = 0;
  do {
    const r = await emu.request('GET', `/api/v1/namespaces/${ns}/configmaps?limit=2${cont ? `&continue=${cont}` : ''}`);
    names.push(...r.body.items.map((i: any) => i.metadata.name));
    cont = r.body.metadata.continue ?? '';
    chunks++;
  } while (cont);
  assert.deepEqual(names, ['a', 'b', 'c', 'd', 'e']);
  assert.equal(chunks, 3);
  const first = await emu.request('GET', `/api/v1/namespaces/${ns}/configmaps?limit=2`);
  assert.equal(first.body.metadata.remainingItemCount, 3);
});
