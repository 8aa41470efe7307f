// The real kubectl against two API servers: a real Kubernetes 1.20 control plane
// (test/support/control-plane.ts) and the API emulator (test/emulator). The CRD, the examples,
// printer columns, explain, server-side apply, status, wait, finalizers, watches and the API's
// errors are checked on both; what 1.20 cannot show (CEL rules: the invalid fixtures' messages;
// selectable fields) only on the emulator, and 1.20's own answer to a spec.nodeName field
// selector on the real server.
import { after, before, describe as suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { startEmulator } from '../emulator/index.ts';
import { describe, kubectlFor, waitFor, type Kubectl } from '../support/kubectl.ts';
import { startControlPlane } from '../support/control-plane.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { umlMachineJson } from '../support/fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CRD_DIR = join(ROOT, 'crds');
const EXAMPLES_DIR = join(ROOT, 'examples');
const INVALID_DIR = join(ROOT, 'test', 'fixtures', 'invalid');
const crd = parseYaml(readFileSync(join(CRD_DIR, 'umlmachines.umlmon.io.yaml'), 'utf8'));
const version = crd.spec.versions.find((v: any) => v.storage);

const exampleNames: string[] = readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(EXAMPLES_DIR, f), 'utf8')).map((d) => d.toJS()))
  .filter((o) => o?.kind === 'UmlMachine')
  .map((o) => o.metadata.name);

/** What the tests need of an API server beyond kubectl. */
interface Server {
  kubeconfig: string;
  /** CEL validation rules and selectable fields (Kubernetes 1.25 and 1.31; not 1.20). */
  modern: boolean;
  /** Watch requests seen in a namespace, where the server can tell (the emulator records them). */
  watchesIn?(ns: string): number;
  close(): Promise<void>;
}

let server: Server;
let kubectl: Kubectl;
let seq = 0;
const unique = (prefix: string): string => `${prefix}-${process.pid}-${++seq}`;

function machine(name: string, ns: string, nodeName: string, extra: Record<string, unknown> = {}): string {
  return umlMachineJson({ name, namespace: ns, version: version.name, metadata: extra, spec: { nodeName, disks: [{ name: 'ubd0', image: 'busybox.ext4' }] } });
}

async function namespace(): Promise<string> {
  const ns = unique('ns');
  const r = await kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }) });
  assert.equal(r.code, 0, describe(r));
  return ns;
}

async function get(ns: string, name: string): Promise<any> {
  const r = await kubectl(['get', 'uml', name, '-n', ns, '-o', 'json', '--show-managed-fields']);
  if (r.code !== 0 && /NotFound/.test(r.stderr)) return undefined;
  assert.equal(r.code, 0, describe(r));
  return JSON.parse(r.stdout);
}

/** A merge patch on the status subresource; the exit code and kubectl's words. */
function patchStatus(ns: string, name: string, status: unknown): Promise<{ code: number | null; stderr: string }> {
  return kubectl(['patch', 'uml', name, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
}

/** Lets a kubectl that watches get its watch in: observed where the server records requests. */
async function untilWatching(ns: string, before: number, what: string): Promise<void> {
  if (server.watchesIn) await waitFor(what, () => server.watchesIn!(ns) > before);
  else await new Promise((r) => setTimeout(r, 2000));
}

for (const kind of ['a real Kubernetes 1.20 API server', 'the emulator'] as const) suite(`kubectl against ${kind}`, () => {
  before(async () => {
    if (kind === 'the emulator') {
      const emu = await startEmulator();
      server = { kubeconfig: emu.kubeconfigPath, modern: true, watchesIn: (ns) => emu.requests.filter((q) => q.verb === 'watch' && q.namespace === ns).length, close: () => emu.close() };
    } else {
      const cp = await startControlPlane();
      server = { kubeconfig: cp.adminKubeconfig, modern: false, close: () => cp.stop() };
    }
    kubectl = kubectlFor(server.kubeconfig);
    // 1.20 does not know x-kubernetes-validations or selectableFields: kubectl's client-side
    // validation would refuse them; the server drops them.
    const r = await kubectl(['apply', ...(server.modern ? [] : ['--validate=false']), '-f', CRD_DIR]);
    assert.equal(r.code, 0, describe(r));
    assert.match(r.stdout, /customresourcedefinition.apiextensions.k8s.io\/umlmachines.umlmon.io (created|configured|unchanged)/);
    await crdEstablished(server.kubeconfig, 'umlmachines.umlmon.io');
    // A new CRD reaches a real server's OpenAPI (kubectl explain, validation) a few seconds later.
    await waitFor('the CRD in the OpenAPI', async () => (await kubectl(['explain', 'uml.spec'])).code === 0);
  });

  after(async () => {
    await server?.close();
  });

  test('apply -f crds/ then -f examples/ creates every example; a second apply changes nothing', async () => {
    const ns = await namespace();
    const first = await kubectl(['apply', '-n', ns, '-f', EXAMPLES_DIR]);
    assert.equal(first.code, 0, describe(first));
    for (const name of exampleNames) assert.match(first.stdout, new RegExp(`umlmachine.umlmon.io/${name} created`), describe(first));
    const before = await Promise.all(exampleNames.map((n) => get(ns, n)));
    const second = await kubectl(['apply', '-n', ns, '-f', EXAMPLES_DIR]);
    assert.equal(second.code, 0, describe(second));
    const after = await Promise.all(exampleNames.map((n) => get(ns, n)));
    // kubectl may still say "configured" (its JSON merge patch repeats lists whose items got
    // defaults), but the server must see no change: resourceVersion and generation stay.
    assert.deepEqual(after.map((o) => o.metadata.resourceVersion), before.map((o) => o.metadata.resourceVersion), describe(second));
    assert.deepEqual(after.map((o) => o.metadata.generation), before.map((o) => o.metadata.generation));
  });

  test('apply --server-side works and re-applying is a no-op', async () => {
    const ns = await namespace();
    const first = await kubectl(['apply', '--server-side', '-n', ns, '-f', EXAMPLES_DIR]);
    assert.equal(first.code, 0, describe(first));
    for (const name of exampleNames) assert.match(first.stdout, new RegExp(`umlmachine.umlmon.io/${name} serverside-applied`), describe(first));
    const before = await Promise.all(exampleNames.map((n) => get(ns, n)));
    assert.ok(before.every((o) => o.metadata.managedFields.some((m: any) => m.manager === 'kubectl' && m.operation === 'Apply')), JSON.stringify(before[0].metadata));
    const second = await kubectl(['apply', '--server-side', '-n', ns, '-f', EXAMPLES_DIR]);
    assert.equal(second.code, 0, describe(second));
    const after = await Promise.all(exampleNames.map((n) => get(ns, n)));
    if (server.modern) {
      assert.deepEqual(after.map((o) => o.metadata.resourceVersion), before.map((o) => o.metadata.resourceVersion));
    } else {
      // 1.20 (seen): a re-apply of an object with labels rewrites its managedFields' time, so its
      // resourceVersion moves; what the server holds does not change.
      assert.deepEqual(after.map((o) => [o.spec, o.metadata.generation, o.metadata.labels]), before.map((o) => [o.spec, o.metadata.generation, o.metadata.labels]));
    }
    // Dropping a field from the applied configuration removes it (the manager owned it).
    const name = unique('ssa');
    const withMemory = JSON.parse(machine(name, ns, 'node-a'));
    withMemory.spec.memory = '96Mi';
    let r = await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(withMemory) });
    assert.equal(r.code, 0, describe(r));
    assert.equal((await get(ns, name)).spec.memory, '96Mi');
    delete withMemory.spec.memory;
    r = await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(withMemory) });
    assert.equal(r.code, 0, describe(r));
    const o = await get(ns, name);
    assert.equal(o.spec.memory, version.schema.openAPIV3Schema.properties.spec.properties.memory.default, 'memory returns to its schema default');
    assert.equal(o.metadata.generation, 2, 'created, then one spec change');
    // Another manager's value for a field this configuration sets: a conflict, unless forced.
    r = await kubectl(['patch', 'uml', name, '-n', ns, '--type=merge', '-p', '{"spec":{"state":"Paused"}}']);
    assert.equal(r.code, 0, describe(r));
    withMemory.spec.state = 'Stopped';
    r = await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(withMemory) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`Apply failed with 1 conflict: conflict with "kubectl-patch" using umlmon.io/${version.name}: .spec.state`), describe(r));
    r = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: JSON.stringify(withMemory) });
    assert.equal(r.code, 0, describe(r));
    assert.equal((await get(ns, name)).spec.state, 'Stopped');
    // Switching an object from client-side to server-side apply with the same content is clean.
    const csa = unique('csa');
    r = await kubectl(['apply', '-f', '-'], { input: machine(csa, ns, 'node-a') });
    assert.equal(r.code, 0, describe(r));
    r = await kubectl(['apply', '--server-side', '-f', '-'], { input: machine(csa, ns, 'node-a') });
    if (!server.modern) {
      // 1.20 (seen): it cannot build a typed schema for this CRD (the int-or-string memory's
      // anyOf), so lists are atomic there and the server-defaulted disks differ from the applied
      // ones: taking over from client-side apply needs --force-conflicts.
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using umlmon\.io\/v1alpha1: \.spec\.disks/, describe(r));
      r = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: machine(csa, ns, 'node-a') });
    }
    assert.equal(r.code, 0, describe(r));
  });

  test('get shows the printer columns; -o wide adds the priority columns', async () => {
    const ns = await namespace();
    const name = unique('cols');
    let r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-cols') });
    assert.equal(r.code, 0, describe(r));
    const columns = version.additionalPrinterColumns as { name: string; priority?: number }[];
    const normal = ['NAME', ...columns.filter((c) => !c.priority).map((c) => c.name.toUpperCase())];
    const wide = ['NAME', ...columns.filter((c) => !c.priority).map((c) => c.name.toUpperCase()), ...columns.filter((c) => c.priority).map((c) => c.name.toUpperCase())];
    r = await kubectl(['get', 'uml', '-n', ns]);
    assert.equal(r.code, 0, describe(r));
    assert.deepEqual(r.stdout.split('\n')[0]!.trim().split(/\s+/), normal, describe(r));
    assert.match(r.stdout.split('\n')[1]!, new RegExp(`^${name}\\s+node-cols\\s+Running\\s`), describe(r));
    r = await kubectl(['get', 'uml', '-n', ns, '-o', 'wide']);
    assert.equal(r.code, 0, describe(r));
    assert.deepEqual(r.stdout.split('\n')[0]!.trim().split(/\s+/), wide, describe(r));
    // status columns show once the status has them
    // bootTime an hour ago: the Uptime column shows the time since (a date column, as Age).
    const bootTime = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    r = await kubectl(['patch', 'uml', name, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', pid: 4242, restartCount: 2, bootTime } })]);
    assert.equal(r.code, 0, describe(r));
    r = await kubectl(['get', 'uml', name, '-n', ns, '-o', 'wide', '--no-headers']);
    // the kernel column has no value yet: the server sends null, kubectl prints nothing
    assert.match(r.stdout, new RegExp(`^${name}\\s+node-cols\\s+Running\\s+Running\\s+\\d+s\\s+(60m|59m)\\s+4242\\s+128Mi\\s+2\\s*$`), describe(r));
  });

  test('get --field-selector spec.nodeName filters (selectable fields); an unsupported field is refused', async () => {
    const ns = await namespace();
    if (!server.modern) {
      // Before 1.31 a custom resource's fields cannot be selected: the agent then filters locally.
      const r = await kubectl(['get', 'uml', '-n', ns, '--field-selector', 'spec.nodeName=node-b']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /field label not supported: spec\.nodeName/, describe(r));
      return;
    }
    const a = unique('fa');
    const b = unique('fb');
    const r0 = await kubectl(['apply', '-f', '-'], { input: `${machine(a, ns, 'node-a')}\n${machine(b, ns, 'node-b')}` });
    assert.equal(r0.code, 0, describe(r0));
    let r = await kubectl(['get', 'uml', '-n', ns, '--field-selector', 'spec.nodeName=node-b', '-o', 'name']);
    assert.equal(r.code, 0, describe(r));
    assert.equal(r.stdout.trim(), `umlmachine.umlmon.io/${b}`);
    r = await kubectl(['get', 'uml', '-n', ns, '--field-selector', 'spec.nodeName!=node-b,metadata.name=' + a, '-o', 'name']);
    assert.equal(r.stdout.trim(), `umlmachine.umlmon.io/${a}`, describe(r));
    r = await kubectl(['get', 'uml', '-n', ns, '--field-selector', 'spec.memory=128Mi']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /field label not supported: spec.memory/, describe(r));
  });

  test('explain uml.spec.disks prints the CRD descriptions', async () => {
    const r = await kubectl(['explain', 'uml.spec.disks']);
    assert.equal(r.code, 0, describe(r));
    const disks = version.schema.openAPIV3Schema.properties.spec.properties.disks;
    const words = (s: string): string => s.replace(/\s+/g, ' ').trim();
    assert.ok(words(r.stdout).includes(words(disks.description).slice(0, 60)), describe(r));
    for (const [field, schema] of Object.entries<any>(disks.items.properties)) {
      // kubectl prints fields at two spaces from OpenAPI v3 (newer servers), three from v2 (1.20).
      assert.match(r.stdout, new RegExp(`^ {2,3}${field}\\s`, 'm'), `field ${field}\n${describe(r)}`);
      assert.ok(words(r.stdout).includes(words(schema.description).slice(0, 40)), `description of ${field}\n${describe(r)}`);
    }
  });

  if (kind === 'the emulator') test('every invalid fixture is refused by kubectl apply with the API server message (or accepted)', async () => {
    // Their messages come from the CRD's CEL rules, which a 1.20 server does not run.
    const ns = await namespace();
    const files = readdirSync(INVALID_DIR).filter((f) => f.endsWith('.yaml')).sort();
    assert.ok(files.length > 0);
    const failures: string[] = [];
    const queue = [...files];
    const worker = async (): Promise<void> => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        const text = readFileSync(join(INVALID_DIR, f), 'utf8');
        const expected = /^# apiserver: (.*)$/m.exec(text)?.[1]?.trim();
        if (!expected) { failures.push(`${f}: no "# apiserver:" line`); continue; }
        const r = await kubectl(['apply', '-n', ns, '-f', join(INVALID_DIR, f)]);
        if (expected === 'accepts') {
          if (r.code !== 0) failures.push(`${f}: expected to be accepted\n${describe(r)}`);
        } else if (r.code === 0 || !r.stderr.includes(expected)) {
          failures.push(`${f}: expected refusal containing ${JSON.stringify(expected)}\n${describe(r)}`);
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    assert.deepEqual(failures, [], failures.join('\n\n'));
  });

  test('patch --subresource=status changes status and not spec (and not generation)', async () => {
    const ns = await namespace();
    const name = unique('st');
    let r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-st') });
    assert.equal(r.code, 0, describe(r));
    const before = await get(ns, name);
    r = await kubectl(['patch', 'uml', name, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ spec: { nodeName: 'elsewhere' }, status: { phase: 'Starting', observedGeneration: 1 } })]);
    assert.equal(r.code, 0, describe(r));
    const afterStatus = await get(ns, name);
    assert.equal(afterStatus.status.phase, 'Starting');
    assert.equal(afterStatus.spec.nodeName, 'node-st');
    assert.equal(afterStatus.metadata.generation, before.metadata.generation);
    // and the main resource ignores status while bumping generation for spec changes
    r = await kubectl(['patch', 'uml', name, '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { memory: '64Mi' }, status: { phase: 'Failed' } })]);
    assert.equal(r.code, 0, describe(r));
    const afterSpec = await get(ns, name);
    assert.equal(afterSpec.status.phase, 'Starting');
    assert.equal(afterSpec.spec.memory, '64Mi');
    assert.equal(afterSpec.metadata.generation, before.metadata.generation + 1);
    // labels are metadata: no generation bump
    r = await kubectl(['label', 'uml', name, '-n', ns, 'team=a']);
    assert.equal(r.code, 0, describe(r));
    assert.equal((await get(ns, name)).metadata.generation, before.metadata.generation + 1);
  });

  test('wait --for=condition=Ready returns when the condition is set', async () => {
    const ns = await namespace();
    const name = unique('wait');
    const r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-w') });
    assert.equal(r.code, 0, describe(r));
    const watchesBefore = server.watchesIn?.(ns) ?? 0;
    const waiting = kubectl.start(['wait', '-n', ns, '--for=condition=Ready', `uml/${name}`, '--timeout=60s']);
    await untilWatching(ns, watchesBefore, 'kubectl wait to watch');
    assert.equal(waiting.child.exitCode, null, 'kubectl wait returned before the condition was set');
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const p = await patchStatus(ns, name, { conditions: [{ type: 'Ready', status: 'True', reason: 'Booted', message: 'guest booted', lastTransitionTime: now }] });
    assert.equal(p.code, 0, p.stderr);
    const done = await waiting.done;
    assert.equal(done.code, 0, describe(done));
    assert.match(done.stdout, /condition met/);
  });

  test('delete waits for finalizers, removed by another client', async () => {
    const ns = await namespace();
    const name = unique('fin');
    const r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-f', { finalizers: ['umlmon.io/machine'] }) });
    assert.equal(r.code, 0, describe(r));
    const deleting = kubectl.start(['delete', 'uml', name, '-n', ns, '--timeout=60s']);
    const marked = await waitFor('deletionTimestamp', async () => (await get(ns, name))?.metadata.deletionTimestamp ? await get(ns, name) : undefined);
    assert.deepEqual(marked.metadata.finalizers, ['umlmon.io/machine']);
    await untilWatching(ns, 0, 'kubectl delete to watch for the deletion');
    assert.equal(deleting.child.exitCode, null, `kubectl delete returned while a finalizer remained\n${deleting.output.stdout}${deleting.output.stderr}`);
    const patch = await kubectlFor(server.kubeconfig)(['patch', 'uml', name, '-n', ns, '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
    assert.equal(patch.code, 0, describe(patch));
    const done = await deleting.done;
    assert.equal(done.code, 0, describe(done));
    assert.match(done.stdout, new RegExp(`umlmachine.umlmon.io "${name}" deleted`));
    assert.equal(await get(ns, name), undefined);
  });

  test('get -w streams changes', async () => {
    const ns = await namespace();
    const name = unique('watch');
    const r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-g') });
    assert.equal(r.code, 0, describe(r));
    const watching = kubectl.start(['get', 'uml', '-n', ns, '-w']);
    try {
      await waitFor('the initial row', () => watching.output.stdout.includes(name));
      const p = await patchStatus(ns, name, { phase: 'Booting-Not-A-Phase' });
      assert.notEqual(p.code, 0, 'phase is an enum');
      assert.match(p.stderr, /is invalid: [\s\S]*status\.phase: Unsupported value: "Booting-Not-A-Phase"/, p.stderr);
      const ok = await patchStatus(ns, name, { phase: 'Starting' });
      assert.equal(ok.code, 0, ok.stderr);
      await waitFor('a row with the new phase', () => /\sStarting\s/.test(watching.output.stdout));
      const other = unique('watch2');
      const c = await kubectl(['apply', '-f', '-'], { input: machine(other, ns, 'node-g') });
      assert.equal(c.code, 0, describe(c));
      await waitFor('a row for the new machine', () => watching.output.stdout.includes(other));
      assert.equal(watching.output.stdout.match(/^NAME\s/gm)?.length, 1, `headers printed once:\n${watching.output.stdout}`);
    } finally {
      watching.child.kill();
      await watching.done;
    }
  });

  test('dry run, conflicts and not-found read as a real API server writes them', async () => {
    const ns = await namespace();
    const name = unique('dry');
    let r = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: machine(name, ns, 'node-d') });
    assert.equal(r.code, 0, describe(r));
    assert.match(r.stdout, /created \(server dry run\)/);
    assert.equal(await get(ns, name), undefined);
    r = await kubectl(['get', 'uml', name, '-n', ns]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`Error from server \\(NotFound\\): umlmachines.umlmon.io "${name}" not found`), describe(r));
    r = await kubectl(['apply', '-f', '-'], { input: machine(name, ns, 'node-d') });
    const live = await get(ns, name);
    const stale = { ...live, metadata: { ...live.metadata, resourceVersion: String(Number(live.metadata.resourceVersion) - 1) } };
    r = await kubectl(['replace', '-f', '-'], { input: JSON.stringify(stale) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`Operation cannot be fulfilled on umlmachines.umlmon.io "${name}": the object has been modified; please apply your changes to the latest version and try again`), describe(r));
  });
});
