import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/agent/config.ts';
import { checkManifests } from '../../src/cli/commands/check.ts';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-check-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'images'));
  mkdirSync(join(dir, 'machines'));
  writeFileSync(join(dir, 'images', 'busybox.ext4'), '');
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, `nodeName: worker-1\nimageRoot: ${dir}/images\nmachinesDir: ${dir}/machines\nmemory: {min: 40Mi, max: 1Gi}\n`);
  return { dir, configFile };
}

const machine = (name: string, memory: string) => `apiVersion: umlmon.io/v1alpha1
kind: UmlMachine
metadata: {name: ${name}}
spec:
  nodeName: worker-1
  memory: ${memory}
  disks: [{name: ubd0, image: busybox.ext4}]
`;

test('valid manifests pass; each problem names file, machine and field', async () => {
  const { dir, configFile } = setup();
  writeFileSync(join(dir, 'machines', 'ok.yaml'), machine('ok', '64Mi'));
  writeFileSync(join(dir, 'machines', 'bad.yaml'), `${machine('small', '16Mi')}---\n${machine('big', '2Gi').replace('busybox.ext4', 'missing.img')}`);
  const loaded = loadConfig({ flags: { config: configFile }, env: {}, readFile: (p) => execFileSync('cat', [p], { encoding: 'utf8' }), hostname: 'h' });
  assert.ok(loaded.ok);
  const report = await checkManifests(loaded.config, [], { imageCheck: true });
  assert.equal(report.machines, 3);
  const text = report.problems.join('\n');
  assert.match(text, /bad\.yaml: machine default\/small: spec\.memory: .*/);
  assert.match(text, /bad\.yaml: machine default\/big: spec\.memory: .*/);
  assert.match(text, /bad\.yaml: machine default\/big: spec\.disks\[0\]\.image: .*missing\.img/);
  assert.doesNotMatch(text, /default\/ok/);
});

test('umlmon check exits 0 with "configuration OK", 1 listing problems', () => {
  const { dir, configFile } = setup();
  writeFileSync(join(dir, 'machines', 'ok.yaml'), machine('ok', '64Mi'));
  const good = spawnSync(process.execPath, ['src/cli/main.ts', 'check', '--skip-kernel-probe', '-f', configFile], { encoding: 'utf8' });
  assert.equal(good.status, 0, good.stdout + good.stderr);
  assert.match(good.stdout, /configuration OK .*1 machine in 1 file/);
  writeFileSync(join(dir, 'machines', 'typo.yaml'), 'apiVersion: [\n');
  const bad = spawnSync(process.execPath, ['src/cli/main.ts', 'check', '--skip-kernel-probe', '-f', configFile], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /typo\.yaml: not valid YAML/);
  writeFileSync(configFile, 'workerz: 3\n');
  const badConfig = spawnSync(process.execPath, ['src/cli/main.ts', 'check', '--skip-kernel-probe', '-f', configFile], { encoding: 'utf8' });
  assert.equal(badConfig.status, 1);
  assert.match(badConfig.stdout, /workerz: unknown key/);
});
