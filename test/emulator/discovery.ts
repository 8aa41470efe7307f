// Discovery documents (/api, /apis, resource lists, /version) and the OpenAPI v3 documents
// kubectl reads for `explain`, for its fieldValidation support check and for apply.
import { createHash } from 'node:crypto';
import type { Registry, ResourceType } from './resources.ts';
import type { Schema } from './schema.ts';

export const SERVER_VERSION = { major: '1', minor: '33', gitVersion: 'v1.33.0', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean', buildDate: '2025-04-23T00:00:00Z', goVersion: 'go1.24.2', compiler: 'gc', platform: 'linux/amd64' };

function gvString(group: string, version: string): string {
  return group ? `${group}/${version}` : version;
}

export function apiVersions(hostPort: string): unknown {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: hostPort }] };
}

function apiGroup(group: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: gvString(group, v), version: v }));
  return { name: group, versions: vs, preferredVersion: vs[0] };
}

export function apiGroupList(reg: Registry): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: reg.groupVersions().filter((g) => g.group !== '').map((g) => apiGroup(g.group, g.versions)) };
}

export function apiGroupDoc(reg: Registry, group: string): unknown | undefined {
  const g = reg.groupVersions().find((x) => x.group === group);
  return g ? { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(g.group, g.versions) } : undefined;
}

export function resourceList(reg: Registry, group: string, version: string): unknown | undefined {
  const types = reg.inGroupVersion(group, version);
  if (types.length === 0) return undefined;
  const resources: unknown[] = [];
  for (const t of types) {
    resources.push({
      name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: t.verbs,
      ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
      ...(t.categories.length ? { categories: t.categories } : {}),
      storageVersionHash: createHash('sha256').update(`${t.group}/${t.version}/${t.kind}`).digest('base64').slice(0, 11),
    });
    if (t.hasStatus) resources.push({ name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] });
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gvString(group, version), resources };
}

// ---- OpenAPI v3 ----------------------------------------------------------------------

const OBJECT_META_REF = '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta';

const OBJECT_META: Schema & Record<string, unknown> = {
  description: 'ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.',
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.' },
    generateName: { type: 'string', description: 'GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.' },
    namespace: { type: 'string', description: 'Namespace defines the space within which each name must be unique.' },
    uid: { type: 'string', description: 'UID is the unique in time and space value for this object.' },
    resourceVersion: { type: 'string', description: 'An opaque value that represents the internal version of this object.' },
    generation: { type: 'integer', format: 'int64', description: 'A sequence number representing a specific generation of the desired state.' },
    creationTimestamp: { type: 'string', format: 'date-time', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.' },
    deletionTimestamp: { type: 'string', format: 'date-time', description: 'DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.' },
    deletionGracePeriodSeconds: { type: 'integer', format: 'int64', description: 'Number of seconds allowed for this object to gracefully terminate before it will be removed from the system.' },
    labels: { type: 'object', additionalProperties: { type: 'string', default: '' }, description: 'Map of string keys and values that can be used to organize and categorize (scope and select) objects.' },
    annotations: { type: 'object', additionalProperties: { type: 'string', default: '' }, description: 'Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata.' },
    finalizers: { type: 'array', items: { type: 'string', default: '' }, 'x-kubernetes-list-type': 'set', description: 'Must be empty before the object is deleted from the registry.' },
    ownerReferences: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }, description: 'List of objects depended by this object.' },
    managedFields: { type: 'array', items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }, description: 'ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow.' },
  },
};

function schemaName(t: ResourceType): string {
  const g = t.group ? t.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${g}.${t.version}.${t.kind}`;
}

function resourceSchema(t: ResourceType): Record<string, unknown> {
  const gvk = [{ group: t.group, version: t.version, kind: t.kind }];
  const base = (t.crd?.schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }) as Record<string, any>;
  const props = { ...(base.properties ?? {}) };
  props.apiVersion = { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.' };
  props.kind = { type: 'string', description: 'Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. In CamelCase.' };
  props.metadata = { allOf: [{ $ref: OBJECT_META_REF }], default: {}, description: "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata" };
  return { ...base, properties: props, 'x-kubernetes-group-version-kind': gvk };
}

function operation(t: ResourceType, verb: string, action: string, params: unknown[], bodyTypes?: string[]): Record<string, unknown> {
  const ref = { $ref: `#/components/schemas/${schemaName(t)}` };
  return {
    description: `${verb} the specified ${t.kind}`,
    operationId: `${verb}${t.kind}`,
    parameters: params,
    ...(bodyTypes ? { requestBody: { content: Object.fromEntries(bodyTypes.map((c) => [c, { schema: { type: 'object' } }])), required: true } } : {}),
    responses: { '200': { description: 'OK', content: { 'application/json': { schema: ref } } } },
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': { group: t.group, version: t.version, kind: t.kind },
  };
}

const Q = (name: string): unknown => ({ name, in: 'query', schema: { type: 'string', uniqueItems: true } });
const P = (name: string): unknown => ({ name, in: 'path', required: true, schema: { type: 'string', uniqueItems: true } });

export function openApiV3Doc(reg: Registry, group: string, version: string): unknown | undefined {
  const types = reg.inGroupVersion(group, version);
  if (types.length === 0) return undefined;
  const schemas: Record<string, unknown> = { 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta': OBJECT_META };
  const paths: Record<string, unknown> = {};
  const prefix = group ? `/apis/${group}/${version}` : `/api/${version}`;
  for (const t of types) {
    schemas[schemaName(t)] = resourceSchema(t);
    schemas[`${schemaName(t)}List`] = {
      type: 'object', required: ['items'],
      properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, items: { type: 'array', items: { $ref: `#/components/schemas/${schemaName(t)}` } }, metadata: { type: 'object' } },
      'x-kubernetes-group-version-kind': [{ group: t.group, version: t.version, kind: t.listKind }],
    };
    const base = t.namespaced ? `${prefix}/namespaces/{namespace}/${t.plural}` : `${prefix}/${t.plural}`;
    const nsParam = t.namespaced ? [P('namespace')] : [];
    // The server accepts strategic merge patches for built-in kinds, but these documents do
    // not carry the built-in schemas; without the content type here kubectl computes its
    // strategic merge patches from its compiled-in types instead of this document.
    const patchTypes = ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml'];
    const write = [Q('dryRun'), Q('fieldManager'), Q('fieldValidation')];
    paths[base] = {
      get: operation(t, 'list', 'list', [...nsParam, Q('labelSelector'), Q('fieldSelector'), Q('resourceVersion'), Q('watch')]),
      post: operation(t, 'create', 'post', [...nsParam, ...write], ['*/*']),
      delete: operation(t, 'deletecollection', 'deletecollection', nsParam),
    };
    paths[`${base}/{name}`] = {
      get: operation(t, 'read', 'get', [...nsParam, P('name')]),
      put: operation(t, 'replace', 'put', [...nsParam, P('name'), ...write], ['*/*']),
      patch: operation(t, 'patch', 'patch', [...nsParam, P('name'), ...write, Q('force')], patchTypes),
      delete: operation(t, 'delete', 'delete', [...nsParam, P('name'), Q('dryRun'), Q('gracePeriodSeconds'), Q('propagationPolicy')]),
    };
    if (t.hasStatus) {
      paths[`${base}/{name}/status`] = {
        get: operation(t, 'read', 'get', [...nsParam, P('name')]),
        put: operation(t, 'replace', 'put', [...nsParam, P('name'), ...write], ['*/*']),
        patch: operation(t, 'patch', 'patch', [...nsParam, P('name'), ...write, Q('force')], patchTypes),
      };
    }
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion }, paths, components: { schemas } };
}

export function openApiV3Index(reg: Registry): unknown {
  const paths: Record<string, unknown> = {};
  for (const g of reg.groupVersions()) {
    for (const v of g.versions) {
      const key = g.group ? `apis/${g.group}/${v}` : `api/${v}`;
      const hash = createHash('sha512').update(JSON.stringify(openApiV3Doc(reg, g.group, v))).digest('hex').slice(0, 64).toUpperCase();
      paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
    }
  }
  return { paths };
}
