// How a machine's state moves, as one table: what the kernel, its mconsole and the runtime's own
// operations report, and the state each report leads to from each state. A report that the
// table has no entry for leaves the state as it is: a pause that completes after the kernel
// exited does not bring it back to life, and a notify during a stop does not make it running.
import type { MachineState } from './types.ts';

export type MachineReport =
  /** The kernel's notify socket named its mconsole socket (a start, or a reboot in the same process). */
  | 'mconsole-up'
  /** start() waited its whole timeout for mconsole. */
  | 'start-timed-out'
  /** Adopted: its mconsole answered `version`; as recorded, running or paused. */
  | 'answered'
  | 'answered-paused'
  /** Adopted before its mconsole came up: it may still be booting. */
  | 'awaiting-mconsole'
  /** Adopted: the process is alive but its mconsole does not answer (never killed for it). */
  | 'silent'
  | 'stop-begun'
  | 'paused'
  | 'resumed'
  /** The kernel's process is gone (seen by its monitor, its pid, or at adoption). */
  | 'exited';

const ALIVE: readonly MachineState[] = ['starting', 'running', 'paused', 'stopping', 'unknown'];
const all = (to: MachineState, from: readonly MachineState[] = ALIVE): Partial<Record<MachineState, MachineState>> =>
  Object.fromEntries(from.map((s) => [s, to]));

export const TRANSITIONS: Readonly<Record<MachineReport, Partial<Record<MachineState, MachineState>>>> = {
  'mconsole-up': { starting: 'running', unknown: 'running' },
  'start-timed-out': { starting: 'unknown' },
  answered: all('running', ['starting', 'running', 'paused', 'unknown']),
  'answered-paused': all('paused', ['starting', 'running', 'paused', 'unknown']),
  'awaiting-mconsole': { unknown: 'starting' },
  silent: all('unknown', ['starting', 'running', 'paused', 'unknown']),
  'stop-begun': all('stopping'),
  paused: all('paused', ['running', 'paused', 'unknown']),
  resumed: all('running', ['running', 'paused', 'unknown']),
  exited: all('exited'),
};

/** The state a report leads to (the same state where the table has no entry). */
export function nextState(state: MachineState, report: MachineReport): MachineState {
  return TRANSITIONS[report][state] ?? state;
}
