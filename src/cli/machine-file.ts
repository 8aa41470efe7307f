// The directory source's files, for the local verbs (`umlmon pause web` ...): find the document
// of one UmlMachine among the *.yaml files of the machines directory and change it the way a
// person would in an editor: one field, comments and layout kept, written to a temporary file
// and renamed over the original (so the agent never reads half a file). The file stays the
// source of truth: a verb is an edit of it, nothing else, and what a GitOps tool puts in the
// directory wins the next time it syncs.
import { readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parseDocument, type Document } from 'yaml';
import { statusBaseName } from '../agent/sources/directory.ts';
import type { DesiredState, UmlMachineStatus } from '../api/types.ts';

export interface MachineDocument {
  file: string;
  /** Index of the document in its file. */
  index: number;
  namespace: string;
  name: string;
  spec: Record<string, unknown>;
  annotations: Record<string, string>;
}

function isManifestFile(name: string): boolean {
  return !name.startsWith('.') && (name.endsWith('.yaml') || name.endsWith('.yml')) && !name.endsWith('.status.yaml');
}

/** "ns/name" or "name" (namespace default). */
export function splitMachineName(target: string): { namespace: string; name: string } {
  const slash = target.indexOf('/');
  return slash < 0 ? { namespace: 'default', name: target } : { namespace: target.slice(0, slash), name: target.slice(slash + 1) };
}

/** Every UmlMachine document of the directory (unreadable files are skipped: the agent reports them). */
export function listMachineDocuments(dir: string): MachineDocument[] {
  const out: MachineDocument[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).filter(isManifestFile).sort();
  } catch (error) {
    throw new Error(`cannot read the machines directory ${dir}: ${(error as Error).message}`);
  }
  for (const base of names) {
    const file = join(dir, base);
    let docs: Document[];
    try {
      if (!statSync(file).isFile()) continue;
      docs = parseAllDocuments(readFileSync(file, 'utf8')) as Document[];
    } catch {
      continue;
    }
    if (!Array.isArray(docs)) continue;
    docs.forEach((doc, index) => {
      if (doc.errors.length > 0) return;
      const value = doc.toJS() as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown; annotations?: unknown }; spec?: unknown } | null;
      if (value?.kind !== 'UmlMachine' || typeof value.metadata?.name !== 'string') return;
      out.push({
        file, index,
        namespace: typeof value.metadata.namespace === 'string' ? value.metadata.namespace : 'default',
        name: value.metadata.name,
        spec: (value.spec ?? {}) as Record<string, unknown>,
        annotations: (value.metadata.annotations ?? {}) as Record<string, string>,
      });
    });
  }
  return out;
}

export function findMachineDocument(dir: string, target: string): MachineDocument {
  const { namespace, name } = splitMachineName(target);
  const found = listMachineDocuments(dir).filter((d) => d.namespace === namespace && d.name === name);
  if (found.length === 0) throw new Error(`no UmlMachine ${namespace}/${name} in ${dir} (umlmon ls lists them)`);
  if (found.length > 1) throw new Error(`${namespace}/${name} is declared ${found.length} times in ${dir}: ${found.map((d) => d.file).join(', ')}`);
  return found[0]!;
}

/** Pure: the file's text with `path` set to `value` in document `index`, comments kept. */
export function setInDocument(text: string, index: number, path: (string | number)[], value: unknown): string {
  const docs = parseAllDocuments(text) as Document[];
  const doc = docs[index];
  if (!doc) throw new Error(`document ${index} is not in the file`);
  doc.setIn(path, value);
  return docs.map((d) => d.toString({ flowCollectionPadding: false })).join('');
}

/** Edits one field of a machine's document in place (tmp file + rename). */
export function editMachineDocument(doc: MachineDocument, path: (string | number)[], value: unknown): void {
  const text = readFileSync(doc.file, 'utf8');
  const updated = setInDocument(text, doc.index, path, value);
  const tmp = join(doc.file, '..', `.${doc.name}.umlmon-edit-${process.pid}`);
  writeFileSync(tmp, updated, { mode: statSync(doc.file).mode & 0o777 });
  renameSync(tmp, doc.file);
}

export function readStatusFile(dir: string, namespace: string, name: string): UmlMachineStatus | undefined {
  try {
    const doc = parseDocument(readFileSync(join(dir, `${statusBaseName(namespace, name)}.status.yaml`), 'utf8'));
    return (doc.toJS() as { status?: UmlMachineStatus } | null)?.status;
  } catch {
    return undefined;
  }
}

/** The state each verb asks for. */
export const VERB_STATE: Record<'start' | 'stop' | 'pause' | 'resume', DesiredState> = {
  start: 'Running',
  stop: 'Stopped',
  pause: 'Paused',
  resume: 'Running',
};
