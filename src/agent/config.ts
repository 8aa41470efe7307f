// The agent's configuration, as vmd has it: a YAML file (-f/--config, $UMLMON_CONFIG, or
// /etc/umlmon/config.yaml when present), then the environment, then flags, each overriding the
// one before. Loading is a pure function of (flags, env, readFile, hostname) so that every rule
// here is unit-tested; the file is checked with ajv against CONFIG_SCHEMA, and every problem
// names the key (or variable, or flag) to fix. The command line itself is parsed in src/cli
// (config-args.ts), with the flags this table declares (CONFIG_FLAG_OPTIONS).
import { isAbsolute, join, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import validateConfigFile from './config-validator.generated.ts';
import { parse as parseYaml } from 'yaml';
import { parseQuantity } from '../api/quantity.ts';
import type { KernelEntry } from './machine-config.ts';

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

export type { KernelEntry } from './machine-config.ts';

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
  /** Each guest's console.log is rotated to console.log.1 past this size. */
  consoleLogMaxBytes: number;
  workers: number;
  resyncPeriodSeconds: number;
  logLevel: LogLevel;
  drainTimeoutSeconds: number;
  /** Which config file was read, if any (for the startup log). */
  configFile?: string;
}

/** The config's flags as parsed from a command line (src/cli/config-args.ts): by flag name. */
export interface ConfigFlags {
  config?: string;
  verbose?: boolean;
  /** --kernel NAME=PATH, in order. */
  kernel?: string[];
  /** Every other flag of a setting, by its name ("state-dir"). */
  [flag: string]: string | boolean | string[] | undefined;
}

export interface LoadConfigInput {
  flags: ConfigFlags;
  env: Record<string, string | undefined>;
  /** Reads a file as UTF-8; throws (with code ENOENT when missing) like fs.readFileSync. */
  readFile: (path: string) => string;
  /** The machine's hostname, the default nodeName. */
  hostname: string;
  /**
   * Relative paths given as flags or in the environment are taken from here, as any command
   * line tool does (`--state-dir .cache/state`). Paths in the config file must be absolute: a
   * daemon's config must not depend on where it was started from.
   */
  cwd?: string;
}

export type LoadConfigResult =
  | { ok: true; config: AgentConfig; warnings: string[] }
  | { ok: false; errors: string[] };

// ---------------------------------------------------------------------------------------------
// The settings, each once: its schema in the file, its environment variable and flag (if any),
// how a string from either is read, its help line and its default as shown. The file's schema,
// ENV_KEYS, the flags and CONFIG_FLAGS_HELP are made from this table; docs/configuration.md's
// table of keys is checked against it (test/unit/agent-config.test.ts).

/** How a value from the environment or a flag is read: the value, or why it is not one. */
type Reader<T> = (value: string) => T | { problem: string };

interface Setting<T> {
  /** The key's schema in the config file. */
  schema: Record<string, unknown>;
  env?: string;
  /** The flag (kebab-case), with the placeholder for its value in the help. */
  flag?: { name: string; arg: string };
  /** One line of help, after the flag. */
  help?: string;
  /** The default as the help and the docs say it. */
  shownDefault: string;
  /** The default value, where it is one value (others are derived in loadConfig). */
  value?: T;
  /** Reads the environment variable or flag; settings that are only in the file have none. */
  read?: Reader<T>;
  /** A path: relative values from flags or the environment are taken from the working directory. */
  path?: boolean;
  /** Why the setting is gone: still accepted, ignored, and warned about. */
  deprecated?: string;
}

const quantity = { type: ['string', 'integer'] } as const;
const stringArray = { type: 'array', items: { type: 'string', minLength: 1 } } as const;
const NAME_PATTERN = '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$';

const text: Reader<string> = (v) => v;
const seconds: Reader<number> = (v) => parseDuration(v) ?? { problem: `'${v}' is not a whole number of seconds` };
function oneOf<T extends string>(values: readonly T[], say: string): Reader<T> {
  return (v) => ((values as readonly string[]).includes(v) ? (v as T) : { problem: `'${v}' must be ${say}` });
}
const path = (schema: Record<string, unknown>, s: Omit<Setting<string>, 'schema' | 'read' | 'path'>): Setting<string> => ({ schema, read: text, path: true, ...s });
const str = { type: 'string', minLength: 1 } as const;

/** Every setting of the agent, in the order of the help and the docs. */
const SETTINGS = {
  nodeName: { schema: { type: 'string', minLength: 1, maxLength: 253, pattern: NAME_PATTERN }, env: 'NODE_NAME', flag: { name: 'node-name', arg: 'NAME' }, help: "this node's name", shownDefault: 'the hostname', read: text } as Setting<string>,
  source: { schema: { enum: ['directory', 'kubernetes'] }, env: 'UMLMON_SOURCE', flag: { name: 'source', arg: 'directory|kubernetes' }, help: 'where machines come from', shownDefault: 'directory', value: 'directory', read: oneOf(['directory', 'kubernetes'] as const, 'directory or kubernetes') } as Setting<SourceKind>,
  machinesDir: path(str, { env: 'UMLMON_MACHINES_DIR', flag: { name: 'machines-dir', arg: 'DIR' }, help: 'directory source', shownDefault: '/etc/umlmon/machines', value: '/etc/umlmon/machines' }),
  kubeconfig: path(str, { env: 'KUBECONFIG', flag: { name: 'kubeconfig', arg: 'PATH' }, help: 'kubernetes source', shownDefault: 'in-cluster' }),
  stateDir: path(str, { env: 'UMLMON_STATE_DIR', flag: { name: 'state-dir', arg: 'DIR' }, shownDefault: '/var/lib/umlmon', value: '/var/lib/umlmon' }),
  imageRoot: path(str, { env: 'UMLMON_IMAGE_ROOT', flag: { name: 'image-root', arg: 'DIR' }, shownDefault: '<stateDir>/images' }),
  backupDir: path(str, { env: 'UMLMON_BACKUP_DIR', flag: { name: 'backup-dir', arg: 'DIR' }, shownDefault: '<stateDir>/backups' }),
  listen: { schema: { type: 'string' }, env: 'UMLMON_LISTEN', flag: { name: 'listen', arg: 'HOST:PORT|off' }, help: 'health and metrics', shownDefault: DEFAULT_LISTEN, read: text } as Setting<string>,
  control: { schema: { type: 'string' }, env: 'UMLMON_CONTROL', flag: { name: 'control', arg: 'URL' }, help: 'unix:///path, tcp://host:port or none', shownDefault: 'unix://<stateDir>/control.sock', read: text } as Setting<string>,
  controlToken: { schema: { type: 'string', minLength: 16 }, env: 'UMLMON_CONTROL_TOKEN', shownDefault: 'none', read: text } as Setting<string>,
  controlTokenFile: path(str, { env: 'UMLMON_CONTROL_TOKEN_FILE', flag: { name: 'control-token-file', arg: 'PATH' }, help: 'bearer token for a tcp:// control address', shownDefault: 'none' }),
  kernels: {
    schema: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['path'],
        properties: { path: { type: 'string', minLength: 1 }, args: stringArray },
      },
    },
    // --kernel NAME=PATH is a flag of its own (repeatable, adds to the table): see loadConfig.
    shownDefault: `{default: {path: ${DEFAULT_KERNEL_PATH}}}`,
  } as Setting<Record<string, KernelEntry>>,
  defaultKernelArgs: { schema: stringArray, shownDefault: JSON.stringify(DEFAULT_KERNEL_ARGS) } as Setting<string[]>,
  memory: {
    schema: { type: 'object', additionalProperties: false, properties: { min: quantity, max: quantity, default: quantity } },
    shownDefault: '{min: 40Mi, max: 16Gi, default: 128Mi}',
  } as Setting<{ min?: string | number; max?: string | number; default?: string | number }>,
  consoleLogMaxSize: { schema: quantity, shownDefault: '4Mi', value: '4Mi' } as Setting<string | number>,
  // A pass that starts a guest mostly waits for the kernel (its mconsole, ~0.1 s), not for CPU:
  // 4 workers made 100 machines at once wait on each other, not on the node (bench/agent.ts).
  workers: { schema: { type: 'integer', minimum: 1, maximum: 64 }, env: 'UMLMON_WORKERS', flag: { name: 'workers', arg: 'N' }, help: 'parallel reconciles', shownDefault: '32', value: 32, read: seconds } as Setting<number>,
  resyncPeriodSeconds: { schema: { type: 'integer', minimum: 1 }, flag: { name: 'resync-period', arg: 'DURATION' }, help: 'safety-net resync', shownDefault: '600s', value: 600, read: seconds } as Setting<number>,
  // Gone: status no longer carries guest uptime or load to refresh (uptime follows from
  // status.bootTime; load and memory are metrics). Still accepted, so that a config written for
  // an older agent does not keep the new one from starting; loadConfig warns about it.
  guestInfoIntervalSeconds: { schema: { type: 'integer', minimum: 0 }, flag: { name: 'guest-info-interval', arg: 'DURATION' }, help: 'ignored (deprecated: status has no guest uptime or load any more)', shownDefault: 'none', read: seconds, deprecated: 'status has no guest uptime or load to refresh any more (uptime follows from status.bootTime; load and memory are on /metrics); remove it' } as Setting<number>,
  logLevel: { schema: { enum: [...LOG_LEVELS] }, env: 'UMLMON_LOG_LEVEL', flag: { name: 'log-level', arg: 'LEVEL' }, help: LOG_LEVELS.join('|'), shownDefault: 'info', value: 'info', read: oneOf(LOG_LEVELS, `one of ${LOG_LEVELS.join(', ')}`) } as Setting<LogLevel>,
  drainTimeoutSeconds: { schema: { type: 'integer', minimum: 0 }, flag: { name: 'drain-timeout', arg: 'DURATION' }, help: 'default for drain', shownDefault: '120s', value: 120, read: seconds } as Setting<number>,
} as const;

type SettingKey = keyof typeof SETTINGS;

/** The default of a setting that has one value as its default. */
function defaultOf<K extends SettingKey>(key: K): ValueOf<(typeof SETTINGS)[K]> {
  const v = (SETTINGS[key] as Setting<unknown>).value;
  if (v === undefined) throw new Error(`setting ${key} has no default value`);
  return v as ValueOf<(typeof SETTINGS)[K]>;
}
type ValueOf<S> = S extends Setting<infer T> ? T : never;
/** The file as read, before defaults: every key optional. */
type RawConfig = { -readonly [K in SettingKey]?: ValueOf<(typeof SETTINGS)[K]> };

/** One row per setting, for docs and tests: key, environment variable, flag, default. */
export const SETTING_ROWS: readonly { key: string; env?: string; flag?: string; shownDefault: string }[] = Object.entries(SETTINGS).map(([key, s]: [string, Setting<unknown>]) => ({
  key, shownDefault: s.shownDefault, ...(s.env ? { env: s.env } : {}), ...(s.flag ? { flag: `--${s.flag.name}` } : {}),
}));

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => [k, s.schema])),
} as const;

/** Environment variables, each for one key. */
export const ENV_KEYS: Record<string, SettingKey> = Object.fromEntries(
  (Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][]).filter(([, s]) => s.env).map(([k, s]) => [s.env!, k]),
);

/** Flags (kebab-case of the key), each for one key. */
export const FLAG_KEYS: Record<string, SettingKey> = Object.fromEntries(
  (Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][]).filter(([, s]) => s.flag).map(([k, s]) => [s.flag!.name, k]),
);

/** The config's flags as util.parseArgs declares options: each setting's, -f, -v and --kernel. */
export const CONFIG_FLAG_OPTIONS: Readonly<Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>> = {
  config: { type: 'string', short: 'f' },
  verbose: { type: 'boolean', short: 'v' },
  kernel: { type: 'string', multiple: true },
  ...Object.fromEntries(Object.keys(FLAG_KEYS).map((f) => [f, { type: 'string' as const }])),
};

export const CONFIG_FLAGS_HELP = [
  'config options (each overrides the config file and the environment):',
  `  -f, --config PATH            config file (default $UMLMON_CONFIG, else ${DEFAULT_CONFIG_PATH} if present)`,
  ...(Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][]).flatMap(([key, s]) => {
    if (key === 'kernels') return ['  --kernel NAME=PATH           add or replace a kernel (repeatable)'];
    if (!s.flag) return [];
    const left = `--${s.flag.name} ${s.flag.arg}`;
    const where = [s.env ? `$${s.env}` : undefined, `default ${s.shownDefault}`].filter(Boolean).join('; ');
    const right = [s.help, `(${where})`].filter(Boolean).join(' ');
    return [left.length < 29 ? `  ${left.padEnd(29)}${right}` : `  ${left}  ${right}`];
  }),
  '  -v, --verbose                same as --log-level debug',
].join('\n');

/** How the config file's validator is compiled; it is generated ahead of time (src/api/schema-compile.ts). */
export const CONFIG_SCHEMA_OPTIONS = { allErrors: true, strict: true, allowUnionTypes: true } as const;

function validateFile(raw: unknown): ErrorObject[] {
  const validate = validateConfigFile as unknown as { (data: unknown): boolean; errors?: ErrorObject[] | null };
  return validate(raw) ? [] : [...(validate.errors ?? [])];
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
export function memoryBytes(q: string | number): number | undefined {
  if (typeof q === 'number') return Number.isSafeInteger(q) && q >= 0 ? q : undefined;
  try {
    const bytes = parseQuantity(q.trim());
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
// Environment and flags.

/** "30", "30s", "2m", "1h" → seconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^([0-9]+)(s|m|h)?$/.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
}

/** Reads one environment variable's or flag's value into raw; returns the problem, if any. */
function setFromString(raw: RawConfig, key: SettingKey, value: string, cwd: string | undefined): string | undefined {
  const s: Setting<unknown> = SETTINGS[key];
  const v = s.read?.(s.path && cwd !== undefined ? resolve(cwd, value) : value);
  if (v !== null && typeof v === 'object' && 'problem' in v) return (v as { problem: string }).problem;
  (raw as Record<string, unknown>)[key] = v;
  return undefined;
}

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
  const { flags } = input;

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
    const problem = setFromString(raw, key, value, input.cwd);
    if (problem) errors.push(`environment ${name} (${key}): ${problem}`);
  }
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const value = flags[flag];
    if (typeof value !== 'string') continue;
    const problem = setFromString(raw, key, value, input.cwd);
    if (problem) errors.push(`flag --${flag} (${key}): ${problem}`);
  }
  if (flags.verbose === true && flags['log-level'] === undefined) raw.logLevel = 'debug';
  for (const spec of flags.kernel ?? []) {
    const eq = spec.indexOf('=');
    if (eq <= 0) { errors.push(`flag --kernel: '${spec}' is not NAME=PATH`); continue; }
    raw.kernels = { ...(raw.kernels ?? {}), [spec.slice(0, eq)]: { path: spec.slice(eq + 1) } };
  }

  // 4. Defaults, derived paths, and the checks a schema cannot express.
  const stateDir = raw.stateDir ?? defaultOf('stateDir');
  const paths = { stateDir, imageRoot: raw.imageRoot ?? join(stateDir, 'images'), backupDir: raw.backupDir ?? join(stateDir, 'backups'), machinesDir: raw.machinesDir ?? defaultOf('machinesDir') };
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
    const b = memoryBytes(q);
    if (b === undefined) errors.push(`memory.${k}: '${q}' is not a memory quantity (e.g. 128Mi, 1Gi)`);
    else bytes[k] = b;
  }
  const consoleLogMaxSize = raw.consoleLogMaxSize ?? defaultOf('consoleLogMaxSize');
  const consoleLogMaxBytes = memoryBytes(consoleLogMaxSize);
  if (consoleLogMaxBytes === undefined || consoleLogMaxBytes < 64 * 1024) errors.push(`consoleLogMaxSize: '${consoleLogMaxSize}' is not a size of at least 64Ki (e.g. 4Mi)`);
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
    source: raw.source ?? defaultOf('source'),
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
    consoleLogMaxBytes: consoleLogMaxBytes as number,
    workers: raw.workers ?? defaultOf('workers'),
    resyncPeriodSeconds: raw.resyncPeriodSeconds ?? defaultOf('resyncPeriodSeconds'),
    logLevel: raw.logLevel ?? defaultOf('logLevel'),
    drainTimeoutSeconds: raw.drainTimeoutSeconds ?? defaultOf('drainTimeoutSeconds'),
  };
  if (raw.kubeconfig !== undefined) config.kubeconfig = raw.kubeconfig;
  if (listenAddress !== undefined && !(listenAddress instanceof Error)) config.listenAddress = listenAddress;
  if (controlToken !== undefined) config.controlToken = controlToken;
  if (text !== undefined) config.configFile = path;
  const warnings = (Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][])
    .filter(([key, s]) => s.deprecated !== undefined && raw[key] !== undefined)
    .map(([key, s]) => `${key} is ignored: ${s.deprecated}`);
  return { ok: true, config, warnings };
}
