// Renders charts/umlmon the way `helm template` does, for tests and for regenerating manifests/.
// Helm cannot be installed on these machines, so this wraps hack/helm-render (Go text/template +
// sprig + Helm's own functions, built from Debian's Go packages and cached under .cache/) and
// adds what Helm does in Go that Debian has no library for: values.schema.json validation of the
// coalesced values, with ajv, at the same point Helm validates them (before rendering).
//
//   node hack/render-chart.ts [helm template flags] [RELEASE CHART]   print the rendering
//   node hack/render-chart.ts --write-manifests                        copy crds/ into the chart,
//                                                                       regenerate manifests/
//
// Defaults: release "umlmon", chart charts/umlmon, namespace "default" (as Helm).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { parseAllDocuments } from 'yaml';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CHART_DIR = join(REPO_ROOT, 'charts/umlmon');
export const MANIFESTS_DIR = join(REPO_ROOT, 'manifests');
export const DEFAULT_RELEASE = 'umlmon';
export const DEFAULT_NAMESPACE = 'umlmon-system';
const RENDERER_SOURCES = ['hack/helm-render/main.go', 'hack/helm-render/build.sh'];

export interface RenderOptions {
  chartDir?: string;
  releaseName?: string;
  /** Release namespace; Helm's default is "default". */
  namespace?: string;
  valueFiles?: string[];
  /** --set expressions (Helm's strvals syntax). */
  set?: string[];
  setString?: string[];
  /** helm template --include-crds: the chart's crds/ first. */
  includeCrds?: boolean;
  kubeVersion?: string;
  apiVersions?: string[];
  /** Append the rendered NOTES.txt after "NOTES:" (helm install --dry-run shows it). */
  notes?: boolean;
}

/** A rendering error worded as Helm words it (tests match on these). */
export class ChartRenderError extends Error {
  override name = 'ChartRenderError';
}

/**
 * Builds hack/helm-render once per source version into .cache/helm-render/<hash>/ and returns the
 * binary's path. Throws with the fix when Go or the Debian Go packages are missing.
 */
export function helmRenderBinary(): string {
  const hash = createHash('sha256');
  for (const f of RENDERER_SOURCES) hash.update(readFileSync(join(REPO_ROOT, f)));
  const binary = join(REPO_ROOT, '.cache/helm-render', hash.digest('hex').slice(0, 16), 'helm-render');
  if (existsSync(binary)) return binary;
  mkdirSync(dirname(binary), { recursive: true });
  try {
    execFileSync(join(REPO_ROOT, 'hack/helm-render/build.sh'), [binary], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`cannot build hack/helm-render (the helm template stand-in): ${stderr.trim() || String(err)}`);
  }
  return binary;
}

function rendererArgs(o: RenderOptions): string[] {
  const args = [o.releaseName ?? DEFAULT_RELEASE, o.chartDir ?? CHART_DIR, '--namespace', o.namespace ?? 'default'];
  for (const f of o.valueFiles ?? []) args.push('--values', f);
  for (const s of o.set ?? []) args.push('--set', s);
  for (const s of o.setString ?? []) args.push('--set-string', s);
  if (o.includeCrds) args.push('--include-crds');
  if (o.kubeVersion !== undefined) args.push('--kube-version', o.kubeVersion);
  for (const a of o.apiVersions ?? []) args.push('--api-versions', a);
  if (o.notes) args.push('--notes');
  return args;
}

function runRenderer(args: string[]): string {
  try {
    return execFileSync(helmRenderBinary(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new ChartRenderError(stderr.trim().replace(/^Error: /, '') || String(err));
  }
}

/** "/metrics/port" → "metrics.port", as Helm's schema errors name fields. */
function fieldOf(e: ErrorObject): string {
  const path = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (e.keyword === 'additionalProperties') path.push(String((e.params as { additionalProperty: string }).additionalProperty));
  if (e.keyword === 'required') path.push(String((e.params as { missingProperty: string }).missingProperty));
  return path.length === 0 ? '(root)' : path.join('.');
}

let compiledSchema: { dir: string; validate: ReturnType<Ajv['compile']> } | undefined;

/**
 * Checks coalesced values against the chart's values.schema.json (JSON Schema draft-07) and throws
 * Helm's error when they do not match; charts without a schema accept anything, as in Helm.
 */
export function validateValues(values: unknown, chartDir: string = CHART_DIR): void {
  const schemaPath = join(chartDir, 'values.schema.json');
  if (!existsSync(schemaPath)) return;
  if (compiledSchema?.dir !== chartDir) {
    const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as object;
    compiledSchema = { dir: chartDir, validate: new Ajv({ allErrors: true, strict: false, allowUnionTypes: true }).compile(schema) };
  }
  if (compiledSchema.validate(values)) return;
  const chartName = /^name:\s*(\S+)/m.exec(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8'))?.[1] ?? 'chart';
  const lines = (compiledSchema.validate.errors ?? []).map((e) => `- ${fieldOf(e)}: ${e.message ?? e.keyword}`);
  throw new ChartRenderError(`values don't meet the specifications of the schema(s) in the following chart(s):\n${chartName}:\n${[...new Set(lines)].join('\n')}`);
}

/** The values templates see: values.yaml, then -f files, then --set, coalesced as Helm does. */
export function coalescedValues(o: RenderOptions = {}): Record<string, unknown> {
  return JSON.parse(runRenderer([...rendererArgs(o), '--show-values'])) as Record<string, unknown>;
}

/** `helm template` output: documents with "# Source:" headers, sorted in Helm's install order. */
export function renderChart(o: RenderOptions = {}): string {
  validateValues(coalescedValues(o), o.chartDir ?? CHART_DIR);
  return runRenderer(rendererArgs(o));
}

export interface RenderedObject {
  /** The template (or crds/ file) it came from, e.g. "umlmon/templates/daemonset.yaml". */
  source: string;
  /** The document's text without the "# Source:" header. */
  text: string;
  object: Record<string, unknown>;
}

/** Splits a rendering into its objects, each with its source template. */
export function parseRendering(rendering: string): RenderedObject[] {
  const out: RenderedObject[] = [];
  for (const chunk of rendering.split(/^---\n/m)) {
    const m = /^# Source: (\S+)\n/.exec(chunk);
    if (!m) continue;
    const text = chunk.slice(m[0].length).replace(/\n*(NOTES:\n[\s\S]*)?$/, '\n');
    const docs = parseAllDocuments(text);
    for (const d of docs) {
      if (d.errors.length > 0) throw new Error(`${m[1]}: ${d.errors[0]?.message}`);
      const object = d.toJS() as Record<string, unknown> | null;
      if (object !== null) out.push({ source: m[1] ?? '', text, object });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// manifests/: the chart's default rendering as plain YAML for `kubectl apply -k manifests/`.

/** Labels only Helm sets; manifests/ leaves them out (nothing there is managed by Helm). */
export const HELM_ONLY_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];

const GENERATED_HEADER = '# Generated from charts/umlmon with its default values by `node hack/render-chart.ts --write-manifests`.\n# Do not edit: change the chart and regenerate (test/unit/chart-manifests.test.ts checks this).\n';

/** Removes the Helm-only label lines from rendered YAML, keeping everything else as it is. */
export function withoutHelmLabels(text: string): string {
  const pattern = new RegExp(`^\\s*(${HELM_ONLY_LABELS.map((l) => l.replace(/[./]/g, '\\$&')).join('|')}): .*\\n`, 'gm');
  return text.replace(pattern, '');
}

const FILE_OF_SOURCE: Record<string, string> = {
  'umlmon/templates/serviceaccount.yaml': 'serviceaccount.yaml',
  'umlmon/templates/configmap.yaml': 'configmap.yaml',
  'umlmon/templates/clusterrole.yaml': 'rbac.yaml',
  'umlmon/templates/clusterrolebinding.yaml': 'rbac.yaml',
  'umlmon/templates/daemonset.yaml': 'daemonset.yaml',
};

/** The files manifests/ must hold, by name, generated from the chart's default rendering. */
export function manifestsFiles(): Map<string, string> {
  const rendering = renderChart({ releaseName: DEFAULT_RELEASE, namespace: DEFAULT_NAMESPACE });
  const files = new Map<string, string>();
  for (const chunk of rendering.split(/^---\n/m)) {
    const m = /^# Source: (\S+)\n/.exec(chunk);
    if (!m) continue;
    const file = FILE_OF_SOURCE[m[1] ?? ''];
    if (file === undefined) throw new Error(`manifests/: no file for ${m[1]}: add it to FILE_OF_SOURCE in hack/render-chart.ts`);
    const body = withoutHelmLabels(chunk.slice(m[0].length)).trimEnd() + '\n';
    const previous = files.get(file);
    files.set(file, previous === undefined ? GENERATED_HEADER + body : `${previous}---\n${body}`);
  }
  files.set('namespace.yaml', `${GENERATED_HEADER}# The agent is privileged (docs/security.md): Pod Security Admission must allow it here.
apiVersion: v1
kind: Namespace
metadata:
  name: ${DEFAULT_NAMESPACE}
  labels:
    app.kubernetes.io/name: umlmon
    app.kubernetes.io/part-of: umlmon
    pod-security.kubernetes.io/enforce: privileged
    pod-security.kubernetes.io/audit: privileged
    pod-security.kubernetes.io/warn: privileged
`);
  // The CRD verbatim (kustomize may not read files outside manifests/, so it is a copy).
  files.set('umlmachines.umlmon.io.yaml', readFileSync(join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml'), 'utf8'));
  files.set('kustomization.yaml', `${GENERATED_HEADER}# kubectl apply -k manifests/   (or: kubectl kustomize manifests/ | kubectl apply -f -)
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ${DEFAULT_NAMESPACE}
resources:
  - namespace.yaml
  - umlmachines.umlmon.io.yaml
  - serviceaccount.yaml
  - rbac.yaml
  - configmap.yaml
  - daemonset.yaml
`);
  return files;
}

function main(argv: string[]): number {
  if (argv.includes('--write-manifests')) {
    // The chart ships the CRD too (Helm installs crds/ first); crds/ is the source of truth.
    cpSync(join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml'), join(CHART_DIR, 'crds/umlmachines.umlmon.io.yaml'));
    mkdirSync(MANIFESTS_DIR, { recursive: true });
    for (const [name, text] of manifestsFiles()) writeFileSync(join(MANIFESTS_DIR, name), text);
    console.error(`copied crds/ into ${CHART_DIR}/crds/ and wrote ${MANIFESTS_DIR}`);
    return 0;
  }
  const o: RenderOptions = { valueFiles: [], set: [], setString: [], apiVersions: [] };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '-n' || a === '--namespace') o.namespace = value();
    else if (a === '-f' || a === '--values') o.valueFiles?.push(value());
    else if (a === '--set') o.set?.push(value());
    else if (a === '--set-string') o.setString?.push(value());
    else if (a === '--include-crds') o.includeCrds = true;
    else if (a === '--kube-version') o.kubeVersion = value();
    else if (a === '-a' || a === '--api-versions') o.apiVersions?.push(value());
    else if (a === '--notes') o.notes = true;
    else if (a.startsWith('-')) throw new Error(`unknown flag ${a}`);
    else positional.push(a);
  }
  if (positional[0] !== undefined) o.releaseName = positional[0];
  if (positional[1] !== undefined) o.chartDir = resolve(positional[1]);
  process.stdout.write(renderChart(o));
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    console.error(`Error: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}
