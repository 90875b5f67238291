import type { NodeContext } from '../cluster/topology.js';
import type { ServicePortView } from '../cluster/service-ports.js';
import {
  type HeaderEdits, type HostRoute, type MatchType, type PathRoute, type RouteActions, type RouteTable, type RouteTableChanges,
  type TlsSecretInfo, markServed, matchOf, resolveBackend,
} from '../ingress/index.js';
import {
  type BackendReference, GATEWAY_CONTROLLER, GATEWAY_GROUP, type GatewayClassInfo, type GatewayInfo, type HTTPRouteInfo,
  type HTTPRouteMatchInfo, type HTTPRouteRuleInfo, type HeaderModifierInfo, type ListenerInfo, type ParentReference, type ReferenceGrantInfo, selects,
} from './objects.js';

// The Gateway API planner, pure: the served GatewayClass's Gateways, the HTTPRoutes attached to
// their listeners, ReferenceGrants, TLS Secrets and the Services' endpoints → the ingress route
// plan (one table for the HTTP listeners, one for the HTTPS ones, served by the same dataplane as
// Ingress) and the status conditions of every object it serves, with the spec's reasons.

export interface GatewayPlanInput {
  classes: ReadonlyMap<string, GatewayClassInfo>;
  gateways: ReadonlyMap<string, GatewayInfo>;
  routes: ReadonlyMap<string, HTTPRouteInfo>;
  grants: Iterable<ReferenceGrantInfo>;
  /** Namespace name → its labels (allowedRoutes' Selector). */
  namespaceLabels(name: string): Record<string, string> | undefined;
  secrets: ReadonlyMap<string, TlsSecretInfo | null>;
  servicePorts(key: string): ServicePortView[];
  node: NodeContext;
  /** --gateway-class. */
  className: string;
  /** The ports kubenft serves HTTP and HTTPS listeners on (undefined: that listener is off). */
  httpPort?: number;
  httpsPort?: number;
  /** Filter types the dataplane cannot carry → why: a route using one is not accepted (UnsupportedValue). */
  unsupportedFilters?: ReadonlyMap<string, string>;
  /** Why the dataplane cannot run a RegularExpression match (its engine refuses it), or undefined: a route with one is not accepted (UnsupportedValue). */
  expressionProblem?: (expression: RouteExpression) => string | undefined;
}

/** A RegularExpression match of an HTTPRoute: where it is, its source, and whether it must match the whole value (paths) or anywhere in it (headers, query parameters). */
export interface RouteExpression { field: string; source: string; wholeValue: boolean }

/** Every RegularExpression match of a route. */
export function* routeExpressions(route: HTTPRouteInfo): Generator<RouteExpression> {
  for (const [ruleIndex, rule] of route.rules.entries()) {
    for (const [matchIndex, match] of rule.matches.entries()) {
      const at = `spec.rules[${ruleIndex}].matches[${matchIndex}]`;
      if (match.path.type === 'RegularExpression') yield { field: `${at}.path.value`, source: match.path.value, wholeValue: true };
      for (const [kind, list] of [['headers', match.headers], ['queryParams', match.queryParams]] as const) {
        for (const [index, value] of list.entries()) if (value.type === 'RegularExpression') yield { field: `${at}.${kind}[${index}].value`, source: value.value, wholeValue: false };
      }
    }
  }
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
}

export interface ListenerStatus {
  name: string;
  supportedKinds: { group: string; kind: string }[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  namespace: string;
  name: string;
  conditions: Condition[];
  listeners: ListenerStatus[];
}

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions: Condition[];
}

export interface RouteStatus {
  namespace: string;
  name: string;
  parents: RouteParentStatus[];
}

/** Where a host and path lead (`kubenft services`, explain): the Gateway and listener, the HTTPRoute and its rule. */
export interface RouteOrigin {
  gateway: string;
  listener: string;
  protocol: 'HTTP' | 'HTTPS';
  host: string;
  route: string;
  rule: number;
  match: string;
}

export interface GatewayPlan {
  http: RouteTable;
  https: RouteTable;
  /** The certificate of an HTTPS listener without hostname: served for SNI names no listener names. */
  defaultCertificate?: TlsSecretInfo;
  classStatus?: { name: string; conditions: Condition[] };
  gateways: GatewayStatus[];
  routes: RouteStatus[];
  /** Objects (or parts) not served, and why: what the log and `kubenft services` say. */
  problems: { object: string; reason: string }[];
  /** Every planned match's origin (built on demand: the agent's syncs never ask). */
  origins(): RouteOrigin[];
  /** A planned path route's origin (the router hands back the routes of the tables). */
  originOf(path: PathRoute): RouteOrigin | undefined;
  /** The Services (namespace/name) the routes name, found or not: a change to one can change the plan. */
  services: { has(service: string): boolean };
  /** What changed in each table since the planner's previous plan; undefined when the tables are new (send them whole). */
  changes?: { http: RouteTableChanges; https: RouteTableChanges };
}

const condition = (type: string, ok: boolean, reason: string, message: string, generation: number): Condition => ({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation });

const emptyTable = (): RouteTable => ({ hosts: {}, wildcards: {}, backends: {}, certificates: {}, tlsHosts: {}, tlsWildcards: {}, served: [], wildcardsMatchSubdomains: true });

const byAge = <T extends { created: number; namespace: string; name: string }>(a: T, b: T) => {
  if (a.created !== b.created) return a.created - b.created;
  const [left, right] = [`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`];
  return left < right ? -1 : left > right ? 1 : 0;
};

/** Whether a ReferenceGrant in the target's namespace lets `from` (group, kind, namespace) refer to it. */
function granted(grants: ReferenceGrantInfo[], from: { group: string; kind: string; namespace: string }, to: { group: string; kind: string; namespace: string; name: string }): boolean {
  return grants.some((grant) => grant.namespace === to.namespace
    && grant.from.some((entry) => entry.group === from.group && entry.kind === from.kind && entry.namespace === from.namespace)
    && grant.to.some((entry) => entry.group === to.group && entry.kind === to.kind && (entry.name === undefined || entry.name === to.name)));
}

/** `*.s` matches any name ending in `.s` (Gateway API wildcards span labels). */
const wildcardCovers = (wildcard: string, name: string) => name.endsWith(wildcard.slice(1));

/**
 * The hostnames a route serves on a listener: the intersection of the listener's hostname and the
 * route's (the more specific of each matching pair); [''] for any host; [] for none in common.
 */
export function intersectHostnames(listener: string | undefined, route: string[]): string[] {
  if (listener === undefined) return route.length === 0 ? [''] : route;
  if (route.length === 0) return [listener];
  const result = new Set<string>();
  for (const name of route) {
    if (name === listener) result.add(name);
    else if (listener.startsWith('*.') && wildcardCovers(listener, name)) result.add(name);
    else if (name.startsWith('*.') && wildcardCovers(name, listener)) result.add(listener);
  }
  return [...result];
}

interface ServedListener {
  gateway: GatewayInfo;
  listener: ListenerInfo;
  protocol: 'HTTP' | 'HTTPS';
  status: ListenerStatus;
  /** It takes routes (accepted, not conflicted). */
  valid: boolean;
  kinds: { group: string; kind: string }[];
}

/** What one route contributes to a plan: kept between plans while the route, what it reads and the Gateways stay the same. */
interface RouteResult {
  route: HTTPRouteInfo;
  status: RouteStatus;
  /** The listeners it attached to, namespace/gateway/listener, once per parent. */
  attached: string[];
  matches: PlannedMatch[];
  /** Backend key → endpoints, per protocol table. */
  backends: { HTTP: Map<string, string[]>; HTTPS: Map<string, string[]> };
  problems: GatewayPlan['problems'];
  /** The Services (namespace/name) its backends name: a change to one replans it. */
  services: string[];
}

interface PlannedMatch {
  host: string;
  protocol: 'HTTP' | 'HTTPS';
  route: HTTPRouteInfo;
  ruleIndex: number;
  matchIndex: number;
  path: PathRoute;
  origin: RouteOrigin;
}

function headerEdits(modifier: HeaderModifierInfo): HeaderEdits {
  return { set: modifier.set, add: modifier.add, remove: modifier.remove.map((name) => name.toLowerCase()) };
}

const PATH_TYPES: Record<HTTPRouteMatchInfo['path']['type'], MatchType> = { Exact: 'Exact', PathPrefix: 'Prefix', RegularExpression: 'RegularExpression' };

/** The spec's precedence among matches of one host: Exact, then the longest prefix, method, most header matches, most query matches, then the oldest route, its name, rule and match order. */
function precedence(a: PlannedMatch, b: PlannedMatch): number {
  const rank = (type: MatchType) => (type === 'Exact' ? 0 : type === 'RegularExpression' ? 1 : 2);
  const conditions = (match: PlannedMatch) => match.path.conditions;
  return rank(a.path.type) - rank(b.path.type)
    || b.path.match.length - a.path.match.length
    || Number(conditions(b)?.method !== undefined) - Number(conditions(a)?.method !== undefined)
    || (conditions(b)?.headers?.length ?? 0) - (conditions(a)?.headers?.length ?? 0)
    || (conditions(b)?.query?.length ?? 0) - (conditions(a)?.query?.length ?? 0)
    || byAge(a.route, b.route)
    || a.ruleIndex - b.ruleIndex
    || a.matchIndex - b.matchIndex;
}

/** The Gateways of the served class and their listeners, judged, for one plan. */
interface ServedGateways {
  classStatus?: { name: string; conditions: Condition[] };
  gateways: { gateway: GatewayInfo; entries: ServedListener[] }[];
  /** namespace/name of a Gateway → its listeners. */
  listeners: Map<string, ServedListener[]>;
}

/** One plan's reading of the input: the listeners, their certificates, and each route's result on them (what GatewayPlanner keeps). */
class Planner {
  readonly grants: ReferenceGrantInfo[];
  /** The listeners' problems (a route's are in its result). */
  readonly problems: GatewayPlan['problems'] = [];
  /** The HTTPS listeners' certificates, as the HTTPS table carries them. */
  readonly tls: Pick<RouteTable, 'certificates' | 'tlsHosts' | 'tlsWildcards'> = { certificates: {}, tlsHosts: {}, tlsWildcards: {} };
  defaultCertificate: TlsSecretInfo | undefined;

  constructor(private readonly input: GatewayPlanInput) {
    this.grants = [...input.grants];
  }

  servedGateways(): ServedGateways {
    const { input } = this;
    const ourClass = input.classes.get(input.className);
    const served = ourClass?.controller === GATEWAY_CONTROLLER;
    const classStatus = served
      ? { name: ourClass.name, conditions: [condition('Accepted', true, 'Accepted', `served by ${GATEWAY_CONTROLLER}`, ourClass.generation)] }
      : undefined;
    const gateways = served ? [...input.gateways.values()].filter((gateway) => gateway.className === input.className).sort(byAge) : [];
    const listeners = new Map<string, ServedListener[]>();
    const statuses = gateways.map((gateway) => {
      const entries = this.listenersOf(gateway);
      listeners.set(`${gateway.namespace}/${gateway.name}`, entries);
      return { gateway, entries };
    });
    return { ...(classStatus ? { classStatus } : {}), gateways: statuses, listeners };
  }

  /** What every route's result depends on besides the route and its Services, compared item by item between plans (each a value, not an object). */
  world(served: ServedGateways): unknown[] {
    const entries = [...served.listeners.values()].flat();
    // A Gateway by what routes read of it, not by identity: its status, which this controller writes
    // on every attached route's change (attachedRoutes), would otherwise replan every route each time.
    const gateways = served.gateways.map(({ gateway }) => JSON.stringify({ ...gateway, statusText: undefined }));
    // Grants and labels by content too: an informer's relist hands over equal objects anew.
    const grants = this.grants.map((grant) => JSON.stringify(grant)).sort();
    const world: unknown[] = [this.input.className, this.input.httpPort, this.input.httpsPort, ...gateways, ...grants, ...entries.map((entry) => entry.valid)];
    if (entries.some((entry) => entry.listener.allowedNamespaces.from === 'Selector')) {
      // Each routes' namespace once: a route added beside others of its namespace keeps the world.
      const namespaces = [...new Set([...this.input.routes.values()].map((route) => route.namespace))].sort();
      for (const namespace of namespaces) world.push(namespace, JSON.stringify(this.input.namespaceLabels(namespace)));
    }
    return world;
  }

  gatewayStatus(gateway: GatewayInfo, entries: ServedListener[]): GatewayStatus {
    const valid = entries.filter((entry) => entry.valid).length;
    const generation = gateway.generation;
    const accepted = gateway.requestsAddresses
      ? condition('Accepted', false, 'UnsupportedAddress', 'spec.addresses: kubenft serves a Gateway on the nodes\' --gateway-http-address and --gateway-https-address only', generation)
      : condition('Accepted', valid > 0, valid === entries.length ? 'Accepted' : 'ListenersNotValid', valid === entries.length ? 'accepted' : `${entries.length - valid} of ${entries.length} listeners are not valid`, generation);
    const programmed = condition('Programmed', accepted.status === 'True', accepted.status === 'True' ? 'Programmed' : 'Invalid', accepted.status === 'True' ? 'served by every node\'s kubenft' : 'not accepted', generation);
    return { namespace: gateway.namespace, name: gateway.name, conditions: [accepted, programmed], listeners: entries.map((entry) => entry.status) };
  }

  /** A Gateway's listeners, each judged: protocol and port served here, route kinds, certificates, conflicts. */
  private listenersOf(gateway: GatewayInfo): ServedListener[] {
    const generation = gateway.generation;
    const key = `${gateway.namespace}/${gateway.name}`;
    const seen = new Map<string, string>();
    return gateway.listeners.map((listener) => {
      const protocol = listener.protocol === 'HTTP' || listener.protocol === 'HTTPS' ? listener.protocol : undefined;
      const servedPort = protocol === 'HTTP' ? this.input.httpPort : protocol === 'HTTPS' ? this.input.httpsPort : undefined;
      let accepted = condition('Accepted', true, 'Accepted', 'accepted', generation);
      if (!protocol) accepted = condition('Accepted', false, 'UnsupportedProtocol', `protocol ${listener.protocol}: kubenft serves HTTP and HTTPS listeners`, generation);
      else if (servedPort === undefined) accepted = condition('Accepted', false, 'PortUnavailable', `kubenft serves no ${protocol} listener (--gateway-${protocol.toLowerCase()}-address is empty)`, generation);
      else if (listener.port !== servedPort) accepted = condition('Accepted', false, 'PortUnavailable', `kubenft serves ${protocol} on port ${servedPort} (--gateway-${protocol.toLowerCase()}-address), not ${listener.port}`, generation);
      else if (protocol === 'HTTPS' && listener.tlsMode !== 'Terminate') accepted = condition('Accepted', false, 'UnsupportedValue', `tls.mode ${listener.tlsMode}: HTTPS listeners terminate TLS`, generation);
      const identity = `${listener.protocol}/${listener.port}/${listener.hostname ?? ''}`;
      const conflicting = seen.get(identity);
      seen.set(identity, listener.name);
      const conflicted = conflicting === undefined
        ? condition('Conflicted', false, 'NoConflicts', 'no conflicts', generation)
        : condition('Conflicted', true, 'HostnameConflict', `listener ${conflicting} has the same protocol, port and hostname`, generation);
      const requested = listener.allowedKinds ?? [{ group: GATEWAY_GROUP, kind: 'HTTPRoute' }];
      const kinds = requested.filter((kind) => kind.group === GATEWAY_GROUP && kind.kind === 'HTTPRoute');
      let resolved = condition('ResolvedRefs', true, 'ResolvedRefs', 'resolved', generation);
      if (kinds.length < requested.length) resolved = condition('ResolvedRefs', false, 'InvalidRouteKinds', `route kinds ${requested.filter((kind) => !kinds.includes(kind)).map((kind) => kind.kind).join(', ')} are not served (HTTPRoute is)`, generation);
      let certificate: TlsSecretInfo | undefined;
      if (protocol === 'HTTPS' && accepted.status === 'True') {
        const found = this.certificateOf(gateway, listener);
        if (typeof found === 'string') {
          const [reason, message] = found.split(': ');
          resolved = condition('ResolvedRefs', false, reason, message, generation);
        } else certificate = found;
      }
      const valid = accepted.status === 'True' && conflicted.status === 'False' && (protocol !== 'HTTPS' || certificate !== undefined);
      const programmed = condition('Programmed', valid, valid ? 'Programmed' : 'Invalid', valid ? 'programmed' : 'not served: see Accepted, ResolvedRefs and Conflicted', generation);
      if (!valid) this.problems.push({ object: `Gateway ${key} listener ${listener.name}`, reason: [accepted, resolved, conflicted].filter((each) => each.status !== (each.type === 'Conflicted' ? 'False' : 'True')).map((each) => `${each.reason}: ${each.message}`).join('; ') });
      if (valid && certificate) this.addCertificate(listener, certificate);
      return {
        gateway, listener, protocol: protocol ?? 'HTTP', valid, kinds,
        status: { name: listener.name, supportedKinds: kinds, attachedRoutes: 0, conditions: [accepted, resolved, programmed, conflicted] },
      };
    });
  }

  /** The listener's certificate, or the reason (Reason: message) it has none. */
  private certificateOf(gateway: GatewayInfo, listener: ListenerInfo): TlsSecretInfo | string {
    const [ref] = listener.certificateRefs;
    if (!ref) return 'InvalidCertificateRef: tls.certificateRefs is empty';
    if (listener.certificateRefs.length > 1) return 'InvalidCertificateRef: kubenft serves one certificate per listener';
    if (ref.group !== '' || ref.kind !== 'Secret') return `InvalidCertificateRef: ${ref.group}/${ref.kind} is not a Secret`;
    const namespace = ref.namespace ?? gateway.namespace;
    if (namespace !== gateway.namespace && !granted(this.grants, { group: GATEWAY_GROUP, kind: 'Gateway', namespace: gateway.namespace }, { group: '', kind: 'Secret', namespace, name: ref.name })) {
      return `RefNotPermitted: Secret ${namespace}/${ref.name} is in another namespace and no ReferenceGrant allows it`;
    }
    const secret = this.input.secrets.get(`${namespace}/${ref.name}`);
    if (!secret) return `InvalidCertificateRef: Secret ${namespace}/${ref.name} ${secret === null ? 'is not of type kubernetes.io/tls' : 'not found'}`;
    return secret;
  }

  private addCertificate(listener: ListenerInfo, secret: TlsSecretInfo): void {
    const table = this.tls;
    const key = `${secret.namespace}/${secret.name}`;
    table.certificates[key] = { cert: secret.cert, key: secret.key };
    if (listener.hostname === undefined) {
      this.defaultCertificate ??= secret;
      return;
    }
    // The oldest Gateway's listener keeps a hostname's certificate.
    const wildcard = listener.hostname.startsWith('*.');
    const names = wildcard ? table.tlsWildcards : table.tlsHosts;
    names[wildcard ? listener.hostname.slice(2) : listener.hostname] ??= key;
  }

  /** One route's parents: each judged, and its rules planned on the listeners that accept it. */
  attach(route: HTTPRouteInfo, listeners: Map<string, ServedListener[]>): RouteResult {
    const parents: RouteParentStatus[] = [];
    const generation = route.generation;
    const resolved = this.resolveRules(route);
    const result: RouteResult = { route, status: { namespace: route.namespace, name: route.name, parents }, attached: [], matches: [], backends: { HTTP: new Map(), HTTPS: new Map() }, problems: [], services: resolved.services };
    const unsupported = this.unsupportedValueOf(route);
    for (const parent of route.parentRefs) {
      if (parent.group !== GATEWAY_GROUP || parent.kind !== 'Gateway') continue;
      const gatewayKey = `${parent.namespace ?? route.namespace}/${parent.name}${parent.sectionName ? ` (${parent.sectionName})` : ''}`;
      const candidates = listeners.get(`${parent.namespace ?? route.namespace}/${parent.name}`);
      // Not a Gateway of ours: another controller's status to write.
      if (!candidates) continue;
      const named = candidates.filter((entry) => (parent.sectionName === undefined || entry.listener.name === parent.sectionName) && (parent.port === undefined || entry.listener.port === parent.port));
      const allowing = named.filter((entry) => entry.valid && this.allows(entry, route));
      const attached = allowing.map((entry) => ({ entry, hosts: intersectHostnames(entry.listener.hostname, route.hostnames) })).filter(({ hosts }) => hosts.length > 0);
      let accepted: Condition;
      if (named.length === 0) accepted = condition('Accepted', false, 'NoMatchingParent', `Gateway ${gatewayKey} has no listener${parent.sectionName ? ` ${parent.sectionName}` : ''}${parent.port ? ` on port ${parent.port}` : ''}`, generation);
      else if (allowing.length === 0) accepted = condition('Accepted', false, 'NotAllowedByListeners', `no listener of Gateway ${gatewayKey} allows this route (namespaces, kinds) or is valid`, generation);
      else if (attached.length === 0) accepted = condition('Accepted', false, 'NoMatchingListenerHostname', `no hostname of the route intersects a listener's of Gateway ${gatewayKey}`, generation);
      else if (unsupported) accepted = condition('Accepted', false, 'UnsupportedValue', unsupported, generation);
      else accepted = condition('Accepted', true, 'Accepted', 'accepted', generation);
      for (const { entry, hosts } of accepted.status === 'True' ? attached : []) {
        result.attached.push(`${entry.gateway.namespace}/${entry.gateway.name}/${entry.listener.name}`);
        for (const host of hosts) this.addRules(result, resolved, entry, host);
      }
      if (accepted.status === 'False') result.problems.push({ object: `HTTPRoute ${route.namespace}/${route.name}`, reason: `parent ${gatewayKey}: ${accepted.reason}: ${accepted.message}` });
      parents.push({ parentRef: parent, controllerName: GATEWAY_CONTROLLER, conditions: [accepted, resolved.condition] });
    }
    return result;
  }

  /** Why the dataplane cannot carry the route (a filter it lacks, an expression its engine refuses), or undefined. */
  private unsupportedValueOf(route: HTTPRouteInfo): string | undefined {
    const { unsupportedFilters, expressionProblem } = this.input;
    for (const [ruleIndex, rule] of unsupportedFilters ? route.rules.entries() : []) {
      for (const filter of rule.filters) {
        const why = unsupportedFilters!.get(filter.type);
        if (why !== undefined) return `spec.rules[${ruleIndex}] has a ${filter.type} filter: ${why}`;
      }
    }
    for (const expression of expressionProblem ? routeExpressions(route) : []) {
      const why = expressionProblem!(expression);
      if (why !== undefined) return `${expression.field} ${JSON.stringify(expression.source)}: ${why}`;
    }
    return undefined;
  }

  private allows(entry: ServedListener, route: HTTPRouteInfo): boolean {
    if (!entry.kinds.some((kind) => kind.kind === 'HTTPRoute')) return false;
    const { from, selector } = entry.listener.allowedNamespaces;
    if (from === 'All') return true;
    if (from === 'Same') return route.namespace === entry.gateway.namespace;
    const labels = this.input.namespaceLabels(route.namespace);
    return labels !== undefined && selects(selector!, labels);
  }

  /** Every rule's actions with its backends resolved, and the route's ResolvedRefs condition. */
  private resolveRules(route: HTTPRouteInfo): { rules: RouteActions[]; backends: Map<string, string[]>; condition: Condition; services: string[] } {
    const backends = new Map<string, string[]>();
    const services = new Set<string>();
    let failure: { reason: string; message: string } | undefined;
    const resolve = (ref: BackendReference): string | undefined => {
      services.add(`${ref.namespace ?? route.namespace}/${ref.name}`);
      const result = this.resolveRef(route, ref);
      if (typeof result !== 'string') {
        backends.set(result.key, result.endpoints);
        return result.key;
      }
      const [reason, message] = [result.slice(0, result.indexOf(': ')), result.slice(result.indexOf(': ') + 2)];
      failure ??= { reason, message };
      return undefined;
    };
    const rules = route.rules.map((rule) => this.actionsOf(rule, resolve));
    const condition_ = failure
      ? condition('ResolvedRefs', false, failure.reason, failure.message, route.generation)
      : condition('ResolvedRefs', true, 'ResolvedRefs', 'resolved', route.generation);
    return { rules, backends, condition: condition_, services: [...services] };
  }

  private resolveRef(route: HTTPRouteInfo, ref: BackendReference): { key: string; endpoints: string[] } | string {
    if (ref.group !== '' || ref.kind !== 'Service') return `InvalidKind: backend ${ref.group}/${ref.kind} ${ref.name}: kubenft routes to Services`;
    const namespace = ref.namespace ?? route.namespace;
    if (namespace !== route.namespace && !granted(this.grants, { group: GATEWAY_GROUP, kind: 'HTTPRoute', namespace: route.namespace }, { group: '', kind: 'Service', namespace, name: ref.name })) {
      return `RefNotPermitted: Service ${namespace}/${ref.name} is in another namespace and no ReferenceGrant allows it`;
    }
    const result = resolveBackend(this.input, namespace, { service: ref.name, port: ref.port! });
    return typeof result === 'string' ? `BackendNotFound: ${namespace}/${result}` : result;
  }

  private actionsOf(rule: HTTPRouteRuleInfo, resolve: (ref: BackendReference) => string | undefined): RouteActions {
    const actions: RouteActions = {};
    for (const filter of rule.filters) {
      switch (filter.type) {
        case 'RequestHeaderModifier': actions.requestHeaders = headerEdits(filter.modifier); break;
        case 'ResponseHeaderModifier': actions.responseHeaders = headerEdits(filter.modifier); break;
        case 'RequestRedirect': {
          const { type: _type, ...redirect } = filter;
          actions.redirect = redirect;
          break;
        }
        case 'URLRewrite': {
          const { type: _type, ...rewrite } = filter;
          actions.rewrite = rewrite;
          break;
        }
        case 'RequestMirror': {
          const key = resolve(filter.backend);
          if (key !== undefined) (actions.mirrors ??= []).push(key);
          break;
        }
      }
    }
    if (!actions.redirect) {
      actions.backends = rule.backendRefs.map((ref) => {
        const backend = resolve(ref);
        return { ...(backend === undefined ? {} : { backend }), weight: ref.weight };
      });
    }
    if (rule.timeouts.requestMs) actions.requestTimeoutMs = rule.timeouts.requestMs;
    if (rule.timeouts.backendRequestMs) actions.backendTimeoutMs = rule.timeouts.backendRequestMs;
    return actions;
  }

  private addRules(result: RouteResult, resolved: ReturnType<Planner['resolveRules']>, entry: ServedListener, host: string): void {
    const { route } = result;
    for (const [key, endpoints] of resolved.backends) result.backends[entry.protocol].set(key, endpoints);
    const routeKey = `${route.namespace}/${route.name}`;
    route.rules.forEach((rule, ruleIndex) => {
      const actions = resolved.rules[ruleIndex];
      rule.matches.forEach((match, matchIndex) => {
        const type = PATH_TYPES[match.path.type];
        const conditions = {
          ...(match.method ? { method: match.method } : {}),
          ...(match.headers.length ? { headers: match.headers.map(({ name, value, type: kind }) => ({ name, value, ...(kind === 'RegularExpression' ? { regex: true } : {}) })) } : {}),
          ...(match.queryParams.length ? { query: match.queryParams.map(({ name, value, type: kind }) => ({ name, value, ...(kind === 'RegularExpression' ? { regex: true } : {}) })) } : {}),
        };
        const first = actions.backends?.find((backend) => backend.backend !== undefined)?.backend;
        const path: PathRoute = {
          type, path: match.path.value, match: matchOf(type, match.path.value), ingress: routeKey, backend: first ?? '',
          ...(Object.keys(conditions).length ? { conditions } : {}), actions,
        };
        result.matches.push({
          host, protocol: entry.protocol, route, ruleIndex, matchIndex, path,
          origin: { gateway: `${entry.gateway.namespace}/${entry.gateway.name}`, listener: entry.listener.name, protocol: entry.protocol, host, route: routeKey, rule: ruleIndex, match: `${match.path.type} ${match.path.value}` },
        });
      });
    });
  }

}

/** A host's matches (every route's on it) and their precedence order, kept until one of them changes. */
interface HostEntry {
  matches: Set<PlannedMatch>;
  sorted: PlannedMatch[] | undefined;
}

/** One table's state between plans. */
interface TableState {
  table: RouteTable;
  hosts: Map<string, HostEntry>;
  /** The hosts that cover others: `*.` names and '' (any host). */
  covering: Set<string>;
  /** Backend key → how many route results name it. */
  backendUsers: Map<string, number>;
}

const emptyTableState = (): TableState => ({ table: emptyTable(), hosts: new Map(), covering: new Set(), backendUsers: new Map() });

const PROTOCOLS = ['HTTP', 'HTTPS'] as const;
type Protocol = typeof PROTOCOLS[number];

/** What one plan touched in a table: hosts whose matches changed, backends named or no longer named (with the newest endpoints). */
interface Touched {
  hosts: Set<string>;
  backends: Map<string, string[] | undefined>;
}

const emptyChanges = (): RouteTableChanges => ({ hosts: {}, wildcards: {}, defaultBackend: null, backends: {}, certificates: {}, tlsHosts: {}, tlsWildcards: {} });

const sameEndpoints = (a: string[], b: string[]) => a === b || (a.length === b.length && a.every((endpoint, index) => endpoint === b[index]));
const samePem = (a: { cert: string; key: string }, b: { cert: string; key: string }) => a.cert === b.cert && a.key === b.key;

/** Puts `after` into `target`, writing what differs (null: gone) into `changes`. Small records only: the listeners' certificates. */
function assignRecord<V>(target: Record<string, V>, after: Record<string, V>, changes: Record<string, V | null>, same: (a: V, b: V) => boolean = (a, b) => a === b): void {
  for (const key of Object.keys(target)) {
    if (Object.hasOwn(after, key)) continue;
    delete target[key];
    changes[key] = null;
  }
  for (const [key, value] of Object.entries(after)) {
    if (Object.hasOwn(target, key) && same(target[key], value)) continue;
    target[key] = value;
    changes[key] = value;
  }
}

/** The route tables and statuses of one input. */
export function planGateways(input: GatewayPlanInput): GatewayPlan {
  return new GatewayPlanner().plan(input, 'full');
}

/**
 * The planner, incremental as the ingress planner is (src/ingress/routes.ts): it keeps each route's
 * result, each host's matches and each table between plans, replans only the routes that changed
 * or name a changed Service, and rebuilds only the hosts their matches are on (and the hosts a
 * changed wildcard or any-host route covers), so a new route costs its own hosts, not the other
 * routes'. Everything is replanned when what every route reads changed: a Gateway, a grant, a
 * selected Namespace, a listener's validity, or a full sync. Still a function of its inputs: a plan
 * equals planGateways of the same input. The tables are updated in place; `changes` says what
 * changed in them (undefined: the tables are new, send them whole).
 */
export class GatewayPlanner {
  private world: unknown[] = [];
  private readonly results = new Map<string, RouteResult>();
  private tables: Record<Protocol, TableState> = { HTTP: emptyTableState(), HTTPS: emptyTableState() };
  /** Service (namespace/name) → the routes naming it. */
  private readonly routesByService = new Map<string, Set<string>>();
  /** namespace/gateway/listener → routes attached. */
  private readonly attachedRoutes = new Map<string, number>();

  plan(input: GatewayPlanInput, changedServices: ReadonlySet<string> | 'full'): GatewayPlan {
    const planner = new Planner(input);
    const served = planner.servedGateways();
    const world = planner.world(served);
    const whole = changedServices === 'full' || world.length !== this.world.length || world.some((item, index) => item !== this.world[index]);
    this.world = world;
    if (whole) this.reset();
    const touched: Record<Protocol, Touched> = { HTTP: { hosts: new Set(), backends: new Map() }, HTTPS: { hosts: new Set(), backends: new Map() } };
    for (const [key, route] of this.dirtyRoutes(input, whole ? 'full' : changedServices)) {
      const before = this.results.get(key);
      if (before) this.remove(key, before, touched);
      if (!route) continue;
      const after = planner.attach(route, served.listeners);
      this.add(key, after, touched);
    }
    const changes = { http: emptyChanges(), https: emptyChanges() };
    for (const protocol of PROTOCOLS) this.rebuild(this.tables[protocol], touched[protocol], protocol === 'HTTP' ? changes.http : changes.https);
    const https = this.tables.HTTPS.table;
    assignRecord(https.certificates, planner.tls.certificates, changes.https.certificates, samePem);
    assignRecord(https.tlsHosts, planner.tls.tlsHosts, changes.https.tlsHosts);
    assignRecord(https.tlsWildcards, planner.tls.tlsWildcards, changes.https.tlsWildcards);

    for (const { gateway, entries } of served.gateways) {
      for (const entry of entries) entry.status.attachedRoutes = this.attachedRoutes.get(`${gateway.namespace}/${gateway.name}/${entry.listener.name}`) ?? 0;
    }
    const routes: RouteStatus[] = [];
    const problems = [...planner.problems];
    for (const result of this.results.values()) {
      if (result.status.parents.length > 0) routes.push(result.status);
      if (result.problems.length > 0) problems.push(...result.problems);
    }
    const results = this.results;
    const allMatches = () => [...results.values()].flatMap((result) => result.matches);
    return {
      http: this.tables.HTTP.table,
      https,
      ...(planner.defaultCertificate ? { defaultCertificate: planner.defaultCertificate } : {}),
      ...(served.classStatus ? { classStatus: served.classStatus } : {}),
      gateways: served.gateways.map(({ gateway, entries }) => planner.gatewayStatus(gateway, entries)),
      routes,
      problems,
      origins: () => allMatches().map((match) => match.origin),
      originOf: (path) => allMatches().find((match) => match.path === path)?.origin,
      services: this.routesByService,
      changes: whole ? undefined : changes,
    };
  }

  private reset(): void {
    this.results.clear();
    this.tables = { HTTP: emptyTableState(), HTTPS: emptyTableState() };
    this.routesByService.clear();
    this.attachedRoutes.clear();
  }

  /** The routes to replan, with their object now (undefined: gone): new, changed or gone ones, and those naming a changed Service. */
  private dirtyRoutes(input: GatewayPlanInput, changedServices: ReadonlySet<string> | 'full'): Map<string, HTTPRouteInfo | undefined> {
    const dirty = new Map<string, HTTPRouteInfo | undefined>();
    for (const [key, route] of input.routes) if (changedServices === 'full' || this.results.get(key)?.route !== route) dirty.set(key, route);
    for (const key of this.results.keys()) if (!input.routes.has(key)) dirty.set(key, undefined);
    if (changedServices !== 'full') {
      for (const service of changedServices) for (const key of this.routesByService.get(service) ?? []) if (!dirty.has(key)) dirty.set(key, input.routes.get(key));
    }
    return dirty;
  }

  private add(key: string, result: RouteResult, touched: Record<Protocol, Touched>): void {
    this.results.set(key, result);
    for (const match of result.matches) {
      const state = this.tables[match.protocol];
      let entry = state.hosts.get(match.host);
      if (!entry) state.hosts.set(match.host, (entry = { matches: new Set(), sorted: undefined }));
      entry.matches.add(match);
      entry.sorted = undefined;
      if (match.host === '' || match.host.startsWith('*.')) state.covering.add(match.host);
      touched[match.protocol].hosts.add(match.host);
    }
    for (const protocol of PROTOCOLS) {
      for (const [backend, endpoints] of result.backends[protocol]) {
        const users = this.tables[protocol].backendUsers;
        users.set(backend, (users.get(backend) ?? 0) + 1);
        touched[protocol].backends.set(backend, endpoints);
      }
    }
    for (const service of result.services) {
      let routes = this.routesByService.get(service);
      if (!routes) this.routesByService.set(service, (routes = new Set()));
      routes.add(key);
    }
    for (const id of result.attached) this.attachedRoutes.set(id, (this.attachedRoutes.get(id) ?? 0) + 1);
    const accepted = result.status.parents.some((parent) => parent.conditions[0].status === 'True');
    if (accepted) for (const protocol of PROTOCOLS) markServed(this.tables[protocol].table.served, key, true);
  }

  private remove(key: string, result: RouteResult, touched: Record<Protocol, Touched>): void {
    this.results.delete(key);
    for (const match of result.matches) {
      const state = this.tables[match.protocol];
      const entry = state.hosts.get(match.host)!;
      entry.matches.delete(match);
      entry.sorted = undefined;
      if (entry.matches.size === 0) {
        state.hosts.delete(match.host);
        state.covering.delete(match.host);
      }
      touched[match.protocol].hosts.add(match.host);
    }
    for (const protocol of PROTOCOLS) {
      for (const backend of result.backends[protocol].keys()) {
        const users = this.tables[protocol].backendUsers;
        const left = users.get(backend)! - 1;
        if (left > 0) users.set(backend, left);
        else users.delete(backend);
        if (!touched[protocol].backends.has(backend)) touched[protocol].backends.set(backend, undefined);
      }
    }
    for (const service of result.services) {
      const routes = this.routesByService.get(service)!;
      routes.delete(key);
      if (routes.size === 0) this.routesByService.delete(service);
    }
    for (const id of result.attached) this.attachedRoutes.set(id, this.attachedRoutes.get(id)! - 1);
    for (const protocol of PROTOCOLS) markServed(this.tables[protocol].table.served, key, false);
  }

  /**
   * Rebuilds the touched hosts' routes: each host's matches in precedence order, followed by those
   * of the less specific hosts that also cover it (its wildcards, longest first, then any host),
   * since the spec orders rules by hostname before path: a request falls through to them when none
   * of its own match. A touched covering host rebuilds every host it covers.
   */
  private rebuild(state: TableState, touched: Touched, changes: RouteTableChanges): void {
    const { table } = state;
    const covers = (cover: string, host: string) => host !== cover && (cover === '' || wildcardCovers(cover, host.startsWith('*.') ? host.slice(1) : host));
    const rebuilt = new Set(touched.hosts);
    const touchedCovers = [...touched.hosts].filter((host) => host === '' || host.startsWith('*.'));
    if (touchedCovers.length > 0) for (const host of state.hosts.keys()) if (touchedCovers.some((cover) => covers(cover, host))) rebuilt.add(host);
    const coveringOrder = [...state.covering].filter((host) => host !== '').sort((a, b) => b.length - a.length);
    if (state.covering.has('')) coveringOrder.push('');
    const sortedOf = (host: string) => {
      const entry = state.hosts.get(host);
      if (!entry) return [];
      entry.sorted ??= [...entry.matches].sort(precedence);
      return entry.sorted;
    };
    for (const host of rebuilt) {
      const route: HostRoute | null = state.hosts.has(host)
        ? { paths: [...sortedOf(host), ...coveringOrder.filter((cover) => covers(cover, host)).flatMap(sortedOf)].map((match) => match.path), redirectToHttps: false }
        : null;
      if (host === '') {
        if (route) table.anyHost = route;
        else delete table.anyHost;
        changes.anyHost = route;
      } else if (host.startsWith('*.')) {
        if (route) table.wildcards[host.slice(2)] = route;
        else delete table.wildcards[host.slice(2)];
        changes.wildcards[host.slice(2)] = route;
      } else {
        if (route) table.hosts[host] = route;
        else delete table.hosts[host];
        changes.hosts[host] = route;
      }
    }
    for (const [backend, endpoints] of touched.backends) {
      if (!state.backendUsers.has(backend)) {
        if (!Object.hasOwn(table.backends, backend)) continue;
        delete table.backends[backend];
        changes.backends[backend] = null;
      } else if (endpoints && !(Object.hasOwn(table.backends, backend) && sameEndpoints(table.backends[backend], endpoints))) {
        table.backends[backend] = endpoints;
        changes.backends[backend] = endpoints;
      }
    }
  }
}
