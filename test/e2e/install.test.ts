// The install paths of docs/install.md, as written, with the real kubectl against the API
// emulator: the chart's rendering applied client-side and server-side (default and non-default
// values), `kubectl kustomize manifests/ | kubectl apply -f -`, and `kubectl apply -k manifests/`.
// After each, the API holds the objects as rendered and the CRD serves UmlMachines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { describe as describeResult, kubectlFor, type Kubectl, type KubectlResult } from '../support/kubectl.ts';
import { CHART_DIR, MANIFESTS_DIR, parseRendering, renderChart, type RenderOptions } from '../../hack/render-chart.ts';

type Obj = Record<string, any>;

const work = mkdtempSync(join(tmpdir(), 'umlmon-install-'));
const emulators: Emulator[] = [];
after(async () => {
  await Promise.all(emulators.map((e) => e.close()));
  rmSync(work, { recursive: true, force: true });
});

async function emulator(): Promise<Emulator> {
  const e = await startEmulator();
  emulators.push(e);
  return e;
}

const kubectls = new Map<string, Kubectl>();

/** Runs the real kubectl against the emulator (asynchronously: the emulator runs in this process). */
async function kubectl(e: Emulator, args: string[], input?: string): Promise<KubectlResult> {
  let run = kubectls.get(e.kubeconfigPath);
  if (!run) kubectls.set(e.kubeconfigPath, (run = kubectlFor(e.kubeconfigPath)));
  const r = await run(args, { input });
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed:\n${describeResult(r)}`);
  return r;
}

async function getJson(e: Emulator, kind: string, name: string, namespace?: string): Promise<Obj> {
  return JSON.parse((await kubectl(e, ['get', kind, name, '-o', 'json', ...(namespace ? ['-n', namespace] : [])])).stdout) as Obj;
}

const NAMESPACE_DOC = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels:\n    pod-security.kubernetes.io/enforce: privileged\n`;

/** Writes a rendering to a file, as `helm template ... > file` would. */
function renderToFile(name: string, o: RenderOptions): { path: string; objects: Obj[] } {
  const text = renderChart({ includeCrds: true, ...o });
  const path = join(work, `${name}.yaml`);
  writeFileSync(path, text);
  return { path, objects: parseRendering(text).map((r) => r.object as Obj) };
}

/** The API's copy of each applied object carries what was applied (the server adds, never drops). */
async function assertStored(e: Emulator, objects: Obj[]): Promise<void> {
  for (const want of objects) {
    const got = await getJson(e, kindArg(want), want.metadata.name, want.metadata.namespace);
    assert.equal(got.metadata.uid !== undefined, true);
    for (const [k, v] of Object.entries(want.metadata.labels ?? {})) assert.equal(got.metadata.labels?.[k], v, `${want.kind}/${want.metadata.name} label ${k}`);
    for (const field of ['spec', 'data', 'rules', 'roleRef', 'subjects']) {
      if (want[field] !== undefined && want.kind !== 'CustomResourceDefinition' && want.kind !== 'Service') {
        assert.deepEqual(got[field], want[field], `${want.kind}/${want.metadata.name} .${field} as applied`);
      }
    }
  }
}

function kindArg(o: Obj): string {
  const group = String(o.apiVersion).includes('/') ? String(o.apiVersion).split('/')[0] : '';
  return group ? `${String(o.kind).toLowerCase()}.${group}` : String(o.kind).toLowerCase();
}

/** A machine the CRD must accept once installed (the API serves the kind and its short name). */
async function assertCrdServes(e: Emulator, namespace: string): Promise<void> {
  const machine = `apiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata:\n  name: probe\n  namespace: ${namespace}\nspec:\n  nodeName: worker-1\n  disks: [{name: ubd0, image: busybox.ext4}]\n`;
  await kubectl(e, ['apply', '-f', '-'], machine);
  const got = await getJson(e, 'uml', 'probe', namespace);
  assert.equal(got.spec.state, 'Running', 'the CRD applies its defaults');
  await kubectl(e, ['delete', 'uml', 'probe', '-n', namespace, '--wait=false']);
}

test('helm template output applies client-side, re-applies unchanged, and the API holds it as rendered', async () => {
  const e = await emulator();
  const { path, objects } = renderToFile('default', { releaseName: 'umlmon', namespace: 'umlmon-system' });
  await kubectl(e, ['apply', '-f', '-'], NAMESPACE_DOC('umlmon-system'));
  const first = (await kubectl(e, ['apply', '-f', path])).stdout;
  for (const o of objects) assert.match(first, new RegExp(`${o.kind.toLowerCase()}[^\\s]*/${o.metadata.name} created`), `${o.kind} created`);
  const again = (await kubectl(e, ['apply', '-f', path])).stdout;
  assert.doesNotMatch(again, /created|configured/, `a second apply changes nothing:\n${again}`);
  await assertStored(e, objects);
  await assertCrdServes(e, 'umlmon-system');
});

test('helm template output with non-default values applies server-side (twice) next to a ServiceMonitor CRD', async () => {
  const e = await emulator();
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
  const { path, objects } = renderToFile('custom', { releaseName: 'custom', namespace: 'infra', valueFiles: [join(CHART_DIR, 'ci/custom-values.yaml')] });
  assert.ok(objects.some((o) => o.kind === 'ServiceMonitor') && objects.some((o) => o.kind === 'Service'));
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
  const e = await emulator();
  const rendered = spawnSync('kubectl', ['kustomize', MANIFESTS_DIR], { encoding: 'utf8' });
  assert.equal(rendered.status, 0, rendered.stderr);
  const objects = parseAllDocuments(rendered.stdout).map((d) => d.toJS() as Obj);
  const out = (await kubectl(e, ['apply', '-f', '-'], rendered.stdout)).stdout;
  assert.equal(out.trim().split('\n').filter((l) => l.endsWith(' created')).length, objects.length, out);
  await assertStored(e, objects);
  assert.equal((await getJson(e, 'namespace', 'umlmon-system')).metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
  await assertCrdServes(e, 'umlmon-system');
});

test('kubectl apply -k manifests/ installs, and applies again server-side over it (an upgrade path)', async () => {
  const e = await emulator();
  const out = (await kubectl(e, ['apply', '-k', MANIFESTS_DIR])).stdout;
  for (const kind of ['namespace', 'customresourcedefinition', 'serviceaccount', 'clusterrole', 'clusterrolebinding', 'configmap', 'daemonset']) {
    assert.match(out, new RegExp(`^${kind}[^ ]*/\\S+ created$`, 'm'), `${kind} created by apply -k:\n${out}`);
  }
  const ds = await getJson(e, 'daemonset', 'umlmon', 'umlmon-system');
  assert.equal(ds.spec.template.spec.hostPID, true);
  assert.equal(ds.spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath, 'spec.nodeName');
  await kubectl(e, ['apply', '-k', MANIFESTS_DIR, '--server-side', '--force-conflicts']);
  await assertCrdServes(e, 'umlmon-system');
});

test('the image overlay of docs/install.md points the DaemonSet at another registry and applies', async () => {
  const e = await emulator();
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
  await kubectl(e, ['apply', '-k', overlay]);
  const ds = await getJson(e, 'daemonset', 'umlmon', 'umlmon-system');
  assert.equal(ds.spec.template.spec.containers[0].image, 'registry.example.com/umlmon:0.1.0');
  await kubectl(e, ['-n', 'umlmon-system', 'set', 'image', 'daemonset/umlmon', 'agent=registry.example.com/umlmon:0.1.1']);
  assert.equal((await getJson(e, 'daemonset', 'umlmon', 'umlmon-system')).spec.template.spec.containers[0].image, 'registry.example.com/umlmon:0.1.1');
});
