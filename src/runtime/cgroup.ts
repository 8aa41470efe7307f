// One cgroup per machine, with a memory limit (and a pids limit) where the node has cgroups.
// v1: /sys/fs/cgroup/<every hierarchy>/<parent>/<id>; v2: /sys/fs/cgroup/<parent>/<id>.
// A limit below what UML uses gets it SIGKILLed with no panic (uml-facts.md): size generously.
//
// On v1 the kernel joins every mounted hierarchy, not only the limiting ones: a guest left in
// the agent container's devices or freezer cgroup is one the container runtime enumerates and
// kills when the agent's pod stops (runc lists a hostPID container's processes by cgroup), and
// guests must outlive the agent.
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmdirSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP2_SUPER_MAGIC = 0x63677270;

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
}

export interface MachineCgroup {
  version: 1 | 2;
  /** Directories whose cgroup.procs the kernel's process joins before exec. */
  dirs: string[];
}

let knownVersion: { version: 1 | 2 | undefined } | undefined;

/** The node's cgroup version, found once per process (the mounts do not change under a node agent). */
export function cgroupVersion(): 1 | 2 | undefined {
  knownVersion ??= { version: findCgroupVersion() };
  return knownVersion.version;
}

function findCgroupVersion(): 1 | 2 | undefined {
  try {
    if (statfsSync(CGROUP_ROOT).type === CGROUP2_SUPER_MAGIC) return 2;
  } catch {
    return undefined;
  }
  return existsSync(join(CGROUP_ROOT, 'memory', 'cgroup.procs')) ? 1 : undefined;
}

let knownHierarchies: string[] | undefined;

/**
 * The roots of the mounted v1 hierarchies (cpu and cpuacct may be one, linked twice), found
 * once per process: a dozen stats and realpaths cost a few ms under load, and every start and
 * stop asked (a drain of 100 guests spent a tenth of the agent's time here).
 */
export function v1Hierarchies(): string[] {
  knownHierarchies ??= findV1Hierarchies();
  return knownHierarchies;
}

function findV1Hierarchies(): string[] {
  const roots = new Set<string>();
  for (const name of readdirSync(CGROUP_ROOT)) {
    const dir = join(CGROUP_ROOT, name);
    if (!existsSync(join(dir, 'cgroup.procs'))) continue;
    roots.add(realpathSync(dir));
  }
  return [...roots].sort();
}

/**
 * A machine's cgroup directories. Spelled with `/`, not path.join: the roots are real paths and
 * parent and id are single names, and a stop asks for them a few times a second until the
 * cgroup is gone (path.join's normalising was a tenth of a drain's agent CPU).
 */
export function cgroupDirs(version: 1 | 2, parent: string, id: string): string[] {
  if (version === 2) return [`${CGROUP_ROOT}/${parent}/${id}`];
  return v1Hierarchies().map((root) => `${root}/${parent}/${id}`);
}

/** A new v1 cpuset cgroup has no CPUs or memory nodes, and nothing can join it until it has. */
function inheritCpuset(dir: string): void {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    const own = join(dir, file);
    if (!existsSync(own) || readFileSync(own, 'utf8').trim() !== '') continue;
    const fromParent = readFileSync(join(dir, '..', file), 'utf8').trim();
    step(`set ${file}`, dir, () => writeFileSync(own, fromParent));
  }
}

function step(what: string, path: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    throw new Error(`cgroup: ${what} (${path}) failed: ${(error as Error).message}`);
  }
}

/** Creates (or reuses) the machine's cgroup and sets its limits. Undefined when the node has none. */
export function createMachineCgroup(parent: string, id: string, limits: CgroupLimits): MachineCgroup | undefined {
  const version = cgroupVersion();
  if (!version) return undefined;
  const dirs = cgroupDirs(version, parent, id);
  if (version === 2) {
    const parentDir = join(CGROUP_ROOT, parent);
    step('create', parentDir, () => mkdirSync(parentDir, { recursive: true }));
    step('enable controllers', parentDir, () => {
      writeFileSync(join(CGROUP_ROOT, 'cgroup.subtree_control'), '+memory +pids');
      writeFileSync(join(parentDir, 'cgroup.subtree_control'), '+memory +pids');
    });
    const dir = dirs[0]!;
    step('create', dir, () => mkdirSync(dir, { recursive: true }));
    step('set memory.max', dir, () => writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes)));
    step('set pids.max', dir, () => writeFileSync(join(dir, 'pids.max'), String(limits.pids)));
    return { version, dirs };
  }
  for (const dir of dirs) {
    step('create', dir, () => mkdirSync(dir, { recursive: true }));
    if (existsSync(join(dir, 'cpuset.cpus'))) {
      inheritCpuset(join(dir, '..'));
      inheritCpuset(dir);
    }
    if (existsSync(join(dir, 'memory.limit_in_bytes'))) {
      step('set memory.limit_in_bytes', dir, () => writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limits.memoryBytes)));
    }
    if (existsSync(join(dir, 'pids.max'))) {
      step('set pids.max', dir, () => writeFileSync(join(dir, 'pids.max'), String(limits.pids)));
    }
  }
  return { version, dirs };
}

/** Removes the machine's cgroup once it is empty; leaves it (and says so) if something still runs. */
export function removeMachineCgroup(parent: string, id: string): string[] {
  const version = cgroupVersion();
  if (!version) return [];
  const left: string[] = [];
  for (const dir of cgroupDirs(version, parent, id)) {
    if (!existsSync(dir)) continue;
    try {
      rmdirSync(dir);
    } catch {
      left.push(dir);
    }
  }
  return left;
}

/**
 * SIGKILLs every process left in a machine's cgroup, once its kernel's main process is gone:
 * UML's helpers, among them the console's SIGWINCH watcher, which makes a session of its own
 * (so a kill of the kernel's process group misses it) and after a panic waits forever with the
 * console's pty open; the monitor and its copies of the pty end with them. Returns how many
 * were signalled.
 */
export function killMachineCgroup(parent: string, id: string): number {
  const version = cgroupVersion();
  if (!version) return 0;
  const pids = new Set<number>();
  for (const dir of cgroupDirs(version, parent, id)) {
    let text = '';
    try {
      text = readFileSync(`${dir}/cgroup.procs`, 'utf8');
    } catch {
      continue; // not there (removed, or never made in this hierarchy)
    }
    for (const line of text.split('\n')) if (/^\d+$/.test(line) && Number(line) > 1) pids.add(Number(line));
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
  return pids.size;
}

/**
 * Removes a machine's cgroup as soon as its last task has exited (a task leaves its cgroup when
 * it exits, before its parent reaps it), trying every 20 ms for at most timeoutMs, while
 * `stillOurs` says the machine has not been started again meanwhile. True when it is gone.
 */
export async function removeCgroupWhenEmpty(parent: string, id: string, timeoutMs: number, stillOurs: () => boolean = () => true): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!stillOurs()) return false;
    if (removeMachineCgroup(parent, id).length === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Removes the parent cgroup in every hierarchy where it is empty (no machine cgroups left).
 * Called when a runtime closes, after which it starts nothing, so it cannot race a start.
 */
export function removeEmptyCgroupParent(parent: string): void {
  const version = cgroupVersion();
  if (!version) return;
  const dirs = version === 2 ? [join(CGROUP_ROOT, parent)] : v1Hierarchies().map((root) => join(root, parent));
  for (const dir of dirs) {
    try {
      rmdirSync(dir);
    } catch {
      // Not empty (guests still run: they outlive the agent) or already gone.
    }
  }
}

export function cgroupProcesses(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
