// The agent's configuration as a command on this host loads it: argv with this process's
// environment, files, hostname and working directory (loadConfig itself is pure, for tests).
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { loadConfig, type LoadConfigInput, type LoadConfigResult } from '../agent/config.ts';

export function loadProcessConfig(argv: string[], options: Pick<LoadConfigInput, 'extraOptions' | 'allowPositionals'> = {}): LoadConfigResult {
  return loadConfig({ argv, env: process.env, readFile: (p) => readFileSync(p, 'utf8'), hostname: hostname(), cwd: process.cwd(), ...options });
}
