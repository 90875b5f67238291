import type { Logger } from 'pino';
import { availableParallelism } from 'node:os';
import { Counter, Gauge, type Registry } from 'prom-client';
import { OptionsError, type StateChanges, type StateDataplane, type WatchNeeds } from '../capability.js';
import { type ClusterState, withNormalizers } from '../cluster/cluster-state.js';
import { GATEWAY_LISTS } from './lists.js';
import type { NamespaceInfo } from '../cluster/normalize.js';
import { normalizeNamespace } from '../cluster/normalize.js';
import { endpointPortViews } from '../cluster/service-ports.js';
import { nodeContextOf } from '../cluster/topology.js';
import { splitHostPort } from '../kernel/addresses.js';
import { findHaproxy } from '../kernel/haproxy-process.js';
import {
  HAPROXY_UNSUPPORTED_FILTERS, HaproxyExpressionCheck, type HaproxyMetrics, HaproxyProxy, type IngressProxy, type RequestMetrics, type RouteTable, type RouteTableChanges, type TlsSecretInfo,
  WorkerProxy, type WorkerProxyOptions, netnsHaproxyDir, normalizeTlsSecret, registerRequestMetrics, routerExpression,
} from '../ingress/index.js';
import {
  type GatewayClassInfo, type GatewayInfo, type HTTPRouteInfo, type ReferenceGrantInfo,
  normalizeGateway, normalizeGatewayClass, normalizeHTTPRoute, normalizeReferenceGrant,
} from './objects.js';
import { type GatewayPlan, type GatewayPlanInput, GatewayPlanner, routeExpressions } from './plan.js';
import type { GatewayStatusWriter } from './status.js';

// The Gateway API controller as a dataplane beside the rules: every sync that touches its objects
// (or a Service they route to) replans the Gateways and HTTPRoutes into two route tables, one for
// the HTTP listeners and one for the HTTPS ones, and hands each table's changes to the proxy on its
// address: the ingress's built-in dataplane (src/ingress/worker-proxy.ts), or with
// --gateway-dataplane=haproxy an HAProxy per address (src/ingress/haproxy/, its rules routed by
// gateway-rules.ts's maps, and its Lua router where a rule needs one). A route change never
// restarts a worker or closes a connection.

export interface GatewaySettings extends Omit<WorkerProxyOptions, 'name' | 'httpAddress' | 'httpsAddress'> {
  enabled: boolean;
  /** --gateway-class: the GatewayClass served. */
  className: string;
  /** host:port, or undefined when that listener is off. */
  httpAddress?: string;
  httpsAddress?: string;
  /** --gateway-dataplane: what serves the listeners. */
  dataplane: 'builtin' | 'haproxy';
  /** --gateway-haproxy-dir: the HAProxys' files, in a directory per network namespace and listener address. */
  haproxyDir: string;
}

/** The suffixes of the HAProxys' directories (one HAProxy per listener address), which --cleanup stops. */
export const HAPROXY_LISTENERS = { http: '-http', https: '-https' } as const;

export const GATEWAY_WATCH: WatchNeeds = withNormalizers(GATEWAY_LISTS, {
  GatewayClass: normalizeGatewayClass, Gateway: normalizeGateway, HTTPRoute: normalizeHTTPRoute,
  ReferenceGrant: normalizeReferenceGrant, Secret: normalizeTlsSecret, Namespace: normalizeNamespace,
});
const GATEWAY_KINDS = GATEWAY_WATCH.kinds!.map(({ kind }) => kind);

const portOf = (address: string | undefined) => (address ? splitHostPort(address).port : undefined);

/**
 * What the Gateway planner reads from the state (the agent's syncs, and `kubenft services`); on
 * HAProxy, with the agent's `expressions` (what HAProxy's PCRE2 made of the routes' expressions).
 */
export function gatewayPlanInput(state: ClusterState, settings: Pick<GatewaySettings, 'className' | 'httpAddress' | 'httpsAddress'> & Partial<Pick<GatewaySettings, 'dataplane'>>, expressions?: HaproxyExpressionCheck): GatewayPlanInput {
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
    ...(settings.dataplane === 'haproxy' ? { unsupportedFilters: HAPROXY_UNSUPPORTED_FILTERS } : {}),
    ...(expressions ? {
      expressionProblem: ({ source, wholeValue }) => {
        const problem = expressions.problem(routerExpression(source, wholeValue));
        return problem && `HAProxy's PCRE2 cannot compile it (--gateway-dataplane=haproxy): ${problem}`;
      },
    } : {}),
  };
}

const NO_HAPROXY = '--gateway-dataplane=haproxy: no haproxy on PATH: install it (Debian: apt-get install haproxy) or use --gateway-dataplane=builtin';

/** The routes' regular expressions as the Lua router compiles them (what HAProxy's PCRE2 judges). */
class RouterForms {
  /** Per route object (a changed route is a new object): a change of one route walks the others' cached forms, not their rules (a walk of 10,000 routes with 3,333 expressions: 25-46 → 4-5 ms, micro-bench at load 2). */
  private readonly byRoute = new WeakMap<HTTPRouteInfo, readonly string[]>();

  *inUse(state: ClusterState): Generator<string> {
    for (const route of state.objectsOf<HTTPRouteInfo>('HTTPRoute').values()) yield* this.of(route);
  }

  private of(route: HTTPRouteInfo): readonly string[] {
    let forms = this.byRoute.get(route);
    if (!forms) {
      forms = [...routeExpressions(route)].map(({ source, wholeValue }) => routerExpression(source, wholeValue));
      this.byRoute.set(route, forms);
    }
    return forms;
  }
}

/**
 * For `kubenft services`/`explain`: on HAProxy, its PCRE2's verdict on the state's expressions, so
 * that they show a route the dataplane would refuse as refused; undefined on the built-in.
 */
export async function judgedExpressions(state: ClusterState, settings: Pick<GatewaySettings, 'dataplane'>, log: Logger): Promise<HaproxyExpressionCheck | undefined> {
  if (settings.dataplane !== 'haproxy') return undefined;
  const haproxy = findHaproxy();
  if (!haproxy) throw new OptionsError(NO_HAPROXY);
  const check = new HaproxyExpressionCheck(haproxy, log);
  await check.learn(new RouterForms().inUse(state));
  return check;
}

/** One listener address's proxy and the table it serves. */
interface Served {
  proxy: IngressProxy;
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
  /** The haproxy binary, with --gateway-dataplane=haproxy. */
  private readonly haproxy: string | undefined;
  /** With HAProxy: which of the routes' regular expressions its PCRE2 compiles. */
  private readonly expressions: HaproxyExpressionCheck | undefined;
  private readonly routerForms = new RouterForms();

  constructor(private readonly settings: GatewaySettings, private readonly log: Logger, private readonly statusSource?: { kubeconfig?: string; master?: string }) {
    if (settings.dataplane === 'haproxy') {
      this.haproxy = findHaproxy();
      if (!this.haproxy) throw new OptionsError(NO_HAPROXY);
      this.expressions = new HaproxyExpressionCheck(this.haproxy, log);
    }
  }

  attach(_state: ClusterState, registry: Registry): void {
    const metrics = registerRequestMetrics(registry, 'gateway', 'route', 'HTTPRoute');
    const haproxyMetrics: HaproxyMetrics | undefined = this.haproxy ? {
      reloads: new Counter({ name: 'kubenft_gateway_haproxy_reloads_total', help: 'Gateway HAProxy reloads (seamless: the listeners pass over), by reason: what the runtime API could not change', labelNames: ['reason'], registers: [registry] }),
      restarts: new Counter({ name: 'kubenft_gateway_haproxy_restarts_total', help: 'Times a Gateway HAProxy was found gone and started again with the last plan', registers: [registry] }),
    } : undefined;
    const proxy = (listener: keyof typeof HAPROXY_LISTENERS, addresses: Pick<WorkerProxyOptions, 'httpAddress' | 'httpsAddress'>): Served => ({
      proxy: haproxyMetrics ? this.haproxyProxy(listener, addresses, haproxyMetrics, metrics) : new WorkerProxy({ ...this.settings, name: `gateway ${listener.toUpperCase()}`, ...addresses }, this.log, metrics),
      table: undefined,
    });
    if (this.settings.httpAddress) this.http = proxy('http', { httpAddress: this.settings.httpAddress, httpsAddress: undefined });
    if (this.settings.httpsAddress) this.https = proxy('https', { httpAddress: undefined, httpsAddress: this.settings.httpsAddress });
    this.problems = new Gauge({ name: 'kubenft_gateway_problems', help: 'Gateway listeners and HTTPRoute parents not served (invalid, not allowed, unresolved), as their status says', registers: [registry] });
  }

  /** One listener address's HAProxy, in a directory of its own: HTTP and HTTPS tables are planned apart. */
  private haproxyProxy(listener: keyof typeof HAPROXY_LISTENERS, addresses: Pick<WorkerProxyOptions, 'httpAddress' | 'httpsAddress'>, haproxyMetrics: HaproxyMetrics, metrics: RequestMetrics): IngressProxy {
    const { settings } = this;
    const listenerOf = (text: string | undefined) => (text ? splitHostPort(text) : undefined);
    return new HaproxyProxy(this.haproxy!, netnsHaproxyDir(settings.haproxyDir) + HAPROXY_LISTENERS[listener], {
      httpAddress: listenerOf(addresses.httpAddress), httpsAddress: listenerOf(addresses.httpsAddress),
      maxBodyBytes: settings.maxBodyBytes, maxHeaderBytes: settings.maxHeaderBytes,
      clientTimeoutMs: settings.clientTimeoutMs, backendTimeoutMs: settings.backendTimeoutMs, connectTimeoutMs: settings.connectTimeoutMs,
      threads: settings.workers || availableParallelism(), gatewayRules: true,
    }, this.log, haproxyMetrics, metrics);
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (this.plan && !this.concerns(changes)) return;
    if (this.expressions && (!this.plan || changes.services === 'full' || changes.kinds.has('HTTPRoute'))) await this.expressions.learn(this.routerForms.inUse(state));
    const plan = this.planner.plan(gatewayPlanInput(state, this.settings, this.expressions), changes.services);
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
