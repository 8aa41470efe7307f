// Object semantics of the API server on top of the store: metadata bookkeeping, CRD schema
// processing, status subresource rules, generation, optimistic concurrency, dry run,
// finalizers and graceful deletion, garbage collection of dependents, namespace lifecycle.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Registry, ResourceType } from './resources.ts';
import { storageKey } from './resources.ts';
import type { Store } from './store.ts';
import type { FieldError } from './status.ts';
import { ApiError, alreadyExists, badRequest, conflict, forbidden, invalid, notFound } from './status.ts';
import { applyDefaults, prune, validate, type Schema } from './schema.ts';
import { compileError } from './cel.ts';
import { applyConflicts, recordUpdate, serverSideApply, takeOwnership, type ApplyConflict, type ManagedFieldsEntry } from './patch.ts';

type Json = any;

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export interface WriteOptions {
  dryRun: boolean;
  fieldValidation: FieldValidation;
  fieldManager: string;
  subresource?: string;
  /** warnings to return in Warning headers */
  warnings: string[];
}

const NAMESPACE_CLEANUP_DELAY_MS = 300;

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function nowTime(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function gv(t: ResourceType): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

/** Strips the server's bookkeeping so two versions can be compared for a real change. */
function comparable(obj: Json): string {
  const c = structuredClone(obj);
  delete c.metadata?.resourceVersion;
  if (Array.isArray(c.metadata?.managedFields)) for (const m of c.metadata.managedFields) delete m.time;
  return JSON.stringify(c, Object.keys(flattenKeys(c)).sort());
}
function flattenKeys(o: Json, acc: Record<string, true> = {}): Record<string, true> {
  if (o && typeof o === 'object') for (const [k, v] of Object.entries(o)) { acc[k] = true; flattenKeys(v, acc); }
  return acc;
}

function withoutMetaStatus(obj: Json, hasStatus: boolean): string {
  const c = structuredClone(obj);
  delete c.metadata;
  if (hasStatus) delete c.status;
  delete c.apiVersion;
  delete c.kind;
  return JSON.stringify(c, Object.keys(flattenKeys(c)).sort());
}

export class Objects {
  readonly reg: Registry;
  readonly store: Store;

  constructor(reg: Registry, store: Store) {
    this.reg = reg;
    this.store = store;
  }

  /** The object as served at rt's version. */
  present(rt: ResourceType, obj: Json): Json {
    const converted = rt.convert ? rt.convert.fromStorage(obj) : obj;
    return { ...converted, apiVersion: gv(rt), kind: rt.kind };
  }

  get(rt: ResourceType, ns: string | undefined, name: string): Json {
    const o = this.store.get(storageKey(rt), rt.namespaced ? ns : undefined, name);
    if (!o) throw notFound(rt, name);
    return this.present(rt, o);
  }

  private checkNamespace(rt: ResourceType, ns: string | undefined, name: string): void {
    if (!rt.namespaced || !ns) return;
    const namespace = this.store.get('/namespaces', undefined, ns);
    if (!namespace) throw notFound({ group: '', plural: 'namespaces' }, ns);
    if (namespace.metadata.deletionTimestamp) {
      throw forbidden(rt, name, `unable to create new content in namespace ${ns} because it is being terminated`);
    }
  }

  private schemaPipeline(rt: ResourceType, obj: Json, old: Json | undefined, opts: WriteOptions): void {
    const schema = rt.crd?.schema;
    if (!schema) return;
    const unknown: string[] = [];
    prune(obj, schema, '', true, unknown);
    if (unknown.length && opts.fieldValidation !== 'Ignore') {
      const msgs = unknown.map((u) => `unknown field ${JSON.stringify(u)}`);
      if (opts.fieldValidation === 'Strict') {
        throw badRequest(`${rt.kind} in version ${JSON.stringify(rt.version)} cannot be handled as a ${rt.kind}: strict decoding error: ${msgs.join(', ')}`);
      }
      opts.warnings.push(...msgs);
    }
    applyDefaults(obj, schema);
    const errs: FieldError[] = [];
    const root: Schema = { ...schema, properties: { ...(schema.properties ?? {}) } };
    delete root.properties!.metadata;
    validate(obj, root, '', errs, old, true);
    if (errs.length) throw invalid(rt, obj.metadata?.name ?? '', errs);
  }

  private validateMeta(rt: ResourceType, obj: Json): void {
    const errs: FieldError[] = [];
    const name = obj.metadata?.name;
    if (!name) errs.push({ type: 'Required value', field: 'metadata.name', detail: 'name or generateName is required' });
    else if (!DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
      errs.push({ type: 'Invalid value', field: 'metadata.name', value: name, detail: "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')" });
    }
    for (const v of Object.values(obj.metadata?.labels ?? {})) {
      if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) {
        errs.push({ type: 'Invalid value', field: `metadata.labels`, value: v, detail: "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')" });
      }
    }
    if (rt.kind === 'CustomResourceDefinition') this.validateCrd(obj, errs);
    if (errs.length) throw invalid(rt, name ?? '', errs);
  }

  private validateCrd(crd: Json, errs: FieldError[]): void {
    const spec = crd.spec ?? {};
    const expect = `${spec.names?.plural}.${spec.group}`;
    if (crd.metadata?.name !== expect) errs.push({ type: 'Invalid value', field: 'metadata.name', value: crd.metadata?.name, detail: `must be spec.names.plural+"."+spec.group` });
    const visit = (s: Schema | undefined, path: string): void => {
      if (!s) return;
      (s['x-kubernetes-validations'] ?? []).forEach((r, i) => {
        const e = compileError(r.rule);
        if (e) errs.push({ type: 'Invalid value', field: `${path}.x-kubernetes-validations[${i}].rule`, value: r.rule, detail: `compilation failed: ${e.split('\n')[0]}` });
      });
      for (const [k, p] of Object.entries(s.properties ?? {})) visit(p, `${path}.properties[${k}]`);
      if (s.items) visit(s.items, `${path}.items`);
      if (typeof s.additionalProperties === 'object') visit(s.additionalProperties, `${path}.additionalProperties`);
    };
    (spec.versions ?? []).forEach((v: Json, i: number) => visit(v.schema?.openAPIV3Schema, `spec.validation.openAPIV3Schema`.replace('spec.validation', `spec.versions[${i}].schema`)));
  }

  private managedUpdate(obj: Json, old: Json | undefined, rt: ResourceType, opts: WriteOptions): void {
    const current: ManagedFieldsEntry[] = old?.metadata?.managedFields ?? [];
    obj.metadata.managedFields = recordUpdate(current, old ?? {}, obj, opts.fieldManager, rt.crd?.schema, gv(rt), nowTime(), opts.subresource);
  }

  create(rt: ResourceType, ns: string | undefined, body: Json, opts: WriteOptions, applied = false): Json {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body of the request was not a JSON object');
    const obj = rt.convert ? rt.convert.toStorage(structuredClone(body)) : structuredClone(body);
    obj.metadata = obj.metadata ?? {};
    if (rt.namespaced) {
      if (obj.metadata.namespace && ns && obj.metadata.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      obj.metadata.namespace = ns ?? obj.metadata.namespace ?? 'default';
    } else delete obj.metadata.namespace;
    if (!obj.metadata.name && obj.metadata.generateName) obj.metadata.name = `${obj.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    this.validateMeta(rt, obj);
    this.checkNamespace(rt, obj.metadata.namespace, obj.metadata.name);
    if (this.store.get(storageKey(rt), obj.metadata.namespace, obj.metadata.name)) throw alreadyExists(rt, obj.metadata.name);
    obj.apiVersion = gv(rt);
    obj.kind = rt.kind;
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = nowTime();
    obj.metadata.generation = 1;
    delete obj.metadata.resourceVersion;
    delete obj.metadata.deletionTimestamp;
    delete obj.metadata.deletionGracePeriodSeconds;
    if (rt.crd && rt.hasStatus) delete obj.status;
    this.schemaPipeline(rt, obj, undefined, opts);
    if (!applied) {
      delete obj.metadata.managedFields;
      this.managedUpdate(obj, undefined, rt, opts);
    }
    if (rt.kind === 'CustomResourceDefinition') this.establish(obj);
    if (rt.kind === 'Namespace') obj.status = { phase: 'Active' };
    if (rt.kind === 'Namespace') obj.spec = { finalizers: ['kubernetes'], ...(obj.spec ?? {}) };
    if (opts.dryRun) return this.present(rt, obj);
    const stored = this.store.put(storageKey(rt), obj);
    if (rt.kind === 'CustomResourceDefinition') this.reg.setCrd(stored);
    return this.present(rt, stored);
  }

  private establish(crd: Json): void {
    const t = nowTime();
    crd.status = {
      acceptedNames: crd.spec?.names ?? {},
      storedVersions: (crd.spec?.versions ?? []).filter((v: Json) => v.storage).map((v: Json) => v.name),
      conditions: [
        { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found', lastTransitionTime: t },
        { type: 'Established', status: 'True', reason: 'InitialNamesAccepted', message: 'the initial names have been accepted', lastTransitionTime: t },
      ],
    };
  }

  /** PUT semantics (also the tail of every PATCH). `checkRv`: the body's resourceVersion must match. */
  update(rt: ResourceType, ns: string | undefined, name: string, input: Json, opts: WriteOptions): Json {
    if (!input || typeof input !== 'object' || Array.isArray(input)) throw badRequest('the body of the request was not a JSON object');
    const body = rt.convert ? rt.convert.toStorage(input) : input;
    const key = storageKey(rt);
    const namespace = rt.namespaced ? ns : undefined;
    const old = this.store.get(key, namespace, name);
    if (!old) throw notFound(rt, name);
    if (body.metadata?.name !== undefined && body.metadata.name !== name) throw badRequest('the name of the object (' + body.metadata.name + ') does not match the name on the URL (' + name + ')');
    const rv = body.metadata?.resourceVersion;
    if (rv === undefined || rv === '') {
      if (rt.crd) throw invalid(rt, name, [{ type: 'Invalid value', field: 'metadata.resourceVersion', value: 0, detail: 'must be specified for an update' }]);
    } else if (rv !== old.metadata.resourceVersion) throw conflict(rt, name);

    let obj: Json;
    if (opts.subresource === 'status') {
      obj = structuredClone(old);
      if (body.status === undefined) delete obj.status;
      else obj.status = structuredClone(body.status);
    } else {
      obj = structuredClone(body);
      obj.metadata = obj.metadata ?? {};
      if (rt.hasStatus) {
        if (old.status === undefined) delete obj.status;
        else obj.status = structuredClone(old.status);
      }
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'namespace', 'name', 'generation']) {
        if (old.metadata[k] === undefined) delete obj.metadata[k];
        else obj.metadata[k] = old.metadata[k];
      }
      if (old.metadata.deletionTimestamp) {
        const added = (obj.metadata.finalizers ?? []).filter((f: string) => !(old.metadata.finalizers ?? []).includes(f));
        if (added.length) throw invalid(rt, name, [{ type: 'Forbidden', field: 'metadata.finalizers', detail: `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f: string) => JSON.stringify(f)).join(', ')}}` }]);
      }
    }
    obj.apiVersion = gv(rt);
    obj.kind = rt.kind;
    obj.metadata.resourceVersion = old.metadata.resourceVersion;
    // Server-side apply computed managedFields itself (fieldManager ''); other writes record
    // an Update entry for their manager.
    this.schemaPipeline(rt, obj, old, opts);
    if (opts.fieldManager === '') obj.metadata.managedFields = body.metadata?.managedFields ?? old.metadata.managedFields;
    else this.managedUpdate(obj, old, rt, opts);
    if (withoutMetaStatus(obj, rt.hasStatus) !== withoutMetaStatus(old, rt.hasStatus)) obj.metadata.generation = (old.metadata.generation ?? 1) + 1;
    return this.commit(rt, old, obj, opts);
  }

  /** Writes obj unless nothing but bookkeeping changed; finishes deletion when the last finalizer goes. */
  private commit(rt: ResourceType, old: Json, obj: Json, opts: WriteOptions): Json {
    const oldCmp = structuredClone(old);
    const newCmp = structuredClone(obj);
    if (Array.isArray(oldCmp.metadata.managedFields)) oldCmp.metadata.managedFields = oldCmp.metadata.managedFields.filter((m: ManagedFieldsEntry) => m.operation === 'Apply');
    if (Array.isArray(newCmp.metadata.managedFields)) newCmp.metadata.managedFields = newCmp.metadata.managedFields.filter((m: ManagedFieldsEntry) => m.operation === 'Apply');
    oldCmp.apiVersion = newCmp.apiVersion;
    if (comparable(oldCmp) === comparable(newCmp)) return this.present(rt, old);
    if (opts.dryRun) return this.present(rt, obj);
    const key = storageKey(rt);
    if (obj.metadata.deletionTimestamp && (obj.metadata.finalizers ?? []).length === 0) {
      // The update that empties the finalizers of a deleting object deletes it instead of
      // writing it (one DELETED event, as the registry's errEmptiedFinalizers path does).
      return this.present(rt, this.finalize(rt, old, obj));
    }
    const stored = this.store.put(key, obj);
    if (rt.kind === 'CustomResourceDefinition') this.reg.setCrd(stored);
    return this.present(rt, stored);
  }

  apply(rt: ResourceType, ns: string | undefined, name: string, config: Json, force: boolean, opts: WriteOptions): { obj: Json; created: boolean } {
    if (!config || typeof config !== 'object' || Array.isArray(config)) throw badRequest('the body of the request was not a JSON object');
    if (!opts.fieldManager) throw badRequest('PATCH, application/apply-patch+yaml requires fieldManager to be set');
    if (config.metadata?.name !== undefined && config.metadata.name !== name) throw badRequest(`the name of the object (${config.metadata.name}) does not match the name on the URL (${name})`);
    if (config.metadata?.managedFields !== undefined) throw badRequest('metadata.managedFields must be nil');
    const key = storageKey(rt);
    const old = this.store.get(key, rt.namespaced ? ns : undefined, name);
    const schema = rt.crd?.schema;
    if (opts.subresource === 'status' && !old) throw notFound(rt, name);
    let cfg = rt.convert ? rt.convert.toStorage(structuredClone(config)) : structuredClone(config);
    if (opts.subresource === 'status') cfg = { status: cfg.status };
    else if (rt.hasStatus) delete cfg.status;
    let live = old;
    if (old) {
      const { conflicts, paths } = applyConflicts(old, cfg, opts.fieldManager, schema, opts.subresource);
      if (conflicts.length > 0 && !force) throw applyConflict(conflicts);
      live = structuredClone(old);
      live.metadata.managedFields = takeOwnership(old.metadata.managedFields ?? [], paths, opts.fieldManager);
    }
    const merged = serverSideApply(live, cfg, opts.fieldManager, schema, gv(rt), nowTime(), opts.subresource);
    if (!old) {
      merged.metadata = { ...merged.metadata, name };
      return { obj: this.create(rt, ns, merged, opts, true), created: true };
    }
    const rv = config.metadata?.resourceVersion;
    if (rv && rv !== old.metadata.resourceVersion) throw conflict(rt, name);
    merged.metadata.resourceVersion = old.metadata.resourceVersion;
    const out = this.update(rt, ns, name, merged, { ...opts, fieldManager: '' });
    return { obj: out, created: false };
  }

  /**
   * DELETE: objects with finalizers get a deletionTimestamp and stay until the finalizers are
   * removed; others go at once and their dependents are garbage-collected (background).
   */
  delete(rt: ResourceType, ns: string | undefined, name: string, options: Json, dryRun: boolean): Json {
    const key = storageKey(rt);
    const namespace = rt.namespaced ? ns : undefined;
    const old = this.store.get(key, namespace, name);
    if (!old) throw notFound(rt, name);
    const pre = options?.preconditions ?? {};
    if (pre.uid && pre.uid !== old.metadata.uid) throw conflict(rt, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) throw conflict(rt, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
    if (dryRun) return this.present(rt, old);
    return this.present(rt, this.deleteStored(rt, old, options?.propagationPolicy));
  }

  private deleteStored(rt: ResourceType, old: Json, propagation?: string): Json {
    const key = storageKey(rt);
    const finalizers: string[] = [...(old.metadata.finalizers ?? [])];
    if (propagation === 'Foreground' && this.dependentsOf(old.metadata.uid).length > 0 && !finalizers.includes('foregroundDeletion')) finalizers.push('foregroundDeletion');
    if (rt.kind === 'Namespace') return this.deleteNamespace(old);
    if (finalizers.length > 0) {
      if (old.metadata.deletionTimestamp) return old;
      const obj = structuredClone(old);
      obj.metadata.finalizers = finalizers;
      obj.metadata.deletionTimestamp = nowTime();
      obj.metadata.deletionGracePeriodSeconds = 0;
      obj.metadata.generation = (obj.metadata.generation ?? 1) + 1;
      const stored = this.store.put(key, obj);
      if (finalizers.includes('foregroundDeletion')) this.collectDependents(old.metadata.uid);
      return stored;
    }
    return this.finalize(rt, old);
  }

  private dependentsOf(uid: string): { key: string; obj: Json }[] {
    return this.store.all().filter(({ obj }) => (obj.metadata.ownerReferences ?? []).some((r: Json) => r.uid === uid));
  }

  private collectDependents(uid: string): void {
    for (const { key, obj } of this.dependentsOf(uid)) {
      const rt = this.reg.types.find((t) => storageKey(t) === key);
      if (!rt) continue;
      const current = this.store.get(key, obj.metadata.namespace, obj.metadata.name);
      if (!current) continue;
      const remaining = (current.metadata.ownerReferences ?? []).filter((r: Json) => r.uid !== uid && this.ownerExists(r, current.metadata.namespace));
      if (remaining.length > 0) continue;
      this.deleteStored(rt, current, 'Background');
    }
  }

  private ownerExists(ref: Json, ns: string | undefined): boolean {
    return this.store.all().some(({ obj }) => obj.metadata.uid === ref.uid && (obj.metadata.namespace === undefined || obj.metadata.namespace === ns));
  }

  /** Removes the object for good, then runs the consequences (GC, CRD and namespace cleanup). */
  private finalize(rt: ResourceType, obj: Json, finalState?: Json): Json {
    const key = storageKey(rt);
    const gone = this.store.remove(key, obj, finalState) ?? obj;
    this.collectDependents(obj.metadata.uid);
    // Foreground owners wait for their dependents; drop the owner's finalizer when none remain.
    for (const ref of obj.metadata.ownerReferences ?? []) this.releaseForegroundOwner(ref.uid);
    if (rt.kind === 'CustomResourceDefinition') {
      for (const t of this.reg.types.filter((x) => x.crd?.name === obj.metadata.name)) {
        for (const o of this.store.list(storageKey(t))) this.store.remove(storageKey(t), o);
      }
      this.reg.removeCrd(obj.metadata.name);
    }
    if (obj.metadata.namespace) this.maybeFinishNamespace(obj.metadata.namespace);
    return gone;
  }

  private releaseForegroundOwner(uid: string): void {
    const owner = this.store.all().find(({ obj }) => obj.metadata.uid === uid);
    if (!owner || !owner.obj.metadata.deletionTimestamp || !(owner.obj.metadata.finalizers ?? []).includes('foregroundDeletion')) return;
    if (this.dependentsOf(uid).length > 0) return;
    const rt = this.reg.types.find((t) => storageKey(t) === owner.key);
    if (!rt) return;
    const obj = structuredClone(owner.obj);
    obj.metadata.finalizers = obj.metadata.finalizers.filter((f: string) => f !== 'foregroundDeletion');
    if (obj.metadata.finalizers.length === 0) this.finalize(rt, owner.obj, obj);
    else this.store.put(owner.key, obj);
  }

  private deleteNamespace(ns: Json): Json {
    const name = ns.metadata.name;
    let current = ns;
    if (!ns.metadata.deletionTimestamp) {
      const obj = structuredClone(ns);
      obj.metadata.deletionTimestamp = nowTime();
      obj.metadata.deletionGracePeriodSeconds = 0;
      obj.status = { phase: 'Terminating' };
      current = this.store.put('/namespaces', obj);
    }
    // Like the namespace controller, empty the namespace a little later: clients deleting a
    // namespace and its contents in one go (kubectl delete -f) still find the contents.
    setTimeout(() => this.emptyNamespace(name), NAMESPACE_CLEANUP_DELAY_MS).unref();
    return current;
  }

  private emptyNamespace(name: string): void {
    for (const { key, obj } of this.store.all()) {
      if (obj.metadata.namespace !== name) continue;
      const rt = this.reg.types.find((t) => storageKey(t) === key);
      if (rt) this.deleteStored(rt, obj, 'Background');
    }
    this.maybeFinishNamespace(name);
  }

  private maybeFinishNamespace(name: string): Json | undefined {
    const ns = this.store.get('/namespaces', undefined, name);
    if (!ns?.metadata.deletionTimestamp) return undefined;
    if (this.store.all().some(({ obj }) => obj.metadata.namespace === name)) return undefined;
    return this.store.remove('/namespaces', ns);
  }
}

function printManager(c: ApplyConflict): string {
  return `${JSON.stringify(c.manager)} using ${c.apiVersion}`;
}

/** 409 for server-side apply conflicts, worded as the API server's field manager does. */
function applyConflict(conflicts: ApplyConflict[]): ApiError {
  let message: string;
  if (conflicts.length === 1) message = `Apply failed with 1 conflict: conflict with ${printManager(conflicts[0]!)}: ${conflicts[0]!.path}`;
  else {
    const byManager = new Map<string, ApplyConflict[]>();
    for (const c of conflicts) byManager.set(printManager(c), [...(byManager.get(printManager(c)) ?? []), c]);
    const lines: string[] = [];
    for (const m of [...byManager.keys()].sort()) {
      lines.push(`conflicts with ${m}:`);
      for (const c of byManager.get(m)!) lines.push(`- ${c.path}`);
    }
    message = `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
  }
  return new ApiError(409, 'Conflict', message, { causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with ${printManager(c)}`, field: c.path })) });
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}
