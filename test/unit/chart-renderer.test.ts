// hack/helm-render, the stand-in for `helm template`, on a throw-away chart that uses the parts of
// Helm's engine the umlmon chart does not: tpl, fromYaml/toJson, .Files, .Capabilities, .Chart,
// --set list syntax, kind ordering across files, partials, NOTES.txt, and the refusals (lookup,
// bad YAML). Expected outputs are what Helm v3 produces for the same input.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { coalescedValues, parseRendering, renderChart, ChartRenderError } from '../../hack/render-chart.ts';

const root = mkdtempSync(join(tmpdir(), 'umlmon-helm-render-'));
after(() => rmSync(root, { recursive: true, force: true }));

function chart(name: string, files: Record<string, string>): string {
  const dir = join(root, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const demo = chart('demo', {
  'Chart.yaml': 'apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: "4.5"\ndescription: a demo\n',
  'values.yaml': 'greeting: "hello {{ .Release.Name }}"\nlist: [a, b]\nnested:\n  keep: 1\n  drop: 2\nport: 8080\n',
  'files/extra.txt': 'from a file\n',
  'templates/_names.tpl': '{{- define "demo.name" -}}{{ .Chart.Name }}-{{ .Release.Name }}{{- end }}\n',
  'templates/z-config.yaml': [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: {{ include "demo.name" . }}',
    '  namespace: {{ .Release.Namespace }}',
    'data:',
    '  greeting: {{ tpl .Values.greeting . | quote }}',
    '  chart: {{ printf "%s/%s/%s" .Chart.Name .Chart.Version .Chart.AppVersion | quote }}',
    '  file: {{ .Files.Get "files/extra.txt" | trim | quote }}',
    '  kube: {{ .Capabilities.KubeVersion.Version | quote }}',
    '  minor: {{ .Capabilities.KubeVersion.Minor | quote }}',
    '  hasApps: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}',
    '  hasMonitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}',
    '  list: {{ toJson .Values.list | quote }}',
    '  parsed: {{ (fromYaml "a: {b: 3}").a.b | quote }}',
    '  nested: {{ toJson .Values.nested | quote }}',
    '  port: {{ .Values.port | quote }}',
    '  missing: "{{ .Values.nothing }}"',
    '  template: {{ .Template.Name | quote }}',
    '  service: {{ .Release.Service | quote }}',
    '---',
    '# a second document in the same file, a kind Helm installs first',
    'apiVersion: v1',
    'kind: ServiceAccount',
    'metadata:',
    '  name: sa',
    '',
  ].join('\n'),
  'templates/a-custom.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n',
  'templates/empty.yaml': '{{- if false }}\nnever: rendered\n{{- end }}\n',
  'templates/NOTES.txt': 'Thanks for installing {{ .Release.Name }}.\n',
});

test('documents are split, sorted by kind in Helm\'s install order (unknown kinds last), with Source headers', () => {
  const out = renderChart({ chartDir: demo, releaseName: 'r1', namespace: 'ns1' });
  const sources = parseRendering(out).map((r) => `${String(r.object.kind)} ${r.source}`);
  assert.deepEqual(sources, ['ServiceAccount demo/templates/z-config.yaml', 'ConfigMap demo/templates/z-config.yaml', 'Widget demo/templates/a-custom.yaml']);
  assert.ok(out.startsWith('---\n# Source: demo/templates/z-config.yaml\n'));
  assert.doesNotMatch(out, /never: rendered|Thanks for installing/, 'empty files and NOTES.txt are not output');
  assert.match(renderChart({ chartDir: demo, releaseName: 'r1', notes: true }), /\nNOTES:\nThanks for installing r1\.\n/);
});

test('Helm\'s functions and built-in objects: tpl, include, .Files, .Capabilities, .Chart, fromYaml, missing values', () => {
  const out = renderChart({ chartDir: demo, releaseName: 'r1', namespace: 'ns1', kubeVersion: 'v1.29.4', apiVersions: ['monitoring.coreos.com/v1'] });
  for (const line of [
    '  name: demo-r1', '  namespace: ns1', '  greeting: "hello r1"', '  chart: "demo/1.2.3/4.5"', '  file: "from a file"',
    '  kube: "v1.29.4"', '  minor: "29"', '  hasApps: "true"', '  hasMonitoring: "true"', '  list: "[\\"a\\",\\"b\\"]"',
    '  parsed: "3"', '  port: "8080"', '  missing: ""', '  template: "demo/templates/z-config.yaml"', '  service: "Helm"',
  ]) assert.ok(out.includes(`${line}\n`), `missing ${JSON.stringify(line)} in\n${out}`);
  assert.match(renderChart({ chartDir: demo, releaseName: 'r1' }), /hasMonitoring: "false"/);
});

test('values: -f files merge in order, --set types scalars and lists, a null removes a default', () => {
  const a = join(root, 'a.yaml');
  const b = join(root, 'b.yaml');
  writeFileSync(a, 'nested:\n  keep: 10\n  added: x\nport: 1\n');
  writeFileSync(b, 'port: 2\n');
  const v = coalescedValues({ chartDir: demo, valueFiles: [a, b], set: ['nested.drop=null', 'list={x,y,z}', 'flag=true', 'count=007', 'big=12', 'path=a\\.b'], setString: ['str=true'] });
  assert.deepEqual(v.nested, { keep: 10, added: 'x' });
  assert.equal(v.port, 2);
  assert.deepEqual(v.list, ['x', 'y', 'z']);
  assert.equal(v.flag, true);
  assert.equal(v.count, '007', 'leading zeros stay strings, as Helm');
  assert.equal(v.big, 12);
  assert.equal(v.path, 'a.b');
  assert.equal(v.str, 'true');
  assert.equal(coalescedValues({ chartDir: demo, set: ['list[1]=q'] }).list instanceof Array, true);
});

test('refusals worded as Helm words them: lookup, fail, bad YAML, parse errors', () => {
  const bad = (name: string, template: string) => chart(name, {
    'Chart.yaml': `apiVersion: v2\nname: ${name}\nversion: 0.0.1\n`,
    'templates/t.yaml': template,
  });
  assert.throws(() => renderChart({ chartDir: bad('lookup', '{{ lookup "v1" "Secret" "ns" "x" }}\n') }), (e: unknown) =>
    e instanceof ChartRenderError && /execution error at \(lookup\/templates\/t\.yaml:1:3\): lookup is not available/.test(e.message));
  assert.throws(() => renderChart({ chartDir: bad('failing', '{{ fail "no way" }}\n') }), /execution error at \(failing\/templates\/t\.yaml:1:3\): no way$/);
  assert.throws(() => renderChart({ chartDir: bad('yaml', 'a: [unclosed\n') }), /YAML parse error on yaml\/templates\/t\.yaml/);
  assert.throws(() => renderChart({ chartDir: bad('parse', '{{ if }}\n') }), /parse error at \(parse\/templates\/t\.yaml:1\)/);
  assert.throws(() => renderChart({ chartDir: join(root, 'nowhere') }), /is not a chart/);
});
