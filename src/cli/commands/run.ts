// `umlmon run [-f config] [flags] [-v]`: the node agent. Wires the edges around the core:
// config → logger, metrics, runtime, the machine source (directory or Kubernetes), the agent,
// the health/metrics endpoint and the control socket. SIGTERM or SIGINT stops watching,
// finishes in-flight work and exits within seconds, leaving every guest running (draining is
// `umlmon drain`); a second signal exits at once.
import { existsSync } from 'node:fs';
import { CONFIG_FLAGS_HELP, type AgentConfig } from '../../agent/config.ts';
import { startAgent, type Agent } from '../../agent/agent.ts';
import { startControlServer, type ControlHandlers, type ControlServer } from '../../agent/control.ts';
import { startHealthServer, type HealthServer } from '../../agent/http.ts';
import { createLogger, type Logger } from '../../agent/logger.ts';
import { keyFromLabels, machineIdOf } from '../../agent/machine-config.ts';
import { Registry } from '../../agent/metrics.ts';
import { GuestMetrics } from '../../agent/guest-metrics.ts';
import type { MachineSource } from '../../agent/source.ts';
import { createDirectorySource } from '../../agent/sources/directory.ts';
import { createRuntime } from '../../runtime/index.ts';
import { findMachine, openConsole, resizeConsole } from '../../runtime/console-session.ts';
import { MconsoleClient } from '../../runtime/mconsole/index.ts';
import type { MachineSnapshot, Runtime } from '../../runtime/types.ts';
import { keyOf, labelsOfKey } from '../../agent/object-key.ts';
import { loadProcessConfig } from '../process-config.ts';

const USAGE = `usage: umlmon run [-f config] [options]

Runs the node agent: watches UmlMachines (a directory of YAML files, or the
Kubernetes API), runs them as jailed UML kernels, and reports their status.
SIGTERM/SIGINT stop the agent and leave the guests running; 'umlmon drain'
shuts the guests down.

${CONFIG_FLAGS_HELP}`;

/** The runtime machine that belongs to an object key, if any (the runtime's label index). */
function runtimeMachineOf(runtime: Runtime, key: string): MachineSnapshot | undefined {
  return runtime.select(labelsOfKey(key))[0];
}

function controlHandlers(config: AgentConfig, source: MachineSource, runtime: Runtime, agent: Agent): ControlHandlers {
  return {
    list() {
      const known = new Set<string>();
      const rows: Record<string, unknown>[] = source.list().map((m) => {
        const key = keyOf(m);
        known.add(key);
        const rt = runtimeMachineOf(runtime, key);
        const alive = rt !== undefined && rt.state !== 'exited';
        return {
          machine: key, state: m.spec.state ?? 'Running', phase: m.status?.phase ?? 'Pending',
          umid: rt?.id ?? null, pid: alive ? rt.pid ?? null : null, runtimeState: rt?.state ?? null,
          // What `umlmon ls` shows beside them (the columns of kubectl get uml -o wide).
          kernel: m.spec.kernel ?? 'default', kernelVersion: alive ? rt.kernelVersion ?? null : null,
          memory: m.spec.memory ?? m.status?.memory ?? null, restarts: m.status?.restartCount ?? 0,
          startTime: alive ? rt.startTime?.toISOString() ?? null : null,
        };
      });
      for (const rt of runtime.list()) {
        const key = keyFromLabels(rt.config.labels) ?? rt.name;
        const alive = rt.state !== 'exited';
        if (!known.has(key)) {
          rows.push({
            machine: key, state: null, phase: 'NotInSource', umid: rt.id, pid: alive ? rt.pid ?? null : null, runtimeState: rt.state,
            kernel: null, kernelVersion: rt.kernelVersion ?? null, memory: null, restarts: null, startTime: alive ? rt.startTime?.toISOString() ?? null : null,
          });
        }
      }
      return rows;
    },
    status(key) {
      const object = source.get(key);
      let rt = runtimeMachineOf(runtime, key);
      if (!rt && object) {
        try { rt = runtime.get(machineIdOf(object)); } catch { /* no uid yet */ }
      }
      if (!object && !rt) throw new Error(`machine ${key} is not known to the agent on ${config.nodeName}`);
      return { machine: key, spec: object?.spec ?? null, status: object?.status ?? null, runtime: rt ?? null };
    },
    async drain(timeoutSeconds) {
      const before = runtime.list().filter((m) => m.state !== 'exited');
      await agent.drain(timeoutSeconds * 1000);
      return before.map((m) => {
        const now = runtime.get(m.id);
        const key = keyFromLabels(m.config.labels) ?? m.name;
        return { machine: key, outcome: !now || now.state === 'exited' ? 'stopped' : `still ${now.state}` };
      });
    },
    console(key, options, onData) {
      const rt = runtimeMachineOf(runtime, key);
      if (!rt) {
        if (source.get(key)) throw new Error(`${key} has no running kernel on ${config.nodeName} (its state is ${source.get(key)?.spec.state ?? 'Running'}, phase ${source.get(key)?.status?.phase ?? 'Pending'}); start it first`);
        throw new Error(`no machine ${key} on ${config.nodeName}`);
      }
      if (rt.state === 'exited') throw new Error(`${key} is not running (its kernel has exited); start it first`);
      // The lock's pid is the agent's: a session of an agent that died is free again.
      const { session } = openConsole(config.stateDir, rt.id, { ...options, onData }, existsSync);
      let ended: ((why: string) => void) | undefined;
      const off = runtime.onEvent((event) => {
        if (event.type === 'exited' && event.id === rt.id) ended?.('the guest\'s kernel exited');
      });
      return {
        info: { machine: key, node: config.nodeName, umid: rt.id, state: rt.state, readOnly: session.readOnly, sized: session.sized },
        write: (bytes) => session.write(bytes),
        close: () => { off(); session.close(); },
        onEnd: (callback) => { ended = callback; },
      };
    },
    async resize(key, rows, cols) {
      const rt = runtimeMachineOf(runtime, key);
      if (!rt || rt.state === 'exited') throw new Error(`${key} has no running kernel on ${config.nodeName}`);
      await resizeConsole(findMachine(config.stateDir, rt.id).record, key, rows, cols);
    },
    async mconsole(key, command) {
      const rt = runtimeMachineOf(runtime, key);
      if (!rt) throw new Error(`machine ${key} has no kernel on ${config.nodeName}`);
      if (!rt.mconsoleSocket) throw new Error(`machine ${key}: its mconsole is not up (state ${rt.state})`);
      const client = new MconsoleClient(rt.mconsoleSocket, { name: key });
      try {
        return await client.request(command);
      } finally {
        client.close();
      }
    },
  };
}

async function makeSource(config: AgentConfig, logger: Logger): Promise<MachineSource> {
  if (config.source === 'kubernetes') {
    // Loaded only here: the directory source (the embedded default) needs no API client.
    const { createKubernetesSource } = await import('../../agent/sources/kubernetes.ts');
    return createKubernetesSource({
      nodeName: config.nodeName, logger,
      ...(config.kubeconfig !== undefined ? { kubeconfigPath: config.kubeconfig } : {}),
    });
  }
  return createDirectorySource({ dir: config.machinesDir, nodeName: config.nodeName, logger });
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const loaded = loadProcessConfig(argv);
  if (!loaded.ok) {
    for (const e of loaded.errors) console.error(`umlmon run: ${e}`);
    return 2;
  }
  const config = loaded.config;
  const logger = createLogger(config.logLevel);
  logger.info({
    nodeName: config.nodeName, source: config.source, configFile: config.configFile ?? null,
    machinesDir: config.source === 'directory' ? config.machinesDir : undefined,
    stateDir: config.stateDir, imageRoot: config.imageRoot, kernels: config.kernels,
  }, 'umlmon agent starting');
  for (const warning of loaded.warnings) logger.warn({ configFile: config.configFile ?? null }, `config: ${warning}`);

  const metrics = new Registry();
  let agent: Agent | undefined;
  let http: HealthServer | undefined;
  let control: ControlServer | undefined;
  let runtime: Runtime | undefined;
  let guestMetrics: GuestMetrics | undefined;
  let shuttingDown: Promise<number> | undefined;
  let markStopped: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => { markStopped = resolve; });

  const shutdown = (why: string): Promise<number> => {
    shuttingDown ??= (async () => {
      logger.info({ signal: why }, 'stopping the agent; guests keep running (umlmon drain stops them)');
      const started = Date.now();
      await control?.close().catch(() => {});
      await agent?.stop().catch((err: unknown) => logger.error({ err: String(err) }, 'stopping the agent failed'));
      await http?.close().catch(() => {});
      guestMetrics?.close();
      await runtime?.close().catch((err: unknown) => logger.warn({ err: String(err) }, 'closing the runtime failed'));
      logger.info({ ms: Date.now() - started }, 'agent stopped');
      logger.flush();
      return 0;
    })();
    void shuttingDown.then(markStopped);
    return shuttingDown;
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(130);
    }
    void shutdown(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    // Health first: /healthz answers while the runtime adopts; /readyz says when it is done.
    if (config.listenAddress) {
      http = await startHealthServer({
        listen: config.listenAddress, ready: () => agent?.ready() ?? false, metrics, logger,
        beforeScrape: () => guestMetrics?.update() ?? Promise.resolve(),
      });
    }
    runtime = createRuntime({ stateDir: config.stateDir, imageRoot: config.imageRoot, logger, consoleLogMaxBytes: config.consoleLogMaxBytes });
    const source = await makeSource(config, logger);
    agent = await startAgent(config, { source, runtime, logger, metrics });
    guestMetrics = new GuestMetrics(metrics, { nodeName: config.nodeName, runtime, objects: () => source.list() });
    if (shuttingDown) return await shuttingDown;
    control = await startControlServer({
      address: config.controlAddress, handlers: controlHandlers(config, source, runtime, agent), logger,
      defaultDrainTimeoutSeconds: config.drainTimeoutSeconds,
      ...(config.controlToken !== undefined ? { token: config.controlToken } : {}),
    });
  } catch (err) {
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, 'the agent could not start');
    await shutdown('startup-failure');
    console.error(`umlmon run: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const code = await stopped;
  // Whatever still holds the event loop (a stuck socket) must not keep a stopped agent alive.
  setTimeout(() => {
    logger.debug({ resources: process.getActiveResourcesInfo() }, 'still holding the event loop after stop; exiting');
    logger.flush();
    process.exit(code);
  }, 3000).unref();
  return code;
}
