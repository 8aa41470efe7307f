// A real Kubernetes control plane for integration tests: etcd (Debian's etcd-server 3.4) plus
// kube-apiserver and kube-controller-manager v1.20 built by hack/build-control-plane.sh, all on
// 127.0.0.1 with random free ports in a temporary directory.
//
//   const cp = await startControlPlane({ compactionIntervalSeconds: 5 });
//   try { ... kubectl --kubeconfig cp.adminKubeconfig ... } finally { await cp.stop(); }
//
// The API server runs with RBAC (Node,RBAC), token authentication (an admin user in
// system:masters and a non-admin user), service-account token signing and serving certificates
// from a CA made with openssl; the controller manager runs the garbage collector, namespace
// deletion and the service-account (token) controllers with per-controller credentials.
// Every process is started in its own process group; stop() kills those groups and nothing
// else, waits for them, and removes the directory. If the test process exits (or gets SIGINT,
// SIGTERM, SIGHUP) without stop(), a hook kills what is still running and removes the dirs.
//
// One control plane per test file (or per install, in install.test.ts), not one per run: the
// fault tests stop the API server, compact etcd every second or turn the watch cache off, and
// a shared server would take those faults to every file running beside them. Each start costs
// about 6 s of CPU; every API request is in the audit log (requests()).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePorts, killGroup, onExitOrSignal, startProc, stopProc, waitUntil, type Proc } from './processes.ts';

export interface ControlPlaneOptions {
  /** kube-apiserver --etcd-compaction-interval in seconds (default 300; 0 turns compaction off). */
  compactionIntervalSeconds?: number;
  /** kube-controller-manager --controllers (default: the ones named in DEFAULT_CONTROLLERS). */
  controllers?: string[];
  /** Milliseconds to wait for everything to come up (default 120000). */
  startTimeoutMs?: number;
  /**
   * kube-apiserver --watch-cache (default true, as on every cluster). Off, every watch is served
   * by etcd itself, so a watch from a resourceVersion that etcd has compacted away is answered
   * 410 Gone: compaction, not the watch cache's window, is what expires it.
   */
  watchCache?: boolean;
  /**
   * kube-apiserver --min-request-timeout in seconds (default 1800). A watch that names no
   * timeoutSeconds is ended by the server after between this and twice this, and a client
   * must then watch again from where it was: a short one makes that happen within a test.
   */
  minRequestTimeoutSeconds?: number;
  /**
   * Users to authenticate by token besides the admin and the user (e.g. a kubelet's
   * system:node:NAME in system:nodes, system:kube-scheduler); kubeconfigFor(name) has theirs.
   */
  extraUsers?: { name: string; groups?: string[] }[];
  /**
   * Let the API server reach kubelets (logs, exec): a client certificate for it
   * (--kubelet-client-certificate/--kubelet-client-key, in system:masters), kubelets' serving
   * certificates checked against the cluster CA, reached at their InternalIP.
   */
  kubeletClient?: boolean;
}

/** One API request, from the API server's audit log. */
export interface AuditRecord {
  user: string;
  verb: string;
  /** '' for the core group. */
  apiGroup: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** The HTTP status code of the response. */
  code: number;
  requestURI: string;
}

export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
  gitCommit: string;
  gitTreeState: string;
  buildDate: string;
  goVersion: string;
  compiler: string;
  platform: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  url: string;
  /** A kubeconfig for the admin user (group system:masters), with the CA inline. */
  adminKubeconfig: string;
  /** A kubeconfig for a user with no RBAC bindings at all (only system:authenticated). */
  userKubeconfig: string;
  caFile: string;
  /** The CA's private key, to sign more certificates (a kubelet's serving certificate). */
  caKeyFile: string;
  adminToken: string;
  userToken: string;
  /** The non-admin user's name, for RoleBindings. */
  userName: string;
  /** The temporary directory: certificates, kubeconfigs, etcd's data and the logs (*.log). */
  dir: string;
  /** The directory with the Kubernetes binaries (hack/build-control-plane.sh's output). */
  binDir: string;
  /** A kubeconfig (path) for one of options.extraUsers. */
  kubeconfigFor(name: string): string;
  /** GET /version of the API server. */
  versionInfo: VersionInfo;
  /**
   * Every resource request the API server has answered so far, in order, from its audit log
   * (level Metadata, one record per request). Long-running watches appear once their response
   * has started.
   */
  requests(): AuditRecord[];
  /**
   * A kubeconfig (a file in dir) with the token of ServiceAccount namespace/name, once 1.20's
   * token controller has made its Secret. The account must exist or be about to.
   */
  serviceAccountKubeconfig(namespace: string, name: string): Promise<string>;
  /** The last lines of each component's log, for a test's failure message. */
  logTail(lines?: number): string;
  /** Kills the API server (etcd and the controller manager keep running), and waits for it. */
  stopApiServer(): Promise<void>;
  /** Starts the API server again on the same port and data, and waits until it is ready. */
  startApiServer(): Promise<void>;
  /** Kills every process it started, waits for them, and removes dir. */
  stop(): Promise<void>;
}

export const DEFAULT_CONTROLLERS = ['garbagecollector', 'namespace', 'serviceaccount', 'serviceaccount-token', 'root-ca-cert-publisher'];

const REPO = resolve(import.meta.dirname, '../..');
const BUILD_SCRIPT = join(REPO, 'hack/build-control-plane.sh');
const USER_NAME = 'umlmon-test-user';
const SERVICE_CIDR = '10.0.0.0/24';

let binDirPromise: Promise<string> | undefined;

/** Runs hack/build-control-plane.sh (quick when cached) and returns the bin directory it prints. */
export function controlPlaneBinDir(): Promise<string> {
  binDirPromise ??= new Promise<string>((resolvePromise, reject) => {
    execFile('bash', [BUILD_SCRIPT], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const dir = stdout.trim().split('\n').pop() ?? '';
      if (err || dir === '') {
        reject(new Error(`hack/build-control-plane.sh failed (${err?.message ?? 'no output'}):\n${tail(stderr, 40)}`));
        return;
      }
      resolvePromise(dir);
    });
  });
  binDirPromise.catch(() => {
    binDirPromise = undefined;
  });
  return binDirPromise;
}

/** Starts etcd, kube-apiserver and kube-controller-manager; resolves once they are usable. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = await controlPlaneBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-cp-'));
  const cp = new Instance(dir, binDir, options);
  try {
    await cp.start();
  } catch (err) {
    const logs = cp.logTail(30);
    await cp.stop().catch(() => undefined);
    throw new Error(`control plane did not come up: ${(err as Error).message}\n${logs}`, { cause: err });
  }
  return cp;
}

// --- processes ---

const live = new Set<Proc>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  onExitOrSignal(() => {
    for (const p of live) killGroup(p, 'SIGKILL');
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
}

function startTracked(name: string, command: string, args: string[], log: string): Proc {
  installExitHook();
  const p = startProc(name, command, args, log, (gone) => live.delete(gone));
  live.add(p);
  return p;
}

// --- the instance ---

class Instance implements ControlPlane {
  url = '';
  adminKubeconfig: string;
  userKubeconfig: string;
  caFile: string;
  caKeyFile: string;
  adminToken = randomBytes(24).toString('hex');
  userToken = randomBytes(24).toString('hex');
  userName = USER_NAME;
  dir: string;
  binDir: string;
  versionInfo: VersionInfo = { major: '', minor: '', gitVersion: '', gitCommit: '', gitTreeState: '', buildDate: '', goVersion: '', compiler: '', platform: '' };

  #options: ControlPlaneOptions;
  #controllerToken = randomBytes(24).toString('hex');
  #ca = '';
  #etcd: Proc | undefined;
  #apiServer: Proc | undefined;
  #controllerManager: Proc | undefined;
  #apiPort = 0;
  #etcdPort = 0;
  #etcdPeerPort = 0;
  #kcmPort = 0;
  #stopped = false;

  constructor(dir: string, binDir: string, options: ControlPlaneOptions) {
    this.dir = dir;
    this.binDir = binDir;
    this.#options = options;
    this.caFile = join(dir, 'pki/ca.crt');
    this.caKeyFile = join(dir, 'pki/ca.key');
    this.adminKubeconfig = join(dir, 'admin.kubeconfig');
    this.userKubeconfig = join(dir, 'user.kubeconfig');
    liveDirs.add(dir);
  }

  #deadline(): number {
    return Date.now() + (this.#options.startTimeoutMs ?? 120_000);
  }

  async start(): Promise<void> {
    const deadline = this.#deadline();
    [this.#apiPort, this.#etcdPort, this.#etcdPeerPort, this.#kcmPort] = (await freePorts(4, '127.0.0.1')) as [number, number, number, number];
    this.url = `https://127.0.0.1:${this.#apiPort}`;
    await this.#writeFiles();

    const etcdUrl = `http://127.0.0.1:${this.#etcdPort}`;
    const peerUrl = `http://127.0.0.1:${this.#etcdPeerPort}`;
    this.#etcd = startTracked('etcd', 'etcd', [
      '--name=umlmon-test',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=umlmon-test=${peerUrl}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-outputs=stderr',
    ], join(this.dir, 'etcd.log'));
    await waitUntil('etcd /health', deadline, [this.#etcd], async () => {
      const r = await httpGet(`${etcdUrl}/health`);
      return r.status === 200 && r.body.includes('"true"');
    });

    await this.#startApiServer(deadline);

    this.#controllerManager = startTracked('kube-controller-manager', join(this.binDir, 'kube-controller-manager'), [
      `--kubeconfig=${join(this.dir, 'controller-manager.kubeconfig')}`,
      `--authentication-kubeconfig=${join(this.dir, 'controller-manager.kubeconfig')}`,
      `--authorization-kubeconfig=${join(this.dir, 'controller-manager.kubeconfig')}`,
      `--service-account-private-key-file=${join(this.dir, 'pki/sa.key')}`,
      `--root-ca-file=${this.caFile}`,
      '--use-service-account-credentials=true',
      `--controllers=${(this.#options.controllers ?? DEFAULT_CONTROLLERS).join(',')}`,
      '--leader-elect=false',
      '--port=0',
      '--bind-address=127.0.0.1',
      `--secure-port=${this.#kcmPort}`,
      `--cert-dir=${join(this.dir, 'controller-manager')}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--v=1',
    ], join(this.dir, 'kube-controller-manager.log'));

    const procs = [this.#etcd, this.#apiServer!, this.#controllerManager];
    await waitUntil('kube-controller-manager /healthz', deadline, procs, async () => {
      const r = await httpsGet(`https://127.0.0.1:${this.#kcmPort}/healthz`, undefined, undefined);
      return r.status === 200;
    });
    const controllers = this.#options.controllers ?? DEFAULT_CONTROLLERS;
    if (controllers.includes('serviceaccount') && controllers.includes('serviceaccount-token')) {
      // The controllers work: the default service account has its token secret.
      await waitUntil('a token for serviceaccount default/default', deadline, procs, async () => {
        const r = await this.#get('/api/v1/namespaces/default/serviceaccounts/default', this.adminToken);
        if (r.status !== 200) return false;
        const sa = JSON.parse(r.body) as { secrets?: unknown[] };
        return (sa.secrets?.length ?? 0) > 0;
      });
    }
  }

  async #startApiServer(deadline: number): Promise<void> {
    const pki = join(this.dir, 'pki');
    this.#apiServer = startTracked('kube-apiserver', join(this.binDir, 'kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${this.#etcdPort}`,
      `--etcd-compaction-interval=${this.#options.compactionIntervalSeconds ?? 300}s`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${this.#apiPort}`,
      `--cert-dir=${join(this.dir, 'apiserver')}`,
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
      `--client-ca-file=${this.caFile}`,
      // Fills the requestheader CA into kube-system/extension-apiserver-authentication, which the
      // controller manager's delegated authentication otherwise complains about every few seconds.
      `--requestheader-client-ca-file=${this.caFile}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--token-auth-file=${join(this.dir, 'tokens.csv')}`,
      '--authorization-mode=Node,RBAC',
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      // 127.0.0.1 is not a valid endpoint for the kubernetes service.
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      `--watch-cache=${this.#options.watchCache ?? true}`,
      `--min-request-timeout=${this.#options.minRequestTimeoutSeconds ?? 1800}`,
      `--audit-policy-file=${join(this.dir, 'audit-policy.yaml')}`,
      `--audit-log-path=${join(this.dir, 'audit.log')}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      ...(this.#options.kubeletClient ? [
        `--kubelet-client-certificate=${join(pki, 'kubelet-client.crt')}`,
        `--kubelet-client-key=${join(pki, 'kubelet-client.key')}`,
        `--kubelet-certificate-authority=${this.caFile}`,
        '--kubelet-preferred-address-types=InternalIP',
      ] : []),
      '--profiling=false',
      '--v=1',
    ], join(this.dir, 'kube-apiserver.log'));
    const procs = [this.#etcd!, this.#apiServer];
    await waitUntil('kube-apiserver /readyz', deadline, procs, async () => (await this.#get('/readyz', this.adminToken)).status === 200);
    await waitUntil('namespace default', deadline, procs, async () => (await this.#get('/api/v1/namespaces/default', this.adminToken)).status === 200);
    await waitUntil('RBAC for the admin and the user', deadline, procs, async () => {
      const admin = await this.#get('/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin', this.adminToken);
      const user = await this.#get('/api/v1/namespaces', this.userToken);
      return admin.status === 200 && user.status === 403;
    });
    const version = await this.#get('/version', this.adminToken);
    this.versionInfo = JSON.parse(version.body) as VersionInfo;
  }

  async stopApiServer(): Promise<void> {
    if (this.#apiServer) await stopProc(this.#apiServer);
  }

  async startApiServer(): Promise<void> {
    if (this.#stopped) throw new Error('the control plane was stopped');
    if (this.#apiServer && this.#apiServer.exitStatus === undefined) throw new Error('kube-apiserver is running');
    try {
      await this.#startApiServer(this.#deadline());
    } catch (err) {
      throw new Error(`kube-apiserver did not come back: ${(err as Error).message}\n${this.logTail(30)}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    // Clients first, then the store.
    for (const p of [this.#controllerManager, this.#apiServer, this.#etcd]) {
      if (p) await stopProc(p);
    }
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  requests(): AuditRecord[] {
    let text = '';
    try {
      text = readFileSync(join(this.dir, 'audit.log'), 'utf8');
    } catch {
      return [];
    }
    const records: AuditRecord[] = [];
    const seen = new Set<string>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const e = JSON.parse(line) as AuditEvent;
      // A watch is logged when its response starts and again when it ends: count it once.
      if (!e.objectRef?.resource || seen.has(e.auditID)) continue;
      seen.add(e.auditID);
      const r = e.objectRef;
      records.push({
        user: e.user.username, verb: e.verb, apiGroup: r.apiGroup ?? '', resource: r.resource!,
        ...(r.subresource ? { subresource: r.subresource } : {}), ...(r.namespace ? { namespace: r.namespace } : {}), ...(r.name ? { name: r.name } : {}),
        code: e.responseStatus?.code ?? 0, requestURI: e.requestURI,
      });
    }
    return records;
  }

  async serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    const deadline = this.#deadline();
    let token = '';
    await waitUntil(`a token for serviceaccount ${namespace}/${name}`, deadline, [this.#etcd!, this.#apiServer!, this.#controllerManager!], async () => {
      const sa = await this.#get(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}`, this.adminToken);
      if (sa.status !== 200) return false;
      const secret = (JSON.parse(sa.body) as { secrets?: { name: string }[] }).secrets?.[0]?.name;
      if (!secret) return false;
      const r = await this.#get(`/api/v1/namespaces/${namespace}/secrets/${secret}`, this.adminToken);
      if (r.status !== 200) return false;
      const data = (JSON.parse(r.body) as { data?: { token?: string } }).data?.token;
      if (!data) return false;
      token = Buffer.from(data, 'base64').toString('utf8');
      return true;
    });
    const path = join(this.dir, `sa-${namespace}-${name}.kubeconfig`);
    writeFileSync(path, kubeconfig(this.url, this.#ca, `system:serviceaccount:${namespace}:${name}`, token), { mode: 0o600 });
    return path;
  }

  logTail(lines = 20): string {
    const out: string[] = [];
    for (const p of [this.#etcd, this.#apiServer, this.#controllerManager]) {
      if (!p) continue;
      let text = '';
      try {
        text = readFileSync(p.log, 'utf8');
      } catch {
        text = '(no log)';
      }
      out.push(`--- ${p.name} (${p.exitStatus ?? 'running'}), last ${lines} lines of ${p.log}:\n${tail(text, lines)}`);
    }
    return out.join('\n');
  }

  kubeconfigFor(name: string): string {
    if (!(this.#options.extraUsers ?? []).some((u) => u.name === name)) throw new Error(`${name} is not one of the control plane's extraUsers`);
    return join(this.dir, 'users', `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.kubeconfig`);
  }

  #get(path: string, token: string): Promise<HttpResult> {
    return httpsGet(`${this.url}${path}`, token, this.#ca);
  }

  async #writeFiles(): Promise<void> {
    const pki = join(this.dir, 'pki');
    mkdirSync(pki, { recursive: true });
    mkdirSync(join(this.dir, 'apiserver'));
    mkdirSync(join(this.dir, 'controller-manager'));
    const ssl = (args: string[]) => run('openssl', args, pki);
    await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30',
      '-subj', '/CN=umlmon-test-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    writeFileSync(join(pki, 'apiserver.ext'), [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
      '',
    ].join('\n'));
    await ssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'apiserver.key', '-out', 'apiserver.csr', '-subj', '/CN=kube-apiserver']);
    await ssl(['x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'apiserver.crt', '-days', '30', '-extfile', 'apiserver.ext']);
    await ssl(['genrsa', '-out', 'sa.key', '2048']);
    await ssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
    this.#ca = readFileSync(this.caFile, 'utf8');

    // Metadata for every request (who, what, the response code), nothing for the request's
    // arrival alone: requests() reads it.
    writeFileSync(join(this.dir, 'audit-policy.yaml'), [
      'apiVersion: audit.k8s.io/v1', 'kind: Policy', 'omitStages: [RequestReceived]', 'rules:', '- level: Metadata', '',
    ].join('\n'));
    if (this.#options.kubeletClient) {
      writeFileSync(join(pki, 'kubelet-client.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
      await ssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'kubelet-client.key', '-out', 'kubelet-client.csr', '-subj', '/O=system:masters/CN=kube-apiserver-kubelet-client']);
      await ssl(['x509', '-req', '-in', 'kubelet-client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'kubelet-client.crt', '-days', '30', '-extfile', 'kubelet-client.ext']);
    }

    const extra = (this.#options.extraUsers ?? []).map((u) => ({ ...u, token: randomBytes(24).toString('hex') }));
    // token,user,uid,"group,..."
    writeFileSync(join(this.dir, 'tokens.csv'), [
      `${this.adminToken},admin,admin,"system:masters"`,
      `${this.userToken},${USER_NAME},${USER_NAME}`,
      `${this.#controllerToken},system:kube-controller-manager,system:kube-controller-manager`,
      ...extra.map((u) => `${u.token},${u.name},${u.name}${u.groups?.length ? `,"${u.groups.join(',')}"` : ''}`),
      '',
    ].join('\n'), { mode: 0o600 });
    if (extra.length > 0) mkdirSync(join(this.dir, 'users'));
    for (const u of extra) writeFileSync(this.kubeconfigFor(u.name), kubeconfig(this.url, this.#ca, u.name, u.token), { mode: 0o600 });
    writeFileSync(this.adminKubeconfig, kubeconfig(this.url, this.#ca, 'admin', this.adminToken), { mode: 0o600 });
    writeFileSync(this.userKubeconfig, kubeconfig(this.url, this.#ca, USER_NAME, this.userToken), { mode: 0o600 });
    writeFileSync(join(this.dir, 'controller-manager.kubeconfig'), kubeconfig(this.url, this.#ca, 'system:kube-controller-manager', this.#controllerToken), { mode: 0o600 });
  }
}

interface AuditEvent {
  auditID: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { resource?: string; namespace?: string; name?: string; apiGroup?: string; subresource?: string };
  responseStatus?: { code?: number };
}

function kubeconfig(server: string, ca: string, user: string, token: string): string {
  // JSON is YAML: kubectl and the agent's API client read it as a kubeconfig.
  return `${JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'umlmon-test', cluster: { server, 'certificate-authority-data': Buffer.from(ca).toString('base64') } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'umlmon-test', context: { cluster: 'umlmon-test', user, namespace: 'default' } }],
    'current-context': 'umlmon-test',
  }, null, 2)}\n`;
}

// --- helpers ---

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((done, reject) => {
    execFile(command, args, { cwd }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else done();
    });
  });
}


interface HttpResult {
  status: number;
  body: string;
}

function httpGet(url: string): Promise<HttpResult> {
  return new Promise((done, reject) => {
    const req = httpRequest(url, { timeout: 5000 }, (res) => collect(res, done, reject));
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}

/** ca undefined: no verification (the controller manager's self-signed serving certificate). */
function httpsGet(url: string, token: string | undefined, ca: string | undefined): Promise<HttpResult> {
  return new Promise((done, reject) => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const req = httpsRequest(url, { timeout: 5000, headers, ...(ca ? { ca } : { rejectUnauthorized: false }) }, (res) => collect(res, done, reject));
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}

function collect(res: IncomingMessage, done: (r: HttpResult) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.once('error', reject);
  res.once('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
}

