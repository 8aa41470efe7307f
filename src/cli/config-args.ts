// A command line for the commands that load the agent's config (run, check, drain, console, the
// machine verbs): the config's own flags, as its table declares them (CONFIG_FLAG_OPTIONS in
// src/agent/config.ts), plus the command's extra flags and positionals. Parsing is here, in the
// CLI; what the flags mean is the config's.
import { util } from '../builtins.ts';
import { CONFIG_FLAG_OPTIONS, loadConfig, type AgentConfig, type ConfigFlags, type LoadConfigInput } from '../agent/config.ts';

export type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };

export interface CommandLineOptions {
  /** Extra flags the command accepts beyond the config's (e.g. drain's --timeout). */
  extraOptions?: Record<string, OptionSpec>;
  /** Whether positional arguments are allowed (check's manifest paths). */
  allowPositionals?: boolean;
}

export type ParsedCommandLine =
  | { ok: true; flags: ConfigFlags; extra: Record<string, unknown>; positionals: string[] }
  | { ok: false; errors: string[] };

/** Splits argv into the config's flags, the command's extra flags and positionals. Never throws. */
export function parseCommandLine(argv: string[], options: CommandLineOptions = {}): ParsedCommandLine {
  const extraOptions = options.extraOptions ?? {};
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = util.parseArgs({
      args: argv, options: { ...CONFIG_FLAG_OPTIONS, ...extraOptions }, allowPositionals: options.allowPositionals ?? false, strict: true,
    }) as typeof parsed;
  } catch (err) {
    return { ok: false, errors: [err instanceof Error ? err.message : String(err)] };
  }
  const flags: ConfigFlags = {};
  const extra: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    if (name in extraOptions) extra[name] = value;
    else flags[name] = value as ConfigFlags[string];
  }
  for (const name of Object.keys(extraOptions)) if (!(name in extra)) extra[name] = undefined;
  return { ok: true, flags, extra, positionals: parsed.positionals };
}

export type CommandConfig =
  | { ok: true; config: AgentConfig; positionals: string[]; extra: Record<string, unknown>; warnings: string[] }
  | { ok: false; errors: string[] };

/** A command line's config: parsed, then loaded (pure: the environment and files come in `input`). */
export function loadCommandConfig(argv: string[], input: Omit<LoadConfigInput, 'flags'>, options: CommandLineOptions = {}): CommandConfig {
  const line = parseCommandLine(argv, options);
  if (!line.ok) return line;
  const loaded = loadConfig({ ...input, flags: line.flags });
  if (!loaded.ok) return loaded;
  return { ...loaded, positionals: line.positionals, extra: line.extra };
}
