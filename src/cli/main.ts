#!/usr/bin/env node
// umlmon's command line: one file per subcommand under ./commands, loaded on demand so that a
// one-shot command (mconsole, version) does not pay for the agent's imports.
type Command = { main(argv: string[]): Promise<number> };

/** The machine verbs share one module (machines.ts). */
function verb(name: 'ls' | 'status' | 'start' | 'stop' | 'pause' | 'resume' | 'restart' | 'backup'): () => Promise<Command> {
  return async () => {
    const { runVerb } = await import('./commands/machines.ts');
    return { main: (argv) => runVerb(name, argv) };
  };
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ main(argv: string[]): Promise<number> }> }> = {
  run: { summary: 'run the node agent (directory or Kubernetes source)', load: () => import('./commands/run.ts') },
  check: { summary: 'validate the config and machine manifests, then exit (like vmd -n)', load: () => import('./commands/check.ts') },
  drain: { summary: "shut every guest on this node down gracefully, with a timeout", load: () => import('./commands/drain.ts') },
  console: { summary: 'attach the terminal to a guest\'s console (Ctrl-] detaches): umlmon console <machine>', load: () => import('./commands/console.ts') },
  mconsole: { summary: 'send one mconsole command: umlmon mconsole <socket|umid|name> <command...>', load: () => import('./commands/mconsole.ts') },
  ls: { summary: 'list the machines: NAME STATE PHASE KERNEL PID MEMORY UPTIME RESTARTS', load: verb('ls') },
  status: { summary: 'show one machine\'s status: umlmon status <machine>', load: verb('status') },
  start: { summary: 'set spec.state Running in the machine\'s file (directory mode)', load: verb('start') },
  stop: { summary: 'set spec.state Stopped in the machine\'s file (directory mode)', load: verb('stop') },
  pause: { summary: 'set spec.state Paused in the machine\'s file (directory mode)', load: verb('pause') },
  resume: { summary: 'set spec.state Running in the machine\'s file (directory mode)', load: verb('resume') },
  restart: { summary: 'ask for a graceful restart, once (annotation in the machine\'s file)', load: verb('restart') },
  backup: { summary: 'ask for one backup now (annotation in the machine\'s file)', load: verb('backup') },
  version: { summary: 'print the version of umlmon', load: () => import('./commands/version.ts') },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return ['usage: umlmon <command> [options]', '', 'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '', "Run 'umlmon <command> --help' for a command's options."].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') return main(['version']);
  const command = COMMANDS[name];
  if (!command) {
    console.error(`umlmon: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return (await command.load()).main(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    console.error(`umlmon: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
