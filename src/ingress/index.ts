import type { Capability, ServiceSteering } from '../capability.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { splitHostPort } from '../kernel/addresses.js';
import { INGRESS_WATCH, IngressDataplane, ingressPlanInput } from './dataplane.js';
import type { IngressSettings } from './flags.js';
import { ingressSettings } from './settings.js';
import { type HostRoute, type RouteTable, missingSecretText, planIngress } from './routes.js';
import { cleanupHaproxy } from './haproxy/proxy.js';
import { explainIngressUrl, ingressExplanationText } from './explain.js';

export type { IngressOptions } from './dataplane.js';
/** What serves the routes: /configz shows it. */
export { chosenDataplane } from './dataplane.js';
export type { MissingSecret } from './routes.js';

// The route plan and the built-in proxy, for the Gateway API capability (src/gateway), which
// plans Gateways and HTTPRoutes into the same tables and serves them on listeners of its own.
export type {
  HeaderEdits, HostRoute, MatchType, PathRoute, RouteActions, RouteConditions, RouteTable, RouteTableChanges, ValueMatch,
} from './routes.js';
export { Router, markServed, matchOf, resolveBackend, routingHost } from './routes.js';
export { type TlsSecretInfo, normalizeTlsSecret, rulePathProblem, validHost } from './objects.js';
// How objects are read and refused, naming them (Gateway API's objects are read the same way).
export { type Context as ObjectContext, creationTime, fail, list, metadataOf, object } from './objects.js';
export { type RequestMetrics, registerRequestMetrics } from './proxy.js';
export { WorkerProxy, type WorkerProxyOptions } from './worker-proxy.js';
export type { IngressProxy } from './proxy.js';
// HAProxy, for Gateway API's listeners with --gateway-dataplane=haproxy (haproxy/gateway-rules.ts's maps and Lua router).
export { type HaproxyMetrics, HaproxyProxy, cleanupHaproxy, netnsHaproxyDir } from './haproxy/proxy.js';
export type { HaproxySettings } from './haproxy/config.js';
export { HAPROXY_UNSUPPORTED_FILTERS } from './haproxy/gateway-rules.js';
export { HaproxyExpressionCheck, routerExpression } from './haproxy/expression-check.js';

export type { IngressSettings } from './flags.js';

/** Where a request for each rule host and path goes (both dataplanes route by this table): one line each, the default backend last. */
function routeLines(table: RouteTable): string[] {
  const endpoints = (backend: string) => table.backends[backend]?.join(', ') || 'no ready endpoint: 503';
  const lines: string[] = [];
  const hosts: [string, HostRoute | undefined][] = [
    ...Object.entries(table.hosts), ...Object.entries(table.wildcards).map(([suffix, route]): [string, HostRoute] => [`*.${suffix}`, route]), ['(any other host)', table.anyHost],
  ];
  for (const [host, route] of hosts) {
    for (const path of route?.paths ?? []) lines.push(`${host} ${path.path} (${path.type}${route!.redirectToHttps ? ', http: 308 to https' : ''}) -> ${path.backend} (Ingress ${path.ingress}): ${endpoints(path.backend)}`);
  }
  const fallback = table.defaultBackend;
  lines.push(fallback ? `no rule matched -> ${fallback.backend} (defaultBackend of Ingress ${fallback.ingress}): ${endpoints(fallback.backend)}` : 'no rule matched -> 404');
  return lines;
}

/** What the Ingresses in the state would be served as: the routes, problems and missing Secrets `kubenft services` lists. */
function plannedIngress(state: ClusterState, settings: IngressSettings) {
  const { table, problems, missingSecrets } = planIngress(ingressPlanInput(state, settings.className));
  return { problems: problems.map((problem) => `${problem.object}: ${problem.reason}`), missingSecrets, routes: routeLines(table) };
}

/** The ingress controller (--ingress): a proxy on every node routes the served Ingresses. */
export const ingress = {
  ...ingressSettings,
  watch: INGRESS_WATCH,
  start: (settings: IngressSettings, { log, api }) => new IngressDataplane(settings, log, api),
  /** HAProxy outlives the agent (the next one adopts it): --cleanup stops it. */
  cleanup: { what: 'the ingress\'s HAProxy', run: (settings: IngressSettings, log) => cleanupHaproxy(settings.haproxyDir, log) },
  /** --ingress-service: new connections to that Service's load-balancer and external IPs on the listeners' ports go to the proxy. */
  steering(settings: IngressSettings): ServiceSteering | undefined {
    if (!settings.enabled || !settings.service) return undefined;
    const listeners = [settings.httpAddress, settings.httpsAddress].flatMap((text) => (text ? [splitHostPort(text)] : []));
    return { service: settings.service, listeners: listeners.map(({ host, port }) => ({ address: host, port })) };
  },
  /** Its part of `kubenft services`. */
  view: { planned: plannedIngress, missingSecretText, explainUrl: explainIngressUrl, explanationText: ingressExplanationText },
} satisfies Capability<IngressSettings>;
