// CRD x-kubernetes-validations evaluated with @marcbachmann/cel-js, reporting failures the way
// the API server's CEL validator does (message, messageExpression, reason, fieldPath).
import { Environment } from '@marcbachmann/cel-js';
import type { FieldError } from './status.ts';
import type { Schema, ValidationRule } from './schema.ts';

type Json = any;

function makeEnv(): Environment {
  // Kubernetes' CEL libraries add a few list helpers; the common ones are provided here.
  const env = new Environment({ unlistedVariablesAreDyn: true, homogeneousAggregateLiterals: false });
  env.registerFunction({ name: 'isSorted', receiverType: 'list', returnType: 'bool', params: [], handler: (l: unknown[]) => l.every((v, i) => i === 0 || (l[i - 1] as never) <= (v as never)) });
  env.registerFunction({ name: 'sum', receiverType: 'list', returnType: 'dyn', params: [], handler: (l: unknown[]) => l.reduce((a: any, b: any) => a + b, l.length && typeof l[0] === 'bigint' ? 0n : 0) });
  return env;
}

const env = makeEnv();
const compiled = new Map<string, ReturnType<Environment['parse']>>();

function program(expr: string): ReturnType<Environment['parse']> {
  let p = compiled.get(expr);
  if (!p) {
    p = env.parse(expr);
    compiled.set(expr, p);
  }
  return p;
}

/** Compile-time check used when a CRD is created (the API server refuses rules that do not compile). */
export function compileError(expr: string): string | undefined {
  try {
    program(expr);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** JSON → CEL values following the schema: integers become int (bigint), numbers double. */
export function toCel(value: Json, schema: Schema | undefined): Json {
  if (value === null || value === undefined) return value;
  if (Array.isArray(value)) return value.map((v) => toCel(v, schema?.items));
  if (typeof value === 'number') {
    const intLike = schema?.type === 'integer' || (schema?.['x-kubernetes-int-or-string'] && Number.isInteger(value)) || (!schema?.type && Number.isInteger(value));
    return intLike ? BigInt(value) : value;
  }
  if (typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) {
      const sub = schema?.properties?.[k] ?? (typeof schema?.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      out[k] = toCel(v, sub);
    }
    return out;
  }
  return value;
}

function referencesOldSelf(expr: string): boolean {
  return /\boldSelf\b/.test(expr);
}

function reasonType(reason: string | undefined): FieldError['type'] {
  switch (reason) {
    case 'FieldValueRequired': return 'Required value';
    case 'FieldValueForbidden': return 'Forbidden';
    case 'FieldValueDuplicate': return 'Duplicate value';
    default: return 'Invalid value';
  }
}

function schemaTypeName(schema: Schema): string {
  if (schema['x-kubernetes-int-or-string']) return 'integer';
  return schema.type ?? 'object';
}

export function celValidate(value: Json, oldValue: Json, schema: Schema, path: string): FieldError[] {
  const errs: FieldError[] = [];
  const self = toCel(value, schema);
  const oldSelf = oldValue === undefined ? undefined : toCel(oldValue, schema);
  for (const rule of schema['x-kubernetes-validations'] ?? []) {
    const transition = referencesOldSelf(rule.rule);
    if (transition && oldValue === undefined && !rule.optionalOldSelf) continue;
    const field = rule.fieldPath ? `${path}${rule.fieldPath.startsWith('.') || rule.fieldPath.startsWith('[') ? '' : '.'}${rule.fieldPath}` : path;
    let ok: unknown;
    try {
      ok = program(rule.rule)({ self, ...(transition ? { oldSelf: oldSelf ?? null } : {}) });
    } catch (err) {
      errs.push({ type: 'Invalid value', field, value: schemaTypeName(schema), detail: `${evalMessage(err)} evaluating rule: ${rule.rule}` });
      continue;
    }
    if (ok === true) continue;
    errs.push(failure(rule, self, oldSelf, schema, field));
  }
  return errs;
}

function evalMessage(err: unknown): string {
  const first = String((err as Error)?.message ?? err).split('\n')[0] ?? '';
  return first.charAt(0).toLowerCase() + first.slice(1);
}

function failure(rule: ValidationRule, self: Json, oldSelf: Json, schema: Schema, field: string): FieldError {
  let message = rule.message ?? `failed rule: ${rule.rule.trim()}`;
  if (rule.messageExpression) {
    try {
      const m = program(rule.messageExpression)({ self, oldSelf });
      if (typeof m === 'string' && m.trim() !== '') message = m;
    } catch {
      // The API server falls back to the static message when messageExpression fails.
    }
  }
  const type = reasonType(rule.reason);
  if (type === 'Required value' || type === 'Forbidden') return { type, field, detail: message };
  return { type, field, value: schemaTypeName(schema), detail: message };
}
