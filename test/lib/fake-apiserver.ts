import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../../src/cluster/cluster-state.js';

// An API server for Services, EndpointSlices and Nodes that speaks list/watch as the real one does,
// as far as client-node's informers can tell: list responses whose items carry no kind, watch streams
// of JSON lines from a resourceVersion on, and 410 Gone once that resourceVersion has been compacted.

export type FakeKind = 'Service' | 'EndpointSlice' | 'Node' | 'Namespace' | 'Ingress' | 'IngressClass' | 'Secret' | 'Lease'
  | 'GatewayClass' | 'Gateway' | 'HTTPRoute' | 'ReferenceGrant';

interface Collection {
  kind: FakeKind;
  apiVersion: string;
  path: string;
}

const COLLECTIONS: Collection[] = [
  { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services' },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices' },
  { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes' },
  { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' },
  { kind: 'Ingress', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingresses' },
  { kind: 'IngressClass', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingressclasses' },
  { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets' },
  { kind: 'Lease', apiVersion: 'coordination.k8s.io/v1', path: '/apis/coordination.k8s.io/v1/leases' },
  // Gateway API's CRDs, at the standard channel's versions.
  { kind: 'GatewayClass', apiVersion: 'gateway.networking.k8s.io/v1', path: '/apis/gateway.networking.k8s.io/v1/gatewayclasses' },
  { kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1', path: '/apis/gateway.networking.k8s.io/v1/gateways' },
  { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', path: '/apis/gateway.networking.k8s.io/v1/httproutes' },
  { kind: 'ReferenceGrant', apiVersion: 'gateway.networking.k8s.io/v1beta1', path: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants' },
];

const GENERATION_KINDS = new Set<FakeKind>(['GatewayClass', 'Gateway', 'HTTPRoute']);
const generationOf = (before: KubeObject | undefined, after: KubeObject) => {
  const previous = (before?.metadata?.generation as number | undefined) ?? 0;
  return before && JSON.stringify(before.spec) === JSON.stringify(after.spec) ? previous : previous + 1;
};

/** Kinds whose status is a subresource: a PUT there changes the status only. */
const STATUS_KINDS = new Set<FakeKind>(['Ingress', 'GatewayClass', 'Gateway', 'HTTPRoute']);

/** Single objects that can be read and written: Leases, and Ingresses and Gateway API objects through their status subresource (a cluster-scoped one's namespace is ''). */
const OBJECT_PATHS: { kind: FakeKind; pattern: RegExp }[] = [
  { kind: 'Lease', pattern: /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/ },
  { kind: 'Ingress', pattern: /^\/apis\/networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/ingresses\/([^/]+)\/status$/ },
  { kind: 'GatewayClass', pattern: /^\/apis\/gateway\.networking\.k8s\.io\/v1\/()gatewayclasses\/([^/]+)\/status$/ },
  { kind: 'Gateway', pattern: /^\/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/gateways\/([^/]+)\/status$/ },
  { kind: 'HTTPRoute', pattern: /^\/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/httproutes\/([^/]+)\/status$/ },
];

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One change: the object before (absent when created) and after (absent when deleted), and the version watchers are sent. */
interface Change {
  resourceVersion: number;
  kind: FakeKind;
  before: KubeObject | undefined;
  after: KubeObject | undefined;
  sent: KubeObject;
}

type Matcher = (object: KubeObject) => boolean;

interface Watcher {
  kind: FakeKind;
  matches: Matcher;
  bookmarks: boolean;
  response: ServerResponse;
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
}

export class FakeApiServer {
  /** Every request received, in order. */
  readonly requests: LoggedRequest[] = [];
  /** How an expired resourceVersion is refused: an ERROR event in a 200 stream (what a real server sends) or HTTP 410. */
  goneResponse: 'event' | 'http' = 'event';
  /** Lists of these kinds are answered this many milliseconds late (a slow collection, a busy server). */
  readonly listDelayMs: Partial<Record<FakeKind, number>> = {};
  /** Collections answered 404, as a server without that API (or without the right to it) answers. */
  readonly refusedKinds = new Set<FakeKind>();
  private readonly objects = new Map<string, KubeObject>();
  /** A paged list's rest, by continue token: the items of its first page's snapshot. */
  /** Called with each list request's query before it is answered (a test's hook into a paged list). */
  onList: ((query: Record<string, string>) => void) | undefined;
  private readonly continuations = new Map<string, { items: object[]; resourceVersion: number; offset: number }>();
  private nextContinuation = 0;
  private history: Change[] = [];
  /** Watches from before this resourceVersion are answered 410 Gone. */
  private compactedAt = 0;
  private resourceVersion = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private port = 0;
  private directory: string | undefined;

  /**
   * With a socket path the server listens on that Unix socket instead of TCP: unlike a TCP port,
   * a socket file is reachable from inside another network namespace (through a forwarder there).
   */
  private constructor(private readonly socketPath?: string) {
    this.server = createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Listens on 127.0.0.1 on a random port, or on the given Unix socket. */
  static async create(socketPath?: string): Promise<FakeApiServer> {
    const server = new FakeApiServer(socketPath);
    await server.start();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens again (on the same port after stop()). */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      const listening = () => {
        this.server.off('error', reject);
        if (!this.socketPath) this.port = (this.server.address() as AddressInfo).port;
        resolve();
      };
      if (this.socketPath) {
        rmSync(this.socketPath, { force: true });
        this.server.listen(this.socketPath, listening);
      } else {
        this.server.listen(this.port, '127.0.0.1', listening);
      }
    });
  }

  /** An outage: stops listening and cuts every connection; the objects and history stay. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.watchers.clear();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  async close(): Promise<void> {
    if (this.server.listening) await this.stop();
    if (this.directory) rmSync(this.directory, { recursive: true, force: true });
  }

  /** A kubeconfig pointing at this server over plain HTTP (which client-node allows only with TLS verification off). */
  kubeconfigPath(server = this.url): string {
    this.directory ??= mkdtempSync(join(tmpdir(), 'fake-apiserver-'));
    const path = join(this.directory, 'kubeconfig');
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'tester', user: { token: 'fake-token' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'tester' } }],
      'current-context': 'fake',
    };
    writeFileSync(path, JSON.stringify(kubeconfig, null, 2));
    return path;
  }

  /** Creates or replaces an object (it must have kind and metadata.name); returns the stored version. */
  upsert(object: KubeObject): KubeObject {
    const kind = object.kind as FakeKind;
    const collection = collectionOf(kind);
    const metadata = object.metadata ?? {};
    const key = objectKey(kind, metadata.namespace, metadata.name);
    const before = this.objects.get(key);
    const resourceVersion = ++this.resourceVersion;
    const stored: KubeObject = {
      ...object,
      apiVersion: collection.apiVersion,
      kind,
      metadata: {
        // A real server stamps these; the timestamp is what client-node turns into a Date when listing.
        uid: (before?.metadata?.uid as string | undefined) ?? `uid-${resourceVersion}`,
        creationTimestamp: (before?.metadata?.creationTimestamp as string | undefined) ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        ...metadata,
        // Gateway API's objects report the generation their status observed: it moves with the spec.
        ...(GENERATION_KINDS.has(kind) ? { generation: generationOf(before, object) } : {}),
        resourceVersion: String(resourceVersion),
      },
    };
    this.objects.set(key, stored);
    this.record({ resourceVersion, kind, before, after: stored, sent: stored });
    return stored;
  }

  /** Deletes an object; false if there was none. */
  remove(kind: FakeKind, namespace: string | undefined, name: string): boolean {
    const key = objectKey(kind, namespace, name);
    const before = this.objects.get(key);
    if (!before) return false;
    this.objects.delete(key);
    const resourceVersion = ++this.resourceVersion;
    // The deleted object is sent with the resourceVersion of its deletion, as a real server does.
    const last = { ...before, metadata: { ...before.metadata, resourceVersion: String(resourceVersion) } };
    this.record({ resourceVersion, kind, before, after: undefined, sent: last });
    return true;
  }

  /** Forgets the history: a watch from any older resourceVersion is answered 410 Gone. */
  compact(): void {
    this.history = [];
    this.compactedAt = this.resourceVersion;
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const watcher of this.watchers) {
      if (!watcher.bookmarks) continue;
      const collection = collectionOf(watcher.kind);
      const marker = { kind: watcher.kind, apiVersion: collection.apiVersion, metadata: { resourceVersion: String(this.resourceVersion) } };
      send(watcher.response, 'BOOKMARK', marker);
    }
  }

  /** Ends every watch stream abruptly (the sockets are destroyed, not ended). */
  dropConnections(): void {
    for (const watcher of this.watchers) watcher.response.socket?.destroy();
    this.watchers.clear();
  }

  /** The objects as stored (with kind, apiVersion and resourceVersion). */
  stored(kind?: FakeKind): KubeObject[] {
    return [...this.objects.values()].filter((object) => kind === undefined || object.kind === kind);
  }

  /** Watch streams open now. */
  get watchCount(): number {
    return this.watchers.size;
  }

  private record(change: Change): void {
    this.history.push(change);
    for (const watcher of this.watchers) {
      if (watcher.kind !== change.kind) continue;
      const event = eventFor(change, watcher.matches);
      if (event) send(watcher.response, event, change.sent);
    }
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url ?? '/', this.url);
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === 'true' || query.watch === '1';
    this.requests.push({ method: request.method ?? 'GET', path: url.pathname, query, watch });
    const single = OBJECT_PATHS.map(({ kind, pattern }) => ({ kind, match: pattern.exec(url.pathname) })).find(({ match }) => match);
    if (single) {
      void this.handleObject(request, response, single.kind, single.match![1] || undefined, single.match![2]);
      return;
    }
    const collection = COLLECTIONS.find((candidate) => candidate.path === url.pathname);
    if (request.method !== 'GET' || !collection || this.refusedKinds.has(collection.kind)) return status(response, 404, 'NotFound', `${request.method} ${url.pathname} is not served here`);
    let matches: Matcher;
    try {
      matches = matcher(query.labelSelector, query.fieldSelector);
    } catch (error) {
      return status(response, 400, 'BadRequest', (error as Error).message);
    }
    if (watch) this.watch(collection, matches, query, response);
    else setTimeout(() => this.list(collection, matches, query, response), this.listDelayMs[collection.kind] ?? 0);
  }

  /** GET, POST (create) and PUT (replace, refused with 409 on a stale resourceVersion), as a real server answers them. */
  private async handleObject(request: IncomingMessage, response: ServerResponse, kind: FakeKind, namespace: string | undefined, name: string | undefined): Promise<void> {
    let text = '';
    for await (const chunk of request) text += chunk;
    const body = text ? JSON.parse(text) as KubeObject : undefined;
    const key = objectKey(kind, namespace, name ?? body?.metadata?.name);
    const existing = this.objects.get(key);
    const reply = (object: KubeObject, code = 200) => {
      response.writeHead(code, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(object));
    };
    if (request.method === 'GET') return existing ? reply(existing) : status(response, 404, 'NotFound', `${key} not found`);
    if (request.method === 'POST') {
      if (existing) return status(response, 409, 'AlreadyExists', `${key} already exists`);
      return reply(this.upsert({ ...body!, kind, metadata: { ...body!.metadata, namespace } }), 201);
    }
    if (request.method === 'PUT' && existing && body) {
      if (body.metadata?.resourceVersion !== existing.metadata?.resourceVersion) return status(response, 409, 'Conflict', `${key}: the object has been modified`);
      // The status subresource changes the status only.
      const updated = STATUS_KINDS.has(kind) ? { ...existing, status: body.status } : { ...body, kind };
      return reply(this.upsert(updated));
    }
    return status(response, 404, 'NotFound', `${request.method} ${key} is not served here`);
  }

  /** Every continue token handed out so far answers 410 from now on, as one does once etcd compacts past its snapshot. */
  expireContinuations(): void {
    this.continuations.clear();
  }

  /** A list, paged as a real server pages it when asked with `limit` (every page of one snapshot, `continue` until the last). */
  private list(collection: Collection, matches: Matcher, query: Record<string, string>, response: ServerResponse): void {
    this.onList?.(query);
    let rest = query.continue === undefined ? undefined : this.continuations.get(query.continue);
    if (query.continue !== undefined && !rest) return status(response, 410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
    if (query.continue !== undefined) this.continuations.delete(query.continue);
    rest ??= {
      items: [...this.objects.values()].filter((object) => object.kind === collection.kind && matches(object)).map(({ kind: _kind, apiVersion: _apiVersion, ...item }) => item),
      resourceVersion: this.resourceVersion,
      offset: 0,
    };
    const limit = Number(query.limit) > 0 ? Number(query.limit) : Infinity;
    const end = Math.min(rest.items.length, rest.offset + limit);
    const metadata: Record<string, unknown> = { resourceVersion: String(rest.resourceVersion) };
    if (end < rest.items.length) {
      const token = `page-${++this.nextContinuation}`;
      this.continuations.set(token, { ...rest, offset: end });
      Object.assign(metadata, { continue: token, remainingItemCount: rest.items.length - end });
    }
    const body = { kind: `${collection.kind}List`, apiVersion: collection.apiVersion, metadata, items: rest.items.slice(rest.offset, end) };
    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify(body));
  }

  private watch(collection: Collection, matches: Matcher, query: Record<string, string>, response: ServerResponse): void {
    const from = query.resourceVersion ?? '';
    const since = Number(from || 0);
    const fromNow = from === '' || from === '0';
    if (!fromNow && (!Number.isInteger(since) || since < this.compactedAt)) {
      const message = `too old resource version: ${from} (${this.compactedAt})`;
      if (this.goneResponse === 'http') return status(response, 410, 'Expired', message);
      response.writeHead(200, { 'Content-Type': 'application/json' });
      send(response, 'ERROR', statusObject(410, 'Expired', message));
      response.end();
      return;
    }
    response.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    // client-node waits for the headers before it reads a single event.
    response.flushHeaders();
    if (fromNow) {
      // Without a resourceVersion a watch starts with the current objects, as synthetic ADDED events.
      for (const object of this.objects.values()) if (object.kind === collection.kind && matches(object)) send(response, 'ADDED', object);
    } else {
      for (const change of this.history) {
        if (change.kind !== collection.kind || change.resourceVersion <= since) continue;
        const event = eventFor(change, matches);
        if (event) send(response, event, change.sent);
      }
    }
    const watcher: Watcher = { kind: collection.kind, matches, bookmarks: query.allowWatchBookmarks === 'true', response };
    this.watchers.add(watcher);
    const timeoutSeconds = Number(query.timeoutSeconds);
    const timer = timeoutSeconds > 0 ? setTimeout(() => response.end(), timeoutSeconds * 1000) : undefined;
    response.on('close', () => {
      clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }
}

function collectionOf(kind: FakeKind): Collection {
  const collection = COLLECTIONS.find((candidate) => candidate.kind === kind);
  if (!collection) throw new Error(`the fake API server does not serve ${kind}`);
  return collection;
}

const objectKey = (kind: string, namespace: string | undefined, name: string | undefined) => `${kind}/${namespace ?? ''}/${name ?? ''}`;

/**
 * What a watch with this selector sees of a change: an object entering the selection is ADDED,
 * one leaving it DELETED, as a real server reports label changes.
 */
function eventFor(change: Change, matches: Matcher): EventType | undefined {
  const was = change.before !== undefined && matches(change.before);
  const is = change.after !== undefined && matches(change.after);
  if (is) return was ? 'MODIFIED' : 'ADDED';
  return was ? 'DELETED' : undefined;
}

function send(response: ServerResponse, type: string, object: unknown): void {
  response.write(`${JSON.stringify({ type, object })}\n`);
}

function statusObject(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function status(response: ServerResponse, code: number, reason: string, message: string): void {
  response.writeHead(code, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(statusObject(code, reason, message)));
}

/**
 * Label selectors of the equality and existence forms (`a`, `!a`, `a=b`, `a==b`, `a!=b`) and field
 * selectors on metadata.name, metadata.namespace and (Secrets') type; anything else is refused as a real server would.
 */
function matcher(labelSelector: string | undefined, fieldSelector: string | undefined): Matcher {
  const tests: Matcher[] = [];
  for (const requirement of splitSelector(labelSelector)) {
    const [, negated, key, operator, value] = /^(!?)([^=!\s]+)\s*(==|=|!=)?\s*(.*)$/.exec(requirement) ?? [];
    if (!key || (negated && operator)) throw new Error(`unsupported label selector requirement "${requirement}"`);
    const label = (object: KubeObject) => (object.metadata?.labels as Record<string, string> | undefined)?.[key];
    if (!operator) tests.push(negated ? (object) => label(object) === undefined : (object) => label(object) !== undefined);
    else if (operator === '!=') tests.push((object) => label(object) !== value);
    else tests.push((object) => label(object) === value);
  }
  for (const requirement of splitSelector(fieldSelector)) {
    const [, field, operator, value] = /^(metadata\.name|metadata\.namespace|type)\s*(==|=|!=)\s*(.*)$/.exec(requirement) ?? [];
    if (!field) throw new Error(`unsupported field selector "${requirement}"`);
    const read = (object: KubeObject) => (field === 'type' ? object.type as string | undefined : field === 'metadata.name' ? object.metadata?.name : object.metadata?.namespace) ?? '';
    tests.push(operator === '!=' ? (object) => read(object) !== value : (object) => read(object) === value);
  }
  return (object) => tests.every((test) => test(object));
}

const splitSelector = (selector: string | undefined) =>
  (selector ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
