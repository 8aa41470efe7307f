// A Kubernetes API emulator for tests: real kubectl and the agent's API client talk to it
// unchanged (plain HTTP on 127.0.0.1). See README.md next to this file.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ADMIN, ApiServer, type RequestRecord } from './server.ts';

export type { RequestRecord } from './server.ts';

export interface EmulatorOptions {
  /** 0 = random */
  port?: number;
  /** resourceVersions kept for watches before 410 Gone (default 10000) */
  watchHistory?: number;
  /** how often watches with allowWatchBookmarks get a BOOKMARK (default 1000 ms) */
  bookmarkIntervalMs?: number;
  /** directory for the kubeconfig files (default: a fresh temp dir, removed by close()) */
  kubeconfigDir?: string;
}

export interface Emulator {
  url: string;
  /** Bearer token of the admin user (for in-process requests, e.g. with fetch). */
  adminToken: string;
  /** Path of an admin kubeconfig (unrestricted) for kubectl (--kubeconfig) and the agent's API client. */
  kubeconfigPath: string;
  /** Every resource request seen (who did what, with which response code). */
  requests: RequestRecord[];
  /** An admin request from the test itself: JSON in and out (body undefined when empty). */
  request(method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
  /** The current global resourceVersion. */
  resourceVersion(): number;
  close(): Promise<void>;
}

function kubeconfig(url: string, user: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: emulator',
    '  cluster:',
    `    server: ${url}`,
    // Plain http: TLS verification is (nominally) off, which clients that insist on https accept.
    '    insecure-skip-tls-verify: true',
    'users:',
    `- name: ${JSON.stringify(user)}`,
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: emulator',
    '  context:',
    '    cluster: emulator',
    `    user: ${JSON.stringify(user)}`,
    '    namespace: default',
    'current-context: emulator',
    '',
  ].join('\n');
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const api = new ApiServer({ watchHistory: options.watchHistory ?? 10000, bookmarkIntervalMs: options.bookmarkIntervalMs ?? 1000 });
  const server: Server = createServer(api.handle);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  api.hostPort = `127.0.0.1:${port}`;
  const ownDir = options.kubeconfigDir === undefined;
  const dir = options.kubeconfigDir ?? mkdtempSync(join(tmpdir(), 'umlmon-emulator-'));
  const adminToken = randomBytes(16).toString('hex');
  api.tokens.set(adminToken, ADMIN);
  const kubeconfigPath = join(dir, `admin-${port}.kubeconfig`);
  writeFileSync(kubeconfigPath, kubeconfig(url, ADMIN.name, adminToken), { mode: 0o600 });

  return {
    url,
    adminToken,
    kubeconfigPath,
    requests: api.requests,
    resourceVersion: () => api.store.resourceVersion,
    async request(method: string, path: string, body?: unknown, contentType = 'application/json') {
      const res = await fetch(url + path, {
        method,
        headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': contentType, Accept: 'application/json' },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async close(): Promise<void> {
      api.dropWatches();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
