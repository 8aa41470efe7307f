// The legacy ethN network driver on real, jailed kernels: two guests on one node switch
// (uml_switch, daemon transport) and an mcast LAN, attached at start and hot-plugged, with
// stable pooled MACs. Linux 6.16 removed that driver, so this runs on the kernels of the host's
// matrix that have it (Debian's packaged kernel, where this host can run it). Where none can run
// here, the last test asserts why instead. umlmon's own kernel refusing ethN is in
// runtime-lan.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime, RuntimeError } from '../../src/runtime/index.ts';
import type { Runtime } from '../../src/runtime/index.ts';
import { kernelNetDrivers } from '../../src/runtime/kernel-features.ts';
import { MconsoleClient } from '../../src/runtime/mconsole/index.ts';
import { kernelMatrix, testImageRoot, type TestKernel } from '../support/uml.ts';
import { disposeRuntime, machineConfig as baseConfig, uniqueId, waitFor } from '../support/runtime.ts';

async function withClient<T>(rt: Runtime, id: string, fn: (c: MconsoleClient) => Promise<T>): Promise<T> {
  const client = new MconsoleClient(rt.get(id)!.mconsoleSocket!);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/**
 * The guest's interfaces from its /proc/net/dev. /proc/net is a link through /proc/self, which
 * mconsole's `proc` cannot always follow ("Read of file failed"); the per-interface sysctl
 * directory is the fallback witness.
 */
async function guestInterfaces(rt: Runtime, id: string, names: string[]): Promise<string[]> {
  return withClient(rt, id, async (client) => {
    try {
      const netDev = await client.proc('net/dev');
      return names.filter((n) => new RegExp(`\\b${n}:`).test(netDev));
    } catch {
      const present: string[] = [];
      for (const n of names) {
        if (await client.proc(`sys/net/ipv4/conf/${n}/forwarding`).then(() => true, () => false)) present.push(n);
      }
      return present;
    }
  });
}



const matrix = await kernelMatrix();
const legacyKernels = matrix.runnable.filter((k) => kernelNetDrivers(k.path)?.mcast === true);
for (const kernel of legacyKernels) describeLegacyNet(kernel);
if (legacyKernels.length === 0) {
  test("no kernel with the legacy ethN driver can run on this host: Debian's is reported as incompatible, with the reason", () => {
    const debian = matrix.incompatible.find((k) => k.name === 'debian');
    assert.ok(debian, `the matrix has no runnable legacy kernel, so Debian's must be the incompatible one: ${JSON.stringify(matrix)}`);
    assert.match(debian.message, /cannot run userspace on this node/);
    assert.match(debian.message, /Use a kernel that sizes its FP state from the host/);
    assert.equal(kernelNetDrivers(debian.path)?.mcast, true, 'it is the kernel that has the legacy driver');
  });
}

function describeLegacyNet(kernel: TestKernel): void {
const machineConfig = (id: string, overrides: Parameters<typeof baseConfig>[1] = {}) =>
  baseConfig(id, { kernel: kernel.path, defaultArgs: ['lpj=auto', ...kernel.args], ...overrides });

describe(`runtime network interfaces, legacy ethN driver (${kernel.name}: ${kernel.path})`, () => {
  let stateDir: string;
  let rt: Runtime;
  const a = uniqueId('na');
  const b = uniqueId('nb');
  const switchName = uniqueId('lan');
  const mcastPort = 20000 + Math.floor(Math.random() * 20000);

  before(async () => {
    stateDir = mkdtempSync('/tmp/umlrt-');
    rt = createRuntime({ stateDir, imageRoot: testImageRoot() });
    const bootedA = waitFor(rt, (e) => e.type === 'booted' && e.id === a);
    const bootedB = waitFor(rt, (e) => e.type === 'booted' && e.id === b);
    await rt.start(machineConfig(a, { interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: switchName } }] }));
    await rt.start(machineConfig(b));
    await Promise.all([bootedA, bootedB]);
  });

  after(() => disposeRuntime(rt, stateDir));

  test('an interface known at start is on the kernel command line with a pooled MAC', async () => {
    const status = rt.get(a)!;
    assert.equal(status.interfaces.length, 1);
    const eth0 = status.interfaces[0]!;
    assert.equal(eth0.name, 'eth0');
    assert.match(eth0.mac, /^fe:fd(:[0-9a-f]{2}){4}$/);
    assert.deepEqual(await guestInterfaces(rt, a, ['eth0']), ['eth0']);
    await assert.rejects(withClient(rt, a, (c) => c.config('eth0')), /No get_config routine defined/);
    const pool = JSON.parse(readFileSync(join(stateDir, 'shared', 'macpool.json'), 'utf8'));
    assert.equal(pool[`${a}/eth0`], eth0.mac);
    const sw = JSON.parse(readFileSync(join(stateDir, 'shared', 'switches', switchName, 'switch.json'), 'utf8'));
    process.kill(sw.pid, 0); // the node switch runs
  });

  test('hot-plugs a daemon interface onto the same switch, and an mcast one', async () => {
    const eth0 = await rt.attachInterface(b, { name: 'eth0', transport: 'daemon', daemon: { switch: switchName } });
    const eth1 = await rt.attachInterface(b, { name: 'eth1', transport: 'mcast', mcast: { group: '239.192.0.1', port: mcastPort, ttl: 0 } });
    assert.notEqual(eth0.mac, rt.get(a)!.interfaces[0]!.mac, 'MACs are unique on the node');
    assert.notEqual(eth0.mac, eth1.mac);
    assert.deepEqual(await guestInterfaces(rt, b, ['eth0', 'eth1']), ['eth0', 'eth1']);
    // The legacy driver has no get_config routine: the kernel says so, the runtime keeps the record.
    assert.deepEqual(rt.get(b)!.interfaces.map((i) => i.name), ['eth0', 'eth1']);
    await assert.rejects(rt.attachInterface(b, { name: 'eth1', transport: 'mcast', mcast: { group: '239.192.0.1', port: mcastPort } }), /already attached/);
  });

  test('detaches interfaces; the MAC of a (machine, interface) is stable across re-attach', async () => {
    const before = rt.get(b)!.interfaces.find((i) => i.name === 'eth1')!.mac;
    await rt.detachInterface(b, 'eth1');
    assert.deepEqual(await guestInterfaces(rt, b, ['eth0', 'eth1']), ['eth0']);
    const again = await rt.attachInterface(b, { name: 'eth1', transport: 'mcast', mcast: { group: '239.192.0.1', port: mcastPort } });
    assert.equal(again.mac, before);
    await rt.detachInterface(b, 'eth1');
    await rt.detachInterface(b, 'eth0');
    assert.deepEqual(await guestInterfaces(rt, b, ['eth0', 'eth1']), []);
  });

  test('tuntap (ethN) and tap (vecN): a tap device owned by the machine uid is made, seen by the guest, deleted on detach', async () => {
    const tun = `umt${Math.random().toString(36).slice(2, 8)}`;
    const tap = `umv${Math.random().toString(36).slice(2, 8)}`;
    try {
      const eth2 = await rt.attachInterface(b, { name: 'eth2', transport: 'tuntap', tuntap: { ifname: tun } });
      const vec0 = await rt.attachInterface(b, { name: 'vec0', transport: 'tap', tap: { ifname: tap } });
      assert.equal(eth2.hostInterface, tun);
      assert.equal(vec0.hostInterfaceCreated, true);
      const uid = JSON.parse(readFileSync(join(stateDir, 'machines', b, 'machine.json'), 'utf8')).uid;
      assert.equal(readFileSync(`/sys/class/net/${tun}/owner`, 'utf8').trim(), String(uid));
      assert.equal(readFileSync(`/sys/class/net/${tap}/owner`, 'utf8').trim(), String(uid));
      assert.deepEqual(await guestInterfaces(rt, b, ['eth2', 'vec0']), ['eth2', 'vec0']);
      await rt.detachInterface(b, 'eth2');
      await rt.detachInterface(b, 'vec0');
      assert.equal(existsSync(`/sys/class/net/${tun}`), false);
      assert.equal(existsSync(`/sys/class/net/${tap}`), false);
      assert.deepEqual(await guestInterfaces(rt, b, ['eth2', 'vec0']), []);
    } finally {
      for (const dev of [tun, tap]) if (existsSync(`/sys/class/net/${dev}`)) execFileSync('ip', ['link', 'del', dev]);
    }
  });

  test("the node's kernel has the network drivers the runtime offers (read from its embedded config)", () => {
    assert.deepEqual(kernelNetDrivers(kernel.path), { vector: true, mcast: true, daemon: true, tuntap: true });
  });

  test('refuses a transport this runtime cannot provide, with the reason', async () => {
    await assert.rejects(rt.attachInterface(b, { name: 'eth3', transport: 'slirp' }), (e: unknown) =>
      e instanceof RuntimeError && e.code === 'invalid-config' && /slirp/.test(e.message) && e.message.includes(b));
  });

  test('removing the last machine on a switch stops the switch', async () => {
    const sw = JSON.parse(readFileSync(join(stateDir, 'shared', 'switches', switchName, 'switch.json'), 'utf8'));
    await rt.stop(a, { gracePeriodMs: 10000 });
    await rt.remove(a);
    assert.equal(existsSync(join(stateDir, 'shared', 'switches', switchName)), false);
    assert.throws(() => process.kill(sw.pid, 0), /ESRCH/);
    const pool = JSON.parse(readFileSync(join(stateDir, 'shared', 'macpool.json'), 'utf8'));
    assert.equal(pool[`${a}/eth0`], undefined, 'MACs released');
  });
});
}
