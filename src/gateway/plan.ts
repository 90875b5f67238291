import type { NodeContext } from '../cluster/topology.js';
import type { ServicePortView } from '../cluster/service-ports.js';
import {
  type HeaderEdits, type HostRoute, type MatchType, type PathRoute, type RouteActions, type RouteTable, type RouteTableChanges,
  type TlsSecretInfo, matchOf, resolveBackend,
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
  services: Set<string>;
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

/** What a planner keeps between plans (GatewayPlanner). */
interface PlanCache {
  /** The objects every route's result depends on, compared by identity: any change replans every route. */
  world: unknown[];
  results: Map<string, RouteResult>;
  /** Per table and host: its matches in the order routes were visited, and the HostRoute built from them. */
  hosts: Record<'HTTP' | 'HTTPS', Map<string, { matches: PlannedMatch[]; sorted: PlannedMatch[]; route: HostRoute }>>;
}

const emptyCache = (): PlanCache => ({ world: [], results: new Map(), hosts: { HTTP: new Map(), HTTPS: new Map() } });

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

class Planner {
  private readonly grants: ReferenceGrantInfo[];
  private readonly problems: GatewayPlan['problems'] = [];
  private readonly tables = { HTTP: emptyTable(), HTTPS: emptyTable() };
  private readonly matches: PlannedMatch[] = [];
  private defaultCertificate: TlsSecretInfo | undefined;
  /** The routes attached somewhere, namespace/name. */
  private readonly served = new Set<string>();
  private readonly services = new Set<string>();

  constructor(private readonly input: GatewayPlanInput, private readonly cache: PlanCache, private readonly changedServices: ReadonlySet<string> | 'full') {
    this.grants = [...input.grants];
  }

  /** Drops every kept route result when something they all read changed (a Gateway, a grant, a selected Namespace, a listener's validity). */
  private checkWorld(gateways: GatewayInfo[], listeners: Map<string, ServedListener[]>): void {
    const entries = [...listeners.values()].flat();
    const selecting = entries.some((entry) => entry.listener.allowedNamespaces.from === 'Selector');
    const world: unknown[] = [this.input.className, this.input.httpPort, this.input.httpsPort, ...gateways, ...this.grants, ...entries.map((entry) => entry.valid)];
    if (selecting) for (const route of this.input.routes.values()) world.push(this.input.namespaceLabels(route.namespace));
    const same = world.length === this.cache.world.length && world.every((item, index) => item === this.cache.world[index]);
    if (!same || this.changedServices === 'full') this.cache.results.clear();
    this.cache.world = world;
  }

  private resultOf(route: HTTPRouteInfo, listeners: Map<string, ServedListener[]>): RouteResult {
    const key = `${route.namespace}/${route.name}`;
    const kept = this.cache.results.get(key);
    const changed = this.changedServices;
    if (kept && kept.route === route && (changed === 'full' || !kept.services.some((service) => changed.has(service)))) return kept;
    const result = this.attach(route, listeners);
    this.cache.results.set(key, result);
    return result;
  }

  plan(): GatewayPlan {
    const { input } = this;
    const ourClass = input.classes.get(input.className);
    const served = ourClass?.controller === GATEWAY_CONTROLLER;
    const classStatus = served
      ? { name: ourClass.name, conditions: [condition('Accepted', true, 'Accepted', `served by ${GATEWAY_CONTROLLER}`, ourClass.generation)] }
      : undefined;
    const gateways = served ? [...input.gateways.values()].filter((gateway) => gateway.className === input.className).sort(byAge) : [];
    const listeners = new Map<string, ServedListener[]>();
    const gatewayStatuses = gateways.map((gateway) => {
      const entries = this.listenersOf(gateway);
      listeners.set(`${gateway.namespace}/${gateway.name}`, entries);
      return { gateway, entries };
    });
    this.checkWorld(gateways, listeners);
    const listenerStatus = new Map([...listeners.values()].flat().map((entry) => [`${entry.gateway.namespace}/${entry.gateway.name}/${entry.listener.name}`, entry.status]));
    const routes: RouteStatus[] = [];
    for (const key of this.cache.results.keys()) if (!input.routes.has(key)) this.cache.results.delete(key);
    for (const route of input.routes.values()) {
      const result = this.resultOf(route, listeners);
      if (result.status.parents.length > 0) routes.push(result.status);
      for (const id of result.attached) listenerStatus.get(id)!.attachedRoutes++;
      this.matches.push(...result.matches);
      for (const protocol of ['HTTP', 'HTTPS'] as const) for (const [backend, endpoints] of result.backends[protocol]) this.tables[protocol].backends[backend] = endpoints;
      this.problems.push(...result.problems);
      for (const service of result.services) this.services.add(service);
      if (result.status.parents.some((parent) => parent.conditions[0].status === 'True')) this.served.add(`${route.namespace}/${route.name}`);
    }
    for (const [protocol, table] of Object.entries(this.tables)) this.fill(protocol as 'HTTP' | 'HTTPS', table);
    const { matches } = this;
    return {
      http: this.tables.HTTP,
      https: this.tables.HTTPS,
      ...(this.defaultCertificate ? { defaultCertificate: this.defaultCertificate } : {}),
      ...(classStatus ? { classStatus } : {}),
      gateways: gatewayStatuses.map(({ gateway, entries }) => this.gatewayStatus(gateway, entries)),
      routes,
      problems: this.problems,
      origins: () => matches.map((match) => match.origin),
      originOf: (path) => matches.find((match) => match.path === path)?.origin,
      services: this.services,
    };
  }

  private gatewayStatus(gateway: GatewayInfo, entries: ServedListener[]): GatewayStatus {
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
    const table = this.tables.HTTPS;
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
  private attach(route: HTTPRouteInfo, listeners: Map<string, ServedListener[]>): RouteResult {
    const parents: RouteParentStatus[] = [];
    const generation = route.generation;
    const resolved = this.resolveRules(route);
    const result: RouteResult = { route, status: { namespace: route.namespace, name: route.name, parents }, attached: [], matches: [], backends: { HTTP: new Map(), HTTPS: new Map() }, problems: [], services: resolved.services };
    const unsupported = this.unsupportedFilterOf(route);
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

  /** Why the dataplane cannot carry the route (a filter it lacks), or undefined. */
  private unsupportedFilterOf(route: HTTPRouteInfo): string | undefined {
    const unsupported = this.input.unsupportedFilters;
    if (!unsupported) return undefined;
    for (const [ruleIndex, rule] of route.rules.entries()) {
      for (const filter of rule.filters) {
        const why = unsupported.get(filter.type);
        if (why !== undefined) return `spec.rules[${ruleIndex}] has a ${filter.type} filter: ${why}`;
      }
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

  /**
   * The table's hosts: each host's matches in precedence order, followed by those of the less
   * specific hosts that also cover it (its wildcards, longest first, then any host), since the spec
   * orders rules by hostname before path: a request falls through to them when none of its own match.
   */
  private fill(protocol: 'HTTP' | 'HTTPS', table: RouteTable): void {
    const byHost = new Map<string, PlannedMatch[]>();
    for (const match of this.matches) {
      if (match.protocol !== protocol) continue;
      let list = byHost.get(match.host);
      if (!list) byHost.set(match.host, (list = []));
      list.push(match);
    }
    // A host's route is rebuilt only when its matches changed, or those of a wildcard (or of any host) that covers it.
    const kept = this.cache.hosts[protocol];
    const unchanged = (host: string) => {
      const before = kept.get(host)?.matches;
      const now = byHost.get(host);
      return before !== undefined && now !== undefined && before.length === now.length && before.every((match, index) => match === now[index]);
    };
    const wildcards = [...byHost.keys()].filter((host) => host.startsWith('*.')).sort((a, b) => b.length - a.length);
    const covers = (host: string) => host === '' || host.startsWith('*.');
    let coverChanged = [...wildcards, ...(byHost.has('') ? [''] : [])].some((host) => !unchanged(host));
    for (const host of kept.keys()) if (covers(host) && !byHost.has(host)) coverChanged = true;
    const sortedOf = (host: string) => {
      const list = byHost.get(host);
      if (!list) return [];
      return unchanged(host) ? kept.get(host)!.sorted : [...list].sort(precedence);
    };
    const route = (host: string, sorted: PlannedMatch[]): HostRoute => {
      if (!coverChanged && unchanged(host)) return kept.get(host)!.route;
      const covering = [...wildcards.filter((wildcard) => wildcard !== host && wildcardCovers(wildcard, host.startsWith('*.') ? host.slice(1) : host)), ...(host === '' ? [] : [''])];
      return { paths: [...sorted, ...covering.flatMap(sortedOf)].map((match) => match.path), redirectToHttps: false };
    };
    const next = new Map<string, { matches: PlannedMatch[]; sorted: PlannedMatch[]; route: HostRoute }>();
    for (const [host, matches] of byHost) {
      const sorted = sortedOf(host);
      const built = route(host, sorted);
      next.set(host, { matches, sorted, route: built });
      if (host === '') table.anyHost = built;
      else if (host.startsWith('*.')) table.wildcards[host.slice(2)] = built;
      else table.hosts[host] = built;
    }
    this.cache.hosts[protocol] = next;
    table.served = [...this.served].sort();
  }
}

/** The route tables and statuses of one input. */
export function planGateways(input: GatewayPlanInput): GatewayPlan {
  return new GatewayPlanner().plan(input, 'full');
}

/**
 * The planner, incremental: it keeps each route's result and each host's route between plans, and
 * replans only the routes that changed or name a changed Service (everything when a Gateway, a
 * grant, a selected Namespace or a listener's validity changed). Still a function of its inputs:
 * a plan equals planGateways of the same input. Hosts not replanned keep their HostRoute object,
 * which is what tableChanges compares.
 */
export class GatewayPlanner {
  private readonly cache = emptyCache();

  plan(input: GatewayPlanInput, changedServices: ReadonlySet<string> | 'full'): GatewayPlan {
    return new Planner(input, this.cache, changedServices).plan();
  }
}

const sameEndpoints = (a: string[], b: string[]) => a === b || (a.length === b.length && a.every((endpoint, index) => endpoint === b[index]));
const samePem = (a: { cert: string; key: string }, b: { cert: string; key: string }) => a.cert === b.cert && a.key === b.key;

function diffRecord<V>(before: Record<string, V>, after: Record<string, V>, same: (a: V, b: V) => boolean = (a, b) => a === b): Record<string, V | null> {
  const changes: Record<string, V | null> = {};
  for (const key of Object.keys(after)) if (!Object.hasOwn(before, key) || !same(before[key], after[key])) changes[key] = after[key];
  for (const key of Object.keys(before)) if (!Object.hasOwn(after, key)) changes[key] = null;
  return changes;
}

/** What changed from one table to the next, as the proxy's workers apply it: hosts by identity (the planner keeps an unchanged host's object), endpoints and certificates by value. */
export function tableChanges(before: RouteTable, after: RouteTable): RouteTableChanges {
  return {
    hosts: diffRecord(before.hosts, after.hosts),
    wildcards: diffRecord(before.wildcards, after.wildcards),
    ...(before.anyHost === after.anyHost ? {} : { anyHost: after.anyHost ?? null }),
    defaultBackend: null,
    backends: diffRecord(before.backends, after.backends, sameEndpoints),
    certificates: diffRecord(before.certificates, after.certificates, samePem),
    tlsHosts: diffRecord(before.tlsHosts, after.tlsHosts),
    tlsWildcards: diffRecord(before.tlsWildcards, after.tlsWildcards),
  };
}

