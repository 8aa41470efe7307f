// The agent against a real Kubernetes control plane (kube-apiserver, kube-controller-manager and
// etcd built from Debian's kubernetes 1.20 source by hack/build-control-plane.sh; see
// test/support/control-plane.ts), as envtest runs controller-runtime's controllers, on real
// jailed UML kernels, driven with the real kubectl. What the emulator (test/emulator) can only
// agree with itself about, a real server shows here:
// - 1.20 knows neither CEL rules nor selectable fields: the CRD applies with --validate=false,
//   and the agent's server-side nodeName filter is refused, so it watches everything and
//   filters locally;
// - the agent runs with a real ServiceAccount token bound to exactly the chart's ClusterRole;
// - finalizers and namespace deletion go through the real controller-manager.
// The agent's whole lifecycle on a real server (outage, 410 Gone, adoption, drain) is
// test/e2e/agent-kubernetes.test.ts.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { parseRendering, renderChart } from '../../hack/render-chart.ts';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { alive } from '../support/process.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../support/uml.ts';
import { eventually } from '../support/eventually.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { umlMachineJson } from '../support/fixtures.ts';

const run = promisify(execFile);
const MAIN = join(REPO_ROOT, 'src/cli/main.ts');
const suffix = Math.random().toString(36).slice(2, 7);
const NODE = `real-node-${suffix}`;
const NS = `umlmon-e2e-${suffix}`;
const NAME = `guest-${suffix}`;

let cp: ControlPlane;
let dir: string;
let stateDir: string;
let configFile: string;
let agentLog: string;
let agent: ChildProcess | undefined;

async function kubectl(args: string[], options: { stdin?: string; kubeconfig?: string } = {}): Promise<string> {
  const child = run('kubectl', ['--kubeconfig', options.kubeconfig ?? cp.adminKubeconfig, ...args], { encoding: 'utf8' });
  if (options.stdin !== undefined) child.child.stdin?.end(options.stdin);
  try {
    return (await child).stdout;
  } catch (err) {
    throw new Error(`kubectl ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  return eventually(what, probe, {
    timeoutMs,
    context: () => `--- agent log ---\n${existsSync(agentLog) ? readFileSync(agentLog, 'utf8').split('\n').slice(-25).join('\n') : ''}\n--- control plane ---\n${cp.logTail(10)}`,
  });
}

interface Machine {
  metadata: { finalizers?: string[] };
  status?: { phase?: string; pid?: number; umid?: string; kernelVersion?: string; conditions?: { type: string; status: string; reason: string }[] };
}

async function machine(name = NAME, namespace = NS): Promise<Machine> {
  return JSON.parse(await kubectl(['-n', namespace, 'get', 'uml', name, '-o', 'json'])) as Machine;
}

const ready = (m: Machine) => m.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

function manifest(name: string, namespace: string, spec: Record<string, unknown> = {}): string {
  return umlMachineJson({ name, namespace, spec: { nodeName: NODE, memory: '48Mi', disks: [{ name: 'ubd0', image: TEST_IMAGE }], shutdownGracePeriodSeconds: 10, ...spec } });
}

/** The chart's ServiceAccount, ClusterRole and binding, applied as rendered; returns a kubeconfig with the account's token. */
async function agentKubeconfig(): Promise<string> {
  const objects = parseRendering(renderChart({ releaseName: 'umlmon', namespace: 'umlmon-system' }))
    .map((o) => o.object as { kind: string; metadata: { name: string } })
    .filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind));
  assert.ok(objects.some((o) => o.kind === 'ClusterRole'), 'the chart renders a ClusterRole');
  await kubectl(['create', 'namespace', 'umlmon-system']);
  await kubectl(['apply', '-f', '-'], { stdin: objects.map((o) => JSON.stringify(o)).join('\n') });
  const account = objects.find((o) => o.kind === 'ServiceAccount')!.metadata.name;
  // 1.20's token controller makes a Secret with the account's token.
  const token = await until('the ServiceAccount token', async () => {
    const sa = JSON.parse(await kubectl(['-n', 'umlmon-system', 'get', 'sa', account, '-o', 'json'])) as { secrets?: { name: string }[] };
    const secret = sa.secrets?.[0]?.name;
    if (!secret) return undefined;
    return Buffer.from(await kubectl(['-n', 'umlmon-system', 'get', 'secret', secret, '-o', 'jsonpath={.data.token}']), 'base64').toString('utf8');
  });
  const path = join(dir, 'agent.kubeconfig');
  writeFileSync(path, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: real', '  cluster:', `    server: ${cp.url}`, `    certificate-authority: ${cp.caFile}`,
    'users:', '- name: agent', '  user:', `    token: ${token}`,
    'contexts:', '- name: agent', '  context: {cluster: real, user: agent}', 'current-context: agent', '',
  ].join('\n'));
  return path;
}

async function startTheAgent(): Promise<void> {
  const log = openSync(agentLog, 'a');
  agent = spawn(process.execPath, [MAIN, 'run', '-f', configFile], { stdio: ['ignore', log, log] });
  closeSync(log);
  await until('the agent synced', () => readFileSync(agentLog, 'utf8').includes('source synced; reconciling'), 60_000);
}

before(async () => {
  cp = await startControlPlane();
  dir = mkdtempSync(join(tmpdir(), 'umreal-'));
  stateDir = join(dir, 's');
  const imageRoot = join(dir, 'img');
  mkdirSync(imageRoot);
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  agentLog = join(dir, 'agent.log');
  await kubectl(['create', 'namespace', NS]);
});

after(async () => {
  if (agent && agent.exitCode === null) {
    agent.kill('SIGKILL');
    await new Promise((r) => agent?.once('exit', r));
  }
  if (configFile && stateDir && existsSync(stateDir)) {
    await run(process.execPath, [MAIN, 'drain', '-f', configFile, '--timeout', '30s']).catch(() => undefined);
  }
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the CRD applies to a 1.20 server with --validate=false and is served, printer columns included', async () => {
  // 1.20 predates x-kubernetes-validations and selectableFields: client-side validation refuses
  // the unknown fields; the server drops them, and the agent checks what they checked.
  await kubectl(['apply', '--validate=false', '-f', join(REPO_ROOT, 'crds')]);
  await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
  assert.match(cp.versionInfo.gitVersion, /^v1\.20\./);
  const crd = JSON.parse(await kubectl(['get', 'crd', 'umlmachines.umlmon.io', '-o', 'json'])) as { spec: { versions: { additionalPrinterColumns?: { name: string }[] }[] } };
  assert.deepEqual(crd.spec.versions[0]?.additionalPrinterColumns?.map((c) => c.name).slice(0, 4), ['Node', 'State', 'Phase', 'Kernel']);
});

test('the agent, with the chart\'s ClusterRole only, starts a machine applied with kubectl: Ready, kernel version, printer columns', async () => {
  const kubeconfig = await agentKubeconfig();
  configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, [
    `nodeName: ${NODE}`, 'source: kubernetes', `kubeconfig: ${kubeconfig}`, `stateDir: ${stateDir}`, `imageRoot: ${join(dir, 'img')}`,
    'listen: "off"', 'control: none', `kernels: {default: {path: ${umlKernel()}}}`, 'memory: {min: 40Mi, max: 256Mi, default: 64Mi}',
    'logLevel: debug', '',
  ].join('\n'));
  await startTheAgent();
  await kubectl(['apply', '-f', '-'], { stdin: manifest(NAME, NS) });
  await kubectl(['-n', NS, 'wait', '--for=condition=Ready', `uml/${NAME}`, '--timeout=120s']);
  const m = await machine();
  assert.equal(m.status?.phase, 'Running');
  assert.match(m.status?.kernelVersion ?? '', /^Linux /);
  assert.deepEqual(m.metadata.finalizers, ['umlmon.io/machine']);
  const table = await kubectl(['-n', NS, 'get', 'uml', NAME]);
  assert.match(table, new RegExp(`^${NAME}\\s+${NODE}\\s+Running\\s+Running\\s`, 'm'), table);
  const log = readFileSync(agentLog, 'utf8');
  assert.match(log, /the API server refuses to filter umlmachines by spec\.nodeName/, 'the 1.20 server refuses spec.nodeName as a field label, and the agent says so');
  assert.match(log, /"filter":"local","msg":"machine cache synced"/, 'then it watches every machine and keeps its own');
  assert.doesNotMatch(log, /forbidden/i, 'the ClusterRole grants what the agent does');
});

test('state Paused through the real API server pauses the guest; Running resumes it', async () => {
  const pid = (await machine()).status?.pid;
  await kubectl(['-n', NS, 'patch', 'uml', NAME, '--type=merge', '-p', JSON.stringify({ spec: { state: 'Paused' } })]);
  await until('Paused', async () => (await machine()).status?.phase === 'Paused');
  assert.equal((await machine()).status?.pid, pid);
  await kubectl(['-n', NS, 'patch', 'uml', NAME, '--type=merge', '-p', JSON.stringify({ spec: { state: 'Running' } })]);
  const m = await until('Running again', async () => {
    const now = await machine();
    return now.status?.phase === 'Running' && ready(now) && now;
  });
  assert.equal(m.status?.pid, pid);
});

test('deleting the namespace: the controller-manager deletes the machine, the agent shuts it down and lets it go', async () => {
  const { pid, umid } = (await machine()).status!;
  await kubectl(['delete', 'namespace', NS, '--wait=false']);
  await until('the namespace gone', async () => {
    try {
      await kubectl(['get', 'namespace', NS]);
      return false;
    } catch (error) {
      return /NotFound|not found/i.test(String(error));
    }
  }, 120_000);
  await until('the kernel gone', () => !alive(pid!));
  assert.equal(existsSync(join(stateDir, 'machines', umid!)), false, 'its jail and state removed');
  assert.deepEqual(readdirSync(join(stateDir, 'machines')), []);
});
