// The agent's configuration, as vmd has it: a YAML file (-f/--config, $UMLMON_CONFIG, or
// /etc/umlmon/config.yaml when present), then the environment, then flags, each overriding the
// one before. Loading is a pure function of (argv, env, readFile, hostname) so that every rule
// here is unit-tested; the file is checked with ajv against CONFIG_SCHEMA, and every problem
// names the key (or variable, or flag) to fix.
import { parseArgs } from 'node:util';
import { isAbsolute, join, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { parseQuantity as parseApiQuantity } from '../api/quantity.ts';

export const DEFAULT_CONFIG_PATH = '/etc/umlmon/config.yaml';
export const DEFAULT_LISTEN = ':9473';
/**
 * Added to every boot. lpj=auto: the delay-loop calibration's result, measured on this node's
 * first boot and reused. Arguments that only some kernels need go in that kernel's `args`
 * (Debian's packaged kernels: initcall_blacklist=raid6_select_algo on 6.x, raid6_init on 7.x,
 * to skip a ~0.85 s RAID6 benchmark that umlmon's own kernel does not have).
 */
export const DEFAULT_KERNEL_ARGS: readonly string[] = ['lpj=auto'];
/** umlmon's own kernel, as hack/setup.sh and the image install it (hack/build-kernel.sh). */
export const DEFAULT_KERNEL_PATH = '/usr/local/lib/umlmon/linux';

export type SourceKind = 'directory' | 'kubernetes';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export interface KernelEntry {
  path: string;
  args?: string[];
}

/** Where the control socket listens: rump_sp's URL forms. */
export type ControlAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'none' };

/** Where /healthz, /readyz and /metrics listen; undefined port means disabled. */
export interface ListenAddress {
  host: string;
  port: number;
}

export interface AgentConfig {
  nodeName: string;
  source: SourceKind;
  machinesDir: string;
  /** Path of a kubeconfig file; undefined means in-cluster credentials. */
  kubeconfig?: string;
  stateDir: string;
  imageRoot: string;
  backupDir: string;
  /** The raw listen string (":9473", "127.0.0.1:0", or "" for off) and its parsed form. */
  listen: string;
  listenAddress?: ListenAddress;
  control: string;
  controlAddress: ControlAddress;
  controlToken?: string;
  kernels: Record<string, KernelEntry>;
  defaultKernelArgs: string[];
  memory: { minBytes: number; maxBytes: number; defaultBytes: number };
  workers: number;
  resyncPeriodSeconds: number;
  logLevel: LogLevel;
  drainTimeoutSeconds: number;
  /** Which config file was read, if any (for the startup log). */
  configFile?: string;
}

export interface LoadConfigInput {
  argv: string[];
  env: Record<string, string | undefined>;
  /** Reads a file as UTF-8; throws (with code ENOENT when missing) like fs.readFileSync. */
  readFile: (path: string) => string;
  /** The machine's hostname, the default nodeName. */
  hostname: string;
  /** Extra flags the command accepts beyond the config's (e.g. drain's --timeout). */
  extraOptions?: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;
  /** Whether positional arguments are allowed (check's manifest paths). */
  allowPositionals?: boolean;
  /**
   * Relative paths given as flags or in the environment are taken from here, as any command
   * line tool does (`--state-dir .cache/state`). Paths in the config file must be absolute: a
   * daemon's config must not depend on where it was started from.
   */
  cwd?: string;
}

/** Keys whose values are filesystem paths. */
const PATH_KEYS = new Set(['machinesDir', 'kubeconfig', 'stateDir', 'imageRoot', 'backupDir', 'controlTokenFile']);

export type LoadConfigResult =
  | { ok: true; config: AgentConfig; positionals: string[]; extra: Record<string, unknown> }
  | { ok: false; errors: string[] };

// ---------------------------------------------------------------------------------------------
// The file's schema. Keys are camelCase; unknown keys are errors (a typo must not be ignored).

const quantity = { type: ['string', 'integer'] } as const;
const stringArray = { type: 'array', items: { type: 'string', minLength: 1 } } as const;

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    nodeName: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' },
    source: { enum: ['directory', 'kubernetes'] },
    machinesDir: { type: 'string', minLength: 1 },
    kubeconfig: { type: 'string', minLength: 1 },
    stateDir: { type: 'string', minLength: 1 },
    imageRoot: { type: 'string', minLength: 1 },
    backupDir: { type: 'string', minLength: 1 },
    listen: { type: 'string' },
    control: { type: 'string' },
    controlToken: { type: 'string', minLength: 16 },
    controlTokenFile: { type: 'string', minLength: 1 },
    kernels: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['path'],
        properties: { path: { type: 'string', minLength: 1 }, args: stringArray },
      },
    },
    defaultKernelArgs: stringArray,
    memory: {
      type: 'object',
      additionalProperties: false,
      properties: { min: quantity, max: quantity, default: quantity },
    },
    workers: { type: 'integer', minimum: 1, maximum: 64 },
    resyncPeriodSeconds: { type: 'integer', minimum: 1 },
    logLevel: { enum: [...LOG_LEVELS] },
    drainTimeoutSeconds: { type: 'integer', minimum: 0 },
  },
} as const;

interface RawConfig {
  nodeName?: string;
  source?: SourceKind;
  machinesDir?: string;
  kubeconfig?: string;
  stateDir?: string;
  imageRoot?: string;
  backupDir?: string;
  listen?: string;
  control?: string;
  controlToken?: string;
  controlTokenFile?: string;
  kernels?: Record<string, KernelEntry>;
  defaultKernelArgs?: string[];
  memory?: { min?: string | number; max?: string | number; default?: string | number };
  workers?: number;
  resyncPeriodSeconds?: number;
  logLevel?: LogLevel;
  drainTimeoutSeconds?: number;
}

let compiled: ReturnType<Ajv['compile']> | undefined;
function validateFile(raw: unknown): ErrorObject[] {
  compiled ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(CONFIG_SCHEMA);
  return compiled(raw) ? [] : [...(compiled.errors ?? [])];
}

/** "/kernels/default/path" → "kernels.default.path"; the root is "(top level)". */
function keyPath(instancePath: string, child?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  return parts.length === 0 ? '(top level)' : parts.join('.');
}

/** One line per ajv error, naming the key in the config file and what is wrong with it. */
export function describeSchemaError(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties':
      // Gone since status stopped carrying uptime and load (they moved to bootTime and metrics).
      if (e.instancePath === '' && e.params.additionalProperty === 'guestInfoIntervalSeconds') {
        return 'guestInfoIntervalSeconds: no longer a setting (status has no guest uptime or load to refresh: uptime follows from status.bootTime); remove it';
      }
      return `${keyPath(e.instancePath, String(e.params.additionalProperty))}: unknown key`;
    case 'required':
      return `${keyPath(e.instancePath, String(e.params.missingProperty))}: is required`;
    case 'enum':
      return `${keyPath(e.instancePath)}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    case 'propertyNames':
      return `${keyPath(e.instancePath)}: key '${String(e.params.propertyName)}' is not a valid name (lower-case letters, digits, '-' and '.')`;
    default:
      return `${keyPath(e.instancePath)}: ${e.message ?? 'is invalid'}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Quantities ("128Mi", "1G", 134217728), read as spec.memory is (src/api/quantity.ts).

/** Bytes of a Kubernetes memory quantity (or a plain byte count), or undefined when it is not one. */
export function parseQuantity(q: string | number): number | undefined {
  if (typeof q === 'number') return Number.isSafeInteger(q) && q >= 0 ? q : undefined;
  try {
    const bytes = parseApiQuantity(q.trim());
    return Number.isSafeInteger(bytes) ? bytes : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses.

/** ":9473", "0.0.0.0:9473", "127.0.0.1:0", "[::1]:9473"; "" or "off" disables. */
export function parseListen(value: string): ListenAddress | undefined | Error {
  if (value === '' || value === 'off') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) return new Error(`'${value}' is not host:port (e.g. ":9473" or "127.0.0.1:9473"), nor "off"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** rump_sp-style: unix:///abs/path, tcp://host:port, or "none". */
export function parseControl(value: string): ControlAddress | Error {
  if (value === 'none' || value === 'off' || value === '') return { kind: 'none' };
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length);
    if (!isAbsolute(path)) return new Error(`'${value}': a unix:// address needs an absolute path (unix:///var/lib/umlmon/control.sock)`);
    if (Buffer.byteLength(path) > 107) return new Error(`'${value}': unix socket paths are limited to 107 bytes`);
    return { kind: 'unix', path };
  }
  if (value.startsWith('tcp://')) {
    const listen = parseListen(value.slice('tcp://'.length));
    if (listen instanceof Error || listen === undefined) return new Error(`'${value}' is not tcp://host:port`);
    if (listen.host === '0.0.0.0' && !/^tcp:\/\/0\.0\.0\.0:/.test(value)) listen.host = '127.0.0.1';
    return { kind: 'tcp', host: listen.host, port: listen.port };
  }
  return new Error(`'${value}' is not a control address: use unix:///path, tcp://host:port or none`);
}

// ---------------------------------------------------------------------------------------------
// Environment and flags: each names one key of the file, with how to read a string into it.

type Setter = (raw: RawConfig, value: string) => string | undefined;

function intSetter(key: 'workers' | 'resyncPeriodSeconds' | 'drainTimeoutSeconds'): Setter {
  return (raw, value) => {
    const v = parseDuration(value);
    if (v === undefined) return `'${value}' is not a whole number of seconds`;
    raw[key] = v;
    return undefined;
  };
}

function fromCwd(cwd: string | undefined, key: string, value: string): string {
  return cwd !== undefined && PATH_KEYS.has(key) ? resolve(cwd, value) : value;
}

/** "30", "30s", "2m", "1h" → seconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^([0-9]+)(s|m|h)?$/.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

const stringSetter = (key: 'nodeName' | 'machinesDir' | 'kubeconfig' | 'stateDir' | 'imageRoot' | 'backupDir' | 'listen' | 'control' | 'controlToken' | 'controlTokenFile'): Setter =>
  (raw, value) => { raw[key] = value; return undefined; };

const SETTERS: Record<string, Setter> = {
  nodeName: stringSetter('nodeName'),
  source: (raw, v) => {
    if (v !== 'directory' && v !== 'kubernetes') return `'${v}' must be directory or kubernetes`;
    raw.source = v;
    return undefined;
  },
  machinesDir: stringSetter('machinesDir'),
  kubeconfig: stringSetter('kubeconfig'),
  stateDir: stringSetter('stateDir'),
  imageRoot: stringSetter('imageRoot'),
  backupDir: stringSetter('backupDir'),
  listen: stringSetter('listen'),
  control: stringSetter('control'),
  controlToken: stringSetter('controlToken'),
  controlTokenFile: stringSetter('controlTokenFile'),
  workers: intSetter('workers'),
  resyncPeriodSeconds: intSetter('resyncPeriodSeconds'),
  drainTimeoutSeconds: intSetter('drainTimeoutSeconds'),
  logLevel: (raw, v) => {
    if (!(LOG_LEVELS as readonly string[]).includes(v)) return `'${v}' must be one of ${LOG_LEVELS.join(', ')}`;
    raw.logLevel = v as LogLevel;
    return undefined;
  },
};

/** Environment variables, each for one key. */
export const ENV_KEYS: Record<string, keyof typeof SETTERS> = {
  NODE_NAME: 'nodeName',
  UMLMON_SOURCE: 'source',
  UMLMON_MACHINES_DIR: 'machinesDir',
  KUBECONFIG: 'kubeconfig',
  UMLMON_STATE_DIR: 'stateDir',
  UMLMON_IMAGE_ROOT: 'imageRoot',
  UMLMON_BACKUP_DIR: 'backupDir',
  UMLMON_LISTEN: 'listen',
  UMLMON_CONTROL: 'control',
  UMLMON_CONTROL_TOKEN: 'controlToken',
  UMLMON_CONTROL_TOKEN_FILE: 'controlTokenFile',
  UMLMON_WORKERS: 'workers',
  UMLMON_LOG_LEVEL: 'logLevel',
};

/** Flags (kebab-case of the key), each for one key. */
const FLAG_KEYS: Record<string, keyof typeof SETTERS> = {
  'node-name': 'nodeName',
  source: 'source',
  'machines-dir': 'machinesDir',
  kubeconfig: 'kubeconfig',
  'state-dir': 'stateDir',
  'image-root': 'imageRoot',
  'backup-dir': 'backupDir',
  listen: 'listen',
  control: 'control',
  'control-token-file': 'controlTokenFile',
  workers: 'workers',
  'resync-period': 'resyncPeriodSeconds',
  'drain-timeout': 'drainTimeoutSeconds',
  'log-level': 'logLevel',
};

export const CONFIG_FLAGS_HELP = `config options (each overrides the config file and the environment):
  -f, --config PATH            config file (default $UMLMON_CONFIG, else ${DEFAULT_CONFIG_PATH} if present)
  --node-name NAME             this node's name ($NODE_NAME; default the hostname)
  --source directory|kubernetes  where machines come from ($UMLMON_SOURCE; default directory)
  --machines-dir DIR           directory source ($UMLMON_MACHINES_DIR; default /etc/umlmon/machines)
  --kubeconfig PATH            kubernetes source ($KUBECONFIG; default in-cluster)
  --state-dir DIR              ($UMLMON_STATE_DIR; default /var/lib/umlmon)
  --image-root DIR             ($UMLMON_IMAGE_ROOT; default <stateDir>/images)
  --backup-dir DIR             ($UMLMON_BACKUP_DIR; default <stateDir>/backups)
  --listen HOST:PORT|off       health and metrics ($UMLMON_LISTEN; default ${DEFAULT_LISTEN})
  --control URL                unix:///path, tcp://host:port or none ($UMLMON_CONTROL)
  --control-token-file PATH    bearer token for a tcp:// control address
  --kernel NAME=PATH           add or replace a kernel (repeatable)
  --workers N                  parallel reconciles (default 32)
  --resync-period DURATION     safety-net resync (default 600s)
  --drain-timeout DURATION     default for drain (default 120s)
  --log-level LEVEL            trace|debug|info|warn|error|fatal|silent ($UMLMON_LOG_LEVEL)
  -v, --verbose                same as --log-level debug`;

function readOptional(readFile: (p: string) => string, path: string): string | undefined {
  try {
    return readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Loads, merges and checks the configuration. Never throws; every problem is in `errors`. */
export function loadConfig(input: LoadConfigInput): LoadConfigResult {
  const errors: string[] = [];

  const options: NonNullable<Parameters<typeof parseArgs>[0]>['options'] = {
    config: { type: 'string', short: 'f' },
    verbose: { type: 'boolean', short: 'v' },
    kernel: { type: 'string', multiple: true },
    ...Object.fromEntries(Object.keys(FLAG_KEYS).map((f) => [f, { type: 'string' as const }])),
    ...(input.extraOptions ?? {}),
  };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: input.argv, options, allowPositionals: input.allowPositionals ?? false, strict: true }) as typeof parsed;
  } catch (err) {
    return { ok: false, errors: [errMessage(err)] };
  }
  const flags = parsed.values;

  // 1. The file.
  const explicit = (flags.config as string | undefined) ?? input.env.UMLMON_CONFIG;
  const path = explicit ?? DEFAULT_CONFIG_PATH;
  let text: string | undefined;
  try {
    text = explicit !== undefined ? input.readFile(path) : readOptional(input.readFile, path);
  } catch (err) {
    return { ok: false, errors: [`config file ${path}: cannot read it: ${errMessage(err)}`] };
  }
  let raw: RawConfig = {};
  if (text !== undefined) {
    let doc: unknown;
    try {
      doc = parseYaml(text, { prettyErrors: true });
    } catch (err) {
      return { ok: false, errors: [`config file ${path}: not valid YAML: ${errMessage(err)}`] };
    }
    if (doc !== null && doc !== undefined) {
      const schemaErrors = validateFile(doc);
      if (schemaErrors.length > 0) return { ok: false, errors: schemaErrors.map((e) => `config file ${path}: ${describeSchemaError(e)}`) };
      raw = doc as RawConfig;
    }
  }

  // 2. The environment, 3. flags.
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const value = input.env[name];
    if (value === undefined || value === '') continue;
    const problem = SETTERS[key]?.(raw, fromCwd(input.cwd, key, value));
    if (problem) errors.push(`environment ${name} (${key}): ${problem}`);
  }
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const value = flags[flag];
    if (typeof value !== 'string') continue;
    const problem = SETTERS[key]?.(raw, fromCwd(input.cwd, key, value));
    if (problem) errors.push(`flag --${flag} (${key}): ${problem}`);
  }
  if (flags.verbose === true && flags['log-level'] === undefined) raw.logLevel = 'debug';
  for (const spec of (flags.kernel as string[] | undefined) ?? []) {
    const eq = spec.indexOf('=');
    if (eq <= 0) { errors.push(`flag --kernel: '${spec}' is not NAME=PATH`); continue; }
    raw.kernels = { ...(raw.kernels ?? {}), [spec.slice(0, eq)]: { path: spec.slice(eq + 1) } };
  }

  // 4. Defaults, derived paths, and the checks a schema cannot express.
  const stateDir = raw.stateDir ?? '/var/lib/umlmon';
  const paths = { stateDir, imageRoot: raw.imageRoot ?? join(stateDir, 'images'), backupDir: raw.backupDir ?? join(stateDir, 'backups'), machinesDir: raw.machinesDir ?? '/etc/umlmon/machines' };
  for (const [key, value] of Object.entries(paths)) {
    if (!isAbsolute(value)) errors.push(`${key}: '${value}' must be an absolute path`);
  }
  const kernels = raw.kernels ?? { default: { path: DEFAULT_KERNEL_PATH } };
  for (const [name, k] of Object.entries(kernels)) {
    if (!isAbsolute(k.path)) errors.push(`kernels.${name}.path: '${k.path}' must be an absolute path`);
  }

  const memory = { min: raw.memory?.min ?? '40Mi', max: raw.memory?.max ?? '16Gi', default: raw.memory?.default ?? '128Mi' };
  const bytes: Record<string, number> = {};
  for (const [k, q] of Object.entries(memory)) {
    const b = parseQuantity(q);
    if (b === undefined) errors.push(`memory.${k}: '${q}' is not a memory quantity (e.g. 128Mi, 1Gi)`);
    else bytes[k] = b;
  }
  if (bytes.min !== undefined && bytes.max !== undefined && bytes.default !== undefined) {
    if (bytes.min > bytes.max) errors.push(`memory: min (${memory.min}) is above max (${memory.max})`);
    else if (bytes.default < bytes.min || bytes.default > bytes.max) errors.push(`memory.default: ${memory.default} is outside min..max (${memory.min}..${memory.max})`);
  }

  const listen = raw.listen ?? DEFAULT_LISTEN;
  const listenAddress = parseListen(listen);
  if (listenAddress instanceof Error) errors.push(`listen: ${listenAddress.message}`);

  const control = raw.control ?? `unix://${join(stateDir, 'control.sock')}`;
  const controlAddress = parseControl(control);
  if (controlAddress instanceof Error) errors.push(`control: ${controlAddress.message}`);

  let controlToken = raw.controlToken;
  if (raw.controlTokenFile !== undefined) {
    try {
      controlToken = input.readFile(raw.controlTokenFile).trim();
    } catch (err) {
      errors.push(`controlTokenFile: cannot read ${raw.controlTokenFile}: ${errMessage(err)}`);
    }
  }
  if (controlToken !== undefined && controlToken.length < 16) errors.push('controlToken: must be at least 16 characters');
  if (!(controlAddress instanceof Error) && controlAddress.kind === 'tcp' && controlToken === undefined) {
    errors.push(`control: ${control} is a tcp:// address and needs a bearer token (controlToken or controlTokenFile); refusing to listen without one`);
  }

  const nodeName = raw.nodeName ?? input.hostname.toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) errors.push(`nodeName: '${nodeName}' is not a valid node name`);

  if (errors.length > 0) return { ok: false, errors };

  const config: AgentConfig = {
    nodeName,
    source: raw.source ?? 'directory',
    machinesDir: paths.machinesDir,
    stateDir,
    imageRoot: paths.imageRoot,
    backupDir: paths.backupDir,
    listen,
    control,
    controlAddress: controlAddress as ControlAddress,
    kernels,
    defaultKernelArgs: raw.defaultKernelArgs ?? [...DEFAULT_KERNEL_ARGS],
    memory: { minBytes: bytes.min as number, maxBytes: bytes.max as number, defaultBytes: bytes.default as number },
    // A pass that starts a guest mostly waits for the kernel (its mconsole, ~0.1 s), not for
    // CPU: 4 workers made 100 machines at once wait on each other, not on the node.
    workers: raw.workers ?? 32,
    resyncPeriodSeconds: raw.resyncPeriodSeconds ?? 600,
    logLevel: raw.logLevel ?? 'info',
    drainTimeoutSeconds: raw.drainTimeoutSeconds ?? 120,
  };
  if (raw.kubeconfig !== undefined) config.kubeconfig = raw.kubeconfig;
  if (listenAddress !== undefined && !(listenAddress instanceof Error)) config.listenAddress = listenAddress;
  if (controlToken !== undefined) config.controlToken = controlToken;
  if (text !== undefined) config.configFile = path;
  const extra = Object.fromEntries(Object.keys(input.extraOptions ?? {}).map((k) => [k, flags[k]]));
  return { ok: true, config, positionals: parsed.positionals, extra };
}
