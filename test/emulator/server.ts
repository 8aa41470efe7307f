// HTTP front of the emulator: routing of Kubernetes API paths, authentication by bearer token,
// RBAC, fault injection, content negotiation (JSON or Table) and watch streaming.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import type { ResourceType } from './resources.ts';
import { Registry, storageKey } from './resources.ts';
import { Store, type StoreEvent } from './store.ts';
import { Objects, type FieldValidation, type WriteOptions } from './objects.ts';
import { ApiError, badRequest, internalError, methodNotSupported, notFound, unsupportedMediaType } from './status.ts';
import { apiGroupDoc, apiGroupList, apiVersions, openApiV3Doc, openApiV3Index, resourceList, SERVER_VERSION } from './discovery.ts';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.ts';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Requirement } from './selectors.ts';
import { evalJsonPath } from './jsonpath.ts';
import { table, type IncludeObject } from './table.ts';

export interface RequestRecord { user: string; verb: string; apiGroup: string; resource: string; subresource?: string; namespace?: string; name?: string; code: number }

export interface ServerOptions { watchHistory: number; bookmarkIntervalMs: number }

/** Who made a request: every client is this cluster admin (the emulator does not authorize). */
export interface User { name: string; groups: string[] }

interface ResourceRequest {
  group: string;
  version: string;
  namespace?: string;
  resource: string;
  name?: string;
  subresource?: string;
  verb: string;
}

type Json = any;

export const ADMIN: User = { name: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] };

function parseResourcePath(method: string, segs: string[], query: URLSearchParams): ResourceRequest | undefined {
  let group: string; let version: string; let rest: string[];
  if (segs[0] === 'api' && segs.length >= 3) { group = ''; version = segs[1]!; rest = segs.slice(2); }
  else if (segs[0] === 'apis' && segs.length >= 4) { group = segs[1]!; version = segs[2]!; rest = segs.slice(3); }
  else return undefined;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] !== 'status' && rest[2] !== 'finalize') { namespace = rest[1]; rest = rest.slice(2); }
  const [resource, name, subresource] = rest;
  if (!resource || rest.length > 3) return undefined;
  const isWatch = query.get('watch') === 'true' || query.get('watch') === '1';
  let verb: string;
  switch (method) {
    case 'GET': verb = name ? (isWatch ? 'watch' : 'get') : isWatch ? 'watch' : 'list'; break;
    case 'POST': verb = 'create'; break;
    case 'PUT': verb = 'update'; break;
    case 'PATCH': verb = 'patch'; break;
    case 'DELETE': verb = name ? 'delete' : 'deletecollection'; break;
    default: verb = method.toLowerCase();
  }
  return { group, version, ...(namespace ? { namespace } : {}), resource, ...(name ? { name } : {}), ...(subresource ? { subresource } : {}), verb };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseBody(text: string, contentType: string): Json {
  if (text.trim() === '') return undefined;
  if (contentType.includes('protobuf') || contentType.includes('cbor')) {
    // Typed clients (e.g. `kubectl create configmap`) send protobuf; the emulator speaks JSON only.
    throw unsupportedMediaType(contentType, ['application/json', 'application/yaml']);
  }
  try {
    return contentType.includes('yaml') ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`);
  }
}

export class ApiServer {
  readonly reg = new Registry();
  readonly store: Store;
  readonly objects: Objects;
  readonly tokens = new Map<string, User>();
  readonly requests: RequestRecord[] = [];
  private readonly opts: ServerOptions;
  private readonly openWatches = new Set<() => void>();
  hostPort = '127.0.0.1';

  constructor(opts: ServerOptions) {
    this.opts = opts;
    this.store = new Store(opts.watchHistory);
    this.objects = new Objects(this.reg, this.store);
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      this.store.put('/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, uid: crypto.randomUUID(), creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
    }
  }

  /** Ends every open watch (on close). */
  dropWatches(): void { for (const end of [...this.openWatches]) end(); }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.serve(req, res).catch((err) => {
      if (!res.headersSent) this.sendError(res, err instanceof ApiError ? err : internalError(String((err as Error)?.stack ?? err)));
      else res.end();
    });
  };

  private send(res: ServerResponse, code: number, body: unknown, warnings: string[] = []): void {
    const text = JSON.stringify(body);
    const headers: Record<string, string | string[]> = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' };
    if (warnings.length) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.writeHead(code, headers);
    res.end(text);
  }

  private sendError(res: ServerResponse, err: ApiError): void {
    this.send(res, err.code, err.status);
  }

  private authenticate(req: IncomingMessage): User | undefined {
    const auth = req.headers.authorization;
    if (!auth) return ADMIN;
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m ? this.tokens.get(m[1]!.trim()) : undefined;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const rr = parseResourcePath(method, segs, url.searchParams);
    const user = this.authenticate(req);
    let recorded = false;
    const record = (code: number): void => {
      if (!rr || recorded) return;
      recorded = true;
      this.requests.push({ user: user?.name ?? 'system:anonymous', verb: rr.verb, apiGroup: rr.group, resource: rr.resource, ...(rr.subresource ? { subresource: rr.subresource } : {}), ...(rr.namespace ? { namespace: rr.namespace } : {}), ...(rr.name ? { name: rr.name } : {}), code });
    };
    // Watches are recorded when they start streaming (tests wait for a client's watch).
    res.on('watching', () => record(200));
    res.on('finish', () => record(res.statusCode));
    res.on('close', () => { if (res.headersSent) record(res.statusCode); });

    if (!user) {
      this.send(res, 401, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
      return;
    }
    const bodyText = await readBody(req);
    if (!rr) return this.serveNonResource(res, segs, method);

    const rt = this.reg.find(rr.group, rr.version, rr.resource);
    if (!rt) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource', { ...(rr.name ? { name: rr.name } : {}), group: rr.group, kind: rr.resource, causes: [{ reason: 'UnexpectedServerResponse', message: '404 page not found' }] });
    if (rr.subresource && !(rr.subresource === 'status' && rt.hasStatus)) throw notFound(rt, rr.name ?? '');

    if (rt.namespaced && !rr.namespace && ['create', 'update', 'patch', 'delete', 'get'].includes(rr.verb)) {
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    }
    await this.serveResource(req, res, url, rt, rr, bodyText);
  }

  private serveNonResource(res: ServerResponse, segs: string[], method: string): void {
    const path = '/' + segs.join('/');
    if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    let body: unknown;
    if (path === '/version') body = SERVER_VERSION;
    else if (path === '/healthz' || path === '/readyz' || path === '/livez') { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('ok'); return; }
    else if (path === '/api') body = apiVersions(this.hostPort);
    else if (path === '/apis') body = apiGroupList(this.reg);
    else if (segs[0] === 'api' && segs.length === 2) body = resourceList(this.reg, '', segs[1]!);
    else if (segs[0] === 'apis' && segs.length === 2) body = apiGroupDoc(this.reg, segs[1]!);
    else if (segs[0] === 'apis' && segs.length === 3) body = resourceList(this.reg, segs[1]!, segs[2]!);
    else if (path === '/openapi/v3') body = openApiV3Index(this.reg);
    else if (segs[0] === 'openapi' && segs[1] === 'v3' && segs[2] === 'api' && segs.length === 4) body = openApiV3Doc(this.reg, '', segs[3]!);
    else if (segs[0] === 'openapi' && segs[1] === 'v3' && segs[2] === 'apis' && segs.length === 5) body = openApiV3Doc(this.reg, segs[3]!, segs[4]!);
    if (body === undefined) {
      this.send(res, 404, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server could not find the requested resource', reason: 'NotFound', details: {}, code: 404 });
      return;
    }
    this.send(res, 200, body);
  }

  private writeOptions(url: URL, req: IncomingMessage, subresource: string | undefined): WriteOptions {
    const fv = (url.searchParams.get('fieldValidation') ?? 'Warn') as FieldValidation;
    if (!['Strict', 'Warn', 'Ignore'].includes(fv)) throw badRequest(`fieldValidation parameter unsupported: ${fv}`);
    const agent = String(req.headers['user-agent'] ?? 'unknown').split('/')[0] ?? 'unknown';
    return {
      dryRun: url.searchParams.getAll('dryRun').includes('All'),
      fieldValidation: fv,
      fieldManager: url.searchParams.get('fieldManager') ?? agent,
      ...(subresource ? { subresource } : {}),
      warnings: [],
    };
  }

  private async serveResource(req: IncomingMessage, res: ServerResponse, url: URL, rt: ResourceType, rr: ResourceRequest, bodyText: string): Promise<void> {
    const contentType = String(req.headers['content-type'] ?? 'application/json');
    const accept = String(req.headers.accept ?? '');
    const asTable = /as=Table/.test(accept);
    const include = (url.searchParams.get('includeObject') ?? 'Metadata') as IncludeObject;
    const ns = rt.namespaced ? rr.namespace : undefined;
    switch (rr.verb) {
      case 'get': {
        const obj = this.objects.get(rt, ns, rr.name!);
        this.send(res, 200, asTable ? table(rt, [obj], { resourceVersion: obj.metadata.resourceVersion }, include) : obj);
        return;
      }
      case 'list': {
        const { items, rv, continueToken, remaining } = this.list(rt, ns, url);
        const meta = { resourceVersion: rv, ...(continueToken ? { continue: continueToken, remainingItemCount: remaining } : {}) };
        if (asTable) { this.send(res, 200, table(rt, items, meta, include)); return; }
        this.send(res, 200, { kind: rt.listKind, apiVersion: rt.group ? `${rt.group}/${rt.version}` : rt.version, metadata: meta, items });
        return;
      }
      case 'watch':
        this.watch(req, res, url, rt, ns, rr.name, asTable, include);
        return;
      case 'create': {
        if (rr.name) throw methodNotSupported(rt, 'create');
        const opts = this.writeOptions(url, req, undefined);
        const obj = this.objects.create(rt, ns, parseBody(bodyText, contentType), opts);
        this.send(res, 201, obj, opts.warnings);
        return;
      }
      case 'update': {
        const opts = this.writeOptions(url, req, rr.subresource);
        const obj = this.objects.update(rt, ns, rr.name!, parseBody(bodyText, contentType), opts);
        this.send(res, 200, obj, opts.warnings);
        return;
      }
      case 'patch': {
        const opts = this.writeOptions(url, req, rr.subresource);
        const ct = contentType.split(';')[0]!.trim();
        const patch = parseBody(bodyText, ct);
        if (ct === 'application/apply-patch+yaml') {
          const force = url.searchParams.get('force') === 'true';
          const { obj, created } = this.objects.apply(rt, ns, rr.name!, patch, force, opts);
          this.send(res, created ? 201 : 200, obj, opts.warnings);
          return;
        }
        const current = this.objects.get(rt, ns, rr.name!);
        let patched: Json;
        if (ct === 'application/merge-patch+json') patched = mergePatch(current, patch);
        else if (ct === 'application/json-patch+json') patched = jsonPatch(current, patch);
        else if (ct === 'application/strategic-merge-patch+json' && !rt.crd) patched = strategicMergePatch(current, patch);
        else throw unsupportedMediaType(ct, ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml']);
        if (!patched?.metadata?.resourceVersion) patched.metadata = { ...(patched.metadata ?? {}), resourceVersion: current.metadata.resourceVersion };
        const obj = this.objects.update(rt, ns, rr.name!, patched, opts);
        this.send(res, 200, obj, opts.warnings);
        return;
      }
      case 'delete': {
        const body = parseBody(bodyText, contentType) ?? {};
        const policy = body.propagationPolicy ?? url.searchParams.get('propagationPolicy') ?? undefined;
        const dryRun = url.searchParams.getAll('dryRun').includes('All') || (body.dryRun ?? []).includes('All');
        const obj = this.objects.delete(rt, ns, rr.name!, { ...body, propagationPolicy: policy }, dryRun);
        this.send(res, 200, obj);
        return;
      }
      case 'deletecollection': {
        url.searchParams.delete('limit');
        const { items } = this.list(rt, ns, url);
        const body = parseBody(bodyText, contentType) ?? {};
        const dryRun = url.searchParams.getAll('dryRun').includes('All');
        for (const o of items) {
          try { this.objects.delete(rt, o.metadata.namespace, o.metadata.name, body, dryRun); } catch (err) { if (!(err instanceof ApiError && err.code === 404)) throw err; }
        }
        this.send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { group: rt.group, kind: rt.plural } });
        return;
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
  }

  // ---- selectors ----

  private fieldValue(rt: ResourceType, obj: Json, field: string): string | undefined {
    if (field === 'metadata.name') return obj.metadata.name;
    if (field === 'metadata.namespace' && rt.namespaced) return obj.metadata.namespace;
    const allowed = rt.crd ? rt.crd.selectableFields : BUILTIN_FIELDS[`${rt.group}/${rt.plural}`] ?? [];
    if (!allowed.includes(field)) return undefined;
    const v = evalJsonPath(obj, `.${field}`)[0];
    return v === undefined || v === null ? '' : String(v);
  }

  private selectors(rt: ResourceType, url: URL): { labels: Requirement[]; fields: FieldRequirement[] } {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector') ?? '');
    const fieldSel = url.searchParams.get('fieldSelector') ?? '';
    const fields = parseFieldSelector(fieldSel);
    const probe = { metadata: { name: '', namespace: '' } };
    for (const f of fields) {
      const ok = f.field === 'metadata.name' || (f.field === 'metadata.namespace' && rt.namespaced) || this.fieldValue(rt, probe, f.field) !== undefined;
      if (!ok) {
        // kubectl itself prefixes 'Unable to find "<gvr>" that match label selector ...'.
        throw badRequest(`field label not supported: ${f.field}`);
      }
    }
    return { labels, fields };
  }

  private matcher(rt: ResourceType, url: URL, ns: string | undefined, name?: string): (obj: Json) => boolean {
    const { labels, fields } = this.selectors(rt, url);
    return (obj) => {
      if (!obj) return false;
      if (ns !== undefined && obj.metadata.namespace !== ns) return false;
      if (name !== undefined && obj.metadata.name !== name) return false;
      if (!matchLabels(labels, obj.metadata.labels)) return false;
      const values: Record<string, string> = {};
      for (const f of fields) values[f.field] = this.fieldValue(rt, obj, f.field) ?? '';
      return matchFields(fields, values);
    };
  }

  /**
   * Lists (optionally in chunks: limit + continue). Chunks are served from the current state,
   * not from a snapshot at the first chunk's resourceVersion as etcd would.
   */
  private list(rt: ResourceType, ns: string | undefined, url: URL): { items: Json[]; rv: string; continueToken?: string; remaining?: number } {
    const match = this.matcher(rt, url, ns);
    let items = this.store.list(storageKey(rt), ns).map((o) => this.objects.present(rt, o)).filter(match);
    let rv = String(this.store.resourceVersion);
    const cont = url.searchParams.get('continue');
    if (cont) {
      let token: { rv: number; start: string };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8'));
      } catch {
        throw badRequest('continue key is not valid: illegal base64 data at input byte 0');
      }
      if (token.rv < this.store.compactedResourceVersion) {
        throw new ApiError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
      items = items.filter((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}` > token.start);
      rv = String(token.rv);
    }
    const limit = Number(url.searchParams.get('limit') ?? '0');
    if (limit > 0 && items.length > limit) {
      const last = items[limit - 1]!;
      const continueToken = Buffer.from(JSON.stringify({ rv: Number(rv), start: `${last.metadata.namespace ?? ''}/${last.metadata.name}` })).toString('base64url');
      return { items: items.slice(0, limit), rv, continueToken, remaining: items.length - limit };
    }
    return { items, rv };
  }

  // ---- watch ----

  private watch(req: IncomingMessage, res: ServerResponse, url: URL, rt: ResourceType, ns: string | undefined, name: string | undefined, asTable: boolean, include: IncludeObject): void {
    const match = this.matcher(rt, url, ns, name);
    const rvParam = url.searchParams.get('resourceVersion') ?? '';
    const bookmarks = url.searchParams.get('allowWatchBookmarks') === 'true';
    const sendInitial = url.searchParams.get('sendInitialEvents') === 'true';
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    const gvStr = rt.group ? `${rt.group}/${rt.version}` : rt.version;
    let first = true;
    const write = (type: string, obj: Json): void => {
      let object = obj;
      if (type !== 'BOOKMARK' && type !== 'ERROR') {
        object = this.objects.present(rt, obj);
        if (asTable) { object = table(rt, [object], { resourceVersion: object.metadata.resourceVersion }, include, first); first = false; }
      }
      res.write(JSON.stringify({ type, object }) + '\n');
    };
    const onEvent = (ev: StoreEvent): void => {
      const was = ev.old ? match(this.objects.present(rt, ev.old)) : false;
      const is = ev.type !== 'DELETED' && match(this.objects.present(rt, ev.obj));
      if (ev.type === 'DELETED') { if (was) write('DELETED', ev.obj); return; }
      if (ev.type === 'ADDED') { if (is) write('ADDED', ev.obj); return; }
      if (was && is) write('MODIFIED', ev.obj);
      else if (was && !is) write('DELETED', ev.obj);
      else if (!was && is) write('ADDED', ev.obj);
    };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    res.emit('watching');
    let unsubscribe: () => unknown = () => true;
    const timers: NodeJS.Timeout[] = [];
    const end = (): void => {
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.openWatches.delete(end);
      if (!res.writableEnded) res.end();
    };
    this.openWatches.add(end);
    req.on('close', end);
    res.on('close', end);
    const watcher = { key: storageKey(rt), send: onEvent };
    if (rvParam === '' || rvParam === '0' || sendInitial) {
      for (const o of this.store.list(storageKey(rt), ns).filter((x) => match(this.objects.present(rt, x)))) write('ADDED', o);
      if (sendInitial && bookmarks) {
        write('BOOKMARK', { kind: rt.kind, apiVersion: gvStr, metadata: { resourceVersion: String(this.store.resourceVersion), annotations: { 'k8s.io/initial-events-end': 'true' } } });
      }
      unsubscribe = this.store.watch(watcher, this.store.resourceVersion);
    } else {
      const since = Number(rvParam);
      try {
        if (!Number.isInteger(since)) throw new ApiError(400, 'BadRequest', `invalid resource version: ${rvParam}`);
        unsubscribe = this.store.watch(watcher, since);
      } catch (err) {
        if (err instanceof ApiError) { res.write(JSON.stringify({ type: 'ERROR', object: err.status }) + '\n'); end(); return; }
        throw err;
      }
    }
    if (bookmarks) {
      const tick = (): void => {
        if (res.writableEnded) return;
        write('BOOKMARK', { kind: rt.kind, apiVersion: gvStr, metadata: { resourceVersion: String(this.store.resourceVersion) } });
        timers.push(setTimeout(tick, this.opts.bookmarkIntervalMs).unref());
      };
      timers.push(setTimeout(tick, this.opts.bookmarkIntervalMs).unref());
    }
    if (timeoutSeconds > 0) timers.push(setTimeout(end, timeoutSeconds * 1000).unref());
  }
}

// Field selectors the built-in kinds support beyond metadata.name/namespace.
const BUILTIN_FIELDS: Record<string, string[]> = {
  '/events': ['involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid', 'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type'],
  'events.k8s.io/events': ['regarding.kind', 'regarding.namespace', 'regarding.name', 'regarding.uid', 'reason', 'reportingController', 'type'],
  '/pods': ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  '/secrets': ['type'],
  '/namespaces': ['status.phase'],
  '/nodes': ['spec.unschedulable'],
};
