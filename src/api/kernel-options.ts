// Kernel command-line options a spec may not set. The agent builds the kernel's command line
// from spec.memory, spec.disks, spec.interfaces and its own paths; letting spec.cmdline repeat
// those would override them (the kernel takes the last value), and some options open host
// files or start host programs from inside the jail's view of the world.
// The CRD's CEL rule on spec.cmdline items uses the same pattern (a unit test keeps them equal).

export interface ReservedKernelOption {
  /** Matches the option's name, as a regular-expression source without anchors. */
  name: string;
  /** What a user writes instead, or why it is refused. */
  instead: string;
}

export const RESERVED_KERNEL_OPTIONS: readonly ReservedKernelOption[] = [
  { name: 'mem', instead: 'set spec.memory' },
  { name: 'umid', instead: 'the agent names the machine (from metadata.uid)' },
  { name: 'uml_dir', instead: "the agent keeps the machine's sockets in its state directory" },
  { name: 'mconsole', instead: "the agent owns the machine's management console" },
  { name: 'root', instead: 'the agent sets the root device from spec.disks (ubd0)' },
  { name: 'rootfstype', instead: 'the agent sets the root device from spec.disks (ubd0)' },
  { name: 'init', instead: "the guest's own init runs; change it inside the image" },
  { name: 'initrd', instead: 'initrd= reads a host file; put what you need in a disk image' },
  { name: 'hostfs', instead: "hostfs= exposes the host's files; use spec.disks" },
  { name: 'iomem', instead: 'iomem= maps a host file; use spec.disks' },
  { name: 'xterm', instead: 'xterm= starts a host program; consoles are the agent\'s' },
  { name: 'con[0-9]*', instead: "the agent owns the machine's consoles" },
  { name: 'ssl[0-9]*', instead: "the agent owns the machine's serial lines" },
  { name: 'ubd[0-9a-z]*', instead: 'list block devices in spec.disks' },
  { name: 'eth[0-9]+', instead: 'list network devices in spec.interfaces' },
  { name: 'vec[0-9]+', instead: 'list network devices in spec.interfaces' },
];

/** The pattern both the CRD's CEL rule and validateMachine use: an option name, then = or :. */
export const RESERVED_KERNEL_OPTION_PATTERN = `^(${RESERVED_KERNEL_OPTIONS.map((o) => o.name).join('|')})[=:]`;

const COMPILED = RESERVED_KERNEL_OPTIONS.map((option) => ({ option, re: new RegExp(`^(${option.name})[=:]`) }));

/** The reserved option a kernel argument sets, or undefined when the argument is the user's to give. */
export function reservedOption(argument: string): ReservedKernelOption | undefined {
  return COMPILED.find(({ re }) => re.test(argument))?.option;
}
