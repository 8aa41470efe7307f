// The install path for real, on a one-node cluster: the agent's image built from the project's
// Containerfile (offline: only the BASE_IMAGE and KERNEL_IMAGE build arguments differ), a real
// node (containerd, kubelet, kube-scheduler; test/support/node.ts) joined to the real 1.20
// control plane, the DaemonSet installed as a user installs it, and then used as a user would:
// a machine on that node, kubectl wait, exec into the agent for mconsole and check, its logs and
// metrics, pause and resume through the spec; an upgrade (the agent's pod deleted and replaced:
// the guest keeps its pid and the new pod adopts it), and a drain in the pod.
//
// Two installs, each on a fresh cluster: `kubectl apply -k` of an overlay on manifests/, and
// the chart as our Helm stand-in renders it (what `helm install` applies). What differs from a
// user's cluster, and why, is only in the overlay / values:
// - the image: localhost/umlmon:e2e, loaded into containerd (no registry);
// - the state directory's hostPath: under this test's $TMPDIR, not the host's /var/lib/umlmon;
// - KUBERNETES_SERVICE_HOST/PORT: this cluster has no kube-proxy, so the service IP of
//   `kubernetes` leads nowhere; the agent talks to the API server where it listens.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { renderChart } from '../../hack/render-chart.ts';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { buildAgentImage, nodeControlPlaneOptions, startNode, type AgentImages, type Node } from '../support/node.ts';
import { alive } from '../support/process.ts';
import { defaultCgroupParent } from '../../src/runtime/runtime.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot } from '../support/uml.ts';
import { eventually } from '../support/eventually.ts';

const run = promisify(execFile);
const AGENT_NS = 'umlmon-system';
const NS = 'e2e';
const NAME = 'basic';

let images: AgentImages;
let imageRoot: string;
const work = mkdtempSync(join(tmpdir(), 'umlmon-ds-'));

before(async () => {
  imageRoot = testImageRoot();
  images = await buildAgentImage();
});

const cgroupParents = new Set<string>();
after(() => {
  for (const parent of cgroupParents) killGuestsLeft(parent);
  rmSync(work, { recursive: true, force: true });
});

interface Cluster {
  cp: ControlPlane;
  node: Node;
  stateDir: string;
  kubectl(args: string[], stdin?: string): Promise<string>;
}

/**
 * A fresh control plane and node for one install. agentStateDir: the agent's state directory as
 * its container sees it (its guests' cgroup parent follows from it, for the last-resort cleanup).
 */
async function withCluster(name: string, agentStateDir: (stateDir: string) => string, body: (c: Cluster) => Promise<void>): Promise<void> {
  const nodeName = `node-${name}`;
  const stateDir = join(work, name, 'state');
  const parent = defaultCgroupParent(agentStateDir(stateDir));
  cgroupParents.add(parent);
  const parentDirs = cgroupParentDirs(parent).filter((d) => !existsSync(d));
  mkdirSync(join(stateDir, 'images'), { recursive: true });
  copyFileSync(join(imageRoot, TEST_IMAGE), join(stateDir, 'images', TEST_IMAGE));
  const cp = await startControlPlane(nodeControlPlaneOptions(nodeName));
  let node: Node | undefined;
  try {
    node = await startNode(cp, { name: nodeName, images: [images.agent, images.pause], pauseImage: images.pause });
    const kubectl = async (args: string[], stdin?: string): Promise<string> => {
      const child = run('kubectl', ['--kubeconfig', cp.adminKubeconfig, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      if (stdin !== undefined) child.child.stdin?.end(stdin);
      try {
        return (await child).stdout;
      } catch (err) {
        throw new Error(`kubectl ${args.join(' ')}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
      }
    };
    try {
      await body({ cp, node, stateDir, kubectl });
    } catch (err) {
      const agentLogs = await kubectl(['-n', AGENT_NS, 'logs', '-l', 'app.kubernetes.io/name=umlmon', '--tail=40']).catch((e: Error) => e.message);
      const pods = await kubectl(['get', 'pods', '-A', '-o', 'wide']).catch((e: Error) => e.message);
      throw new Error(`${(err as Error).message}\n--- pods:\n${pods}\n--- agent logs:\n${agentLogs}\n${node.logTail(15)}\n${cp.logTail(10)}`, { cause: err });
    }
  } finally {
    killGuestsLeft(parent);
    await node?.stop();
    await cp.stop();
    // The guests' cgroup parent, if this test's agent made it (an agent leaves it while guests may run).
    for (const d of parentDirs) {
      try {
        rmdirSync(d);
      } catch { /* not there, or not empty: then something still runs, and says so below */ }
    }
    assert.deepEqual(guestsLeft(parent), [], 'no guest of the test left running');
  }
}

function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  return eventually(what, probe, { timeoutMs, intervalMs: 500 });
}

/** UML kernels in cgroups under parent (the test's agent's: no one else's state directory maps to it). */
function guestsLeft(parent: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const exe = readlinkSync(`/proc/${entry}/exe`).replace(/ \(deleted\)$/, '');
      if (!/^linux([.-]|$)/.test(exe.slice(exe.lastIndexOf('/') + 1))) continue;
      const cgroups = readFileSync(`/proc/${entry}/cgroup`, 'utf8').split('\n').map((l) => l.split(':')[2] ?? '');
      if (cgroups.some((path) => path.startsWith(`/${parent}/`))) pids.push(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

function cgroupParentDirs(parent: string): string[] {
  const root = '/sys/fs/cgroup';
  if (existsSync(join(root, 'cgroup.controllers'))) return [join(root, parent)];
  return readdirSync(root).map((h) => join(root, h)).filter((h) => existsSync(join(h, 'cgroup.procs'))).map((h) => join(h, parent));
}

function killGuestsLeft(parent: string): void {
  for (const pid of guestsLeft(parent)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* gone */ }
  }
}

interface Machine {
  status?: { phase?: string; pid?: number; umid?: string; conditions?: { type: string; status: string; reason: string }[] };
}

const MACHINE = (nodeName: string) => readFileSync(join(REPO_ROOT, 'examples/basic.yaml'), 'utf8')
  .replace(/^(\s*nodeName:).*$/m, `$1 ${nodeName}`)
  .replace(/^metadata:\n/m, `metadata:\n  namespace: ${NS}\n`);

async function scenario(c: Cluster): Promise<void> {
  const { kubectl } = c;
  await until('the agent pod Ready', async () => (await kubectl(['-n', AGENT_NS, 'get', 'pods', '-o',
    'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}'])).trim() === 'True');
  /** The agent's pod ('' when there is none). */
  const podName = async () => (await kubectl(['-n', AGENT_NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=umlmon', '-o', 'jsonpath={.items[*].metadata.name}'])).trim().split(' ')[0] ?? '';
  const pod1 = await podName();
  const exec = (args: string[]) => kubectl(['-n', AGENT_NS, 'exec', pod1, '--', ...args]);

  await kubectl(['create', 'namespace', NS]);
  await kubectl(['apply', '-f', '-'], MACHINE(c.node.name));
  await kubectl(['-n', NS, 'wait', '--for=condition=Ready', `uml/${NAME}`, '--timeout=120s']);
  const machine = async () => JSON.parse(await kubectl(['-n', NS, 'get', 'uml', NAME, '-o', 'json'])) as Machine;
  const { pid, umid } = (await machine()).status!;
  assert.ok(pid && alive(pid), `status.pid ${pid} is a live process on the node`);

  // As docs/operations.md has it: kubectl exec ... -- umlmon mconsole <ns>/<name> version.
  assert.match(await exec(['umlmon', 'mconsole', `${NS}/${NAME}`, 'version']), /Linux/);
  const check = await exec(['umlmon', 'check']);
  // Exit 0 (kubectl exec fails otherwise): the config, and the image's kernel runs on this host.
  assert.match(check, /configuration OK/, `umlmon check in the pod:\n${check}`);
  assert.match(check, /default/, `umlmon check names the default kernel:\n${check}`);
  const logs = await kubectl(['-n', AGENT_NS, 'logs', pod1]);
  assert.match(logs, new RegExp(NAME), 'the agent logs name the machine');
  const metrics = await (await fetch('http://127.0.0.1:9473/metrics')).text();
  assert.match(metrics, /^umlmon_/m, 'the agent serves its metrics on the node (hostNetwork)');

  await kubectl(['-n', NS, 'patch', 'uml', NAME, '--type=merge', '-p', '{"spec":{"state":"Paused"}}']);
  await kubectl(['-n', NS, 'wait', '--for=condition=Paused', `uml/${NAME}`, '--timeout=60s']);
  await kubectl(['-n', NS, 'patch', 'uml', NAME, '--type=merge', '-p', '{"spec":{"state":"Running"}}']);
  await kubectl(['-n', NS, 'wait', '--for=condition=Paused=false', `uml/${NAME}`, '--timeout=60s']);
  await kubectl(['-n', NS, 'wait', '--for=condition=Ready', `uml/${NAME}`, '--timeout=60s']);

  // An upgrade, as a rolling update does it: the pod goes, the DaemonSet makes another.
  await kubectl(['-n', AGENT_NS, 'delete', 'pod', pod1, '--wait=true']);
  const pod2 = await until('a new agent pod', async () => {
    const p = await podName();
    return p !== '' && p !== pod1 ? p : undefined;
  });
  await until('the new agent pod Ready', async () => (await kubectl(['-n', AGENT_NS, 'get', 'pod', pod2, '-o',
    'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).trim() === 'True');
  assert.ok(alive(pid), 'the guest outlived the agent pod');
  await until('an Adopted event', async () => (await kubectl(['-n', NS, 'get', 'events', '-o', 'json'])).includes('"Adopted"'));
  const adopted = (await machine()).status!;
  assert.equal(adopted.pid, pid, 'the new agent reports the same kernel');
  assert.equal(adopted.umid, umid);

  // Node maintenance: drain in the pod shuts the guest down gracefully.
  const drain = await kubectl(['-n', AGENT_NS, 'exec', pod2, '--', 'umlmon', 'drain', '--timeout', '60s']);
  await until('the kernel gone after drain', () => !alive(pid), 60_000);
  assert.match(drain, new RegExp(NAME), `drain names the machine it shut down:\n${drain}`);
  await until('status.phase Stopped after the drain', async () => (await machine()).status?.phase === 'Stopped', 60_000);

  // Uninstall the agent (the machine stays, Stopped): its pod stops with SIGTERM, as on a node.
  await kubectl(['-n', AGENT_NS, 'delete', 'daemonset', 'umlmon', '--wait=true']);
  await until('the agent pod gone', async () => (await podName()) === '');
}

const ENV_PATCH = (cp: ControlPlane) => [
  { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
  { name: 'KUBERNETES_SERVICE_PORT', value: new URL(cp.url).port },
];

test('kubectl apply -k (an overlay on manifests/) on a one-node cluster: a machine runs, outlives an agent upgrade, drains', async () => {
  await withCluster('kustomize', () => '/var/lib/umlmon', async (c) => {
    const overlay = join(work, 'kustomize', 'overlay');
    mkdirSync(overlay, { recursive: true });
    const [repo, tag] = images.agent.split(':') as [string, string];
    writeFileSync(join(overlay, 'kustomization.yaml'), [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - ${relative(overlay, join(REPO_ROOT, 'manifests'))}`,
      'images:',
      '  - name: ghcr.io/umlmon/umlmon',
      `    newName: ${repo}`,
      `    newTag: ${tag}`,
      'patchesStrategicMerge:',
      '  - daemonset-patch.yaml',
      '',
    ].join('\n'));
    writeFileSync(join(overlay, 'daemonset-patch.yaml'), JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'umlmon', namespace: AGENT_NS },
      spec: { template: { spec: {
        containers: [{ name: 'agent', env: ENV_PATCH(c.cp) }],
        volumes: [{ name: 'state', hostPath: { path: c.stateDir, type: 'DirectoryOrCreate' } }],
      } } },
    }));
    // 1.20 knows neither CEL rules nor selectable fields in the CRD (docs/install.md).
    await c.kubectl(['apply', '--validate=false', '-k', overlay]);
    await scenario(c);
  });
});

test('the chart as helm install applies it, on a one-node cluster: the same scenario', async () => {
  await withCluster('chart', (stateDir) => stateDir, async (c) => {
    const [repo, tag] = images.agent.split(':') as [string, string];
    const values = join(work, 'chart', 'values.yaml');
    writeFileSync(values, JSON.stringify({
      image: { repository: repo, tag },
      stateDir: c.stateDir,
      imageRoot: join(c.stateDir, 'images'),
      extraEnv: ENV_PATCH(c.cp),
    }));
    const rendering = renderChart({ includeCrds: true, namespace: AGENT_NS, valueFiles: [values] });
    await c.kubectl(['create', 'namespace', AGENT_NS]);
    await c.kubectl(['apply', '--validate=false', '-n', AGENT_NS, '-f', '-'], rendering);
    await scenario(c);
  });
});
