// The local verbs of directory mode, as vmctl has them: `umlmon start|stop|pause|resume|restart|
// backup|status <machine>` and `umlmon ls`. The state verbs edit the machine's file in the
// machines directory (spec.state; restart and backup set a request annotation): the file is
// the source of truth, the agent follows it, and whatever keeps the directory (a GitOps tool, a
// config manager) overrides the edit when it next writes the file. `status` and `ls` read the
// running agent over its control socket, or the state and machines directories without one.
import { CONFIG_FLAGS_HELP, type AgentConfig } from '../../agent/config.ts';
import { controlRequest, ControlUnavailableError } from '../../agent/control.ts';
import { BACKUP_REQUEST_ANNOTATION, RESTART_REQUEST_ANNOTATION } from '../../agent/annotations.ts';
import { keyOfRecord } from '../../runtime/console-session.ts';
import { readAllMachineRecords } from '../../runtime/machine-record.ts';
import { isSameProcessAlive } from '../../runtime/proc.ts';
import { VERB_STATE, editMachineDocument, findMachineDocument, listMachineDocuments, readStatusFile, splitMachineName } from '../machine-file.ts';
import { loadProcessConfig } from '../process-config.ts';

export type Verb = 'start' | 'stop' | 'pause' | 'resume' | 'restart' | 'backup' | 'status' | 'ls';

const GITOPS_NOTE = `The file in the machines directory is the source of truth: these verbs edit it
(spec.state; restart and backup set the annotation umlmon.io/restart-requested-at or
umlmon.io/backup-requested-at to now), and the agent follows the file. A tool that
keeps the directory (GitOps, a config manager) puts its own version back when it
next writes the file; make the change there instead. On a cluster: kubectl umlmon.`;

const USAGES: Record<Verb, string> = {
  start: 'start <machine>     set spec.state: Running (boots it if it is stopped)',
  stop: 'stop <machine>      set spec.state: Stopped (ctrl-alt-del, halt after the grace period)',
  pause: 'pause <machine>     set spec.state: Paused (mconsole stop: the guest is frozen)',
  resume: 'resume <machine>    set spec.state: Running (mconsole go)',
  restart: 'restart <machine>   shut the guest down gracefully and boot it again, once',
  backup: 'backup <machine>    take one online backup now (spec.backup or not)',
  status: 'status <machine>    what the agent reports for the machine',
  ls: 'ls                  every machine: NAME STATE PHASE KERNEL PID MEMORY UPTIME RESTARTS',
};

function usage(verb: Verb): string {
  return `usage: umlmon ${USAGES[verb]}

The machine is namespace/name, or a name in namespace default.
${verb === 'status' || verb === 'ls' ? 'Asks the running agent (--control); without one, reads the state and machines directories.' : GITOPS_NOTE}

${CONFIG_FLAGS_HELP}`;
}

/** "3d4h", "2h5m", "4m10s", "12s": the largest two units, as kubectl prints ages. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return h > 0 ? `${d}d${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h${m}m` : `${h}h`;
  if (m > 0) return sec > 0 ? `${m}m${sec}s` : `${m}m`;
  return `${sec}s`;
}

export interface LsRow {
  machine: string;
  state: string | null;
  phase: string;
  kernel: string | null;
  kernelVersion?: string | null;
  pid: number | null;
  memory: string | null;
  startTime: string | null;
  restarts: number | null;
}

/** The table, kubectl's way: upper-case headers, columns padded by three spaces, <none> for nothing. */
export function formatTable(rows: LsRow[], now: number): string {
  if (rows.length === 0) return 'No machines found.';
  const header = ['NAME', 'STATE', 'PHASE', 'KERNEL', 'PID', 'MEMORY', 'UPTIME', 'RESTARTS'];
  const cells = rows.map((r) => [
    r.machine, r.state ?? '<none>', r.phase, r.kernel ?? '<none>', r.pid === null ? '<none>' : String(r.pid), r.memory ?? '<none>',
    r.startTime ? formatDuration(now - Date.parse(r.startTime)) : '<none>', r.restarts === null ? '<none>' : String(r.restarts),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((line) => line.map((c, i) => (i === line.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd()).join('\n');
}

/** Without an agent: the machines directory's files, their status files and the kernels in the state directory. */
export function rowsWithoutAgent(config: AgentConfig): LsRow[] {
  const { records } = readAllMachineRecords(config.stateDir);
  const running = new Map<string, { pid: number; startTime: string }>();
  for (const r of records) {
    if (!r.exit && r.pid && isSameProcessAlive(r.pid, r.startTicks)) running.set(keyOfRecord(r), { pid: r.pid, startTime: r.startTime });
  }
  const rows: LsRow[] = [];
  const seen = new Set<string>();
  if (config.source === 'directory') {
    for (const doc of listMachineDocuments(config.machinesDir)) {
      const key = `${doc.namespace}/${doc.name}`;
      seen.add(key);
      const status = readStatusFile(config.machinesDir, doc.namespace, doc.name);
      const live = running.get(key);
      rows.push({
        machine: key, state: typeof doc.spec.state === 'string' ? doc.spec.state : 'Running', phase: status?.phase ?? 'Pending',
        kernel: typeof doc.spec.kernel === 'string' ? doc.spec.kernel : 'default', pid: live?.pid ?? null,
        memory: typeof doc.spec.memory === 'string' ? doc.spec.memory : status?.memory ?? null,
        startTime: live?.startTime ?? null, restarts: status?.restartCount ?? 0,
      });
    }
  }
  for (const [key, live] of running) {
    if (!seen.has(key)) rows.push({ machine: key, state: null, phase: 'NotInSource', kernel: null, pid: live.pid, memory: null, startTime: live.startTime, restarts: null });
  }
  return rows.sort((a, b) => a.machine.localeCompare(b.machine));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function ask(config: AgentConfig, request: Parameters<typeof controlRequest>[1]): Promise<unknown> {
  return controlRequest(config.controlAddress, request, { timeoutMs: 10_000, ...(config.controlToken !== undefined ? { token: config.controlToken } : {}) });
}

/** `umlmon status`'s text: the fields a person looks for first, then the conditions. */
export function formatStatus(machine: string, spec: Record<string, unknown> | null, status: Record<string, unknown> | null, now: number): string {
  const s = (status ?? {}) as Record<string, unknown>;
  const lines: [string, string][] = [
    ['Name', machine],
    ['State', String(spec?.state ?? 'Running')],
    ['Phase', String(s.phase ?? 'Pending')],
    ['Node', String(s.nodeName ?? spec?.nodeName ?? '<none>')],
    ['Kernel', String(s.kernelVersion ?? spec?.kernel ?? 'default')],
    ['Umid', String(s.umid ?? '<none>')],
    ['PID', String(s.pid ?? '<none>')],
    ['Memory', String(s.memory ?? spec?.memory ?? '<none>')],
    ['Started', s.startTime ? `${String(s.startTime)} (${formatDuration(now - Date.parse(String(s.startTime)))} ago)` : '<none>'],
    ['Booted', String(s.bootTime ?? '<none>')],
    ['Restarts', String(s.restartCount ?? 0)],
  ];
  const backup = s.lastBackup as { time?: string; result?: string; location?: string; message?: string } | undefined;
  if (backup) lines.push(['Last backup', `${backup.time ?? ''} ${backup.result ?? ''}${backup.location ? ` ${backup.location}` : ''}${backup.message ? ` (${backup.message})` : ''}`]);
  const consoles = s.consoles as { name: string; hostDevice: string }[] | undefined;
  for (const c of consoles ?? []) lines.push([`Console ${c.name}`, c.hostDevice]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 1;
  const out = lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`);
  const conditions = (s.conditions ?? []) as { type: string; status: string; reason: string; message: string }[];
  if (conditions.length > 0) {
    out.push('Conditions:');
    const tw = Math.max(4, ...conditions.map((c) => c.type.length));
    const rw = Math.max(6, ...conditions.map((c) => c.reason.length));
    out.push(`  ${'TYPE'.padEnd(tw)}   STATUS    ${'REASON'.padEnd(rw)}   MESSAGE`);
    for (const c of conditions) out.push(`  ${c.type.padEnd(tw)}   ${c.status.padEnd(7)}   ${c.reason.padEnd(rw)}   ${c.message}`.trimEnd());
  }
  return out.join('\n');
}

export async function runVerb(verb: Verb, argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(usage(verb));
    return 0;
  }
  const loaded = loadProcessConfig(argv, { allowPositionals: true });
  if (!loaded.ok) {
    for (const e of loaded.errors) console.error(`umlmon ${verb}: ${e}`);
    return 2;
  }
  const { config, positionals } = loaded;
  const wanted = verb === 'ls' ? 0 : 1;
  if (positionals.length !== wanted) {
    console.error(`umlmon ${verb}: ${wanted === 0 ? 'takes no machine' : positionals.length === 0 ? 'missing the machine' : 'one machine at a time'}\nRun 'umlmon ${verb} --help' for usage.`);
    return 2;
  }
  const now = Date.now();

  if (verb === 'ls') {
    let rows: LsRow[];
    try {
      rows = (await ask(config, { op: 'list' })) as LsRow[];
    } catch (error) {
      if (!(error instanceof ControlUnavailableError)) {
        console.error(`umlmon ls: ${errorText(error)}`);
        return 1;
      }
      try {
        rows = rowsWithoutAgent(config);
      } catch (err) {
        console.error(`umlmon ls: ${errorText(err)}`);
        return 1;
      }
    }
    console.log(formatTable(rows, now));
    return 0;
  }

  const target = positionals[0]!;
  const { namespace, name } = splitMachineName(target);
  const key = `${namespace}/${name}`;

  if (verb === 'status') {
    try {
      const result = (await ask(config, { op: 'status', machine: key })) as { spec: Record<string, unknown> | null; status: Record<string, unknown> | null };
      console.log(formatStatus(key, result.spec, result.status, now));
      return 0;
    } catch (error) {
      if (!(error instanceof ControlUnavailableError)) {
        console.error(`umlmon status: ${errorText(error)}`);
        return 1;
      }
    }
    if (config.source !== 'directory') {
      console.error(`umlmon status: no agent answers at ${config.control}; on a cluster, kubectl umlmon status ${target}`);
      return 1;
    }
    try {
      const doc = findMachineDocument(config.machinesDir, target);
      console.log(formatStatus(key, doc.spec, (readStatusFile(config.machinesDir, namespace, name) ?? null) as Record<string, unknown> | null, now));
      console.log(`(no agent answers at ${config.control}: this is the last status it wrote)`);
      return 0;
    } catch (error) {
      console.error(`umlmon status: ${errorText(error)}`);
      return 1;
    }
  }

  if (config.source !== 'directory') {
    console.error(`umlmon ${verb}: the machines come from Kubernetes here (source: kubernetes): use kubectl umlmon ${verb} ${target}`);
    return 2;
  }
  try {
    const doc = findMachineDocument(config.machinesDir, target);
    if (verb === 'restart' || verb === 'backup') {
      const annotation = verb === 'restart' ? RESTART_REQUEST_ANNOTATION : BACKUP_REQUEST_ANNOTATION;
      const at = new Date(now).toISOString();
      editMachineDocument(doc, ['metadata', 'annotations', annotation], at);
      console.log(`${key}: ${verb === 'restart' ? 'restart' : 'backup'} requested (${annotation}: ${at} in ${doc.file})`);
      return 0;
    }
    const state = VERB_STATE[verb];
    const current = typeof doc.spec.state === 'string' ? doc.spec.state : 'Running';
    if (current === state) {
      console.log(`${key}: spec.state is already ${state} (${doc.file})`);
      return 0;
    }
    editMachineDocument(doc, ['spec', 'state'], state);
    console.log(`${key}: spec.state ${current} -> ${state} (${doc.file})`);
    return 0;
  } catch (error) {
    console.error(`umlmon ${verb}: ${errorText(error)}`);
    return 1;
  }
}
