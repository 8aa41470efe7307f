// The agent's HTTP endpoint on config.listen: /healthz (the process answers), /readyz (the
// agent is ready: its machine cache is synced and the runtime has adopted what runs on the
// node) and /metrics (Prometheus text format). Nothing else: no control operations over HTTP.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { http } from '../builtins.ts';
import type { Logger } from 'pino';
import type { ListenAddress } from './config.ts';
import { METRICS_CONTENT_TYPE, type Registry } from './metrics.ts';

export interface HealthServerOptions {
  listen: ListenAddress;
  ready: () => boolean;
  metrics: Registry;
  logger: Logger;
  /**
   * Runs before each /metrics render: figures read on scrape (the guests', guest-metrics.ts).
   * It bounds its own time; a failure is logged and the rest is served.
   */
  beforeScrape?: () => Promise<void>;
}

export interface HealthServer {
  /** The bound address (the port is the real one when listen asked for port 0). */
  address(): { host: string; port: number };
  close(): Promise<void>;
}

/** Process figures every scrape refreshes (the benchmark reads RSS and CPU from here). */
function processMetrics(metrics: Registry): () => void {
  const rss = metrics.gauge('process_resident_memory_bytes', 'Resident memory of the agent process in bytes.');
  const heap = metrics.gauge('nodejs_heap_used_bytes', 'V8 heap in use in bytes.');
  const cpu = metrics.gauge('process_cpu_seconds_total', 'User and system CPU time of the agent process in seconds.');
  const started = metrics.gauge('process_start_time_seconds', 'Start time of the agent process since the Unix epoch in seconds.');
  started.set(Math.round(Date.now() / 1000 - process.uptime()));
  return () => {
    const m = process.memoryUsage();
    rss.set(m.rss);
    heap.set(m.heapUsed);
    const c = process.cpuUsage();
    cpu.set((c.user + c.system) / 1e6);
  };
}

export function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const log = opts.logger.child({ component: 'http' });
  const refresh = processMetrics(opts.metrics);
  const server: Server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/healthz':
      case '/livez':
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        let ready = false;
        try { ready = opts.ready(); } catch { ready = false; }
        res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(ready ? 'ok\n' : 'not ready: machine cache or runtime adoption incomplete\n');
        return;
      }
      case '/metrics':
        void (async () => {
          refresh();
          try {
            await opts.beforeScrape?.();
          } catch (err) {
            log.warn({ err: err instanceof Error ? err.message : String(err) }, 'reading guest metrics failed; serving the rest');
          }
          const text = await opts.metrics.render();
          res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE }).end(req.method === 'HEAD' ? undefined : text);
        })().catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        });
        return;
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics\n');
    }
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${opts.listen.host}:${opts.listen.port} for health and metrics: ${err.message}`)));
    server.listen(opts.listen.port, opts.listen.host, () => {
      const a = server.address() as AddressInfo;
      log.info({ address: `${a.address}:${a.port}` }, 'serving /healthz, /readyz and /metrics');
      resolve({
        address: () => ({ host: a.address, port: a.port }),
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}
