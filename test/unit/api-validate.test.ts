// Every example is valid and every invalid fixture is refused, by src/api (the agent's
// validation) and, for the CEL rules, by a CEL evaluator running the CRD's own rules: the
// fixtures' "# apiserver:" lines that quote a rule's message must name a rule that fails.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate } from '@marcbachmann/cel-js';
import { parseAllDocuments } from 'yaml';
import { RESERVED_KERNEL_OPTION_PATTERN, reservedOption } from '../../src/api/kernel-options.ts';
import { machineSchemaValidator } from '../../src/api/machine-validator.ts';
import { compileSchema } from '../../src/api/schema-compile.ts';
import { GENERATED_VALIDATORS } from '../../hack/generate-validator.ts';
import { applyDefaults, crdMachineSchema, loadCrd, machineSchema, pruneUnknownFields, withoutDescriptions, type StructuralSchema } from '../../src/api/schema.ts';
import { formatFieldErrors, imageNameProblem, validateMachine, type ValidationLimits } from '../../src/api/validate.ts';
import { REPO_ROOT } from '../support/uml.ts';

const MiB = 2 ** 20;
const LIMITS: ValidationLimits = { kernels: ['default', 'linux-6-1'], memoryMinBytes: 40 * MiB, memoryMaxBytes: 4096 * MiB };
const EXAMPLES_DIR = join(REPO_ROOT, 'examples');
const FIXTURES_DIR = join(REPO_ROOT, 'test/fixtures/invalid');

function yamlDocuments(path: string): unknown[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((doc) => {
    assert.equal(doc.errors.length, 0, `${path}: ${doc.errors.join('; ')}`);
    return doc.toJS();
  });
}

interface Fixture {
  file: string;
  agent: string;
  apiserver: string;
  object: unknown;
}

function fixtures(): Fixture[] {
  return readdirSync(FIXTURES_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const text = readFileSync(join(FIXTURES_DIR, file), 'utf8');
      const agent = /^# agent: (.+)$/m.exec(text)?.[1];
      const apiserver = /^# apiserver: (.+)$/m.exec(text)?.[1];
      assert.ok(agent && apiserver, `${file} must start with "# agent: ..." and "# apiserver: ..." lines`);
      const docs = yamlDocuments(join(FIXTURES_DIR, file));
      assert.equal(docs.length, 1, `${file} holds one object`);
      return { file, agent, apiserver, object: docs[0] };
    });
}

// --- The CRD's CEL rules, evaluated the way the API server does on create --------------------

interface RuleFailure {
  path: string;
  message: string;
}

/** Runs every x-kubernetes-validations rule (except transition rules) over a defaulted object. */
function celFailures(value: unknown, schema: StructuralSchema, path = ''): RuleFailure[] {
  const failures: RuleFailure[] = [];
  if (value === undefined) return failures;
  for (const rule of schema['x-kubernetes-validations'] ?? []) {
    if (rule.rule.includes('oldSelf')) continue; // transition rules apply to updates only
    const ok = evaluate(rule.rule, { self: value });
    if (ok !== true) failures.push({ path, message: rule.message ?? `failed rule: ${rule.rule}` });
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => failures.push(...celFailures(item, schema.items as StructuralSchema, `${path}[${i}]`)));
  } else if (value !== null && typeof value === 'object' && schema.properties) {
    for (const [key, child] of Object.entries(schema.properties)) {
      failures.push(...celFailures((value as Record<string, unknown>)[key], child, path === '' ? key : `${path}.${key}`));
    }
  }
  return failures;
}

function admitted(object: unknown): unknown {
  const schema = machineSchema();
  const pruned = pruneUnknownFields(object, schema);
  applyDefaults(pruned, schema);
  return pruned;
}

/** Messages the API server itself words (schema validation), as opposed to a CEL rule's message. */
const SCHEMA_MESSAGE = /in body should|Unsupported value|Required value|Duplicate value/;

describe('the generated validator', () => {
  it('each generated file (the CRD\'s validator and schema, the config file\'s validator) is what hack/generate-validator.ts writes now', () => {
    assert.equal(GENERATED_VALIDATORS.length, 3);
    for (const { file, source } of GENERATED_VALIDATORS) {
      assert.ok(readFileSync(file, 'utf8') === source(), `${file.pathname} is stale: run \`node hack/generate-validator.ts\``);
    }
  });

  it('judges as the validator compiled from the CRD does, errors included', () => {
    const compiled = compileSchema(machineSchema());
    const generated = machineSchemaValidator();
    const objects: unknown[] = [
      { apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'a' }, spec: { nodeName: 'n', memory: '64Mi', disks: [{ name: 'ubd0', image: 'r.img' }] } },
      { apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'a' }, spec: { nodeName: 'N_', memory: -1, state: 'Up', disks: [{ name: 'sda', image: '../x' }], interfaces: [{ name: 'vec0', transport: 'mcast', mcast: { group: '10.0.0.1', port: 2 ** 40 } }] } },
      { apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'a' }, spec: { nodeName: 'n' }, status: { startTime: 'yesterday', conditions: [{ type: 'Ready', status: 'Maybe' }] } },
      { spec: 'not an object' },
      42,
    ];
    for (const object of objects) {
      const c = compiled(structuredClone(object));
      const g = generated(structuredClone(object));
      assert.equal(g, c, JSON.stringify(object));
      assert.deepEqual(generated.errors ?? null, compiled.errors ?? null, JSON.stringify(object));
    }
  });
});

describe('examples', () => {
  const files = readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.yaml'));
  it('has the basic, networked and backup examples', () => {
    for (const name of ['basic.yaml', 'networked.yaml', 'backup.yaml']) assert.ok(files.includes(name), `examples/${name} is missing`);
  });
  for (const file of files) {
    it(`${file} is valid for the agent and for the CRD's CEL rules`, () => {
      for (const doc of yamlDocuments(join(EXAMPLES_DIR, file))) {
        const result = validateMachine(doc, LIMITS);
        assert.ok(result.ok, result.ok ? '' : `examples/${file}:\n${formatFieldErrors(result.errors)}`);
        assert.deepEqual(celFailures(admitted(doc), machineSchema()), []);
      }
    });
  }
  it('basic.yaml is the documented machine, with defaults applied', () => {
    const [doc] = yamlDocuments(join(EXAMPLES_DIR, 'basic.yaml'));
    const result = validateMachine(doc, LIMITS);
    assert.ok(result.ok);
    const spec = result.machine.spec;
    assert.equal(spec.nodeName, 'worker-1');
    assert.equal(spec.kernel, 'default');
    assert.equal(spec.memory, '64Mi');
    assert.deepEqual(spec.disks, [{ name: 'ubd0', image: 'busybox.ext4', mode: 'cow' }]);
    assert.deepEqual(spec.cmdline, ['loglevel=4']);
  });
});

describe('invalid fixtures', () => {
  const all = fixtures();
  it('has at least 15 fixtures', () => assert.ok(all.length >= 15, `only ${all.length}`));
  for (const fixture of all) {
    it(`${fixture.file} is refused by the agent with "${fixture.agent}"`, () => {
      const result = validateMachine(fixture.object, LIMITS);
      assert.equal(result.ok, false, `${fixture.file} was accepted`);
      if (!result.ok) {
        const text = formatFieldErrors(result.errors);
        assert.ok(text.includes(fixture.agent), `${fixture.file}: expected "${fixture.agent}" in:\n${text}`);
      }
    });
    it(`${fixture.file}: its apiserver line agrees with the CRD`, () => {
      const failures = celFailures(admitted(fixture.object), machineSchema());
      if (fixture.apiserver === 'accepts') {
        // Only the agent can catch it: the schema (ajv, minus the agent's extra checks) and CEL pass.
        assert.deepEqual(failures, []);
        const withoutNodeLimits = validateMachine(fixture.object, { kernels: [String((fixture.object as { spec: { kernel?: string } }).spec.kernel ?? 'default')], memoryMinBytes: 0, memoryMaxBytes: Number.MAX_SAFE_INTEGER });
        if (!fixture.file.startsWith('cron-')) assert.ok(withoutNodeLimits.ok, `${fixture.file} fails beyond the node's limits`);
      } else if (/Duplicate value/.test(fixture.apiserver)) {
        const list = /^spec\.(disks|interfaces)\[/.exec(fixture.apiserver)?.[1] ?? '';
        const names = ((fixture.object as { spec: Record<string, { name: string }[]> }).spec[list] ?? []).map((item) => item.name);
        assert.notEqual(new Set(names).size, names.length, `${fixture.file}: no duplicate key in spec.${list}`);
      } else if (SCHEMA_MESSAGE.test(fixture.apiserver)) {
        // The structural schema alone (what every API server version checks) refuses it.
        assert.equal(machineSchemaValidator()(admitted(fixture.object)), false, `${fixture.file} passes the schema`);
      } else {
        const messages = failures.map((f) => f.message);
        assert.ok(messages.some((m) => m.includes(fixture.apiserver)), `${fixture.file}: no failing CEL rule says "${fixture.apiserver}"; failing: ${JSON.stringify(messages)}`);
      }
    });
  }
});

describe('validateMachine', () => {
  const base = () => ({ apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'm' }, spec: { nodeName: 'worker-1' } as Record<string, unknown> });

  it('applies the defaults, prunes unknown fields and does not touch its input', () => {
    const input = base();
    input.spec.unknownField = 1;
    input.spec.disks = [{ name: 'ubd0', image: 'a.img' }];
    input.spec.interfaces = [{ name: 'eth0', transport: 'mcast', mcast: { group: '239.192.0.1', port: 1102 } }];
    input.spec.backup = { schedule: '0 3 * * *' };
    const result = validateMachine(input, LIMITS);
    assert.ok(result.ok);
    assert.deepEqual(result.machine.spec, {
      nodeName: 'worker-1',
      state: 'Running',
      kernel: 'default',
      memory: '128Mi',
      restartPolicy: 'Always',
      shutdownGracePeriodSeconds: 30,
      disks: [{ name: 'ubd0', image: 'a.img', mode: 'cow' }],
      interfaces: [{ name: 'eth0', transport: 'mcast', mcast: { group: '239.192.0.1', port: 1102, ttl: 1 } }],
      backup: { schedule: '0 3 * * *', retain: 3 },
    });
    assert.equal(input.spec.unknownField, 1);
    assert.equal(input.spec.state, undefined);
  });

  it('turns an integer memory (int-or-string) into a string', () => {
    const input = base();
    input.spec.memory = 64 * MiB;
    const result = validateMachine(input, LIMITS);
    assert.ok(result.ok);
    assert.equal(result.machine.spec.memory, String(64 * MiB));
  });

  it('lists every problem, each with its field, in one pass', () => {
    const input = base();
    input.spec.memory = '8Mi';
    input.spec.kernel = 'nope';
    input.spec.disks = [{ name: 'ubd0', image: '/abs' }, { name: 'ubd0', image: 'a/../../b' }];
    const result = validateMachine(input, LIMITS);
    assert.equal(result.ok, false);
    if (result.ok) return;
    const fields = result.errors.map((e) => e.field).sort();
    assert.deepEqual(fields, ['spec.disks[0].image', 'spec.disks[1].image', 'spec.disks[1].name', 'spec.kernel', 'spec.memory']);
    assert.match(formatFieldErrors(result.errors), /spec\.memory: 8Mi is below this node's minimum of 40Mi; use at least 40Mi/);
  });

  it('refuses an integer memory that is not a positive byte count', () => {
    for (const memory of [-5, 0.5, 2 ** 60]) {
      const input = base();
      input.spec.memory = memory;
      const result = validateMachine(input, { ...LIMITS, memoryMinBytes: 0, memoryMaxBytes: Number.MAX_SAFE_INTEGER });
      assert.ok(!result.ok && result.errors.some((e) => e.field === 'spec.memory'), `${memory} was accepted`);
    }
  });

  it('checks memory against the maximum', () => {
    const input = base();
    input.spec.memory = '8Gi';
    const result = validateMachine(input, LIMITS);
    assert.ok(!result.ok && /8Gi is above this node's maximum of 4Gi; use at most 4Gi/.test(formatFieldErrors(result.errors)));
  });

  it('asks imageExists about images that stay under the image root only', () => {
    const asked: string[] = [];
    const input = base();
    input.spec.disks = [{ name: 'ubd0', image: 'here.img' }, { name: 'ubd1', image: 'missing.img' }, { name: 'ubd2', image: '../x' }];
    const result = validateMachine(input, { ...LIMITS, imageExists: (image) => (asked.push(image), image === 'here.img') });
    assert.deepEqual(asked, ['here.img', 'missing.img']);
    assert.ok(!result.ok);
    assert.match(formatFieldErrors(result.errors), /spec\.disks\[1\]\.image: "missing.img" is not in this node's image root/);
  });

  it('refuses objects that are not UmlMachines', () => {
    for (const input of [null, 'text', [], { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'w' } }]) {
      assert.equal(validateMachine(input, LIMITS).ok, false);
    }
  });

  it('never refuses a machine for its status, which the agent wrote', () => {
    const input = { ...base(), status: { phase: 'Hibernating', conditions: [{ type: 'Ready' }], pid: -1 } };
    const result = validateMachine(input, LIMITS);
    assert.ok(result.ok, result.ok ? '' : formatFieldErrors(result.errors));
    assert.equal(result.machine.status?.phase, 'Hibernating');
  });

  it('treats null like an absent field, so defaults apply (as the API server does)', () => {
    const input = base();
    input.spec.state = null;
    input.spec.disks = [{ name: 'ubd0', image: 'a.img', mode: null }];
    const result = validateMachine(input, LIMITS);
    assert.ok(result.ok);
    assert.equal(result.machine.spec.state, 'Running');
    assert.equal(result.machine.spec.disks?.[0]?.mode, 'cow');
  });

  it('checks tunnel addresses and families', () => {
    const input = base();
    input.spec.interfaces = [{ name: 'vec0', transport: 'gre', gre: { local: '192.0.2.1', remote: '2001:db8::1' } }, { name: 'vec1', transport: 'l2tpv3', l2tpv3: { local: '1.2.3', remote: '192.0.2.9' } }];
    const result = validateMachine(input, LIMITS);
    assert.ok(!result.ok);
    const text = formatFieldErrors(result.errors);
    assert.match(text, /spec\.interfaces\[0\]\.gre: local and remote must both be IPv4 or both IPv6/);
    assert.match(text, /spec\.interfaces\[1\]\.l2tpv3\.local: "1.2.3" is not an IPv4 or IPv6 address/);
  });
});

describe('reserved kernel options', () => {
  it('the CRD rule on spec.cmdline items uses the same pattern as src/api', () => {
    const items = machineSchema().properties?.spec?.properties?.cmdline?.items;
    const rule = items?.['x-kubernetes-validations']?.[0]?.rule;
    assert.equal(rule, `!self.matches('${RESERVED_KERNEL_OPTION_PATTERN}')`);
  });

  const reserved = ['mem=64M', 'umid=x', 'uml_dir=/tmp', 'mconsole=notify:/x', 'ubd0=x', 'ubd0r=x', 'ubd0rc=x', 'ubd15s=x', 'ubda=x', 'eth0=mcast', 'vec0:transport=tap', 'con=null', 'con0=fd:0', 'ssl=pty', 'ssl3=pty', 'root=/dev/ubdb', 'rootfstype=hostfs', 'init=/bin/sh', 'initrd=/etc/shadow', 'hostfs=/', 'iomem=x,/f', 'xterm=gnome-terminal'];
  const allowed = ['loglevel=4', 'quiet', 'console=tty0', 'initcall_blacklist=raid6_select_algo', 'rootflags=data=journal', 'memmap=1M', 'ethtool=x', 'single', 'lpj=42123264', 'noreboot', 'mem'];
  for (const argument of reserved) {
    it(`refuses ${argument}, in src/api and in CEL`, () => {
      assert.ok(reservedOption(argument), argument);
      assert.equal(evaluate(`self.matches('${RESERVED_KERNEL_OPTION_PATTERN}')`, { self: argument }), true);
    });
  }
  for (const argument of allowed) {
    it(`allows ${argument}`, () => {
      assert.equal(reservedOption(argument), undefined);
      assert.equal(evaluate(`self.matches('${RESERVED_KERNEL_OPTION_PATTERN}')`, { self: argument }), false);
    });
  }
});

describe('imageNameProblem', () => {
  it('accepts names and relative paths under the image root', () => {
    for (const image of ['busybox.ext4', 'base/debian-12.img', 'a..b.img', 'x_y+z-1.raw']) assert.equal(imageNameProblem(image), undefined, image);
  });
  it('refuses names that leave the image root or are not normalized', () => {
    for (const image of ['/etc/passwd', '..', '../x', 'a/../../x', 'a/..', './x', 'a//b', 'a/', '.hidden', 'a/.b', 'x\0y']) {
      assert.ok(imageNameProblem(image), image);
    }
  });
});

describe('the CRD file', () => {
  it('is the API of api.md', () => {
    const crd = loadCrd();
    assert.equal(crd.metadata.name, 'umlmachines.umlmon.io');
    assert.equal(crd.spec.group, 'umlmon.io');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(crd.spec.names.shortNames, ['uml']);
    const [version] = crd.spec.versions;
    assert.ok(version && version.name === 'v1alpha1' && version.served && version.storage);
    assert.deepEqual(version.selectableFields, [{ jsonPath: '.spec.nodeName' }]);
    assert.deepEqual(version.subresources, { status: {} });
    const columns = (version.additionalPrinterColumns ?? []).map((c) => `${c.name.toUpperCase()}${c.priority ? '(wide)' : ''}`);
    // UPTIME (issue 10): the time since status.bootTime, as kubectl shows AGE; not in api.md's list yet.
    assert.deepEqual(columns, ['NODE', 'STATE', 'PHASE', 'KERNEL', 'AGE', 'UPTIME', 'PID(wide)', 'MEMORY(wide)', 'RESTARTS(wide)']);
  });

  it('describes every field, so that kubectl explain teaches the API', () => {
    const missing: string[] = [];
    const walk = (schema: StructuralSchema, path: string) => {
      // metadata is ObjectMeta: the API server refuses anything but name/generateName rules there.
      if (!schema.description && path !== 'UmlMachine.metadata') missing.push(path);
      for (const [key, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${key}`);
      if (schema.items) walk(schema.items, `${path}[]`);
    };
    walk(crdMachineSchema(), 'UmlMachine');
    assert.deepEqual(missing, []);
  });

  it('the agent\'s schema is the CRD\'s without its descriptions', () => {
    assert.deepEqual(machineSchema(), withoutDescriptions(crdMachineSchema()));
    assert.ok(!JSON.stringify(machineSchema()).includes('"description"'));
  });

  it('drops only schemas\' descriptions: a field named description, a default and a rule keep theirs', () => {
    const schema: StructuralSchema = {
      type: 'object', description: 'a machine',
      properties: {
        description: { type: 'string', description: 'what the user calls it', default: 'none' },
        labels: { type: 'object', additionalProperties: { type: 'string', description: 'a value' } },
        notes: { type: 'array', items: { type: 'object', description: 'a note', default: { description: 'kept' } } },
        size: { anyOf: [{ type: 'integer', description: 'bytes' }, { type: 'string' }], 'x-kubernetes-validations': [{ rule: 'self != ""', message: 'a description of the rule' }] },
      },
    };
    assert.deepEqual(withoutDescriptions(schema), {
      type: 'object',
      properties: {
        description: { type: 'string', default: 'none' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        notes: { type: 'array', items: { type: 'object', default: { description: 'kept' } } },
        size: { anyOf: [{ type: 'integer' }, { type: 'string' }], 'x-kubernetes-validations': [{ rule: 'self != ""', message: 'a description of the rule' }] },
      },
    });
  });

  it('bounds every string and list that a CEL rule reads, so the cost estimator accepts the rules', () => {
    const unbounded: string[] = [];
    const walk = (schema: StructuralSchema, path: string, underRule: boolean) => {
      const ruled = underRule || (schema['x-kubernetes-validations'] ?? []).length > 0;
      if (ruled && schema.type === 'array' && schema.maxItems === undefined) unbounded.push(path);
      if (ruled && (schema.type === 'string' || schema['x-kubernetes-int-or-string']) && schema.maxLength === undefined && !schema.enum) unbounded.push(path);
      for (const [key, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${key}`, ruled);
      if (schema.items) walk(schema.items, `${path}[]`, ruled);
    };
    walk(machineSchema().properties?.spec as StructuralSchema, 'spec', false);
    assert.deepEqual(unbounded, []);
  });

  it('says nothing about metadata, which a real API server would refuse', () => {
    assert.deepEqual(machineSchema().properties?.metadata, { type: 'object' });
  });

  it('has defaults that each pass their own field schema (the API server checks)', () => {
    const bad: string[] = [];
    let count = 0;
    const walk = (schema: StructuralSchema, path: string) => {
      if (schema.default !== undefined) {
        count++;
        if (!compileSchema(schema)(schema.default)) bad.push(`${path}: ${JSON.stringify(schema.default)}`);
      }
      for (const [key, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${key}`);
      if (schema.items) walk(schema.items, `${path}[]`);
    };
    walk(machineSchema(), 'UmlMachine');
    assert.deepEqual(bad, []);
    assert.ok(count >= 10, `only ${count} defaults found`);
  });

  it('has defaults that pass its own schema and rules', () => {
    const result = validateMachine({ apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'd' }, spec: { nodeName: 'n' } }, { ...LIMITS, memoryMinBytes: 0 });
    assert.ok(result.ok);
  });
});
