import {
  INGRESS_CONTROLLER, type IngressBackend, type IngressClassInfo, type IngressInfo, type TlsSecretInfo,
} from './objects.js';
import type { ServicePortView } from '../cluster/service-ports.js';
import { joinHostPort } from '../kernel/addresses.js';
import { categorizeEndpoints, type NodeContext } from '../cluster/topology.js';
import { canonicalOctets } from '../ingress/request-path.js';

// The ingress route planner, pure: the served Ingresses, their classes and TLS Secrets and the
// Services' endpoints → one route table (hosts → ordered path matchers → endpoint sets, and TLS
// certificates by host), planned host by host so that a sync replans only the hosts it touches
// and the proxy's workers get only those. The model is HTTPRoute's (hostnames, exact and prefix
// matches, backends) so a Gateway API planner can emit it too.

export type MatchType = 'Exact' | 'Prefix' | 'RegularExpression';

export interface PathRoute {
  /** RegularExpression (Gateway API): `match` is the expression, matched against the whole normalized path. */
  type: MatchType;
  /** The rule's path as written (for metrics and logs). */
  path: string;
  /** The path in the spelling requests are normalized to (src/ingress/request-path.ts); for Prefix without its trailing '/' ('' for '/'). */
  match: string;
  /** namespace/name of the Ingress that owns this route. */
  ingress: string;
  /** A key of RouteTable.backends. */
  backend: string;
  /** Gateway API: what the request must also hold (absent: the path decides alone). */
  conditions?: RouteConditions;
  /** Gateway API: what the route does beyond forwarding to `backend` (absent: only that). */
  actions?: RouteActions;
}

// ---- Gateway API's parts of a route (HTTPRoute matches and filters), which both dataplanes carry --

/** A header or query parameter match; header names are lower case. */
export interface ValueMatch {
  name: string;
  value: string;
  /** `value` is a regular expression matched anywhere in the value (else: the whole value, exactly). */
  regex?: boolean;
}

export interface RouteConditions {
  method?: string;
  headers?: ValueMatch[];
  query?: ValueMatch[];
}

export interface HeaderEdits {
  /** Replace (or add) these fields. */
  set: { name: string; value: string }[];
  /** Add a value to these fields (comma-joined to what is there). */
  add: { name: string; value: string }[];
  /** Lower-case names of fields removed. */
  remove: string[];
}

export type PathEdit = { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; value: string };

export interface RouteActions {
  /** Weighted backends (keys of RouteTable.backends); an entry without a backend is one that could not be resolved: its share is answered 500. */
  backends?: { backend?: string; weight: number }[];
  requestHeaders?: HeaderEdits;
  responseHeaders?: HeaderEdits;
  /** Answered with a redirect: what of the request's URL it replaces. */
  redirect?: { scheme?: 'http' | 'https'; hostname?: string; port?: number; path?: PathEdit; statusCode: number };
  rewrite?: { hostname?: string; path?: PathEdit };
  /** Backends that get a copy of every request (their answers are dropped). */
  mirrors?: string[];
  /** The whole exchange (504 past it), and each attempt's wait for the backend's response header. */
  requestTimeoutMs?: number;
  backendTimeoutMs?: number;
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
  /** Host → certificate (a key of certificates; one missing there: its Secret is not, and the default certificate is served), exact and by wildcard suffix. */
  tlsHosts: Record<string, string>;
  tlsWildcards: Record<string, string>;
  /** The served Ingresses, namespace/name, sorted (the status writer's list). */
  served: string[];
  /** Gateway API: a `*.foo.com` host (and certificate) also matches deeper names (a.b.foo.com), the longest suffix first; Ingress's match one label. */
  wildcardsMatchSubdomains?: boolean;
}

export interface IngressProblem {
  /** namespace/name of the Ingress (or IngressClass) at fault. */
  object: string;
  reason: string;
}

/** A TLS Secret a served Ingress names that is not there (or not kubernetes.io/tls): its hosts are still routed, with the default certificate. */
export interface MissingSecret {
  /** namespace/name of the Ingress. */
  ingress: string;
  /** namespace/name of the Secret. */
  secret: string;
  reason: 'not found' | 'not of type kubernetes.io/tls';
  /** The spec.tls hosts it was named for. */
  hosts: string[];
}

/** How a missing Secret is reported (the log line, `kubenft services`). */
export const missingSecretText = (missing: MissingSecret) =>
  `Ingress ${missing.ingress}: TLS Secret ${missing.secret} ${missing.reason}: ${missing.hosts.join(', ') || 'its hosts'} served with the default certificate until it is`;

export interface IngressPlanInput {
  /** namespace/name → the Ingress. */
  ingresses: ReadonlyMap<string, IngressInfo>;
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
  missingSecrets: MissingSecret[];
}

/**
 * What changed in a RouteTable since the previous plan: each key replanned, with its new value or
 * null when it is gone. A worker applies it to the table it holds; keys not named are unchanged.
 */
export interface RouteTableChanges {
  hosts: Record<string, HostRoute | null>;
  wildcards: Record<string, HostRoute | null>;
  /** Absent: unchanged. */
  anyHost?: HostRoute | null;
  defaultBackend: DefaultRoute | null;
  backends: Record<string, string[] | null>;
  certificates: Record<string, { cert: string; key: string } | null>;
  tlsHosts: Record<string, string | null>;
  tlsWildcards: Record<string, string | null>;
}

const byAge = (a: { created: number; key: string }, b: { created: number; key: string }) => a.created - b.created || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Which Ingresses this controller serves: ingressClassName → IngressClass of ours, the legacy annotation, or the default class. */
function classSelection(classes: IngressClassInfo[], ingressClass: string, problems: IngressProblem[]): (ingress: IngressInfo) => boolean {
  const byName = new Map(classes.map((each) => [each.name, each]));
  const defaults = classes.filter((each) => each.isDefault);
  if (defaults.length > 1) problems.push({ object: defaults.map((each) => `IngressClass ${each.name}`).join(', '), reason: 'more than one default IngressClass: class-less Ingresses are served by none' });
  const defaultIsOurs = defaults.length === 1 && defaults[0].controller === INGRESS_CONTROLLER;
  return (ingress) => {
    if (ingress.annotationClass !== undefined) return ingress.annotationClass === ingressClass;
    if (ingress.className !== undefined) return byName.get(ingress.className)?.controller === INGRESS_CONTROLLER;
    return defaultIsOurs;
  };
}

/** Adds or removes a name in a table's sorted `served` list, in place, without sorting it whole on every change. */
export function markServed(list: string[], name: string, served: boolean): void {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (list[middle] < name) low = middle + 1;
    else high = middle;
  }
  const there = list[low] === name;
  if (served && !there) list.splice(low, 0, name);
  if (!served && there) list.splice(low, 1);
}

/** A backend's ready endpoints, or why the backend is unknown. */
export function resolveBackend(input: Pick<IngressPlanInput, 'servicePorts' | 'node'>, namespace: string, backend: IngressBackend): { key: string; endpoints: string[] } | string {
  const views = input.servicePorts(`${namespace}/${backend.service}`);
  if (views.length === 0) return `service ${backend.service} not found (or another proxy's, which the ingress does not route to)`;
  const matching = views.filter((view) => view.port.protocol === 'TCP' && (typeof backend.port === 'number' ? view.port.port === backend.port : view.port.name === backend.port));
  if (matching.length === 0) return `service ${backend.service} has no TCP port ${JSON.stringify(backend.port)}`;
  const endpoints = new Set<string>();
  for (const view of matching) {
    // The proxy runs on the node: its connections are in-cluster traffic (internalTrafficPolicy applies).
    const categories = categorizeEndpoints(view, input.node);
    for (const endpoint of categories.usesCluster ? categories.cluster : categories.local) endpoints.add(joinHostPort(endpoint.address, endpoint.port));
  }
  return { key: `${namespace}/${backend.service}:${matching[0].port.name || matching[0].port.port}`, endpoints: [...endpoints].sort() };
}

interface ResolvedIngress {
  ingress: IngressInfo;
  key: string;
  created: number;
  /** Each backend of the Ingress → its key in RouteTable.backends. */
  backends: Map<IngressBackend, string>;
  /** Backend key → its ready endpoints. */
  endpoints: Map<string, string[]>;
}

type BackendResolver = (namespace: string, backend: IngressBackend) => { key: string; endpoints: string[] } | string;

const backendsOf = (ingress: IngressInfo) => [...(ingress.defaultBackend ? [ingress.defaultBackend] : []), ...ingress.rules.flatMap((rule) => rule.paths.map((path) => path.backend))];

/**
 * Resolves every backend of one Ingress, or reports the first that fails: an Ingress is served
 * whole or not at all. Its Secrets are not needed for that (see missingSecretsOf).
 */
function resolveIngress(resolve: BackendResolver, ingress: IngressInfo): ResolvedIngress | string {
  const backends = new Map<IngressBackend, string>();
  const endpoints = new Map<string, string[]>();
  for (const backend of backendsOf(ingress)) {
    const result = resolve(ingress.namespace, backend);
    if (typeof result === 'string') return result;
    backends.set(backend, result.key);
    endpoints.set(result.key, result.endpoints);
  }
  return { ingress, key: `${ingress.namespace}/${ingress.name}`, created: ingress.created, backends, endpoints };
}

/**
 * The Secrets of an Ingress's spec.tls that are not there. As ingress-nginx does, a missing Secret
 * does not take the site down: its hosts keep their routes (and the redirect to https) and are
 * served the default certificate until the Secret arrives, which needs no replan of the hosts:
 * they name the certificate by its Secret's key either way.
 */
function missingSecretsOf(input: IngressPlanInput, key: string, ingress: IngressInfo): MissingSecret[] {
  const missing: MissingSecret[] = [];
  for (const entry of ingress.tls) {
    if (entry.secretName === undefined) continue;
    const secret = `${ingress.namespace}/${entry.secretName}`;
    const found = input.secrets.get(secret);
    if (!found) missing.push({ ingress: key, secret, reason: found === null ? 'not of type kubernetes.io/tls' : 'not found', hosts: entry.hosts });
  }
  return missing;
}

/**
 * A rule's path in the spelling a request's path is normalized to, so `/caf%c3%a9` matches a
 * request for `/caf%C3%A9` (validation saw to it that it has one). Prefix matching compares whole
 * path elements, so the rule's trailing '/' carries no meaning.
 */
export function matchOf(type: MatchType, path: string): string {
  if (type === 'RegularExpression') return path;
  const canonical = canonicalOctets(path)!;
  return type === 'Exact' ? canonical : canonical.replace(/\/+$/, '');
}

function sortPaths(paths: PathRoute[]): PathRoute[] {
  return paths.sort((a, b) => b.match.length - a.match.length || (a.type === b.type ? 0 : a.type === 'Exact' ? -1 : 1));
}

/** The Services (namespace/name) and TLS Secrets an Ingress names. */
const servicesOf = (ingress: IngressInfo) => backendsOf(ingress).map((backend) => `${ingress.namespace}/${backend.service}`);
const secretsOf = (ingress: IngressInfo) => ingress.tls.flatMap((tls) => (tls.secretName === undefined ? [] : [`${ingress.namespace}/${tls.secretName}`]));

/** The hosts an Ingress names, in its rules ('' for a rule without host) or in spec.tls. */
function hostsOf(ingress: IngressInfo): Set<string> {
  return new Set([...ingress.rules.map((rule) => rule.host), ...ingress.tls.flatMap((tls) => tls.hosts)]);
}

interface HostPlan {
  /** Its routes, when a rule names it. */
  routes: HostRoute | undefined;
  /** Its certificate (a Secret key, whether or not the Secret is there), when its TLS owner names a Secret. */
  certificate: string | undefined;
  problems: IngressProblem[];
}

/**
 * One host's routes and certificate from the served Ingresses that name it, oldest first: a host
 * depends on nothing else, which is what lets a change replan only the hosts it touches. The
 * oldest Ingress naming a TLS host owns it (and decides its redirect); a duplicate path goes to the oldest.
 */
function planHost(host: string, entries: ResolvedIngress[]): HostPlan {
  const problems: IngressProblem[] = [];
  let tlsOwner: ResolvedIngress | undefined;
  let certificate: string | undefined;
  for (const entry of entries) {
    for (const tls of entry.ingress.tls) {
      if (!tls.hosts.includes(host)) continue;
      if (tlsOwner) {
        if (tlsOwner !== entry) problems.push({ object: `Ingress ${entry.key}`, reason: `TLS host ${host} is already served by the older Ingress ${tlsOwner.key}` });
        continue;
      }
      tlsOwner = entry;
      certificate = tls.secretName === undefined ? undefined : `${entry.ingress.namespace}/${tls.secretName}`;
    }
  }
  let routes: HostRoute | undefined;
  const claimed = new Map<string, string>();
  for (const { ingress, key, backends } of entries) {
    for (const rule of ingress.rules) {
      if (rule.host !== host) continue;
      routes ??= { paths: [], redirectToHttps: host !== '' && tlsOwner !== undefined && tlsOwner.ingress.sslRedirect };
      for (const path of rule.paths) {
        const type: MatchType = path.pathType === 'Exact' ? 'Exact' : 'Prefix';
        const match = matchOf(type, path.path);
        const claim = `${type} ${match}`;
        const owner = claimed.get(claim);
        if (owner !== undefined) {
          if (owner !== key) problems.push({ object: `Ingress ${key}`, reason: `host ${JSON.stringify(host)} path ${path.path} (${type}) is already served by the older Ingress ${owner}` });
          continue;
        }
        claimed.set(claim, key);
        routes.paths.push({ type, path: path.path, match, ingress: key, backend: backends.get(path.backend)! });
      }
    }
  }
  if (routes) sortPaths(routes.paths);
  return { routes, certificate, problems };
}

const emptyTable = (): RouteTable => ({ hosts: {}, wildcards: {}, backends: {}, certificates: {}, tlsHosts: {}, tlsWildcards: {}, served: [] });
const emptyChanges = (): RouteTableChanges => ({ hosts: {}, wildcards: {}, defaultBackend: null, backends: {}, certificates: {}, tlsHosts: {}, tlsWildcards: {} });

function addTo<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  let values = index.get(key);
  if (!values) index.set(key, (values = new Set()));
  values.add(value);
}

function removeFrom<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  const values = index.get(key);
  if (values?.delete(value) && values.size === 0) index.delete(key);
}

const sameBackends = (a: ResolvedIngress, b: ResolvedIngress) => a.backends.size === b.backends.size && [...a.backends].every(([backend, key]) => b.backends.get(backend) === key);
const sameEndpoints = (a: string[] | undefined, b: string[]) => a !== undefined && a.length === b.length && a.every((endpoint, index) => endpoint === b[index]);

/** Where an Ingress stands: not served, served and resolved (with the Secrets it lacks), or served and skipped (why). */
interface IngressEntry {
  ingress: IngressInfo;
  served: boolean;
  resolved?: ResolvedIngress;
  missingSecrets?: MissingSecret[];
  problem?: IngressProblem;
}

export interface IngressPlanUpdate extends IngressPlan {
  /** What changed since the previous plan, or undefined when the table was planned whole (the first plan, a full sync, a class change). */
  changes: RouteTableChanges | undefined;
}

/**
 * The route planner, incremental: it keeps the last table and what each part of it came from, and
 * replans only the hosts whose Ingresses, backends or Secrets changed. Still a function of its
 * inputs: the table after any sequence of plans equals planIngress of the last input (the tests
 * hold it to that). Ingresses and Secrets are compared by identity (the state replaces an object
 * when it changes); Services are named by the caller, who knows which changed.
 */
export class IngressPlanner {
  private table = emptyTable();
  private entries = new Map<string, IngressEntry>();
  private classes: IngressClassInfo[] = [];
  private classProblems: IngressProblem[] = [];
  private selected: (ingress: IngressInfo) => boolean = () => false;
  /** Host (as in the rules: 'foo.com', '*.foo.com', '') → the resolved Ingresses naming it. */
  private readonly byHost = new Map<string, Set<string>>();
  /** namespace/service → the served Ingresses naming it. */
  private readonly byService = new Map<string, Set<string>>();
  /** namespace/secret → the served Ingresses naming it, and the Secret as last seen. */
  private readonly bySecret = new Map<string, Set<string>>();
  private readonly secretsSeen = new Map<string, TlsSecretInfo | null | undefined>();
  /** Backend key → the resolved Ingresses using it; certificate key → the TLS hosts served with it. */
  private readonly backendUsers = new Map<string, Set<string>>();
  private readonly certificateHosts = new Map<string, Set<string>>();
  private readonly hostProblems = new Map<string, IngressProblem[]>();
  /** Served Ingresses skipped (an unknown backend), by namespace/name. */
  private readonly skipped = new Map<string, IngressProblem>();
  /** Resolved Ingresses whose TLS Secrets are not all there, by namespace/name. */
  private readonly missingSecrets = new Map<string, MissingSecret[]>();
  private readonly withDefaultBackend = new Set<string>();

  /** Whether a change to this Service (namespace/name) can change the routes. */
  uses(service: string): boolean {
    return this.byService.has(service);
  }

  /** `services`: the Services (namespace/name) changed since the last plan, or 'full' to replan everything. */
  plan(input: IngressPlanInput, services: ReadonlySet<string> | 'full'): IngressPlanUpdate {
    const classes = [...input.classes];
    const whole = services === 'full' || classes.length !== this.classes.length || classes.some((each, index) => each !== this.classes[index]);
    if (whole) this.reset(input, classes);
    const changedSecrets = [...this.secretsSeen.keys()].filter((secret) => input.secrets.get(secret) !== this.secretsSeen.get(secret));
    const dirty = this.dirtyIngresses(input, whole ? 'full' : services, changedSecrets);
    const changes = emptyChanges();
    const dirtyHosts = new Set<string>();
    const dirtyBackends = new Set<string>();
    const resolutions = new Map<string, ReturnType<BackendResolver>>();
    const resolve: BackendResolver = (namespace, backend) => {
      const key = `${namespace}/${backend.service}\0${backend.port}`;
      let result = resolutions.get(key);
      if (result === undefined) resolutions.set(key, (result = resolveBackend(input, namespace, backend)));
      return result;
    };
    for (const [key, ingress] of dirty) {
      const before = this.entries.get(key);
      const after = ingress && this.enter(input, resolve, key, ingress);
      if (before?.served) this.unindex(key, before, dirtyBackends);
      if (after?.served) this.index(input, key, after, dirtyBackends);
      if (after) this.entries.set(key, after);
      else this.entries.delete(key);
      if (after?.problem) this.skipped.set(key, after.problem);
      else this.skipped.delete(key);
      if (after?.missingSecrets?.length) this.missingSecrets.set(key, after.missingSecrets);
      else this.missingSecrets.delete(key);
      if (!whole && Boolean(before?.resolved) !== Boolean(after?.resolved)) markServed(this.table.served, key, Boolean(after?.resolved));
      // Only the endpoints moved: the hosts' routes name backends, not endpoints, so they stand.
      if (before?.resolved && after?.resolved && before.ingress === after.ingress && sameBackends(before.resolved, after.resolved)) continue;
      for (const entry of [before, after]) if (entry?.resolved) for (const host of hostsOf(entry.ingress)) dirtyHosts.add(host);
    }
    // A rotated Secret changes no route: its certificate is refreshed below.
    const dirtyCertificates = new Set(changedSecrets);
    if (whole) this.table.served = [...this.entries].filter(([, entry]) => entry.resolved).map(([key]) => key).sort();
    for (const host of dirtyHosts) this.replanHost(host, changes, dirtyCertificates);
    for (const key of dirtyBackends) this.refreshBackend(key, changes);
    for (const key of dirtyCertificates) this.refreshCertificate(input, key, changes);
    const problems = [...this.classProblems];
    problems.push(...this.skipped.values());
    for (const hostProblems of this.hostProblems.values()) problems.push(...hostProblems);
    const defaultBackend = this.defaultBackend(problems);
    if (defaultBackend) this.table.defaultBackend = defaultBackend;
    else delete this.table.defaultBackend;
    changes.defaultBackend = defaultBackend ?? null;
    return { table: this.table, problems, missingSecrets: [...this.missingSecrets.values()].flat(), changes: whole ? undefined : changes };
  }

  private reset(input: IngressPlanInput, classes: IngressClassInfo[]): void {
    this.table = emptyTable();
    this.classes = classes;
    this.classProblems = [];
    this.selected = classSelection(classes, input.ingressClass, this.classProblems);
    for (const index of [this.entries, this.byHost, this.byService, this.bySecret, this.secretsSeen, this.backendUsers, this.certificateHosts, this.hostProblems, this.skipped, this.missingSecrets]) index.clear();
    this.withDefaultBackend.clear();
  }

  /** The Ingresses to look at again (undefined: deleted): new or changed ones, and those naming a changed Service or Secret. */
  private dirtyIngresses(input: IngressPlanInput, services: ReadonlySet<string> | 'full', changedSecrets: string[]): Map<string, IngressInfo | undefined> {
    const dirty = new Map<string, IngressInfo | undefined>();
    const current = input.ingresses;
    for (const [key, ingress] of current) if (services === 'full' || this.entries.get(key)?.ingress !== ingress) dirty.set(key, ingress);
    for (const key of this.entries.keys()) if (!current.has(key)) dirty.set(key, undefined);
    const touch = (users: Set<string> | undefined) => {
      for (const key of users ?? []) if (!dirty.has(key)) dirty.set(key, current.get(key));
    };
    if (services !== 'full') for (const service of services) touch(this.byService.get(service));
    for (const secret of changedSecrets) touch(this.bySecret.get(secret));
    return dirty;
  }

  private enter(input: IngressPlanInput, resolve: BackendResolver, key: string, ingress: IngressInfo): IngressEntry {
    if (!this.selected(ingress)) return { ingress, served: false };
    const result = resolveIngress(resolve, ingress);
    if (typeof result === 'string') return { ingress, served: true, problem: { object: `Ingress ${key}`, reason: result } };
    return { ingress, served: true, resolved: result, missingSecrets: missingSecretsOf(input, key, ingress) };
  }

  private index(input: IngressPlanInput, key: string, entry: IngressEntry, dirtyBackends: Set<string>): void {
    const { ingress, resolved } = entry;
    for (const service of servicesOf(ingress)) addTo(this.byService, service, key);
    for (const secret of secretsOf(ingress)) {
      addTo(this.bySecret, secret, key);
      this.secretsSeen.set(secret, input.secrets.get(secret));
    }
    if (!resolved) return;
    for (const host of hostsOf(ingress)) addTo(this.byHost, host, key);
    for (const backend of resolved.endpoints.keys()) {
      addTo(this.backendUsers, backend, key);
      dirtyBackends.add(backend);
    }
    if (ingress.defaultBackend) this.withDefaultBackend.add(key);
  }

  private unindex(key: string, entry: IngressEntry, dirtyBackends: Set<string>): void {
    const { ingress, resolved } = entry;
    for (const service of servicesOf(ingress)) removeFrom(this.byService, service, key);
    for (const secret of secretsOf(ingress)) {
      removeFrom(this.bySecret, secret, key);
      if (!this.bySecret.has(secret)) this.secretsSeen.delete(secret);
    }
    if (!resolved) return;
    for (const host of hostsOf(ingress)) removeFrom(this.byHost, host, key);
    for (const backend of resolved.endpoints.keys()) {
      removeFrom(this.backendUsers, backend, key);
      dirtyBackends.add(backend);
    }
    this.withDefaultBackend.delete(key);
  }

  private replanHost(host: string, changes: RouteTableChanges, dirtyCertificates: Set<string>): void {
    const entries = [...(this.byHost.get(host) ?? [])].map((key) => this.entries.get(key)!.resolved!).sort(byAge);
    const plan = planHost(host, entries);
    if (plan.problems.length > 0) this.hostProblems.set(host, plan.problems);
    else this.hostProblems.delete(host);
    const wildcard = host.startsWith('*.');
    const name = wildcard ? host.slice(2) : host;
    const tlsHosts = wildcard ? this.table.tlsWildcards : this.table.tlsHosts;
    const previous = Object.hasOwn(tlsHosts, name) ? tlsHosts[name] : undefined;
    if (previous !== undefined) {
      removeFrom(this.certificateHosts, previous, host);
      dirtyCertificates.add(previous);
    }
    if (plan.certificate !== undefined) {
      addTo(this.certificateHosts, plan.certificate, host);
      dirtyCertificates.add(plan.certificate);
    }
    if (previous !== plan.certificate) {
      if (plan.certificate === undefined) delete tlsHosts[name];
      else tlsHosts[name] = plan.certificate;
      (wildcard ? changes.tlsWildcards : changes.tlsHosts)[name] = plan.certificate ?? null;
    }
    if (host === '') {
      if (plan.routes) this.table.anyHost = plan.routes;
      else delete this.table.anyHost;
      changes.anyHost = plan.routes ?? null;
      return;
    }
    const routes = wildcard ? this.table.wildcards : this.table.hosts;
    if (plan.routes) routes[name] = plan.routes;
    else delete routes[name];
    (wildcard ? changes.wildcards : changes.hosts)[name] = plan.routes ?? null;
  }

  private refreshBackend(key: string, changes: RouteTableChanges): void {
    const users = this.backendUsers.get(key);
    if (!users) {
      if (!Object.hasOwn(this.table.backends, key)) return;
      delete this.table.backends[key];
      changes.backends[key] = null;
      return;
    }
    const endpoints = this.entries.get(users.values().next().value!)!.resolved!.endpoints.get(key)!;
    if (sameEndpoints(Object.hasOwn(this.table.backends, key) ? this.table.backends[key] : undefined, endpoints)) return;
    this.table.backends[key] = endpoints;
    changes.backends[key] = endpoints;
  }

  /** A certificate is in the table while a host is served with it and its Secret is there (without it, the workers serve the default certificate). */
  private refreshCertificate(input: IngressPlanInput, key: string, changes: RouteTableChanges): void {
    const previous = Object.hasOwn(this.table.certificates, key) ? this.table.certificates[key] : undefined;
    const secret = this.certificateHosts.has(key) ? input.secrets.get(key) : undefined;
    if (!secret) {
      if (!previous) return;
      delete this.table.certificates[key];
      changes.certificates[key] = null;
      return;
    }
    if (previous?.cert === secret.cert && previous.key === secret.key) return;
    this.table.certificates[key] = { cert: secret.cert, key: secret.key };
    changes.certificates[key] = this.table.certificates[key];
  }

  /** The oldest served Ingress's defaultBackend; the others' are reported. */
  private defaultBackend(problems: IngressProblem[]): DefaultRoute | undefined {
    const candidates = [...this.withDefaultBackend].map((key) => this.entries.get(key)!.resolved!).sort(byAge);
    if (candidates.length === 0) return undefined;
    const [oldest, ...others] = candidates;
    for (const other of others) problems.push({ object: `Ingress ${other.key}`, reason: `defaultBackend ignored: the older Ingress ${oldest.key} has one` });
    return { ingress: oldest.key, backend: oldest.backends.get(oldest.ingress.defaultBackend!)! };
  }
}

/** The whole route table of one input (what a sequence of IngressPlanner.plan calls ends in). */
export function planIngress(input: IngressPlanInput): IngressPlan {
  const { table, problems, missingSecrets } = new IngressPlanner().plan(input, 'full');
  return { table, problems, missingSecrets };
}

// ---- lookups, used by the proxy's workers on every request -----------------------------------

export type RouteMatch =
  | {
    kind: 'route'; route: PathRoute | DefaultRoute; ruleHost: string; endpoints: string[]; redirectToHttps: boolean; path: string;
    /** The backend the request goes to (one of a weighted route's); undefined: one that could not be resolved (500). */
    backend: string | undefined;
  }
  | { kind: 'none' };

/** What a request holds beyond host and path, for routes with conditions (header names asked in lower case). */
export interface RequestFacts {
  method: string;
  header(name: string): string | undefined;
  /** The query as sent, with its '?', or ''. */
  query: string;
}

/** Regular expressions of routes (Gateway API), compiled once per router: a table's routes arrive as plain data. */
class Expressions {
  private readonly compiled = new Map<string, RegExp>();

  of(source: string, anchored: boolean): RegExp {
    const key = `${anchored ? '^' : ''}${source}`;
    let found = this.compiled.get(key);
    if (!found) this.compiled.set(key, (found = new RegExp(anchored ? `^(?:${source})$` : source)));
    return found;
  }
}

/** Prefix matches whole elements: "/foo" matches "/foo", "/foo/" and "/foo/bar", never "/foobar". */
export function pathMatches(route: PathRoute, path: string, expressions = new Expressions()): boolean {
  if (route.type === 'Exact') return path === route.match;
  if (route.type === 'RegularExpression') return expressions.of(route.match, true).test(path);
  return path.startsWith(route.match) && (path.length === route.match.length || path.charCodeAt(route.match.length) === 0x2f);
}

const valueHolds = (match: ValueMatch, value: string | undefined, expressions: Expressions) => value !== undefined && (match.regex ? expressions.of(match.value, false).test(value) : value === match.value);

/** The first value of each query parameter, as the spec matches them (exact names). */
function queryValues(query: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(query)) if (!values.has(name)) values.set(name, value);
  return values;
}

/** Whether a request holds a route's method, header and query conditions. */
export function conditionsHold(conditions: RouteConditions, request: RequestFacts, expressions = new Expressions()): boolean {
  if (conditions.method !== undefined && conditions.method !== request.method) return false;
  if (conditions.headers && !conditions.headers.every((match) => valueHolds(match, request.header(match.name), expressions))) return false;
  if (!conditions.query) return true;
  const values = queryValues(request.query);
  return conditions.query.every((match) => valueHolds(match, values.get(match.name), expressions));
}

/** A weighted route's backend for one request, in proportion to the weights (all zero: none, a 500). */
function weightedBackend(backends: { backend?: string; weight: number }[]): string | undefined {
  let total = 0;
  for (const { weight } of backends) total += weight;
  if (total === 0) return undefined;
  let point = Math.random() * total;
  for (const { backend, weight } of backends) {
    point -= weight;
    if (point < 0) return backend;
  }
  return backends[backends.length - 1].backend;
}

/** The Host header as routing compares it: lower case, without a port. */
export function routingHost(header: string | undefined): string {
  if (!header) return '';
  const text = header.toLowerCase();
  if (text.startsWith('[')) return text.slice(0, text.indexOf(']') + 1);
  const colon = text.indexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

/** Whether two lookups reached the same route (or none). */
export const sameRoute = (a: RouteMatch, b: RouteMatch) => (a.kind === 'none' ? b.kind === 'none' : b.kind === 'route' && a.route === b.route);

/** A whole table as the changes that build it from nothing. */
export function changesOf(table: RouteTable): RouteTableChanges {
  return {
    hosts: table.hosts, wildcards: table.wildcards, anyHost: table.anyHost ?? null, defaultBackend: table.defaultBackend ?? null,
    backends: table.backends, certificates: table.certificates, tlsHosts: table.tlsHosts, tlsWildcards: table.tlsWildcards,
  };
}

function applyTo<V>(map: Map<string, V>, changes: Record<string, V | null>, replaced?: (previous: V | undefined, next: V | null) => void): void {
  for (const key in changes) {
    const next = changes[key];
    replaced?.(map.get(key), next);
    if (next === null) map.delete(key);
    else map.set(key, next);
  }
}

/**
 * The route table as Maps (safe for names such as "constructor" that a client sends), built from a
 * whole table and then changed in place, one RouteTableChanges at a time: apply() is synchronous,
 * so a request is routed by the table before a sync or after it, never by half of one.
 */
export class Router {
  private readonly hosts = new Map<string, HostRoute>();
  private readonly wildcards = new Map<string, HostRoute>();
  private anyHost: HostRoute | undefined;
  private defaultBackend: DefaultRoute | undefined;
  private readonly backends = new Map<string, string[]>();
  private readonly tlsHosts = new Map<string, string>();
  private readonly tlsWildcards = new Map<string, string>();
  /** Endpoint → how many backends list it. */
  private readonly endpointUses = new Map<string, number>();
  private readonly wildcardsMatchSubdomains: boolean;
  private readonly expressions = new Expressions();

  constructor(table?: RouteTable) {
    this.wildcardsMatchSubdomains = table?.wildcardsMatchSubdomains === true;
    if (table) this.apply(changesOf(table));
  }

  /** The value of a wildcard map for a name: its one-label suffix, or (Gateway API) the longest suffix that has one. */
  private wildcardOf<V>(map: Map<string, V>, name: string): { suffix: string; value: V } | undefined {
    let dot = name.indexOf('.');
    while (dot > 0) {
      const suffix = name.slice(dot + 1);
      const value = map.get(suffix);
      if (value !== undefined) return { suffix, value };
      if (!this.wildcardsMatchSubdomains) return undefined;
      dot = name.indexOf('.', dot + 1);
    }
    return undefined;
  }

  /** Applies one plan's changes; returns the endpoints that no backend lists any more. */
  apply(changes: RouteTableChanges): string[] {
    applyTo(this.hosts, changes.hosts);
    applyTo(this.wildcards, changes.wildcards);
    if (changes.anyHost !== undefined) this.anyHost = changes.anyHost ?? undefined;
    this.defaultBackend = changes.defaultBackend ?? undefined;
    applyTo(this.tlsHosts, changes.tlsHosts);
    applyTo(this.tlsWildcards, changes.tlsWildcards);
    const released: string[] = [];
    applyTo(this.backends, changes.backends, (previous, next) => {
      for (const endpoint of next ?? []) this.endpointUses.set(endpoint, (this.endpointUses.get(endpoint) ?? 0) + 1);
      for (const endpoint of previous ?? []) {
        const uses = this.endpointUses.get(endpoint)! - 1;
        if (uses > 0) this.endpointUses.set(endpoint, uses);
        else {
          this.endpointUses.delete(endpoint);
          released.push(endpoint);
        }
      }
    });
    return released;
  }

  /** A backend's ready endpoints (none for an unknown key). */
  endpointsOf(backend: string): string[] {
    return this.backends.get(backend) ?? [];
  }

  /** Whether some backend lists this endpoint. */
  lists(endpoint: string): boolean {
    return this.endpointUses.has(endpoint);
  }

  /** The routes of a request's host, and the rule host that gave them ('*.foo.com', '' for no host). */
  hostRoutes(host: string): { ruleHost: string; routes: HostRoute | undefined } {
    const exact = this.hosts.get(host);
    if (exact) return { ruleHost: host, routes: exact };
    const wildcard = this.wildcardOf(this.wildcards, host);
    if (wildcard) return { ruleHost: `*.${wildcard.suffix}`, routes: wildcard.value };
    return { ruleHost: '', routes: this.anyHost };
  }

  /** Host, then path (normalized, never the query) and the route's conditions, then the default backend. */
  match(host: string, path: string, request?: RequestFacts): RouteMatch {
    const { ruleHost, routes } = this.hostRoutes(host);
    const found = routes?.paths.find((route) => pathMatches(route, path, this.expressions) && (route.conditions === undefined || (request !== undefined && conditionsHold(route.conditions, request, this.expressions)))) ?? this.defaultBackend;
    if (!found) return { kind: 'none' };
    const weighted = (found as PathRoute).actions?.backends;
    const backend = weighted ? weightedBackend(weighted) : found.backend;
    return {
      kind: 'route', route: found, ruleHost, endpoints: backend === undefined ? [] : this.backends.get(backend) ?? [], backend,
      redirectToHttps: routes?.redirectToHttps ?? false, path: 'path' in found ? (found as PathRoute).path : '',
    };
  }

  /** The certificate (a key of table.certificates) for an SNI name: exact, then one-label wildcard. */
  certificateFor(serverName: string): string | undefined {
    const name = serverName.toLowerCase();
    const exact = this.tlsHosts.get(name);
    if (exact !== undefined) return exact;
    return this.wildcardOf(this.tlsWildcards, name)?.value;
  }
}
