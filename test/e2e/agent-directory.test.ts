// The agent in directory mode (the embedded default) on real, jailed UML kernels: `umlmon run`
// as a child process watching a directory of UmlMachine YAML files, status read back from
// `<name>.status.yaml`, Events from `<name>.events.log`, guests inspected with
// `umlmon mconsole`. One scenario, in order, because each step builds on the machine the
// previous one left (and booting kernels is the expensive part on a shared 2-core node).
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import type { UmlMachineStatus } from '../../src/api/types.ts';
import { REPO_ROOT, TEST_IMAGE, testImageRoot, umlKernel } from '../support/uml.ts';
import { kernelVersion } from '../../src/runtime/kernel-probe.ts';
import { KERNEL_BOOTED, PlainUml } from '../support/plain-uml.ts';
import { alive } from '../support/process.ts';
import { removeMachineCgroups } from '../support/runtime.ts';
import { eventually } from '../support/eventually.ts';
import { umlMachine } from '../support/fixtures.ts';

const execFileAsync = promisify(execFile);
const CLI = join(REPO_ROOT, 'src/cli/main.ts');

const base = mkdtempSync(join(tmpdir(), 'umlmon-e2e-dir-'));
const machinesDir = join(base, 'machines');
const stateDir = join(base, 'state');
const imageRoot = join(base, 'images');
const agentLog = join(base, 'agent.log');
const guestPids = new Set<number>();
// Unique machine names: the umid (and so the node-wide cgroup name) derives from namespace/name
// in directory mode, and other test runs may be booting a 'web' of their own right now.
const suffix = Math.random().toString(36).slice(2, 8);
const WEB = `web-${suffix}`;
const BAD = `bad-${suffix}`;
const RW = `rw-${suffix}`;
let agent: ChildProcess | undefined;

function startAgentProcess(): ChildProcess {
  const out = openSync(agentLog, 'a');
  const child = spawn(
    process.execPath,
    [
      CLI, 'run',
      '--source', 'directory', '--machines-dir', machinesDir,
      '--state-dir', stateDir, '--image-root', imageRoot, '--backup-dir', join(base, 'backups'),
      '--node-name', 'e2e-node', '--kernel', `default=${umlKernel()}`,
      '--listen', 'off', '--control', 'none',
      '--workers', '2', '--log-level', 'debug',
    ],
    { stdio: ['ignore', out, out] },
  );
  closeSync(out);
  child.on('exit', (code, signal) => appendFileSync(agentLog, `--- agent process exited: code ${code}, signal ${signal} ---\n`));
  return child;
}

async function stopAgentProcess(signal: NodeJS.Signals): Promise<void> {
  const child = agent;
  agent = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

function manifest(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify(umlMachine({ name, spec: { nodeName: 'e2e-node', memory: '48Mi', restartPolicy: 'Always', shutdownGracePeriodSeconds: 10, disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }], ...spec } }), null, 2); // JSON is YAML
}

function writeMachine(name: string, spec: Record<string, unknown> = {}): void {
  // Write then rename, as editors do, so the source never reads half a file.
  const tmp = join(machinesDir, `.${name}.tmp`);
  writeFileSync(tmp, manifest(name, spec));
  renameSync(tmp, join(machinesDir, `${name}.yaml`));
}

function status(name: string): UmlMachineStatus | undefined {
  try {
    return (parse(readFileSync(join(machinesDir, `${name}.status.yaml`), 'utf8')) as { status?: UmlMachineStatus }).status;
  } catch {
    return undefined;
  }
}

function events(name: string): { type: string; reason: string; message: string }[] {
  try {
    return readFileSync(join(machinesDir, `${name}.events.log`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [, type = '', reason = '', ...rest] = line.split(' ');
        return { type, reason, message: rest.join(' ') };
      });
  } catch {
    return [];
  }
}

const condition = (s: UmlMachineStatus | undefined, type: string) => s?.conditions?.find((c) => c.type === type);

function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  return eventually(what, probe, {
    timeoutMs, intervalMs: 100, retryErrors: false,
    context: () => `--- agent log tail ---\n${existsSync(agentLog) ? readFileSync(agentLog, 'utf8').split('\n').slice(-25).join('\n') : ''}`,
  });
}

async function mconsole(target: string, ...command: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'mconsole', '--state-dir', stateDir, target, ...command], { timeout: 20_000 });
    return { ok: true, text: stdout };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { ok: false, text: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** Records every guest pid the status shows, so that the after hook can clean up for sure. */
function running(name: string): UmlMachineStatus | undefined {
  const s = status(name);
  if (s?.pid) guestPids.add(s.pid);
  return s?.phase === 'Running' && condition(s, 'Ready')?.status === 'True' ? s : undefined;
}

before(() => {
  umlKernel();
  const shared = testImageRoot();
  mkdirSync(machinesDir, { recursive: true });
  mkdirSync(imageRoot, { recursive: true });
  copyFileSync(join(shared, TEST_IMAGE), join(imageRoot, TEST_IMAGE));
  const data = join(imageRoot, 'data.img');
  writeFileSync(data, '');
  truncateSync(data, 4 * 1024 * 1024);
  // Files no agent can use, there before it starts: none of them may keep the others from running.
  const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) bomb.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(', ')}]`);
  writeFileSync(join(machinesDir, 'bomb.yaml'), `${bomb.join('\n')}\nkind: *a8\n`);
  execFileSync('mkfifo', [join(machinesDir, 'pipe.yaml')]);
  agent = startAgentProcess();
});

after(async () => {
  await stopAgentProcess('SIGKILL');
  // Leave no guest behind, whatever happened above: stop each kernel's process group.
  for (const pid of guestPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  // And every kernel the runtime recorded in this test's state directory.
  try {
    for (const umid of readdirSync(join(stateDir, 'machines'))) {
      try {
        const record = JSON.parse(readFileSync(join(stateDir, 'machines', umid, 'machine.json'), 'utf8')) as { pid?: number };
        if (record.pid) {
          guestPids.add(record.pid);
          process.kill(-record.pid, 'SIGKILL');
        }
      } catch {
        /* no record, or gone */
      }
    }
  } catch {
    /* no state directory */
  }
  const deadline = Date.now() + 10_000;
  while ([...guestPids].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await removeMachineCgroups(stateDir);
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n').reverse()) {
    const mountPoint = line.split(' ')[1];
    if (mountPoint?.startsWith(base)) await execFileAsync('umount', ['-l', mountPoint]).catch(() => {});
  }
  if (process.env.UMLMON_E2E_KEEP_LOG) copyFileSync(agentLog, process.env.UMLMON_E2E_KEEP_LOG);
  rmSync(base, { recursive: true, force: true });
});

describe('agent, directory mode, real UML kernels', { timeout: 15 * 60_000 }, () => {
  let webPid = 0;

  test('a machine file becomes a running, Ready guest with its kernel version in status', async () => {
    writeMachine(WEB);
    const s = await until('web Running and Ready', () => running(WEB));
    const release = await kernelVersion(umlKernel());
    assert.ok(release !== '' && (s.kernelVersion ?? '').includes(` ${release} `), `${s.kernelVersion} is the uname of ${release}`);
    assert.equal(s.nodeName, 'e2e-node');
    assert.equal(s.observedGeneration, 1);
    assert.ok(s.pid && alive(s.pid));
    assert.equal(condition(s, 'SpecValid')?.status, 'True');
    webPid = s.pid;
    const log = readFileSync(agentLog, 'utf8');
    assert.match(log, /bomb\.yaml: cannot be read as YAML/, 'the alias bomb is that file\'s problem');
    assert.match(log, /pipe\.yaml: is a FIFO, not a regular file/, 'the FIFO is never opened for a blocking read');
    assert.doesNotMatch(log, /rescan failed/);
    const reasons = events(WEB).map((e) => e.reason);
    assert.ok(reasons.includes('Starting') && reasons.includes('Booted'), reasons.join(','));
    const version = await mconsole(`default/${WEB}`, 'version');
    assert.ok(version.ok, version.text);
    // Uptime follows from bootTime; nothing in status moves while the guest just runs, so the
    // status file is not written again (an idle guest costs no write).
    assert.ok(s.bootTime && Date.parse(s.bootTime) <= Date.now(), `bootTime ${s.bootTime}`);
    assert.equal((s as Record<string, unknown>).guest, undefined, 'no guest uptime or load in status');
    const written = readFileSync(join(machinesDir, `${WEB}.status.yaml`), 'utf8');
    const mtime = statSync(join(machinesDir, `${WEB}.status.yaml`)).mtimeMs;
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(statSync(join(machinesDir, `${WEB}.status.yaml`)).mtimeMs, mtime, 'the status file of an idle guest is not rewritten');
    assert.equal(readFileSync(join(machinesDir, `${WEB}.status.yaml`), 'utf8'), written);
  });

  test('state Paused pauses the guest; Running resumes it', async () => {
    writeMachine(WEB, { state: 'Paused' });
    const paused = await until('web Paused', () => status(WEB)?.phase === 'Paused' && status(WEB));
    assert.equal(condition(paused, 'Paused')?.status, 'True');
    assert.equal(paused.pid, webPid);
    const again = await mconsole(`default/${WEB}`, 'stop');
    assert.match(again.text, /Already stopped/, 'the kernel itself says it is stopped');
    writeMachine(WEB, { state: 'Running' });
    const resumed = await until('web Running again', () => running(WEB));
    assert.equal(resumed.pid, webPid);
    assert.equal(condition(resumed, 'Paused')?.status, 'False');
    assert.ok(events(WEB).some((e) => e.reason === 'Resumed'));
  });

  test('a disk added to the spec is attached in the guest; removed, it is detached', async () => {
    const disks = [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }, { name: 'ubd1', image: 'data.img', mode: 'readOnly' }];
    writeMachine(WEB, { disks });
    await until('ubd1 attached in status', () => status(WEB)?.disks?.find((d) => d.name === 'ubd1')?.attached === true);
    const withDisk = await until('ubdb in the guest', async () => {
      const r = await mconsole(`default/${WEB}`, 'proc', 'partitions');
      return r.ok && /ubdb/.test(r.text) && r.text;
    });
    assert.match(withDisk, /ubda/);
    assert.equal(condition(status(WEB), 'DevicesSynced')?.status, 'True');
    assert.ok(events(WEB).some((e) => e.reason === 'DiskAttached'));

    writeMachine(WEB, { disks: [disks[0]] });
    await until('ubd1 gone from status', () => status(WEB)?.disks?.every((d) => d.name !== 'ubd1'));
    const without = await mconsole(`default/${WEB}`, 'proc', 'partitions');
    assert.ok(without.ok, without.text);
    assert.doesNotMatch(without.text, /ubdb/);
    assert.ok(events(WEB).some((e) => e.reason === 'DiskDetached'));
    assert.equal(status(WEB)?.pid, webPid, 'hot-plug never restarted the guest');
  });

  test('an interface added to the spec appears in the guest; removed, it goes away', async () => {
    // A vector interface on a node LAN (umlmon's kernel has no legacy ethN driver).
    writeMachine(WEB, { interfaces: [{ name: 'vec0', transport: 'tap', tap: { switch: `lan-${suffix}` } }] });
    await until('vec0 attached in status', () => status(WEB)?.interfaces?.find((i) => i.name === 'vec0')?.attached === true);
    const mac = status(WEB)?.interfaces?.[0]?.mac ?? '';
    assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, 'a MAC from the node pool');
    // mconsole cannot read /proc/net (it is /proc/self/net); the per-device sysctl directory
    // exists exactly while the kernel has the device.
    const eth0Sysctl = 'sys/net/ipv4/conf/vec0/forwarding';
    await until('vec0 in the guest', async () => (await mconsole(`default/${WEB}`, 'proc', eth0Sysctl)).ok);
    assert.ok(events(WEB).some((e) => e.reason === 'InterfaceAttached'));
    writeMachine(WEB, {});
    await until('vec0 gone from status', () => (status(WEB)?.interfaces ?? []).length === 0);
    const after = await mconsole(`default/${WEB}`, 'proc', eth0Sysctl);
    assert.equal(after.ok, false, `vec0 is still in the guest: ${after.text}`);
    assert.ok((await mconsole(`default/${WEB}`, 'proc', 'sys/net/core/somaxconn')).ok, 'while mconsole proc itself works');
    assert.ok(events(WEB).some((e) => e.reason === 'InterfaceDetached'));
    assert.equal(status(WEB)?.pid, webPid);
  });

  test('a readWrite image is one machine\'s: a second machine naming it waits with the reason, and gets it when the first lets go', async () => {
    const root = { name: 'ubd0', image: TEST_IMAGE, mode: 'cow' };
    const shared = { name: 'ubd1', image: 'data.img', mode: 'readWrite' };
    writeMachine(WEB, { disks: [root, shared] });
    await until('web has data.img', () => status(WEB)?.disks?.find((d) => d.name === 'ubd1')?.attached === true);
    writeMachine(RW, { disks: [root, shared] });
    const waiting = await until('rw waits for the disk', () => condition(status(RW), 'DevicesSynced')?.reason === 'DiskInUse' && status(RW));
    assert.equal(condition(waiting, 'DevicesSynced')?.status, 'False');
    assert.match(condition(waiting, 'DevicesSynced')?.message ?? '', new RegExp(`image data\\.img is in use: .*machine default/${WEB} has it \\(readWrite, as ubd1\\)`));
    assert.equal(condition(waiting, 'Ready')?.reason, 'DiskInUse');
    assert.equal(waiting.pid, undefined, 'not started meanwhile');
    await until('a DiskInUse Event', () => events(RW).some((e) => e.reason === 'DiskInUse' && e.type === 'Warning'));
    // The first machine lets go: the second starts with it, without a restart loop in between.
    writeMachine(WEB, { disks: [root] });
    const got = await until('rw Running with data.img', () => {
      const r = running(RW);
      return r?.disks?.find((d) => d.name === 'ubd1')?.attached === true && r;
    });
    assert.equal(condition(got, 'DevicesSynced')?.status, 'True');
    assert.equal(events(RW).filter((e) => e.reason === 'Starting').length, 1, 'started once, when the disk was free');
    assert.equal(running(WEB)?.pid, webPid, 'the first machine kept running');
    rmSync(join(machinesDir, `${RW}.yaml`));
    await until('rw gone', () => status(RW) === undefined && !existsSync(join(stateDir, 'machines', got.umid!)));
  });

  test('a disk the kernel could not open is reported as not attached, in the kernel\'s words', async () => {
    // Another process on the node holds the image open read-write (here: a UML kernel of no
    // agent's), so the guest's kernel cannot lock it when it boots.
    writeFileSync(join(imageRoot, 'locked.img'), '');
    truncateSync(join(imageRoot, 'locked.img'), 4 * 1024 * 1024);
    const holder = new PlainUml({ kernelArgs: [`ubd1=${join(imageRoot, 'locked.img')}`] });
    try {
      await holder.waitForConsole(KERNEL_BOOTED, 60_000);
      writeMachine(RW, { disks: [{ name: 'ubd0', image: TEST_IMAGE, mode: 'cow' }, { name: 'ubd1', image: 'locked.img', mode: 'readWrite' }] });
      const s = await until('rw Running, ubd1 refused', () => {
        const r = running(RW);
        return condition(r, 'DevicesSynced')?.reason === 'DeviceRefused' && r;
      });
      const disk = s.disks?.find((d) => d.name === 'ubd1');
      assert.equal(disk?.attached, false, 'the kernel does not have it, whatever it was told');
      assert.match(disk?.message ?? '', /locked by another process/);
      assert.match(condition(s, 'DevicesSynced')?.message ?? '', /the kernel does not have ubd1 \(.*Failed to initialize ubd device 1/);
      const partitions = await mconsole(`default/${RW}`, 'proc', 'partitions');
      assert.doesNotMatch(partitions.text, /ubdb/, 'the guest indeed has no such disk');
    } finally {
      await holder.destroy();
    }
    rmSync(join(machinesDir, `${RW}.yaml`));
    await until('rw gone', () => status(RW) === undefined);
  });

  test('scheduled backups land in backupDir/<ns>/<name>/<disk>/<timestamp>, newest 2 kept', async () => {
    writeMachine(WEB, { backup: { schedule: '* * * * * *', retain: 2 } }); // every second
    await until('three backups', () => events(WEB).filter((e) => e.reason === 'BackupSucceeded').length >= 3 && status(WEB)?.lastBackup?.result === 'Succeeded');
    writeMachine(WEB, {});
    const diskDir = join(base, 'backups', 'default', WEB, 'ubd0');
    await until('retention applied', () => readdirSync(diskDir).length <= 2);
    const stamps = readdirSync(diskDir);
    assert.ok(stamps.length >= 1 && stamps.every((t) => /^\d{8}T\d{6}Z$/.test(t)), stamps.join(','));
    assert.ok(readdirSync(join(diskDir, stamps[0]!)).length >= 1, 'the copy is there');
    assert.equal(status(WEB)?.lastBackup?.location, join(base, 'backups', 'default', WEB));
    assert.ok(!events(WEB).some((e) => e.reason === 'BackupFailed'), events(WEB).filter((e) => e.reason === 'BackupFailed').map((e) => e.message).join('; '));
    assert.equal(running(WEB)?.pid, webPid, 'the guest was resumed after each backup');
  });

  test('an invalid spec is reported (SpecValid=False, InvalidSpec) while the other machine keeps running', async () => {
    writeMachine(BAD, { memory: '1Mi', kernel: 'no-such-kernel' });
    const s = await until('bad SpecValid=False', () => condition(status(BAD), 'SpecValid')?.status === 'False' && status(BAD));
    assert.match(condition(s, 'SpecValid')?.message ?? '', /memory/);
    assert.match(condition(s, 'SpecValid')?.message ?? '', /kernel/);
    assert.equal(s.pid, undefined, 'nothing was started for it');
    await until('InvalidSpec event', () => events(BAD).some((e) => e.reason === 'InvalidSpec' && e.type === 'Warning'));
    assert.equal(running(WEB)?.pid, webPid);

    // The running guest's own spec turning invalid touches nothing either.
    writeMachine(WEB, { memory: '1Mi' });
    const invalid = await until('web SpecValid=False', () => condition(status(WEB), 'SpecValid')?.status === 'False' && status(WEB));
    assert.equal(invalid.phase, 'Running');
    assert.equal(invalid.pid, webPid);
    assert.ok(alive(webPid));
    writeMachine(WEB, {});
    await until('web SpecValid=True again', () => condition(status(WEB), 'SpecValid')?.status === 'True');
    assert.equal(running(WEB)?.pid, webPid);
  });

  test('the agent killed with SIGKILL and started again adopts the same guest', async () => {
    await stopAgentProcess('SIGKILL');
    assert.ok(alive(webPid), 'the guest outlives the agent');
    agent = startAgentProcess();
    await until('Adopted event', () => events(WEB).some((e) => e.reason === 'Adopted'));
    const s = await until('web Running after the restart', () => running(WEB));
    assert.equal(s.pid, webPid, 'same kernel process');
    assert.equal(s.restartCount, 0);
    assert.equal(events(WEB).filter((e) => e.reason === 'Starting').length, 1, 'not started a second time');
  });

  test('a guest panic is reported (GuestPanic) and the guest restarted per restartPolicy Always', async () => {
    await mconsole(`default/${WEB}`, 'sysrq', 'c');
    await until('GuestPanic event', () => events(WEB).some((e) => e.reason === 'GuestPanic' && e.type === 'Warning'));
    const s = await until('web restarted', () => {
      const r = running(WEB);
      return r && r.pid !== webPid && r;
    });
    assert.equal(s.restartCount, 1);
    assert.ok(!alive(webPid), 'the panicked kernel is gone');
    webPid = s.pid!;
  });

  test('state Stopped shuts the kernel down', async () => {
    writeMachine(WEB, { state: 'Stopped' });
    const s = await until('web Stopped', () => status(WEB)?.phase === 'Stopped' && status(WEB));
    assert.equal(s.pid, undefined);
    assert.equal(condition(s, 'Ready')?.status, 'False');
    await until('kernel process gone', () => !alive(webPid));
    assert.ok(events(WEB).some((e) => e.reason === 'Stopped'));
  });

  test('removing the file removes the machine: no jail, no process', async () => {
    writeMachine(WEB, { state: 'Running' });
    const s = await until('web Running before removal', () => running(WEB));
    const umid = s.umid!;
    assert.ok(existsSync(join(stateDir, 'machines', umid)));
    rmSync(join(machinesDir, `${WEB}.yaml`));
    await until('machine state removed', () => !existsSync(join(stateDir, 'machines', umid)));
    await until('kernel gone', () => !alive(s.pid!));
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(join(stateDir, 'machines', umid)));
    assert.deepEqual(mounts, []);
    rmSync(join(machinesDir, `${BAD}.yaml`));
  });

  test('a machine whose file was removed while the agent was down is shut down after its restart', async () => {
    const late = `late-${suffix}`;
    writeMachine(late);
    const s = await until('late Running', () => running(late));
    await stopAgentProcess('SIGKILL');
    rmSync(join(machinesDir, `${late}.yaml`));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(alive(s.pid!), 'nothing acts while the agent is down');
    agent = startAgentProcess();
    await until('late removed after the restart', () => !existsSync(join(stateDir, 'machines', s.umid!)));
    await until('its kernel gone', () => !alive(s.pid!));
  });

  test('SIGTERM stops the agent within seconds', async () => {
    const started = Date.now();
    await stopAgentProcess('SIGTERM');
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.deepEqual(readdirSync(join(stateDir, 'machines')), []);
  });
});
