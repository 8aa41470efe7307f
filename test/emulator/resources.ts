// The resource types the emulator serves: a fixed set of built-in kinds (stored with minimal
// validation) plus every version of every CustomResourceDefinition that is created.
import type { Schema } from './schema.ts';
import { coreToEvents, eventsToCore } from './events.ts';

export interface PrinterColumn { name: string; type: string; jsonPath: string; description?: string; priority?: number; format?: string }

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  hasStatus: boolean;
  /** Storage shared with another resource (events.k8s.io Events live with core Events). */
  storage?: string;
  /** Conversion between this resource's form and the stored form. */
  convert?: { toStorage(obj: any): any; fromStorage(obj: any): any };
  /** Custom resources: schema-validated, no strategic merge patch. */
  crd?: { name: string; schema?: Schema; printerColumns: PrinterColumn[]; selectableFields: string[]; storage: boolean };
}

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function builtin(group: string, version: string, kind: string, plural: string, namespaced: boolean, extra: Partial<ResourceType> = {}): ResourceType {
  return {
    group, version, kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), namespaced,
    shortNames: [], categories: [], verbs: ALL_VERBS, hasStatus: false, ...extra,
  };
}

export function builtinTypes(): ResourceType[] {
  return [
    builtin('', 'v1', 'Namespace', 'namespaces', false, { shortNames: ['ns'], hasStatus: true, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] }),
    builtin('', 'v1', 'ConfigMap', 'configmaps', true, { shortNames: ['cm'] }),
    builtin('', 'v1', 'Secret', 'secrets', true),
    builtin('', 'v1', 'ServiceAccount', 'serviceaccounts', true, { shortNames: ['sa'] }),
    builtin('', 'v1', 'Service', 'services', true, { shortNames: ['svc'], categories: ['all'], hasStatus: true }),
    builtin('', 'v1', 'Event', 'events', true, { shortNames: ['ev'] }),
    builtin('', 'v1', 'Pod', 'pods', true, { shortNames: ['po'], categories: ['all'], hasStatus: true }),
    builtin('', 'v1', 'Node', 'nodes', false, { shortNames: ['no'], hasStatus: true }),
    builtin('apps', 'v1', 'DaemonSet', 'daemonsets', true, { shortNames: ['ds'], categories: ['all'], hasStatus: true }),
    builtin('apps', 'v1', 'Deployment', 'deployments', true, { shortNames: ['deploy'], categories: ['all'], hasStatus: true }),
    builtin('rbac.authorization.k8s.io', 'v1', 'Role', 'roles', true),
    builtin('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', true),
    builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', false),
    builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false),
    builtin('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
    builtin('events.k8s.io', 'v1', 'Event', 'events', true, { shortNames: ['ev'], storage: '/events', convert: { toStorage: eventsToCore, fromStorage: coreToEvents } }),
    builtin('apiextensions.k8s.io', 'v1', 'CustomResourceDefinition', 'customresourcedefinitions', false, { shortNames: ['crd', 'crds'], hasStatus: true }),
  ];
}

/** Types a CustomResourceDefinition (apiextensions.k8s.io/v1) object defines, one per served version. */
export function typesFromCrd(crd: any): ResourceType[] {
  const spec = crd.spec ?? {};
  const names = spec.names ?? {};
  const out: ResourceType[] = [];
  for (const v of spec.versions ?? []) {
    if (v.served === false) continue;
    const columns: PrinterColumn[] = v.additionalPrinterColumns ?? [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }];
    out.push({
      group: spec.group,
      version: v.name,
      kind: names.kind,
      listKind: names.listKind ?? `${names.kind}List`,
      plural: names.plural,
      singular: names.singular ?? String(names.kind).toLowerCase(),
      namespaced: spec.scope !== 'Cluster',
      shortNames: names.shortNames ?? [],
      categories: names.categories ?? [],
      verbs: ALL_VERBS,
      hasStatus: Boolean(v.subresources?.status),
      crd: {
        name: crd.metadata.name,
        schema: v.schema?.openAPIV3Schema,
        printerColumns: columns,
        selectableFields: (v.selectableFields ?? []).map((f: { jsonPath: string }) => f.jsonPath.replace(/^\./, '')),
        storage: Boolean(v.storage),
      },
    });
  }
  return out;
}

export class Registry {
  readonly types: ResourceType[] = builtinTypes();

  find(group: string, version: string, plural: string): ResourceType | undefined {
    return this.types.find((t) => t.group === group && t.version === version && t.plural === plural);
  }

  groupVersions(): { group: string; versions: string[] }[] {
    const out: { group: string; versions: string[] }[] = [];
    for (const t of this.types) {
      let g = out.find((x) => x.group === t.group);
      if (!g) out.push((g = { group: t.group, versions: [] }));
      if (!g.versions.includes(t.version)) g.versions.push(t.version);
    }
    return out;
  }

  inGroupVersion(group: string, version: string): ResourceType[] {
    return this.types.filter((t) => t.group === group && t.version === version);
  }

  setCrd(crd: any): void {
    this.removeCrd(crd.metadata.name);
    this.types.push(...typesFromCrd(crd));
  }

  removeCrd(name: string): void {
    for (let i = this.types.length - 1; i >= 0; i--) if (this.types[i]!.crd?.name === name) this.types.splice(i, 1);
  }
}

/** Storage is shared by all versions of a resource (no conversion beyond apiVersion). */
export function storageKey(t: Pick<ResourceType, 'group' | 'plural' | 'storage'>): string {
  return t.storage ?? `${t.group}/${t.plural}`;
}
