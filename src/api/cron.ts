// node-cron, loaded on first use (its CommonJS build, so that a synchronous caller can load it):
// it imports node:crypto, and with it OpenSSL, as it loads, and most nodes schedule no backups.
// A directory agent whose machines have no spec.backup never loads it (src/sha256.ts says what
// OpenSSL costs).
import type * as NodeCron from 'node-cron';

let loaded: typeof NodeCron | undefined;

export function nodeCron(): typeof NodeCron {
  loaded ??= process.getBuiltinModule('node:module').createRequire(import.meta.url)('node-cron') as typeof NodeCron;
  return loaded;
}
