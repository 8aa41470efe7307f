// kube-client.ts's credentials: what a kubeconfig's current context gives, and what is refused.
// (Its requests and watches run against the real 1.20 API server and the emulator in
// test/e2e/kube-client.test.ts, agent-real-apiserver.test.ts, agent-kubernetes.test.ts, agent-kubernetes-source.test.ts
// and install-rbac.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { accessFromKubeconfig, ApiError, inClusterAccess, KubeClient } from '../../src/agent/kube-client.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function kubeconfig(user: string, cluster = '    server: https://10.0.0.1:6443\n    certificate-authority-data: ' + b64('CA') + '\n'): string {
  return `apiVersion: v1\nkind: Config\ncurrent-context: b\ncontexts:\n- name: a\n  context: {cluster: other, user: other}\n- name: b\n  context: {cluster: c, user: u}\nclusters:\n- name: other\n  cluster: {server: https://wrong:1}\n- name: c\n  cluster:\n${cluster}users:\n- name: other\n  user: {token: wrong}\n- name: u\n  user:\n${user}`;
}

test('the current context: server, CA and token inline', () => {
  const a = accessFromKubeconfig('/k/config', kubeconfig('    token: abc\n'));
  assert.equal(a.server, 'https://10.0.0.1:6443');
  assert.equal(a.ca?.toString(), 'CA');
  assert.equal(a.token, 'abc');
  assert.equal(a.insecureSkipTlsVerify, undefined);
});

test('files are read relative to the kubeconfig; a client certificate; a token file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-kc-'));
  try {
    writeFileSync(join(dir, 'ca.crt'), 'FILE-CA');
    writeFileSync(join(dir, 'u.crt'), 'CERT');
    writeFileSync(join(dir, 'u.key'), 'KEY');
    const text = kubeconfig('    client-certificate: u.crt\n    client-key: u.key\n    tokenFile: tok\n', '    server: https://h:1\n    certificate-authority: ca.crt\n    insecure-skip-tls-verify: true\n');
    const a = accessFromKubeconfig(join(dir, 'config'), text);
    assert.equal(a.ca?.toString(), 'FILE-CA');
    assert.equal(a.cert?.toString(), 'CERT');
    assert.equal(a.key?.toString(), 'KEY');
    assert.equal(a.tokenFile, join(dir, 'tok'));
    assert.equal(a.insecureSkipTlsVerify, true);
    const data = accessFromKubeconfig(join(dir, 'config'), kubeconfig(`    client-certificate-data: ${b64('C2')}\n    client-key-data: ${b64('K2')}\n`));
    assert.equal(data.cert?.toString(), 'C2');
    assert.equal(data.key?.toString(), 'K2');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('exec and auth-provider plugins are refused with what to do instead', () => {
  assert.throws(() => accessFromKubeconfig('/k/config', kubeconfig('    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}\n')),
    /user u authenticates through an exec or auth-provider plugin, which umlmon does not run; give it a token, a token file or a client certificate/);
  assert.throws(() => accessFromKubeconfig('/k/config', kubeconfig('    auth-provider: {name: gcp}\n')), /exec or auth-provider plugin/);
});

test('a context or cluster that is missing is named', () => {
  assert.throws(() => accessFromKubeconfig('/k/config', 'current-context: nope\ncontexts: []\n'), /kubeconfig \/k\/config: no context nope/);
  assert.throws(() => accessFromKubeconfig('/k/config', kubeconfig('    token: x\n', '    certificate-authority-data: eA==\n')), /names cluster c, which has no server/);
});

test('in-cluster needs the service host and port', () => {
  assert.throws(() => inClusterAccess({}), /not in a cluster/);
});

test('ApiError carries the status code and the server\'s own message', () => {
  const e = new ApiError(409, JSON.stringify({ kind: 'Status', message: 'the object has been modified' }), 'update umlmachines default/a');
  assert.equal(e.code, 409);
  assert.equal(e.message, 'update umlmachines default/a: HTTP 409: the object has been modified');
});

test('a request the server never answers fails after the request timeout, and the connection is closed', async () => {
  let closed = false;
  const server = createServer((req) => { req.socket.on('close', () => { closed = true; }); }); // reads, never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }, { requestTimeoutMs: 200 });
  try {
    await assert.rejects(
      client.call('patch', { group: 'umlmon.io', version: 'v1alpha1', resource: 'umlmachines', subresource: 'status' }, { namespace: 'ns', name: 'm', body: {} }),
      (err: Error) => err.name === 'TimeoutError' && /patch umlmachines\/status ns\/m: no answer for 0\.2 s/.test(err.message),
    );
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(closed, 'the timed-out request\'s connection is closed');
  } finally {
    client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
