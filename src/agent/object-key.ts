// How a machine is named across the agent: its object key "<namespace>/<name>" (client-go's
// MetaNamespaceKeyFunc), its namespace with the API's default, and the runtime labels that carry
// the key on a running kernel (so that the agent finds a guest's object again after a restart).
// Every part of the agent spells these through here, and nowhere else.

/** "<namespace>/<name>", as client-go's MetaNamespaceKeyFunc makes it. */
export type MachineKey = string;

/** The namespace of an object that names none (a manifest file may leave it out). */
export const DEFAULT_NAMESPACE = 'default';

type Named = { metadata: { namespace?: string; name: string } };

export function namespaceOf(object: { metadata: { namespace?: string } }): string {
  return object.metadata.namespace ?? DEFAULT_NAMESPACE;
}

export function keyOf(object: Named): MachineKey {
  return `${namespaceOf(object)}/${object.metadata.name}`;
}

/** The runtime labels that carry a machine's key on its kernel. */
export const LABEL_NAMESPACE = 'umlmon.io/namespace';
export const LABEL_NAME = 'umlmon.io/name';

export function keyLabels(object: Named): Record<string, string> {
  return { [LABEL_NAMESPACE]: namespaceOf(object), [LABEL_NAME]: object.metadata.name };
}

/** The labels a key's kernels carry (the key's namespace and name, split at its one slash). */
export function labelsOfKey(key: MachineKey): Record<string, string> {
  const slash = key.indexOf('/');
  return { [LABEL_NAMESPACE]: key.slice(0, slash), [LABEL_NAME]: key.slice(slash + 1) };
}

/** The key a running kernel's labels carry, if they carry one. */
export function keyFromLabels(labels: Record<string, string> | undefined): MachineKey | undefined {
  const namespace = labels?.[LABEL_NAMESPACE];
  const name = labels?.[LABEL_NAME];
  if (!namespace || !name) return undefined;
  return `${namespace}/${name}`;
}
