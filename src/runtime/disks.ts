// Hot-plugging ubd disks into a running, booted kernel. The image is bind-mounted into the
// kernel's own mount namespace (nsenter), then the kernel is told with mconsole `config`; detach
// checks the guest's /proc/partitions first and maps "Device is currently open" to "in use".
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { diskDeviceNode, diskDeviceSpec, diskFilesInJail } from './cmdline.ts';
import { diskFailureReason } from './device-check.ts';
import { RuntimeError, errorText } from './errors.ts';
import { bindMountScript, diskBindMounts, inMachineNamespace, prepareDiskImage, shellQuote } from './jail.ts';
import { operationError, type OperationContext } from './machine.ts';
import { MconsoleError, type MconsoleClient } from './mconsole/index.ts';
import type { AttachedDisk, DiskConfig } from './types.ts';

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The text of a file from an offset (the console since an operation began). */
function readFrom(path: string, offset: number): string {
  try {
    return readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

/** How long `remove` is retried while the kernel answers "Device is currently open". */
export const REMOVE_BUSY_RETRY_MS = 2500;

/** Device names in the guest's /proc/partitions (ubda, ubdb, ...). */
export function parsePartitions(text: string): string[] {
  return text.split('\n').map((line) => line.trim().split(/\s+/)[3]).filter((name): name is string => !!name && name !== 'name');
}

async function guestPartitions(client: MconsoleClient): Promise<string[]> {
  return parsePartitions(await client.proc('partitions'));
}

async function unbind({ m, log }: OperationContext, target: string): Promise<void> {
  try {
    await inMachineNamespace(m.record.pid, `umount ${shellQuote(target)}`);
  } catch (error) {
    log.warn({ machine: m.record.id, target, err: errorText(error) }, 'could not unmount a disk image in the jail');
  }
}

/** Attaches the disk; the caller records it. */
export async function attachDisk(ctx: OperationContext, disk: DiskConfig, imagePath: string): Promise<AttachedDisk> {
  const { m, client } = ctx;
  const who = { uid: m.record.uid, gid: m.record.gid };
  const [bind] = diskBindMounts(m.paths, [{ disk, imagePath }]);
  try {
    prepareDiskImage(disk, imagePath, who);
    if (!existsSync(bind!.target)) writeFileSync(bind!.target, '', { mode: 0o600 });
    await inMachineNamespace(m.record.pid, bindMountScript(bind!));
  } catch (error) {
    throw new RuntimeError('device-failed', m.record, `cannot attach disk ${disk.name} (${disk.image}): ${errorText(error)}`, { cause: error });
  }
  const consoleOffset = fileSize(m.paths.consoleLog);
  try {
    await client.request(`config ${diskDeviceSpec(disk)}`);
  } catch (error) {
    await unbind(ctx, bind!.target);
    throw operationError(m, `attach disk ${disk.name}`, error);
  }
  // The kernel adds the disk asynchronously: wait (bounded) until the guest lists it.
  const node = diskDeviceNode(disk.name);
  const deadline = Date.now() + 3000;
  let listed = (await guestPartitions(client)).includes(node);
  while (!listed && Date.now() < deadline) {
    await sleep(50);
    listed = (await guestPartitions(client)).includes(node);
  }
  const attached: AttachedDisk = { name: disk.name, image: disk.image, mode: disk.mode };
  if (!listed) {
    // Configured, but the kernel could not open it: recorded (the slot is taken until the next
    // start; removing it would panic the kernel) and reported as the kernel's refusal.
    attached.refused = diskFailureReason(readFrom(m.paths.consoleLog, consoleOffset), disk.name) ??
      `the kernel accepted ${disk.name} but the guest does not list it in /proc/partitions`;
    return attached;
  }
  try {
    attached.backing = (await client.config(disk.name)).trim();
  } catch {
    /* informational only */
  }
  return attached;
}

/** Detaches the disk; the caller updates its record. */
export async function detachDisk(ctx: OperationContext, attached: AttachedDisk): Promise<void> {
  const { m, client } = ctx;
  const name = attached.name;
  if (attached.refused !== undefined) {
    // The kernel never opened it: there is nothing to remove, and `remove` on such a device
    // panics the kernel. Its slot stays taken in the kernel until the next start.
    ctx.log.info({ machine: m.record.id, disk: name }, 'dropping a disk the kernel had refused; its device slot stays taken until the next start');
    await unbind(ctx, join(m.paths.jailDir, diskFilesInJail(attached).image));
    return;
  }
  const partitions = await guestPartitions(client).catch((error) => {
    throw operationError(m, `detach disk ${name} (reading /proc/partitions)`, error);
  });
  if (!partitions.includes(diskDeviceNode(name))) {
    // The kernel accepted the device but the guest never saw it: removing it could panic the
    // kernel (uml-facts.md, hot-plug timing). Leave it and say so.
    throw new RuntimeError('device-failed', m.record, `disk ${name} does not appear in the guest's /proc/partitions; not removing it (that can panic the kernel)`);
  }
  // -16 "Device is currently open": the guest holds the device open. Right after a hot-plug
  // that is the guest's own partition scan, for about a second on 7.x: retried for a while.
  // After that someone in the guest has it open (mounted, or a process reading it).
  const deadline = Date.now() + REMOVE_BUSY_RETRY_MS;
  for (;;) {
    try {
      await client.remove(name);
      break;
    } catch (error) {
      if (error instanceof MconsoleError && error.code === -16) {
        if (Date.now() < deadline) {
          await sleep(100);
          continue;
        }
        throw new RuntimeError('disk-in-use', m.record,
          `disk ${name} is open in the guest (mounted, or held open by a process: the kernel said "${error.reply}"); unmount or close it in the guest first`, { cause: error });
      }
      if (error instanceof MconsoleError && error.code === -19) break; // already gone
      throw operationError(m, `detach disk ${name}`, error);
    }
  }
  await unbind(ctx, join(m.paths.jailDir, diskFilesInJail(attached).image));
}
