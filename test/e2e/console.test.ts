// `umlmon console` as a person uses it: a real terminal (tmux) runs the command against a real,
// jailed guest run by the agent in directory mode; the test types into the guest's shell and
// reads its output off the screen, detaches with Ctrl-], and checks the guest kept running.
// Through the agent's unix control socket, its tcp socket with the token, and directly through
// the state directory with no agent; one writer at a time, --read-only beside it.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import type { UmlMachineStatus } from '../../src/api/types.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../support/uml.ts';
import { alive } from '../support/process.ts';
import { removeMachineCgroups } from '../support/runtime.ts';
import { Terminal } from '../support/tmux.ts';
import { eventually } from '../support/eventually.ts';

const execFileAsync = promisify(execFile);
const UMLMON = join(REPO_ROOT, 'bin/umlmon');
const base = mkdtempSync(join(tmpdir(), 'umlmon-e2e-console-'));
const machinesDir = join(base, 'machines');
const stateDir = join(base, 'state');
const imageRoot = join(base, 'images');
const agentLog = join(base, 'agent.log');
const tokenFile = join(base, 'token');
const TOKEN = 'console-test-token-0123456789';
const suffix = Math.random().toString(36).slice(2, 8);
const VM = `con-${suffix}`;
const DOWN = `down-${suffix}`;
const term = new Terminal('console');
const guestPids = new Set<number>();
let agent: ChildProcess | undefined;
let tcpControl = '';

function startAgent(): ChildProcess {
  const out = openSync(agentLog, 'a');
  const child = spawn(process.execPath, [
    join(REPO_ROOT, 'src/cli/main.ts'), 'run', '--source', 'directory', '--machines-dir', machinesDir,
    '--state-dir', stateDir, '--image-root', imageRoot, '--node-name', 'e2e-node', '--kernel', `default=${umlKernel()}`,
    '--listen', 'off', '--log-level', 'debug',
  ], { stdio: ['ignore', out, out] });
  closeSync(out);
  child.on('exit', (code, signal) => appendFileSync(agentLog, `--- agent exited: ${code} ${signal} ---\n`));
  return child;
}

async function stopAgent(): Promise<void> {
  const child = agent;
  agent = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

function writeMachine(name: string, state = 'Running'): void {
  writeFileSync(join(machinesDir, `${name}.yaml`), JSON.stringify({
    apiVersion: 'umlmon.io/v1alpha1', kind: 'UmlMachine', metadata: { name },
    spec: { nodeName: 'e2e-node', state, memory: '48Mi', disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }] },
  }));
}

function status(name: string): UmlMachineStatus | undefined {
  try {
    return (parse(readFileSync(join(machinesDir, `${name}.status.yaml`), 'utf8')) as { status?: UmlMachineStatus }).status;
  } catch {
    return undefined;
  }
}

function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 90_000): Promise<T> {
  return eventually(what, probe, { timeoutMs, intervalMs: 100, retryErrors: false, context: () => readFileSync(agentLog, 'utf8').split('\n').slice(-20).join('\n') });
}

/** A shell command line running `umlmon console` with the test's state directory. */
function consoleCommand(...args: string[]): string {
  return [UMLMON, 'console', '--state-dir', stateDir, ...args].map((a) => `'${a}'`).join(' ');
}

async function umlmon(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(UMLMON, args, { timeout: 30_000 });
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

before(async () => {
  umlKernel();
  mkdirSync(machinesDir, { recursive: true });
  mkdirSync(imageRoot, { recursive: true });
  copyFileSync(join(testImageRoot(), TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  // The unix socket is the default (<state>/control.sock); the tcp one comes from the config file.
  writeFileSync(join(base, 'config.yaml'), `controlToken: ${TOKEN}\n`);
  agent = startAgent();
  writeMachine(VM);
  writeMachine(DOWN, 'Stopped');
  const s = await until('the guest Running', () => {
    const st = status(VM);
    if (st?.pid) guestPids.add(st.pid);
    return st?.phase === 'Running' && st.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? st : undefined;
  });
  assert.ok(s.pid);
});

after(async () => {
  term.kill();
  await stopAgent();
  for (const umid of existsSync(join(stateDir, 'machines')) ? readdirSync(join(stateDir, 'machines')) : []) {
    try {
      const record = JSON.parse(readFileSync(join(stateDir, 'machines', umid, 'machine.json'), 'utf8')) as { pid?: number };
      if (record.pid) guestPids.add(record.pid);
    } catch { /* none */ }
  }
  for (const pid of guestPids) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
  const deadline = Date.now() + 10_000;
  while ([...guestPids].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await removeMachineCgroups(stateDir);
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n').reverse()) {
    const mountPoint = line.split(' ')[1];
    if (mountPoint?.startsWith(base)) await execFileAsync('umount', ['-l', mountPoint]).catch(() => {});
  }
  rmSync(base, { recursive: true, force: true });
});

/** Ctrl-] to a session still attached (a test that failed half-way); none for a window never opened. */
function detachIfAttached(window: string): void {
  try {
    if (term.exitStatus(window) === undefined) term.keys(window, 'C-]');
  } catch {
    // No such window.
  }
}

describe('umlmon console on a real guest', { timeout: 10 * 60_000 }, () => {
  test('the kernel\'s console is a pty whose other end the jail\'s monitor holds: typed input from the FIFO, output appended to console.log', () => {
    const pid = status(VM)!.pid!;
    const umid = status(VM)!.umid!;
    const dir = join(stateDir, 'machines', umid);
    const pty = readlinkSync(`/proc/${pid}/fd/0`);
    assert.match(pty, /^\/dev\/pts\/\d+$/, 'con0 reads a pty');
    assert.equal(readlinkSync(`/proc/${pid}/fd/1`), pty, 'and writes the same pty');
    assert.equal(readlinkSync(`/proc/${pid}/fd/2`), join(dir, 'console.log'));
    const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/2`, 'utf8'))![1]!;
    assert.ok((Number.parseInt(flags, 8) & 0o2000) !== 0, `the log is opened for append (flags ${flags})`);
    // The monitor (the kernel's parent) and its two copies: the pty's master to the log, the FIFO to the master.
    const monitor = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    const children = readFileSync(`/proc/${monitor}/task/${monitor}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const copies = children.filter((c) => readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'cat');
    assert.equal(copies.length, 2, `two copies beside the kernel (children ${children.join(', ')})`);
    const ends = copies.map((c) => [readlinkSync(`/proc/${c}/fd/0`), readlinkSync(`/proc/${c}/fd/1`)]).sort();
    assert.deepEqual(ends.map(([input]) => input === join(dir, 'console.in') ? 'fifo' : /ptmx$/.test(input!) ? 'master' : input).sort(), ['fifo', 'master']);
    assert.ok(ends.some(([input, output]) => /ptmx$/.test(input!) && output === join(dir, 'console.log')), 'the master is copied to the log');
  });

  test('the terminal\'s size reaches the guest, and follows a resize', async (t) => {
    t.after(() => detachIfAttached('size'));
    term.open('size', consoleCommand(VM));
    await term.waitFor('size', /Connected to the console of default\/con-\w+ through the agent on e2e-node\. Detach with Ctrl-\]\./);
    assert.doesNotMatch(term.screen('size'), /stty rows/, 'no hint to set the size by hand: it is passed on');
    term.type('size', 'echo size-$(stty size | tr " " x)');
    await term.waitFor('size', /^size-40x120$/m);
    term.resize('size', 100, 30);
    term.type('size', 'echo resized-$(stty size | tr " " x)');
    await term.waitFor('size', /^resized-30x100$/m);
    term.keys('size', 'C-]');
    assert.equal(await term.waitForExit('size'), 0);
    term.resize('size', 120, 40);
  });

  test('through the agent\'s unix socket: a prompt, a command and its output, Ctrl-C, Ctrl-] detaches and the guest runs on', async (t) => {
    const pid = status(VM)!.pid!;
    // Failed half-way, the session would keep the console's writer lock from the next test.
    t.after(() => detachIfAttached('one'));
    term.open('one', consoleCommand(VM));
    await term.waitFor('one', /Connected to the console of default\/con-\w+ through the agent on e2e-node\. Detach with Ctrl-\]/);
    term.keys('one', 'Enter');
    await term.waitFor('one', /umlguest:~# $/m);
    term.type('one', 'echo console-$((6*7)); uname -r');
    // Both lines, in order: the second may reach the screen a moment after the first.
    await term.waitFor('one', /^console-42\n\d+\.\d+\.\d+/m);
    // Ctrl-C reaches the guest's foreground job: the console is the shell's controlling terminal.
    term.type('one', 'sleep 300');
    await term.waitFor('one', /# sleep 300\s*$/);
    term.keys('one', 'C-c');
    term.type('one', 'echo status-$?');
    await term.waitFor('one', /^status-130$/m);
    term.keys('one', 'C-]');
    assert.equal(await term.waitForExit('one'), 0);
    assert.match(term.screen('one'), /Detached \(default\/con-\w+ keeps running\)/);
    assert.equal(status(VM)!.pid, pid);
    assert.ok(alive(pid), 'the guest kernel still runs after the detach');
    const version = await umlmon('mconsole', '--state-dir', stateDir, `default/${VM}`, 'version');
    assert.equal(version.code, 0, version.out);
    // The transcript is in the log too.
    const log = readFileSync(join(stateDir, 'machines', status(VM)!.umid!, 'console.log'), 'utf8');
    assert.match(log, /console-42/);
  });

  test('one writer at a time: a second writer is refused with the holder, --read-only watches beside it', async (t) => {
    t.after(() => { for (const w of ['writer', 'watcher', 'again']) detachIfAttached(w); });
    term.open('writer', consoleCommand('--holder', 'alice@laptop', VM));
    await term.waitFor('writer', /Connected to the console/);
    const second = await umlmon('console', '--state-dir', stateDir, VM);
    assert.equal(second.code, 1);
    assert.match(second.out, /the console of default\/con-\w+ is in use by alice@laptop via the unix control socket \(pid \d+, since .*\); attach with --read-only/);
    term.open('watcher', consoleCommand('--read-only', VM));
    await term.waitFor('watcher', /Connected to the console of .* read-only/);
    term.type('watcher', 'echo typed-by-the-watcher');
    term.type('writer', 'echo from-$((40+2))-writer');
    await term.waitFor('watcher', /^from-42-writer$/m);
    assert.doesNotMatch(term.screen('writer'), /typed-by-the-watcher/, 'what a read-only session types never reaches the guest');
    term.keys('watcher', 'C-]');
    assert.equal(await term.waitForExit('watcher'), 0);
    term.keys('writer', 'C-]');
    assert.equal(await term.waitForExit('writer'), 0);
    // Free again: the lock went with the writer.
    term.open('again', consoleCommand(VM));
    await term.waitFor('again', /Connected to the console/);
    term.keys('again', 'C-]');
    assert.equal(await term.waitForExit('again'), 0);
  });

  test('a stopped machine and an unknown one are clear errors', async () => {
    await until('the stopped machine reported', () => status(DOWN)?.phase === 'Stopped');
    const down = await umlmon('console', '--state-dir', stateDir, DOWN);
    assert.equal(down.code, 1);
    assert.match(down.out, /default\/down-\w+ has no running kernel on e2e-node \(its state is Stopped, phase Stopped\); start it first/);
    const unknown = await umlmon('console', '--state-dir', stateDir, 'no-such-machine');
    assert.equal(unknown.code, 1);
    assert.match(unknown.out, /no machine default\/no-such-machine on e2e-node/);
  });

  test('the local verbs edit the machine file and the agent follows; ls and status read the agent', async () => {
    const dirFlags = ['--machines-dir', machinesDir, '--state-dir', stateDir];
    const ls = await umlmon('ls', ...dirFlags);
    assert.equal(ls.code, 0, ls.out);
    assert.match(ls.out, /^NAME\s+STATE\s+PHASE\s+KERNEL\s+PID\s+MEMORY\s+UPTIME\s+RESTARTS$/m);
    assert.match(ls.out, new RegExp(`^default/${VM}\\s+Running\\s+Running\\s+default\\s+${status(VM)!.pid}\\s+48Mi\\s+\\d+[smh]`, 'm'));
    assert.match(ls.out, new RegExp(`^default/${DOWN}\\s+Stopped\\s+Stopped\\s+default\\s+<none>`, 'm'));

    const paused = await umlmon('pause', ...dirFlags, VM);
    assert.equal(paused.code, 0, paused.out);
    assert.match(paused.out, /spec\.state Running -> Paused/);
    assert.match(readFileSync(join(machinesDir, `${VM}.yaml`), 'utf8'), /"state": "Paused"|state: Paused/);
    await until('Paused', () => status(VM)?.phase === 'Paused');
    const st = await umlmon('status', ...dirFlags, VM);
    assert.match(st.out, /^State:\s+Paused$/m);
    assert.match(st.out, /^Phase:\s+Paused$/m);
    assert.match(st.out, /^\s+Paused\s+True\s+Paused\s+/m);
    assert.match((await umlmon('resume', ...dirFlags, VM)).out, /Paused -> Running/);
    await until('Running again', () => status(VM)?.phase === 'Running');

    const before = status(VM)!;
    const restart = await umlmon('restart', ...dirFlags, VM);
    assert.match(restart.out, /restart requested \(umlmon\.io\/restart-requested-at: /);
    const after = await until('a new kernel', () => {
      const s = status(VM);
      if (s?.pid) guestPids.add(s.pid);
      return s?.phase === 'Running' && s.pid !== before.pid && s.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? s : undefined;
    });
    assert.ok(!alive(before.pid!), 'the old kernel is gone');
    assert.equal(after.restartCount, before.restartCount, 'a restart asked for is not a crash');
    assert.match(readFileSync(join(machinesDir, `${VM}.events.log`), 'utf8'), /Stopping shutting the guest down \(a restart was asked for/);

    const backup = await umlmon('backup', ...dirFlags, VM);
    assert.match(backup.out, /backup requested/);
    const done = await until('the backup', () => status(VM)?.lastBackup);
    assert.equal(done.result, 'Succeeded', JSON.stringify(done));
    const stop = await umlmon('stop', ...dirFlags, 'no-such');
    assert.equal(stop.code, 1);
    assert.match(stop.out, /no UmlMachine default\/no-such in /);
  });

  test('a guest that powers off ends the session with a word on the screen', async () => {
    const pid = status(VM)!.pid!;
    term.open('off', consoleCommand(VM));
    await term.waitFor('off', /Connected to the console/);
    term.type('off', 'poweroff -f');
    await term.waitFor('off', /\[umlmon: the guest's kernel exited\]/);
    assert.equal(await term.waitForExit('off'), 1);
    assert.match(term.screen('off'), /Session ended: the agent ended the session\./);
    // restartPolicy Always: the agent boots it again.
    await until('the guest back', () => {
      const s = status(VM);
      if (s?.pid) guestPids.add(s.pid);
      return s?.phase === 'Running' && s.pid !== pid && s.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
    });
  });

  test('through a tcp control socket: the token is required', async () => {
    await stopAgent();
    const port = 20000 + Math.floor(Math.random() * 20000);
    tcpControl = `tcp://127.0.0.1:${port}`;
    const out = openSync(agentLog, 'a');
    agent = spawn(process.execPath, [
      join(REPO_ROOT, 'src/cli/main.ts'), 'run', '-f', join(base, 'config.yaml'), '--source', 'directory', '--machines-dir', machinesDir,
      '--state-dir', stateDir, '--image-root', imageRoot, '--node-name', 'e2e-node', '--kernel', `default=${umlKernel()}`,
      '--listen', 'off', '--control', tcpControl,
    ], { stdio: ['ignore', out, out] });
    closeSync(out);
    await until('the tcp control socket', () => readFileSync(agentLog, 'utf8').includes(`"url":"${tcpControl}"`));
    const wrong = join(base, 'wrong-token');
    writeFileSync(wrong, 'not-the-right-token-at-all\n');
    const refused = await umlmon('console', '--state-dir', stateDir, '--control', tcpControl, '--control-token-file', wrong, VM);
    assert.equal(refused.code, 1);
    assert.match(refused.out, /unauthorized/);
    term.open('tcp', consoleCommand('--control', tcpControl, '--control-token-file', tokenFile, VM));
    await term.waitFor('tcp', /Connected to the console of default\/con-\w+ through the agent on e2e-node/);
    // The size goes over tcp too: a resize is a request of its own, with the token.
    term.type('tcp', 'echo over-tcp-$((2*21)) $(stty size | tr " " x)');
    await term.waitFor('tcp', /^over-tcp-42 40x120$/m);
    term.keys('tcp', 'C-]');
    assert.equal(await term.waitForExit('tcp'), 0);
  });

  test('with no agent: directly through the state directory', async () => {
    await stopAgent();
    const pid = status(VM)!.pid!;
    term.open('direct', consoleCommand(VM));
    await term.waitFor('direct', /Connected to the console of default\/con-\w+ directly \(no agent answers at unix:\/\//);
    term.type('direct', 'echo direct-$((3*14)) $(stty size | tr " " x)');
    await term.waitFor('direct', /^direct-42 40x120$/m);
    term.keys('direct', 'C-]');
    assert.equal(await term.waitForExit('direct'), 0);
    assert.ok(alive(pid), 'the guest still runs');
  });
});
