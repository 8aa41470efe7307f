// `kubectl umlmon`: the kubectl plugin (an executable kubectl-umlmon on PATH), as virtctl is
// KubeVirt's. It drives the real kubectl, so the user's kubeconfig, context and credentials
// apply unchanged, and does nothing a user could not do with kubectl by hand:
//   start|stop|pause|resume   a merge patch of spec.state
//   restart|backup            a merge patch of the annotation umlmon.io/restart-requested-at or
//                             umlmon.io/backup-requested-at (now): the agent acts once
//   status                    the object's status, as `umlmon status` prints it
//   console|mconsole          the agent pod on the machine's node (the chart's DaemonSet labels,
//                             field spec.nodeName), then `kubectl exec -it` of `umlmon` in it
//   completion bash|zsh       shell completion (verbs, machine names)
// A GitOps tool (Argo CD, Flux) that owns the object puts its own spec back on its next sync:
// the plugin says so when the object shows one, and the change belongs in Git.
import { spawn } from 'node:child_process';
import { hostname, userInfo } from 'node:os';
import { formatStatus } from './commands/machines.ts';

export const KUBECTL = process.env.KUBECTL ?? 'kubectl';
/** The agent pods: the labels the chart and manifests/ put on the DaemonSet's pods. */
export const AGENT_SELECTOR = 'app.kubernetes.io/name=umlmon,app.kubernetes.io/component=node-agent';
export const AGENT_CONTAINER = 'agent';
const RESTART_ANNOTATION = 'umlmon.io/restart-requested-at';
const BACKUP_ANNOTATION = 'umlmon.io/backup-requested-at';

const STATE_OF: Record<string, string> = { start: 'Running', stop: 'Stopped', pause: 'Paused', resume: 'Running' };
export const VERBS = ['console', 'mconsole', 'start', 'stop', 'pause', 'resume', 'restart', 'backup', 'status', 'completion'] as const;

const USAGE = `usage: kubectl umlmon <command> [flags] <machine> [args]

Acts on UmlMachines (umlmon.io) through kubectl, with your kubeconfig and context.

commands:
  console <machine>            attach to the guest's console (Ctrl-] detaches; --read-only to watch)
  mconsole <machine> <cmd...>  one mconsole command (e.g. version, proc meminfo)
  start <machine>              spec.state: Running
  stop <machine>               spec.state: Stopped (graceful: ctrl-alt-del, then halt)
  pause <machine>              spec.state: Paused
  resume <machine>             spec.state: Running
  restart <machine>            a graceful restart, once (annotation ${RESTART_ANNOTATION})
  backup <machine>             one backup now (annotation ${BACKUP_ANNOTATION})
  status <machine>             the machine's status
  completion bash|zsh          shell completion script

flags (before or after the machine):
  -n, --namespace NS           the machine's namespace (default: the context's)
  --agent-namespace NS         where the agent pods are (default: every namespace)
  --dry-run                    console, mconsole: print the kubectl exec command, run nothing
  --read-only                  console: watch without typing
  --context, --kubeconfig, --cluster, --user, -s/--server, --token
                               passed on to kubectl

The state verbs patch the object: the spec stays the source of truth. When a GitOps tool
(Argo CD, Flux) manages the object it puts its own spec.state back on its next sync:
change the state in Git there. console and mconsole run umlmon in the agent pod of the
machine's node (kubectl exec, which needs the pods/exec permission).`;

/** kubectl's own flags, passed on to every kubectl the plugin runs. */
const KUBECTL_FLAGS = new Set(['--context', '--kubeconfig', '--cluster', '--user', '-s', '--server', '--token', '--cache-dir', '--insecure-skip-tls-verify', '--certificate-authority', '--request-timeout']);

export interface PluginArgs {
  verb: string | undefined;
  positionals: string[];
  namespace?: string;
  agentNamespace?: string;
  dryRun: boolean;
  readOnly: boolean;
  kubectlFlags: string[];
  help: boolean;
}

/** Flags anywhere before "--" and before mconsole's command, whose words are kept as they are. */
export function parsePluginArgs(argv: string[]): PluginArgs {
  const out: PluginArgs = { verb: undefined, positionals: [], dryRun: false, readOnly: false, kubectlFlags: [], help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    // Once mconsole's command has begun (the word after the machine), everything is the
    // command: its words may look like flags.
    if (out.verb === 'mconsole' && out.positionals.length >= 2) { out.positionals.push(arg); continue; }
    if (arg === '--') { out.positionals.push(...argv.slice(i + 1)); break; }
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '-h' || flag === '--help') out.help = true;
    else if (flag === '-n' || flag === '--namespace') out.namespace = value();
    else if (flag === '--agent-namespace') out.agentNamespace = value();
    else if (flag === '--dry-run') out.dryRun = true;
    else if (flag === '--read-only') out.readOnly = true;
    else if (KUBECTL_FLAGS.has(flag)) out.kubectlFlags.push(flag, value());
    else if (flag.startsWith('-') && flag !== '-') throw new Error(`unknown flag ${flag}`);
    else if (out.verb === undefined) out.verb = arg;
    else out.positionals.push(arg);
  }
  return out;
}

export interface KubectlRun {
  code: number;
  stdout: string;
  stderr: string;
}

export type RunKubectl = (args: string[], input?: string) => Promise<KubectlRun>;

export const runKubectl: RunKubectl = (args, input) => new Promise((resolve, reject) => {
  const child = spawn(KUBECTL, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.on('error', (err) => reject(new Error(`cannot run ${KUBECTL}: ${err.message}`)));
  child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  child.stdin.end(input ?? '');
});

/** Signs that a GitOps tool owns the object (it would revert a patch of its spec). */
export function gitOpsOwner(object: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string>; managedFields?: { manager?: string }[] } }): string | undefined {
  const labels = object.metadata?.labels ?? {};
  const annotations = object.metadata?.annotations ?? {};
  if (annotations['argocd.argoproj.io/tracking-id'] || labels['argocd.argoproj.io/instance'] || labels['app.kubernetes.io/instance'] && annotations['kubectl.kubernetes.io/last-applied-configuration']?.includes('argocd')) return 'Argo CD';
  if (labels['kustomize.toolkit.fluxcd.io/name'] || labels['helm.toolkit.fluxcd.io/name']) return 'Flux';
  const managers = (object.metadata?.managedFields ?? []).map((f) => f.manager ?? '');
  if (managers.some((m) => /argocd/.test(m))) return 'Argo CD';
  if (managers.some((m) => /kustomize-controller|helm-controller/.test(m))) return 'Flux';
  return undefined;
}

/** The kubectl exec command for `umlmon <args>` in an agent pod. */
export function execCommand(pod: { namespace: string; name: string }, kubectlFlags: string[], tty: boolean, umlmonArgs: string[]): string[] {
  return [...kubectlFlags, 'exec', tty ? '-it' : '-i', '-n', pod.namespace, pod.name, '-c', AGENT_CONTAINER, '--', 'umlmon', ...umlmonArgs];
}

interface PodList { items: { metadata: { name: string; namespace: string }; status?: { phase?: string }; spec?: { nodeName?: string } }[] }

/** The Running agent pod on `node`, or an error that says what was looked for. */
export async function findAgentPod(kubectl: RunKubectl, flags: string[], node: string, agentNamespace?: string): Promise<{ namespace: string; name: string }> {
  const scope = agentNamespace ? ['-n', agentNamespace] : ['--all-namespaces'];
  const r = await kubectl([...flags, 'get', 'pods', ...scope, '-l', AGENT_SELECTOR, '--field-selector', `spec.nodeName=${node}`, '-o', 'json']);
  if (r.code !== 0) throw new Error(`cannot list the agent pods: ${r.stderr.trim()}`);
  const pods = (JSON.parse(r.stdout) as PodList).items;
  const where = `${agentNamespace ? `in namespace ${agentNamespace}` : 'in any namespace'} with labels ${AGENT_SELECTOR} on node ${node}`;
  if (pods.length === 0) throw new Error(`no umlmon agent pod ${where}: is the agent installed there (helm install umlmon charts/umlmon)?`);
  const running = pods.filter((p) => p.status?.phase === 'Running');
  if (running.length === 0) throw new Error(`the umlmon agent pod ${pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(', ')} ${where} is not Running (${pods.map((p) => p.status?.phase ?? 'no phase').join(', ')})`);
  return { namespace: running[0]!.metadata.namespace, name: running[0]!.metadata.name };
}

function fail(message: string, code = 1): number {
  console.error(`kubectl umlmon: ${message}`);
  return code;
}

async function getMachine(kubectl: RunKubectl, flags: string[], ns: string[], name: string): Promise<Record<string, any>> {
  const r = await kubectl([...flags, 'get', 'umlmachines.umlmon.io', name, ...ns, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr.trim().replace(/^Error from server \(NotFound\): /, '') || `kubectl get failed (exit ${r.code})`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

export async function pluginMain(argv: string[], kubectl: RunKubectl = runKubectl, now: () => Date = () => new Date()): Promise<number> {
  let args: PluginArgs;
  try {
    args = parsePluginArgs(argv);
  } catch (error) {
    return fail(`${(error as Error).message}\nRun 'kubectl umlmon --help' for usage.`, 2);
  }
  if (args.help || args.verb === undefined || args.verb === 'help') {
    console.log(USAGE);
    return args.verb === undefined && !args.help ? 2 : 0;
  }
  const { verb, positionals, kubectlFlags: flags } = args;
  if (verb === '__complete') return complete(kubectl, args);
  if (verb === 'completion') {
    const shell = positionals[0];
    if (shell !== 'bash' && shell !== 'zsh') return fail('completion takes bash or zsh', 2);
    process.stdout.write(completionScript(shell));
    return 0;
  }
  if (!(VERBS as readonly string[]).includes(verb)) return fail(`unknown command '${verb}'\nRun 'kubectl umlmon --help' for usage.`, 2);
  const name = positionals[0];
  if (name === undefined) return fail(`${verb}: missing the machine`, 2);
  if (verb !== 'mconsole' && positionals.length > 1) return fail(`${verb}: one machine at a time`, 2);
  const ns = args.namespace !== undefined ? ['-n', args.namespace] : [];

  let machine: Record<string, any>;
  try {
    machine = await getMachine(kubectl, flags, ns, name);
  } catch (error) {
    return fail((error as Error).message);
  }
  const key = `${machine.metadata.namespace}/${machine.metadata.name}`;
  const nsOf = ['-n', machine.metadata.namespace as string];

  if (verb === 'status') {
    console.log(formatStatus(key, machine.spec ?? null, machine.status ?? null, now().getTime()));
    return 0;
  }

  if (verb in STATE_OF || verb === 'restart' || verb === 'backup') {
    const patch = verb in STATE_OF
      ? { spec: { state: STATE_OF[verb] } }
      : { metadata: { annotations: { [verb === 'restart' ? RESTART_ANNOTATION : BACKUP_ANNOTATION]: now().toISOString() } } };
    const current = machine.spec?.state ?? 'Running';
    if (verb in STATE_OF && current === STATE_OF[verb]) {
      console.log(`umlmachine.umlmon.io/${machine.metadata.name}: spec.state is already ${current}`);
      return 0;
    }
    const r = await kubectl([...flags, 'patch', 'umlmachines.umlmon.io', machine.metadata.name, ...nsOf, '--type=merge', '-p', JSON.stringify(patch)]);
    if (r.code !== 0) return fail(r.stderr.trim());
    const what = verb in STATE_OF ? `spec.state ${current} -> ${STATE_OF[verb]}` : `${verb} requested (${Object.keys(patch.metadata!.annotations)[0]}: ${Object.values(patch.metadata!.annotations)[0]})`;
    console.log(`umlmachine.umlmon.io/${machine.metadata.name} patched: ${what}`);
    const owner = gitOpsOwner(machine);
    if (owner && verb in STATE_OF) console.error(`kubectl umlmon: note: ${owner} manages ${key}; its next sync puts its own spec.state back: change it in Git`);
    return 0;
  }

  // console and mconsole: umlmon in the agent pod of the machine's node.
  const node = machine.spec?.nodeName as string | undefined;
  if (!node) return fail(`${key} has no spec.nodeName`);
  let pod: { namespace: string; name: string };
  try {
    pod = await findAgentPod(kubectl, flags, node, args.agentNamespace);
  } catch (error) {
    return fail((error as Error).message);
  }
  const holder = `${userInfo().username}@${hostname()} via kubectl`;
  const umlmonArgs = verb === 'console'
    ? ['console', '-f', '/etc/umlmon/config.yaml', '--holder', holder, ...(args.readOnly ? ['--read-only'] : []), key]
    : ['mconsole', key, ...positionals.slice(1)];
  if (verb === 'mconsole' && positionals.length < 2) return fail('mconsole: missing the command (e.g. version)', 2);
  const command = execCommand(pod, flags, verb === 'console' && process.stdin.isTTY === true, umlmonArgs);
  if (args.dryRun) {
    console.log([KUBECTL, ...command].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' '));
    return 0;
  }
  return new Promise<number>((resolve) => {
    const child = spawn(KUBECTL, command, { stdio: 'inherit' });
    child.on('error', (err) => resolve(fail(`cannot run ${KUBECTL}: ${err.message}`)));
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/** Candidates for the word being completed (the shell scripts below call `kubectl-umlmon __complete`). */
async function complete(kubectl: RunKubectl, args: PluginArgs): Promise<number> {
  // positionals: the words so far after the verb; the last one is being typed (may be empty).
  const words = args.positionals;
  const current = words[words.length - 1] ?? '';
  let candidates: string[] = [];
  if (words.length <= 1) {
    candidates = [...VERBS];
  } else if (words[0] === 'completion' && words.length === 2) {
    candidates = ['bash', 'zsh'];
  } else if (words[0] !== 'completion' && words.length === 2) {
    const ns = args.namespace !== undefined ? ['-n', args.namespace] : [];
    const r = await kubectl([...args.kubectlFlags, 'get', 'umlmachines.umlmon.io', ...ns, '-o', 'jsonpath={.items[*].metadata.name}']);
    if (r.code === 0) candidates = r.stdout.split(/\s+/).filter(Boolean);
  } else if (words[0] === 'mconsole' && words.length === 3) {
    candidates = ['version', 'help', 'proc', 'config', 'sysrq', 'stop', 'go', 'cad', 'halt', 'reboot'];
  }
  for (const c of candidates) if (c.startsWith(current)) console.log(c);
  return 0;
}

export function completionScript(shell: 'bash' | 'zsh'): string {
  if (shell === 'bash') {
    return `# bash completion for kubectl umlmon (kubectl-umlmon), from: kubectl umlmon completion bash
# Load it with: source <(kubectl umlmon completion bash)
_kubectl_umlmon() {
  local IFS=$'\\n'
  COMPREPLY=($(kubectl-umlmon __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _kubectl_umlmon kubectl-umlmon
# kubectl 1.26 and later complete plugins through kubectl_complete-umlmon (installed beside kubectl-umlmon).
`;
  }
  return `#compdef kubectl-umlmon
# zsh completion for kubectl umlmon (kubectl-umlmon), from: kubectl umlmon completion zsh
# Load it with: source <(kubectl umlmon completion zsh)
_kubectl_umlmon() {
  local -a candidates
  candidates=("\${(@f)$(kubectl-umlmon __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _kubectl_umlmon kubectl-umlmon
# kubectl 1.26 and later complete plugins through kubectl_complete-umlmon (installed beside kubectl-umlmon).
`;
}
