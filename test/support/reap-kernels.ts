// Runs after the test suite (npm test): a UML kernel still alive whose jail or working
// directory is under the temporary directory belongs to a test that did not clean up (a test
// process killed by the runner's timeout never runs its after hooks). Each one is killed with
// its process group, and the run fails loudly: every test must kill what it started, pass or
// fail. Silent when nothing is left, so the test runner's summary stays the last output.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';

const tmp = tmpdir();

function link(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

const left: { pid: number; where: string; cmdline: string }[] = [];
for (const entry of readdirSync('/proc')) {
  if (!/^\d+$/.test(entry)) continue;
  const pid = Number(entry);
  if (pid === process.pid) continue;
  const exe = link(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  if (!/^linux([.-]|$)/.test(exe.slice(exe.lastIndexOf('/') + 1))) continue; // linux, linux.uml, linux-7.2.12-...
  const root = link(`/proc/${pid}/root`);
  const cwd = link(`/proc/${pid}/cwd`);
  const where = [root, cwd].find((p) => p.startsWith(`${tmp}/`));
  if (!where) continue;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch { /* gone */ }
  left.push({ pid, where, cmdline });
}

for (const k of left) {
  try {
    process.kill(-k.pid, 'SIGKILL');
  } catch {
    try { process.kill(k.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}
if (left.length > 0) {
  console.error(`reap-kernels: ${left.length} UML kernel(s) of the tests were still running after the suite, killed now:`);
  for (const k of left) console.error(`  pid ${k.pid} in ${k.where}: ${k.cmdline.slice(0, 200)}`);
  process.exitCode = 1;
}
