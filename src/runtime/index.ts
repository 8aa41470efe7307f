// The runtime layer: jailed UML kernels on this node, driven natively over mconsole.
export { createRuntime, defaultCgroupParent, UmlRuntime } from './runtime.ts';
export { RuntimeError } from './errors.ts';
export type { RuntimeErrorCode } from './errors.ts';
export type * from './types.ts';
