// Network interfaces, beside disks.ts: the host side of each one (its MAC from the pool, the
// uml_switch of a daemon transport, the tap device and the node LAN's bridge of a vecN
// interface) made before the kernel is told and undone when it is gone, and hot-plugging into
// a running, booted kernel with mconsole `config` and `remove`.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SharedAllocations } from './allocations.ts';
import { interfaceDeviceSpec } from './cmdline.ts';
import { RuntimeError, errorText } from './errors.ts';
import { driverFor, kernelNetDrivers } from './kernel-features.ts';
import { withLock } from './lock.ts';
import { operationError, type OperationContext } from './machine.ts';
import { MconsoleError, type MconsoleClient } from './mconsole/index.ts';
import { deleteLanBridgeIfEmpty, deleteTapDevice, ensureLanBridge, ensureTapDevice, generatedTapName, joinBridge, lanBridgeName, leaveBridge } from './netdev.ts';
import { ensureSwitch } from './switch.ts';
import type { AttachedInterface, InterfaceConfig, RuntimeLogger } from './types.ts';
import { interfaceProblems } from './validate.ts';

/** What the host side of interfaces needs from the runtime. */
export interface HostInterfaceContext {
  stateDir: string;
  sharedDir: string;
  allocations: SharedAllocations;
  umlSwitch: string;
  log: RuntimeLogger;
}

/** Whether the kernel has the network device: it shows up under /proc/sys/net. */
export function kernelHasInterface(client: MconsoleClient, name: string): Promise<boolean> {
  return client.proc(`sys/net/ipv4/conf/${name}/forwarding`).then(() => true, () => false);
}

function lanLock(ctx: HostInterfaceContext): string {
  return join(ctx.sharedDir, 'lans.lock');
}

/** MAC, switch and the kernel's device spec for one interface. */
export async function prepareInterface(ctx: HostInterfaceContext, machine: { id: string; name: string }, kernel: string, iface: InterfaceConfig, uid: number): Promise<{ attached: AttachedInterface; spec: string }> {
  const problems = interfaceProblems(iface);
  if (problems.length) throw new RuntimeError('invalid-config', machine, problems.join('; '));
  const driver = driverFor(iface.name, iface.transport);
  const drivers = kernelNetDrivers(kernel);
  if (driver && drivers?.[driver] === false) {
    const legacy = driver !== 'vector';
    if (legacy && !drivers.mcast && !drivers.daemon && !drivers.tuntap) {
      throw new RuntimeError('unsupported', machine,
        `interface ${iface.name}: the kernel ${kernel} has no legacy ethN driver (Linux 6.16 removed it); ` +
          'use a vecN interface: transport tap with tap: {switch: NAME} for a LAN shared by guests on this node, or tap: {ifname: NAME} for a host tap device');
    }
    throw new RuntimeError('unsupported', machine,
      `interface ${iface.name}: the kernel ${kernel} was built without the ${driver} network driver` +
        (driver === 'vector' ? ' (vecN); use an ethN interface' : ` (${iface.transport} transport)`));
  }
  let mac: string;
  try {
    mac = await ctx.allocations.allocateMac(machine.id, iface.name, iface.mac);
  } catch (error) {
    throw new RuntimeError('invalid-config', machine, `interface ${iface.name}: ${errorText(error)}`, { cause: error });
  }
  let switchSocket: string | undefined;
  if (iface.transport === 'daemon') {
    try {
      switchSocket = (await ensureSwitch(ctx.stateDir, iface.daemon!.switch, ctx.umlSwitch)).controlSocketInJail;
    } catch (error) {
      throw new RuntimeError('device-failed', machine, `interface ${iface.name}: ${errorText(error)}`, { cause: error });
    }
  }
  const attached: AttachedInterface = { name: iface.name, transport: iface.transport, mac };
  if (iface.transport === 'daemon') attached.switch = iface.daemon!.switch;
  const lan = iface.transport === 'tap' ? iface.tap!.switch : undefined;
  const tapName = iface.transport === 'tuntap' ? iface.tuntap!.ifname
    : iface.transport === 'tap' ? iface.tap!.ifname ?? generatedTapName(ctx.stateDir, machine.id, iface.name) : undefined;
  if (tapName) {
    try {
      attached.hostInterface = tapName;
      attached.hostInterfaceCreated = await ensureTapDevice(tapName, uid, uid);
      if (lan !== undefined) {
        const bridge = lanBridgeName(ctx.stateDir, lan);
        attached.switch = lan;
        attached.lanBridge = bridge;
        await withLock(lanLock(ctx), async () => {
          await ensureLanBridge(bridge);
          await joinBridge(tapName, bridge);
        });
      }
    } catch (error) {
      await releaseHostInterface(ctx, machine.id, attached);
      throw new RuntimeError('device-failed', machine, `interface ${iface.name}: ${errorText(error)}`, { cause: error });
    }
  }
  const spec = interfaceDeviceSpec(tapName && iface.transport === 'tap' ? { ...iface, tap: { ...iface.tap, ifname: tapName } } : iface, mac, switchSocket);
  return { attached, spec };
}

/** Deletes the tap device the runtime made, and the LAN's bridge once its last port is gone. */
export async function releaseHostInterface(ctx: HostInterfaceContext, id: string, attached: AttachedInterface): Promise<void> {
  if (attached.hostInterface && attached.hostInterfaceCreated) {
    try {
      await deleteTapDevice(attached.hostInterface);
    } catch (error) {
      ctx.log.warn({ machine: id, device: attached.hostInterface, err: errorText(error) }, 'could not delete a tap device');
    }
  }
  const bridge = attached.lanBridge;
  if (bridge && attached.hostInterface && !attached.hostInterfaceCreated) {
    // A tap device of the user's: it stays, but leaves the LAN.
    try {
      await leaveBridge(attached.hostInterface);
    } catch (error) {
      ctx.log.warn({ machine: id, device: attached.hostInterface, err: errorText(error) }, 'could not take a tap device off its LAN');
    }
  }
  if (bridge) {
    try {
      if (await withLock(lanLock(ctx), () => deleteLanBridgeIfEmpty(bridge))) {
        ctx.log.info({ machine: id, lan: attached.switch, bridge }, 'deleted the bridge of a LAN nobody is on any more');
      }
    } catch (error) {
      ctx.log.warn({ machine: id, bridge, err: errorText(error) }, 'could not delete a LAN bridge');
    }
  }
}

/**
 * Tells the booted kernel of an interface whose host side is ready; on failure the host side is
 * undone. Accepted is not the same as present: the device must show up under /proc/sys/net
 * (within a second), or the attachment says the kernel refused it.
 */
export async function plugInterface(ctx: OperationContext & { host: HostInterfaceContext }, iface: InterfaceConfig, prepared: { attached: AttachedInterface; spec: string }): Promise<AttachedInterface> {
  const { m, client } = ctx;
  const { attached, spec } = prepared;
  try {
    await client.request(`config ${spec}`);
  } catch (error) {
    await releaseHostInterface(ctx.host, m.record.id, attached);
    if (error instanceof MconsoleError && /Bad configuration option/i.test(error.reply)) {
      // The kernel has no driver for this device name.
      throw new RuntimeError('unsupported', m.record, `interface ${iface.name}: the running kernel has no driver for ${iface.name.replace(/\d+$/, 'N')} devices ("${error.reply}")`, { cause: error });
    }
    throw operationError(m, `attach interface ${iface.name}`, error);
  }
  const deadline = Date.now() + 1000;
  let present = await kernelHasInterface(client, iface.name);
  while (!present && Date.now() < deadline) {
    await sleep(50);
    present = await kernelHasInterface(client, iface.name);
  }
  if (!present) attached.refused = `the kernel accepted ${iface.name} but has no such network device`;
  return attached;
}

/** Takes the interface out of the booted kernel (one the guest still has up is refused), then undoes its host side. */
export async function unplugInterface(ctx: OperationContext & { host: HostInterfaceContext }, attached: AttachedInterface): Promise<void> {
  const { m, client } = ctx;
  const name = attached.name;
  try {
    await client.remove(name);
  } catch (error) {
    if (error instanceof MconsoleError && error.code === -16) {
      throw new RuntimeError('interface-in-use', m.record, `interface ${name} is up in the guest; bring it down in the guest first`, { cause: error });
    }
    if (!(error instanceof MconsoleError && error.code === -19)) throw operationError(m, `detach interface ${name}`, error);
  }
  await releaseHostInterface(ctx.host, m.record.id, attached);
}
