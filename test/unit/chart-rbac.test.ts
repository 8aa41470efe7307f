// The ClusterRole against the agent's source: every Kubernetes API call in src/ (through
// kube-client.ts's call() and watch()) needs a grant in the chart's ClusterRole,
// and every grant is needed by some call. test/e2e/install-rbac.test.ts proves the calls a
// machine's life makes against an RBAC-enforcing server; this covers the branches that scenario
// cannot reach (a re-read after a conflict, the core/v1 Events fallback, Event series).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT, parseRendering, renderChart } from '../../hack/render-chart.ts';

type Obj = Record<string, any>;

/**
 * The resources src/ names for kube-client.ts calls (`const X: Resource = ...`), by what the
 * ClusterRole calls them. A call is `<client>.call('<verb>', X, ...)` or `<client>.watch(X, ...)`.
 */
const RESOURCE_GRANTS: Record<string, string> = {
  MACHINES: 'umlmon.io/umlmachines',
  MACHINE_STATUS: 'umlmon.io/umlmachines/status',
  EVENTS_V1: 'events.k8s.io/events',
  CORE_EVENTS: 'core/events',
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

/** The grants src/ needs: each call of kube-client.ts's call() and watch(), by verb and resource. */
function neededBySource(): Map<string, string[]> {
  const needed = new Map<string, string[]>();
  const need = (grant: string, where: string) => needed.set(grant, [...(needed.get(grant) ?? []), where]);
  for (const file of sources(join(REPO_ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const where = relative(REPO_ROOT, file);
    for (const m of text.matchAll(/const\s+(\w+)\s*:\s*Resource\s*=/g)) {
      assert.ok(RESOURCE_GRANTS[m[1] ?? ''], `${where}: resource ${m[1]}: add what the ClusterRole calls it to RESOURCE_GRANTS`);
    }
    for (const call of text.matchAll(/\.call(?:<[^>]*>)?\(\s*'(\w+)',\s*(\w+)/g)) {
      const resource = RESOURCE_GRANTS[call[2] ?? ''];
      assert.ok(resource, `${where}: a ${call[1]} of ${call[2]}, which is not in RESOURCE_GRANTS`);
      need(`${resource}:${call[1]}`, `${where} ${call[1]} ${call[2]}`);
    }
    for (const call of text.matchAll(/\.watch\(\s*(\w+),/g)) {
      const resource = RESOURCE_GRANTS[call[1] ?? ''];
      if (file.endsWith('kube-client.ts') || resource === undefined) continue; // fs.watch and the like
      need(`${resource}:watch`, `${where} watch ${call[1]}`);
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
