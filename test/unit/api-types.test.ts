// The TypeScript types of src/api/types.ts and the CRD's schema name the same fields and values.
// Each list below is checked against its type by the compiler (npm run typecheck: a missing or
// extra name fails `Exact`) and against the schema by this test, so neither can drift alone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { machineSchema, type StructuralSchema } from '../../src/api/schema.ts';
import type {
  BackupSpec,
  Condition,
  DesiredState,
  DiskSpec,
  InterfaceSpec,
  ObjectMeta,
  Phase,
  RestartPolicy,
  UmlMachine,
  UmlMachineSpec,
  UmlMachineStatus,
} from '../../src/api/types.ts';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../src/api/types.ts';
import { validateMachine } from '../../src/api/validate.ts';
import type { DiskMode, Transport } from '../../src/runtime/types.ts';
import { loadCrd } from '../../src/api/schema.ts';

/** Compiles only when the list names exactly the union's members. */
type Exact<Union extends string, List extends readonly Union[]> = [Exclude<Union, List[number]>] extends [never] ? List : never;
function names<Union extends string>() {
  return <const List extends readonly Union[]>(list: Exact<Union, List>): readonly string[] => list;
}
type Item<T> = T extends readonly (infer I)[] ? I : never;
type Status = Required<UmlMachineStatus>;

const FIELDS: Record<string, readonly string[]> = {
  '': names<keyof UmlMachine>()(['apiVersion', 'kind', 'metadata', 'spec', 'status']),
  spec: names<keyof UmlMachineSpec>()(['nodeName', 'state', 'kernel', 'memory', 'cmdline', 'disks', 'interfaces', 'restartPolicy', 'shutdownGracePeriodSeconds', 'backup']),
  'spec.disks[]': names<keyof DiskSpec>()(['name', 'image', 'mode']),
  'spec.interfaces[]': names<keyof InterfaceSpec>()(['name', 'transport', 'mac', 'tap', 'raw', 'hybrid', 'tuntap', 'mcast', 'daemon', 'vde', 'gre', 'l2tpv3']),
  'spec.interfaces[].tap': names<keyof NonNullable<InterfaceSpec['tap']>>()(['ifname', 'switch']),
  'spec.interfaces[].raw': names<keyof NonNullable<InterfaceSpec['raw']>>()(['ifname']),
  'spec.interfaces[].hybrid': names<keyof NonNullable<InterfaceSpec['hybrid']>>()(['ifname']),
  'spec.interfaces[].tuntap': names<keyof NonNullable<InterfaceSpec['tuntap']>>()(['ifname']),
  'spec.interfaces[].mcast': names<keyof NonNullable<InterfaceSpec['mcast']>>()(['group', 'port', 'ttl']),
  'spec.interfaces[].daemon': names<keyof NonNullable<InterfaceSpec['daemon']>>()(['switch']),
  'spec.interfaces[].vde': names<keyof NonNullable<InterfaceSpec['vde']>>()(['switch']),
  'spec.interfaces[].gre': names<keyof NonNullable<InterfaceSpec['gre']>>()(['local', 'remote', 'key']),
  'spec.interfaces[].l2tpv3': names<keyof NonNullable<InterfaceSpec['l2tpv3']>>()(['local', 'remote', 'localPort', 'remotePort', 'session']),
  'spec.backup': names<keyof BackupSpec>()(['schedule', 'retain']),
  status: names<keyof UmlMachineStatus>()([
    'phase', 'observedGeneration', 'nodeName', 'umid', 'pid', 'startTime', 'bootTime', 'kernelVersion', 'restartCount', 'memory',
    'disks', 'interfaces', 'consoles', 'lastBackup', 'conditions',
  ]),
  'status.disks[]': names<keyof Item<Status['disks']>>()(['name', 'image', 'mode', 'attached', 'message']),
  'status.interfaces[]': names<keyof Item<Status['interfaces']>>()(['name', 'transport', 'mac', 'attached', 'message']),
  'status.consoles[]': names<keyof Item<Status['consoles']>>()(['name', 'hostDevice']),
  'status.lastBackup': names<keyof Status['lastBackup']>()(['time', 'result', 'location', 'message']),
  'status.conditions[]': names<keyof Condition>()(['type', 'status', 'reason', 'message', 'lastTransitionTime', 'observedGeneration']),
};

/** Fields the type makes required (not `?`), which the schema must require or default. */
const REQUIRED: Record<string, readonly string[]> = {
  spec: ['nodeName'],
  'spec.disks[]': ['name', 'image'],
  'spec.interfaces[]': ['name', 'transport'],
  'spec.interfaces[].mcast': ['group', 'port'],
  'spec.backup': ['schedule'],
  'status.conditions[]': ['type', 'status', 'reason', 'message', 'lastTransitionTime'],
};

const ENUMS: Record<string, readonly string[]> = {
  'spec.state': names<DesiredState>()(['Running', 'Paused', 'Stopped']),
  'spec.restartPolicy': names<RestartPolicy>()(['Always', 'OnFailure', 'Never']),
  'spec.disks[].mode': names<DiskMode>()(['cow', 'readWrite', 'readOnly']),
  'spec.interfaces[].transport': names<Transport>()(['tap', 'raw', 'hybrid', 'gre', 'l2tpv3', 'mcast', 'daemon', 'tuntap', 'slirp', 'vde']),
  'status.phase': names<Phase>()(['Pending', 'Starting', 'Running', 'Paused', 'Stopping', 'Stopped', 'Failed', 'Unknown']),
  'status.conditions[].status': names<Condition['status']>()(['True', 'False', 'Unknown']),
  'status.lastBackup.result': names<NonNullable<Status['lastBackup']>['result']>()(['Succeeded', 'Failed']),
};

function at(path: string): StructuralSchema {
  let schema: StructuralSchema | undefined = machineSchema();
  for (const part of path.split('.').filter(Boolean)) {
    const list = part.endsWith('[]');
    schema = schema?.properties?.[list ? part.slice(0, -2) : part];
    if (list) schema = schema?.items;
  }
  assert.ok(schema, `the CRD has no ${path}`);
  return schema;
}

describe('types.ts against the CRD schema', () => {
  for (const [path, fields] of Object.entries(FIELDS)) {
    it(`${path || 'UmlMachine'} has the same fields`, () => {
      assert.deepEqual(Object.keys(at(path).properties ?? {}).sort(), [...fields].sort());
    });
  }
  for (const [path, required] of Object.entries(REQUIRED)) {
    it(`${path} requires what the type requires`, () => assert.deepEqual([...(at(path).required ?? [])].sort(), [...required].sort()));
  }
  for (const [path, values] of Object.entries(ENUMS)) {
    it(`${path} has the same values`, () => assert.deepEqual(at(path).enum, values));
  }
  it('every enum in the schema is covered here', () => {
    const found: string[] = [];
    const walk = (schema: StructuralSchema, path: string) => {
      if (schema.enum) found.push(path);
      for (const [key, child] of Object.entries(schema.properties ?? {})) walk(child, path ? `${path}.${key}` : key);
      if (schema.items) walk(schema.items, `${path}[]`);
    };
    walk(machineSchema(), '');
    assert.deepEqual(found.sort(), [...Object.keys(ENUMS), 'status.disks[].mode', 'status.interfaces[].transport'].sort());
    assert.deepEqual(at('status.interfaces[].transport').enum, ENUMS['spec.interfaces[].transport']);
    assert.deepEqual(at('status.disks[].mode').enum, ENUMS['spec.disks[].mode']);
  });
  it('the constants name the CRD', () => {
    const crd = loadCrd();
    assert.equal(crd.spec.group, GROUP);
    assert.equal(crd.spec.versions[0]?.name, VERSION);
    assert.equal(API_VERSION, `${GROUP}/${VERSION}`);
    assert.equal(crd.spec.names.kind, KIND);
    assert.equal(crd.spec.names.plural, PLURAL);
  });
});

describe('a machine that uses every field', () => {
  const metadata: ObjectMeta = { name: 'full', namespace: 'default', uid: '6a0f3c2e-1b7d-4e0a-9c55-0d6f1e2a3b4c', generation: 2, finalizers: ['umlmon.io/machine'], labels: { app: 'x' } };
  const spec: Required<UmlMachineSpec> = {
    nodeName: 'worker-1',
    state: 'Paused',
    kernel: 'linux-6-1',
    memory: '256Mi',
    cmdline: ['loglevel=4', 'quiet'],
    disks: [
      { name: 'ubd0', image: 'base/debian-12.img', mode: 'cow' },
      { name: 'ubd1', image: 'data.img', mode: 'readWrite' },
      { name: 'ubd2', image: 'iso.img', mode: 'readOnly' },
    ],
    interfaces: [
      { name: 'vec0', transport: 'tap', tap: { ifname: 'umltap0' }, mac: 'fe:fd:0a:00:00:01' },
      { name: 'vec1', transport: 'raw', raw: { ifname: 'eth1' } },
      { name: 'vec2', transport: 'hybrid', hybrid: { ifname: 'umltap2' } },
      { name: 'vec3', transport: 'gre', gre: { local: '192.0.2.1', remote: '192.0.2.2', key: 7 } },
      { name: 'vec4', transport: 'l2tpv3', l2tpv3: { local: '2001:db8::1', remote: '2001:db8::2', localPort: 1701, remotePort: 1702, session: 9 } },
      { name: 'eth0', transport: 'mcast', mcast: { group: '239.192.0.1', port: 1102, ttl: 2 } },
      { name: 'eth1', transport: 'daemon', daemon: { switch: 'lan0' } },
      { name: 'eth2', transport: 'tuntap', tuntap: { ifname: 'umltap1' } },
      { name: 'eth3', transport: 'vde', vde: { switch: 'vde0' } },
      { name: 'eth4', transport: 'slirp' },
    ],
    restartPolicy: 'OnFailure',
    shutdownGracePeriodSeconds: 0,
    backup: { schedule: '*/30 * * * * *', retain: 10 },
  };
  const status: Required<UmlMachineStatus> = {
    phase: 'Paused',
    observedGeneration: 2,
    nodeName: 'worker-1',
    umid: 'k3v9x0a1b2',
    pid: 4242,
    startTime: '2026-11-21T21:00:00Z',
    bootTime: '2026-11-21T21:00:01Z',
    kernelVersion: 'Linux 0.0.0-test #1 Debian',
    restartCount: 1,
    memory: '256Mi',
    disks: [{ name: 'ubd0', image: 'base/debian-12.img', mode: 'cow', attached: true }],
    interfaces: [{ name: 'vec0', transport: 'tap', mac: 'fe:fd:0a:00:00:01', attached: false }],
    consoles: [{ name: 'con0', hostDevice: 'pty:/dev/pts/4' }],
    lastBackup: { time: '2026-11-21T03:00:00Z', result: 'Failed', location: '/var/lib/umlmon/backups/default/full', message: 'disk full' },
    conditions: [
      { type: 'Ready', status: 'True', reason: 'KernelBooted', message: 'up', lastTransitionTime: '2026-11-21T21:00:01Z', observedGeneration: 2 },
      { type: 'SpecValid', status: 'False', reason: 'UnknownKernel', message: 'no', lastTransitionTime: '2026-11-21T21:00:01Z' },
    ],
  };
  const machine: UmlMachine = { apiVersion: API_VERSION, kind: KIND, metadata, spec, status };

  it('satisfies the type (compiler) and the CRD (validateMachine), unchanged by defaulting and pruning', () => {
    const result = validateMachine(machine, { kernels: ['linux-6-1'], memoryMinBytes: 0, memoryMaxBytes: 2 ** 40 });
    assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.errors, null, 1));
    assert.deepEqual(result.machine, machine);
  });
});
