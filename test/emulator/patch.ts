// The four patch types of PATCH requests: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
// strategic merge patch (built-in kinds only, with the merge keys of the fields we store), and
// server-side apply (merge of the applied configuration, owned fields tracked per manager).
import { ApiError } from './status.ts';
import type { Schema } from './schema.ts';

type Json = any;

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function invalidPatch(message: string): ApiError {
  return new ApiError(422, 'Invalid', message);
}

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw invalidPatch(`the server rejected our request due to an error in our request: invalid JSON pointer ${JSON.stringify(path)}`);
  return path.slice(1).split('/').map(unescape);
}

function resolveParent(doc: Json, segs: string[], op: string): { parent: Json; key: string } {
  let cur = doc;
  for (const s of segs.slice(0, -1)) {
    cur = Array.isArray(cur) ? cur[Number(s)] : isObject(cur) ? cur[s] : undefined;
    if (cur === undefined) throw invalidPatch(`the server rejected our request due to an error in our request: ${op} operation does not apply: doc is missing path: /${segs.join('/')}`);
  }
  return { parent: cur, key: segs[segs.length - 1] ?? '' };
}

function getAt(doc: Json, path: string): Json {
  let cur = doc;
  for (const s of pointer(path)) {
    cur = Array.isArray(cur) ? cur[Number(s)] : isObject(cur) ? cur[s] : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new ApiError(400, 'BadRequest', 'json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let out = structuredClone(doc);
  for (const op of ops) {
    const segs = pointer(op.path);
    const remove = (): Json => {
      const { parent, key } = resolveParent(out, segs, op.op);
      if (Array.isArray(parent)) return parent.splice(Number(key), 1)[0];
      if (!isObject(parent) || !(key in parent)) throw invalidPatch(`the server rejected our request due to an error in our request: ${op.op} operation does not apply: doc is missing key: ${op.path}`);
      const v = parent[key];
      delete parent[key];
      return v;
    };
    const add = (value: Json): void => {
      if (segs.length === 0) { out = value; return; }
      const { parent, key } = resolveParent(out, segs, op.op);
      if (Array.isArray(parent)) {
        if (key === '-') parent.push(value);
        else parent.splice(Number(key), 0, value);
      } else if (isObject(parent)) parent[key] = value;
      else throw invalidPatch(`the server rejected our request due to an error in our request: add operation does not apply: doc is missing path: ${op.path}`);
    };
    switch (op.op) {
      case 'add': add(structuredClone(op.value)); break;
      case 'remove': remove(); break;
      case 'replace': {
        if (getAt(out, op.path) === undefined) throw invalidPatch(`the server rejected our request due to an error in our request: replace operation does not apply: doc is missing key: ${op.path}`);
        if (segs.length === 0) { out = structuredClone(op.value); break; }
        const { parent, key } = resolveParent(out, segs, op.op);
        if (Array.isArray(parent)) parent[Number(key)] = structuredClone(op.value);
        else parent[key] = structuredClone(op.value);
        break;
      }
      case 'move': {
        const v = getAt(out, op.from);
        const { parent, key } = resolveParent(out, pointer(op.from), 'move');
        if (Array.isArray(parent)) parent.splice(Number(key), 1);
        else delete parent[key];
        add(v);
        break;
      }
      case 'copy': add(structuredClone(getAt(out, op.from))); break;
      case 'test':
        if (JSON.stringify(getAt(out, op.path)) !== JSON.stringify(op.value)) throw invalidPatch('the server rejected our request due to an error in our request');
        break;
      default:
        throw invalidPatch(`the server rejected our request due to an error in our request: Unexpected kind: ${op.op}`);
    }
  }
  return out;
}

// Merge keys of the list fields of the built-in kinds the emulator stores (from the Go
// types' patchMergeKey tags). Lists not named here are replaced, as atomic lists are.
const MERGE_KEYS: Record<string, string> = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name', env: 'name', volumes: 'name',
  volumeMounts: 'mountPath', volumeDevices: 'devicePath', imagePullSecrets: 'name', conditions: 'type',
  hostAliases: 'ip', ownerReferences: 'uid',
};
const SET_LISTS = new Set(['finalizers']);

function portKey(items: Json[]): string {
  return items.some((i) => isObject(i) && 'containerPort' in i) ? 'containerPort' : 'port';
}

export function strategicMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  if (patch.$patch === 'replace') { const p = structuredClone(patch); delete p.$patch; return stripDirectives(p); }
  if (patch.$patch === 'delete') return undefined;
  const out: Record<string, Json> = isObject(target) ? structuredClone(target) : {};
  const retain: string[] | undefined = patch.$retainKeys;
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$retainKeys' || k === '$patch' || k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const f = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[f])) out[f] = out[f].filter((x: Json) => !(v as Json[]).includes(x));
      continue;
    }
    if (v === null) { delete out[k]; continue; }
    if (Array.isArray(v)) {
      const mergeKey = k === 'ports' ? portKey([...v, ...(Array.isArray(out[k]) ? out[k] : [])]) : MERGE_KEYS[k];
      if (mergeKey && Array.isArray(out[k]) && v.every(isObject)) {
        const cur: Json[] = out[k];
        for (const item of v) {
          const idx = cur.findIndex((c) => isObject(c) && c[mergeKey] === item[mergeKey]);
          if (item.$patch === 'delete') { if (idx >= 0) cur.splice(idx, 1); continue; }
          if (idx >= 0) cur[idx] = strategicMergePatch(cur[idx], item);
          else cur.push(stripDirectives(structuredClone(item)));
        }
        continue;
      }
      if (SET_LISTS.has(k) && Array.isArray(out[k])) { out[k] = [...new Set([...out[k], ...v])]; continue; }
      out[k] = stripDirectives(structuredClone(v));
      continue;
    }
    out[k] = strategicMergePatch(out[k], v);
    if (out[k] === undefined) delete out[k];
  }
  if (retain) for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObject(v)) return v;
  const out: Record<string, Json> = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x);
  return out;
}

// ---- server-side apply ----------------------------------------------------------------

/** List-map keys for a list at this schema node (CRD schema or built-in merge keys). */
function listKeys(field: string, schema: Schema | undefined, items: Json[]): string[] | undefined {
  if (schema?.['x-kubernetes-list-type'] === 'map') return schema['x-kubernetes-list-map-keys'] ?? [];
  if (schema) return undefined;
  const k = field === 'ports' ? portKey(items) : MERGE_KEYS[field];
  return k ? [k] : undefined;
}

function keyOf(item: Json, keys: string[]): string {
  const o: Record<string, Json> = {};
  for (const k of keys) o[k] = item[k];
  return `k:${JSON.stringify(o)}`;
}

/** The managedFields FieldsV1 set of a configuration. */
export function fieldSet(config: Json, schema: Schema | undefined): Json {
  if (!isObject(config)) return {};
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(config)) {
    const sub = schema?.properties?.[k] ?? (isObject(schema?.additionalProperties) ? schema.additionalProperties : undefined);
    if (isObject(v) && !(schema && schema['x-kubernetes-map-type'] === 'atomic')) out[`f:${k}`] = fieldSet(v, sub);
    else if (Array.isArray(v)) {
      const keys = listKeys(k, sub, v);
      if (keys && v.every(isObject)) {
        const lst: Record<string, Json> = {};
        for (const item of v) lst[keyOf(item, keys)] = { '.': {}, ...fieldSet(item, sub?.items) };
        out[`f:${k}`] = lst;
      } else out[`f:${k}`] = {};
    } else out[`f:${k}`] = {};
  }
  return out;
}

/** Removes from `live` the fields in `removed` (a FieldsV1 set) that no other manager owns. */
function removeFields(live: Json, removed: Json, others: Json[]): void {
  if (!isObject(live) || !isObject(removed)) return;
  for (const [fk, sub] of Object.entries(removed)) {
    if (!fk.startsWith('f:')) continue;
    const k = fk.slice(2);
    const otherSubs = others.map((o) => (isObject(o) ? o[fk] : undefined)).filter((x) => x !== undefined);
    if (!(k in live)) continue;
    const isLeaf = !isObject(sub) || Object.keys(sub).length === 0;
    if (isLeaf) { if (otherSubs.length === 0) delete live[k]; continue; }
    if (Array.isArray(live[k])) {
      for (const [ik, isub] of Object.entries(sub as Record<string, Json>)) {
        if (!ik.startsWith('k:')) continue;
        const keyObj = JSON.parse(ik.slice(2));
        const idx = live[k].findIndex((it: Json) => Object.entries(keyObj).every(([a, b]) => JSON.stringify(it?.[a]) === JSON.stringify(b)));
        if (idx < 0) continue;
        const otherOwn = otherSubs.some((o) => isObject(o) && ik in o);
        const wholeItem = isObject(isub) && '.' in isub;
        if (wholeItem && !otherOwn) live[k].splice(idx, 1);
        else removeFields(live[k][idx], isub, otherSubs.map((o) => (isObject(o) ? o[ik] : undefined)).filter((x) => x !== undefined));
      }
      if (live[k].length === 0 && otherSubs.length === 0) delete live[k];
      continue;
    }
    removeFields(live[k], sub, otherSubs);
    if (otherSubs.length === 0 && isObject(live[k]) && Object.keys(live[k]).length === 0) delete live[k];
  }
}

/** Merges an applied configuration into the live object (maps deep, keyed lists by key). */
function applyMerge(live: Json, config: Json, schema: Schema | undefined): Json {
  if (!isObject(config)) return structuredClone(config);
  if (!isObject(live)) live = {};
  const out: Record<string, Json> = structuredClone(live);
  for (const [k, v] of Object.entries(config)) {
    const sub = schema?.properties?.[k] ?? (isObject(schema?.additionalProperties) ? schema.additionalProperties : undefined);
    if (Array.isArray(v)) {
      const keys = listKeys(k, sub, v);
      if (keys && Array.isArray(out[k]) && v.every(isObject)) {
        const cur: Json[] = out[k];
        const merged = v.map((item) => {
          const existing = cur.find((c) => isObject(c) && keyOf(c, keys) === keyOf(item, keys));
          return existing ? applyMerge(existing, item, sub?.items) : structuredClone(item);
        });
        // Elements owned by other managers stay, after the applied ones.
        for (const c of cur) if (!v.some((item) => keyOf(c, keys) === keyOf(item, keys))) merged.push(c);
        out[k] = merged;
      } else out[k] = structuredClone(v);
    } else if (isObject(v)) out[k] = applyMerge(out[k], v, sub);
    else out[k] = v;
  }
  return out;
}

export interface ManagedFieldsEntry { manager: string; operation: 'Apply' | 'Update'; apiVersion: string; time: string; fieldsType: 'FieldsV1'; fieldsV1: Json; subresource?: string }

/**
 * Server-side apply of `config` by `manager` onto `live` (undefined when creating). Fields the
 * manager applied before and no longer applies are removed unless another manager owns them.
 */
export function serverSideApply(live: Json | undefined, config: Json, manager: string, schema: Schema | undefined, apiVersion: string, now: string, subresource?: string): Json {
  const managed: ManagedFieldsEntry[] = structuredClone(live?.metadata?.managedFields ?? []);
  const mine = managed.find((m) => m.manager === manager && m.operation === 'Apply' && (m.subresource ?? '') === (subresource ?? ''));
  const newSet = fieldSet(stripMeta(config), schema);
  let base = live ? structuredClone(live) : {};
  if (mine) {
    const others = managed.filter((m) => m !== mine).map((m) => m.fieldsV1);
    const removed = difference(mine.fieldsV1, newSet);
    removeFields(base, removed, others);
  }
  base = applyMerge(base, config, schema);
  const entry: ManagedFieldsEntry = { manager, operation: 'Apply', apiVersion, time: now, fieldsType: 'FieldsV1', fieldsV1: newSet, ...(subresource ? { subresource } : {}) };
  const rest = managed.filter((m) => m !== mine);
  base.metadata = { ...(base.metadata ?? {}), managedFields: [...rest, entry] };
  return base;
}

function stripMeta(config: Json): Json {
  const c = structuredClone(config);
  if (isObject(c.metadata)) {
    const keep: Record<string, Json> = {};
    for (const k of ['labels', 'annotations', 'finalizers', 'ownerReferences']) if (c.metadata[k] !== undefined) keep[k] = c.metadata[k];
    c.metadata = keep;
    if (Object.keys(keep).length === 0) delete c.metadata;
  }
  delete c.apiVersion;
  delete c.kind;
  return c;
}

/** Set difference a \ b of FieldsV1 sets (leaves in a not present in b). */
function difference(a: Json, b: Json): Json {
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(a ?? {})) {
    if (!isObject(b) || !(k in b)) { out[k] = v; continue; }
    if (isObject(v) && Object.keys(v).length > 0) {
      const d = difference(v, b[k]);
      if (Object.keys(d).length > 0) out[k] = d;
    }
  }
  return out;
}

// ---- field ownership (managedFields) ----------------------------------------------------

type Step = string; // "f:name" or "k:{...}"

/** Every leaf path of a FieldsV1 set ("." markers are leaves of keyed items). */
export function leafPaths(set: Json, prefix: Step[] = []): Step[][] {
  const out: Step[][] = [];
  if (!isObject(set)) return out;
  for (const [k, v] of Object.entries(set)) {
    if (k === '.') continue;
    if (!isObject(v) || Object.keys(v).length === 0) out.push([...prefix, k]);
    else out.push(...leafPaths(v, [...prefix, k]));
  }
  return out;
}

function valueAt(obj: Json, path: Step[]): Json {
  let cur = obj;
  for (const s of path) {
    if (cur === undefined || cur === null) return undefined;
    if (s.startsWith('f:')) cur = isObject(cur) ? cur[s.slice(2)] : undefined;
    else if (s.startsWith('k:')) {
      const key = JSON.parse(s.slice(2));
      cur = Array.isArray(cur) ? cur.find((it) => isObject(it) && Object.entries(key).every(([a, b]) => JSON.stringify(it[a]) === JSON.stringify(b))) : undefined;
    } else return undefined;
  }
  return cur;
}

function hasLeaf(set: Json, path: Step[]): boolean {
  let cur = set;
  for (const s of path) {
    if (!isObject(cur) || !(s in cur)) return false;
    cur = cur[s];
  }
  return true;
}

function removeLeaf(set: Json, path: Step[]): void {
  const parents: Json[] = [];
  let cur = set;
  for (const s of path.slice(0, -1)) {
    if (!isObject(cur) || !(s in cur)) return;
    parents.push(cur);
    cur = cur[s];
  }
  if (!isObject(cur)) return;
  delete cur[path[path.length - 1]!];
  // prune emptied parents (keeping keyed items' "." marker out of the emptiness test)
  for (let i = path.length - 2; i >= 0; i--) {
    const parent = parents[i]!;
    const child = parent[path[i]!];
    const rest = Object.keys(child).filter((k) => k !== '.');
    if (rest.length === 0 && !('.' in child && path[i]!.startsWith('k:'))) delete parent[path[i]!];
    else break;
  }
}

function addLeaf(set: Json, path: Step[]): void {
  let cur = set;
  path.forEach((s, i) => {
    if (!isObject(cur[s])) cur[s] = {};
    if (s.startsWith('k:') && i < path.length - 1) cur[s]['.'] = {};
    cur = cur[s];
  });
}

export function pathString(path: Step[]): string {
  return path.map((s) => (s.startsWith('f:') ? `.${s.slice(2)}` : `[${Object.entries(JSON.parse(s.slice(2))).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`)).join('');
}

/** The part of the object a manager can own: no server bookkeeping, no apiVersion/kind. */
export function ownable(obj: Json): Json {
  return stripMeta(obj ?? {});
}

/**
 * An Update by `manager` takes ownership of the fields it changed, which other managers lose
 * (as the API server's field manager does for non-apply writes).
 */
export function recordUpdate(managed: ManagedFieldsEntry[], oldObj: Json, newObj: Json, manager: string, schema: Schema | undefined, apiVersion: string, now: string, subresource?: string): ManagedFieldsEntry[] {
  const entries = structuredClone(managed);
  const before = ownable(oldObj);
  const after = ownable(newObj);
  const changed = leafPaths(fieldSet(after, schema)).filter((p) => JSON.stringify(valueAt(after, p)) !== JSON.stringify(valueAt(before, p)));
  // fields that disappeared are owned by nobody any more
  const removed = leafPaths(fieldSet(before, schema)).filter((p) => valueAt(after, p) === undefined);
  let mine = entries.find((m) => m.manager === manager && m.operation === 'Update' && (m.subresource ?? '') === (subresource ?? ''));
  for (const e of entries) for (const p of [...changed, ...removed]) removeLeaf(e.fieldsV1, p);
  if (changed.length > 0 || mine) {
    if (!mine) {
      mine = { manager, operation: 'Update', apiVersion, time: now, fieldsType: 'FieldsV1', fieldsV1: {}, ...(subresource ? { subresource } : {}) };
      entries.push(mine);
    }
    for (const p of changed) addLeaf(mine.fieldsV1, p);
    mine.time = now;
  }
  return entries.filter((e) => e.operation === 'Apply' || leafPaths(e.fieldsV1).length > 0);
}

export interface ApplyConflict { manager: string; apiVersion: string; path: string }

/** Fields the applied configuration sets to a different value than their current owners'. */
export function applyConflicts(live: Json, config: Json, manager: string, schema: Schema | undefined, subresource?: string): { conflicts: ApplyConflict[]; paths: Step[][] } {
  const managed: ManagedFieldsEntry[] = live?.metadata?.managedFields ?? [];
  const cfg = ownable(config);
  const cur = ownable(live);
  const paths = leafPaths(fieldSet(cfg, schema)).filter((p) => valueAt(cur, p) !== undefined && JSON.stringify(valueAt(cur, p)) !== JSON.stringify(valueAt(cfg, p)));
  const conflicts: ApplyConflict[] = [];
  for (const e of managed) {
    if (e.manager === manager && e.operation === 'Apply') continue;
    if ((e.subresource ?? '') !== (subresource ?? '')) continue;
    for (const p of paths) if (hasLeaf(e.fieldsV1, p)) conflicts.push({ manager: e.manager, apiVersion: e.apiVersion, path: pathString(p) });
  }
  return { conflicts, paths };
}

/** With force, the applier takes the conflicting fields from their previous owners. */
export function takeOwnership(managed: ManagedFieldsEntry[], paths: Step[][], manager: string): ManagedFieldsEntry[] {
  const entries = structuredClone(managed);
  for (const e of entries) if (!(e.manager === manager && e.operation === 'Apply')) for (const p of paths) removeLeaf(e.fieldsV1, p);
  return entries.filter((e) => e.operation === 'Apply' || leafPaths(e.fieldsV1).length > 0);
}
