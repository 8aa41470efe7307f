// Validation of a UmlMachine, as the node agent must do it: everything the API server checks
// from the CRD (structure, patterns, bounds, unique list keys, CEL rules; older API servers skip
// the CEL rules and the directory source has no API server at all), and what no schema can know
// (this node's kernels and memory bounds, image files, cron fields). Pure, except for the
// optional imageExists callback the caller passes in.
import { isIP } from 'node:net';
import { posix } from 'node:path';
import { nodeCron } from './cron.ts';
import { reservedOption } from './kernel-options.ts';
import { formatBytes, parseQuantity } from './quantity.ts';
import { machineSchemaValidator } from './machine-validator.ts';
import { applyDefaults, machineSchema, pruneUnknownFields, type ErrorObject } from './schema.ts';
import { API_VERSION, KIND, type UmlMachine } from './types.ts';

export interface FieldError {
  /** Where, in the object, e.g. "spec.disks[1].image". */
  field: string;
  /** What is wrong and how to fix it. */
  message: string;
}

export interface ValidationLimits {
  /** Kernel names this node's agent knows (spec.kernel must be one of them). */
  kernels: string[];
  memoryMinBytes: number;
  memoryMaxBytes: number;
  /** Whether an image (a name already checked to stay under the image root) exists there. */
  imageExists?: (image: string) => boolean;
}

export type ValidationResult = { ok: true; machine: UmlMachine } | { ok: false; errors: FieldError[] };

const LEGACY_TRANSPORTS = ['mcast', 'daemon', 'tuntap', 'slirp', 'vde'];
const VECTOR_TRANSPORTS = ['tap', 'raw', 'hybrid', 'gre', 'l2tpv3'];
/** Transports that carry a settings block of their own name (slirp has none). */
const SETTINGS_BLOCKS = ['tap', 'raw', 'hybrid', 'tuntap', 'mcast', 'daemon', 'vde', 'gre', 'l2tpv3'];
const SETTINGS_EXAMPLE: Record<string, string> = {
  tap: 'tap: {switch: lan0}',
  raw: 'raw: {ifname: eth0}',
  hybrid: 'hybrid: {ifname: umltap0}',
  tuntap: 'tuntap: {ifname: umltap0}',
  mcast: 'mcast: {group: 239.192.0.1, port: 1102}',
  daemon: 'daemon: {switch: lan0}',
  vde: 'vde: {switch: lan0}',
  gre: 'gre: {local: 192.0.2.1, remote: 192.0.2.2}',
  l2tpv3: 'l2tpv3: {local: 192.0.2.1, remote: 192.0.2.2}',
};

/**
 * Checks a UmlMachine as read from the API server or a YAML file. On success the machine has
 * unknown fields pruned and defaults applied (state, kernel, memory, disk modes, ...), and
 * spec.memory is a string. On failure every problem found is listed, each naming its field.
 * Only the object's request (apiVersion, kind, metadata.name, spec) is judged; status is pruned
 * like the rest but never a reason to refuse.
 */
export function validateMachine(obj: unknown, limits: ValidationLimits): ValidationResult {
  const schema = machineSchema();
  const machine = pruneUnknownFields(obj, schema);
  applyDefaults(machine, schema);

  const errors: FieldError[] = [];
  errors.push(...envelopeErrors(machine));
  const structural = machineSchemaValidator();
  // Status is the agent's own report, not the user's request: a status another agent version
  // wrote must never make a machine's spec look invalid (that could stop a user's guest).
  if (!structural(machine)) errors.push(...schemaErrors(structural.errors ?? [], machine).filter((e) => !/^status(\.|\[|$)/.test(e.field)));

  const spec = isRecord(machine) && isRecord(machine.spec) ? machine.spec : undefined;
  if (spec) {
    const semantic = [
      ...cmdlineErrors(spec.cmdline),
      ...diskErrors(spec.disks, limits),
      ...interfaceErrors(spec.interfaces),
      ...memoryErrors(spec.memory, limits),
      ...kernelErrors(spec.kernel, limits),
      ...backupErrors(spec),
    ];
    // Where the image check says precisely why a name is refused ("..", absolute path), that
    // replaces the schema's generic pattern message on the same field.
    const explained = new Set(semantic.filter((e) => e.field.endsWith('.image')).map((e) => e.field));
    const kept = errors.filter((e) => !(explained.has(e.field) && e.message.startsWith(PATTERN_PREFIX)));
    errors.length = 0;
    errors.push(...kept, ...semantic);
    if (typeof spec.memory === 'number') spec.memory = String(spec.memory);
  }
  if (errors.length > 0) return { ok: false, errors: dedupe(errors) };
  return { ok: true, machine: machine as UmlMachine };
}

/** One line per error, "field: message", as the agent logs it and writes it to status. */
export function formatFieldErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `${e.field}: ${e.message}`).join('\n');
}

// ---------------------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function dedupe(errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = `${e.field}\0${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** What the API server checks outside the schema: the type of the object and its name. */
function envelopeErrors(machine: unknown): FieldError[] {
  if (!isRecord(machine)) return [{ field: '(object)', message: 'must be a YAML or JSON object (a UmlMachine)' }];
  const errors: FieldError[] = [];
  if (machine.apiVersion !== API_VERSION) {
    errors.push({ field: 'apiVersion', message: `"${String(machine.apiVersion)}" is not ${API_VERSION}; set apiVersion: ${API_VERSION}` });
  }
  if (machine.kind !== KIND) errors.push({ field: 'kind', message: `"${String(machine.kind)}" is not ${KIND}; set kind: ${KIND}` });
  const metadata = machine.metadata;
  if (!isRecord(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
    errors.push({ field: 'metadata.name', message: 'is required: give the machine a name' });
  }
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Schema errors from ajv, in the words of this API.

const PATTERN_PREFIX = 'does not match';

/** What each patterned field wants, keyed by its path with list indexes removed. */
const PATTERN_HINTS: Record<string, string> = {
  'spec.nodeName': "use the node's name: lowercase letters, digits, '-' and '.', e.g. worker-1",
  'spec.kernel': "use a kernel name from the agent's configuration, e.g. default (lowercase letters, digits, '-', '.', '_'; never a path)",
  'spec.memory': 'write a quantity of bytes such as 64Mi, 512Mi, 1Gi or 134217728 (suffixes Ki Mi Gi Ti Pi Ei, k M G T P E)',
  'spec.cmdline[]': 'write one kernel argument per entry, without whitespace or double quotes and not starting with "-", e.g. loglevel=4',
  'spec.disks[].name': 'use ubd0 to ubd15',
  'spec.disks[].image':
    "name a file under the image root: letters, digits, '.', '_', '+', '-', with '/' between directory names; no absolute path, no '..', no name starting with '.'",
  'spec.interfaces[].name': 'use ethN for the legacy driver or vecN for the vector driver (N from 0 to 99, no leading zero), e.g. eth0 or vec0',
  'spec.interfaces[].mac': 'write six lowercase hex pairs separated by colons with an even first octet (unicast), e.g. fe:fd:0a:00:00:01',
  'spec.interfaces[].tap.ifname': "use a host interface name: up to 15 letters, digits, '_', '.', '-', e.g. umltap0",
  'spec.interfaces[].raw.ifname': "use a host interface name: up to 15 letters, digits, '_', '.', '-', e.g. eth1",
  'spec.interfaces[].hybrid.ifname': "use a host interface name: up to 15 letters, digits, '_', '.', '-', e.g. umltap0",
  'spec.interfaces[].tuntap.ifname': "use a host interface name: up to 15 letters, digits, '_', '.', '-', e.g. umltap0",
  'spec.interfaces[].mcast.group': 'use an IPv4 multicast address, 224.0.0.0 to 239.255.255.255, e.g. 239.192.0.1',
  'spec.interfaces[].daemon.switch': "use a switch name: lowercase letters, digits and '-', e.g. lan0",
  'spec.interfaces[].vde.switch': "use a switch name: lowercase letters, digits and '-', e.g. lan0",
  'spec.interfaces[].gre.local': 'use an IPv4 or IPv6 address',
  'spec.interfaces[].gre.remote': 'use an IPv4 or IPv6 address',
  'spec.interfaces[].l2tpv3.local': 'use an IPv4 or IPv6 address',
  'spec.interfaces[].l2tpv3.remote': 'use an IPv4 or IPv6 address',
  'spec.backup.schedule': 'write a cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), e.g. "0 3 * * *"',
};

/** "/spec/disks/1/image" → "spec.disks[1].image" */
export function fieldPath(instancePath: string): string {
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^[0-9]+$/.test(segment)) out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

function valueAt(root: unknown, instancePath: string): unknown {
  let value = root;
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    value = isRecord(value) ? value[segment] : Array.isArray(value) ? value[Number(segment)] : undefined;
  }
  return value;
}

function show(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : JSON.stringify(value);
}

/** What an anyOf of required keys wants, by the field it is on (list indexes removed). */
const ANY_OF_HINTS: Record<string, string> = {
  'spec.interfaces[].tap': 'needs ifname (a host tap device), switch (a node LAN), or both, e.g. tap: {switch: lan0}',
};

function schemaErrors(errors: ErrorObject[], machine: unknown): FieldError[] {
  const out: FieldError[] = [];
  // An anyOf of "required" branches reports each branch's missing key and then the anyOf: one
  // sentence for the anyOf says it better than "ifname is required" next to "switch is required".
  const anyOfAt = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.schemaPath.replace(/\/anyOf$/, '')));
  for (const e of errors) {
    if (e.keyword === 'required' && [...anyOfAt].some((p) => e.schemaPath.startsWith(`${p}/anyOf/`))) continue;
    const field = fieldPath(e.instancePath);
    const value = valueAt(machine, e.instancePath);
    const child = (name: string) => (field === '' ? name : `${field}.${name}`);
    const params = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'required':
        out.push({ field: child(String(params.missingProperty)), message: 'is required' });
        break;
      case 'enum':
        out.push({ field, message: `${show(value)} is not one of ${(params.allowedValues as unknown[]).join(', ')}` });
        break;
      case 'pattern': {
        const hint = PATTERN_HINTS[field.replace(/\[[0-9]+\]/g, '[]')];
        out.push({ field, message: `${PATTERN_PREFIX} ${params.pattern}: ${show(value)}${hint ? `; ${hint}` : ''}` });
        break;
      }
      case 'type':
        out.push({ field, message: `must be ${describeType(params.type)}, not ${show(value)}` });
        break;
      case 'minimum':
        out.push({ field, message: `${show(value)} is below the minimum of ${params.limit}` });
        break;
      case 'maximum':
        out.push({ field, message: `${show(value)} is above the maximum of ${params.limit}` });
        break;
      case 'maxItems':
        out.push({ field, message: `has more than ${params.limit} entries; remove some` });
        break;
      case 'maxLength':
        out.push({ field, message: `is longer than ${params.limit} characters` });
        break;
      case 'minLength':
        out.push({ field, message: params.limit === 1 ? 'must not be empty' : `is shorter than ${params.limit} characters` });
        break;
      case 'format':
        out.push({ field, message: `${show(value)} is not ${describeFormat(String(params.format))}` });
        break;
      case 'anyOf':
        out.push({ field, message: ANY_OF_HINTS[field.replace(/\[[0-9]+\]/g, '[]')] ?? 'does not match any of the allowed forms' });
        break;
      default:
        out.push({ field, message: e.message ?? `fails the schema's ${e.keyword} check` });
    }
  }
  return out;
}

function describeType(type: unknown): string {
  const names: Record<string, string> = { integer: 'an integer', number: 'a number', string: 'a string', boolean: 'true or false', object: 'an object (a mapping)', array: 'a list' };
  const types = String(type).split(',');
  if (types.includes('integer') && types.includes('string')) return 'a quantity such as 64Mi (or an integer number of bytes)';
  return types.map((t) => names[t] ?? t).join(' or ');
}

function describeFormat(format: string): string {
  if (format === 'date-time') return 'an RFC 3339 time such as 2026-01-02T03:04:05Z';
  if (format === 'int32') return 'a 32-bit integer';
  return `a valid ${format}`;
}

// ---------------------------------------------------------------------------------------------
// The CRD's CEL rules and list-map keys, and the checks no schema can do.

function cmdlineErrors(cmdline: unknown): FieldError[] {
  if (!Array.isArray(cmdline)) return [];
  const errors: FieldError[] = [];
  cmdline.forEach((argument, i) => {
    if (typeof argument !== 'string') return;
    const field = `spec.cmdline[${i}]`;
    const reserved = reservedOption(argument);
    if (reserved) {
      const option = argument.slice(0, argument.search(/[=:]/) + 1);
      errors.push({ field, message: `"${argument}": the kernel option ${option} is reserved; ${reserved.instead}` });
    }
    if (argument.includes('\0')) errors.push({ field, message: 'contains a NUL character; remove it' });
  });
  return errors;
}

/** Why an image name is refused, or undefined when it stays under the image root. */
export function imageNameProblem(image: string): string | undefined {
  if (image.includes('\0')) return 'contains a NUL character; name a file under the image root';
  if (image.startsWith('/')) return `"${image}" is an absolute path; name a file under the image root instead, e.g. ${posix.basename(image) || 'disk.img'}`;
  const segments = image.split('/');
  if (segments.some((s) => s === '..')) return `"${image}" has a ".." segment, which would leave the image root; name a file under the image root`;
  if (segments.some((s) => s === '.' || s === '')) return `"${image}" has an empty or "." path segment; write it as ${posix.normalize(image).replace(/\/$/, '')}`;
  if (segments.some((s) => s.startsWith('.'))) return `"${image}" names a hidden file (a segment starts with "."); rename it`;
  return undefined;
}

function diskErrors(disks: unknown, limits: ValidationLimits): FieldError[] {
  if (!Array.isArray(disks)) return [];
  const errors: FieldError[] = [];
  const seen = new Map<string, number>();
  disks.forEach((disk, i) => {
    if (!isRecord(disk)) return;
    if (typeof disk.name === 'string') {
      const first = seen.get(disk.name);
      if (first !== undefined) {
        errors.push({ field: `spec.disks[${i}].name`, message: `${disk.name} is already listed as spec.disks[${first}]; each disk name may appear once` });
      } else seen.set(disk.name, i);
    }
    if (typeof disk.image === 'string') {
      const problem = imageNameProblem(disk.image);
      if (problem) errors.push({ field: `spec.disks[${i}].image`, message: problem });
      else if (limits.imageExists && !limits.imageExists(disk.image)) {
        errors.push({ field: `spec.disks[${i}].image`, message: `"${disk.image}" is not in this node's image root; copy the image there or fix the name` });
      }
    }
  });
  return errors;
}

function interfaceErrors(interfaces: unknown): FieldError[] {
  if (!Array.isArray(interfaces)) return [];
  const errors: FieldError[] = [];
  const names = new Map<string, number>();
  const macs = new Map<string, number>();
  interfaces.forEach((iface, i) => {
    if (!isRecord(iface)) return;
    const field = `spec.interfaces[${i}]`;
    const name = typeof iface.name === 'string' ? iface.name : '';
    const transport = typeof iface.transport === 'string' ? iface.transport : '';
    if (name !== '') {
      const first = names.get(name);
      if (first !== undefined) errors.push({ field: `${field}.name`, message: `${name} is already listed as spec.interfaces[${first}]; each interface name may appear once` });
      else names.set(name, i);
    }
    if (typeof iface.mac === 'string') {
      const mac = iface.mac.toLowerCase();
      const first = macs.get(mac);
      if (first !== undefined) errors.push({ field: `${field}.mac`, message: `${iface.mac} is already the MAC of spec.interfaces[${first}]; each interface needs its own MAC address (or leave mac out to get one from the node's pool)` });
      else macs.set(mac, i);
    }
    if (name.startsWith('eth') && transport !== '' && !LEGACY_TRANSPORTS.includes(transport)) {
      errors.push({
        field,
        message: `${name} uses the legacy driver, which has no transport ${transport}: use mcast, daemon, tuntap, slirp or vde, or rename it vec${name.slice(3)} for the vector driver`,
      });
    }
    if (name.startsWith('vec') && transport !== '' && !VECTOR_TRANSPORTS.includes(transport)) {
      errors.push({
        field,
        message: `${name} uses the vector driver, which has no transport ${transport}: use tap, raw, hybrid, gre or l2tpv3, or rename it eth${name.slice(3)} for the legacy driver`,
      });
    }
    if (SETTINGS_BLOCKS.includes(transport) && iface[transport] === undefined) {
      errors.push({ field, message: `transport ${transport} needs the ${transport} settings block, e.g. ${SETTINGS_EXAMPLE[transport]}` });
    }
    for (const block of SETTINGS_BLOCKS) {
      if (block !== transport && iface[block] !== undefined) {
        errors.push({ field, message: `the ${block} settings block belongs to transport ${block} only; remove it or set transport: ${block}` });
      }
    }
    for (const tunnel of ['gre', 'l2tpv3']) {
      const settings = iface[tunnel];
      if (!isRecord(settings)) continue;
      const local = typeof settings.local === 'string' ? isIP(settings.local) : 0;
      const remote = typeof settings.remote === 'string' ? isIP(settings.remote) : 0;
      for (const [key, family] of [['local', local], ['remote', remote]] as const) {
        if (typeof settings[key] === 'string' && family === 0) {
          errors.push({ field: `${field}.${tunnel}.${key}`, message: `"${settings[key]}" is not an IPv4 or IPv6 address` });
        }
      }
      if (local !== 0 && remote !== 0 && local !== remote) {
        errors.push({ field: `${field}.${tunnel}`, message: `local and remote must both be IPv4 or both IPv6` });
      }
    }
  });
  return errors;
}

function memoryErrors(memory: unknown, limits: ValidationLimits): FieldError[] {
  if (typeof memory !== 'string' && typeof memory !== 'number') return [];
  let bytes: number;
  try {
    bytes = typeof memory === 'number' ? memory : parseQuantity(memory);
  } catch {
    return []; // the schema's pattern already says how to write it
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    return [{ field: 'spec.memory', message: `${memory} is not a whole number of bytes that this node can use; write a quantity such as 64Mi` }];
  }
  const shown = typeof memory === 'number' ? `${memory} bytes` : memory;
  if (bytes < limits.memoryMinBytes) {
    const min = formatBytes(limits.memoryMinBytes);
    return [{ field: 'spec.memory', message: `${shown} is below this node's minimum of ${min}; use at least ${min}` }];
  }
  if (bytes > limits.memoryMaxBytes) {
    const max = formatBytes(limits.memoryMaxBytes);
    return [{ field: 'spec.memory', message: `${shown} is above this node's maximum of ${max}; use at most ${max}` }];
  }
  return [];
}

function kernelErrors(kernel: unknown, limits: ValidationLimits): FieldError[] {
  if (typeof kernel !== 'string' || limits.kernels.includes(kernel)) return [];
  const known = limits.kernels.length > 0 ? limits.kernels.join(', ') : 'none are configured';
  return [{ field: 'spec.kernel', message: `"${kernel}" is not a kernel this node knows (known: ${known}); use one of them or add it to the agent's configuration` }];
}

function backupErrors(spec: Record<string, unknown>): FieldError[] {
  const errors: FieldError[] = [];
  const backup = spec.backup;
  if (!isRecord(backup)) return errors;
  const disks = Array.isArray(spec.disks) ? spec.disks : [];
  if (!disks.some((d) => isRecord(d) && d.mode !== 'readOnly')) {
    errors.push({ field: 'spec', message: 'spec.backup needs at least one disk with mode cow or readWrite to back up; add such a disk or remove spec.backup' });
  }
  const schedule = backup.schedule;
  // Only expressions of the right shape reach node-cron; the schema's pattern explains the rest.
  if (typeof schedule === 'string' && /^\S+( +\S+){4,5}$/.test(schedule) && !nodeCron().validate(schedule)) {
    const detail = nodeCron().validateDetailed(schedule).errors?.map((e) => e.message).join('; ');
    errors.push({ field: 'spec.backup.schedule', message: `"${schedule}" is not a valid cron expression${detail ? ` (${detail})` : ''}; e.g. "0 3 * * *" is 03:00 every day` });
  }
  return errors;
}
