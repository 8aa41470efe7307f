// The Kubernetes machine source against the API emulator, for what a 1.20 server cannot show:
// server-side filtering by node through the CRD's selectableFields (1.31+), so the agent
// receives only its own machines. Everything else the source does (the 1.20 fallback, status,
// finalizers, Events, 410 Gone, outages) is agent-kubernetes-source.test.ts, on a real server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startEmulator, type Emulator } from '../emulator/index.ts';
import { createKubernetesSource } from '../../src/agent/sources/kubernetes.ts';
import type { MachineSource } from '../../src/agent/source.ts';
import { loadKubeClient, type KubeClient } from '../../src/agent/kube-client.ts';
import { REPO_ROOT } from '../support/uml.ts';
import { kubectlWith, machine, memoryLogger, until } from '../support/source-kit.ts';

const CRD = join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml');

let emulator: Emulator;
const sources: MachineSource[] = [];

before(async () => {
  emulator = await startEmulator({ bookmarkIntervalMs: 500, watchHistory: 10_000 });
  await kubectl(['apply', '-f', CRD]);
});

after(async () => {
  for (const s of sources) await s.stop();
  await emulator?.close();
});

const kubectl = kubectlWith(() => emulator.kubeconfigPath);
const kc = (): KubeClient => loadKubeClient(emulator.kubeconfigPath);

test('server-side filtering: only this node\'s machines are listed and watched', async () => {
  await kubectl(['apply', '-f', '-'], machine('mine-1', 'node-a'));
  await kubectl(['apply', '-f', '-'], machine('theirs-1', 'node-b'));
  const { logger } = memoryLogger();
  const changed: string[] = [];
  const src = createKubernetesSource({ nodeName: 'node-a', logger, client: kc(), watchTimeoutSeconds: 30 });
  sources.push(src);
  assert.equal(src.synced(), false);
  await src.start((k) => changed.push(k));
  assert.equal(src.synced(), true);
  assert.equal(src.filteringLocally(), false);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['mine-1']);
  assert.equal(src.get('default/mine-1')?.apiVersion, 'umlmon.io/v1alpha1');

  // Watch: add, update.
  await kubectl(['apply', '-f', '-'], machine('mine-2', 'node-a'));
  await kubectl(['apply', '-f', '-'], machine('theirs-2', 'node-b'));
  await until('mine-2 in the cache', () => src.get('default/mine-2') !== undefined);
  await kubectl(['patch', 'uml', 'mine-2', '--type=merge', '-p', '{"spec":{"state":"Paused"}}']);
  await until('mine-2 paused', () => src.get('default/mine-2')?.spec.state === 'Paused');
  assert.equal(src.get('default/theirs-2'), undefined);
  assert.ok(!changed.some((k) => k.includes('theirs')));

  // Deleted, it leaves the filtered watch. (spec.nodeName is fixed by a CEL rule; the real
  // server test moves one on 1.20, which does not enforce it.)
  await kubectl(['delete', 'uml', 'mine-2']);
  await until('mine-2 left', () => src.get('default/mine-2') === undefined);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['mine-1']);
});
