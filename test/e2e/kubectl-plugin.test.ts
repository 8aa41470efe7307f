// `kubectl umlmon` against a real Kubernetes 1.20 control plane, found by the real kubectl as a
// plugin on PATH (bin/kubectl-umlmon): the state verbs patch the object, restart and backup set
// their annotations, status prints the object's status, a GitOps-managed object gets the note,
// completion goes through kubectl's own plugin completion. console and mconsole as far as this
// control plane allows (it has no kubelet, so no pod runs): the agent pod is looked up by the
// chart's labels and the machine's node, and the kubectl exec command is the one expected; the
// exec itself is then refused by the API server for want of a node.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { startControlPlane, type ControlPlane } from '../support/control-plane.ts';
import { REPO_ROOT } from '../support/uml.ts';
import { crdEstablished } from '../support/kubectl.ts';
import { umlMachine } from '../support/fixtures.ts';

const KUBECTL = process.env.KUBECTL ?? '/usr/bin/kubectl';
let cp: ControlPlane;
let cacheDir: string;
const NS = `plug-${process.pid}`;
const AGENTS = `agents-${process.pid}`;

function kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBECTL, args, {
      env: { ...process.env, KUBECONFIG: cp.adminKubeconfig, KUBECACHEDIR: cacheDir, HOME: cacheDir, PATH: `${join(REPO_ROOT, 'bin')}:${process.env.PATH}` },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

const show = (r: { code: number; stdout: string; stderr: string }): string => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

async function apply(object: unknown): Promise<void> {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(object));
  assert.equal(r.code, 0, show(r));
}

function machine(name: string, extra: Record<string, unknown> = {}): unknown {
  return umlMachine({ name, namespace: NS, metadata: extra, spec: { nodeName: 'node-a', disks: [{ name: 'ubd0', image: 'busybox.ext4' }] } });
}

async function get(name: string): Promise<any> {
  const r = await kubectl(['get', 'uml', name, '-n', NS, '-o', 'json']);
  assert.equal(r.code, 0, show(r));
  return JSON.parse(r.stdout);
}

function agentPod(name: string, node: string): unknown {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: AGENTS, labels: { 'app.kubernetes.io/name': 'umlmon', 'app.kubernetes.io/instance': 'umlmon', 'app.kubernetes.io/component': 'node-agent' } },
    spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'agent', image: 'ghcr.io/umlmon/umlmon:0.1.0' }] },
  };
}

before(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), 'umlmon-plugin-'));
  cp = await startControlPlane();
  const crd = await kubectl(['apply', '--validate=false', '-f', join(REPO_ROOT, 'crds')]);
  assert.equal(crd.code, 0, show(crd));
  await crdEstablished(cp.adminKubeconfig, 'umlmachines.umlmon.io');
  for (const ns of [NS, AGENTS]) await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await apply(machine('web'));
  await apply(machine('synced', { labels: { 'argocd.argoproj.io/instance': 'guests' } }));
});

after(async () => {
  await cp?.stop();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('kubectl umlmon on a real 1.20 API server', { timeout: 5 * 60_000 }, () => {
  test('kubectl finds the plugin; pause, resume, stop, start patch spec.state', async () => {
    const plugins = await kubectl(['plugin', 'list']);
    assert.match(plugins.stdout, /kubectl-umlmon/);
    const pause = await kubectl(['umlmon', 'pause', 'web', '-n', NS]);
    assert.equal(pause.code, 0, show(pause));
    assert.equal(pause.stdout.trim(), 'umlmachine.umlmon.io/web patched: spec.state Running -> Paused');
    assert.equal((await get('web')).spec.state, 'Paused');
    assert.match((await kubectl(['umlmon', 'pause', 'web', '-n', NS])).stdout, /already Paused/);
    assert.match((await kubectl(['umlmon', '-n', NS, 'resume', 'web'])).stdout, /Paused -> Running/);
    assert.match((await kubectl(['umlmon', 'stop', 'web', '-n', NS])).stdout, /Running -> Stopped/);
    assert.equal((await get('web')).spec.state, 'Stopped');
    assert.match((await kubectl(['umlmon', 'start', 'web', '-n', NS])).stdout, /Stopped -> Running/);
    const unknown = await kubectl(['umlmon', 'pause', 'nope', '-n', NS]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /umlmachines.umlmon.io "nope" not found/);
  });

  test('restart and backup set their request annotations to now', async () => {
    const t0 = Date.now();
    assert.match((await kubectl(['umlmon', 'restart', 'web', '-n', NS])).stdout, /restart requested \(umlmon\.io\/restart-requested-at: /);
    assert.match((await kubectl(['umlmon', 'backup', 'web', '-n', NS])).stdout, /backup requested/);
    const annotations = (await get('web')).metadata.annotations;
    for (const key of ['umlmon.io/restart-requested-at', 'umlmon.io/backup-requested-at']) {
      const at = Date.parse(annotations[key]);
      assert.ok(at >= t0 - 1000 && at <= Date.now() + 1000, `${key}: ${annotations[key]}`);
    }
  });

  test('a GitOps-managed machine: the patch is made, and the note says it will be reverted', async () => {
    const r = await kubectl(['umlmon', 'pause', 'synced', '-n', NS]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /note: Argo CD manages .*synced; its next sync puts its own spec.state back: change it in Git/);
  });

  test('status prints what the agent reported', async () => {
    const status = { phase: 'Running', nodeName: 'node-a', umid: 'abc123', pid: 4242, restartCount: 1, startTime: new Date(Date.now() - 90_000).toISOString(), kernelVersion: 'Linux umlguest 0.0.0-test', conditions: [{ type: 'Ready', status: 'True', reason: 'Running', message: 'the guest is running', lastTransitionTime: new Date().toISOString() }] };
    const p = await kubectl(['patch', 'uml', 'web', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
    assert.equal(p.code, 0, show(p));
    const r = await kubectl(['umlmon', 'status', 'web', '-n', NS]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^Name:\\s+${NS}/web$`, 'm'));
    assert.match(r.stdout, /^Phase:\s+Running$/m);
    assert.match(r.stdout, /^PID:\s+4242$/m);
    assert.match(r.stdout, /^Started:\s+.* \(1m3\ds ago\)$/m);
    assert.match(r.stdout, /^\s+Ready\s+True\s+Running\s+the guest is running$/m);
  });

  test('console and mconsole: the agent pod of the machine\'s node, and the kubectl exec command', async () => {
    const none = await kubectl(['umlmon', 'console', 'web', '-n', NS, '--dry-run']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no umlmon agent pod in any namespace with labels app.kubernetes.io\/name=umlmon,app.kubernetes.io\/component=node-agent on node node-a/);
    await apply(agentPod('umlmon-b', 'node-b'));
    await apply(agentPod('umlmon-a', 'node-a'));
    const pending = await kubectl(['umlmon', 'console', 'web', '-n', NS, '--dry-run']);
    assert.match(pending.stderr, /the umlmon agent pod agents-\d+\/umlmon-a .* is not Running \(Pending\)/);
    // No kubelet here: the test reports the pod Running as a kubelet would.
    for (const pod of ['umlmon-a', 'umlmon-b']) {
      const s = await kubectl(['patch', 'pod', pod, '-n', AGENTS, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
      assert.equal(s.code, 0, show(s));
    }
    const dry = await kubectl(['umlmon', 'console', 'web', '-n', NS, '--dry-run', '--read-only']);
    assert.equal(dry.code, 0, show(dry));
    assert.match(dry.stdout.trim(), new RegExp(`^kubectl exec -i -n ${AGENTS} umlmon-a -c agent -- umlmon console -f /etc/umlmon/config.yaml --holder '\\S+@\\S+ via kubectl' --read-only ${NS}/web$`));
    const mc = await kubectl(['umlmon', 'mconsole', 'web', '-n', NS, '--agent-namespace', AGENTS, '--dry-run', 'proc', 'meminfo']);
    assert.equal(mc.stdout.trim(), `kubectl exec -i -n ${AGENTS} umlmon-a -c agent -- umlmon mconsole ${NS}/web proc meminfo`);
    // For real: the API server cannot reach a kubelet on a node that does not exist.
    const exec = await kubectl(['umlmon', 'mconsole', 'web', '-n', NS, 'version']);
    assert.notEqual(exec.code, 0);
    assert.match(exec.stderr, /node|kubelet|connect|upgrade/i, show(exec));
  });

  test('completion: kubectl completes the plugin through kubectl_complete-umlmon; the scripts load', async () => {
    const verbs = await kubectl(['__complete', 'umlmon', 'pa']);
    assert.match(verbs.stdout, /^pause$/m, show(verbs));
    const names = await kubectl(['__complete', 'umlmon', 'status', '-n', NS, '']);
    assert.match(names.stdout, /^web$/m, show(names));
    assert.match(names.stdout, /^synced$/m);
    for (const shell of ['bash', 'zsh']) {
      const r = await kubectl(['umlmon', 'completion', shell]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /kubectl-umlmon __complete/);
    }
    const bash = spawn('bash', ['-c', `source <(${join(REPO_ROOT, 'bin/kubectl-umlmon')} completion bash) && complete -p kubectl-umlmon`]);
    let out = '';
    bash.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const code = await new Promise((resolve) => bash.on('close', resolve));
    assert.equal(code, 0);
    assert.match(out, /complete -o default -F _kubectl_umlmon kubectl-umlmon/);
  });

  test('the chart\'s DaemonSet pods carry the labels the plugin selects', () => {
    const ds = parseYaml(readFileSync(join(REPO_ROOT, 'manifests/daemonset.yaml'), 'utf8'));
    const labels = ds.spec.template.metadata.labels;
    assert.equal(labels['app.kubernetes.io/name'], 'umlmon');
    assert.equal(labels['app.kubernetes.io/component'], 'node-agent');
    assert.equal(ds.spec.template.spec.containers[0].name, 'agent');
  });
});
