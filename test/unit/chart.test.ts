// The Helm chart, rendered the way `helm template` renders it (hack/render-chart.ts: Go
// text/template + sprig + Helm's functions, values checked against values.schema.json): default
// and non-default values, the DaemonSet's essentials, least-privilege RBAC, and an agent config
// that the agent's own loader accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { isMap, isScalar, parse as parseYaml, parseDocument, type YAMLMap } from 'yaml';
import { CHART_DIR, REPO_ROOT, ChartRenderError, coalescedValues, parseRendering, renderChart, validateValues, type RenderOptions } from '../../hack/render-chart.ts';
import { Ajv } from 'ajv';
import { loadConfig } from '../../src/agent/config.ts';

type Obj = Record<string, any>;

const CUSTOM_VALUES = join(CHART_DIR, 'ci/custom-values.yaml');

function objects(o: RenderOptions = {}): Obj[] {
  return parseRendering(renderChart(o)).map((r) => r.object as Obj);
}

function find(objs: Obj[], kind: string): Obj {
  const found = objs.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `want exactly one ${kind}, got ${found.length}`);
  return found[0] as Obj;
}

/** Loads a rendered ConfigMap's config.yaml with the agent's own loader, as `umlmon run -f` does. */
function agentConfigOf(configMap: Obj, env: Record<string, string> = { NODE_NAME: 'worker-1' }) {
  const text = configMap.data['config.yaml'] as string;
  const result = loadConfig({
    flags: { config: '/etc/umlmon/config.yaml' },
    env,
    readFile: (p) => {
      if (p === '/etc/umlmon/config.yaml') return text;
      throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    },
    hostname: 'not-the-node',
  });
  assert.ok(result.ok, `the agent refuses the chart's config:\n${result.ok ? '' : result.errors.join('\n')}\n---\n${text}`);
  return result.config;
}

const DEFAULT = { releaseName: 'umlmon', namespace: 'umlmon-system' } satisfies RenderOptions;

test('default values render exactly the agent objects, all in the release namespace', () => {
  const objs = objects(DEFAULT);
  assert.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.name}`), [
    'ServiceAccount/umlmon', 'ConfigMap/umlmon', 'ClusterRole/umlmon', 'ClusterRoleBinding/umlmon', 'DaemonSet/umlmon',
  ]);
  for (const o of objs) {
    if (o.kind.startsWith('Cluster')) assert.equal(o.metadata.namespace, undefined, `${o.kind} is cluster-scoped`);
    else assert.equal(o.metadata.namespace, 'umlmon-system', `${o.kind} namespace`);
    assert.equal(o.metadata.labels['app.kubernetes.io/managed-by'], 'Helm');
    assert.equal(o.metadata.labels['app.kubernetes.io/name'], 'umlmon');
  }
});

test('the rendering has helm template\'s shape: Source headers, CRDs first with --include-crds, NOTES left out', () => {
  const out = renderChart({ ...DEFAULT, includeCrds: true });
  assert.match(out, /^---\n# Source: umlmon\/crds\/umlmachines\.umlmon\.io\.yaml\n/);
  assert.match(out, /\n---\n# Source: umlmon\/templates\/daemonset\.yaml\n/);
  assert.doesNotMatch(out, /NOTES/);
  const withNotes = renderChart({ ...DEFAULT, notes: true });
  assert.match(withNotes, /\nNOTES:\numlmon 0\.1\.0 is installed as release umlmon in namespace umlmon-system\./);
  assert.match(withNotes, /kubectl -n umlmon-system get daemonset umlmon/);
});

test('DaemonSet essentials: hostPID, privileged, NODE_NAME from spec.nodeName, host volumes, probes, guest-safe updates', () => {
  const objs = objects(DEFAULT);
  const ds = find(objs, 'DaemonSet');
  const pod = ds.spec.template.spec;
  const [agent, ...others] = pod.containers as Obj[];
  assert.equal(others.length, 0);
  assert.ok(agent);

  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
  assert.equal(agent.securityContext.privileged, true);
  assert.equal(agent.securityContext.runAsUser, 0);
  assert.equal(agent.image, 'ghcr.io/umlmon/umlmon:0.1.0');
  assert.deepEqual(agent.args, ['run', '-f', '/etc/umlmon/config.yaml']);
  assert.deepEqual(agent.env.find((e: Obj) => e.name === 'NODE_NAME'), { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });

  const volumes = Object.fromEntries((pod.volumes as Obj[]).map((v) => [v.name, v]));
  assert.deepEqual(volumes.state?.hostPath, { path: '/var/lib/umlmon', type: 'DirectoryOrCreate' });
  assert.deepEqual(volumes.cgroup?.hostPath, { path: '/sys/fs/cgroup', type: 'Directory' });
  assert.deepEqual(volumes.tun?.hostPath, { path: '/dev/net/tun', type: 'CharDevice' });
  assert.equal(volumes.config?.configMap.name, find(objs, 'ConfigMap').metadata.name);
  assert.equal(volumes.images, undefined, 'the default image root lies inside the state directory');
  const mounts = Object.fromEntries((agent.volumeMounts as Obj[]).map((m) => [m.name, m]));
  assert.equal(mounts.state?.mountPath, '/var/lib/umlmon', 'the state dir has the same path inside and outside (pid files and sockets name it)');
  assert.equal(mounts.cgroup?.mountPath, '/sys/fs/cgroup');
  assert.equal(mounts.tun?.mountPath, '/dev/net/tun');
  assert.deepEqual(mounts.config, { name: 'config', mountPath: '/etc/umlmon', readOnly: true });
  assert.equal(Object.keys(mounts).length, Object.keys(volumes).length, 'every volume is mounted');

  const port = (agent.ports as Obj[]).find((p) => p.name === 'http');
  assert.equal(port?.containerPort, 9473);
  assert.deepEqual(agent.livenessProbe.httpGet, { path: '/healthz', port: 'http' });
  assert.deepEqual(agent.readinessProbe.httpGet, { path: '/readyz', port: 'http' });

  assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  assert.equal(pod.terminationGracePeriodSeconds, 30);
  assert.equal(pod.serviceAccountName, find(objs, 'ServiceAccount').metadata.name);
  assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' });
  for (const [k, v] of Object.entries(ds.spec.selector.matchLabels as Record<string, string>)) {
    assert.equal(ds.spec.template.metadata.labels[k], v, `pod template carries selector label ${k}`);
  }
  assert.match(ds.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
});

test('the ConfigMap holds a config the agent accepts, consistent with the pod: kubernetes source, paths, port, node name', () => {
  const objs = objects(DEFAULT);
  const config = agentConfigOf(find(objs, 'ConfigMap'));
  assert.equal(config.source, 'kubernetes');
  assert.equal(config.nodeName, 'worker-1', 'NODE_NAME (the downward API) names the node');
  assert.equal(config.stateDir, '/var/lib/umlmon');
  assert.equal(config.imageRoot, '/var/lib/umlmon/images');
  assert.equal(config.backupDir, '/var/lib/umlmon/backups');
  assert.deepEqual(config.controlAddress, { kind: 'unix', path: '/var/lib/umlmon/control.sock' });
  assert.deepEqual(config.kernels, { default: { path: '/usr/local/lib/umlmon/linux' } });
  assert.deepEqual(config.defaultKernelArgs, ['lpj=auto']);
  assert.equal(config.workers, 32);
  assert.equal(config.logLevel, 'info');
  const agent = find(objs, 'DaemonSet').spec.template.spec.containers[0];
  assert.equal(config.listenAddress?.port, agent.ports[0].containerPort, 'probes reach the port the agent listens on');
});

test('`umlmon check` accepts the chart\'s config, default and custom, with the examples as written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-chart-check-'));
  try {
    for (const [name, o] of [['default', DEFAULT], ['custom', { valueFiles: [CUSTOM_VALUES] }]] as [string, RenderOptions][]) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, find(objects(o), 'ConfigMap').data['config.yaml']);
      const { stdout } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'check', '-f', file, '--skip-image-check', '--skip-kernel-probe', join(REPO_ROOT, 'examples')], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_NAME: 'worker-1' },
      });
      assert.match(stdout, /^configuration OK \(.*; [1-9]\d* machines? in \d+ files?\)/m, `${name}: ${stdout}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the config checksum changes with the config and only with it, so config changes roll the agents', () => {
  const checksum = (o: RenderOptions) => find(objects(o), 'DaemonSet').spec.template.metadata.annotations['checksum/config'];
  const base = checksum(DEFAULT);
  assert.equal(checksum({ ...DEFAULT, set: ['image.tag=9.9.9'] }), base);
  assert.notEqual(checksum({ ...DEFAULT, set: ['config.workers=8'] }), base);
  assert.notEqual(checksum({ ...DEFAULT, set: ['logLevel=debug'] }), base);
});

test('ClusterRole grants exactly what the agent uses: machines, their status and finalizers, Events; nothing else', () => {
  const objs = objects(DEFAULT);
  const role = find(objs, 'ClusterRole');
  assert.deepEqual(role.rules, [
    { apiGroups: ['umlmon.io'], resources: ['umlmachines'], verbs: ['get', 'list', 'watch', 'update'] },
    { apiGroups: ['umlmon.io'], resources: ['umlmachines/status'], verbs: ['patch'] },
    { apiGroups: ['umlmon.io'], resources: ['umlmachines/finalizers'], verbs: ['update'] },
    { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
    { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  ]);
  for (const rule of role.rules as Obj[]) {
    assert.ok(!rule.verbs.includes('*') && !rule.resources.includes('*') && !rule.apiGroups.includes('*'), 'no wildcards');
    assert.ok(!rule.verbs.includes('delete') && !rule.verbs.includes('create') || rule.resources.includes('events'), 'the agent never creates or deletes machines');
  }
  const binding = find(objs, 'ClusterRoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'umlmon', namespace: 'umlmon-system' }]);
  assert.equal(objects({ ...DEFAULT, set: ['rbac.create=false'] }).filter((o) => o.kind.startsWith('ClusterRole')).length, 0);
});

test('non-default values (ci/custom-values.yaml) reach every object', () => {
  const objs = objects({ releaseName: 'custom', namespace: 'infra', valueFiles: [CUSTOM_VALUES] });
  assert.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.name}`), [
    'ServiceAccount/uml-agent-sa', 'ConfigMap/uml-agent', 'ClusterRole/uml-agent', 'ClusterRoleBinding/uml-agent',
    'Service/uml-agent-metrics', 'DaemonSet/uml-agent', 'ServiceMonitor/uml-agent',
  ]);
  const ds = find(objs, 'DaemonSet');
  const pod = ds.spec.template.spec;
  const agent = pod.containers[0];
  assert.equal(agent.image, 'registry.example.com/infra/umlmon:0.1.0-rc1');
  assert.equal(agent.imagePullPolicy, 'Always');
  assert.deepEqual(pod.imagePullSecrets, [{ name: 'regcred' }]);
  assert.equal(pod.serviceAccountName, 'uml-agent-sa');
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.equal(pod.terminationGracePeriodSeconds, 45);
  assert.equal(pod.hostNetwork, false);
  assert.equal(pod.dnsPolicy, undefined);
  assert.equal(pod.hostPID, true, 'hostPID does not depend on values');
  assert.equal(agent.securityContext.privileged, true);
  assert.deepEqual(ds.spec.updateStrategy.rollingUpdate, { maxUnavailable: '20%' });
  assert.deepEqual(pod.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 'uml', effect: 'NoSchedule' }]);
  assert.equal(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key, 'kubernetes.io/arch');
  assert.equal(pod.nodeSelector['umlmon.io/host'], 'true');
  assert.equal(ds.spec.template.metadata.annotations['example.com/team'], 'platform');
  assert.equal(ds.spec.template.metadata.labels['example.com/tier'], 'infra');
  assert.deepEqual(agent.resources.limits, { cpu: '1', memory: '1Gi' });
  assert.deepEqual(agent.env[1], { name: 'UMLMON_STATE_DIR', value: '/srv/umlmon' }, 'kubectl exec ... umlmon mconsole finds guests in stateDir');
  assert.deepEqual(agent.env[2], { name: 'UV_THREADPOOL_SIZE', value: '8' });
  assert.equal(agent.ports[0].containerPort, 19473);

  const volumes = Object.fromEntries((pod.volumes as Obj[]).map((v) => [v.name, v]));
  const mounts = Object.fromEntries((agent.volumeMounts as Obj[]).map((m) => [m.name, m]));
  assert.equal(volumes.state?.hostPath.path, '/srv/umlmon', 'the trailing slash is trimmed');
  assert.equal(volumes.images?.hostPath.path, '/data/uml-images', 'an image root outside stateDir gets its own volume');
  assert.equal(mounts.images?.mountPath, '/data/uml-images');
  assert.equal(volumes.backups?.hostPath.path, '/backup/umlmon');
  assert.equal(mounts.backups?.mountPath, '/backup/umlmon');
  assert.equal(volumes['node-kernels']?.hostPath.path, '/opt/uml-kernels');
  assert.deepEqual(mounts['node-kernels'], { name: 'node-kernels', mountPath: '/opt/uml-kernels', readOnly: true });

  const config = agentConfigOf(find(objs, 'ConfigMap'));
  assert.equal(config.stateDir, '/srv/umlmon');
  assert.equal(config.imageRoot, '/data/uml-images');
  assert.equal(config.backupDir, '/backup/umlmon');
  assert.deepEqual(config.controlAddress, { kind: 'unix', path: '/srv/umlmon/control.sock' });
  assert.equal(config.listenAddress?.port, 19473);
  assert.equal(config.workers, 8);
  assert.equal(config.resyncPeriodSeconds, 300);
  assert.equal(config.drainTimeoutSeconds, 120, 'a value not overridden keeps the chart\'s default');
  assert.equal(config.logLevel, 'debug');
  assert.deepEqual(config.kernels.lts, { path: '/opt/uml-kernels/linux-6.6.uml', args: ['loglevel=4'] });

  const svc = find(objs, 'Service');
  assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port: 19473, targetPort: 'http', protocol: 'TCP' }]);
  assert.deepEqual(svc.spec.selector, ds.spec.selector.matchLabels);
  const sm = find(objs, 'ServiceMonitor');
  assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(sm.metadata.labels.release, 'prometheus');
  assert.deepEqual(sm.spec.endpoints, [{ port: 'metrics', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) assert.equal(svc.metadata.labels[k], v);
  const binding = find(objs, 'ClusterRoleBinding');
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'uml-agent-sa', namespace: 'infra' }]);
});

test('names follow Helm conventions: <release>-umlmon unless the release name holds the chart name', () => {
  assert.equal(find(objects({ releaseName: 'edge', namespace: 'x' }), 'DaemonSet').metadata.name, 'edge-umlmon');
  assert.equal(find(objects({ releaseName: 'umlmon-prod', namespace: 'x' }), 'DaemonSet').metadata.name, 'umlmon-prod');
  assert.equal(find(objects({ releaseName: 'a', set: ['serviceAccount.create=false', 'serviceAccount.name=existing'] }), 'DaemonSet').spec.template.spec.serviceAccountName, 'existing');
  assert.equal(objects({ releaseName: 'a', set: ['serviceAccount.create=false', 'serviceAccount.name=existing'] }).filter((o) => o.kind === 'ServiceAccount').length, 0);
});

test('values are validated against values.schema.json and bad ones rejected the way helm does', () => {
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as Obj;
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.doesNotThrow(() => new Ajv({ strict: true, allowUnionTypes: true }).compile(schema), 'the schema has no unknown keywords or contradictions');
  assert.doesNotThrow(() => validateValues(coalescedValues({})));
  assert.doesNotThrow(() => validateValues(coalescedValues({ valueFiles: [CUSTOM_VALUES] })));
  const rejects = (o: RenderOptions, field: RegExp) =>
    assert.throws(() => renderChart(o), (err: unknown) => {
      assert.ok(err instanceof ChartRenderError);
      assert.match(err.message, /^values don't meet the specifications of the schema\(s\) in the following chart\(s\):\numlmon:\n/);
      assert.match(err.message, field);
      return true;
    });
  rejects({ set: ['metrics.port=abc'] }, /- metrics\.port: must be integer/);
  rejects({ set: ['image.pullPolicy=Sometimes'] }, /- image\.pullPolicy: must be equal to one of the allowed values/);
  rejects({ set: ['logLevel=verbose'] }, /- logLevel: /);
  rejects({ set: ['imagee.tag=x'] }, /- imagee: must NOT have additional properties/);
  rejects({ set: ['config.stateDir=/x'] }, /- config\.stateDir: must NOT have additional properties/);
  rejects({ set: ['stateDir=relative/path'] }, /- stateDir: /);
  rejects({ set: ['imageRoot=/var/../etc'] }, /- imageRoot: /);
  rejects({ set: ['kernels.default.path=linux.uml'] }, /- kernels\.default\.path: /);
  rejects({ set: ['resources.requests.cpu=lots'] }, /- resources\.requests\.cpu: /);
  rejects({ set: ['config.workers=0'] }, /- config\.workers: must be >= 1/);
});

test('template-level checks fail with Helm\'s wording: required values, the chart\'s kubeVersion', () => {
  assert.throws(() => renderChart({ set: ['serviceAccount.create=false'] }),
    /^ChartRenderError: execution error at \(umlmon\/templates\/[a-z]+\.yaml:\d+:\d+\): serviceAccount\.name is required when serviceAccount\.create is false$/);
  assert.throws(() => renderChart({ kubeVersion: 'v1.19.16' }), /chart requires kubeVersion: >=1\.20\.0-0 which is incompatible with Kubernetes v1\.19\.16/);
  assert.doesNotThrow(() => renderChart({ kubeVersion: 'v1.20.0' }));
  assert.throws(() => renderChart({ releaseName: 'Bad_Name' }), /invalid release name/);
});

test('a null in user values removes a default, as Helm coalesces', () => {
  const objs = objects({ set: ['nodeSelector.kubernetes\\.io/arch=null'] });
  assert.deepEqual(find(objs, 'DaemonSet').spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
});

test('values.yaml documents every value, and it and values.schema.json name the same keys', () => {
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as Obj;
  const resolve = (s: Obj | undefined): Obj | undefined => {
    if (s?.$ref) return resolve(schema.definitions[String(s.$ref).replace('#/definitions/', '')]);
    return s;
  };
  const doc = parseDocument(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8'));
  const problems: string[] = [];
  // A value needs a comment of its own or on the map that holds it; keys inside a free-form map
  // (nodeSelector entries, kernels.default...) are examples under their documented parent. Every
  // key the schema declares has a default, except inside such examples.
  const walk = (map: YAMLMap, s: Obj | undefined, path: string, parentDocumented: boolean, inExample: boolean) => {
    const schemaKeys = new Set(Object.keys(s?.properties ?? {}));
    const seen = new Set<string>();
    map.items.forEach((pair, i) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      const here = path ? `${path}.${key}` : key;
      seen.add(key);
      const declared = schemaKeys.has(key);
      if (!declared && s?.additionalProperties === false) problems.push(`${here}: not in values.schema.json`);
      const comment = (isScalar(pair.key) ? pair.key.commentBefore : undefined) ?? (i === 0 ? map.commentBefore : undefined);
      const documented = Boolean(comment && comment.trim().length > 0);
      if (!documented && !parentDocumented && !isMap(pair.value)) problems.push(`${here}: no comment in values.yaml, nor on its parent`);
      if (isMap(pair.value)) {
        const sub = declared ? resolve(s?.properties[key]) : resolve(typeof s?.additionalProperties === 'object' ? s.additionalProperties : undefined);
        walk(pair.value, sub, here, documented || (parentDocumented && path !== ''), inExample || !declared);
      }
    });
    if (!inExample) for (const k of schemaKeys) if (!seen.has(k)) problems.push(`${path ? `${path}.` : ''}${k}: in values.schema.json but without a default in values.yaml`);
  };
  assert.ok(isMap(doc.contents));
  walk(doc.contents, schema, '', false, false);
  assert.deepEqual(problems, []);
  assert.deepEqual(parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')), coalescedValues({}), 'values.yaml is the whole default');
});

test('Chart.yaml: apiVersion v2, appVersion matches package.json, kubeVersion >=1.20.0-0', () => {
  const chart = parseYaml(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as Obj;
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Obj;
  assert.equal(chart.apiVersion, 'v2');
  assert.equal(chart.name, 'umlmon');
  assert.equal(chart.appVersion, pkg.version);
  assert.equal(chart.kubeVersion, '>=1.20.0-0');
});

test('the chart ships the CRD byte for byte as crds/ has it', () => {
  assert.equal(
    readFileSync(join(CHART_DIR, 'crds/umlmachines.umlmon.io.yaml'), 'utf8'),
    readFileSync(join(REPO_ROOT, 'crds/umlmachines.umlmon.io.yaml'), 'utf8'),
    'charts/umlmon/crds/ differs from crds/: run node hack/render-chart.ts --write-manifests',
  );
});

test('templates stay within what helm template supports offline: no lookup, no hooks, no subcharts', () => {
  const rendering = renderChart({ valueFiles: [CUSTOM_VALUES] });
  assert.doesNotMatch(rendering, /helm\.sh\/hook/);
  for (const name of ['daemonset.yaml', 'configmap.yaml', 'clusterrole.yaml', '_helpers.tpl']) {
    assert.doesNotMatch(readFileSync(join(CHART_DIR, 'templates', name), 'utf8'), /\blookup\b/, name);
  }
});
