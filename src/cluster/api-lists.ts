import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { ListNeeds } from './cluster-state.js';
import { HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL } from './normalize.js';
import { type ApiEndpoint, plainEndpoint, sameEndpoint } from './api-endpoint.js';
import { listCollection } from './list-request.js';

// What the agent lists from the API server, at what rate, and its first lists, which go out before
// client-node has loaded (kubernetes.ts takes them over): the API server builds the lists while the
// process compiles the rest of its modules. Nothing here loads client-node.

export interface KubernetesSourceOptions {
  /** --kubeconfig */
  kubeconfig?: string;
  /** --master: the API server URL, overriding the kubeconfig's. */
  master?: string;
  /** Only this Node is watched (its labels select topology; its addresses are NodePort addresses). */
  nodeName: string;
  /** --kube-api-qps and --kube-api-burst for list and watch requests (kube-proxy's defaults 5 and 10). */
  qps?: number;
  burst?: number;
  /**
   * What the state's readers need beyond the proxy's own (ClusterState.watches): more kinds, and
   * the Services and slices the proxy's selectors leave out. The state keeps those from the
   * proxy's planners (headless services have no ClusterIP; servicePortViews leaves other proxies'
   * out), so watching them changes no rule.
   */
  watches?: readonly ListNeeds[];
  /** The lists already asked for (startFirstLists), which the source's first lists take over. */
  earlyLists?: EarlyLists;
}

const DEFAULT_QPS = 5;
const DEFAULT_BURST = 10;
/** A list the server accepted but never answers would otherwise stall its informer for good. */
export const LIST_TIMEOUT_MS = 60_000;

/**
 * Slices of headless services have no ClusterIP to proxy, and objects naming a service proxy belong to
 * that other proxy. kube-proxy sets this selector on its shared informer factory, so it filters Services
 * as well as EndpointSlices. Without cluster DNS it spares the informers' memory; the state applies the
 * same filter to whatever a source delivers (the manifest source has no selectors).
 */
export const PROXYABLE_SELECTOR = `!${HEADLESS_LABEL},!${SERVICE_PROXY_NAME_LABEL}`;

/**
 * Headless services' slices included (a reader routes to them), another service proxy's still left
 * to that proxy.
 */
export const HEADLESS_INCLUDED_SELECTOR = '!service.kubernetes.io/service-proxy-name';

export interface Resource {
  kind: string;
  apiVersion: string;
  /** The collection's path, which the informer lists and watches. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export function resources({ nodeName, watches = [] }: KubernetesSourceOptions): Resource[] {
  const allServices = watches.some((watch) => watch.allServices);
  const headlessSlices = watches.some((watch) => watch.headlessSlices);
  const kinds = new Map(watches.flatMap((watch) => watch.kinds ?? []).map(({ kind, apiVersion, path, fieldSelector }) => [kind, { kind, apiVersion, path, fieldSelector }]));
  return [
    // A reader of every Service (CoreDNS names them all): nothing is selected out.
    { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services', labelSelector: allServices ? undefined : PROXYABLE_SELECTOR },
    {
      kind: 'EndpointSlice',
      apiVersion: 'discovery.k8s.io/v1',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      labelSelector: allServices ? undefined : headlessSlices ? HEADLESS_INCLUDED_SELECTOR : PROXYABLE_SELECTOR,
    },
    { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes', fieldSelector: `metadata.name=${nodeName}` },
    ...kinds.values(),
  ];
}

/** client-go's token bucket: `burst` requests at once, then `qps` a second. */
export class RequestLimiter {
  private tokens: number;
  private refilledAt = Date.now();
  private readonly waiting = new Set<{ timer: NodeJS.Timeout; release: () => void }>();

  constructor(
    private readonly qps: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  static of(options: Pick<KubernetesSourceOptions, 'qps' | 'burst'>): RequestLimiter {
    return new RequestLimiter(options.qps ?? DEFAULT_QPS, Math.max(1, options.burst ?? DEFAULT_BURST));
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

type List = KubernetesListObject<KubernetesObject>;

/**
 * The source's first list of each resource, asked for with the plain reading of its kubeconfig
 * (api-endpoint.ts) before client-node is loaded. The source takes a list over only when
 * client-node's options for the request are the same; otherwise it lists again.
 */
export class EarlyLists {
  private readonly lists = new Map<string, Promise<List>>();
  private readonly stopping = new AbortController();

  private constructor(
    readonly limiter: RequestLimiter,
    private readonly endpoint: ApiEndpoint | undefined,
  ) {}

  /** Asks for the lists of `options`' resources now, when its kubeconfig is plain; the source's limiter is this one's. */
  static start(options: KubernetesSourceOptions): EarlyLists {
    const lists = new EarlyLists(RequestLimiter.of(options), plainEndpoint(options));
    const { endpoint } = lists;
    if (!endpoint) return lists;
    for (const resource of resources(options)) {
      const list = lists.request(endpoint, resource);
      // Handled here so that a failure before the source takes the list over is no unhandled
      // rejection; the source awaiting it still sees the failure.
      list.catch(() => undefined);
      lists.lists.set(EarlyLists.key(resource), list);
    }
    return lists;
  }

  private static key({ path, labelSelector, fieldSelector }: Resource): string {
    return `${path}?${labelSelector ?? ''}&${fieldSelector ?? ''}`;
  }

  private async request(endpoint: ApiEndpoint, { path, labelSelector, fieldSelector }: Resource): Promise<List> {
    await this.limiter.take();
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]);
    return listCollection(endpoint, path, { labelSelector, fieldSelector }, signal);
  }

  /** The list of `resource` if it was asked for the request `endpoint` describes; each list is taken once. */
  take(resource: Resource, endpoint: ApiEndpoint): Promise<List> | undefined {
    const key = EarlyLists.key(resource);
    const list = this.lists.get(key);
    if (!list) return undefined;
    this.lists.delete(key);
    // Not the request client-node would make: its answer is not used, whatever it is.
    return this.endpoint && sameEndpoint(this.endpoint, endpoint) ? list : undefined;
  }

  /** Aborts the lists not taken over. */
  stop(): void {
    this.lists.clear();
    this.stopping.abort();
  }
}
