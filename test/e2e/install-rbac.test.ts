// RBAC proven, not guessed: the chart's objects are installed with the real kubectl into a real
// Kubernetes 1.20 control plane (test/support/control-plane.ts), and the real agent (`umlmon
// run`, Kubernetes source, the chart's own config file) runs with the token of the chart's
// ServiceAccount through a machine's whole life on a real UML kernel: create, boot, status,
// finalizer, Events, delete. The API server's audit log shows every request the agent made:
// each must be allowed by the chart's ClusterRole (none refused), and every grant in the
// ClusterRole is either used here or listed below with the reason this scenario cannot
// exercise it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlane, type AuditRecord, type ControlPlane } from '../support/control-plane.ts';
import { describe as describeResult, kubectlFor, type Kubectl, type KubectlResult } from '../support/kubectl.ts';
import { parseRendering, renderChart, REPO_ROOT } from '../../hack/render-chart.ts';
import { testImageRoot, TEST_IMAGE, umlKernel } from '../support/uml.ts';
import { alive } from '../support/process.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { eventually } from '../support/eventually.ts';

type Obj = Record<string, any>;

const AGENT_USER = 'system:serviceaccount:umlmon-system:umlmon';

/**
 * Grants this scenario does not exercise, and why they are in the ClusterRole all the same.
 * Anything granted, unused and not listed here fails the test: the role would be too wide.
 */
const NOT_EXERCISED: Record<string, string> = {
  'umlmon.io/umlmachines:get': 're-reads a machine only after a 409 conflict on its finalizer update',
  'umlmon.io/umlmachines/finalizers:update': 'checked by the OwnerReferencesPermissionEnforcement admission plugin on clusters that enable it; this control plane does not',
  'events.k8s.io/events:patch': 'folds a repeated Event into a series; one short life repeats none',
  'core/events:create': 'the fallback for API servers without events.k8s.io/v1 (before 1.19); 1.20 serves it',
  'core/events:patch': 'the same fallback, for series',
};

const id = randomBytes(3).toString('hex');
const NODE = `rbac-node-${id}`;
const MACHINES_NS = `rbac-${id}`;
const work = mkdtempSync(join(tmpdir(), 'umlmon-rbac-'));
const stateDir = join(work, 's');
const agentLog = join(work, 'agent.log');
let cp: ControlPlane;
let agent: ChildProcess | undefined;
let rendered: Obj[] = [];
let adminKubeconfig = '';

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
  let last: unknown;
  return eventually(what, async () => {
    // The agent's exit fails the wait at once; the check's own errors are tried again.
    if (agent?.exitCode !== null && agent?.exitCode !== undefined) assert.fail(`the agent exited (${agent.exitCode}) while waiting for ${what}\n${agentLogTail()}`);
    try {
      return await check();
    } catch (err) {
      last = err;
      return undefined;
    }
  }, { timeoutMs, intervalMs: 250, retryErrors: false, context: () => `${last ? `last: ${String(last)}\n` : ''}agent log:\n${agentLogTail()}` });
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
  cp = await startControlPlane();
  adminKubeconfig = cp.adminKubeconfig;
  // Installed as docs/install.md says for a 1.20 server, by an admin: the namespace, then the
  // chart's objects (--validate=false: kubectl 1.32 would refuse the CRD's newer fields).
  const text = renderChart({ releaseName: 'umlmon', namespace: 'umlmon-system', includeCrds: true });
  rendered = parseRendering(text).map((r) => r.object as Obj);
  writeFileSync(join(work, 'install.yaml'), text);
  await kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: umlmon-system\n');
  await kubectl(['apply', '--validate=false', '-f', join(work, 'install.yaml')]);
  await crdEstablished(adminKubeconfig, 'umlmachines.umlmon.io');
  await kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${MACHINES_NS}\n`);

  // The agent, as the DaemonSet runs it: `run -f <the chart's config.yaml>`, NODE_NAME from the
  // downward API, the ServiceAccount's token. Only the node paths differ (flags), so that
  // tests can run side by side.
  const configMap = rendered.find((o) => o.kind === 'ConfigMap');
  const configFile = join(work, 'config.yaml');
  writeFileSync(configFile, configMap?.data['config.yaml']);
  agentArgs = [join(REPO_ROOT, 'src/cli/main.ts'), 'run', '-f', configFile,
    '--kubeconfig', await cp.serviceAccountKubeconfig('umlmon-system', 'umlmon'), '--state-dir', stateDir, '--image-root', imageRoot,
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
  await cp?.stop();
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

  const mine: AuditRecord[] = cp.requests().filter((r) => r.user === AGENT_USER);
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
  const kubeconfig = await cp.serviceAccountKubeconfig('umlmon-system', 'umlmon');
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
