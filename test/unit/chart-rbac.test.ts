// The ClusterRole against the agent's source: every Kubernetes API call in src/ (through
// @kubernetes/client-node's API clients and its Watch) needs a grant in the chart's ClusterRole,
// and every grant is needed by some call. test/e2e/install-rbac.test.ts proves the calls a
// machine's life makes against an RBAC-enforcing server; this covers the branches that scenario
// cannot reach (a re-read after a conflict, the core/v1 Events fallback, Event series).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT, parseRendering, renderChart } from '../../hack/render-chart.ts';

type Obj = Record<string, any>;

/** What each client-node method the agent may call asks the API server for. */
const METHOD_GRANTS: Record<string, Record<string, string[]>> = {
  // The agent's only custom resource is umlmachines (GROUP/PLURAL from src/api/types.ts).
  CustomObjectsApi: {
    listClusterCustomObject: ['umlmon.io/umlmachines:list'],
    listNamespacedCustomObject: ['umlmon.io/umlmachines:list'],
    getNamespacedCustomObject: ['umlmon.io/umlmachines:get'],
    replaceNamespacedCustomObject: ['umlmon.io/umlmachines:update'],
    patchNamespacedCustomObject: ['umlmon.io/umlmachines:patch'],
    createNamespacedCustomObject: ['umlmon.io/umlmachines:create'],
    deleteNamespacedCustomObject: ['umlmon.io/umlmachines:delete'],
    getNamespacedCustomObjectStatus: ['umlmon.io/umlmachines/status:get'],
    replaceNamespacedCustomObjectStatus: ['umlmon.io/umlmachines/status:update'],
    patchNamespacedCustomObjectStatus: ['umlmon.io/umlmachines/status:patch'],
  },
  EventsV1Api: {
    createNamespacedEvent: ['events.k8s.io/events:create'],
    patchNamespacedEvent: ['events.k8s.io/events:patch'],
  },
  CoreV1Api: {
    createNamespacedEvent: ['core/events:create'],
    patchNamespacedEvent: ['core/events:patch'],
  },
};

/** Grants no client call shows, and why they are needed. */
const IMPLIED_GRANTS: Record<string, string> = {
  'umlmon.io/umlmachines/finalizers:update': 'the OwnerReferencesPermissionEnforcement admission plugin checks it when an update changes finalizers (the agent updates umlmachines to add and remove its own)',
};

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The grants src/ needs: API client methods by the client class they were made from, and watches. */
function neededBySource(): Map<string, string[]> {
  const needed = new Map<string, string[]>();
  const need = (grant: string, where: string) => needed.set(grant, [...(needed.get(grant) ?? []), where]);
  for (const file of sources(join(REPO_ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const where = relative(REPO_ROOT, file);
    const clients = new Map<string, string>();
    for (const m of text.matchAll(/(?:const|let)\s+(\w+)\s*=\s*\w+\.makeApiClient\((\w+)\)/g)) clients.set(m[1] ?? '', m[2] ?? '');
    for (const [variable, api] of clients) {
      const methods = METHOD_GRANTS[api];
      assert.ok(methods, `${where}: makes a ${api} client; add its methods to METHOD_GRANTS (and the ClusterRole)`);
      for (const call of text.matchAll(new RegExp(`\\b${variable}\\.(\\w+)\\(`, 'g'))) {
        const grants = methods[call[1] ?? ''];
        assert.ok(grants, `${where}: ${api}.${call[1]} is not in METHOD_GRANTS: say what it asks the API server for`);
        for (const g of grants) need(g, `${where} ${api}.${call[1]}`);
      }
    }
    for (const m of text.matchAll(/(?:const|let)\s+(\w+)\s*=\s*new Watch\(/g)) {
      for (const call of text.matchAll(new RegExp(`\\b${m[1]}\\.watch\\(\\s*([^,]+),`, 'g'))) {
        assert.match(call[1] ?? '', /PLURAL|umlmachines/, `${where}: a watch on ${call[1]}: add its grant here`);
        need('umlmon.io/umlmachines:watch', `${where} Watch.watch`);
      }
    }
  }
  return needed;
}

test('every API call the agent makes is granted by the ClusterRole, and every grant is needed', () => {
  const role = parseRendering(renderChart()).map((r) => r.object as Obj).find((o) => o.kind === 'ClusterRole');
  const granted = new Set<string>();
  for (const rule of role?.rules as Obj[]) {
    for (const g of rule.apiGroups) for (const r of rule.resources) for (const v of rule.verbs) granted.add(`${g === '' ? 'core' : g}/${r}:${v}`);
  }
  const needed = neededBySource();
  assert.ok(needed.size >= 5, `found the agent's API calls: ${[...needed.keys()].join(', ')}`);
  for (const [grant, where] of needed) assert.ok(granted.has(grant), `${grant} is needed by ${where.join(', ')} but the ClusterRole does not grant it`);
  const unneeded = [...granted].filter((g) => !needed.has(g) && IMPLIED_GRANTS[g] === undefined);
  assert.deepEqual(unneeded, [], 'the ClusterRole grants what no call in src/ needs');
  for (const g of Object.keys(IMPLIED_GRANTS)) assert.ok(granted.has(g), `${g} should be granted: ${IMPLIED_GRANTS[g]}`);
});
