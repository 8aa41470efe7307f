// Errors the runtime raises. Every message names the machine, what failed and why, in words a
// user can act on; `code` lets the agent tell them apart without parsing text.

export type RuntimeErrorCode =
  | 'invalid-config'
  | 'not-found'
  | 'already-running'
  | 'not-running'
  | 'not-booted'
  | 'disk-in-use'
  | 'interface-in-use'
  | 'unsupported'
  | 'start-failed'
  | 'jail-failed'
  | 'device-failed'
  | 'backup-failed'
  /** The kernel cannot run userspace on this host (kernel-compat.ts). */
  | 'kernel-incompatible';

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;
  /** The machine's id (umid). */
  readonly machineId: string;

  constructor(code: RuntimeErrorCode, machine: { id: string; name?: string }, message: string, options?: { cause?: unknown }) {
    super(`machine ${describeMachine(machine)}: ${message}`, options);
    this.name = 'RuntimeError';
    this.code = code;
    this.machineId = machine.id;
  }
}

export function describeMachine(machine: { id: string; name?: string }): string {
  return machine.name && machine.name !== machine.id ? `${machine.name} (${machine.id})` : machine.id;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
