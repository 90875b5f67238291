import {
  INGRESS_CONTROLLER, type IngressBackend, type IngressClassInfo, type IngressInfo, type TlsSecretInfo,
} from '../state/ingress-objects.js';
import type { ServicePortView } from '../state/service-ports.js';
import { categorizeEndpoints, type NodeContext } from '../state/topology.js';

// The ingress route planner, pure: the served Ingresses, their classes and TLS Secrets and the
// Services' endpoints → one immutable route table, handed whole to the proxy's workers on every
// sync. Hosts → ordered path matchers → endpoint sets, and TLS certificates by host. The model is
// HTTPRoute's (hostnames, exact and prefix matches, backends) so a Gateway API planner can emit it too.

export type MatchType = 'Exact' | 'Prefix';

export interface PathRoute {
  type: MatchType;
  /** The rule's path as written (for metrics and logs). */
  path: string;
  /** Exact: the path; Prefix: the path without its trailing '/' ('' for '/'). */
  match: string;
  /** namespace/name of the Ingress that owns this route. */
  ingress: string;
  /** A key of RouteTable.backends. */
  backend: string;
}

export interface DefaultRoute {
  ingress: string;
  backend: string;
}

export interface HostRoute {
  /** Longest match first, Exact before Prefix on a tie: the first that matches wins. */
  paths: PathRoute[];
  /** Plain HTTP is redirected (308) to https: the host has TLS and its Ingress did not opt out. */
  redirectToHttps: boolean;
}

export interface RouteTable {
  /** Exact host names (lower case) → routes. */
  hosts: Record<string, HostRoute>;
  /** `*.foo.com` rules, by the part after `*.` ('foo.com'). */
  wildcards: Record<string, HostRoute>;
  /** Rules with no host: every host that no host rule names. */
  anyHost?: HostRoute;
  /** The oldest served Ingress's defaultBackend: requests no rule matches. */
  defaultBackend?: DefaultRoute;
  /** namespace/service:port → ready endpoints as host:port ("[v6]:port" for IPv6). */
  backends: Record<string, string[]>;
  /** namespace/secret → PEM certificate and key. */
  certificates: Record<string, { cert: string; key: string }>;
  /** Host → certificate (a key of certificates), exact and by wildcard suffix. */
  tlsHosts: Record<string, string>;
  tlsWildcards: Record<string, string>;
  /** The served Ingresses, namespace/name, sorted (the status writer's list). */
  served: string[];
}

export interface IngressProblem {
  /** namespace/name of the Ingress (or IngressClass) at fault. */
  object: string;
  reason: string;
}

export interface IngressPlanInput {
  ingresses: Iterable<IngressInfo>;
  classes: Iterable<IngressClassInfo>;
  /** namespace/name → the Secret (null: a Secret that is not kubernetes.io/tls). */
  secrets: ReadonlyMap<string, TlsSecretInfo | null>;
  /** The service-port views of a Service key (namespace/name), empty when there is no such Service. */
  servicePorts(key: string): ServicePortView[];
  node: NodeContext;
  /** --ingress-class: the legacy annotation value this controller serves. */
  ingressClass: string;
}

export interface IngressPlan {
  table: RouteTable;
  problems: IngressProblem[];
}

const byAge = (a: { created: number; key: string }, b: { created: number; key: string }) => a.created - b.created || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Which Ingresses this controller serves: ingressClassName → IngressClass of ours, the legacy annotation, or the default class. */
function servedIngresses(input: IngressPlanInput, problems: IngressProblem[]): IngressInfo[] {
  const classes = new Map([...input.classes].map((ingressClass) => [ingressClass.name, ingressClass]));
  const defaults = [...classes.values()].filter((ingressClass) => ingressClass.isDefault);
  if (defaults.length > 1) problems.push({ object: defaults.map((ingressClass) => `IngressClass ${ingressClass.name}`).join(', '), reason: 'more than one default IngressClass: class-less Ingresses are served by none' });
  const defaultIsOurs = defaults.length === 1 && defaults[0].controller === INGRESS_CONTROLLER;
  return [...input.ingresses].filter((ingress) => {
    if (ingress.annotationClass !== undefined) return ingress.annotationClass === input.ingressClass;
    if (ingress.className !== undefined) return classes.get(ingress.className)?.controller === INGRESS_CONTROLLER;
    return defaultIsOurs;
  });
}

const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

/** A backend's ready endpoints, or why the backend is unknown. */
function resolveBackend(input: IngressPlanInput, namespace: string, backend: IngressBackend): { key: string; endpoints: string[] } | string {
  const views = input.servicePorts(`${namespace}/${backend.service}`);
  if (views.length === 0) return `service ${backend.service} not found (or another proxy's, which the ingress does not route to)`;
  const matching = views.filter((view) => view.port.protocol === 'TCP' && (typeof backend.port === 'number' ? view.port.port === backend.port : view.port.name === backend.port));
  if (matching.length === 0) return `service ${backend.service} has no TCP port ${JSON.stringify(backend.port)}`;
  const endpoints = new Set<string>();
  for (const view of matching) {
    // The proxy runs on the node: its connections are in-cluster traffic (internalTrafficPolicy applies).
    const categories = categorizeEndpoints(view, input.node);
    for (const endpoint of categories.usesCluster ? categories.cluster : categories.local) endpoints.add(hostPort(endpoint.address, endpoint.port));
  }
  return { key: `${namespace}/${backend.service}:${matching[0].port.name || matching[0].port.port}`, endpoints: [...endpoints].sort() };
}

interface ResolvedIngress {
  ingress: IngressInfo;
  key: string;
  created: number;
  backends: Map<IngressBackend, string>;
}

/** Resolves every backend and Secret of one Ingress, or reports the first that fails: an Ingress is served whole or not at all. */
function resolveIngress(input: IngressPlanInput, ingress: IngressInfo, table: RouteTable): ResolvedIngress | string {
  const backends = new Map<IngressBackend, string>();
  const all = [...(ingress.defaultBackend ? [ingress.defaultBackend] : []), ...ingress.rules.flatMap((rule) => rule.paths.map((path) => path.backend))];
  const resolved: { key: string; endpoints: string[] }[] = [];
  for (const backend of all) {
    const result = resolveBackend(input, ingress.namespace, backend);
    if (typeof result === 'string') return result;
    backends.set(backend, result.key);
    resolved.push(result);
  }
  for (const entry of ingress.tls) {
    if (entry.secretName === undefined) continue;
    const secret = input.secrets.get(`${ingress.namespace}/${entry.secretName}`);
    if (secret === undefined) return `secret ${entry.secretName} not found`;
    if (secret === null) return `secret ${entry.secretName} is not of type kubernetes.io/tls`;
  }
  for (const { key, endpoints } of resolved) table.backends[key] = endpoints;
  return { ingress, key: `${ingress.namespace}/${ingress.name}`, created: ingress.created, backends };
}

/** Prefix matching compares whole path elements, so the rule's trailing '/' carries no meaning. */
const matchOf = (type: MatchType, path: string) => (type === 'Exact' ? path : path.replace(/\/+$/, ''));

function sortPaths(paths: PathRoute[]): PathRoute[] {
  return paths.sort((a, b) => b.match.length - a.match.length || (a.type === b.type ? 0 : a.type === 'Exact' ? -1 : 1));
}

export function planIngress(input: IngressPlanInput): IngressPlan {
  const problems: IngressProblem[] = [];
  const table: RouteTable = { hosts: {}, wildcards: {}, backends: {}, certificates: {}, tlsHosts: {}, tlsWildcards: {}, served: [] };
  const resolved: ResolvedIngress[] = [];
  for (const ingress of servedIngresses(input, problems)) {
    const result = resolveIngress(input, ingress, table);
    if (typeof result === 'string') problems.push({ object: `Ingress ${ingress.namespace}/${ingress.name}`, reason: result });
    else resolved.push(result);
  }
  resolved.sort(byAge);

  // TLS first: which hosts have TLS decides their redirects. The oldest Ingress naming a TLS host wins it.
  const tlsOwner = new Map<string, ResolvedIngress>();
  for (const entry of resolved) {
    for (const tls of entry.ingress.tls) {
      const secretKey = tls.secretName === undefined ? undefined : `${entry.ingress.namespace}/${tls.secretName}`;
      for (const host of tls.hosts) {
        const owner = tlsOwner.get(host);
        if (owner) {
          if (owner !== entry) problems.push({ object: `Ingress ${entry.key}`, reason: `TLS host ${host} is already served by the older Ingress ${owner.key}` });
          continue;
        }
        tlsOwner.set(host, entry);
        if (secretKey === undefined) continue;
        const secret = input.secrets.get(secretKey)!;
        table.certificates[secretKey] = { cert: secret.cert, key: secret.key };
        if (host.startsWith('*.')) table.tlsWildcards[host.slice(2)] = secretKey;
        else table.tlsHosts[host] = secretKey;
      }
    }
  }

  const routesOf = (host: string): HostRoute => {
    if (host === '') return (table.anyHost ??= { paths: [], redirectToHttps: false });
    const owner = tlsOwner.get(host);
    const fresh = (): HostRoute => ({ paths: [], redirectToHttps: owner !== undefined && owner.ingress.sslRedirect });
    if (host.startsWith('*.')) return (table.wildcards[host.slice(2)] ??= fresh());
    return (table.hosts[host] ??= fresh());
  };
  const claimed = new Map<string, string>();
  for (const entry of resolved) {
    const { ingress, key, backends } = entry;
    table.served.push(key);
    if (ingress.defaultBackend) {
      const backend = backends.get(ingress.defaultBackend)!;
      if (!table.defaultBackend) table.defaultBackend = { ingress: key, backend };
      else problems.push({ object: `Ingress ${key}`, reason: `defaultBackend ignored: the older Ingress ${table.defaultBackend.ingress} has one` });
    }
    for (const rule of ingress.rules) {
      const routes = routesOf(rule.host);
      for (const path of rule.paths) {
        const type: MatchType = path.pathType === 'Exact' ? 'Exact' : 'Prefix';
        const match = matchOf(type, path.path);
        const claim = `${rule.host} ${type} ${match}`;
        const owner = claimed.get(claim);
        if (owner !== undefined) {
          if (owner !== key) problems.push({ object: `Ingress ${key}`, reason: `host ${JSON.stringify(rule.host)} path ${path.path} (${type}) is already served by the older Ingress ${owner}` });
          continue;
        }
        claimed.set(claim, key);
        routes.paths.push({ type, path: path.path, match, ingress: key, backend: backends.get(path.backend)! });
      }
    }
  }
  for (const routes of [...Object.values(table.hosts), ...Object.values(table.wildcards), ...(table.anyHost ? [table.anyHost] : [])]) sortPaths(routes.paths);
  table.served.sort();
  return { table, problems };
}

// ---- lookups, used by the proxy's workers on every request -----------------------------------

export type RouteMatch =
  | { kind: 'route'; route: PathRoute | DefaultRoute; ruleHost: string; endpoints: string[]; redirectToHttps: boolean; path: string }
  | { kind: 'none' };

/** Prefix matches whole elements: "/foo" matches "/foo", "/foo/" and "/foo/bar", never "/foobar". */
export function pathMatches(route: PathRoute, path: string): boolean {
  if (route.type === 'Exact') return path === route.match;
  return path.startsWith(route.match) && (path.length === route.match.length || path.charCodeAt(route.match.length) === 0x2f);
}

/** The Host header as routing compares it: lower case, without a port. */
export function routingHost(header: string | undefined): string {
  if (!header) return '';
  const text = header.toLowerCase();
  if (text.startsWith('[')) return text.slice(0, text.indexOf(']') + 1);
  const colon = text.indexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

/** The route table as Maps, safe for names such as "constructor" that a client sends. */
export class Router {
  private readonly hosts: Map<string, HostRoute>;
  private readonly wildcards: Map<string, HostRoute>;
  private readonly backends: Map<string, string[]>;

  constructor(readonly table: RouteTable) {
    this.hosts = new Map(Object.entries(table.hosts));
    this.wildcards = new Map(Object.entries(table.wildcards));
    this.backends = new Map(Object.entries(table.backends));
  }

  /** The routes of a request's host, and the rule host that gave them ('*.foo.com', '' for no host). */
  hostRoutes(host: string): { ruleHost: string; routes: HostRoute | undefined } {
    const exact = this.hosts.get(host);
    if (exact) return { ruleHost: host, routes: exact };
    const dot = host.indexOf('.');
    const wildcard = dot > 0 ? this.wildcards.get(host.slice(dot + 1)) : undefined;
    if (wildcard) return { ruleHost: `*.${host.slice(dot + 1)}`, routes: wildcard };
    return { ruleHost: '', routes: this.table.anyHost };
  }

  /** Host, then path (URL path only, never the query), then the default backend. */
  match(host: string, path: string): RouteMatch {
    const { ruleHost, routes } = this.hostRoutes(host);
    const found = routes?.paths.find((route) => pathMatches(route, path)) ?? this.table.defaultBackend;
    if (!found) return { kind: 'none' };
    return {
      kind: 'route', route: found, ruleHost, endpoints: this.backends.get(found.backend) ?? [],
      redirectToHttps: routes?.redirectToHttps ?? false, path: 'path' in found ? (found as PathRoute).path : '',
    };
  }

  /** The certificate (a key of table.certificates) for an SNI name: exact, then one-label wildcard. */
  certificateFor(serverName: string): string | undefined {
    const name = serverName.toLowerCase();
    if (Object.hasOwn(this.table.tlsHosts, name)) return this.table.tlsHosts[name];
    const dot = name.indexOf('.');
    const suffix = name.slice(dot + 1);
    return dot > 0 && Object.hasOwn(this.table.tlsWildcards, suffix) ? this.table.tlsWildcards[suffix] : undefined;
  }
}
