// `umlmon check [-f config] [flags] [manifests or directories...]` (vmd's -n): validates the
// configuration and every UmlMachine manifest given (default: the config's machinesDir) the
// way the running agent would, prints each problem as "file: machine: field: message", probes
// every configured kernel (does it boot and run userspace on this host?), and exits 1 on any
// problem, 0 with "configuration OK" otherwise.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_FLAGS_HELP, type AgentConfig } from '../../agent/config.ts';
import { parseManifest, readManifestDirectory, type ParsedManifest } from '../../agent/sources/directory.ts';
import { validateMachine } from '../../api/validate.ts';
import { keyOf } from '../../agent/source.ts';
import { probeKernel, type ProbeResult } from '../../runtime/kernel-probe.ts';
import { loadProcessConfig } from '../process-config.ts';

/** One line per configured kernel; a default kernel that cannot run is a problem, others warn. */
export async function checkKernels(config: AgentConfig, probe: (path: string) => Promise<ProbeResult> = probeKernel): Promise<{ lines: string[]; problems: string[]; warnings: string[] }> {
  const out = { lines: [] as string[], problems: [] as string[], warnings: [] as string[] };
  for (const [name, kernel] of Object.entries(config.kernels)) {
    if (!existsSync(kernel.path)) {
      const message = `kernels.${name}: ${kernel.path} does not exist on this node`;
      (name === 'default' ? out.problems : out.warnings).push(message);
      out.lines.push(`kernel ${name}: ${kernel.path}: missing`);
      continue;
    }
    const result = await probe(kernel.path);
    const version = result.version || 'version unknown';
    if (result.outcome === 'runs') {
      out.lines.push(`kernel ${name}: ${kernel.path}: ${version}: runs here (booted to userspace in ${result.bootMs} ms)`);
      continue;
    }
    out.lines.push(`kernel ${name}: ${kernel.path}: ${version}: ${result.outcome === 'incompatible' ? 'cannot run here' : 'probe failed'}`);
    const message = `kernels.${name}: ${result.message}`;
    (name === 'default' ? out.problems : out.warnings).push(message);
  }
  return out;
}

const USAGE = `usage: umlmon check [-f config] [options] [manifest.yaml | directory ...]

Validates the agent's configuration and UmlMachine manifests, then exits: 0 and
"configuration OK" when everything is valid, 1 with one line per problem otherwise,
2 on bad usage. Without manifest arguments, the config's machinesDir is checked
(directory source only).

  --skip-image-check    do not require disk images to exist under imageRoot
  --skip-kernel-probe   do not boot the configured kernels to see whether they run here

Each configured kernel is booted once on a tiny initramfs of umlmon's own (no image
needed) and printed with its version and whether it runs userspace on this host. A
default kernel that cannot is a problem; another kernel that cannot is a warning
(specs naming it get Ready=False, reason KernelIncompatible).

${CONFIG_FLAGS_HELP}`;

export interface CheckReport {
  problems: string[];
  warnings: string[];
  machines: number;
  files: number;
}

/** Checks manifests against a loaded config; pure apart from reading the files. */
export async function checkManifests(config: AgentConfig, paths: string[], options: { imageCheck: boolean }): Promise<CheckReport> {
  const report: CheckReport = { problems: [], warnings: [], machines: 0, files: 0 };
  const parsedFiles: { file: string; parsed: ParsedManifest }[] = [];
  // Without arguments: the directory the agent would read; a Kubernetes agent reads none.
  const targets = paths.length > 0 ? paths : config.source === 'directory' ? [config.machinesDir] : [];
  for (const target of targets) {
    if (!existsSync(target)) {
      if (paths.length === 0) report.warnings.push(`${target}: machines directory does not exist (no machines)`);
      else report.problems.push(`${target}: no such file or directory`);
      continue;
    }
    if (statSync(target).isDirectory()) {
      parsedFiles.push(...(await readManifestDirectory(target)));
    } else {
      parsedFiles.push({ file: target, parsed: parseManifest(readFileSync(target, 'utf8'), target) });
    }
  }
  const limits = {
    kernels: Object.keys(config.kernels),
    memoryMinBytes: config.memory.minBytes,
    memoryMaxBytes: config.memory.maxBytes,
    ...(options.imageCheck ? { imageExists: (image: string) => existsSync(join(config.imageRoot, image)) } : {}),
  };
  const seen = new Map<string, string>();
  for (const { file, parsed } of parsedFiles) {
    report.files++;
    report.problems.push(...parsed.problems);
    for (const { machine } of parsed.machines) {
      report.machines++;
      const key = keyOf(machine);
      const other = seen.get(key);
      if (other !== undefined) report.problems.push(`${file}: machine ${key}: also defined in ${other}`);
      seen.set(key, file);
      const result = validateMachine(machine, limits);
      if (!result.ok) {
        for (const e of result.errors) report.problems.push(`${file}: machine ${key}: ${e.field}: ${e.message}`);
      }
      if (config.source === 'directory' && machine.spec?.nodeName !== undefined && machine.spec.nodeName !== config.nodeName) {
        report.warnings.push(`${file}: machine ${key}: spec.nodeName is '${machine.spec.nodeName}', not this node ('${config.nodeName}'); the directory source runs it here anyway`);
      }
    }
  }
  return report;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const loaded = loadProcessConfig(argv, {
    extraOptions: { 'skip-image-check': { type: 'boolean' }, 'skip-kernel-probe': { type: 'boolean' } }, allowPositionals: true,
  });
  if (!loaded.ok) {
    for (const e of loaded.errors) console.log(`config: ${e}`);
    return 1;
  }
  const report = await checkManifests(loaded.config, loaded.positionals, { imageCheck: loaded.extra['skip-image-check'] !== true });
  if (loaded.extra['skip-kernel-probe'] !== true) {
    const kernels = await checkKernels(loaded.config);
    for (const line of kernels.lines) console.log(line);
    report.problems.push(...kernels.problems);
    report.warnings.push(...kernels.warnings);
  }
  for (const w of report.warnings) console.log(`warning: ${w}`);
  for (const p of report.problems) console.log(p);
  if (report.problems.length > 0) {
    console.log(`${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found`);
    return 1;
  }
  const source = loaded.config.configFile ?? 'built-in defaults';
  console.log(`configuration OK (${source}; ${report.machines} machine${report.machines === 1 ? '' : 's'} in ${report.files} file${report.files === 1 ? '' : 's'})`);
  return 0;
}
