import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryBytes, parseControl, parseListen, type LoadConfigInput } from '../../src/agent/config.ts';
import { loadCommandConfig } from '../../src/cli/config-args.ts';

function files(map: Record<string, string>): LoadConfigInput['readFile'] {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
    return text;
  };
}

function load(argv: string[], env: Record<string, string> = {}, fs: Record<string, string> = {}) {
  return loadCommandConfig(argv, { env, readFile: files(fs), hostname: 'Node-A' });
}

test('defaults with no file, no environment and no flags', () => {
  const r = load([]);
  assert.ok(r.ok, JSON.stringify(r));
  const c = r.config;
  assert.equal(c.nodeName, 'node-a');
  assert.equal(c.source, 'directory');
  assert.equal(c.machinesDir, '/etc/umlmon/machines');
  assert.equal(c.stateDir, '/var/lib/umlmon');
  assert.equal(c.imageRoot, '/var/lib/umlmon/images');
  assert.equal(c.backupDir, '/var/lib/umlmon/backups');
  assert.deepEqual(c.listenAddress, { host: '0.0.0.0', port: 9473 });
  assert.deepEqual(c.controlAddress, { kind: 'unix', path: '/var/lib/umlmon/control.sock' });
  assert.deepEqual(c.kernels, { default: { path: '/usr/local/lib/umlmon/linux' } });
  assert.deepEqual(c.defaultKernelArgs, ['lpj=auto']);
  assert.deepEqual(c.memory, { minBytes: 40 * 2 ** 20, maxBytes: 16 * 2 ** 30, defaultBytes: 128 * 2 ** 20 });
  assert.equal(c.workers, 32);
  assert.equal(c.resyncPeriodSeconds, 600);
  assert.equal(c.logLevel, 'info');
  assert.equal(c.drainTimeoutSeconds, 120);
  assert.equal(c.kubeconfig, undefined);
  assert.equal(c.configFile, undefined);
});

test('the default file is read when present; the state dir moves derived paths', () => {
  const r = load([], {}, { '/etc/umlmon/config.yaml': 'stateDir: /srv/uml\nworkers: 2\nmemory: {max: 1Gi}\n' });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.config.configFile, '/etc/umlmon/config.yaml');
  assert.equal(r.config.imageRoot, '/srv/uml/images');
  assert.equal(r.config.control, 'unix:///srv/uml/control.sock');
  assert.equal(r.config.workers, 2);
  assert.equal(r.config.memory.maxBytes, 2 ** 30);
});

test('file < environment < flags', () => {
  const fs = { '/c.yaml': 'nodeName: from-file\nsource: kubernetes\nlogLevel: warn\nlisten: ":1"\n' };
  const fromFile = load(['-f', '/c.yaml'], {}, fs);
  assert.ok(fromFile.ok);
  assert.equal(fromFile.config.nodeName, 'from-file');
  const fromEnv = load(['-f', '/c.yaml'], { NODE_NAME: 'from-env', UMLMON_LOG_LEVEL: 'error', KUBECONFIG: '/k' }, fs);
  assert.ok(fromEnv.ok);
  assert.equal(fromEnv.config.nodeName, 'from-env');
  assert.equal(fromEnv.config.logLevel, 'error');
  assert.equal(fromEnv.config.kubeconfig, '/k');
  const fromFlags = load(['--config', '/c.yaml', '--node-name', 'from-flag', '-v', '--listen', '127.0.0.1:0'], { NODE_NAME: 'from-env' }, fs);
  assert.ok(fromFlags.ok);
  assert.equal(fromFlags.config.nodeName, 'from-flag');
  assert.equal(fromFlags.config.logLevel, 'debug');
  assert.deepEqual(fromFlags.config.listenAddress, { host: '127.0.0.1', port: 0 });
  const viaEnvPath = load([], { UMLMON_CONFIG: '/c.yaml' }, fs);
  assert.ok(viaEnvPath.ok);
  assert.equal(viaEnvPath.config.source, 'kubernetes');
});

test('unknown keys and bad values name the key', () => {
  const r = load(['-f', '/c.yaml'], {}, { '/c.yaml': 'nodname: x\nworkers: 0\nsource: cluster\nkernels: {default: {paht: /x}}\n' });
  assert.equal(r.ok, false);
  const text = r.ok ? '' : r.errors.join('\n');
  assert.match(text, /config file \/c\.yaml: nodname: unknown key/);
  assert.match(text, /workers: must be >= 1/);
  assert.match(text, /source: must be one of directory, kubernetes/);
  assert.match(text, /kernels\.default\.paht: unknown key/);
  assert.match(text, /kernels\.default\.path: is required/);
});

test('guestInfoIntervalSeconds is gone: an old config that sets it still loads, with a warning saying why', () => {
  const r = load(['-f', '/c.yaml'], {}, { '/c.yaml': 'guestInfoIntervalSeconds: 30\n' });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal('guestInfoIntervalSeconds' in r.config, false);
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!, /^guestInfoIntervalSeconds is ignored: .*uptime follows from status\.bootTime.*remove it/);
  const flag = load(['--guest-info-interval', '30s'], {}, {});
  assert.ok(flag.ok && flag.warnings.length === 1, 'nor does its flag stop the agent');
  assert.equal(load([], {}, {}).ok && load([], {}, {}).ok === true ? (load([], {}, {}) as { warnings: string[] }).warnings.length : -1, 0, 'no warning when it is not set');
});

test('relative paths on the command line and in the environment are taken from the working directory', () => {
  const r = loadCommandConfig(['--state-dir', '.cache/state', '--machines-dir', '../machines'], {
    env: { UMLMON_IMAGE_ROOT: 'images' },
    readFile: files({}),
    hostname: 'node-a',
    cwd: '/work/repo',
  });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.config.stateDir, '/work/repo/.cache/state');
  assert.equal(r.config.machinesDir, '/work/machines');
  assert.equal(r.config.imageRoot, '/work/repo/images');
  assert.equal(r.config.backupDir, '/work/repo/.cache/state/backups');
  assert.equal(r.config.control, 'unix:///work/repo/.cache/state/control.sock');
});

test('semantic errors: quantities, relative paths, memory bounds, env and flag values', () => {
  const r = load(['-f', '/c.yaml', '--workers', 'many', '--kernel', 'nope'], { UMLMON_SOURCE: 'cloud' }, {
    '/c.yaml': 'stateDir: relative\nmemory: {min: 1Gi, max: 512Mi, default: lots}\nkernels: {old: {path: linux}}\n',
  });
  assert.equal(r.ok, false);
  const text = r.ok ? '' : r.errors.join('\n');
  assert.match(text, /stateDir: 'relative' must be an absolute path/);
  assert.match(text, /memory\.default: 'lots' is not a memory quantity/);
  assert.match(text, /kernels\.old\.path: 'linux' must be an absolute path/);
  assert.match(text, /environment UMLMON_SOURCE \(source\): 'cloud'/);
  assert.match(text, /flag --workers \(workers\): 'many'/);
  assert.match(text, /flag --kernel: 'nope' is not NAME=PATH/);
});

test('an explicit config file that is missing is an error; an unknown flag too', () => {
  const r = load(['-f', '/missing.yaml']);
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.errors[0] ?? '', /config file \/missing\.yaml: cannot read it: ENOENT/);
  const f = load(['--frobnicate']);
  assert.equal(f.ok, false);
  assert.match(f.ok ? '' : f.errors[0] ?? '', /frobnicate/);
});

test('tcp control needs a token; a token file is read and trimmed', () => {
  const r = load(['--control', 'tcp://127.0.0.1:7000']);
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.errors.join('\n'), /needs a bearer token/);
  const t = load(['--control', 'tcp://:7000', '--control-token-file', '/tok'], {}, { '/tok': 'abcdefghijklmnopqrstuvwxyz\n' });
  assert.ok(t.ok, JSON.stringify(t));
  assert.equal(t.config.controlToken, 'abcdefghijklmnopqrstuvwxyz');
  assert.deepEqual(t.config.controlAddress, { kind: 'tcp', host: '127.0.0.1', port: 7000 });
});

test('kernels from flags, extra options and positionals for subcommands', () => {
  const r = loadCommandConfig(['--kernel', 'new=/opt/linux', 'a.yaml', '--timeout', '30s'], { env: {}, readFile: files({}), hostname: 'h' }, {
    extraOptions: { timeout: { type: 'string' } }, allowPositionals: true,
  });
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.config.kernels, { new: { path: '/opt/linux' } });
  assert.deepEqual(r.positionals, ['a.yaml']);
  assert.equal(r.extra.timeout, '30s');
});

test('parsers: quantities, listen and control addresses', () => {
  assert.equal(memoryBytes('128Mi'), 128 * 2 ** 20);
  assert.equal(memoryBytes('1G'), 1e9);
  assert.equal(memoryBytes('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(memoryBytes('1e3'), 1000);
  assert.equal(memoryBytes(4096), 4096);
  assert.equal(memoryBytes('12 MB'), undefined);
  assert.equal(memoryBytes('-1Mi'), undefined);
  assert.equal(parseListen('off'), undefined);
  assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
  assert.ok(parseListen('9473') instanceof Error);
  assert.deepEqual(parseControl('none'), { kind: 'none' });
  assert.ok(parseControl('unix://relative.sock') instanceof Error);
  assert.ok(parseControl('http://x') instanceof Error);
  assert.deepEqual(parseControl('tcp://10.0.0.1:99'), { kind: 'tcp', host: '10.0.0.1', port: 99 });
});

test('the quick start config (hack/local/config.yaml) loads as start.sh runs it', async () => {
  const { readFileSync } = await import('node:fs');
  const { REPO_ROOT } = await import('../support/uml.ts');
  const r = loadCommandConfig(['-f', `${REPO_ROOT}/hack/local/config.yaml`, '--machines-dir', '/x/machines', '--state-dir', '/x/state', '--image-root', '/x/images'], {
    env: {}, readFile: (p) => readFileSync(p, 'utf8'), hostname: 'h',
  });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.config.nodeName, 'worker-1', 'matches examples/basic.yaml');
  assert.deepEqual(r.config.defaultKernelArgs, ['lpj=auto'], 'the calibration default');
  assert.deepEqual(r.config.kernels.default, { path: '/usr/local/lib/umlmon/linux' }, "umlmon's own kernel is the default");
  assert.deepEqual(r.config.kernels.debian, { path: '/usr/bin/linux.uml', args: ['initcall_blacklist=raid6_select_algo'] }, "Debian's skips its RAID6 benchmark");
  assert.equal(r.config.control, 'unix:///x/state/control.sock');
});

test('docs/configuration.md lists every setting with its environment variable and flag, as the code has them', async () => {
  const { SETTING_ROWS } = await import('../../src/agent/config.ts');
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([a-zA-Z.]+)` \| (.*?) \| (.*?) \| (.*?) \| /gm)].map((m) => ({ key: m[1]!, env: m[3]!, flag: m[4]! }));
  const documented = new Set(rows.map((r) => r.key.split('.')[0]!));
  assert.deepEqual(SETTING_ROWS.map((s) => s.key).filter((k) => !documented.has(k)), [], 'settings missing from docs/configuration.md');
  for (const r of rows) {
    const s = SETTING_ROWS.find((x) => x.key === r.key.split('.')[0]);
    assert.ok(s, `docs/configuration.md documents ${r.key}, which is not a setting`);
    assert.equal(r.env, s.env ? `\`${s.env}\`` : '—', `${r.key}: environment variable`);
    if (s.key === 'kernels') assert.match(r.flag, /^`--kernel NAME=PATH`/);
    else if (s.flag) assert.match(r.flag, new RegExp(`^\`${s.flag}\``), `${r.key}: flag`);
    else assert.equal(r.flag, '—', `${r.key}: flag`);
  }
});

test('consoleLogMaxSize: 4Mi by default, a quantity of at least 64Ki', () => {
  const d = load([]);
  assert.ok(d.ok);
  assert.equal(d.config.consoleLogMaxBytes, 4 * 2 ** 20);
  const set = load(['-f', '/c.yaml'], {}, { '/c.yaml': 'consoleLogMaxSize: 16Mi\n' });
  assert.ok(set.ok, JSON.stringify(set));
  assert.equal(set.config.consoleLogMaxBytes, 16 * 2 ** 20);
  const small = load(['-f', '/c.yaml'], {}, { '/c.yaml': 'consoleLogMaxSize: 1Ki\n' });
  assert.equal(small.ok, false);
  assert.match(small.ok ? '' : small.errors.join('\n'), /consoleLogMaxSize: '1Ki' is not a size of at least 64Ki/);
});
