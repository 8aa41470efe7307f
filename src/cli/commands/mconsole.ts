// `umlmon mconsole <socket|umid|name> <command...>`: one mconsole command, printed the way
// uml_mconsole prints it in one-shot mode ("OK <reply>" / "ERR <reply>"), so scripts written
// for uml_mconsole keep working. Exit status: 0 on OK, 1 on ERR, 2 when the command could not be
// asked (usage, unknown machine, no answer in time, socket unreachable).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { MconsoleClient, MconsoleError, MconsoleIncompleteReplyError } from '../../runtime/mconsole/index.ts';

export const DEFAULT_STATE_DIR = '/var/lib/umlmon';
const DEFAULT_TIMEOUT_SECONDS = 5;

const USAGE = `usage: umlmon mconsole [--state-dir DIR] [--timeout SECONDS] <socket|umid|name> <command...>

Sends one command to a UML kernel's management console and prints the reply as
uml_mconsole does: "OK <reply>" (exit 0) or "ERR <reply>" (exit 1). Exit 2 when the
command could not be asked: bad usage, unknown machine, no reply in time.

The target is an mconsole socket path, or a machine in the state directory, by umid
(<state-dir>/machines/<umid>) or by name (e.g. default/web-1).

options:
  --state-dir DIR     umlmon's state directory (env UMLMON_STATE_DIR, default ${DEFAULT_STATE_DIR})
  --timeout SECONDS   how long to wait for the reply (default ${DEFAULT_TIMEOUT_SECONDS})
  -h, --help          this text

commands (the kernel's own 'help' lists them): version, help, halt, reboot, cad,
stop, go, config <dev>[=<value>], remove <dev>, sysrq <key>, log <text>,
proc <file>, stack <pid> (crashes Debian's 6.1 UML build; on 7.x its long reply is cut short)

examples:
  umlmon mconsole default/web-1 version
  umlmon mconsole ~/.uml/debian/mconsole proc uptime
  umlmon mconsole 3f9a0c1d2e4b config ubd1=/images/data.ext4`;

export type MconsoleArgs =
  | { kind: 'help' }
  | { kind: 'usage-error'; message: string }
  | { kind: 'run'; target: string; command: string; stateDir: string; timeoutMs: number };

/** Options come before the target, so a command's own words (`log --timeout`) are never eaten. */
export function parseMconsoleArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): MconsoleArgs {
  let stateDir = env.UMLMON_STATE_DIR || DEFAULT_STATE_DIR;
  let timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
  let i = 0;
  for (; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--') { i += 1; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag !== '--state-dir' && flag !== '--timeout') return { kind: 'usage-error', message: `unknown option '${flag}'` };
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') return { kind: 'usage-error', message: `${flag} needs a value` };
    if (flag === '--state-dir') {
      stateDir = value;
    } else {
      timeoutSeconds = Number(value);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) return { kind: 'usage-error', message: `--timeout must be a positive number of seconds, not '${value}'` };
    }
  }
  const [target, ...words] = argv.slice(i);
  if (target === undefined || target === '') return { kind: 'usage-error', message: 'missing the target: an mconsole socket, a umid or a machine name' };
  if (words.length === 0) return { kind: 'usage-error', message: `missing the command to send to ${target} (e.g. 'version')` };
  return { kind: 'run', target, command: words.join(' '), stateDir, timeoutMs: Math.round(timeoutSeconds * 1000) };
}

export interface ResolvedTarget {
  socketPath: string;
  /** The machine's name when the target was found in the state directory. */
  name?: string;
}

interface MachineRecord { name?: unknown; mconsoleSocket?: unknown }

function readMachineRecord(file: string): MachineRecord {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as MachineRecord;
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
}

function socketOfRecord(record: MachineRecord, file: string, fallbackName: string): ResolvedTarget {
  const socketPath = record.mconsoleSocket;
  if (typeof socketPath !== 'string' || !isAbsolute(socketPath)) {
    throw new Error(`${file} has no absolute mconsoleSocket path; the machine may still be starting`);
  }
  return { socketPath, name: typeof record.name === 'string' ? record.name : fallbackName };
}

/**
 * Finds the mconsole socket for `target`: an existing socket path; else the machine with that
 * umid (<stateDir>/machines/<umid>/machine.json); else the machine whose `name` is `target`.
 * Throws with what was tried when nothing matches.
 */
export function resolveMconsoleTarget(target: string, stateDir: string): ResolvedTarget {
  if (existsSync(target)) {
    if (!statSync(target).isSocket()) throw new Error(`${target} exists but is not a socket (expected an mconsole socket, a umid or a machine name)`);
    return { socketPath: target };
  }
  const machinesDir = join(stateDir, 'machines');
  const isUmid = /^[A-Za-z0-9_.-]+$/.test(target) && target !== '.' && target !== '..';
  if (isUmid) {
    const file = join(machinesDir, target, 'machine.json');
    if (existsSync(file)) return socketOfRecord(readMachineRecord(file), file, target);
  }
  let umids: string[] = [];
  try {
    umids = readdirSync(machinesDir);
  } catch {
    // No machines directory: nothing to match by name either.
  }
  const matches: ResolvedTarget[] = [];
  for (const umid of umids) {
    const file = join(machinesDir, umid, 'machine.json');
    let record: MachineRecord;
    try {
      record = JSON.parse(readFileSync(file, 'utf8')) as MachineRecord;
    } catch {
      continue; // another machine's unreadable record is not this lookup's problem
    }
    if (record.name === target) matches.push(socketOfRecord(record, file, target));
  }
  if (matches.length === 1) return matches[0] as ResolvedTarget;
  if (matches.length > 1) {
    throw new Error(`${matches.length} machines are named '${target}' in ${machinesDir}: ${matches.map((m) => m.socketPath).join(', ')}; give the socket path instead`);
  }
  throw new Error(`no mconsole socket or machine called '${target}': not a socket path, and no such umid or machine name in ${machinesDir}`);
}

export async function main(argv: string[]): Promise<number> {
  const args = parseMconsoleArgs(argv);
  if (args.kind === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (args.kind === 'usage-error') {
    console.error(`umlmon mconsole: ${args.message}\nRun 'umlmon mconsole --help' for usage.`);
    return 2;
  }
  let target: ResolvedTarget;
  try {
    target = resolveMconsoleTarget(args.target, args.stateDir);
  } catch (error) {
    console.error(`umlmon mconsole: ${(error as Error).message}`);
    return 2;
  }
  const client = new MconsoleClient(target.socketPath, { timeoutMs: args.timeoutMs, ...(target.name !== undefined ? { name: target.name } : {}) });
  try {
    const reply = await client.request(args.command);
    console.log(`OK ${reply}`);
    return 0;
  } catch (error) {
    if (error instanceof MconsoleError) {
      console.log(`ERR ${error.reply}`);
      return 1;
    }
    if (error instanceof MconsoleIncompleteReplyError) {
      // What arrived is still worth showing (a long `stack`); say that it is cut short.
      console.log(`OK ${error.partial}`);
      console.error(`umlmon mconsole: ${error.message}`);
      return 2;
    }
    console.error(`umlmon mconsole: ${(error as Error).message}`);
    return 2;
  } finally {
    client.close();
  }
}
