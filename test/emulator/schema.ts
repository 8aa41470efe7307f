// Structural-schema handling for custom resources, as apiextensions-apiserver does it:
// pruning of unknown fields, defaulting, then OpenAPI validation with kube-openapi's
// messages (converted to field errors the way kubeOpenAPIResultToFieldErrors does).
import type { FieldError } from './status.ts';
import { celValidate } from './cel.ts';

export interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  maxProperties?: number;
  nullable?: boolean;
  default?: unknown;
  allOf?: Schema[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  not?: Schema;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: string;
  'x-kubernetes-validations'?: ValidationRule[];
}

export interface ValidationRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
  optionalOldSelf?: boolean;
}

type Json = any;

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function childPath(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

/** Removes fields the schema does not declare; returns their paths (for fieldValidation). */
export function prune(value: Json, schema: Schema | undefined, path: string, isRoot: boolean, unknown: string[]): void {
  if (!schema || value === null || value === undefined) return;
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => prune(item, schema.items, `${path}[${i}]`, false, unknown));
    return;
  }
  if (!isObject(value)) return;
  const embedded = isRoot || schema['x-kubernetes-embedded-resource'];
  for (const key of Object.keys(value)) {
    if (embedded && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
    const prop = schema.properties?.[key];
    if (prop) { prune(value[key], prop, childPath(path, key), false, unknown); continue; }
    if (isObject(schema.additionalProperties)) { prune(value[key], schema.additionalProperties, childPath(path, key), false, unknown); continue; }
    if (schema.additionalProperties === true || schema['x-kubernetes-preserve-unknown-fields']) continue;
    unknown.push(childPath(path, key));
    delete value[key];
  }
}

/** Applies schema defaults to absent fields (and to nulls of non-nullable defaulted fields). */
export function applyDefaults(value: Json, schema: Schema | undefined): void {
  if (!schema || value === null || value === undefined) return;
  if (Array.isArray(value)) {
    if (schema.items) for (const item of value) applyDefaults(item, schema.items);
    return;
  }
  if (!isObject(value)) return;
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    if (value[key] === null && !prop.nullable && prop.default !== undefined) delete value[key];
    if (value[key] === undefined && prop.default !== undefined) value[key] = structuredClone(prop.default);
    applyDefaults(value[key], prop);
  }
  if (isObject(schema.additionalProperties)) for (const key of Object.keys(value)) applyDefaults(value[key], schema.additionalProperties);
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Go's %v of a float64 (kube-openapi prints bounds that way). */
export function goFloat(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) {
    if (Math.abs(n) < 1e6 || n === 0) return String(n);
    const e = n.toExponential();
    return e.replace(/e\+?(-?)(\d)$/, 'e+$1' + '0$2').replace('e+-', 'e-');
  }
  return String(n);
}

const FORMATS: Record<string, (s: string) => boolean> = {
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s),
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s),
  uuid: (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
  ipv4: (s) => /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(s),
  ipv6: (s) => s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s),
  cidr: (s) => /^[0-9a-fA-F:.]+\/\d{1,3}$/.test(s),
  mac: (s) => /^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(s),
  hostname: (s) => /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i.test(s) && s.length <= 255,
  email: (s) => /^[^@\s]+@[^@\s]+$/.test(s),
  byte: (s) => /^[A-Za-z0-9+/]*={0,2}$/.test(s),
  uri: (s) => /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s),
};

/**
 * Validates value against schema the way a custom resource is validated: OpenAPI keywords and
 * list types everywhere, then the CEL rules — unless a type or enum error blocks them, when
 * the API server reports that some rules were not checked.
 */
export function validate(value: Json, schema: Schema | undefined, path: string, errs: FieldError[], oldValue?: Json, isRoot = false): void {
  if (!schema) return;
  const before = errs.length;
  validateOpenApi(value, schema, path, errs, isRoot);
  if (!hasCelRules(schema)) return;
  // strategy.go's hasBlockingErr: type, required, enum, maxLength, maxItems/maxProperties
  const blocking = errs.slice(before).some((e) => e.blocksCel || e.type === 'Required value' || e.type === 'Unsupported value' || e.type === 'Too long' || e.type === 'Too many');
  if (blocking) {
    errs.push({ type: 'Invalid value', field: '<nil>', value: 'null', detail: 'some validation rules were not checked because the object was invalid; correct the existing errors to complete validation' });
    return;
  }
  validateCel(value, schema, path, errs, oldValue);
}

const celRulesCache = new WeakMap<Schema, boolean>();

/** The API server builds a CEL validator only for schemas that have rules somewhere. */
function hasCelRules(schema: Schema): boolean {
  let has = celRulesCache.get(schema);
  if (has === undefined) {
    const subs = [...Object.values(schema.properties ?? {}), ...(schema.items ? [schema.items] : []), ...(isObject(schema.additionalProperties) ? [schema.additionalProperties as Schema] : [])];
    has = Boolean(schema['x-kubernetes-validations']?.length) || subs.some(hasCelRules);
    celRulesCache.set(schema, has);
  }
  return has;
}

function validateOpenApi(value: Json, schema: Schema, path: string, errs: FieldError[], isRoot: boolean): void {
  const before = errs.length;
  validateValue(value, schema, path, errs, isRoot);
  if (errs.slice(before).some((e) => e.typeError) || value === undefined || value === null) return;
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => validateOpenApi(item, schema.items!, `${path}[${i}]`, errs, false));
  } else if (isObject(value)) {
    for (const [key, prop] of Object.entries(schema.properties ?? {})) {
      if (value[key] !== undefined) validateOpenApi(value[key], prop, childPath(path, key), errs, false);
    }
    if (isObject(schema.additionalProperties)) {
      for (const key of Object.keys(value)) {
        if (!schema.properties?.[key]) validateOpenApi(value[key], schema.additionalProperties, childPath(path, key), errs, false);
      }
    }
  }
}

function validateCel(value: Json, schema: Schema, path: string, errs: FieldError[], oldValue: Json): void {
  if (value === undefined || value === null) return;
  if (Array.isArray(value) && schema.items) {
    const oldByKey = listCorrelation(oldValue, schema);
    value.forEach((item, i) => validateCel(item, schema.items!, `${path}[${i}]`, errs, oldByKey(item)));
  } else if (isObject(value)) {
    for (const [key, prop] of Object.entries(schema.properties ?? {})) {
      if (value[key] !== undefined) validateCel(value[key], prop, childPath(path, key), errs, isObject(oldValue) ? oldValue[key] : undefined);
    }
    if (isObject(schema.additionalProperties)) {
      for (const key of Object.keys(value)) {
        if (!schema.properties?.[key]) validateCel(value[key], schema.additionalProperties, childPath(path, key), errs, isObject(oldValue) ? oldValue[key] : undefined);
      }
    }
  }
  if (schema['x-kubernetes-validations']?.length) errs.push(...celValidate(value, oldValue, schema, path));
}

function listCorrelation(oldValue: Json, schema: Schema): (item: Json) => Json {
  // Transition rules see oldSelf only where the old element can be correlated: by key for
  // map lists, by value for sets; atomic lists have no correlation.
  if (!Array.isArray(oldValue)) return () => undefined;
  const listType = schema['x-kubernetes-list-type'];
  if (listType === 'map') {
    const keys = schema['x-kubernetes-list-map-keys'] ?? [];
    return (item) => oldValue.find((o) => isObject(o) && isObject(item) && keys.every((k) => JSON.stringify(o[k]) === JSON.stringify(item[k])));
  }
  if (listType === 'set') return (item) => oldValue.find((o) => JSON.stringify(o) === JSON.stringify(item));
  return () => undefined;
}

function validateValue(value: Json, schema: Schema, path: string, errs: FieldError[], isRoot: boolean): void {
  const where = path || '<root>';
  if (value === null) {
    if (schema.nullable) return;
    if (schema.type || schema['x-kubernetes-int-or-string']) {
      errs.push({ type: 'Invalid value', field: path, value: 'null', detail: `${where} in body must be of type ${schema.type ?? 'integer,string'}: "null"`, typeError: true, blocksCel: true });
    }
    return;
  }
  const actual = jsonType(value);
  if (schema['x-kubernetes-int-or-string']) {
    if (actual !== 'integer' && actual !== 'string') {
      errs.push({ type: 'Invalid value', field: path, value: actual, detail: `${where} in body must be of type integer,string: ${JSON.stringify(actual)}`, typeError: true, blocksCel: true });
      return;
    }
  } else if (schema.type) {
    const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer');
    if (!ok) {
      errs.push({ type: 'Invalid value', field: path, value: actual, detail: `${where} in body must be of type ${schema.type}: ${JSON.stringify(actual)}`, typeError: true, blocksCel: true });
      return;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    errs.push({ blocksCel: true, type: 'Unsupported value', field: path, value, detail: `supported values: ${schema.enum.map((e) => JSON.stringify(typeof e === 'string' ? e : JSON.stringify(e))).join(', ')}` });
  }
  if (typeof value === 'string') {
    const len = [...value].length;
    if (schema.maxLength !== undefined && len > schema.maxLength) errs.push({ type: 'Too long', field: path, value, detail: `may not be longer than ${schema.maxLength}` });
    if (schema.minLength !== undefined && len < schema.minLength) errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body should be at least ${schema.minLength} chars long` });
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body should match '${schema.pattern}'` });
    const check = schema.format ? FORMATS[schema.format] : undefined;
    if (check && !check(value)) errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body must be of type ${schema.format}: ${JSON.stringify(value)}`, blocksCel: true });
  }
  if (typeof value === 'number') {
    if (schema.maximum !== undefined) {
      if (schema.exclusiveMaximum ? value >= schema.maximum : value > schema.maximum) {
        errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body should be less than ${schema.exclusiveMaximum ? '' : 'or equal to '}${goFloat(schema.maximum)}` });
      }
    }
    if (schema.minimum !== undefined) {
      if (schema.exclusiveMinimum ? value <= schema.minimum : value < schema.minimum) {
        errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body should be greater than ${schema.exclusiveMinimum ? '' : 'or equal to '}${goFloat(schema.minimum)}` });
      }
    }
    if (schema.multipleOf !== undefined && value % schema.multipleOf !== 0) errs.push({ type: 'Invalid value', field: path, value, detail: `${where} in body should be a multiple of ${goFloat(schema.multipleOf)}` });
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errs.push({ type: 'Too many', field: path, value: value.length, detail: `must have at most ${schema.maxItems} items` });
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push({ type: 'Invalid value', field: path, value: value.length, detail: `${where} in body should have at least ${schema.minItems} items` });
    if (schema.uniqueItems && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) errs.push({ type: 'Duplicate value', field: path, value, detail: `${where} in body shouldn't contain duplicates` });
    validateListType(value, schema, path, errs);
  }
  if (isObject(value)) {
    for (const req of schema.required ?? []) {
      if (value[req] === undefined) errs.push({ type: 'Required value', field: childPath(path, req) });
    }
    const n = Object.keys(value).length;
    if (schema.maxProperties !== undefined && n > schema.maxProperties) errs.push({ type: 'Too many', field: path, value: n, detail: `must have at most ${schema.maxProperties} items` });
    if (schema.minProperties !== undefined && n < schema.minProperties) errs.push({ type: 'Invalid value', field: path, value: n, detail: `${where} in body should have at least ${schema.minProperties} properties` });
  }
  // Value validations (structural schemas allow these only without types/defaults).
  for (const sub of schema.allOf ?? []) validateValue(value, sub, path, errs, isRoot);
  if (schema.anyOf) {
    const subErrs = schema.anyOf.map((s) => { const e: FieldError[] = []; validateValue(value, s, path, e, isRoot); return e; });
    if (!subErrs.some((e) => e.length === 0)) {
      errs.push({ type: 'Invalid value', field: path, value: '', detail: `${where} in body must validate at least one schema (anyOf)` });
      errs.push(...subErrs.flat());
    }
  }
  if (schema.oneOf) {
    const okCount = schema.oneOf.filter((s) => { const e: FieldError[] = []; validateValue(value, s, path, e, isRoot); return e.length === 0; }).length;
    if (okCount !== 1) errs.push({ type: 'Invalid value', field: path, value: '', detail: `${where} in body must validate one and only one schema (oneOf)` });
  }
  if (schema.not) {
    const e: FieldError[] = [];
    validateValue(value, schema.not, path, e, isRoot);
    if (e.length === 0) errs.push({ type: 'Invalid value', field: path, value: '', detail: `${where} in body must not validate the schema (not)` });
  }
}

function validateListType(value: Json[], schema: Schema, path: string, errs: FieldError[]): void {
  const listType = schema['x-kubernetes-list-type'];
  if (listType === 'set') {
    const seen = new Set<string>();
    value.forEach((v, i) => {
      const k = JSON.stringify(v);
      if (seen.has(k)) errs.push({ type: 'Duplicate value', field: `${path}[${i}]`, value: v });
      seen.add(k);
    });
  } else if (listType === 'map') {
    const keys = schema['x-kubernetes-list-map-keys'] ?? [];
    const seen = new Set<string>();
    value.forEach((v, i) => {
      if (!isObject(v)) return;
      const keyObj: Record<string, Json> = {};
      for (const k of keys) {
        let kv = v[k];
        if (kv === undefined) kv = schema.items?.properties?.[k]?.default;
        if (kv !== undefined) keyObj[k] = kv;
      }
      const id = JSON.stringify(keys.map((k) => keyObj[k]));
      if (seen.has(id)) errs.push({ type: 'Duplicate value', field: `${path}[${i}]`, value: keyObj });
      seen.add(id);
    });
  }
}
