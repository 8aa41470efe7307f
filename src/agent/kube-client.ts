// The few Kubernetes API calls the agent makes, over node:https with one keep-alive agent:
// list, get, update, merge-patch and create of a resource, and watch. @kubernetes/client-node
// did this before, but loading it cost 83 MiB of the agent's RSS (bench/agent.ts; KubeConfig
// alone pulls in every generated API group), for calls that are plain JSON over HTTPS.
//
// Credentials come from a kubeconfig file (its current context: server, certificate authority,
// a bearer token or token file, a client certificate and key, or basic auth; exec and
// auth-provider plugins are refused with a clear error) or from in-cluster service-account
// files, whose bound token is re-read as the kubelet rotates it.
import { readFileSync } from 'node:fs';
import type { Agent as HttpAgent, IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { http } from '../builtins.ts';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';

/** An API server's answer other than 2xx: `code` is the HTTP status, `body` its text (a metav1.Status). */
export class ApiError extends Error {
  readonly code: number;
  readonly body: string;
  constructor(code: number, body: string, what: string) {
    let message = body;
    try {
      const status = JSON.parse(body) as { message?: unknown };
      if (typeof status.message === 'string') message = status.message;
    } catch {
      /* not JSON */
    }
    super(`${what}: HTTP ${code}${message ? `: ${message}` : ''}`);
    this.name = 'ApiError';
    this.code = code;
    this.body = body;
  }
}

/** A resource the agent names: `group` '' is the core group (/api/v1). */
export interface Resource {
  group: string;
  version: string;
  resource: string;
  subresource?: string;
}

export type Verb = 'get' | 'list' | 'create' | 'update' | 'patch';

export interface CallOptions {
  namespace?: string;
  name?: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** The object (create, update) or the JSON merge patch (patch). */
  body?: unknown;
}

export interface KubeAccess {
  server: string;
  ca?: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  token?: string;
  /** Read again at most once a minute (bound service-account tokens rotate). */
  tokenFile?: string;
  username?: string;
  password?: string;
}

/** How long a request (not a watch) may go without a byte of its answer. */
export const REQUEST_TIMEOUT_MS = 30_000;

const METHODS: Record<Verb, string> = { get: 'GET', list: 'GET', create: 'POST', update: 'PUT', patch: 'PATCH' };
const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

function pathOf(r: Resource, namespace?: string, name?: string): string {
  const prefix = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  return `${prefix}${namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${r.resource}${name !== undefined ? `/${encodeURIComponent(name)}` : ''}${r.subresource ? `/${r.subresource}` : ''}`;
}

function queryOf(query: CallOptions['query']): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export class KubeClient {
  readonly server: URL;
  readonly #access: KubeAccess;
  readonly #agent: HttpAgent;
  #token: { value: string; readAt: number } | undefined;

  readonly #requestTimeoutMs: number;

  constructor(access: KubeAccess, options: { requestTimeoutMs?: number } = {}) {
    this.#access = access;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.server = new URL(access.server);
    const tls = {
      keepAlive: true,
      ...(access.ca !== undefined ? { ca: access.ca } : {}),
      ...(access.cert !== undefined ? { cert: access.cert } : {}),
      ...(access.key !== undefined ? { key: access.key } : {}),
      ...(access.tlsServerName !== undefined ? { servername: access.tlsServerName } : {}),
      rejectUnauthorized: access.insecureSkipTlsVerify !== true,
    };
    this.#agent = this.server.protocol === 'http:' ? new http.Agent({ keepAlive: true }) : new HttpsAgent(tls);
  }

  #authorization(): string | undefined {
    const a = this.#access;
    if (a.tokenFile !== undefined) {
      if (this.#token === undefined || Date.now() - this.#token.readAt > 60_000) {
        this.#token = { value: readFileSync(a.tokenFile, 'utf8').trim(), readAt: Date.now() };
      }
      return `Bearer ${this.#token.value}`;
    }
    if (a.token !== undefined) return `Bearer ${a.token}`;
    if (a.username !== undefined) return `Basic ${Buffer.from(`${a.username}:${a.password ?? ''}`).toString('base64')}`;
    return undefined;
  }

  #send(method: string, path: string, body: string | undefined, contentType: string | undefined, onResponse: (res: IncomingMessage) => void, onError: (err: Error) => void) {
    const auth = this.#authorization();
    const req = (this.server.protocol === 'http:' ? http.request : httpsRequest)({
      protocol: this.server.protocol, hostname: this.server.hostname, port: this.server.port, method,
      path: `${this.server.pathname.replace(/\/$/, '')}${path}`, agent: this.#agent,
      headers: {
        accept: 'application/json',
        ...(auth !== undefined ? { authorization: auth } : {}),
        ...(body !== undefined ? { 'content-type': contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
      },
    }, onResponse);
    req.on('error', onError);
    req.end(body);
    return req;
  }

  /**
   * One request; resolves with the parsed answer, rejects with ApiError for a non-2xx one. A
   * request that has had no answer (nor a byte of one) for REQUEST_TIMEOUT_MS (or the
   * constructor's requestTimeoutMs) fails: an API
   * server behind a network partition sends no reset, and a hung write must not hold its
   * machine's worker for the kernel's TCP retransmission time (about 15 minutes).
   */
  call<T = unknown>(verb: Verb, r: Resource, opts: CallOptions = {}): Promise<T> {
    const path = `${pathOf(r, opts.namespace, opts.name)}${queryOf(opts.query)}`;
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const what = `${verb} ${r.resource}${r.subresource ? `/${r.subresource}` : ''}${opts.name ? ` ${opts.namespace ? `${opts.namespace}/` : ''}${opts.name}` : ''}`;
    return new Promise<T>((ok, fail) => {
      const req = this.#send(METHODS[verb], path, body, verb === 'patch' ? 'application/merge-patch+json' : undefined, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const code = res.statusCode ?? 0;
          if (code < 200 || code > 299) return fail(new ApiError(code, text, what));
          try {
            ok((text ? JSON.parse(text) : undefined) as T);
          } catch (error) {
            fail(new Error(`${what}: the answer is not JSON: ${(error as Error).message}`));
          }
        });
      }, fail);
      req.setTimeout(this.#requestTimeoutMs, () => {
        const error = new Error(`${what}: no answer for ${this.#requestTimeoutMs / 1000} s`);
        error.name = 'TimeoutError';
        req.destroy(error);
      });
    });
  }

  /**
   * A watch: onEvent for each event (type, object), then done once: with no error when the
   * server ended it (its timeoutSeconds), an ApiError when it refused it, an error named
   * TimeoutError when nothing came for timeoutSeconds + 60 s, or whatever broke the
   * connection. Resolves with what aborts it (done is then called with no error).
   */
  async watch(r: Resource, query: CallOptions['query'], onEvent: (type: string, object: unknown) => void, done: (err?: unknown) => void): Promise<AbortController> {
    const controller = new AbortController();
    const path = `${pathOf(r)}${queryOf({ ...query, watch: true })}`;
    let finished = false;
    const finish = (err?: unknown): void => {
      if (finished) return;
      finished = true;
      done(controller.signal.aborted ? undefined : err);
    };
    const req = this.#send('GET', path, undefined, undefined, (res) => {
      const code = res.statusCode ?? 0;
      if (code !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish(new ApiError(code, Buffer.concat(chunks).toString('utf8'), `watch ${r.resource}`)));
        res.on('error', finish);
        return;
      }
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line || finished) continue;
          let event: { type: string; object: unknown };
          try {
            event = JSON.parse(line) as typeof event;
          } catch (error) {
            req.destroy();
            return finish(new Error(`watch ${r.resource}: an event is not JSON: ${(error as Error).message}`));
          }
          onEvent(event.type, event.object);
        }
      });
      res.on('end', () => finish());
      res.on('error', finish);
      res.on('aborted', () => finish(new Error(`watch ${r.resource}: the connection was cut`)));
    }, finish);
    const timeoutSeconds = Number(query?.timeoutSeconds ?? 300);
    req.setTimeout((timeoutSeconds + 60) * 1000, () => {
      const error = new Error(`watch ${r.resource}: nothing for ${timeoutSeconds + 60} s`);
      error.name = 'TimeoutError';
      req.destroy(error);
      finish(error);
    });
    controller.signal.addEventListener('abort', () => {
      req.destroy();
      finish();
    }, { once: true });
    return controller;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: { name: string; cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean; 'tls-server-name'?: string } }[];
  users?: { name: string; user: Record<string, unknown> }[];
}

/** The access a kubeconfig file's current context gives. Throws with what is wrong. */
export function accessFromKubeconfig(path: string, text = readFileSync(path, 'utf8')): KubeAccess {
  const doc = (parse(text) ?? {}) as KubeconfigFile;
  const base = dirname(path);
  const file = (p: string): Buffer => readFileSync(resolve(base, p));
  const contextName = doc['current-context'] ?? doc.contexts?.[0]?.name;
  const context = doc.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`kubeconfig ${path}: no context ${contextName ?? '(none set)'}`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster?.server) throw new Error(`kubeconfig ${path}: context ${contextName} names cluster ${context.cluster}, which has no server`);
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    throw new Error(`kubeconfig ${path}: user ${context.user} authenticates through an exec or auth-provider plugin, which umlmon does not run; give it a token, a token file or a client certificate`);
  }
  const str = (k: string): string | undefined => (typeof user[k] === 'string' ? user[k] : undefined);
  const access: KubeAccess = { server: cluster.server };
  if (cluster['certificate-authority-data']) access.ca = Buffer.from(cluster['certificate-authority-data'], 'base64');
  else if (cluster['certificate-authority']) access.ca = file(cluster['certificate-authority']);
  if (cluster['insecure-skip-tls-verify'] === true) access.insecureSkipTlsVerify = true;
  if (cluster['tls-server-name']) access.tlsServerName = cluster['tls-server-name'];
  const certData = str('client-certificate-data');
  const keyData = str('client-key-data');
  if (certData) access.cert = Buffer.from(certData, 'base64');
  else if (str('client-certificate')) access.cert = file(str('client-certificate')!);
  if (keyData) access.key = Buffer.from(keyData, 'base64');
  else if (str('client-key')) access.key = file(str('client-key')!);
  if (str('token')) access.token = str('token')!;
  else if (str('tokenFile')) access.tokenFile = resolve(base, str('tokenFile')!);
  if (str('username')) {
    access.username = str('username')!;
    access.password = str('password') ?? '';
  }
  return access;
}

/** In-cluster: the service account's token and CA, the API server from the environment. */
export function inClusterAccess(env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('not in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset) and no kubeconfig given');
  return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, ca: readFileSync(`${SERVICE_ACCOUNT}/ca.crt`), tokenFile: `${SERVICE_ACCOUNT}/token` };
}

/** A client for a kubeconfig file, or in-cluster credentials when path is undefined. */
export function loadKubeClient(path: string | undefined): KubeClient {
  return new KubeClient(path !== undefined ? accessFromKubeconfig(path) : inClusterAccess());
}
