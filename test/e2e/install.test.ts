// The install paths of docs/install.md, as written for a 1.20 server, with the real kubectl
// against a real Kubernetes 1.20 control plane (test/support/control-plane.ts), a fresh one per
// install: the chart's rendering applied client-side and server-side (default and non-default
// values), `kubectl kustomize manifests/ | kubectl apply -f -`, and `kubectl apply -k
// manifests/`. After each, the API holds the objects as rendered (plus what the server defaults,
// minus the CRD fields 1.20 does not know) and the CRD serves UmlMachines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { describe as describeResult, kubectlFor, type Kubectl, type KubectlResult } from '../support/kubectl.ts';
import { CHART_DIR, MANIFESTS_DIR, parseRendering, renderChart, type RenderOptions } from '../../hack/render-chart.ts';
import { crdEstablished } from '../support/kubectl.ts';

type Obj = Record<string, any>;

const work = mkdtempSync(join(tmpdir(), 'umlmon-install-'));
const planes: Promise<ControlPlane>[] = [];
after(async () => {
  await Promise.all(planes.map(async (p) => (await p.catch(() => undefined))?.stop()));
  rmSync(work, { recursive: true, force: true });
});

const INSTALLS = 5; // the tests below, one cluster each
let next: Promise<ControlPlane> | undefined;

/** A fresh control plane for one install; the next one starts while this one is in use. */
async function cluster(): Promise<ControlPlane> {
  const current = next ?? startControlPlane();
  if (!next) planes.push(current);
  next = planes.length < INSTALLS ? startControlPlane() : undefined;
  if (next) planes.push(next);
  return current;
}

const kubectls = new Map<string, Kubectl>();

/** Runs the real kubectl as the cluster's admin. */
async function kubectl(cp: ControlPlane, args: string[], input?: string): Promise<KubectlResult> {
  let run = kubectls.get(cp.adminKubeconfig);
  if (!run) kubectls.set(cp.adminKubeconfig, (run = kubectlFor(cp.adminKubeconfig)));
  const r = await run(args, { input });
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed:\n${describeResult(r)}`);
  return r;
}

async function getJson(cp: ControlPlane, kind: string, name: string, namespace?: string): Promise<Obj> {
  return JSON.parse((await kubectl(cp, ['get', kind, name, '-o', 'json', ...(namespace ? ['-n', namespace] : [])])).stdout) as Obj;
}

const NAMESPACE_DOC = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels:\n    pod-security.kubernetes.io/enforce: privileged\n`;

/** Writes a rendering to a file, as `helm template ... > file` would. */
function renderToFile(name: string, o: RenderOptions): { path: string; objects: Obj[] } {
  const text = renderChart({ includeCrds: true, ...o });
  const path = join(work, `${name}.yaml`);
  writeFileSync(path, text);
  return { path, objects: parseRendering(text).map((r) => r.object as Obj) };
}

/**
 * The CRD fields a 1.20 server does not know and drops (docs/install.md, "Older API servers"):
 * CEL rules (1.25+) and selectable fields (1.31+).
 */
const DROPPED_BY_1_20 = new Set(['x-kubernetes-validations', 'selectableFields']);

function without(value: unknown, keys: Set<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => without(v, keys));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => !keys.has(k)).map(([k, v]) => [k, without(v, keys)]));
}

/**
 * Where got differs from want (want ⊆ got): every field applied is stored with the same value;
 * the server may add fields (defaults, clusterIP, ...) but not drop or change any. Lists must
 * match item by item.
 */
function missing(want: unknown, got: unknown, at: string): string[] {
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) return [`${at}: ${JSON.stringify(got)} instead of ${JSON.stringify(want)}`];
    return want.flatMap((w, i) => missing(w, got[i], `${at}[${i}]`));
  }
  if (want !== null && typeof want === 'object') {
    if (got === null || typeof got !== 'object' || Array.isArray(got)) return [`${at}: ${JSON.stringify(got)} instead of an object`];
    return Object.entries(want).flatMap(([k, w]) => missing(w, (got as Obj)[k], `${at}.${k}`));
  }
  // Go's omitempty: a false, 0 or "" applied is stored as no field at all.
  if (got === undefined && (want === false || want === 0 || want === '')) return [];
  return want === got ? [] : [`${at}: ${JSON.stringify(got)} instead of ${JSON.stringify(want)}`];
}

/** The API's copy of each applied object carries what was applied. */
async function assertStored(cp: ControlPlane, objects: Obj[]): Promise<void> {
  for (const want of objects) {
    const got = await getJson(cp, kindArg(want), want.metadata.name, want.metadata.namespace);
    assert.equal(got.metadata.uid !== undefined, true);
    for (const [k, v] of Object.entries(want.metadata.labels ?? {})) assert.equal(got.metadata.labels?.[k], v, `${want.kind}/${want.metadata.name} label ${k}`);
    for (const field of ['spec', 'data', 'rules', 'roleRef', 'subjects']) {
      if (want[field] === undefined) continue;
      const applied = want.kind === 'CustomResourceDefinition' ? without(want[field], DROPPED_BY_1_20) : want[field];
      assert.deepEqual(missing(applied, got[field], `.${field}`), [], `${want.kind}/${want.metadata.name} as applied`);
    }
  }
}

function kindArg(o: Obj): string {
  const group = String(o.apiVersion).includes('/') ? String(o.apiVersion).split('/')[0] : '';
  return group ? `${String(o.kind).toLowerCase()}.${group}` : String(o.kind).toLowerCase();
}

/** A machine the CRD must accept once installed (the API serves the kind and its short name). */
async function assertCrdServes(cp: ControlPlane, namespace: string): Promise<void> {
  await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
  const machine = `apiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata:\n  name: probe\n  namespace: ${namespace}\nspec:\n  nodeName: worker-1\n  disks: [{name: ubd0, image: busybox.ext4}]\n`;
  await kubectl(cp, ['apply', '-f', '-'], machine);
  const got = await getJson(cp, 'uml', 'probe', namespace);
  assert.equal(got.spec.state, 'Running', 'the CRD applies its defaults');
  await kubectl(cp, ['delete', 'uml', 'probe', '-n', namespace, '--wait=false']);
}

test('helm template output applies client-side, re-applies unchanged, and the API holds it as rendered', async () => {
  const e = await cluster();
  const { path, objects } = renderToFile('default', { releaseName: 'umlmon', namespace: 'umlmon-system' });
  await kubectl(e, ['apply', '-f', '-'], NAMESPACE_DOC('umlmon-system'));
  const first = (await kubectl(e, ['apply', '--validate=false', '-f', path])).stdout;
  for (const o of objects) assert.match(first, new RegExp(`${o.kind.toLowerCase()}[^\\s]*/${o.metadata.name} created`), `${o.kind} created`);
  const crdBefore = await getJson(e, 'crd', 'umlmachines.umlmon.io');
  const again = (await kubectl(e, ['apply', '--validate=false', '-f', path])).stdout;
  // On 1.20 kubectl reports the CRD "configured" on every apply: the fields the server dropped
  // are missing from its copy, so kubectl patches them in again, and the server drops them
  // again. Nothing changes: the same resourceVersion.
  const lines = again.trim().split('\n');
  assert.deepEqual(lines.filter((l) => !l.endsWith(' unchanged')), ['customresourcedefinition.apiextensions.k8s.io/umlmachines.umlmon.io configured'], `a second apply changes nothing:\n${again}`);
  assert.equal(lines.length, objects.length);
  assert.equal((await getJson(e, 'crd', 'umlmachines.umlmon.io')).metadata.resourceVersion, crdBefore.metadata.resourceVersion, 'the re-applied CRD is not written');
  await assertStored(e, objects);
  await assertCrdServes(e, 'umlmon-system');
});

test('helm template output with non-default values applies server-side (twice) next to a ServiceMonitor CRD, the CRD first', async () => {
  const e = await cluster();
  // Clusters that enable serviceMonitor run the Prometheus Operator, whose CRD defines the kind.
  await kubectl(e, ['apply', '-f', '-'], `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`);
  await crdEstablished(e.adminKubeconfig, 'servicemonitors.monitoring.coreos.com');
  // docs/install.md on 1.20: the CRD client-side with --validate=false first (server-side apply
  // refuses the fields 1.20 does not know), then the chart without it (helm install --skip-crds).
  await kubectl(e, ['apply', '--validate=false', '-f', join(CHART_DIR, 'crds')]);
  const { path, objects } = renderToFile('custom', { releaseName: 'custom', namespace: 'infra', valueFiles: [join(CHART_DIR, 'ci/custom-values.yaml')], includeCrds: false });
  assert.ok(objects.some((o) => o.kind === 'ServiceMonitor') && objects.some((o) => o.kind === 'Service'));
  assert.ok(!objects.some((o) => o.kind === 'CustomResourceDefinition'));
  await kubectl(e, ['apply', '--server-side', '-f', '-'], NAMESPACE_DOC('infra'));
  const first = (await kubectl(e, ['apply', '--server-side', '-f', path])).stdout;
  assert.equal(first.trim().split('\n').filter((l) => l.endsWith('serverside-applied')).length, objects.length, first);
  await kubectl(e, ['apply', '--server-side', '-f', path]);
  await assertStored(e, objects);
  const sm = await getJson(e, 'servicemonitor', 'uml-agent', 'infra');
  assert.deepEqual(sm.spec.endpoints, [{ port: 'metrics', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
  await assertCrdServes(e, 'infra');
});

test('kubectl kustomize manifests/ | kubectl apply -f - installs everything, namespace included', async () => {
  const e = await cluster();
  const rendered = spawnSync('kubectl', ['kustomize', MANIFESTS_DIR], { encoding: 'utf8' });
  assert.equal(rendered.status, 0, rendered.stderr);
  const objects = parseAllDocuments(rendered.stdout).map((d) => d.toJS() as Obj);
  const out = (await kubectl(e, ['apply', '--validate=false', '-f', '-'], rendered.stdout)).stdout;
  assert.equal(out.trim().split('\n').filter((l) => l.endsWith(' created')).length, objects.length, out);
  await assertStored(e, objects);
  assert.equal((await getJson(e, 'namespace', 'umlmon-system')).metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
  await assertCrdServes(e, 'umlmon-system');
});

test('kubectl apply -k manifests/ installs; on 1.20 a server-side re-apply is refused for the CRD alone, a client-side one upgrades', async () => {
  const e = await cluster();
  const out = (await kubectl(e, ['apply', '--validate=false', '-k', MANIFESTS_DIR])).stdout;
  for (const kind of ['namespace', 'customresourcedefinition', 'serviceaccount', 'clusterrole', 'clusterrolebinding', 'configmap', 'daemonset']) {
    assert.match(out, new RegExp(`^${kind}[^ ]*/\\S+ created$`, 'm'), `${kind} created by apply -k:\n${out}`);
  }
  const ds = await getJson(e, 'daemonset', 'umlmon', 'umlmon-system');
  assert.equal(ds.spec.template.spec.hostPID, true);
  assert.equal(ds.spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath, 'spec.nodeName');
  // Server-side apply builds a typed patch from the server's own schema of each kind: 1.20's
  // CustomResourceDefinition has no x-kubernetes-validations or selectableFields, so the CRD is
  // refused (docs/install.md says so); every other object applies.
  const ssa = await kubectlFor(e.adminKubeconfig)(['apply', '-k', MANIFESTS_DIR, '--server-side', '--force-conflicts', '--validate=false']);
  assert.notEqual(ssa.code, 0);
  assert.match(ssa.stderr, /failed to create typed patch object/);
  assert.match(ssa.stderr, /\.spec\.versions\[0\]\.selectableFields: field not declared in schema/);
  for (const kind of ['namespace', 'serviceaccount', 'clusterrole', 'clusterrolebinding', 'configmap', 'daemonset']) {
    assert.match(ssa.stdout, new RegExp(`^${kind}[^ ]*/\\S+ serverside-applied$`, 'm'), `${kind} server-side applied:\n${describeResult(ssa)}`);
  }
  await kubectl(e, ['apply', '--validate=false', '-k', MANIFESTS_DIR]);
  await assertCrdServes(e, 'umlmon-system');
});

test('the image overlay of docs/install.md points the DaemonSet at another registry and applies', async () => {
  const e = await cluster();
  const overlay = join(work, 'my-umlmon');
  mkdirSync(overlay);
  // As docs/install.md writes it, with the path to manifests/ made relative to this directory.
  writeFileSync(join(overlay, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${relative(overlay, MANIFESTS_DIR)}
images:
  - name: ghcr.io/umlmon/umlmon
    newName: registry.example.com/umlmon
    newTag: 0.1.0
`);
  await kubectl(e, ['apply', '--validate=false', '-k', overlay]);
  const ds = await getJson(e, 'daemonset', 'umlmon', 'umlmon-system');
  assert.equal(ds.spec.template.spec.containers[0].image, 'registry.example.com/umlmon:0.1.0');
  await kubectl(e, ['-n', 'umlmon-system', 'set', 'image', 'daemonset/umlmon', 'agent=registry.example.com/umlmon:0.1.1']);
  assert.equal((await getJson(e, 'daemonset', 'umlmon', 'umlmon-system')).spec.template.spec.containers[0].image, 'registry.example.com/umlmon:0.1.1');
});
