// RBAC proven, not guessed: the chart's objects are installed with the real kubectl into the API
// emulator with RBAC enforced, and the real agent (`umlmon run`, Kubernetes source, the chart's
// own config file) runs as the chart's ServiceAccount through a machine's whole life on a real
// UML kernel: create, boot, status, finalizer, Events, delete. Every request the agent made must
// be allowed by the chart's ClusterRole (none refused), and every grant in the ClusterRole is
// either used here or listed below with the reason this scenario cannot exercise it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, type Emulator, type RequestRecord } from '../emulator/index.ts';
import { describe as describeResult, kubectlFor, type Kubectl, type KubectlResult } from '../support/kubectl.ts';
import { parseRendering, renderChart, REPO_ROOT } from '../../hack/render-chart.ts';
import { testImageRoot, TEST_IMAGE, umlKernel } from '../support/uml.ts';
import { alive } from '../support/process.ts';

type Obj = Record<string, any>;

const AGENT_USER = 'system:serviceaccount:umlmon-system:umlmon';

/**
 * Grants this scenario does not exercise, and why they are in the ClusterRole all the same.
 * Anything granted, unused and not listed here fails the test: the role would be too wide.
 */
const NOT_EXERCISED: Record<string, string> = {
  'umlmon.io/umlmachines:get': 're-reads a machine only after a 409 conflict on its finalizer update',
  'umlmon.io/umlmachines/finalizers:update': 'checked by the OwnerReferencesPermissionEnforcement admission plugin on real clusters; the emulator does not run it',
  'events.k8s.io/events:patch': 'folds a repeated Event into a series; one short life repeats none',
  'core/events:create': 'the fallback for API servers without events.k8s.io/v1; the emulator serves it',
  'core/events:patch': 'the same fallback, for series',
};

const id = randomBytes(3).toString('hex');
const NODE = `rbac-node-${id}`;
const MACHINES_NS = `rbac-${id}`;
const work = mkdtempSync(join(tmpdir(), 'umlmon-rbac-'));
const stateDir = join(work, 's');
const agentLog = join(work, 'agent.log');
let emulator: Emulator;
let agent: ChildProcess | undefined;
let rendered: Obj[] = [];
const proxies: Server[] = [];
let adminKubeconfig = '';

/**
 * kubectl (client-go) sends no credentials to a plain-http server, and the emulator speaks
 * plain http; with RBAC on, it would be anonymous. This forwards kubectl's requests to the
 * emulator with the bearer token of the given kubeconfig, like an authenticating proxy, and
 * returns a kubeconfig for kubectl that points at it.
 */
async function kubectlKubeconfigFor(kubeconfig: string, name: string): Promise<string> {
  const token = /token: (\S+)/.exec(readFileSync(kubeconfig, 'utf8'))?.[1];
  assert.ok(token, `no token in ${kubeconfig}`);
  const upstream = new URL(emulator.url);
  const proxy = createServer((req, res) => {
    const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, authorization: `Bearer ${token}` } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  proxies.push(proxy);
  const path = join(work, `${name}.kubeconfig`);
  writeFileSync(path, `apiVersion: v1\nkind: Config\nclusters:\n- name: e\n  cluster:\n    server: http://127.0.0.1:${(proxy.address() as AddressInfo).port}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: e, user: u}\ncurrent-context: c\n`);
  return path;
}

const kubectls = new Map<string, Kubectl>();

async function kubectl(args: string[], input?: string, allowFailure = false, kubeconfig = adminKubeconfig): Promise<KubectlResult> {
  let run = kubectls.get(kubeconfig);
  if (!run) kubectls.set(kubeconfig, (run = kubectlFor(kubeconfig)));
  const r = await run(args, { input });
  if (!allowFailure) assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed:\n${describeResult(r)}`);
  return r;
}

function agentLogTail(): string {
  try {
    return readFileSync(agentLog, 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no agent log)';
  }
}

/** Polls (every 250 ms) until check returns a value, or fails with what was last seen. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last ? ` (last: ${String(last)})` : ''}\nagent log:\n${agentLogTail()}`);
    if (agent?.exitCode !== null && agent?.exitCode !== undefined) assert.fail(`the agent exited (${agent.exitCode}) while waiting for ${what}\n${agentLogTail()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function machine(): Promise<Obj | undefined> {
  const r = await kubectl(['get', 'uml', 'vm', '-n', MACHINES_NS, '-o', 'json'], undefined, true);
  if (r.code !== 0) {
    if (/NotFound/.test(r.stderr)) return undefined;
    throw new Error(r.stderr);
  }
  return JSON.parse(r.stdout) as Obj;
}

async function stopAgent(): Promise<void> {
  const child = agent;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

/** Shuts down any guest the agent left (the test failed half-way): drain works without an agent. */
async function drainLeftovers(): Promise<void> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'drain', '--state-dir', stateDir, '--control', 'none', '--timeout', '20s'], { stdio: 'ignore' });
  await new Promise((resolve) => { child.on('close', resolve); child.on('error', resolve); });
}

before(async () => {
  umlKernel();
  const imageRoot = testImageRoot();
  emulator = await startEmulator({ rbac: true });
  adminKubeconfig = await kubectlKubeconfigFor(emulator.kubeconfigPath, 'admin');
  // Installed as docs/install.md says, by an admin: the namespace, then the chart's objects.
  const text = renderChart({ releaseName: 'umlmon', namespace: 'umlmon-system', includeCrds: true });
  rendered = parseRendering(text).map((r) => r.object as Obj);
  writeFileSync(join(work, 'install.yaml'), text);
  await kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: umlmon-system\n');
  await kubectl(['apply', '-f', join(work, 'install.yaml')]);
  await kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${MACHINES_NS}\n`);

  // The agent, as the DaemonSet runs it: `run -f <the chart's config.yaml>`, NODE_NAME from the
  // downward API, the ServiceAccount's credentials. Only the node paths differ (flags), so that
  // tests can run side by side.
  const configMap = rendered.find((o) => o.kind === 'ConfigMap');
  const configFile = join(work, 'config.yaml');
  writeFileSync(configFile, configMap?.data['config.yaml']);
  agentArgs = [join(REPO_ROOT, 'src/cli/main.ts'), 'run', '-f', configFile,
    '--kubeconfig', await emulator.kubeconfigFor('umlmon-system', 'umlmon'), '--state-dir', stateDir, '--image-root', imageRoot,
    '--backup-dir', join(work, 'b'), '--listen', '127.0.0.1:0', '--control', 'none'];
  startAgent();
});

let agentArgs: string[] = [];
const log = createWriteStream(agentLog);

/** Starts `umlmon run` as the DaemonSet's container would (a new container after an upgrade). */
function startAgent(): void {
  agent = spawn(process.execPath, agentArgs, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_NAME: NODE, HOME: work },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  agent.stdout?.pipe(log, { end: false });
  agent.stderr?.pipe(log, { end: false });
}

async function events(): Promise<Obj[]> {
  const list = JSON.parse((await kubectl(['get', 'events.events.k8s.io', '-n', MACHINES_NS, '-o', 'json'])).stdout) as Obj;
  return (list.items as Obj[]).filter((e) => e.regarding?.name === 'vm');
}

after(async () => {
  await stopAgent();
  await drainLeftovers();
  await emulator?.close();
  for (const p of proxies) p.close();
  log.end();
  rmSync(work, { recursive: true, force: true });
});

test('the agent runs a machine\'s whole life, across an agent restart, with only the chart\'s ClusterRole, and uses what it grants', { timeout: 180_000 }, async (t) => {
  await kubectl(['apply', '-f', '-'], `apiVersion: umlmon.io/v1alpha1
kind: UmlMachine
metadata:
  name: vm
  namespace: ${MACHINES_NS}
spec:
  nodeName: ${NODE}
  memory: 48Mi
  shutdownGracePeriodSeconds: 10
  disks:
    - name: ubd0
      image: ${TEST_IMAGE}
`);

  // It boots: status written, finalizer added, Events recorded.
  const running = await waitFor('the machine to be Running and Ready', 120_000, async () => {
    const m = await machine();
    const ready = m?.status?.conditions?.find((c: Obj) => c.type === 'Ready');
    return m?.status?.phase === 'Running' && ready?.status === 'True' ? m : undefined;
  });
  assert.deepEqual(running.metadata.finalizers, ['umlmon.io/machine']);
  assert.equal(running.status.nodeName, NODE);
  assert.ok(Number.isInteger(running.status.pid) && running.status.pid > 0);
  await waitFor('a Booted Event', 30_000, async () => ((await events()).some((e) => e.reason === 'Booted') ? true : undefined));

  // An upgrade replaces the agent's container (SIGTERM, then a new one): the guest keeps running
  // and the new agent adopts it, still with only the ClusterRole's permissions.
  const pid = running.status.pid as number;
  await stopAgent();
  assert.ok(alive(pid), `the guest (pid ${pid}) outlived the agent`);
  startAgent();
  await waitFor('an Adopted Event from the new agent', 60_000, async () => ((await events()).some((e) => e.reason === 'Adopted') ? true : undefined));
  const adopted = await waitFor('the adopted machine to be Running', 30_000, async () => {
    const m = await machine();
    return m?.status?.phase === 'Running' ? m : undefined;
  });
  assert.equal(adopted.status.pid, pid, 'the same kernel runs on');
  assert.equal(adopted.status.restartCount ?? 0, running.status.restartCount ?? 0);

  // Deleted: the agent shuts the guest down and removes its finalizer, so the object goes.
  await kubectl(['delete', 'uml', 'vm', '-n', MACHINES_NS, '--wait=false']);
  await waitFor('the machine to be gone', 60_000, async () => ((await machine()) === undefined ? true : undefined));
  await waitFor('the guest to be shut down', 30_000, async () => (alive(pid) ? undefined : true));
  await stopAgent();

  const mine: RequestRecord[] = emulator.requests.filter((r) => r.user === AGENT_USER);
  assert.ok(mine.length > 0, 'the agent talked to the API server as the chart\'s ServiceAccount');
  const refused = mine.filter((r) => r.code === 403);
  assert.deepEqual(refused, [], 'requests the ClusterRole did not allow');

  const role = rendered.find((o) => o.kind === 'ClusterRole');
  const binding = rendered.find((o) => o.kind === 'ClusterRoleBinding');
  assert.deepEqual(binding?.subjects, [{ kind: 'ServiceAccount', name: 'umlmon', namespace: 'umlmon-system' }]);
  const grants = new Set<string>();
  for (const rule of role?.rules as Obj[]) {
    for (const g of rule.apiGroups) for (const r of rule.resources) for (const v of rule.verbs) grants.add(`${g === '' ? 'core' : g}/${r}:${v}`);
  }
  const used = new Set(mine.map((r) => `${r.apiGroup === '' ? 'core' : r.apiGroup}/${r.resource}${r.subresource ? `/${r.subresource}` : ''}:${r.verb}`));
  t.diagnostic(`requests as the agent: ${mine.length}; used grants: ${[...used].sort().join(', ')}`);
  for (const u of used) assert.ok(grants.has(u), `the agent made a ${u} request the ClusterRole does not grant`);
  const unusedUnexplained = [...grants].filter((g) => !used.has(g) && NOT_EXERCISED[g] === undefined);
  assert.deepEqual(unusedUnexplained, [], `granted but never used (narrow the ClusterRole, or say in NOT_EXERCISED why it stays); used: ${[...used].sort().join(', ')}`);
  for (const g of Object.keys(NOT_EXERCISED)) assert.ok(grants.has(g), `NOT_EXERCISED lists ${g}, which the ClusterRole does not grant`);
  // What the scenario must have exercised at least: watch and list its machines, update the
  // finalizer, patch status, create Events.
  for (const g of ['umlmon.io/umlmachines:list', 'umlmon.io/umlmachines:watch', 'umlmon.io/umlmachines:update', 'umlmon.io/umlmachines/status:patch', 'events.k8s.io/events:create']) {
    assert.ok(used.has(g), `the scenario never made a ${g} request`);
  }
});

test('the same ServiceAccount is refused everything outside the role (kubectl as the agent)', { timeout: 60_000 }, async () => {
  const kubeconfig = await kubectlKubeconfigFor(await emulator.kubeconfigFor('umlmon-system', 'umlmon'), 'agent');
  const asAgent = async (args: string[], input?: string) => {
    const r = await kubectl(args, input, true, kubeconfig);
    return { code: r.code, out: r.stdout + r.stderr };
  };
  const allowed = await asAgent(['get', 'uml', '-A']);
  assert.equal(allowed.code, 0, allowed.out);
  for (const args of [['get', 'secrets', '-A'], ['get', 'pods', '-n', 'umlmon-system'], ['get', 'nodes'], ['delete', 'uml', 'anything', '-n', MACHINES_NS], ['get', 'configmaps', '-n', 'umlmon-system']]) {
    const r = await asAgent(args);
    assert.notEqual(r.code, 0, `kubectl ${args.join(' ')} as the agent should be refused`);
    assert.match(r.out, /forbidden/i, `kubectl ${args.join(' ')}: ${r.out}`);
  }
  const create = await asAgent(['create', '-f', '-'], `apiVersion: umlmon.io/v1alpha1\nkind: UmlMachine\nmetadata:\n  name: sneaky\n  namespace: ${MACHINES_NS}\nspec:\n  nodeName: ${NODE}\n  disks: [{name: ubd0, image: ${TEST_IMAGE}}]\n`);
  assert.notEqual(create.code, 0, 'the agent cannot create machines');
  assert.match(create.out, /forbidden/i);
});
