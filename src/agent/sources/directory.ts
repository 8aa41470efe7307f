// Machines from a directory of UmlMachine YAML files: the embedded default, like kubelet's
// static pods. Every *.yaml / *.yml file (one or more documents each) is read; the directory is
// watched with fs.watch and rescanned slowly as a safety net, since fs.watch can miss events
// (editors that replace files, network filesystems).
//
// How soon a change is read depends on how it was made:
// - a file renamed into place (an atomic save: kubectl-style tools, most editors, `mv`), created
//   or removed is read at once: what the rename shows is the whole new file;
// - a file written in place is read once it has been quiet for `debounceMs` (100 ms): between
//   the truncate and the last write it is a half-written file, which must not be taken for the
//   machine's new definition (an empty file would even delete the machine).
// Scans never overlap: a change during a scan runs one more scan after it (coalesced). A scan
// reads again only the files whose inode, size or times moved (the first scan reads all).
//
// What stands in for the API server's bookkeeping:
// - uid: metadata.uid from the file when given, else derived from namespace/name (a name-based
//   UUID), so it is stable across agent restarts and status-file loss and the runtime finds the
//   same guest again. Re-adding a removed file therefore gives the same uid.
// - generation: kept in the status file with a hash of the spec; it goes up by one whenever the
//   spec differs from the one last seen.
// - status: `<name>.status.yaml` beside the manifests (`<namespace>_<name>.status.yaml` outside
//   the default namespace), written atomically; the user's files are never written.
// - Events: the agent's log, and one line each appended to `<name>.events.log`.
// - finalizers: none; a removed file is a deleted machine.
//
// A file that stops parsing (an editor's half-written save, a typo) is not a deletion: its
// machines keep their last good definition and a Warning Event `InvalidManifest` says why,
// because a guest belongs to its user and must not be stopped by a syntax error. A document
// that parses but is not a usable UmlMachine (no name, wrong kind) is reported and skipped.
//
// One file never blocks the others: whatever goes wrong reading one file (unreadable, a FIFO
// or a directory, a symlink loop, too large, too many documents, an alias bomb, a parser
// exception) is that file's problem, reported as such, and the scan goes on. Limits: a file is
// at most MANIFEST_LIMITS.bytes, holds at most MANIFEST_LIMITS.documents documents, and
// resolves at most MANIFEST_LIMITS.aliases aliases per document.
import { appendFile, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { constants, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { statusYaml } from './status-yaml.ts';
import type { Logger } from 'pino';
import { API_VERSION, KIND, type UmlMachine, type UmlMachineStatus } from '../../api/types.ts';
import { keyOf, type EventType, type MachineKey, type MachineSource } from '../source.ts';
import { DEFAULT_NAMESPACE, namespaceOf } from '../object-key.ts';
import { sha256Hex } from '../../sha256.ts';

export interface DirectorySourceOptions {
  dir: string;
  nodeName: string;
  logger: Logger;
  /** Quiet time after a change before rescanning (default 100 ms). */
  debounceMs?: number;
  /** The safety-net rescan (default 30 s). */
  rescanIntervalMs?: number;
}

const STATUS_SUFFIX = '.status.yaml';
const EVENTS_SUFFIX = '.events.log';

interface Entry {
  machine: UmlMachine;
  file: string;
  /** The whole document as read (JSON), to tell a real change from a rescan. */
  documentJson: string;
  /** Its spec as JSON, and that JSON's SHA-256 (the status file's specHash). */
  specJson: string;
  specHash: string;
}

interface StatusFile {
  metadata?: { uid?: string; generation?: number; specHash?: string; creationTimestamp?: string };
  status?: UmlMachineStatus;
}

/** A name-based UUID (version 5 layout over SHA-256) for machines whose file gives none. */
export function derivedUid(namespace: string, name: string): string {
  const h = sha256Hex(`umlmon.io/directory/${namespace}/${name}`);
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The status file's base name for a machine: `<name>` or `<namespace>_<name>`. */
export function statusBaseName(namespace: string, name: string): string {
  return namespace === 'default' ? name : `${namespace}_${name}`;
}

function isManifestFile(name: string): boolean {
  return !name.startsWith('.') && (name.endsWith('.yaml') || name.endsWith('.yml')) && !name.endsWith(STATUS_SUFFIX);
}

/** RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else if (v !== undefined) out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** What one manifest file holds: the machines it defines, and the problems with the rest. */
export interface ParsedManifest {
  machines: { machine: UmlMachine; documentJson: string }[];
  problems: string[];
  /** True when the file as a whole could not be read as YAML. */
  unreadable: boolean;
}

/** What one manifest file may be, so that no file can stall or exhaust the agent. */
export const MANIFEST_LIMITS = {
  /** Bytes in one file (1 MiB: a UmlMachine is a few hundred bytes). */
  bytes: 1024 * 1024,
  /** Documents (---) in one file. */
  documents: 100,
  /** Aliases resolved in one document (the yaml library's guard against alias bombs). */
  aliases: 100,
} as const;

function unreadableManifest(file: string, reason: string): ParsedManifest {
  return { machines: [], problems: [`${file}: ${reason}`], unreadable: true };
}

/** Pure: the UmlMachines in one file's text. Never throws: a failure is the file's problem. */
export function parseManifest(text: string, file: string): ParsedManifest {
  try {
    return parseManifestText(text, file);
  } catch (error) {
    return unreadableManifest(file, `cannot be read as YAML: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function parseManifestText(text: string, file: string): ParsedManifest {
  const result: ParsedManifest = { machines: [], problems: [], unreadable: false };
  if (Buffer.byteLength(text) > MANIFEST_LIMITS.bytes) return unreadableManifest(file, `is larger than ${MANIFEST_LIMITS.bytes} bytes; not read`);
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  if (list.length > MANIFEST_LIMITS.documents) return unreadableManifest(file, `holds ${list.length} documents, more than ${MANIFEST_LIMITS.documents}; not read`);
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${file} (document ${i + 1})` : file;
    if (doc.errors.length > 0) {
      result.unreadable = true;
      result.problems.push(`${where}: not valid YAML: ${doc.errors[0]?.message.split('\n')[0]}`);
      return;
    }
    let obj: unknown;
    try {
      obj = doc.toJS({ maxAliasCount: MANIFEST_LIMITS.aliases });
    } catch (error) {
      // An alias bomb ("Excessive alias count ..."), or any other failure to build the data.
      result.unreadable = true;
      result.problems.push(`${where}: cannot be read as YAML: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (obj === null || obj === undefined) return;
    if (typeof obj !== 'object' || Array.isArray(obj)) {
      result.problems.push(`${where}: not a UmlMachine (a YAML mapping is expected)`);
      return;
    }
    const o = obj as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown; namespace?: unknown }; spec?: unknown };
    if (o.kind !== KIND || o.apiVersion !== API_VERSION) {
      result.problems.push(`${where}: kind ${String(o.kind)} of ${String(o.apiVersion)} is not ${KIND} of ${API_VERSION}; ignored`);
      return;
    }
    if (typeof o.metadata?.name !== 'string' || o.metadata.name === '') {
      result.problems.push(`${where}: metadata.name is missing`);
      return;
    }
    if (o.metadata.namespace !== undefined && typeof o.metadata.namespace !== 'string') {
      result.problems.push(`${where}: metadata.namespace must be a string`);
      return;
    }
    if (o.spec === null || typeof o.spec !== 'object') o.spec = {};
    result.machines.push({ machine: obj as UmlMachine, documentJson: JSON.stringify(obj) });
  });
  return result;
}

export function createDirectorySource(opts: DirectorySourceOptions): MachineSource {
  const { dir, nodeName } = opts;
  const log = opts.logger.child({ component: 'directory-source', dir });
  const debounceMs = opts.debounceMs ?? 100;
  const rescanIntervalMs = opts.rescanIntervalMs ?? 30_000;

  const entries = new Map<MachineKey, Entry>();
  /** Keys each file defined the last time it parsed. */
  const keysByFile = new Map<string, MachineKey[]>();
  /** Reported problems per file, so a broken file is reported once, not on every rescan. */
  const reportedProblems = new Map<string, string>();
  const warnedNodeName = new Set<MachineKey>();
  const writeChains = new Map<MachineKey, Promise<void>>();
  /** What each status file was last written with. */
  const writtenStatus = new Map<string, string>();
  let resourceVersion = 0;
  let isSynced = false;
  let stopped = false;
  let watcher: FSWatcher | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let scanning: Promise<void> | undefined;
  let rescanAgain = false;
  /** The next scan reads every file, changed or not (start, safety net). */
  let fullAgain = false;
  /** dev:ino:size:mtime:ctime of each file when it was last read. */
  const stamps = new Map<string, string>();
  /** Files written in place since the directory was last quiet for debounceMs: not read yet. */
  const writing = new Set<string>();
  let notify: (key: MachineKey) => void = () => {};

  const statusPath = (m: UmlMachine, suffix = STATUS_SUFFIX): string =>
    join(dir, `${statusBaseName(namespaceOf(m), m.metadata.name)}${suffix}`);

  async function readStatusFile(path: string): Promise<StatusFile | undefined> {
    try {
      const doc = parseAllDocuments(await readFile(path, 'utf8'));
      const first = Array.isArray(doc) ? doc[0] : doc;
      return (first?.toJS() as StatusFile | null) ?? undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ file: path, err: String(err) }, 'status file unreadable; starting from an empty status');
      return undefined;
    }
  }

  /** Fills in what the API server would: uid, generation, resourceVersion, namespace, status. */
  async function admit(raw: UmlMachine, documentJson: string, file: string): Promise<Entry> {
    const namespace = namespaceOf(raw);
    const key = keyOf(raw);
    const specJson = JSON.stringify(raw.spec ?? {});
    const previous = entries.get(key);
    // The hash is what the status file keeps (the generation across agent restarts); it is
    // made only for a spec not seen before (SHA-256 in JavaScript costs under --lite-mode).
    const specHash = previous?.specJson === specJson ? previous.specHash : sha256Hex(specJson);
    let generation: number;
    let status: UmlMachineStatus | undefined;
    let creationTimestamp: string;
    if (previous) {
      generation = (previous.machine.metadata.generation ?? 1) + (previous.specHash === specHash ? 0 : 1);
      status = previous.machine.status;
      creationTimestamp = previous.machine.metadata.creationTimestamp ?? new Date().toISOString();
    } else {
      const saved = await readStatusFile(statusPath(raw));
      const savedGeneration = saved?.metadata?.generation ?? 0;
      generation = saved?.metadata?.specHash === specHash ? Math.max(savedGeneration, 1) : savedGeneration + 1;
      status = saved?.status ?? undefined;
      creationTimestamp = saved?.metadata?.creationTimestamp ?? new Date().toISOString();
    }
    const declaredNode = raw.spec.nodeName;
    if (declaredNode !== nodeName && !warnedNodeName.has(key)) {
      warnedNodeName.add(key);
      log.warn({ machine: key, file, specNodeName: declaredNode ?? null, nodeName },
        `machine ${key} names node '${declaredNode ?? ''}', but every machine in ${dir} runs on this node (${nodeName}); running it here`);
    }
    const machine: UmlMachine = {
      ...raw,
      metadata: {
        ...raw.metadata,
        namespace,
        uid: raw.metadata.uid ?? derivedUid(namespace, raw.metadata.name),
        generation,
        resourceVersion: String(++resourceVersion),
        creationTimestamp,
      },
      spec: { ...raw.spec, nodeName },
    };
    if (status !== undefined) machine.status = status;
    else delete machine.status;
    return { machine, file, documentJson, specJson, specHash };
  }

  async function listManifestFiles(): Promise<string[] | undefined> {
    try {
      return (await readdir(dir)).filter(isManifestFile).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reportOnce(dir, `machines directory ${dir} does not exist; no machines (create it and add UmlMachine YAML files)`);
        return [];
      }
      log.error({ err: String(err) }, `cannot list machines directory ${dir}; keeping the machines already known`);
      return undefined;
    }
  }

  function reportOnce(file: string, message: string): void {
    if (reportedProblems.get(file) === message) return;
    reportedProblems.set(file, message);
    log.warn({ file }, message);
  }

  async function scan(full: boolean): Promise<void> {
    const files = await listManifestFiles();
    if (files === undefined) return;
    const changed = new Set<MachineKey>();
    const seen = new Set<MachineKey>();
    const owners = new Map<MachineKey, string>();

    for (const name of files) {
      const file = join(dir, name);
      try {
        const stamp = stampOf(file);
        const kept = keysByFile.get(file);
        // Being written in place: a half-written file is not the machine's new definition (an
        // empty one would delete it). Kept as last read; the quiet-time scan reads it.
        if (writing.has(name)) {
          for (const key of kept ?? []) {
            seen.add(key);
            if (!owners.has(key)) owners.set(key, file);
          }
          continue;
        }
        // Unchanged since it was read: its machines are as they were (unless another file now
        // claims one of them first, which only a full read sorts out).
        if (!full && stamp !== undefined && stamps.get(file) === stamp && kept !== undefined && kept.every((k) => !owners.has(k))) {
          for (const key of kept) {
            seen.add(key);
            owners.set(key, file);
          }
          continue;
        }
        if (stamp === undefined) stamps.delete(file);
        else stamps.set(file, stamp);
        const read = await readManifestFile(file);
        if (read.kind === 'gone') continue; // removed while scanning
        const parsed = read.kind === 'text' ? parseManifest(read.text, file) : unreadableManifest(file, read.reason);
        if (parsed.unreadable) {
          const kept = keysByFile.get(file) ?? [];
          for (const key of kept) seen.add(key);
          const message = `${parsed.problems.join('; ')}; ${kept.length > 0 ? `keeping ${kept.join(', ')} as last read` : 'no machines from it'}`;
          if (reportedProblems.get(file) !== message) {
            reportOnce(file, message);
            for (const key of kept) {
              const e = entries.get(key);
              if (e) event(e.machine, 'Warning', 'InvalidManifest', `${file} cannot be used; the machine keeps its last good definition: ${parsed.problems[0] ?? ''}`);
            }
          }
          continue;
        }
        if (parsed.problems.length > 0) reportOnce(file, parsed.problems.join('; '));
        else reportedProblems.delete(file);

        const keys: MachineKey[] = [];
        for (const { machine, documentJson } of parsed.machines) {
          const key = keyOf(machine);
          const owner = owners.get(key);
          if (owner !== undefined) {
            reportOnce(`${file}#${key}`, `${file}: machine ${key} is already defined in ${owner}; this definition is ignored`);
            continue;
          }
          owners.set(key, file);
          keys.push(key);
          seen.add(key);
          const previous = entries.get(key);
          if (previous && previous.documentJson === documentJson && previous.file === file) continue;
          const admitted = await admit(machine, documentJson, file);
          entries.set(key, admitted);
          changed.add(key);
          log.debug({ machine: key, file, generation: admitted.machine.metadata.generation }, previous ? 'manifest changed' : 'manifest added');
        }
        keysByFile.set(file, keys);
      } catch (error) {
        // Whatever else goes wrong with one file stays that file's problem.
        for (const key of keysByFile.get(file) ?? []) seen.add(key);
        reportOnce(file, `${file}: ${error instanceof Error ? error.message : String(error)}; keeping its machines as they were`);
      }
    }
    for (const file of [...keysByFile.keys()]) {
      if (!files.includes(file.slice(dir.length + 1))) keysByFile.delete(file);
    }
    for (const file of [...stamps.keys()]) {
      if (!files.includes(file.slice(dir.length + 1))) stamps.delete(file);
    }
    for (const key of [...entries.keys()]) {
      if (seen.has(key)) continue;
      const gone = entries.get(key);
      entries.delete(key);
      warnedNodeName.delete(key);
      changed.add(key);
      log.info({ machine: key }, `machine ${key} removed from ${dir}`);
      // Its status describes a machine that no longer exists; the events log stays as history.
      if (gone) {
        // A status write already under way would put the file back after the rm.
        await writeChains.get(key)?.catch(() => {});
        writtenStatus.delete(statusPath(gone.machine));
        await rm(statusPath(gone.machine), { force: true }).catch(() => {});
      }
    }
    for (const key of changed) notify(key);
  }

  /** Runs one scan at a time; requests during a scan run one more afterwards (coalesced). */
  function rescan(full = true): Promise<void> {
    if (full) fullAgain = true;
    if (scanning) {
      rescanAgain = true;
      return scanning;
    }
    scanning = (async () => {
      try {
        do {
          rescanAgain = false;
          const all = fullAgain;
          fullAgain = false;
          await scan(all);
        } while (rescanAgain && !stopped);
      } catch (err) {
        log.error({ err: String(err) }, 'rescan failed; will try again');
      } finally {
        scanning = undefined;
      }
    })();
    return scanning;
  }

  /** A file written in place: read once it has been quiet for debounceMs. */
  function scheduleRescan(): void {
    if (stopped) return;
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      // No write for debounceMs: whatever was being written in place is whole now.
      writing.clear();
      void rescan(false);
    }, debounceMs);
  }

  function startWatching(): void {
    try {
      watcher = watch(dir, { persistent: false }, (type, filename) => {
        const name = filename?.toString();
        log.trace({ type, file: name }, 'directory event');
        // Our own writes (status, events, temporary files) are not changes to the manifests.
        if (name !== undefined && (name.startsWith('.') || name.endsWith(STATUS_SUFFIX) || name.endsWith(EVENTS_SUFFIX))) return;
        // 'rename': a name appeared or went away (renamed into place, created, removed). The
        // file behind it is whole: read now. 'change': written in place, maybe still being.
        if (type === 'rename' && name !== undefined && isManifestFile(name) && !stopped) {
          writing.delete(name);
          void rescan(false);
        } else {
          if (type === 'change' && name !== undefined) writing.add(name);
          scheduleRescan();
        }
      });
      watcher.on('error', (err) => {
        log.warn({ err: String(err) }, 'watching the machines directory failed; relying on the periodic rescan');
        watcher?.close();
        watcher = undefined;
      });
    } catch (err) {
      log.warn({ err: String(err) }, `cannot watch ${dir}; relying on the periodic rescan every ${rescanIntervalMs} ms`);
    }
  }

  function event(machine: UmlMachine, type: EventType, reason: string, message: string): void {
    const key = keyOf(machine);
    const fields = { machine: key, event: { type, reason } };
    if (type === 'Warning') log.warn(fields, message);
    else log.info(fields, message);
    const line = `${new Date().toISOString()} ${type} ${reason} ${message.replace(/\n/g, ' ')}\n`;
    appendFile(statusPath(machine, EVENTS_SUFFIX), line).catch((err: unknown) => {
      log.debug({ machine: key, err: String(err) }, 'could not append to the events log');
    });
  }

  async function writeStatus(key: MachineKey, status: UmlMachineStatus): Promise<void> {
    const entry = entries.get(key);
    if (!entry) return; // removed meanwhile: nothing to report on
    const merged = mergePatch(entry.machine.status ?? {}, JSON.parse(JSON.stringify(status))) as UmlMachineStatus;
    entry.machine = { ...entry.machine, metadata: { ...entry.machine.metadata, resourceVersion: String(++resourceVersion) }, status: merged };
    const m = entry.machine.metadata;
    const body: StatusFile & { apiVersion: string; kind: string } = {
      apiVersion: API_VERSION,
      kind: 'UmlMachineStatus',
      metadata: { uid: m.uid, generation: m.generation ?? 1, specHash: entry.specHash, creationTimestamp: m.creationTimestamp },
      status: merged,
    } as StatusFile & { apiVersion: string; kind: string };
    const path = statusPath(entry.machine);
    const tmp = join(dir, `.${statusBaseName(m.namespace ?? DEFAULT_NAMESPACE, m.name)}.status.tmp-${process.pid}`);
    const text = `# Written by umlmon for ${key} (manifest ${entry.file}); edits here are overwritten.\n${statusYaml(body as unknown as Record<string, unknown>)}`;
    // A file whose content would not change is not written again (no needless disk writes, no
    // inotify wakeups for whoever watches the directory).
    if (writtenStatus.get(path) === text) return;
    try {
      await writeFile(tmp, text, { mode: 0o644 });
      await rename(tmp, path);
      writtenStatus.set(path, text);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new Error(`machine ${key}: cannot write status file ${path}: ${String(err)}`);
    }
  }

  return {
    kind: 'directory',

    async start(onChange) {
      notify = onChange;
      await mkdir(dir, { recursive: true }).catch(() => {});
      startWatching();
      await rescan();
      isSynced = true;
      const tick = (): void => {
        if (stopped) return;
        // Files whose stamp moved are read again: what fs.watch missed is found all the same,
        // and a hundred unchanged manifests cost a hundred stats, not a hundred reads.
        rescanTimer = setTimeout(() => { void rescan(false).finally(tick); }, rescanIntervalMs);
        rescanTimer.unref();
      };
      tick();
      log.info({ machines: entries.size }, `watching ${dir} for UmlMachine manifests`);
    },

    synced: () => isSynced,

    get: (key) => entries.get(key)?.machine,

    list: () => [...entries.values()].map((e) => e.machine),

    patchStatus(machine, status) {
      const key = keyOf(machine);
      const previous = writeChains.get(key) ?? Promise.resolve();
      const next = previous.catch(() => {}).then(() => writeStatus(key, status));
      writeChains.set(key, next);
      void next.finally(() => { if (writeChains.get(key) === next) writeChains.delete(key); }).catch(() => {});
      return next;
    },

    async ensureFinalizer() {
      // Files have no finalizers: removing the file is the deletion, and the agent cleans up
      // when it sees the machine gone.
    },

    event,

    async stop() {
      stopped = true;
      clearTimeout(debounceTimer);
      clearTimeout(rescanTimer);
      watcher?.close();
      watcher = undefined;
      await scanning;
      await Promise.allSettled([...writeChains.values()]);
    },
  };
}

/**
 * What tells a changed file from an unchanged one without reading it; undefined when it cannot
 * be stat'ed. Synchronous: a stat of a local file takes microseconds, and a hundred of them
 * through the thread pool woke the agent's threads a thousand times per scan.
 */
function stampOf(file: string): string | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** Exposed for `umlmon check`: the machines and problems of every manifest in a directory. */
export async function readManifestDirectory(dir: string): Promise<{ file: string; parsed: ParsedManifest }[]> {
  const names = (await readdir(dir)).filter(isManifestFile).sort();
  const out: { file: string; parsed: ParsedManifest }[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const read = await readManifestFile(file);
    if (read.kind === 'gone') continue;
    out.push({ file, parsed: read.kind === 'text' ? parseManifest(read.text, file) : unreadableManifest(file, read.reason) });
  }
  return out;
}

export type ManifestRead = { kind: 'text'; text: string } | { kind: 'gone' } | { kind: 'unreadable'; reason: string };

/**
 * One manifest file's text, or why it has none. Opened without blocking and checked on the
 * open descriptor (a FIFO would block a plain read forever; a file swapped between a stat and
 * the open is still caught), read up to the size limit. Never throws.
 */
export async function readManifestFile(file: string): Promise<ManifestRead> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'gone' };
    if (code === 'ELOOP') return { kind: 'unreadable', reason: 'is a symbolic link loop; not read' };
    if (code === 'EACCES' || code === 'EPERM') return { kind: 'unreadable', reason: 'cannot be read (permission denied)' };
    return { kind: 'unreadable', reason: `cannot be opened: ${(error as Error).message}` };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      const what = st.isFIFO() ? 'a FIFO' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'a device';
      return { kind: 'unreadable', reason: `is ${what}, not a regular file; not read` };
    }
    if (st.size > MANIFEST_LIMITS.bytes) return { kind: 'unreadable', reason: `is ${st.size} bytes, larger than ${MANIFEST_LIMITS.bytes}; not read` };
    const buffer = Buffer.alloc(MANIFEST_LIMITS.bytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MANIFEST_LIMITS.bytes) return { kind: 'unreadable', reason: `grew past ${MANIFEST_LIMITS.bytes} bytes while being read; not read` };
    }
    return { kind: 'text', text: buffer.subarray(0, length).toString('utf8') };
  } catch (error) {
    return { kind: 'unreadable', reason: `cannot be read: ${(error as Error).message}` };
  } finally {
    await handle.close().catch(() => undefined);
  }
}
