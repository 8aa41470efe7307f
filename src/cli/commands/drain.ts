// `umlmon drain [--timeout 120s] [--control URL] [-f config]`: shut every guest on this node
// down gracefully, as vmd does at host shutdown, and keep them down. It asks the running agent
// over its control socket (the agent stops all guests and does not restart them); when no agent
// answers, it drains the node itself through the runtime: adopt every kernel in the state
// directory, then stop each (ctrl-alt-del, its grace period capped by the timeout, halt, kill).
// Prints one line per machine; exits 0 when every guest is down, 1 otherwise, 2 on bad usage.
import { CONFIG_FLAGS_HELP, parseDuration, type AgentConfig } from '../../agent/config.ts';
import { controlRequest, ControlUnavailableError } from '../../agent/control.ts';
import { createLogger } from '../../agent/logger.ts';
import { gracePeriodMsFromLabels, keyFromLabels } from '../../agent/machine-config.ts';
import { createRuntime } from '../../runtime/index.ts';
import { loadProcessConfig } from '../process-config.ts';

const USAGE = `usage: umlmon drain [--timeout DURATION] [--control URL] [-f config]

Shuts every guest on this node down gracefully (ctrl-alt-del, then halt when a
guest's shutdownGracePeriodSeconds, capped by the timeout, runs out) and keeps
them down. Asks the running agent over its control socket; when no agent answers,
drains the node directly through the state directory.

  --timeout DURATION   overall limit, e.g. 120s or 2m (default: drainTimeoutSeconds, 120s)

${CONFIG_FLAGS_HELP}`;

export interface DrainOutcome {
  machine: string;
  outcome: string;
}

export function formatOutcomes(outcomes: DrainOutcome[]): string {
  if (outcomes.length === 0) return 'no guests on this node';
  const width = Math.max(...outcomes.map((o) => o.machine.length));
  return outcomes.map((o) => `${o.machine.padEnd(width)}  ${o.outcome}`).join('\n');
}

/** Without an agent: adopt what runs, stop everything in parallel within the timeout. */
export async function drainDirectly(config: AgentConfig, timeoutSeconds: number): Promise<DrainOutcome[]> {
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const runtime = createRuntime({ stateDir: config.stateDir, imageRoot: config.imageRoot, logger, consoleLogMaxBytes: config.consoleLogMaxBytes });
  const deadline = Date.now() + timeoutSeconds * 1000;
  try {
    const machines = await runtime.adoptAll();
    return await Promise.all(machines.map(async (m): Promise<DrainOutcome> => {
      const name = keyFromLabels(m.config.labels) ?? m.name ?? m.id;
      if (m.state === 'exited') return { machine: name, outcome: 'already stopped' };
      const started = Date.now();
      // Leave time for halt and kill after the grace period, inside the overall timeout.
      const gracePeriodMs = Math.max(0, Math.min(gracePeriodMsFromLabels(m.config.labels), deadline - Date.now() - 5000));
      try {
        await runtime.stop(m.id, { gracePeriodMs });
        return { machine: name, outcome: `stopped in ${((Date.now() - started) / 1000).toFixed(1)} s` };
      } catch (err) {
        return { machine: name, outcome: `FAILED: ${err instanceof Error ? err.message : String(err)}` };
      }
    }));
  } finally {
    await runtime.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const loaded = loadProcessConfig(argv, { extraOptions: { timeout: { type: 'string' } } });
  if (!loaded.ok) {
    for (const e of loaded.errors) console.error(`umlmon drain: ${e}`);
    return 2;
  }
  const config = loaded.config;
  const timeoutText = loaded.extra.timeout as string | undefined;
  const timeoutSeconds = timeoutText === undefined ? config.drainTimeoutSeconds : parseDuration(timeoutText);
  if (timeoutSeconds === undefined) {
    console.error(`umlmon drain: --timeout '${timeoutText}' is not a duration (e.g. 120s, 2m)`);
    return 2;
  }

  let outcomes: DrainOutcome[];
  try {
    const result = await controlRequest(config.controlAddress, { op: 'drain', timeoutSeconds }, {
      timeoutMs: (timeoutSeconds + 30) * 1000,
      ...(config.controlToken !== undefined ? { token: config.controlToken } : {}),
    });
    outcomes = Array.isArray(result) ? (result as DrainOutcome[]) : [];
    console.log(`drained by the running agent (${config.control}):`);
  } catch (err) {
    if (!(err instanceof ControlUnavailableError)) {
      console.error(`umlmon drain: ${err instanceof Error ? err.message : String(err)}`);
      return 1;
    }
    console.log(`no agent answers at ${config.control}; draining directly through ${config.stateDir}:`);
    outcomes = await drainDirectly(config, timeoutSeconds);
  }
  console.log(formatOutcomes(outcomes));
  return outcomes.some((o) => /^FAILED|still|running|unknown/i.test(o.outcome)) ? 1 : 0;
}
