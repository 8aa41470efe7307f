// The agent's configuration as a command on this host loads it: argv with this process's
// environment, files, hostname and working directory (loadCommandConfig itself is pure, for tests).
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { loadCommandConfig, type CommandConfig, type CommandLineOptions } from './config-args.ts';

export function loadProcessConfig(argv: string[], options: CommandLineOptions = {}): CommandConfig {
  return loadCommandConfig(argv, { env: process.env, readFile: (p) => readFileSync(p, 'utf8'), hostname: hostname(), cwd: process.cwd() }, options);
}
