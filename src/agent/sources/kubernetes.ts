// Machines from the Kubernetes API: a list+watch of umlmachines across namespaces, filtered
// server-side to this node with `fieldSelector=spec.nodeName=<node>` (the CRD declares it a
// selectable field). This module runs its own reflector loop over the agent's small API client
// (kube-client.ts):
//   list (paginated) → watch from the list's resourceVersion with bookmarks → on a clean end or
//   a client-side timeout, watch again from the last resourceVersion → on 410 Gone, relist →
//   on any other error, back off (0.5 s doubling to 30 s) and try again, forever.
// API servers older than 1.31 refuse field selectors on custom resource fields (400 "field
// label not supported"); then the source watches every machine and keeps only this node's,
// and says so once in the log.
import type { Logger } from 'pino';
import { FINALIZER, GROUP, PLURAL, VERSION, type UmlMachine, type UmlMachineStatus } from '../../api/types.ts';
import { keyOf, ObjectGoneError, type EventType, type MachineKey, type MachineSource } from '../source.ts';
import { createEventRecorder, type EventRecorder } from '../events.ts';
import { ApiError, loadKubeClient, type KubeClient, type Resource } from '../kube-client.ts';
import { namespaceOf } from '../object-key.ts';

/** What the agent reads and writes (chart-rbac.test.ts checks the ClusterRole grants each call). */
const MACHINES: Resource = { group: GROUP, version: VERSION, resource: PLURAL };
const MACHINE_STATUS: Resource = { ...MACHINES, subresource: 'status' };

export interface KubernetesSourceOptions {
  nodeName: string;
  logger: Logger;
  /** A kubeconfig file; undefined means in-cluster credentials. */
  kubeconfigPath?: string;
  /** Or a ready client (tests). */
  client?: KubeClient;
  /** Events recorder; by default one is made on the same credentials. */
  events?: EventRecorder;
  /** Server-side watch timeout; each watch asks for this plus up to 50 % jitter (default 300 s). */
  watchTimeoutSeconds?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Page size of the list call (default 500). */
  pageSize?: number;
}

/** The error an API server < 1.31 answers a field selector on a custom field with. */
export function isFieldSelectorRefusal(err: unknown): boolean {
  const code = apiStatusCode(err);
  if (code !== 400) return false;
  const message = apiErrorMessage(err);
  return /field label not supported|not a known field selector|field selector/i.test(message);
}

export function apiStatusCode(err: unknown): number | undefined {
  if (err instanceof ApiError) return err.code;
  const e = err as { statusCode?: unknown; code?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

/** The API server's own words (metav1.Status message) when there are any. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    let body: unknown;
    try { body = JSON.parse(err.body); } catch { return err.body || `HTTP ${err.code}`; }
    const message = (body as { message?: unknown } | undefined)?.message;
    return typeof message === 'string' ? message : `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

type WatchEnd = { kind: 'closed' } | { kind: 'gone' } | { kind: 'error'; err: unknown };

export function createKubernetesSource(opts: KubernetesSourceOptions): MachineSource & { filteringLocally(): boolean } {
  const { nodeName } = opts;
  const log = opts.logger.child({ component: 'kubernetes-source' });
  const api = opts.client ?? loadKubeClient(opts.kubeconfigPath);
  const events = opts.events ?? createEventRecorder({ client: api, nodeName, logger: opts.logger });
  const ownsEvents = opts.events === undefined;
  const backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
  const watchTimeout = opts.watchTimeoutSeconds ?? 300;
  const pageSize = opts.pageSize ?? 500;
  const fieldSelector = `spec.nodeName=${nodeName}`;

  const cache = new Map<MachineKey, UmlMachine>();
  let serverSideFilter = true;
  let isSynced = false;
  let resourceVersion = '';
  const stopping = new AbortController();
  let currentWatch: AbortController | undefined;
  let loop: Promise<void> | undefined;
  let notify: (key: MachineKey) => void = () => {};

  const mine = (m: UmlMachine): boolean => m.spec?.nodeName === nodeName;

  /** Stores an object seen on the watch or in a list; reports the key when something changed. */
  function upsert(obj: UmlMachine): void {
    const key = keyOf(obj);
    const cached = cache.get(key);
    if (!mine(obj)) {
      // Only reachable when filtering locally, or when a machine was moved to another node.
      if (cached) { cache.delete(key); notify(key); }
      return;
    }
    if (cached?.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    cache.set(key, obj);
    notify(key);
  }

  function remove(obj: UmlMachine): void {
    const key = keyOf(obj);
    if (cache.delete(key)) notify(key);
  }

  async function list(): Promise<void> {
    const items: UmlMachine[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = (await api.call('list', MACHINES, {
        query: { ...(serverSideFilter ? { fieldSelector } : {}), limit: pageSize, ...(cont ? { continue: cont } : {}) },
      })) as { items?: UmlMachine[]; metadata?: { resourceVersion?: string; continue?: string } };
      items.push(...(page.items ?? []));
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? '';
    } while (cont);
    const listed = new Set<MachineKey>();
    for (const item of items) {
      // List items carry no apiVersion/kind; the watch's objects do. Keep the shape uniform.
      const obj = { ...item, apiVersion: `${GROUP}/${VERSION}`, kind: 'UmlMachine' } as UmlMachine;
      if (!mine(obj)) continue;
      listed.add(keyOf(obj));
      upsert(obj);
    }
    for (const key of [...cache.keys()]) {
      if (!listed.has(key)) { cache.delete(key); notify(key); }
    }
    resourceVersion = rv;
  }

  function watchOnce(): Promise<WatchEnd> {
    return new Promise((resolve) => {
      let end: WatchEnd | undefined;
      const timeoutSeconds = Math.round(watchTimeout * (1 + Math.random() * 0.5));
      const query = {
        allowWatchBookmarks: true,
        resourceVersion,
        timeoutSeconds,
        ...(serverSideFilter ? { fieldSelector } : {}),
      };
      api.watch(MACHINES, query, (type: string, obj: unknown) => {
        if (stopping.signal.aborted) return;
        const o = obj as UmlMachine & { code?: number; message?: string };
        switch (type) {
          case 'ADDED':
          case 'MODIFIED':
            upsert(o);
            break;
          case 'DELETED':
            remove(o);
            break;
          case 'BOOKMARK':
            break;
          case 'ERROR':
            if (o.code === 410) end = { kind: 'gone' };
            else end = { kind: 'error', err: Object.assign(new Error(`watch error: ${o.message ?? 'unknown'}`), { statusCode: o.code }) };
            currentWatch?.abort();
            return;
          default:
            return;
        }
        if (o.metadata?.resourceVersion) resourceVersion = o.metadata.resourceVersion;
      }, (err: unknown) => {
        currentWatch = undefined;
        if (end) return resolve(end);
        if (!err || stopping.signal.aborted) return resolve({ kind: 'closed' });
        const name = (err as { name?: string }).name;
        // Watch's own inactivity timeout: quiet is normal, watch again from where we were.
        if (name === 'TimeoutError') return resolve({ kind: 'closed' });
        if (apiStatusCode(err) === 410) return resolve({ kind: 'gone' });
        resolve({ kind: 'error', err });
      }).then((controller) => {
        if (stopping.signal.aborted) controller.abort();
        else currentWatch = controller;
      }, (err: unknown) => resolve({ kind: 'error', err }));
    });
  }

  async function run(firstSync: { resolve: () => void }): Promise<void> {
    let delay = backoff.initialMs;
    let needList = true;
    let failures = 0;
    while (!stopping.signal.aborted) {
      try {
        if (needList) {
          await list();
          needList = false;
          if (!isSynced) {
            isSynced = true;
            log.info({ machines: cache.size, resourceVersion, filter: serverSideFilter ? 'server' : 'local' }, 'machine cache synced');
            firstSync.resolve();
          }
        }
        const end = await watchOnce();
        if (end.kind === 'gone') {
          log.info({ resourceVersion }, 'watch expired (410 Gone); relisting');
          // The cache stays as it was (no object is mistaken for deleted) but is not complete.
          isSynced = false;
          needList = true;
          resourceVersion = '';
          continue;
        }
        if (end.kind === 'error') throw end.err;
        delay = backoff.initialMs;
        failures = 0;
      } catch (err) {
        if (stopping.signal.aborted) break;
        if (serverSideFilter && isFieldSelectorRefusal(err)) {
          serverSideFilter = false;
          needList = true;
          log.warn({ fieldSelector, reason: apiErrorMessage(err) },
            'the API server refuses to filter umlmachines by spec.nodeName (servers before Kubernetes 1.31 do); watching every machine and keeping this node\'s');
          continue;
        }
        if (apiStatusCode(err) === 410) { needList = true; isSynced = false; resourceVersion = ''; continue; }
        failures++;
        const level = failures === 1 || failures % 10 === 0 ? 'warn' : 'debug';
        const status = apiStatusCode(err);
        const hint = status === 404 ? ' (is the UmlMachine CRD installed? kubectl apply -f crds/)'
          : status === 401 || status === 403 ? ' (check the agent\'s credentials and RBAC: list and watch on umlmachines.umlmon.io)' : '';
        log[level]({ err: apiErrorMessage(err), status, retryInMs: delay, failures },
          `${needList ? 'listing' : 'watching'} umlmachines failed${hint}; retrying`);
        await sleep(delay, stopping.signal);
        delay = Math.min(delay * 2, backoff.maxMs);
        // After an error the resourceVersion may be too old; a watch from it answers 410 and
        // leads to a relist, so there is no need to relist eagerly here.
      }
    }
  }

  /**
   * The answer to a write replaces the cached object only while the cache still holds the
   * version the write started from. The answer and the watch come over different connections:
   * when the watch brought a newer version first (someone edited the spec meanwhile), the
   * answer is older and must not take its place; the watch delivers the answer's version too.
   */
  function keepIfNewer(key: MachineKey, base: UmlMachine, updated: UmlMachine | undefined): void {
    if (!updated?.metadata || !mine(updated)) return;
    if (cache.get(key)?.metadata.resourceVersion === base.metadata.resourceVersion) cache.set(key, updated);
  }

  async function getFresh(m: UmlMachine): Promise<UmlMachine | undefined> {
    try {
      return await api.call<UmlMachine>('get', MACHINES, { namespace: namespaceOf(m), name: m.metadata.name });
    } catch (err) {
      if (apiStatusCode(err) === 404) return undefined;
      throw err;
    }
  }

  return {
    kind: 'kubernetes',

    filteringLocally: () => !serverSideFilter,

    start(onChange) {
      notify = onChange;
      return new Promise<void>((resolve, reject) => {
        const firstSync = { resolve };
        loop = run(firstSync).catch((err: unknown) => {
          log.error({ err: String(err) }, 'the machine watch loop ended unexpectedly');
          reject(err as Error);
        });
        stopping.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },

    synced: () => isSynced,

    get: (key) => cache.get(key),

    list: () => [...cache.values()],

    async patchStatus(machine, status: UmlMachineStatus) {
      const key = keyOf(machine);
      try {
        const updated = await api.call<UmlMachine>('patch', MACHINE_STATUS, {
          namespace: namespaceOf(machine), name: machine.metadata.name, body: { status },
        });
        // Keep the cache as fresh as the server: the watch delivers the same version later and
        // is then recognised as nothing new.
        keepIfNewer(key, machine, updated);
      } catch (err) {
        if (apiStatusCode(err) === 404) throw new ObjectGoneError(`machine ${key} is gone (HTTP 404); its status is not written`, { cause: err });
        throw new Error(`machine ${key}: writing status failed: ${apiErrorMessage(err)} (HTTP ${apiStatusCode(err) ?? '?'})`, { cause: err });
      }
    },

    async ensureFinalizer(machine, present) {
      const key = keyOf(machine);
      // Update with the object's resourceVersion, retried on conflict: never overwrites a
      // finalizer another controller added or removed meanwhile.
      let current: UmlMachine | undefined = cache.get(key) ?? machine;
      for (let attempt = 0; attempt < 8 && current; attempt++) {
        const finalizers = current.metadata.finalizers ?? [];
        const has = finalizers.includes(FINALIZER);
        if (has === present) return;
        if (present && current.metadata.deletionTimestamp) return; // cannot add to a dying object
        const body = {
          ...current,
          metadata: { ...current.metadata, finalizers: present ? [...finalizers, FINALIZER] : finalizers.filter((f) => f !== FINALIZER) },
        };
        delete (body as { status?: unknown }).status;
        try {
          const updated = await api.call<UmlMachine>('update', MACHINES, {
            namespace: namespaceOf(current), name: current.metadata.name, body,
          });
          keepIfNewer(key, current, updated);
          return;
        } catch (err) {
          const code = apiStatusCode(err);
          if (code === 404) return;
          if (code !== 409) throw new Error(`machine ${key}: ${present ? 'adding' : 'removing'} finalizer ${FINALIZER} failed: ${apiErrorMessage(err)}`, { cause: err });
          current = await getFresh(current);
        }
      }
      if (current) throw new Error(`machine ${key}: finalizer update kept conflicting with other writers; will retry`);
    },

    event(machine: UmlMachine, type: EventType, reason: string, message: string) {
      events.record(machine, type, reason, message);
    },

    async stop() {
      stopping.abort();
      currentWatch?.abort();
      await loop;
      if (ownsEvents) await events.stop();
      if (opts.client === undefined) api.close();
    },
  };
}
