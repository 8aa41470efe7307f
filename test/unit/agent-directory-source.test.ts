import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync, readFileSync, existsSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parse } from 'yaml';
import { pino } from 'pino';
import { createDirectorySource, derivedUid, MANIFEST_LIMITS, mergePatch, parseManifest } from '../../src/agent/sources/directory.ts';
import type { MachineSource } from '../../src/agent/source.ts';

const dirs: string[] = [];
const sources: MachineSource[] = [];
after(async () => {
  for (const s of sources) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'umlmon-dirsrc-'));
  dirs.push(d);
  return d;
}

function memoryLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { out.push(String(chunk)); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function manifest(name: string, extra = '', namespace?: string): string {
  return `apiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata:\n  name: ${name}\n${namespace ? `  namespace: ${namespace}\n` : ''}spec:\n  nodeName: worker-1\n  memory: 64Mi\n${extra}`;
}

/** Resolves with the next key reported that satisfies `pred`. */
function changes(): { next: (pred?: (k: string) => boolean) => Promise<string>; onChange: (k: string) => void; all: string[] } {
  const all: string[] = [];
  let waiters: { pred: (k: string) => boolean; resolve: (k: string) => void }[] = [];
  return {
    all,
    onChange(k) {
      all.push(k);
      const hit = waiters.filter((w) => w.pred(k));
      waiters = waiters.filter((w) => !w.pred(k));
      for (const w of hit) w.resolve(k);
    },
    next(pred = () => true) {
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

test('parseManifest: several documents, wrong kinds and missing names are reported, not fatal', () => {
  const text = `${manifest('a')}---\n${manifest('b', '', 'lab')}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata: {}\nspec: {}\n`;
  const p = parseManifest(text, 'f.yaml');
  assert.equal(p.unreadable, false);
  assert.deepEqual(p.machines.map((m) => m.machine.metadata.name), ['a', 'b']);
  assert.equal(p.problems.length, 2);
  assert.match(p.problems[0] ?? '', /document 3.*ConfigMap/);
  assert.match(p.problems[1] ?? '', /document 4.*metadata\.name is missing/);
  assert.equal(parseManifest('a: [b\n', 'x.yaml').unreadable, true);
});

test('derivedUid is stable, UUID-shaped and differs per namespace/name', () => {
  assert.equal(derivedUid('default', 'a'), derivedUid('default', 'a'));
  assert.notEqual(derivedUid('default', 'a'), derivedUid('other', 'a'));
  assert.match(derivedUid('default', 'a'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('mergePatch follows RFC 7386', () => {
  assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 }, e: [1] }, { b: { c: null, x: 1 }, e: [2], f: 'y' }), { a: 1, b: { d: 3, x: 1 }, e: [2], f: 'y' });
});

test('directory source: list, change, broken file, status file, restart, removal', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'web.yaml'), manifest('web'));
  writeFileSync(join(dir, 'lab.yml'), manifest('db', '', 'lab'));
  writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
  const { logger, lines } = memoryLogger();
  const c = changes();
  const src = createDirectorySource({ dir, nodeName: 'node-a', logger, debounceMs: 20, rescanIntervalMs: 60_000 });
  sources.push(src);
  assert.equal(src.synced(), false);
  await src.start(c.onChange);
  assert.equal(src.synced(), true);
  assert.deepEqual(c.all.sort(), ['default/web', 'lab/db']);
  const web = src.get('default/web');
  assert.ok(web);
  assert.equal(web.metadata.uid, derivedUid('default', 'web'));
  assert.equal(web.metadata.generation, 1);
  assert.equal(web.spec.nodeName, 'node-a', 'every machine in the directory runs on this node');
  assert.ok(lines().some((l) => l.level === 40 && String(l.msg).includes("names node 'worker-1'")));
  assert.equal(src.list().length, 2);

  // Status: written beside the manifest, merge-patch semantics, the user's file untouched.
  await src.patchStatus(web, { phase: 'Running', observedGeneration: 1, pid: 42, conditions: [] });
  await src.patchStatus(web, { pid: 43 });
  const statusFile = parse(readFileSync(join(dir, 'web.status.yaml'), 'utf8')) as { metadata: { uid: string; generation: number }; status: Record<string, unknown> };
  assert.equal(statusFile.status.phase, 'Running');
  assert.equal(statusFile.status.pid, 43);
  assert.equal(statusFile.metadata.uid, web.metadata.uid);
  assert.equal(readFileSync(join(dir, 'web.yaml'), 'utf8'), manifest('web'));
  assert.equal(src.get('default/web')?.status?.pid, 43);
  const db = src.get('lab/db');
  assert.ok(db);
  await src.patchStatus(db, { phase: 'Pending' });
  assert.ok(existsSync(join(dir, 'lab_db.status.yaml')));
  // Status writes are not spec changes.
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(c.all.sort(), ['default/web', 'lab/db']);

  // Events go to the log and the events file.
  src.event(web, 'Warning', 'GuestPanic', 'kernel panic: sysrq triggered crash');
  await new Promise((r) => setTimeout(r, 50));
  assert.match(readFileSync(join(dir, 'web.events.log'), 'utf8'), /Warning GuestPanic kernel panic: sysrq triggered crash/);
  assert.ok(lines().some((l) => (l.event as { reason?: string } | undefined)?.reason === 'GuestPanic' && l.machine === 'default/web'));

  // A spec change bumps the generation and reports the key.
  let next = c.next((k) => k === 'default/web');
  writeFileSync(join(dir, 'web.yaml'), manifest('web', '  state: Paused\n'));
  await next;
  assert.equal(src.get('default/web')?.metadata.generation, 2);
  assert.equal(src.get('default/web')?.spec.state, 'Paused');
  assert.equal(src.get('default/web')?.status?.pid, 43, 'status survives a spec change');

  // A file that stops parsing keeps its machines and says why.
  writeFileSync(join(dir, 'web.yaml'), 'apiVersion: [oops\n');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(src.get('default/web')?.spec.state, 'Paused');
  assert.match(readFileSync(join(dir, 'web.events.log'), 'utf8'), /Warning InvalidManifest/);

  // Restart: uid, generation and status come back from the status file.
  await src.patchStatus(src.get('default/web')!, { observedGeneration: 2 });
  writeFileSync(join(dir, 'web.yaml'), manifest('web', '  state: Paused\n'));
  await src.stop();
  const src2 = createDirectorySource({ dir, nodeName: 'node-a', logger, debounceMs: 20, rescanIntervalMs: 60_000 });
  sources.push(src2);
  const c2 = changes();
  await src2.start(c2.onChange);
  const again = src2.get('default/web');
  assert.equal(again?.metadata.uid, web.metadata.uid);
  assert.equal(again?.metadata.generation, 2);
  assert.equal(again?.status?.observedGeneration, 2);
  assert.equal(again?.status?.pid, 43);

  // Removing the file deletes the machine and its status file.
  next = c2.next((k) => k === 'default/web');
  unlinkSync(join(dir, 'web.yaml'));
  await next;
  assert.equal(src2.get('default/web'), undefined);
  assert.equal(existsSync(join(dir, 'web.status.yaml')), false);
  assert.ok(src2.get('lab/db'));

  // A duplicate definition is ignored with a warning; the first file wins.
  writeFileSync(join(dir, 'z-dup.yaml'), manifest('db', '  state: Stopped\n', 'lab'));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(src2.get('lab/db')?.spec.state, undefined);
  assert.ok(lines().some((l) => String(l.msg).includes('already defined in')));
});

test('a missing directory is created and watched', async () => {
  const dir = join(tempDir(), 'machines');
  const { logger } = memoryLogger();
  const c = changes();
  const src = createDirectorySource({ dir, nodeName: 'n', logger, debounceMs: 20 });
  sources.push(src);
  await src.start(c.onChange);
  assert.deepEqual(src.list(), []);
  const next = c.next();
  writeFileSync(join(dir, 'a.yaml'), manifest('a'));
  assert.equal(await next, 'default/a');
});

/** Nine levels of nine aliases: the yaml library refuses to expand it (a resource exhaustion attack). */
function aliasBomb(): string {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(', ')}]`);
  return `apiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata:\n  name: bomb\nspec:\n  nodeName: worker-1\n  cmdline: *a8\n${lines.map((l) => `x-${l}`).join('\n')}\n`.replace('cmdline: *a8\n', '') + 'y: *a8\n';
}

test('one bad file never blocks the others: bomb, FIFO, directory, symlink loop, too large, too many documents', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'good.yaml'), manifest('good'));
  writeFileSync(join(dir, 'bomb.yaml'), aliasBomb());
  execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
  mkdirSync(join(dir, 'adir.yaml'));
  symlinkSync(join(dir, 'loop-b.yaml'), join(dir, 'loop-a.yaml'));
  symlinkSync(join(dir, 'loop-a.yaml'), join(dir, 'loop-b.yaml'));
  writeFileSync(join(dir, 'huge.yaml'), `# ${'x'.repeat(MANIFEST_LIMITS.bytes)}\n${manifest('huge')}`);
  writeFileSync(join(dir, 'many.yaml'), Array.from({ length: MANIFEST_LIMITS.documents + 1 }, (_, i) => manifest(`m${i}`)).join('---\n'));
  const { logger, lines } = memoryLogger();
  const c = changes();
  const src = createDirectorySource({ dir, nodeName: 'node-a', logger, debounceMs: 20, rescanIntervalMs: 60_000 });
  sources.push(src);
  await src.start(c.onChange);
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['good'], 'the good file is read; nothing of the bad ones');
  const warnings = lines().filter((l) => l.level === 40).map((l) => String(l.msg));
  const about = (name: string) => warnings.find((w) => w.startsWith(join(dir, name)));
  assert.match(about('bomb.yaml') ?? '', /cannot be read as YAML: .*alias/i);
  assert.match(about('pipe.yaml') ?? '', /is a FIFO, not a regular file/);
  assert.match(about('adir.yaml') ?? '', /is a directory, not a regular file/);
  assert.match(about('loop-a.yaml') ?? '', /symbolic link loop/);
  assert.match(about('huge.yaml') ?? '', /larger than 1048576/);
  assert.match(about('many.yaml') ?? '', /101 documents, more than 100/);
  assert.ok(!lines().some((l) => String(l.msg).includes('rescan failed')), 'the scan itself never fails');

  // A file that defined a machine and then turns into a bomb keeps the machine, with the reason.
  writeFileSync(join(dir, 'good.yaml'), aliasBomb().replace('name: bomb', 'name: good'));
  for (let i = 0; i < 100 && !lines().some((l) => String(l.msg).startsWith(`${join(dir, 'good.yaml')}: cannot be read as YAML`)); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(lines().some((l) => String(l.msg).includes('keeping default/good as last read')), 'the change is reported');
  assert.deepEqual(src.list().map((m) => m.metadata.name), ['good'], 'kept as last read');
});

test('parseManifest never throws: a parser failure is the file\'s problem', () => {
  const parsed = parseManifest(aliasBomb(), 'f.yaml');
  assert.equal(parsed.unreadable, true);
  assert.deepEqual(parsed.machines, []);
  assert.match(parsed.problems[0] ?? '', /^f\.yaml: cannot be read as YAML/);
});

test('a status file is written only when its content changes', async () => {
  const { statSync } = await import('node:fs');
  const dir = tempDir();
  writeFileSync(join(dir, 'web.yaml'), manifest('web'));
  const { logger } = memoryLogger();
  const src = createDirectorySource({ dir, nodeName: 'node-a', logger, debounceMs: 20, rescanIntervalMs: 60_000 });
  sources.push(src);
  await src.start(() => {});
  const statusFile = join(dir, 'web.status.yaml');
  await src.patchStatus(src.get('default/web')!, { phase: 'Running', restartCount: 0 });
  const first = statSync(statusFile);
  await src.patchStatus(src.get('default/web')!, { phase: 'Running', restartCount: 0 });
  await src.patchStatus(src.get('default/web')!, { restartCount: 0 });
  assert.equal(statSync(statusFile).ino, first.ino, 'the same content is not written again (a write replaces the file)');
  await src.patchStatus(src.get('default/web')!, { phase: 'Paused' });
  assert.notEqual(statSync(statusFile).ino, first.ino, 'a change is written');
  assert.match(readFileSync(statusFile, 'utf8'), /phase: Paused/);
});

test('a file renamed into place is read at once; a file written in place waits until it is quiet', async () => {
  const { renameSync, truncateSync } = await import('node:fs');
  const dir = tempDir();
  writeFileSync(join(dir, 'web.yaml'), manifest('web'));
  writeFileSync(join(dir, 'db.yaml'), manifest('db'));
  const { logger } = memoryLogger();
  const c = changes();
  // A quiet time far longer than the test: whatever is read, is read without it.
  const src = createDirectorySource({ dir, nodeName: 'node-a', logger, debounceMs: 600_000, rescanIntervalMs: 600_000 });
  sources.push(src);
  await src.start(c.onChange);

  // An atomic save: write a temporary file, rename it over the manifest.
  const seen = c.next((k) => k === 'default/web');
  writeFileSync(join(dir, '.web.yaml.tmp'), manifest('web', '  state: Paused\n'));
  renameSync(join(dir, '.web.yaml.tmp'), join(dir, 'web.yaml'));
  await seen;
  assert.equal(src.get('default/web')?.spec.state, 'Paused');
  assert.equal(src.get('default/web')?.metadata.generation, 2);

  // A new file appears whole, by rename: read at once too.
  const added = c.next((k) => k === 'default/new');
  writeFileSync(join(dir, '.new.tmp'), manifest('new'));
  renameSync(join(dir, '.new.tmp'), join(dir, 'new.yaml'));
  await added;

  // Written in place: truncated (as `>` or an editor's in-place save does) and not yet written
  // again. The empty file is not taken for "no machines": db keeps running as defined.
  const reported = c.all.length;
  truncateSync(join(dir, 'db.yaml'), 0);
  const removed = c.next((k) => k === 'default/gone');
  writeFileSync(join(dir, '.gone.tmp'), manifest('gone'));
  renameSync(join(dir, '.gone.tmp'), join(dir, 'gone.yaml'));
  await removed; // a scan ran after the truncate (triggered by another file's rename)
  assert.equal(src.get('default/db')?.spec.memory, '64Mi', 'the half-written file is not read while it may still be written');
  assert.ok(!c.all.slice(reported).includes('default/db'), 'db was not reported changed or gone');
});
