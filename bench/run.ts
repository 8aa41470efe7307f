// Runs every benchmark in turn, each in its own process so one's kernels and sockets cannot
// skew the next, and prints their figures. Benchmarks measure; tests assert behaviour.
//   npm run bench                 all of them
//   npm run bench -- boot agent   a selection, by file name under bench/
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ALL = ['mconsole', 'boot', 'agent'];
const selected = process.argv.slice(2);
const names = selected.length > 0 ? selected : ALL;

let failed = 0;
for (const name of names) {
  if (!ALL.includes(name)) {
    console.error(`bench: unknown benchmark '${name}' (have: ${ALL.join(', ')})`);
    process.exit(2);
  }
  console.log(`\n== bench/${name}.ts ==`);
  const script = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const result = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.error(`bench/${name}.ts failed (${result.signal ?? `exit ${result.status}`})`);
  }
}
process.exit(failed === 0 ? 0 : 1);
