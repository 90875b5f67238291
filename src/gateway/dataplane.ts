import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { StateChanges, StateDataplane, WatchNeeds } from '../capability.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import type { NamespaceInfo } from '../cluster/normalize.js';
import { normalizeNamespace } from '../cluster/normalize.js';
import { endpointPortViews } from '../cluster/service-ports.js';
import { nodeContextOf } from '../cluster/topology.js';
import { splitHostPort } from '../kernel/addresses.js';
import {
  type RouteTable, type RouteTableChanges, type TlsSecretInfo, WorkerProxy, type WorkerProxyOptions, normalizeTlsSecret, registerRequestMetrics,
} from '../ingress/index.js';
import {
  type GatewayClassInfo, type GatewayInfo, type HTTPRouteInfo, type ReferenceGrantInfo,
  normalizeGateway, normalizeGatewayClass, normalizeHTTPRoute, normalizeReferenceGrant,
} from './objects.js';
import { type GatewayPlan, type GatewayPlanInput, GatewayPlanner } from './plan.js';
import type { GatewayStatusWriter } from './status.js';

// The Gateway API controller as a dataplane beside the rules: every sync that touches its objects
// (or a Service they route to) replans the Gateways and HTTPRoutes into two route tables, one for
// the HTTP listeners and one for the HTTPS ones, and hands each table's changes to the built-in
// proxy on its address (the ingress's built-in dataplane, src/ingress/worker-proxy.ts): a route change never
// restarts a worker or closes a connection.

export interface GatewaySettings extends Omit<WorkerProxyOptions, 'name' | 'httpAddress' | 'httpsAddress'> {
  enabled: boolean;
  /** --gateway-class: the GatewayClass served. */
  className: string;
  /** host:port, or undefined when that listener is off. */
  httpAddress?: string;
  httpsAddress?: string;
}

const GROUP_PATH = '/apis/gateway.networking.k8s.io';

/** Gateway API's kinds (the standard channel's versions), TLS Secrets, and Namespaces for allowedRoutes' selectors. */
export const GATEWAY_WATCH: WatchNeeds = {
  headlessSlices: true,
  kinds: [
    { kind: 'GatewayClass', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/gatewayclasses`, normalize: normalizeGatewayClass },
    { kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/gateways`, normalize: normalizeGateway },
    { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/httproutes`, normalize: normalizeHTTPRoute },
    { kind: 'ReferenceGrant', apiVersion: 'gateway.networking.k8s.io/v1beta1', path: `${GROUP_PATH}/v1beta1/referencegrants`, normalize: normalizeReferenceGrant },
    { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets', fieldSelector: 'type=kubernetes.io/tls', normalize: normalizeTlsSecret },
    { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces', normalize: normalizeNamespace },
  ],
};
const GATEWAY_KINDS = GATEWAY_WATCH.kinds!.map(({ kind }) => kind);

const portOf = (address: string | undefined) => (address ? splitHostPort(address).port : undefined);

/** What the Gateway planner reads from the state (the agent's syncs, and `kubenft services`). */
export function gatewayPlanInput(state: ClusterState, settings: Pick<GatewaySettings, 'className' | 'httpAddress' | 'httpsAddress'>): GatewayPlanInput {
  const namespaces = state.objectsOf<NamespaceInfo>('Namespace');
  return {
    classes: state.objectsOf<GatewayClassInfo>('GatewayClass'),
    gateways: state.objectsOf<GatewayInfo>('Gateway'),
    routes: state.objectsOf<HTTPRouteInfo>('HTTPRoute'),
    grants: state.objectsOf<ReferenceGrantInfo>('ReferenceGrant').values(),
    namespaceLabels: (name) => namespaces.get(name)?.labels,
    secrets: state.objectsOf<TlsSecretInfo | null>('Secret'),
    servicePorts: (key) => endpointPortViews(state, key),
    node: nodeContextOf(state),
    className: settings.className,
    httpPort: portOf(settings.httpAddress),
    httpsPort: portOf(settings.httpsAddress),
  };
}

/** One listener address's proxy and the table it serves. */
interface Served {
  proxy: WorkerProxy;
  table: RouteTable | undefined;
}

export class GatewayDataplane implements StateDataplane {
  readonly name = 'gateway';
  readonly watch = GATEWAY_WATCH;
  private http: Served | undefined;
  private https: Served | undefined;
  private plan: GatewayPlan | undefined;
  private readonly planner = new GatewayPlanner();
  private reported = new Set<string>();
  private problems!: Gauge;
  private status: GatewayStatusWriter | undefined;

  constructor(private readonly settings: GatewaySettings, private readonly log: Logger, private readonly statusSource?: { kubeconfig?: string; master?: string }) {}

  attach(_state: ClusterState, registry: Registry): void {
    const metrics = registerRequestMetrics(registry, 'gateway', 'route', 'HTTPRoute');
    const proxy = (name: string, addresses: Pick<WorkerProxyOptions, 'httpAddress' | 'httpsAddress'>): Served => ({ proxy: new WorkerProxy({ ...this.settings, name, ...addresses }, this.log, metrics), table: undefined });
    if (this.settings.httpAddress) this.http = proxy('gateway HTTP', { httpAddress: this.settings.httpAddress, httpsAddress: undefined });
    if (this.settings.httpsAddress) this.https = proxy('gateway HTTPS', { httpAddress: undefined, httpsAddress: this.settings.httpsAddress });
    this.problems = new Gauge({ name: 'kubenft_gateway_problems', help: 'Gateway listeners and HTTPRoute parents not served (invalid, not allowed, unresolved), as their status says', registers: [registry] });
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (this.plan && !this.concerns(changes)) return;
    const plan = this.planner.plan(gatewayPlanInput(state, this.settings), changes.services);
    this.plan = plan;
    this.report(plan.problems);
    await Promise.all([
      this.http && this.publish(this.http, plan.http, plan.changes?.http, undefined),
      this.https && this.publish(this.https, plan.https, plan.changes?.https, plan.defaultCertificate),
    ]);
    if (this.statusSource) await this.publishStatus(state, plan);
  }

  /** The planner updates its tables in place: their changes apply to the table this proxy was last given, else it gets the whole table. */
  private async publish(served: Served, table: RouteTable, planChanges: RouteTableChanges | undefined, defaultCertificate: TlsSecretInfo | undefined): Promise<void> {
    const changes = served.table === table ? planChanges : undefined;
    served.table = table;
    await served.proxy.apply({ table, changes, defaultCertificate: defaultCertificate ? { cert: defaultCertificate.cert, key: defaultCertificate.key } : null });
  }

  private concerns(changes: StateChanges): boolean {
    if (changes.services === 'full' || GATEWAY_KINDS.some((kind) => changes.kinds.has(kind))) return true;
    for (const key of changes.services) if (this.plan!.services.has(key)) return true;
    return false;
  }

  private async publishStatus(state: ClusterState, plan: GatewayPlan): Promise<void> {
    if (!this.status) {
      // client-node is large: loaded only in agent mode, as the API source is.
      const [{ loadKubeConfig }, { GatewayStatusWriter }] = await Promise.all([import('../cluster/kubernetes.js'), import('./status.js')]);
      this.status = new GatewayStatusWriter(loadKubeConfig(this.statusSource!), state.nodeName, this.log);
      this.status.start();
    }
    await this.status.publish(plan, state, state.node?.addresses ?? []);
  }

  /** Each problem is logged once, when it appears; the gauge holds how many there are now. */
  private report(problems: GatewayPlan['problems']): void {
    const now = new Set(problems.map((problem) => `${problem.object}: ${problem.reason}`));
    for (const text of now) if (!this.reported.has(text)) this.log.error(`gateway: not served: ${text}`);
    this.reported = now;
    this.problems.set(now.size);
  }

  async stop(): Promise<void> {
    await this.status?.stop();
    await Promise.all([this.http?.proxy.stop(), this.https?.proxy.stop()]);
  }
}
