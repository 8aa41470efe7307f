// What the agent loads decides most of its memory (issue "Fast and lean": 60 MiB at 100
// guests). These tests keep out of the agent's process what cost the most for nothing, each
// measured (src/builtins.ts, src/agent/metrics.ts, src/api/schema-compile.ts):
// - an ESM import of node:http, node:util or node:process (their namespaces' lazy getters load
//   undici, http2 and tls: +10.8 MiB for node:http);
// - prom-client's index (its Pushgateway loads node:https, tls and zlib: +7 MiB);
// - ajv's compiler (compiling the CRD at start-up: +7.7 MiB; the validator is generated).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../support/uml.ts';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
  });
}

/** `import ... from 'x'` lines that bring values (not `import type`), by module. */
function valueImports(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/^import\s+(?!type\b)([^;]*?)\s+from\s+'([^']+)';/gms)) {
    const what = m[1]!.replace(/\btype\s+\w+(\s+as\s+\w+)?\s*,?/g, '').replace(/[{}\s,]/g, '');
    if (what !== '') found.push(m[2]!);
  }
  return found;
}

test('src/ takes node:http, node:util and node:process as module objects, never by an ESM import', () => {
  for (const file of sources(join(REPO_ROOT, 'src'))) {
    for (const module of valueImports(readFileSync(file, 'utf8'))) {
      assert.ok(!['node:http', 'node:util', 'node:process', 'http', 'util', 'process'].includes(module), `${relative(REPO_ROOT, file)} imports ${module}: use src/builtins.ts`);
    }
  }
});

test('src/ imports prom-client\'s metric classes one by one, and ajv only where tests and the generator compile schemas', () => {
  for (const file of sources(join(REPO_ROOT, 'src'))) {
    const rel = relative(REPO_ROOT, file);
    for (const module of valueImports(readFileSync(file, 'utf8'))) {
      assert.notEqual(module, 'prom-client', `${rel} imports prom-client's index: import prom-client/lib/<metric>.js (src/agent/metrics.ts)`);
      if (module === 'ajv' || module.startsWith('ajv/dist/standalone')) {
        assert.equal(rel, 'src/api/schema-compile.ts', `${rel} imports ajv's compiler: the agent's validators are generated (src/api/schema-compile.ts)`);
      }
    }
  }
});

test('a directory-mode agent, once its modules are loaded, holds neither undici, http2, tls, crypto, ajv\'s compiler nor prom-client\'s Pushgateway', () => {
  // The modules `umlmon run` loads for a directory source, and what a pass uses.
  const probe = `
    await import(${JSON.stringify(join(REPO_ROOT, 'src/cli/commands/run.ts'))});
    const { loadConfig } = await import(${JSON.stringify(join(REPO_ROOT, 'src/agent/config.ts'))});
    const config = loadConfig({ flags: { config: '/etc/umlmon/config.yaml' }, env: {}, readFile: () => 'nodeName: n\\nlogLevel: info\\n', hostname: 'h' });
    if (!config.ok) throw new Error(JSON.stringify(config));
    const { validateMachine } = await import(${JSON.stringify(join(REPO_ROOT, 'src/api/validate.ts'))});
    validateMachine({ apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name: 'a', namespace: 'default' }, spec: { nodeName: 'n' } }, { kernels: ['default'], memoryMinBytes: 1, memoryMaxBytes: 2 ** 40 });
    const loaded = process.moduleLoadList.filter((m) => /undici|http2|\\btls\\b|zlib|crypto/.test(m));
    const require = (await import('node:module')).createRequire(import.meta.url);
    const cached = Object.keys(require.cache).filter((p) => /ajv[\\\\/]dist[\\\\/](compile|core)|prom-client[\\\\/](index|lib[\\\\/]pushgateway)/.test(p));
    console.log(JSON.stringify({ loaded, cached }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: REPO_ROOT, encoding: 'utf8' });
  const { loaded, cached } = JSON.parse(out.trim().split('\n').pop()!) as { loaded: string[]; cached: string[] };
  assert.deepEqual(loaded, [], 'built-in modules the agent does not use');
  assert.deepEqual(cached, [], 'package files the agent does not use');
});
