// The UmlMachine schema, read from the CRD that ships in crds/: the single source of truth for
// what a valid spec looks like. This module turns the CRD's openAPIV3Schema into what an API
// server does with it: prune unknown fields, apply defaults, then check the structure (ajv,
// compiled from the same schema with the Kubernetes extensions translated).
import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { MACHINE_SCHEMA } from './machine-schema.generated.ts';

/**
 * Where the CRD lives. src/api/ and dist/api/ are both two levels under the package root, so the
 * same relative URL works from the sources and from the build.
 */
export const CRD_URL = new URL('../../crds/umlmachines.umlmon.io.yaml', import.meta.url);

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps the CRD uses. */
export interface StructuralSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema | boolean;
  items?: StructuralSchema;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  anyOf?: StructuralSchema[];
  nullable?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: { rule: string; message?: string; messageExpression?: string; reason?: string; fieldPath?: string }[];
}

export interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  schema: { openAPIV3Schema: StructuralSchema };
  additionalPrinterColumns?: { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
  selectableFields?: { jsonPath: string }[];
  subresources?: { status?: object };
}

export interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular: string; shortNames?: string[]; listKind?: string };
    versions: CrdVersion[];
  };
}

/** Reads and parses the CRD file; throws naming the file when it is missing or not YAML. */
export function loadCrd(url: URL = CRD_URL): Crd {
  let text: string;
  try {
    text = readFileSync(url, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the UmlMachine CRD at ${url.pathname}: ${(err as Error).message} (it ships in the package's crds/ directory)`);
  }
  return parseYaml(text) as Crd;
}

let crdSchema: StructuralSchema | undefined;

/**
 * The openAPIV3Schema of the CRD's storage version, read from the CRD file (once): the source
 * of truth, for the generators (hack/generate-validator.ts) and the tests that check them.
 */
export function crdMachineSchema(): StructuralSchema {
  if (!crdSchema) {
    const crd = loadCrd();
    const version = crd.spec.versions.find((v) => v.storage);
    if (!version) throw new Error(`the UmlMachine CRD at ${CRD_URL.pathname} has no storage version`);
    // A copy made of strings of its own: the parser's strings are slices of the file's text,
    // which would keep all 80 KiB of it (comments included) alive.
    crdSchema = JSON.parse(JSON.stringify(version.schema.openAPIV3Schema)) as StructuralSchema;
  }
  return crdSchema;
}

/**
 * The same schema without its descriptions, as the agent prunes, defaults and validates with
 * it: generated ahead of time (machine-schema.generated.ts), because parsing the CRD's YAML on
 * the first machine cost the agent 86 ms under --lite-mode, on the path of that machine's start.
 */
export function machineSchema(): StructuralSchema {
  return MACHINE_SCHEMA;
}

/**
 * The schema as the agent uses it: the `description` of every schema dropped, nothing else
 * changed. It walks the schema's structure (properties, items, additionalProperties, anyOf), so
 * a field named "description", a default or a CEL rule keeps what it holds.
 */
export function withoutDescriptions(schema: StructuralSchema): StructuralSchema {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema) as [keyof StructuralSchema, unknown][]) {
    if (key === 'description') continue;
    if (key === 'properties') out[key] = Object.fromEntries(Object.entries(value as Record<string, StructuralSchema>).map(([name, child]) => [name, withoutDescriptions(child)]));
    else if (key === 'items' || (key === 'additionalProperties' && typeof value === 'object')) out[key] = withoutDescriptions(value as StructuralSchema);
    else if (key === 'anyOf') out[key] = (value as StructuralSchema[]).map(withoutDescriptions);
    else out[key] = value;
  }
  return out as StructuralSchema;
}

// ---------------------------------------------------------------------------------------------
// Pruning and defaulting: pure functions over (value, schema), with the API server's semantics.

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Drops fields the schema does not name, as the API server does on create and update, and nulls
 * in fields that are not nullable (so that their defaults apply). `metadata` at the root is left
 * alone: the API server treats it as ObjectMeta, not by this schema. Returns a new value.
 */
export function pruneUnknownFields(value: unknown, schema: StructuralSchema, isRoot = true): unknown {
  if (Array.isArray(value)) {
    return schema.items ? value.map((item) => pruneUnknownFields(item, schema.items as StructuralSchema, false)) : value;
  }
  if (!isPlainObject(value)) return value;
  if (schema['x-kubernetes-preserve-unknown-fields'] && !schema.properties) return structuredClone(value);
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    const fieldSchema = schema.properties?.[key];
    if (isRoot && (key === 'metadata' || key === 'apiVersion' || key === 'kind')) {
      out[key] = structuredClone(field);
    } else if (fieldSchema) {
      if (field === null && !fieldSchema.nullable) continue;
      out[key] = pruneUnknownFields(field, fieldSchema, false);
    } else if (typeof schema.additionalProperties === 'object') {
      out[key] = pruneUnknownFields(field, schema.additionalProperties, false);
    } else if (schema.additionalProperties === true || schema['x-kubernetes-preserve-unknown-fields']) {
      out[key] = structuredClone(field);
    }
  }
  return out;
}

/** Fills absent fields that have a default, at every level present in the value. Mutates value. */
export function applyDefaults(value: unknown, schema: StructuralSchema): void {
  if (Array.isArray(value)) {
    if (schema.items) for (const item of value) applyDefaults(item, schema.items);
    return;
  }
  if (!isPlainObject(value) || !schema.properties) return;
  for (const [key, fieldSchema] of Object.entries(schema.properties)) {
    if (value[key] === undefined && fieldSchema.default !== undefined) value[key] = structuredClone(fieldSchema.default);
    if (value[key] !== undefined) applyDefaults(value[key], fieldSchema);
  }
}

// ---------------------------------------------------------------------------------------------
// Structure: ajv, compiled from the schema with the Kubernetes vocabulary translated.

/**
 * JSON Schema that ajv understands, with the API server's meaning: the x-kubernetes-* keys are
 * dropped (list-map uniqueness and CEL rules are checked in validate.ts), `nullable` becomes a
 * "null" type, and int-or-string becomes the union type integer|string (its string keywords,
 * pattern and maxLength, then apply to strings only, as in the API server). Defaults are removed:
 * applyDefaults already did that job, before validation, as the API server does.
 */
export function toAjvSchema(schema: StructuralSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    // Descriptions are for people: left out, they cost the compiled validator nothing to hold.
    if (key.startsWith('x-kubernetes-') || key === 'nullable' || key === 'default' || key === 'description') continue;
    if (key === 'properties') {
      out.properties = Object.fromEntries(Object.entries(value as Record<string, StructuralSchema>).map(([k, v]) => [k, toAjvSchema(v)]));
    } else if (key === 'items' || (key === 'additionalProperties' && typeof value === 'object')) {
      out[key] = toAjvSchema(value as StructuralSchema);
    } else if (key === 'anyOf') {
      // int-or-string's anyOf becomes a union type below; any other anyOf is kept as it is.
      if (!schema['x-kubernetes-int-or-string']) out.anyOf = (value as StructuralSchema[]).map(toAjvSchema);
    } else {
      out[key] = value;
    }
  }
  if (schema['x-kubernetes-int-or-string']) out.type = ['integer', 'string'];
  if (schema.nullable && out.type !== undefined) out.type = [...[out.type].flat(), 'null'];
  return out;
}

export type SchemaValidator = ValidateFunction;

export type { ErrorObject };
