// Object storage with one global resourceVersion counter (like etcd's revision) and a bounded
// event history that watches resume from; older versions are "compacted" (410 Gone).
import { gone } from './status.ts';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  /** storageKey() of the resource type */
  key: string;
  rv: number;
  obj: any;
  /** the object before the change (for selector transitions) */
  old?: any;
}

export interface Watcher {
  key: string;
  send(ev: StoreEvent): void;
}

function objKey(obj: any): string {
  return `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}

export class Store {
  private revision = 1;
  private readonly objects = new Map<string, Map<string, any>>();
  private history: StoreEvent[] = [];
  private compactedRv = 0;
  private readonly historyLimit: number;
  readonly watchers = new Set<Watcher>();

  constructor(historyLimit: number) {
    this.historyLimit = historyLimit;
  }

  get resourceVersion(): number {
    return this.revision;
  }

  /** Versions at or below this one are compacted away (watches from them get 410 Gone). */
  get compactedResourceVersion(): number {
    return this.compactedRv;
  }

  private bucket(key: string): Map<string, any> {
    let b = this.objects.get(key);
    if (!b) this.objects.set(key, (b = new Map()));
    return b;
  }

  get(key: string, namespace: string | undefined, name: string): any | undefined {
    const o = this.bucket(key).get(`${namespace ?? ''}/${name}`);
    return o === undefined ? undefined : structuredClone(o);
  }

  list(key: string, namespace?: string): any[] {
    const out: any[] = [];
    for (const o of this.bucket(key).values()) {
      if (namespace === undefined || o.metadata.namespace === namespace) out.push(structuredClone(o));
    }
    return out.sort((a, b) => objKey(a).localeCompare(objKey(b)));
  }

  /** Every stored object of every type (namespace deletion, garbage collection). */
  all(): { key: string; obj: any }[] {
    const out: { key: string; obj: any }[] = [];
    for (const [key, b] of this.objects) for (const o of b.values()) out.push({ key, obj: structuredClone(o) });
    return out;
  }

  /** Writes obj (create when absent), assigning the next resourceVersion. */
  put(key: string, obj: any): any {
    const b = this.bucket(key);
    const k = objKey(obj);
    const old = b.get(k);
    this.revision++;
    const stored = structuredClone(obj);
    stored.metadata.resourceVersion = String(this.revision);
    b.set(k, stored);
    this.emit({ type: old ? 'MODIFIED' : 'ADDED', key, rv: this.revision, obj: stored, old });
    return structuredClone(stored);
  }

  /** Deletes obj; the DELETED event carries `finalState` when given (else the stored object). */
  remove(key: string, obj: any, finalState?: any): any {
    const b = this.bucket(key);
    const k = objKey(obj);
    const old = b.get(k);
    if (!old) return undefined;
    b.delete(k);
    this.revision++;
    const gone = structuredClone(finalState ?? old);
    gone.metadata.resourceVersion = String(this.revision);
    this.emit({ type: 'DELETED', key, rv: this.revision, obj: gone, old });
    return structuredClone(gone);
  }

  private emit(ev: StoreEvent): void {
    this.history.push(ev);
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
    for (const w of this.watchers) if (w.key === ev.key) w.send(ev);
  }

  /**
   * Registers a watcher after replaying the events newer than `since`. Throws 410 Gone when
   * events after `since` were compacted away, as etcd-backed API servers do.
   */
  watch(w: Watcher, since: number): () => unknown {
    if (since < this.compactedRv) throw gone(`too old resource version: ${since} (${this.compactedRv + 1})`);
    for (const ev of this.history) if (ev.key === w.key && ev.rv > since) w.send(ev);
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }
}
