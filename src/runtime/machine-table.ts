// The runtime's machines by id, indexed by their labels too, so that "the machines of this
// object" (the agent's labels carry its key) is a lookup, not a scan of the node: at a hundred
// guests, each reconcile pass asking for its own machine would otherwise build a hundred
// snapshots. A machine's labels are part of the config it was started with, fixed for its run.

/** A label selector: every pair must match (as Kubernetes' equality-based selectors). */
export type LabelSelector = Record<string, string>;

export class MachineTable<M extends { record: { id: string; config: { labels?: Record<string, string> } } }> {
  readonly #byId = new Map<string, M>();
  readonly #byLabel = new Map<string, Set<string>>();

  get(id: string): M | undefined {
    return this.#byId.get(id);
  }

  values(): IterableIterator<M> {
    return this.#byId.values();
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Adds or replaces the machine with this id. */
  set(m: M): void {
    const id = m.record.id;
    if (this.#byId.has(id)) this.delete(id);
    this.#byId.set(id, m);
    for (const pair of labelPairs(m.record.config.labels)) {
      let ids = this.#byLabel.get(pair);
      if (!ids) this.#byLabel.set(pair, (ids = new Set()));
      ids.add(id);
    }
  }

  delete(id: string): void {
    const m = this.#byId.get(id);
    if (!m) return;
    this.#byId.delete(id);
    for (const pair of labelPairs(m.record.config.labels)) {
      const ids = this.#byLabel.get(pair);
      ids?.delete(id);
      if (ids?.size === 0) this.#byLabel.delete(pair);
    }
  }

  /** The machines whose labels include every pair of the selector (none for an empty one). */
  select(selector: LabelSelector): M[] {
    const pairs = labelPairs(selector);
    if (pairs.length === 0) return [];
    let smallest: Set<string> | undefined;
    for (const pair of pairs) {
      const ids = this.#byLabel.get(pair);
      if (!ids) return [];
      if (!smallest || ids.size < smallest.size) smallest = ids;
    }
    return [...smallest!].map((id) => this.#byId.get(id)!).filter((m) => pairs.every((p) => this.#byLabel.get(p)!.has(m.record.id)));
  }
}

function labelPairs(labels: Record<string, string> | undefined): string[] {
  // NUL cannot appear in a label's key or value (Kubernetes' syntax, and the runtime's).
  return labels ? Object.entries(labels).map(([k, v]) => `${k}\0${v}`) : [];
}
