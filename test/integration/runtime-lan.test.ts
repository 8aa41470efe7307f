// A node LAN on the vector driver (umlmon's kernel has no legacy ethN driver): two guests whose
// vec0 names the same `tap: {switch}` share one Ethernet segment, a host bridge with each
// guest's tap device as a port. Tested by traffic, not only attachment: each guest pings the
// other, and once one interface is removed the other guest's pings go unanswered. Commands run
// in the guests through the test image's command disk (hack/build-rootfs.sh, guest.cmd).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRuntime, RuntimeError } from '../../src/runtime/index.ts';
import type { Runtime } from '../../src/runtime/index.ts';
import { lanBridgeName } from '../../src/runtime/netdev.ts';
import { disposeRuntime, machineConfig, privateStateDir, runInGuest, uniqueId, waitFor } from '../support/runtime.ts';

// Link-local addresses on a bridge of our own: nothing outside these two guests is reachable.
const ADDR_A = '169.254.77.1';
const ADDR_B = '169.254.77.2';

describe('a node LAN on vector tap devices (tap: {switch})', () => {
  let stateDir: string;
  let imageRoot: string;
  let rt: Runtime;
  const a = uniqueId('la');
  const b = uniqueId('lb');
  const lan = uniqueId('lan');
  const inGuest = (id: string, script: string): Promise<string> => runInGuest(rt, imageRoot, id, script);

  const ping = (from: string, to: string) => inGuest(from, `ping -c 2 -W 2 ${to} >/dev/null 2>&1 && echo answered || echo unanswered`);

  before(async () => {
    ({ stateDir, imageRoot } = privateStateDir());
    rt = createRuntime({ stateDir, imageRoot });
    const iface = { name: 'vec0', transport: 'tap' as const, tap: { switch: lan } };
    const bootedA = waitFor(rt, (e) => e.type === 'guest-message' && e.id === a && e.message === 'umlmon-guest: booted');
    const bootedB = waitFor(rt, (e) => e.type === 'guest-message' && e.id === b && e.message === 'umlmon-guest: booted');
    await rt.start(machineConfig(a, { interfaces: [iface], cmdline: [`guest.ip=vec0,${ADDR_A}/24`, 'guest.cmd'] }));
    await rt.start(machineConfig(b, { interfaces: [iface], cmdline: [`guest.ip=vec0,${ADDR_B}/24`, 'guest.cmd'] }));
    await Promise.all([bootedA, bootedB]);
  });

  after(() => disposeRuntime(rt, stateDir));

  test('both guests are ports of one host bridge, through tap devices owned by their uids', () => {
    const bridge = lanBridgeName(stateDir, lan);
    assert.ok(existsSync(`/sys/class/net/${bridge}/bridge`), `bridge ${bridge} exists`);
    const ports = readdirSync(`/sys/class/net/${bridge}/brif`).sort();
    const taps = [a, b].map((id) => rt.get(id)!.interfaces[0]!.hostInterface!).sort();
    assert.deepEqual(ports, taps);
    for (const id of [a, b]) {
      const attached = rt.get(id)!.interfaces[0]!;
      assert.equal(attached.switch, lan);
      assert.equal(attached.lanBridge, bridge);
      assert.equal(attached.hostInterfaceCreated, true);
      const uid = JSON.parse(readFileSync(join(stateDir, 'machines', id, 'machine.json'), 'utf8')).uid;
      assert.equal(readFileSync(`/sys/class/net/${attached.hostInterface}/owner`, 'utf8').trim(), String(uid));
    }
    assert.notEqual(rt.get(a)!.interfaces[0]!.mac, rt.get(b)!.interfaces[0]!.mac, 'MACs from the node pool');
  });

  test('the guest sees its interface with the pooled MAC', async () => {
    assert.equal(await inGuest(a, 'cat /sys/class/net/vec0/address'), rt.get(a)!.interfaces[0]!.mac);
  });

  test('traffic flows both ways', async () => {
    assert.equal(await ping(a, ADDR_B), 'answered');
    assert.equal(await ping(b, ADDR_A), 'answered');
  });

  test('an interface the guest has up cannot be removed; the kernel says busy and nothing changes', async () => {
    await assert.rejects(rt.detachInterface(b, 'vec0'), (e: unknown) => e instanceof RuntimeError && e.code === 'interface-in-use' && e.message.includes(b));
    assert.equal(rt.get(b)!.interfaces.length, 1);
    assert.equal(await ping(a, ADDR_B), 'answered');
  });

  test('once removed, traffic stops; its tap device goes, the bridge stays for the other guest', async () => {
    const tap = rt.get(b)!.interfaces[0]!.hostInterface!;
    assert.equal(await inGuest(b, 'ip link set vec0 down && echo down'), 'down');
    await rt.detachInterface(b, 'vec0');
    assert.equal(existsSync(`/sys/class/net/${tap}`), false, 'tap device deleted');
    assert.equal(await ping(a, ADDR_B), 'unanswered');
    assert.ok(existsSync(`/sys/class/net/${lanBridgeName(stateDir, lan)}`), 'the LAN stays while a guest is on it');
  });

  test('hot-plugged back, the guest is on the LAN again', async () => {
    const again = await rt.attachInterface(b, { name: 'vec0', transport: 'tap', tap: { switch: lan } });
    assert.equal(again.switch, lan);
    assert.equal(await inGuest(b, `ip link set vec0 up && ip addr add ${ADDR_B}/24 dev vec0 && echo up`), 'up');
    assert.equal(await ping(b, ADDR_A), 'answered');
  });

  test('the legacy ethN driver is refused on a kernel without it, with the reason and what to use', async () => {
    await assert.rejects(rt.attachInterface(a, { name: 'eth1', transport: 'mcast', mcast: { group: '239.192.0.1', port: 30001 } }), (e: unknown) =>
      e instanceof RuntimeError && e.code === 'unsupported' && /no legacy ethN driver/.test(e.message) && /vecN/.test(e.message));
    const c = uniqueId('lc');
    await assert.rejects(rt.start(machineConfig(c, { interfaces: [{ name: 'eth0', transport: 'daemon', daemon: { switch: lan } }] })),
      (e: unknown) => e instanceof RuntimeError && e.code === 'unsupported' && /no legacy ethN driver/.test(e.message));
    assert.equal(rt.get(c), undefined, 'nothing was started');
  });

  test('the last machine off the LAN takes its bridge with it', async () => {
    const bridge = lanBridgeName(stateDir, lan);
    for (const id of [a, b]) {
      await rt.stop(id, { gracePeriodMs: 10_000 });
      await rt.remove(id);
    }
    assert.equal(existsSync(`/sys/class/net/${bridge}`), false, 'bridge deleted');
  });
});
