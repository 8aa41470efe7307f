// metav1.Status bodies with the API server's own wording, so clients (kubectl, client-node)
// print and classify emulator errors exactly as they would a real cluster's.
import type { ResourceType } from './resources.ts';

export interface FieldError {
  type: 'Required value' | 'Invalid value' | 'Unsupported value' | 'Duplicate value' | 'Forbidden' | 'Too long' | 'Too many' | 'Not found';
  field: string;
  value?: unknown;
  detail?: string;
  /** a type mismatch: validation does not descend into the value */
  typeError?: boolean;
  /** field.ErrorTypeTypeInvalid or NotSupported: the API server then skips CEL rules */
  blocksCel?: boolean;
}

const CAUSE_TYPE: Record<FieldError['type'], string> = {
  'Required value': 'FieldValueRequired',
  'Invalid value': 'FieldValueInvalid',
  'Unsupported value': 'FieldValueNotSupported',
  'Duplicate value': 'FieldValueDuplicate',
  Forbidden: 'FieldValueForbidden',
  'Too long': 'FieldValueTooLong',
  'Too many': 'FieldValueTooMany',
  'Not found': 'FieldValueNotFound',
};

export class ApiError extends Error {
  readonly status: Record<string, unknown>;
  readonly code: number;
  constructor(code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
  }
}

/** Go's %#v rendering of decoded JSON, as field.Error prints non-scalar bad values. */
export function goValue(v: unknown): string {
  if (v === null || v === undefined) return 'interface {}(nil)';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[]interface {}{${v.map(goInner).join(', ')}}`;
  const entries = Object.keys(v as object).sort().map((k) => `${JSON.stringify(k)}:${goInner((v as Record<string, unknown>)[k])}`);
  return `map[string]interface {}{${entries.join(', ')}}`;
}
function goInner(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return Number.isInteger(v) ? `${v}` : `${v}`;
  return goValue(v);
}

/** field.Error.ErrorBody() */
export function errorBody(e: FieldError): string {
  let s: string;
  if (e.type === 'Required value' || e.type === 'Forbidden' || e.type === 'Too long') s = e.type;
  else {
    const v = e.value;
    if (v === null || v === undefined) s = `${e.type}: "null"`;
    else if (typeof v === 'string') s = `${e.type}: ${JSON.stringify(v)}`;
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') s = `${e.type}: ${String(v)}`;
    else s = `${e.type}: ${goValue(v)}`;
  }
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

export function fieldErrorString(e: FieldError): string {
  return `${e.field}: ${errorBody(e)}`;
}

export function qualifiedResource(rt: Pick<ResourceType, 'group' | 'plural'>): string {
  return rt.group ? `${rt.plural}.${rt.group}` : rt.plural;
}
export function qualifiedKind(rt: Pick<ResourceType, 'group' | 'kind'>): string {
  return rt.group ? `${rt.kind}.${rt.group}` : rt.kind;
}

export function invalid(rt: Pick<ResourceType, 'group' | 'kind'>, name: string, errs: FieldError[]): ApiError {
  // utilerrors.NewAggregate dedupes identical messages; one error prints bare, more in brackets.
  const msgs = [...new Set(errs.map(fieldErrorString))];
  const agg = msgs.length === 1 ? msgs[0] : `[${msgs.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${qualifiedKind(rt)} ${JSON.stringify(name)} is invalid: ${agg}`, {
    name,
    group: rt.group,
    kind: rt.kind,
    causes: errs.map((e) => ({ reason: CAUSE_TYPE[e.type], message: errorBody(e), field: e.field })),
  });
}

export function notFound(rt: Pick<ResourceType, 'group' | 'plural'>, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualifiedResource(rt)} ${JSON.stringify(name)} not found`, { name, group: rt.group, kind: rt.plural });
}
export function alreadyExists(rt: Pick<ResourceType, 'group' | 'plural'>, name: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualifiedResource(rt)} ${JSON.stringify(name)} already exists`, { name, group: rt.group, kind: rt.plural });
}
export function conflict(rt: Pick<ResourceType, 'group' | 'plural'>, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiError {
  return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(rt)} ${JSON.stringify(name)}: ${why}`, { name, group: rt.group, kind: rt.plural });
}
export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}
export function methodNotSupported(rt: Pick<ResourceType, 'group' | 'plural'>, action: string): ApiError {
  return new ApiError(405, 'MethodNotAllowed', `${action} is not supported on resources of kind ${JSON.stringify(qualifiedResource(rt))}`, { group: rt.group, kind: rt.plural });
}
export function gone(message: string): ApiError {
  return new ApiError(410, 'Expired', message);
}
export function unsupportedMediaType(contentType: string, accepted: string[]): ApiError {
  return new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`, {
    causes: [{ reason: 'UnexpectedServerResponse', message: contentType }],
  });
}
export function forbidden(rt: Pick<ResourceType, 'group' | 'plural'> | undefined, name: string | undefined, why: string): ApiError {
  const qr = rt ? qualifiedResource(rt) : '';
  const msg = name ? `${qr} ${JSON.stringify(name)} is forbidden: ${why}` : `${qr} is forbidden: ${why}`;
  return new ApiError(403, 'Forbidden', msg, { ...(name ? { name } : {}), group: rt?.group ?? '', kind: rt?.plural ?? '' });
}
export function internalError(message: string): ApiError {
  return new ApiError(500, 'InternalError', `Internal error occurred: ${message}`);
}
