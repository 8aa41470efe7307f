// A real Kubernetes node for end-to-end tests, joined to a control plane from control-plane.ts:
// Debian bookworm's containerd (1.6) and runc, and the kubelet and kube-scheduler v1.20 that
// hack/build-control-plane.sh builds from the same source as the API server. No registry is
// reachable, so images come from podman's store (`podman save | ctr images import`), the pod
// sandbox is the pause image hack/build-node-images.sh builds, and the agent's image is built
// from the project's Containerfile with only build arguments changed (buildAgentImage).
//
//   const cp = await startControlPlane(nodeControlPlaneOptions('node-1'));
//   const node = await startNode(cp, { name: 'node-1', images: [agent, pause], pauseImage: pause });
//   try { ... } finally { await node.stop(); await cp.stop(); }
//
// What a kubelet changes on the host, and how this keeps the host as it was:
// - sysctls vm.overcommit_memory, kernel.panic, kernel.panic_on_oops: read before, written
//   back after stop().
// - iptables: makeIPTablesUtilChains is off, and the CNI bridge has no gateway and no
//   masquerade (net.ipv4.ip_forward stays as it is).
// - Paths it or containerd hard-codes (/run/containerd for the shims' sockets, /var/log/pods,
//   /var/lib/cni, the kubepods cgroups): removed after stop() when they were not there before.
// - Containers: stop() kills every task in containerd's k8s.io namespace (the shims exit with
//   them), then containerd, the kubelet and the scheduler, and nothing else.
// Everything else (containerd's root and state, the kubelet's root, CNI config, certificates,
// logs) lives in one temporary directory under $TMPDIR, removed by stop().
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePorts, killGroup, onExitOrSignal, startProc, stopProc, waitUntil, type Proc } from './processes.ts';
import type { ControlPlane, ControlPlaneOptions } from './control-plane.ts';
import { DEFAULT_CONTROLLERS } from './control-plane.ts';
import { eventually } from './eventually.ts';

const REPO = resolve(import.meta.dirname, '../..');
const CNI_BIN = '/usr/lib/cni';
const SYSCTLS = ['vm/overcommit_memory', 'kernel/panic', 'kernel/panic_on_oops'];
/** Paths the kubelet or containerd create whatever their flags say. */
const HARD_CODED = ['/run/containerd', '/var/log/pods', '/var/log/containers', '/var/lib/cni', '/run/netns'];
const CGROUP_ROOT = '/sys/fs/cgroup';

export const SCHEDULER_USER = 'system:kube-scheduler';

/** Control plane options for a cluster with this node: a kubelet user, the scheduler, kubelet access, DaemonSets. */
export function nodeControlPlaneOptions(nodeName: string, extra: ControlPlaneOptions = {}): ControlPlaneOptions {
  return {
    ...extra,
    // nodelifecycle: a kubelet registers its node with the not-ready NoSchedule taint, and only
    // this controller lifts it once the node is Ready (DaemonSet pods do not tolerate it).
    controllers: [...(extra.controllers ?? DEFAULT_CONTROLLERS), 'daemonset', 'nodelifecycle'],
    kubeletClient: true,
    extraUsers: [...(extra.extraUsers ?? []), { name: `system:node:${nodeName}`, groups: ['system:nodes'] }, { name: SCHEDULER_USER }],
  };
}

export interface AgentImages {
  /** The agent's image, built from the Containerfile: localhost/umlmon:e2e */
  agent: string;
  pause: string;
  base: string;
  kernel: string;
}

/**
 * Builds the images (cached: hack/build-node-images.sh keeps its tarballs, podman its layers)
 * and the agent's image from the project's Containerfile, offline: only BASE_IMAGE and
 * KERNEL_IMAGE differ from a default build.
 */
export async function buildAgentImage(tag = 'localhost/umlmon:e2e'): Promise<AgentImages> {
  const out = await run('bash', [join(REPO, 'hack/build-node-images.sh')], { cwd: REPO });
  const images = Object.fromEntries(out.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
  const { base, kernel, pause } = images;
  if (!base || !kernel || !pause) throw new Error(`hack/build-node-images.sh printed no images:\n${out}`);
  const args = ['build', '--network=host', '-f', 'Containerfile', '-t', tag,
    '--build-arg', `BASE_IMAGE=${base}`, '--build-arg', `KERNEL_IMAGE=${kernel}`];
  // The network this runs on may re-sign TLS with local CAs: the build trusts what the host does.
  if (existsSync('/usr/local/share/ca-certificates')) args.push('-v', '/usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro');
  await run('nice', ['-n', '10', 'podman', ...args, '.'], { cwd: REPO });
  return { agent: tag, pause, base, kernel };
}

export interface NodeOptions {
  name: string;
  /** podman images to load into containerd (the agent's, the pause image). */
  images: string[];
  pauseImage: string;
  /** Milliseconds to wait for the node to be Ready (default 120000). */
  startTimeoutMs?: number;
}

export interface Node {
  name: string;
  /** The node's InternalIP (the host's first non-loopback IPv4: a kubelet refuses loopback). */
  ip: string;
  dir: string;
  /** ctr against this node's containerd, in the k8s.io namespace. */
  ctr(args: string[]): Promise<string>;
  logTail(lines?: number): string;
  /** Kills every container, containerd, the kubelet and the scheduler; restores the host; removes dir. */
  stop(): Promise<void>;
}

const live = new Set<NodeInstance>();
let hookInstalled = false;

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  // Last resort when a test process exits without stop(): kill the processes (groups) it started.
  onExitOrSignal(() => {
    for (const n of live) n.killAllSync();
  });
}

export async function startNode(cp: ControlPlane, options: NodeOptions): Promise<Node> {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), 'umlmon-node-'));
  const node = new NodeInstance(cp, dir, options);
  live.add(node);
  try {
    await node.start();
  } catch (err) {
    const logs = node.logTail(30);
    await node.stop().catch(() => undefined);
    throw new Error(`node ${options.name} did not come up: ${(err as Error).message}\n${logs}`, { cause: err });
  }
  return node;
}

class NodeInstance implements Node {
  name: string;
  ip: string;
  dir: string;
  #cp: ControlPlane;
  #options: NodeOptions;
  #procs: Proc[] = [];
  #sysctls = new Map<string, string>();
  #absent: string[] = [];
  #cgroupsAbsent: string[] = [];
  #socket: string;
  #stopped = false;

  constructor(cp: ControlPlane, dir: string, options: NodeOptions) {
    this.#cp = cp;
    this.dir = dir;
    this.#options = options;
    this.name = options.name;
    this.ip = hostIp();
    this.#socket = join(dir, 'containerd.sock');
  }

  async start(): Promise<void> {
    const deadline = Date.now() + (this.#options.startTimeoutMs ?? 120_000);
    // What to give back: recorded before anything starts.
    for (const s of SYSCTLS) this.#sysctls.set(s, readFileSync(`/proc/sys/${s}`, 'utf8').trim());
    this.#absent = HARD_CODED.filter((p) => !existsSync(p));
    this.#cgroupsAbsent = cgroupRoots().map((r) => join(r, 'kubepods')).filter((p) => !existsSync(p));

    const [kubeletPort, healthzPort, schedulerPort] = await freePorts(3);
    await this.#writeFiles(kubeletPort!, healthzPort!);

    this.#start('containerd', 'containerd', ['--config', join(this.dir, 'containerd.toml')]);
    await waitUntil('containerd', deadline, this.#procs, async () => {
      await this.ctr(['version']);
      return true;
    });
    await this.#importImages(this.#options.images);

    this.#start('kube-scheduler', join(this.#cp.binDir, 'kube-scheduler'), [
      `--kubeconfig=${this.#cp.kubeconfigFor(SCHEDULER_USER)}`,
      `--authentication-kubeconfig=${this.#cp.kubeconfigFor(SCHEDULER_USER)}`,
      `--authorization-kubeconfig=${this.#cp.kubeconfigFor(SCHEDULER_USER)}`,
      '--leader-elect=false',
      '--port=0',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedulerPort}`,
      `--cert-dir=${join(this.dir, 'scheduler')}`,
      '--v=1',
    ]);
    this.#start('kubelet', join(this.#cp.binDir, 'kubelet'), [
      `--config=${join(this.dir, 'kubelet.yaml')}`,
      `--kubeconfig=${this.#cp.kubeconfigFor(`system:node:${this.name}`)}`,
      '--container-runtime=remote',
      `--container-runtime-endpoint=unix://${this.#socket}`,
      `--root-dir=${join(this.dir, 'kubelet')}`,
      `--cert-dir=${join(this.dir, 'kubelet-pki')}`,
      `--hostname-override=${this.name}`,
      `--node-ip=${this.ip}`,
      `--pod-infra-container-image=${this.#options.pauseImage}`,
      '--v=1',
    ]);
    // Ready, and schedulable: the node lifecycle controller has lifted the not-ready taint.
    await waitUntil(`node ${this.name} Ready and untainted`, deadline, this.#procs, async () => {
      const node = JSON.parse(await run('kubectl', ['--kubeconfig', this.#cp.adminKubeconfig, 'get', 'node', this.name, '-o', 'json'])) as {
        spec?: { taints?: { key: string }[] };
        status?: { conditions?: { type: string; status: string }[] };
      };
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      return ready && (node.spec?.taints ?? []).length === 0;
    });
  }

  ctr(args: string[]): Promise<string> {
    return run('ctr', ['--address', this.#socket, '--namespace', 'k8s.io', ...args]);
  }

  /** From podman's store into containerd's k8s.io namespace, where the CRI looks (one archive). */
  async #importImages(images: string[]): Promise<void> {
    const archive = join(this.dir, 'images.tar');
    await run('podman', ['save', '-m', '--format', 'docker-archive', '-o', archive, ...images]);
    try {
      await this.ctr(['images', 'import', archive]);
    } finally {
      rmSync(archive, { force: true });
    }
  }

  #start(name: string, command: string, args: string[]): Proc {
    const p = startProc(name, command, args, join(this.dir, `${name}.log`));
    this.#procs.push(p);
    return p;
  }


  async #writeFiles(kubeletPort: number, healthzPort: number): Promise<void> {
    const d = this.dir;
    const pki = join(d, 'pki');
    for (const sub of ['pki', 'cni/net.d', 'cni/cache', 'cni/ipam', 'kubelet', 'kubelet-pki', 'scheduler']) mkdirSync(join(d, sub), { recursive: true });
    // The kubelet's serving certificate, signed by the cluster CA, for the API server's
    // --kubelet-certificate-authority (logs, exec, port-forward go through it).
    writeFileSync(join(pki, 'kubelet.ext'), [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=IP:${this.ip},IP:127.0.0.1,DNS:${this.name}`,
      '',
    ].join('\n'));
    await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'kubelet.key', '-out', 'kubelet.csr', '-subj', `/CN=system:node:${this.name}/O=system:nodes`], { cwd: pki });
    await run('openssl', ['x509', '-req', '-in', 'kubelet.csr', '-CA', this.#cp.caFile, '-CAkey', this.#cp.caKeyFile, '-CAcreateserial', '-CAserial', join(pki, 'ca.srl'),
      '-out', 'kubelet.crt', '-days', '30', '-extfile', 'kubelet.ext'], { cwd: pki });

    writeFileSync(join(d, 'containerd.toml'), `version = 2
root = "${d}/containerd/root"
state = "${d}/containerd/state"
# Nothing of containerd's own outside this directory (opt would install into /opt/containerd).
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${this.#socket}"
[ttrpc]
  address = "${this.#socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${this.#options.pauseImage}"
  # No CAP_SYS_RESOURCE on these machines: runc cannot set the sandbox's negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN}"
    conf_dir = "${d}/cni/net.d"
`);
    // The node needs a CNI network to be Ready; the agent's pods use the host's network. No
    // gateway, no masquerade: nothing that touches ip_forward or iptables.
    writeFileSync(join(d, 'cni/net.d/10-umlmon-e2e.conflist'), `${JSON.stringify({
      cniVersion: '0.4.0',
      name: 'umlmon-e2e',
      plugins: [
        { type: 'bridge', bridge: 'umlmone2e0', isGateway: false, ipMasq: false, hairpinMode: false,
          ipam: { type: 'host-local', dataDir: join(d, 'cni/ipam'), ranges: [[{ subnet: '10.244.99.0/24' }]] } },
        { type: 'loopback' },
      ],
    }, null, 2)}\n`);
    writeFileSync(join(d, 'kubelet.yaml'), `${JSON.stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: this.ip,
      port: kubeletPort,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      tlsCertFile: join(pki, 'kubelet.crt'),
      tlsPrivateKeyFile: join(pki, 'kubelet.key'),
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: this.#cp.caFile } },
      authorization: { mode: 'Webhook' },
      cgroupDriver: 'cgroupfs',
      // The kubelet would add KUBE-MARK-* / KUBE-FIREWALL chains to the host's iptables.
      makeIPTablesUtilChains: false,
      failSwapOn: false,
      resolvConf: '/etc/resolv.conf',
      clusterDomain: 'cluster.local',
      // A shared test machine: no evictions, no image garbage collection of the test's images.
      evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      nodeStatusUpdateFrequency: '4s',
      syncFrequency: '10s',
    }, null, 2)}\n`);
  }

  logTail(lines = 20): string {
    return this.#procs.map((p) => {
      let text = '';
      try {
        text = readFileSync(p.log, 'utf8');
      } catch {
        text = '(no log)';
      }
      return `--- ${p.name} (${p.exitStatus ?? 'running'}), last ${lines} lines of ${p.log}:\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
    }).join('\n');
  }

  /**
   * Synchronous last resort (process exit without stop()): SIGKILL to what this node started, and
   * the sysctls back. The rest (containers' mounts, cgroups, hard-coded paths) needs stop().
   */
  killAllSync(): void {
    if (this.#stopped) return;
    for (const p of this.#procs) killGroup(p, 'SIGKILL');
    for (const pid of this.#shimPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const [s, v] of this.#sysctls) {
      try {
        writeFileSync(`/proc/sys/${s}`, v);
      } catch { /* nothing more to do at exit */ }
    }
  }

  /** containerd-shim processes of this containerd (their command line names its socket). */
  #shimPids(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (cmd.startsWith('/usr/bin/containerd-shim') && cmd.includes(this.#socket)) pids.push(Number(entry));
      } catch { /* gone */ }
    }
    return pids;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const errors: string[] = [];
    const kubelet = this.#procs.find((p) => p.name === 'kubelet');
    const scheduler = this.#procs.find((p) => p.name === 'kube-scheduler');
    const containerd = this.#procs.find((p) => p.name === 'containerd');
    // The kubelet first, so it restarts nothing; then every container, while containerd runs.
    for (const p of [kubelet, scheduler]) if (p) await stopProc(p);
    if (containerd && containerd.exitStatus === undefined) {
      try {
        const tasks = (await this.ctr(['tasks', 'ls', '-q'])).split('\n').filter(Boolean);
        for (const t of tasks) await this.ctr(['tasks', 'kill', '-s', 'SIGKILL', t]).catch(() => undefined);
        for (const t of tasks) await waitFor(async () => (await this.ctr(['tasks', 'rm', '-f', t]).then(() => true, () => false)), 20_000);
        const containers = (await this.ctr(['containers', 'ls', '-q'])).split('\n').filter(Boolean);
        for (const c of containers) await this.ctr(['containers', 'rm', c]).catch((e: Error) => errors.push(e.message));
      } catch (err) {
        errors.push(`removing containers: ${(err as Error).message}`);
      }
      await stopProc(containerd);
    }
    for (const pid of this.#shimPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    await waitFor(async () => this.#shimPids().length === 0, 10_000);
    // Mounts the kubelet made under its root (volumes) and containerd's rootfs mounts.
    for (const m of mountsUnder(this.dir).reverse()) {
      await run('umount', ['-l', m]).catch((e: Error) => errors.push(e.message));
    }
    for (const [s, v] of this.#sysctls) {
      try {
        writeFileSync(`/proc/sys/${s}`, v);
      } catch (err) {
        errors.push(`restoring ${s}=${v}: ${(err as Error).message}`);
      }
    }
    for (const p of this.#absent) rmSync(p, { recursive: true, force: true });
    for (const c of this.#cgroupsAbsent) removeCgroupTree(c, errors);
    try {
      // The bridge exists only if a pod used the pod network.
      if (existsSync('/sys/class/net/umlmone2e0')) await run('ip', ['link', 'del', 'umlmone2e0']);
    } catch (err) {
      errors.push((err as Error).message);
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
    if (errors.length > 0) throw new Error(`node ${this.name} stopped with errors:\n${errors.join('\n')}`);
  }
}

// --- helpers ---

function hostIp(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this host has no non-loopback IPv4 address for a node (the kubelet refuses loopback)');
}

function cgroupRoots(): string[] {
  try {
    if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) return [CGROUP_ROOT];
    return readdirSync(CGROUP_ROOT).map((n) => join(CGROUP_ROOT, n)).filter((p) => existsSync(join(p, 'cgroup.procs')));
  } catch {
    return [];
  }
}

/** rmdir a cgroup and its children, deepest first (cgroup directories cannot be removed recursively). */
function removeCgroupTree(dir: string, errors: string[]): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const sub = join(dir, name);
    try {
      if (statSync(sub).isDirectory()) removeCgroupTree(sub, errors);
    } catch { /* gone */ }
  }
  try {
    rmdirSync(dir);
  } catch (err) {
    errors.push(`removing cgroup ${dir}: ${(err as Error).message}`);
  }
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .map((p) => p.replace(/\\040/g, ' ')).filter((p) => p === dir || p.startsWith(`${dir}/`));
}



export function run(command: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  return new Promise((done, reject) => {
    const child = execFile(command, args, { cwd: opts.cwd, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-4000)}`));
      else done(stdout);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}


/** True once check() holds, false at the timeout (eventually.ts, as a yes or no). */
async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  return eventually('a condition', check, { timeoutMs, intervalMs: 200, retryErrors: false }).then(() => true, () => false);
}

