#!/usr/bin/env node
// The kubectl-umlmon executable's entry point (kubectl-plugin.ts has the plugin).
import { pluginMain } from './kubectl-plugin.ts';

pluginMain(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    console.error(`kubectl umlmon: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
