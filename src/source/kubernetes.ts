import {
  ADD,
  ApiException,
  CoreV1Api,
  DELETE,
  DiscoveryV1Api,
  ERROR,
  KubeConfig,
  ListWatch,
  NetworkingV1Api,
  Observable,
  UPDATE,
  Watch,
  type Cluster,
  type KubernetesListObject,
  type KubernetesObject,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import type { KubeObject } from '../state/cluster-state.js';
import { ObjectError } from '../state/model.js';

// Services, EndpointSlices and this Node from the API server, through client-node informers (a list,
// then a watch from the list's resourceVersion). The agent keeps the last ruleset loaded while the
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

export interface KubernetesSourceOptions {
  /** --kubeconfig */
  kubeconfig?: string;
  /** --master: the API server URL, overriding the kubeconfig's. */
  master?: string;
  /** Only this Node is watched (its labels select topology; its addresses are NodePort addresses). */
  nodeName: string;
  /**
   * --kube-api-content-type, accepted for flag compatibility: client-node lists and watches in JSON
   * only, and protobuf would change the cost of a request, not what the proxy sees.
   */
  contentType?: string;
  /** --kube-api-qps and --kube-api-burst for list and watch requests (kube-proxy's defaults 5 and 10). */
  qps?: number;
  burst?: number;
  /**
   * Cluster DNS: also watch Namespaces and the EndpointSlices of headless services, which DNS answers
   * for. The proxy's planners skip headless services (they have no ClusterIP), so this changes no rule.
   */
  clusterDNS?: boolean;
  /** The state's registered kinds (ClusterState.kinds): those with a resource below are watched too. */
  kinds?: readonly string[];
}

const DEFAULT_QPS = 5;
const DEFAULT_BURST = 10;
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
/** A list the server accepted but never answers would otherwise stall its informer for good. */
const LIST_TIMEOUT_MS = 60_000;
/** client-go's reflector asks for a watch of 5 to 10 minutes, so a silently dead connection gets replaced. */
const MIN_WATCH_SECONDS = 300;

/**
 * Slices of headless services have no ClusterIP to proxy, and objects naming a service proxy belong to
 * that other proxy. kube-proxy sets this selector on its shared informer factory, so it filters Services
 * as well as EndpointSlices.
 */
export const PROXYABLE_SELECTOR = '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name';

/** --kubeconfig, else --master alone, else the pod's service account, as kube-proxy chooses. */
export function loadKubeConfig(options: Pick<KubernetesSourceOptions, 'kubeconfig' | 'master'>): KubeConfig {
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

type ListFunction = (signal: AbortSignal) => Promise<KubernetesListObject<KubernetesObject>>;

interface Resource {
  kind: string;
  apiVersion: string;
  /** The collection's path, which the informer watches. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  list: ListFunction;
}

/** Per-call options for the generated (object-parameter, hence Observable-middleware) API: an abortable request. */
function abortableBy(signal: AbortSignal) {
  return {
    middleware: [
      {
        pre: (context: RequestContext) => {
          context.setSignal(signal);
          return new Observable(Promise.resolve(context));
        },
        post: (context: ResponseContext) => new Observable(Promise.resolve(context)),
      },
    ],
    middlewareMergeStrategy: 'append' as const,
  };
}

/** Headless services' slices included: objects naming another service proxy still belong to that proxy. */
export const DNS_SELECTOR = '!service.kubernetes.io/service-proxy-name';

/** The kinds other dataplanes register (ClusterState.registerKind), by kind. */
function extraResources(config: KubeConfig): Record<string, Resource> {
  const core = config.makeApiClient(CoreV1Api);
  const networking = config.makeApiClient(NetworkingV1Api);
  // Only TLS Secrets, selected by the server: the ingress never reads another Secret's data.
  const tlsSecrets = 'type=kubernetes.io/tls';
  return {
    Ingress: {
      kind: 'Ingress', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingresses',
      list: (signal) => networking.listIngressForAllNamespaces({}, abortableBy(signal)),
    },
    IngressClass: {
      kind: 'IngressClass', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingressclasses',
      list: (signal) => networking.listIngressClass({}, abortableBy(signal)),
    },
    Secret: {
      kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets', fieldSelector: tlsSecrets,
      list: (signal) => core.listSecretForAllNamespaces({ fieldSelector: tlsSecrets }, abortableBy(signal)),
    },
  };
}

function resources(config: KubeConfig, nodeName: string, clusterDNS = false): Resource[] {
  const core = config.makeApiClient(CoreV1Api);
  const discovery = config.makeApiClient(DiscoveryV1Api);
  const nodeSelector = `metadata.name=${nodeName}`;
  return [
    {
      kind: 'Service',
      apiVersion: 'v1',
      path: '/api/v1/services',
      labelSelector: PROXYABLE_SELECTOR,
      list: (signal) => core.listServiceForAllNamespaces({ labelSelector: PROXYABLE_SELECTOR }, abortableBy(signal)),
    },
    {
      kind: 'EndpointSlice',
      apiVersion: 'discovery.k8s.io/v1',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      labelSelector: clusterDNS ? DNS_SELECTOR : PROXYABLE_SELECTOR,
      list: (signal) =>
        discovery.listEndpointSliceForAllNamespaces({ labelSelector: clusterDNS ? DNS_SELECTOR : PROXYABLE_SELECTOR }, abortableBy(signal)),
    },
    {
      kind: 'Node',
      apiVersion: 'v1',
      path: '/api/v1/nodes',
      fieldSelector: nodeSelector,
      list: (signal) => core.listNode({ fieldSelector: nodeSelector }, abortableBy(signal)),
    },
    ...(clusterDNS ? [{
      kind: 'Namespace' as const,
      apiVersion: 'v1',
      path: '/api/v1/namespaces',
      list: (signal: AbortSignal) => core.listNamespace({}, abortableBy(signal)),
    }] : []),
  ];
}

/**
 * Listed items come deserialized (Date timestamps, no kind or apiVersion), watched ones as raw JSON.
 * A JSON round trip makes both wire JSON: for these kinds the model's field names are the wire names.
 */
function plainObject(object: KubernetesObject, resource: Resource): KubeObject {
  const plain = JSON.parse(JSON.stringify(object)) as KubeObject;
  return { ...plain, apiVersion: resource.apiVersion, kind: resource.kind };
}

function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    // Its message spells out the body and every header; the Status message is what tells the reason.
    let reason = '';
    try {
      reason = String(JSON.parse(String(error.body)).message ?? '');
    } catch {
      // not a Status body
    }
    return `HTTP ${error.code}${reason ? `: ${reason}` : ''}`;
  }
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  if (error instanceof Error) return status ? `HTTP ${status}: ${error.message}` : error.message;
  return String(error);
}

/** client-go's token bucket: `burst` requests at once, then `qps` a second. */
class RequestLimiter {
  private tokens: number;
  private refilledAt = Date.now();
  private readonly waiting = new Set<{ timer: NodeJS.Timeout; release: () => void }>();

  constructor(
    private readonly qps: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  async take(): Promise<void> {
    if (!(this.qps > 0)) return;
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.qps);
    this.refilledAt = now;
    // A negative balance is a reservation: this request goes when the bucket has refilled to it.
    this.tokens -= 1;
    if (this.tokens >= 0) return;
    const waitMs = (-this.tokens / this.qps) * 1000;
    await new Promise<void>((release) => {
      const entry = { release, timer: setTimeout(() => (this.waiting.delete(entry), release()), waitMs) };
      this.waiting.add(entry);
    });
  }

  /** Releases every waiting request now (they find their informer stopped and send nothing). */
  close(): void {
    for (const entry of this.waiting) {
      clearTimeout(entry.timer);
      entry.release();
    }
    this.waiting.clear();
  }
}

interface WatchHooks {
  /** The informer asks for a watch: whatever it listed before has been handed out. */
  watchRequested(): void;
  connected(): void;
  expired(): void;
}

/**
 * The informer's watches, rate limited and closable. ListWatch.stop() only aborts a watch already
 * established, so one still connecting when it is called would outlive it: close() refuses new
 * watches and aborts the rest. It also makes every failure reach the informer's 'error' event, and
 * tells when a watch connected (the backoff resets) or expired (for the log).
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
    config: KubeConfig,
    private readonly limiter: RequestLimiter,
    private readonly events: InformerEvents,
  ) {
    this.watch = new GuardedWatch(config, limiter, {
      watchRequested: () => this.listHandedOut(),
      connected: () => this.succeeded(),
      expired: () => this.events.handler.problem(`${resource.kind} watch expired (410 Gone): relisting`),
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
    await this.limiter.take();
    const list = await this.resource.list(AbortSignal.any([this.stopping.signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]));
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
    const plain = plainObject(object, this.resource);
    try {
      this.events.handler[change](plain);
    } catch (error) {
      // An invalid object is skipped (the state keeps its last valid version); the watch goes on.
      const name = `${plain.kind} ${plain.metadata?.namespace ? `${plain.metadata.namespace}/` : ''}${plain.metadata?.name}`;
      this.events.handler.problem(error instanceof ObjectError ? error.message : `${name}: ${describeError(error)}`);
    }
  }
}

export class KubernetesSource {
  private readonly informers: ResourceInformer[];
  private readonly limiter: RequestLimiter;
  private syncedReported = false;

  constructor(
    options: KubernetesSourceOptions,
    private readonly handler: SourceHandler,
  ) {
    const config = loadKubeConfig(options);
    this.limiter = new RequestLimiter(options.qps ?? DEFAULT_QPS, Math.max(1, options.burst ?? DEFAULT_BURST));
    const events: InformerEvents = { handler, listed: () => this.informerListed() };
    const extra = extraResources(config);
    const watched = [...resources(config, options.nodeName, options.clusterDNS), ...(options.kinds ?? []).filter((kind) => Object.hasOwn(extra, kind)).map((kind) => extra[kind])];
    this.informers = watched.map(
      (resource) => new ResourceInformer(resource, config, this.limiter, events),
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
    this.limiter.close();
    await stopping;
  }

  private informerListed(): void {
    if (this.syncedReported || !this.informers.every((informer) => informer.listed)) return;
    this.syncedReported = true;
    this.handler.synced();
  }
}
