// The directory source's status files are written by statusYaml (src/agent/sources/status-yaml.ts),
// not the yaml library: what it writes must read back as the same value with any YAML reader.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { statusYaml } from '../../src/agent/sources/status-yaml.ts';

test('a status reads back as written, tricky strings included, and plain where nothing else can be meant', () => {
  const value = {
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachineStatus', metadata: { uid: 'a-b', generation: 1, creationTimestamp: '2026-12-01T10:00:00Z' },
    status: {
      phase: 'Running', pid: 12, paused: false, restartCount: 0, disks: [], nothing: {},
      strings: ['', 'yes', 'No', 'ON', '1.5', '0x10', '1e3', '- x', 'a: b', 'a #c', '#c', ' lead', 'trail ', 'new\nline', 'tab\there', 'quo"te', "it's", 'back\\slash', 'ünï', '~', 'null', 'Null', '2026-12-01', '[x]', '{y}', '*z', '&w', '!v', '%u', '@t', '`s', '|r', '>q', '?p', '\u0000\u001f', 'a/b.c-d_e', '---', '...'],
      conditions: [{ type: 'Ready', status: 'True', message: 'the guest: running' }, { type: 'X', nested: { deep: [1, [2, 3], { a: [] }] } }],
      nested: [[1, 2], [], [{ k: 'v' }], [[]]],
      'odd key': 1, 'true': 'key', '': 'empty key',
    },
  };
  const text = statusYaml(value);
  assert.deepEqual(parse(text), value);
  assert.match(text, /^  phase: Running$/m, 'a plain word stays plain');
  assert.match(text, /^  paused: false$/m);
  assert.match(text, /^  - "yes"$/m, 'a word YAML 1.1 reads as a boolean is quoted');
  assert.match(text, /^    status: "True"$/m);
});

test('random JSON-shaped values read back as written', () => {
  let seed = 42;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const alphabet = ['a', 'Z', '0', '9', ' ', ':', '-', '#', '"', "'", '\\', '\n', '\t', '{', '[', '*', '&', '!', '|', '>', '%', '@', '`', '?', ',', '.', '/', 'é', '€', '\u0001', '\u2028'];
  const string = (): string => Array.from({ length: Math.floor(random() * 8) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
  const value = (depth: number): unknown => {
    const r = random();
    if (depth > 3 || r < 0.35) return string();
    if (r < 0.45) return Math.floor(random() * 1e6) - 5e5;
    if (r < 0.5) return random() < 0.5;
    if (r < 0.55) return null;
    if (r < 0.75) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, () => [string(), value(depth + 1)]));
  };
  for (let i = 0; i < 300; i++) {
    const v = { status: value(0), other: value(1) };
    assert.deepEqual(parse(statusYaml(v)), v, JSON.stringify(v));
  }
});
