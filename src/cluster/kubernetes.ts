// client-node's modules one by one, not its index: the index loads every generated API, attach,
// exec, cp and port-forward (ws, tar), which the agent never uses, on its start path.
import { ListWatch } from '@kubernetes/client-node/dist/cache.js';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import type { Cluster } from '@kubernetes/client-node/dist/config_types.js';
import { ADD, DELETE, ERROR, UPDATE } from '@kubernetes/client-node/dist/informer.js';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node/dist/types.js';
import { Watch } from '@kubernetes/client-node/dist/watch.js';
import type { KubeObject } from './cluster-state.js';
import { ObjectError } from './model.js';
import type { ApiEndpoint, ApiSource } from './api-endpoint.js';
import { type EarlyLists, type KubernetesSourceOptions, LIST_TIMEOUT_MS, RequestLimiter, type Resource, resources } from './api-lists.js';
import { listCollection } from './list-request.js';

export { HEADLESS_INCLUDED_SELECTOR, PROXYABLE_SELECTOR, type KubernetesSourceOptions } from './api-lists.js';

// Services, EndpointSlices and this Node from the API server, through client-node informers (a list,
// then a watch from the list's resourceVersion). The lists are read as plain JSON (list-request.ts),
// not through client-node's model classes. The agent keeps the last ruleset loaded while the
// API is unreachable, so nothing here ever gives up: every failure is reported and retried.

export interface SourceHandler {
  /** An object was added or modified (always plain JSON with kind and apiVersion set). */
  apply(object: KubeObject): void;
  delete(object: KubeObject): void;
  /** Every informer has listed once: the state is complete enough for a first sync. */
  synced(): void;
  /** Watch errors, expiries and restarts, for the log. */
  problem(message: string): void;
  /** Input that could not be read at all (a manifest document, List item or file), named with why. */
  skipped?(message: string): void;
}

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
/** client-go's reflector asks for a watch of 5 to 10 minutes, so a silently dead connection gets replaced. */
const MIN_WATCH_SECONDS = 300;

/** --kubeconfig, else --master alone, else the pod's service account, as kube-proxy chooses. */
export function loadKubeConfig(options: ApiSource): KubeConfig {
  const config = new KubeConfig();
  if (options.kubeconfig) {
    config.loadFromFile(options.kubeconfig);
    if (options.master) overrideServer(config, options.master);
  } else if (options.master) {
    // kube-proxy with --master alone talks to that server without credentials.
    config.loadFromClusterAndUser(
      { name: 'master', server: options.master, skipTLSVerify: isPlainHttp(options.master) },
      { name: 'anonymous' },
    );
  } else {
    // loadFromCluster would otherwise produce the server "https://undefined:undefined".
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new Error(
        'no --kubeconfig or --master, and not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set',
      );
    }
    config.loadFromCluster();
  }
  return config;
}

// client-node refuses an http:// server unless TLS verification is off; plain HTTP has nothing to verify.
const isPlainHttp = (server: string) => server.startsWith('http:');

function overrideServer(config: KubeConfig, server: string): void {
  const current = config.getCurrentCluster();
  if (!current) throw new Error('--master given, but the kubeconfig has no current cluster to point at it');
  const replacement: Cluster = { ...current, server, skipTLSVerify: current.skipTLSVerify || isPlainHttp(server) };
  config.clusters = config.clusters.map((cluster) => (cluster === current ? replacement : cluster));
}

/**
 * What the informer keeps and hands out, from a list item or a watched object (both fresh from
 * JSON.parse, so ours to change): wire JSON with kind and apiVersion (list items carry neither),
 * without managedFields, which nothing reads and which the informer's cache would otherwise hold
 * for every object of the cluster.
 */
function asDelivered(object: KubernetesObject, resource: Resource): KubernetesObject {
  object.kind = resource.kind;
  object.apiVersion = resource.apiVersion;
  if (object.metadata) delete object.metadata.managedFields;
  return object;
}

/**
 * Kinds whose objects the state turns into models of its own and forgets (the rest may keep the
 * object itself), and whose deletion needs only kind, namespace and name.
 */
const MODELLED_KINDS = new Set(['Service', 'EndpointSlice']);

/**
 * What the informer's cache needs of an object once the state has it: which object and which
 * version (to tell a relist's deletions and a watch's updates), and for a deletion, kind,
 * namespace and name. At 100,000 services the cache otherwise held every Service and
 * EndpointSlice whole. Nested values are left alone: only this object's own fields go.
 */
function keepIdentityOnly(object: KubernetesObject): void {
  const { name, namespace, resourceVersion, uid } = object.metadata ?? {};
  for (const field of Object.keys(object)) if (field !== 'kind' && field !== 'apiVersion') delete (object as Record<string, unknown>)[field];
  object.metadata = { name, namespace, resourceVersion, uid };
}

function describeError(error: unknown): string {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  if (error instanceof Error) return status ? `HTTP ${status}: ${error.message}` : error.message;
  return String(error);
}

/** The request options client-node gives the current cluster: credentials (token, client certificate, exec plugins), CA and the proxy-aware agent. */
async function apiEndpoint(config: KubeConfig): Promise<ApiEndpoint> {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const options = {};
  await config.applyToHTTPSOptions(options);
  return { server: cluster.server, options };
}

interface WatchHooks {
  /** The informer asks for a watch: whatever it listed before has been handed out. */
  watchRequested(): void;
  connected(): void;
  expired(): void;
  /** A watched object (an ADDED, MODIFIED or DELETED event's), before the informer sees it. */
  received(object: KubernetesObject): void;
}

/**
 * The informer's watches, rate limited and closable. ListWatch.stop() only aborts a watch already
 * established, so one still connecting when it is called would outlive it: close() refuses new
 * watches and aborts the rest. It also makes every failure reach the informer's 'error' event, and
 * tells when a watch connected (the backoff resets) or expired (for the log), and shows the hooks
 * every watched object first.
 */
class GuardedWatch extends Watch {
  private readonly open = new Set<AbortController>();
  private closed = false;

  constructor(
    config: KubeConfig,
    private readonly limiter: RequestLimiter,
    private readonly hooks: WatchHooks,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    this.hooks.watchRequested();
    await this.limiter.take();
    if (this.closed) return new AbortController();
    const params = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.round(MIN_WATCH_SECONDS * (1 + Math.random())),
    };
    let controller: AbortController | undefined;
    let finished = false;
    const onEvent = (phase: string, object: any, event?: any) => {
      if (phase === 'ERROR' && object?.code === 410) this.hooks.expired();
      if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') this.hooks.received(object);
      callback(phase, object, event);
    };
    const onDone = (error: any) => {
      finished = true;
      if (controller) this.open.delete(controller);
      if (error?.statusCode === 410) this.hooks.expired();
      done(error);
    };
    try {
      controller = await super.watch(path, params, onEvent, onDone);
    } catch (error) {
      // Thrown before any request (no current cluster, an unreadable token file): without this the
      // informer's start() would reject with no 'error' event, and it would never be restarted.
      onDone(error);
      return new AbortController();
    }
    if (finished) return controller;
    if (this.closed) controller.abort();
    else {
      this.open.add(controller);
      this.hooks.connected();
    }
    return controller;
  }

  close(): void {
    this.closed = true;
    for (const controller of this.open) controller.abort();
    this.open.clear();
  }
}

interface InformerEvents {
  handler: SourceHandler;
  listed(): void;
}

/**
 * One informer and its restarts. client-node's informer relists by itself after 410 Gone but stops
 * for good after any other error (a refused connection, a failed list, a dropped stream), so every
 * 'error' event schedules start() again: 1 s, doubling to 30 s, back to 1 s once a list or watch
 * succeeds. start() watches from the last resourceVersion seen, and a 410 then brings the relist.
 */
class ResourceInformer {
  private readonly informer: ListWatch<KubernetesObject>;
  private readonly watch: GuardedWatch;
  private readonly stopping = new AbortController();
  private retryDelay = FIRST_RETRY_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  /** A list result is being handed out by the informer; its next watch request means it is done. */
  private listArriving = false;
  listed = false;

  constructor(
    private readonly resource: Resource,
    private readonly config: KubeConfig,
    private readonly limiter: RequestLimiter,
    private readonly events: InformerEvents,
    private readonly earlyLists: EarlyLists | undefined,
  ) {
    this.watch = new GuardedWatch(config, limiter, {
      watchRequested: () => this.listHandedOut(),
      connected: () => this.succeeded(),
      expired: () => this.events.handler.problem(`${resource.kind} watch expired (410 Gone): relisting`),
      received: (object) => asDelivered(object, resource),
    });
    this.informer = new ListWatch(
      resource.path,
      this.watch,
      () => this.list(),
      false,
      resource.labelSelector,
      resource.fieldSelector,
    );
    this.informer.on(ADD, (object) => this.deliver('apply', object));
    this.informer.on(UPDATE, (object) => this.deliver('apply', object));
    this.informer.on(DELETE, (object) => this.deliver('delete', object));
    this.informer.on(ERROR, (error) => this.failed(error));
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Resolves after the first attempt, whatever its outcome; failures are retried in the background. */
  async start(): Promise<void> {
    await this.informer.start().catch((error: unknown) => this.failed(error));
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.retryTimer);
    this.watch.close();
    await this.informer.stop();
  }

  private async list(): Promise<KubernetesListObject<KubernetesObject>> {
    const endpoint = await apiEndpoint(this.config);
    // The first list may have gone out before client-node loaded (EarlyLists); its token is taken.
    const asked = this.earlyLists?.take(this.resource, endpoint);
    if (!asked) await this.limiter.take();
    const { path, labelSelector, fieldSelector } = this.resource;
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]);
    const list = await (asked ?? listCollection(endpoint, path, { labelSelector, fieldSelector }, signal));
    for (const item of list.items) asDelivered(item, this.resource);
    this.succeeded();
    this.listArriving = true;
    return list;
  }

  private listHandedOut(): void {
    if (!this.listArriving) return;
    this.listArriving = false;
    if (this.listed) return;
    this.listed = true;
    this.events.listed();
  }

  private succeeded(): void {
    this.retryDelay = FIRST_RETRY_MS;
  }

  private failed(error: unknown): void {
    // Stopping aborts the requests in flight, and the informer reports those aborts as errors too.
    if (this.stopped || this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(delay * 2, MAX_RETRY_MS);
    this.events.handler.problem(
      `${this.resource.kind} list/watch failed: ${describeError(error)}; retrying in ${delay / 1000}s`,
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.start();
    }, delay);
  }

  private deliver(change: 'apply' | 'delete', object: KubernetesObject): void {
    if (this.stopped) return;
    // The handler gets a copy of its own: the cache's object is cut down to its identity below.
    const delivered = { ...object } as KubeObject;
    try {
      this.events.handler[change](delivered);
    } catch (error) {
      // An invalid object is skipped (the state keeps its last valid version); the watch goes on.
      const name = `${delivered.kind} ${delivered.metadata?.namespace ? `${delivered.metadata.namespace}/` : ''}${delivered.metadata?.name}`;
      this.events.handler.problem(error instanceof ObjectError ? error.message : `${name}: ${describeError(error)}`);
    } finally {
      if (change === 'apply' && MODELLED_KINDS.has(this.resource.kind)) keepIdentityOnly(object);
    }
  }
}

export class KubernetesSource {
  private readonly informers: ResourceInformer[];
  private readonly limiter: RequestLimiter;
  private readonly earlyLists: EarlyLists | undefined;
  private syncedReported = false;

  constructor(
    options: KubernetesSourceOptions,
    private readonly handler: SourceHandler,
  ) {
    const config = loadKubeConfig(options);
    this.earlyLists = options.earlyLists;
    this.limiter = this.earlyLists?.limiter ?? RequestLimiter.of(options);
    const events: InformerEvents = { handler, listed: () => this.informerListed() };
    this.informers = resources(options).map(
      (resource) => new ResourceInformer(resource, config, this.limiter, events, this.earlyLists),
    );
  }

  /**
   * Starts every informer and resolves after each has made its first attempt; it never rejects,
   * since an unreachable API is retried. handler.synced() tells when the state is complete.
   */
  async start(): Promise<void> {
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  async stop(): Promise<void> {
    const stopping = Promise.all(this.informers.map((informer) => informer.stop()));
    this.earlyLists?.stop();
    this.limiter.close();
    await stopping;
  }

  private informerListed(): void {
    if (this.syncedReported || !this.informers.every((informer) => informer.listed)) return;
    this.syncedReported = true;
    this.handler.synced();
  }
}
