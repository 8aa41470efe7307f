// Generates docs/reference.md, the UmlMachine reference, from the CRD: every field with its
// type, default, constraints and description, and every cross-field rule with its message.
//   node hack/gen-reference.ts           writes docs/reference.md
//   node hack/gen-reference.ts --check   exits 1 when docs/reference.md is out of date
// test/unit/api-reference.test.ts fails when the file is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { loadCrd, type Crd, type StructuralSchema } from '../src/api/schema.ts';

export const REFERENCE_URL = new URL('../docs/reference.md', import.meta.url);
export const REGENERATE_COMMAND = 'node hack/gen-reference.ts';
const EXAMPLE_URL = new URL('../examples/basic.yaml', import.meta.url);

/** The reference document for a CRD, as Markdown. Pure: same CRD and example, same text. */
export function renderReference(crd: Crd, example: string): string {
  const version = crd.spec.versions.find((v) => v.storage) ?? crd.spec.versions[0];
  if (!version) throw new Error('the CRD has no versions');
  const root = version.schema.openAPIV3Schema;
  const out: string[] = [];
  const names = crd.spec.names;
  out.push(
    `# ${names.kind} reference (${crd.spec.group}/${version.name})`,
    '',
    `<!-- Generated from crds/umlmachines.umlmon.io.yaml by \`${REGENERATE_COMMAND}\`. Do not edit: change the CRD's descriptions and regenerate. -->`,
    '',
    oneLine(root.description),
    '',
    '| | |',
    '|---|---|',
    `| API version | \`${crd.spec.group}/${version.name}\` |`,
    `| Kind | \`${names.kind}\` |`,
    `| Resource | \`${names.plural}\` (singular \`${names.singular}\`${names.shortNames?.length ? `, short name ${names.shortNames.map((s) => `\`${s}\``).join(', ')}` : ''}) |`,
    `| Scope | ${crd.spec.scope} |`,
    `| Subresources | ${Object.keys(version.subresources ?? {}).map((s) => `\`${s}\``).join(', ') || 'none'} |`,
    `| Selectable fields | ${(version.selectableFields ?? []).map((f) => `\`${f.jsonPath}\``).join(', ') || 'none'} (e.g. \`kubectl get uml --field-selector spec.nodeName=worker-1\`) |`,
    '',
    '## Columns of `kubectl get`',
    '',
    '| Column | From | Shown |',
    '|---|---|---|',
    '| NAME | `.metadata.name` | always |',
  );
  for (const column of version.additionalPrinterColumns ?? []) {
    out.push(`| ${column.name.toUpperCase()} | \`${column.jsonPath}\` | ${column.priority ? 'with `-o wide`' : 'always'} |`);
  }
  out.push('', '## Example', '', '```yaml', example.trimEnd(), '```', '');
  out.push(
    '## Validation',
    '',
    'The API server checks the schema below (types, patterns, bounds, unique list keys) and the rules listed with each object (CEL, Kubernetes 1.25 and newer). ' +
      'The node agent checks all of it again, because older API servers skip the rules and machine files read from a directory have no API server, and adds what only the node knows:',
    '',
    "- `spec.kernel` must name a kernel in the agent's configuration;",
    "- `spec.memory` must lie within the agent's configured minimum and maximum;",
    "- each `spec.disks[].image` must exist as a file under the node's image root;",
    '- `spec.backup.schedule` must be a cron expression node-cron accepts (e.g. no minute 61);',
    '- gre and l2tpv3 addresses must be IP addresses of one family.',
    '',
    'A machine the agent refuses gets the condition `SpecValid=False` listing every problem as `field: what to fix`, and an `InvalidSpec` Event; a guest that is already running is left as it is.',
    '',
  );
  out.push('## Fields', '', 'Each table lists the fields of one object. Defaults are applied by the API server (and by the agent for files without a server).', '');
  for (const section of ['spec', 'status']) {
    const schema = root.properties?.[section];
    if (schema) renderObject(out, section, schema);
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

function renderObject(out: string[], path: string, schema: StructuralSchema): void {
  out.push(`### \`${path}\``, '', oneLine(schema.description), '');
  const rules = (schema['x-kubernetes-validations'] ?? []).filter((r) => !r.rule.includes('oldSelf'));
  if (rules.length > 0) {
    out.push('Rules:', '');
    for (const rule of rules) out.push(`- ${rule.message ?? `\`${rule.rule}\``}`);
    out.push('');
  }
  const properties = Object.entries(schema.properties ?? {});
  if (properties.length > 0) {
    out.push('| Field | Type | Default | Constraints | Description |', '|---|---|---|---|---|');
    for (const [name, field] of properties) {
      const required = schema.required?.includes(name) ? ' (required)' : '';
      out.push(`| \`${name}\`${required} | ${typeOf(field)} | ${field.default !== undefined ? code(JSON.stringify(field.default)) : ''} | ${constraints(field).join('; ')} | ${cell(field.description)} |`);
    }
    out.push('');
  }
  for (const [name, field] of properties) {
    const child = `${path}.${name}`;
    if (field.type === 'object' && field.properties) renderObject(out, child, field);
    if (field.type === 'array' && field.items?.type === 'object') renderObject(out, `${child}[]`, field.items);
    if (field.type === 'array' && field.items && field.items.type !== 'object' && (field.items['x-kubernetes-validations'] ?? []).length > 0) {
      out.push(`### \`${child}[]\``, '', oneLine(field.items.description), '', 'Rules:', '');
      for (const rule of field.items['x-kubernetes-validations'] ?? []) out.push(`- ${rule.message ?? `\`${rule.rule}\``}`);
      out.push('');
    }
  }
}

function typeOf(schema: StructuralSchema): string {
  if (schema['x-kubernetes-int-or-string']) return 'quantity (string or integer)';
  if (schema.type === 'array') return schema.items?.type === 'object' ? 'list of objects' : `list of ${schema.items?.type ?? 'values'}s`;
  if (schema.format === 'date-time') return 'string (RFC 3339 time)';
  return schema.type ?? 'any';
}

function constraints(schema: StructuralSchema): string[] {
  const out: string[] = [];
  if (schema.enum) out.push(`one of ${schema.enum.map((v) => code(String(v))).join(', ')}`);
  if (schema.pattern) out.push(`matches ${code(schema.pattern)}`);
  if (schema.minimum !== undefined) out.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) out.push(`≤ ${schema.maximum}`);
  if (schema.minLength !== undefined && schema.minLength > 0) out.push(`at least ${schema.minLength} characters`);
  if (schema.maxLength !== undefined) out.push(`at most ${schema.maxLength} characters`);
  if (schema.maxItems !== undefined) out.push(`at most ${schema.maxItems} entries`);
  if (schema['x-kubernetes-list-type'] === 'map') out.push(`unique ${(schema['x-kubernetes-list-map-keys'] ?? []).map(code).join(', ')}`);
  if (schema.items?.pattern) out.push(`each matches ${code(schema.items.pattern)}`);
  if (schema.items?.maxLength !== undefined) out.push(`each at most ${schema.items.maxLength} characters`);
  if ((schema['x-kubernetes-validations'] ?? []).some((r) => r.rule === 'self == oldSelf')) out.push('immutable');
  return out;
}

function oneLine(text: string | undefined): string {
  return (text ?? '').replace(/\s+/g, ' ').trim();
}

/** A table cell: one line, pipes escaped (GitHub tables split on them even inside code). */
function cell(text: string | undefined): string {
  return oneLine(text).replaceAll('|', '\\|');
}

function code(text: string): string {
  const escaped = text.replaceAll('|', '\\|');
  return escaped.includes('`') ? `\`\` ${escaped} \`\`` : `\`${escaped}\``;
}

/** The reference as it should be now, from the CRD and example in this checkout. */
export function currentReference(): string {
  return renderReference(loadCrd(), readFileSync(EXAMPLE_URL, 'utf8'));
}

if (import.meta.main) {
  const expected = currentReference();
  if (process.argv.includes('--check')) {
    let actual = '';
    try {
      actual = readFileSync(REFERENCE_URL, 'utf8');
    } catch {
      // missing counts as out of date
    }
    if (actual !== expected) {
      console.error(`docs/reference.md is out of date with the CRD; run: ${REGENERATE_COMMAND}`);
      process.exit(1);
    }
  } else {
    writeFileSync(REFERENCE_URL, expected);
    console.log(`wrote ${REFERENCE_URL.pathname}`);
  }
}
