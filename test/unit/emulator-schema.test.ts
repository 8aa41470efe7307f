// The emulator's pure pieces: structural-schema processing and its messages, CEL rules,
// patches, selectors, JSONPath, table cells.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDefaults, prune, validate, type Schema } from '../emulator/schema.ts';
import { celValidate } from '../emulator/cel.ts';
import { fieldErrorString, invalid, type FieldError } from '../emulator/status.ts';
import { jsonPatch, mergePatch, serverSideApply, strategicMergePatch } from '../emulator/patch.ts';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from '../emulator/selectors.ts';
import { evalJsonPath } from '../emulator/jsonpath.ts';
import { humanDuration } from '../emulator/table.ts';

const spec: Schema = {
  type: 'object',
  required: ['nodeName'],
  properties: {
    nodeName: { type: 'string', minLength: 1 },
    state: { type: 'string', enum: ['Running', 'Paused', 'Stopped'], default: 'Running' },
    memory: { 'x-kubernetes-int-or-string': true, pattern: '^[0-9]+(Mi|Gi)$' },
    grace: { type: 'integer', minimum: 0, maximum: 3600 },
    name: { type: 'string', maxLength: 5 },
    tags: { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set', maxItems: 3 },
    disks: {
      type: 'array',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      items: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, mode: { type: 'string', default: 'cow' } } },
    },
    extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
  },
};

function errorsOf(value: unknown, schema: Schema = spec, old?: unknown): string[] {
  const errs: FieldError[] = [];
  validate(value, schema, 'spec', errs, old);
  return errs.map(fieldErrorString);
}

test('OpenAPI validation messages read as kube-openapi writes them', () => {
  assert.deepEqual(errorsOf({}), ['spec.nodeName: Required value']);
  assert.deepEqual(errorsOf({ nodeName: 'n', state: 'Sleeping' }), ['spec.state: Unsupported value: "Sleeping": supported values: "Running", "Paused", "Stopped"']);
  assert.deepEqual(errorsOf({ nodeName: 'n', memory: '128MB' }), ['spec.memory: Invalid value: "128MB": spec.memory in body should match \'^[0-9]+(Mi|Gi)$\'']);
  assert.deepEqual(errorsOf({ nodeName: 'n', grace: -1 }), ['spec.grace: Invalid value: -1: spec.grace in body should be greater than or equal to 0']);
  assert.deepEqual(errorsOf({ nodeName: 'n', grace: 'x' }), ['spec.grace: Invalid value: "string": spec.grace in body must be of type integer: "string"']);
  assert.deepEqual(errorsOf({ nodeName: 'n', name: 'toolong' }), ['spec.name: Too long: may not be longer than 5']);
  assert.deepEqual(errorsOf({ nodeName: 'n', tags: ['a', 'a'] }), ['spec.tags[1]: Duplicate value: "a"']);
  assert.deepEqual(errorsOf({ nodeName: 'n', tags: ['a', 'b', 'c', 'd'] }), ['spec.tags: Too many: 4: must have at most 3 items']);
  assert.deepEqual(errorsOf({ nodeName: 'n', disks: [{ name: 'ubd0' }, { name: 'ubd0' }] }), ['spec.disks[1]: Duplicate value: map[string]interface {}{"name":"ubd0"}']);
  assert.deepEqual(errorsOf({ nodeName: '' }), ['spec.nodeName: Invalid value: "": spec.nodeName in body should be at least 1 chars long']);
  // with CEL rules in the schema, type and enum errors keep the rules from running
  const withRules: Schema = { ...spec, 'x-kubernetes-validations': [{ rule: 'self.nodeName != "forbidden"', message: 'not that node' }] };
  assert.deepEqual(errorsOf({ nodeName: 'forbidden', state: 'Sleeping' }, withRules), [
    'spec.state: Unsupported value: "Sleeping": supported values: "Running", "Paused", "Stopped"',
    '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation',
  ]);
  assert.deepEqual(errorsOf({ nodeName: 'forbidden', grace: 99999 }, withRules), [
    'spec.grace: Invalid value: 99999: spec.grace in body should be less than or equal to 3600',
    'spec: Invalid value: "object": not that node',
  ]);
});

test('the 422 Status aggregates messages the way the API server does', () => {
  const rt = { group: 'umlmon.io', kind: 'UmlMachine' };
  const one = invalid(rt, 'm', [{ type: 'Required value', field: 'spec.nodeName' }]);
  assert.equal(one.status.message, 'UmlMachine.umlmon.io "m" is invalid: spec.nodeName: Required value');
  const two = invalid(rt, 'm', [{ type: 'Required value', field: 'spec.a' }, { type: 'Required value', field: 'spec.b' }]);
  assert.equal(two.status.message, 'UmlMachine.umlmon.io "m" is invalid: [spec.a: Required value, spec.b: Required value]');
  assert.equal(two.code, 422);
  assert.deepEqual((two.status.details as any).causes[0], { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.a' });
});

test('pruning drops undeclared fields (reporting their paths) but keeps preserved ones; defaults fill gaps', () => {
  const obj: any = { apiVersion: 'x/v1', kind: 'K', metadata: { name: 'a' }, spec: { nodeName: 'n', bogus: 1, disks: [{ name: 'ubd0', typo: true }], extra: { anything: { goes: 1 } } }, other: 2 };
  const unknown: string[] = [];
  prune(obj, { type: 'object', properties: { spec } }, '', true, unknown);
  assert.deepEqual(unknown.sort(), ['other', 'spec.bogus', 'spec.disks[0].typo']);
  assert.deepEqual(obj.metadata, { name: 'a' });
  assert.deepEqual(obj.spec.extra, { anything: { goes: 1 } });
  applyDefaults(obj.spec, spec);
  assert.equal(obj.spec.state, 'Running');
  assert.equal(obj.spec.disks[0].mode, 'cow');
});

test('CEL rules: message, messageExpression, reason, fieldPath and transition rules', () => {
  const schema: Schema = {
    type: 'object',
    properties: { transport: { type: 'string' }, port: { type: 'integer' }, tap: { type: 'object', properties: { ifname: { type: 'string' } } } },
    'x-kubernetes-validations': [
      { rule: "self.transport != 'tap' || has(self.tap)", message: 'transport tap needs the tap settings block' },
      { rule: 'self.port > 1024', messageExpression: "'port ' + string(self.port) + ' is privileged'", fieldPath: '.port' },
      { rule: 'self.transport == oldSelf.transport', message: 'transport is immutable', reason: 'FieldValueForbidden' },
      { rule: "self.transport != 'slirp'" },
    ],
  };
  assert.deepEqual(celValidate({ transport: 'tap', port: 80 }, undefined, schema, 'spec.interfaces[0]').map(fieldErrorString), [
    'spec.interfaces[0]: Invalid value: "object": transport tap needs the tap settings block',
    'spec.interfaces[0].port: Invalid value: "object": port 80 is privileged',
  ]);
  assert.deepEqual(celValidate({ transport: 'slirp', port: 2000 }, { transport: 'tap', port: 2000 }, schema, 'spec').map(fieldErrorString), [
    'spec: Forbidden: transport is immutable',
    "spec: Invalid value: \"object\": failed rule: self.transport != 'slirp'",
  ]);
  // nested rules only run on values that passed their own schema, and see list items' oldSelf
  const list: Schema = { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: { type: 'string' }, image: { type: 'string' } }, 'x-kubernetes-validations': [{ rule: 'self.image == oldSelf.image', message: 'image is immutable' }] } };
  assert.deepEqual(errorsOf([{ name: 'a', image: 'x' }, { name: 'b', image: 'y' }], list, [{ name: 'b', image: 'z' }]), ['spec[1]: Invalid value: "object": image is immutable']);
});

test('merge patch, JSON patch and strategic merge patch', () => {
  assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] });
  assert.deepEqual(jsonPatch({ metadata: { finalizers: ['x'] }, l: [1, 2] }, [{ op: 'remove', path: '/metadata/finalizers' }, { op: 'add', path: '/l/-', value: 3 }, { op: 'test', path: '/l/0', value: 1 }]), { metadata: {}, l: [1, 2, 3] });
  assert.throws(() => jsonPatch({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }]), /rejected/);
  const ds = { spec: { template: { spec: { containers: [{ name: 'a', image: 'a:1', env: [{ name: 'X', value: '1' }] }, { name: 'b', image: 'b:1' }] } } } };
  const patched = strategicMergePatch(ds, { spec: { template: { spec: { $setElementOrder$containers: [], containers: [{ name: 'a', image: 'a:2', env: [{ name: 'Y', value: '2' }] }, { name: 'b', $patch: 'delete' }] } } } });
  assert.deepEqual(patched.spec.template.spec.containers, [{ name: 'a', image: 'a:2', env: [{ name: 'X', value: '1' }, { name: 'Y', value: '2' }] }]);
  assert.deepEqual(strategicMergePatch({ metadata: { finalizers: ['a'] } }, { metadata: { finalizers: ['b'] } }), { metadata: { finalizers: ['a', 'b'] } });
  // Event series updates from client-go's recorder
  assert.deepEqual(strategicMergePatch({ count: 1, message: 'm' }, { count: 2, lastTimestamp: 't' }), { count: 2, message: 'm', lastTimestamp: 't' });
});

test('server-side apply merges, tracks the manager and removes fields it stopped applying', () => {
  const schema: Schema = { type: 'object', properties: { spec: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' }, disks: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: { type: 'string' }, mode: { type: 'string' } } } } } } } };
  let live = serverSideApply(undefined, { spec: { a: '1', b: '2', disks: [{ name: 'd0' }, { name: 'd1' }] } }, 'me', schema, 'v1', 't0');
  assert.deepEqual(live.metadata.managedFields[0].fieldsV1, { 'f:spec': { 'f:a': {}, 'f:b': {}, 'f:disks': { 'k:{"name":"d0"}': { '.': {}, 'f:name': {} }, 'k:{"name":"d1"}': { '.': {}, 'f:name': {} } } } });
  live.spec.disks[0].mode = 'cow'; // a default the server added
  live = serverSideApply(live, { spec: { a: '1', disks: [{ name: 'd0' }] } }, 'me', schema, 'v1', 't1');
  assert.deepEqual(live.spec, { a: '1', disks: [{ name: 'd0', mode: 'cow' }] });
  live = serverSideApply(live, { spec: { b: 'theirs' } }, 'other', schema, 'v1', 't2');
  live = serverSideApply(live, { spec: { a: '1' } }, 'me', schema, 'v1', 't3');
  assert.deepEqual(live.spec, { a: '1', b: 'theirs' });
  assert.deepEqual(live.metadata.managedFields.map((m: any) => m.manager).sort(), ['me', 'other']);
});

test('label and field selectors', () => {
  const sel = parseLabelSelector('app=web,tier in (a, b),!legacy,env!=prod,track');
  assert.equal(matchLabels(sel, { app: 'web', tier: 'a', env: 'dev', track: '' }), true);
  assert.equal(matchLabels(sel, { app: 'web', tier: 'c', track: '' }), false);
  assert.equal(matchLabels(sel, { app: 'web', tier: 'a', legacy: 'y', track: '' }), false);
  const fs = parseFieldSelector('spec.nodeName=worker-1,metadata.name!=x');
  assert.equal(matchFields(fs, { 'spec.nodeName': 'worker-1', 'metadata.name': 'y' }), true);
  assert.equal(matchFields(fs, { 'spec.nodeName': 'worker-2', 'metadata.name': 'y' }), false);
});

test('JSONPath subset and table cells', () => {
  const obj = { status: { conditions: [{ type: 'Paused', status: 'False' }, { type: 'Ready', status: 'True' }] }, spec: { disks: [{ name: 'ubd0' }] } };
  assert.deepEqual(evalJsonPath(obj, '.status.conditions[?(@.type=="Ready")].status'), ['True']);
  assert.deepEqual(evalJsonPath(obj, '.spec.disks[0].name'), ['ubd0']);
  assert.deepEqual(evalJsonPath(obj, '.status.pid'), []);
  assert.equal(humanDuration(5_000), '5s');
  assert.equal(humanDuration(125_000), '2m5s');
  assert.equal(humanDuration(3 * 3600_000 + 60_000), '3h1m');
  assert.equal(humanDuration(3 * 86400_000), '3d');
});

test('field ownership: updates take the fields they change; apply conflicts name the owner and path', async () => {
  const { recordUpdate, applyConflicts, takeOwnership } = await import('../emulator/patch.ts');
  const schema: Schema = { type: 'object', properties: { spec: { type: 'object', properties: { disks: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: { type: 'string' }, mode: { type: 'string' } } } }, state: { type: 'string' } } } } };
  const v1 = { spec: { state: 'Running', disks: [{ name: 'd0', mode: 'cow' }] } };
  let managed = recordUpdate([], {}, v1, 'creator', schema, 'umlmon.io/v1alpha1', 't0');
  const v2 = { spec: { state: 'Paused', disks: [{ name: 'd0', mode: 'readOnly' }] } };
  managed = recordUpdate(managed, v1, v2, 'editor', schema, 'umlmon.io/v1alpha1', 't1');
  assert.deepEqual(managed.map((m) => m.manager), ['creator', 'editor']);
  assert.deepEqual(managed[1]!.fieldsV1, { 'f:spec': { 'f:state': {}, 'f:disks': { 'k:{"name":"d0"}': { '.': {}, 'f:mode': {} } } } });
  const live = { ...v2, metadata: { managedFields: managed } };
  const { conflicts, paths } = applyConflicts(live, { spec: { state: 'Stopped', disks: [{ name: 'd0', mode: 'readOnly' }] } }, 'me', schema);
  assert.deepEqual(conflicts, [{ manager: 'editor', apiVersion: 'umlmon.io/v1alpha1', path: '.spec.state' }]);
  const after = takeOwnership(managed, paths, 'me');
  assert.deepEqual(after[1]!.fieldsV1, { 'f:spec': { 'f:disks': { 'k:{"name":"d0"}': { '.': {}, 'f:mode': {} } } } });
  assert.equal(applyConflicts(live, { spec: { disks: [{ name: 'd0', mode: 'cow' }] } }, 'me', schema).conflicts[0]!.path, '.spec.disks[name="d0"].mode');
});
