// docs/reference.md is generated from the CRD; this fails when someone changed one without the other.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { REFERENCE_URL, REGENERATE_COMMAND, currentReference } from '../../hack/gen-reference.ts';
import { machineSchema, type StructuralSchema } from '../../src/api/schema.ts';

it('docs/reference.md is up to date with the CRD', () => {
  let actual = '';
  try {
    actual = readFileSync(REFERENCE_URL, 'utf8');
  } catch {
    assert.fail(`docs/reference.md is missing; run: ${REGENERATE_COMMAND}`);
  }
  assert.ok(actual === currentReference(), `docs/reference.md is out of date with crds/umlmachines.umlmon.io.yaml; run: ${REGENERATE_COMMAND}`);
});

it('docs/reference.md lists every spec and status field', () => {
  const reference = currentReference();
  const missing: string[] = [];
  const walk = (schema: StructuralSchema, path: string) => {
    for (const [name, child] of Object.entries(schema.properties ?? {})) {
      if (!reference.includes(`### \`${path}\``) || !reference.includes(`| \`${name}\``)) missing.push(`${path}.${name}`);
      if (child.properties) walk(child, `${path}.${name}`);
      if (child.items?.properties) walk(child.items, `${path}.${name}[]`);
    }
  };
  for (const section of ['spec', 'status']) walk(machineSchema().properties?.[section] as StructuralSchema, section);
  assert.deepEqual(missing, []);
});
