import type { KubeObject } from '../cluster/cluster-state.js';
import { type ObjectContext as Context, creationTime, fail, list, metadataOf, object, rulePathProblem, validHost } from '../ingress/index.js';

// GatewayClass, Gateway, HTTPRoute and ReferenceGrant (gateway.networking.k8s.io), validated at the
// edge as the CRDs' schemas and CEL rules would, so that the Gateway planner only ever sees
// well-formed objects. A field kubenft cannot serve is refused here, naming it, rather than
// accepted and ignored.

export const GATEWAY_CONTROLLER = 'kubenft.io/gateway-controller';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const API_VERSIONS = [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`];

type Raw = Record<string, unknown>;
const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** RFC 7230 token: an HTTP header name. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
/** A header value kubenft writes: no control characters (CR, LF) that would split a header. */
const HEADER_VALUE = /^[^\0-\x08\x0a-\x1f\x7f]*$/;

export interface ObjectMetaInfo {
  namespace: string;
  name: string;
  /** Milliseconds since the epoch; precedence and conflicts go to the oldest. */
  created: number;
  generation: number;
}

export interface GatewayClassInfo {
  name: string;
  controller: string;
  generation: number;
  /** status.conditions as the API server holds them (the status writer's comparison). */
  conditions: ConditionInfo[];
}

export interface ConditionInfo {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
}

export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values: string[] }[];
}

export interface RouteKind {
  group: string;
  kind: string;
}

export interface ObjectReference {
  group: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface ListenerInfo {
  name: string;
  /** Lower case, `*.` wildcard allowed; undefined: every host. */
  hostname?: string;
  port: number;
  protocol: string;
  /** HTTPS: Terminate with these certificates. */
  certificateRefs: ObjectReference[];
  tlsMode?: string;
  allowedNamespaces: { from: 'Same' | 'All' | 'Selector'; selector?: LabelSelector };
  /** undefined: the protocol's default (HTTPRoute). */
  allowedKinds?: RouteKind[];
}

export interface GatewayInfo extends ObjectMetaInfo {
  className: string;
  listeners: ListenerInfo[];
  /** spec.addresses given: kubenft serves on the node's listeners only and says so (UnsupportedAddress). */
  requestsAddresses: boolean;
  /** The status as the API server holds it, JSON (the status writer's comparison). */
  statusText: string;
}

export interface ParentReference {
  group: string;
  kind: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';
export type ValueMatchType = 'Exact' | 'RegularExpression';

export interface HTTPRouteMatchInfo {
  path: { type: PathMatchType; value: string };
  /** Names in lower case (they compare case-insensitively). */
  headers: { type: ValueMatchType; name: string; value: string }[];
  queryParams: { type: ValueMatchType; name: string; value: string }[];
  method?: string;
}

export interface HeaderModifierInfo {
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export type PathModifierInfo = { type: 'ReplaceFullPath'; value: string } | { type: 'ReplacePrefixMatch'; value: string };

export type HTTPRouteFilterInfo =
  | { type: 'RequestHeaderModifier'; modifier: HeaderModifierInfo }
  | { type: 'ResponseHeaderModifier'; modifier: HeaderModifierInfo }
  | { type: 'RequestRedirect'; scheme?: 'http' | 'https'; hostname?: string; path?: PathModifierInfo; port?: number; statusCode: number }
  | { type: 'URLRewrite'; hostname?: string; path?: PathModifierInfo }
  | { type: 'RequestMirror'; backend: BackendReference };

export interface BackendReference extends ObjectReference {
  port?: number;
}

export interface HTTPBackendRefInfo extends BackendReference {
  weight: number;
}

export interface HTTPRouteRuleInfo {
  matches: HTTPRouteMatchInfo[];
  filters: HTTPRouteFilterInfo[];
  backendRefs: HTTPBackendRefInfo[];
  timeouts: { requestMs?: number; backendRequestMs?: number };
}

export interface HTTPRouteInfo extends ObjectMetaInfo {
  parentRefs: ParentReference[];
  hostnames: string[];
  rules: HTTPRouteRuleInfo[];
  /** status.parents as the API server holds them, JSON (the status writer's comparison). */
  statusText: string;
}

export interface ReferenceGrantInfo {
  namespace: string;
  name: string;
  from: { group: string; kind: string; namespace: string }[];
  to: { group: string; kind: string; name?: string }[];
}

/** The object's name, namespace ('' for a cluster-scoped one), creation time and generation, its apiVersion checked. */
function metaOf(kind: string, raw: KubeObject, namespaced: boolean): { context: Context; meta: ObjectMetaInfo } {
  const { context, metadata } = metadataOf(kind, raw, namespaced);
  if (raw.apiVersion !== undefined && !API_VERSIONS.includes(raw.apiVersion)) fail(context, `apiVersion ${JSON.stringify(raw.apiVersion)} is not ${API_VERSIONS.join(' or ')}`);
  const generation = typeof metadata.generation === 'number' ? metadata.generation : 1;
  return { context, meta: { namespace: context.namespace ?? '', name: context.name, created: creationTime(metadata), generation } };
}

function optionalObject(context: Context, value: unknown, path: string): Raw {
  return value === undefined || value === null ? {} : object(context, value, path);
}

function text(context: Context, value: unknown, path: string, pattern?: RegExp, rule?: string): string {
  if (typeof value !== 'string' || value === '') fail(context, `${path} must be a non-empty string`);
  if (pattern && !pattern.test(value)) fail(context, `${path} ${JSON.stringify(value)} must be ${rule}`);
  return value;
}

function optionalText(context: Context, value: unknown, path: string, pattern?: RegExp, rule?: string): string | undefined {
  return value === undefined || value === null ? undefined : text(context, value, path, pattern, rule);
}

function integer(context: Context, value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(context, `${path} ${JSON.stringify(value)} must be an integer from ${min} to ${max}`);
  return value;
}

function oneOf<T extends string>(context: Context, value: unknown, path: string, allowed: readonly T[], fallback?: T): T {
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  if (!allowed.includes(value as T)) fail(context, `${path} ${JSON.stringify(value)} is not ${allowed.join(', ')}${fallback === undefined ? '' : ' (kubenft supports these)'}`);
  return value as T;
}

/** A Gateway API hostname: a DNS name, `*.` as the whole first label, no IP; lower-cased as the spec compares them. */
function hostname(context: Context, value: unknown, path: string): string {
  const name = text(context, value, path).toLowerCase();
  const problem = validHost(name);
  if (problem) fail(context, `${path} ${JSON.stringify(value)} ${problem}`);
  return name;
}

function conditionsOf(status: unknown): ConditionInfo[] {
  const conditions = isObject(status) && Array.isArray(status.conditions) ? status.conditions : [];
  return conditions.filter(isObject).map((condition) => ({
    type: String(condition.type), status: String(condition.status), reason: String(condition.reason ?? ''), message: String(condition.message ?? ''),
    ...(typeof condition.observedGeneration === 'number' ? { observedGeneration: condition.observedGeneration } : {}),
  }));
}

export function normalizeGatewayClass(raw: KubeObject): GatewayClassInfo {
  const { context, meta } = metaOf('GatewayClass', raw, false);
  const spec = object(context, raw.spec, 'spec');
  return { name: meta.name, controller: text(context, spec.controllerName, 'spec.controllerName'), generation: meta.generation, conditions: conditionsOf(raw.status) };
}

function labelSelector(context: Context, value: unknown, path: string): LabelSelector {
  const raw = optionalObject(context, value, path);
  const matchLabels = optionalObject(context, raw.matchLabels, `${path}.matchLabels`);
  for (const [key, label] of Object.entries(matchLabels)) if (typeof label !== 'string') fail(context, `${path}.matchLabels[${JSON.stringify(key)}] must be a string`);
  const matchExpressions = list(context, raw.matchExpressions, `${path}.matchExpressions`).map((item, index) => {
    const expression = object(context, item, `${path}.matchExpressions[${index}]`);
    const operator = oneOf(context, expression.operator, `${path}.matchExpressions[${index}].operator`, ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
    const values = list(context, expression.values, `${path}.matchExpressions[${index}].values`).map((entry) => String(entry));
    if ((operator === 'In' || operator === 'NotIn') === (values.length === 0)) fail(context, `${path}.matchExpressions[${index}]: ${operator} ${operator === 'In' || operator === 'NotIn' ? 'needs' : 'takes no'} values`);
    return { key: text(context, expression.key, `${path}.matchExpressions[${index}].key`), operator, values };
  });
  return { matchLabels: matchLabels as Record<string, string>, matchExpressions };
}

/** Whether labels satisfy a selector (as metav1.LabelSelectorAsSelector reads one). */
export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels)) if (labels[key] !== value) return false;
  return selector.matchExpressions.every(({ key, operator, values }) => {
    const has = Object.hasOwn(labels, key);
    switch (operator) {
      case 'In': return has && values.includes(labels[key]);
      case 'NotIn': return !has || !values.includes(labels[key]);
      case 'Exists': return has;
      case 'DoesNotExist': return !has;
    }
  });
}

function reference(context: Context, value: unknown, path: string, defaults: { group: string; kind: string }): ObjectReference {
  const raw = object(context, value, path);
  const group = raw.group === undefined || raw.group === null ? defaults.group : String(raw.group);
  const kind = raw.kind === undefined || raw.kind === null ? defaults.kind : text(context, raw.kind, `${path}.kind`);
  return {
    group, kind, name: text(context, raw.name, `${path}.name`),
    ...(raw.namespace === undefined || raw.namespace === null ? {} : { namespace: text(context, raw.namespace, `${path}.namespace`, DNS1123_LABEL, 'a DNS-1123 label') }),
  };
}

function listener(context: Context, value: unknown, path: string): ListenerInfo {
  const raw = object(context, value, path);
  const name = text(context, raw.name, `${path}.name`, DNS1123_SUBDOMAIN, 'a DNS-1123 subdomain');
  const protocol = text(context, raw.protocol, `${path}.protocol`);
  const tls = optionalObject(context, raw.tls, `${path}.tls`);
  if (protocol === 'HTTPS' && raw.tls === undefined) fail(context, `${path}.tls is required for protocol HTTPS`);
  if (protocol === 'HTTP' && raw.tls !== undefined && raw.tls !== null) fail(context, `${path}.tls is not allowed for protocol HTTP`);
  const allowed = optionalObject(context, raw.allowedRoutes, `${path}.allowedRoutes`);
  const namespaces = optionalObject(context, allowed.namespaces, `${path}.allowedRoutes.namespaces`);
  const from = oneOf(context, namespaces.from, `${path}.allowedRoutes.namespaces.from`, ['Same', 'All', 'Selector'] as const, 'Same');
  const kinds = allowed.kinds === undefined || allowed.kinds === null
    ? undefined
    : list(context, allowed.kinds, `${path}.allowedRoutes.kinds`).map((item, index) => {
      const kind = object(context, item, `${path}.allowedRoutes.kinds[${index}]`);
      return { group: kind.group === undefined || kind.group === null ? GATEWAY_GROUP : String(kind.group), kind: text(context, kind.kind, `${path}.allowedRoutes.kinds[${index}].kind`) };
    });
  return {
    name,
    ...(raw.hostname === undefined || raw.hostname === null ? {} : { hostname: hostname(context, raw.hostname, `${path}.hostname`) }),
    port: integer(context, raw.port, `${path}.port`, 1, 65535),
    protocol,
    tlsMode: raw.tls === undefined || raw.tls === null ? undefined : String(tls.mode ?? 'Terminate'),
    certificateRefs: list(context, tls.certificateRefs, `${path}.tls.certificateRefs`).map((item, index) => reference(context, item, `${path}.tls.certificateRefs[${index}]`, { group: '', kind: 'Secret' })),
    allowedNamespaces: { from, ...(from === 'Selector' ? { selector: labelSelector(context, namespaces.selector, `${path}.allowedRoutes.namespaces.selector`) } : {}) },
    ...(kinds ? { allowedKinds: kinds } : {}),
  };
}

export function normalizeGateway(raw: KubeObject): GatewayInfo {
  const { context, meta } = metaOf('Gateway', raw, true);
  const spec = object(context, raw.spec, 'spec');
  const listeners = list(context, spec.listeners, 'spec.listeners').map((item, index) => listener(context, item, `spec.listeners[${index}]`));
  if (listeners.length === 0) fail(context, 'spec.listeners must not be empty');
  const names = new Set<string>();
  for (const { name } of listeners) {
    if (names.has(name)) fail(context, `spec.listeners: the name ${name} is given twice`);
    names.add(name);
  }
  return {
    ...meta,
    className: text(context, spec.gatewayClassName, 'spec.gatewayClassName'),
    listeners,
    requestsAddresses: list(context, spec.addresses, 'spec.addresses').length > 0,
    statusText: JSON.stringify(raw.status ?? {}),
  };
}

function parentRef(context: Context, value: unknown, path: string): ParentReference {
  const raw = object(context, value, path);
  const ref = reference(context, raw, path, { group: GATEWAY_GROUP, kind: 'Gateway' });
  return {
    ...ref,
    ...(raw.sectionName === undefined || raw.sectionName === null ? {} : { sectionName: text(context, raw.sectionName, `${path}.sectionName`, DNS1123_SUBDOMAIN, 'a DNS-1123 subdomain') }),
    ...(raw.port === undefined || raw.port === null ? {} : { port: integer(context, raw.port, `${path}.port`, 1, 65535) }),
  };
}

/** A path as the route plan matches it: absolute, and one the request normalizer can produce. */
function routePath(context: Context, value: unknown, path: string): string {
  const given = text(context, value, path);
  const problem = rulePathProblem(given);
  if (problem) fail(context, `${path} ${JSON.stringify(given)} ${problem}`);
  return given;
}

function regularExpression(context: Context, value: unknown, path: string): string {
  const source = text(context, value, path);
  try {
    new RegExp(source);
  } catch (error) {
    fail(context, `${path} ${JSON.stringify(source)} is not a regular expression: ${(error as Error).message}`);
  }
  return source;
}

function valueMatches(context: Context, value: unknown, path: string, caseless: boolean) {
  const seen = new Set<string>();
  return list(context, value, path).map((item, index) => {
    const raw = object(context, item, `${path}[${index}]`);
    const type = oneOf(context, raw.type, `${path}[${index}].type`, ['Exact', 'RegularExpression'] as const, 'Exact');
    const given = text(context, raw.name, `${path}[${index}].name`, HEADER_NAME, 'an HTTP token');
    const name = caseless ? given.toLowerCase() : given;
    // The spec: only the first entry with an equivalent name is considered; the CRD refuses duplicates.
    if (seen.has(name)) fail(context, `${path}[${index}].name ${given} is given twice`);
    seen.add(name);
    const expected = type === 'RegularExpression' ? regularExpression(context, raw.value, `${path}[${index}].value`) : typeof raw.value === 'string' ? raw.value : fail(context, `${path}[${index}].value must be a string`);
    return { type, name, value: expected };
  });
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

function routeMatch(context: Context, value: unknown, path: string): HTTPRouteMatchInfo {
  const raw = object(context, value, path);
  const rawPath = optionalObject(context, raw.path, `${path}.path`);
  const type = oneOf(context, rawPath.type, `${path}.path.type`, ['Exact', 'PathPrefix', 'RegularExpression'] as const, 'PathPrefix');
  const pathValue = rawPath.value ?? '/';
  return {
    path: { type, value: type === 'RegularExpression' ? regularExpression(context, pathValue, `${path}.path.value`) : routePath(context, pathValue, `${path}.path.value`) },
    headers: valueMatches(context, raw.headers, `${path}.headers`, true),
    queryParams: valueMatches(context, raw.queryParams, `${path}.queryParams`, false),
    ...(raw.method === undefined || raw.method === null ? {} : { method: oneOf(context, raw.method, `${path}.method`, METHODS) }),
  };
}

function headerModifier(context: Context, value: unknown, path: string): HeaderModifierInfo {
  const raw = object(context, value, path);
  const pairs = (field: 'set' | 'add') => list(context, raw[field], `${path}.${field}`).map((item, index) => {
    const pair = object(context, item, `${path}.${field}[${index}]`);
    return {
      name: text(context, pair.name, `${path}.${field}[${index}].name`, HEADER_NAME, 'an HTTP token'),
      value: typeof pair.value === 'string' && HEADER_VALUE.test(pair.value) ? pair.value : fail(context, `${path}.${field}[${index}].value must be a string without control characters`),
    };
  });
  const remove = list(context, raw.remove, `${path}.remove`).map((item, index) => text(context, item, `${path}.remove[${index}]`, HEADER_NAME, 'an HTTP token'));
  return { set: pairs('set'), add: pairs('add'), remove };
}

function pathModifier(context: Context, value: unknown, path: string): PathModifierInfo | undefined {
  if (value === undefined || value === null) return undefined;
  const raw = object(context, value, path);
  const type = oneOf(context, raw.type, `${path}.type`, ['ReplaceFullPath', 'ReplacePrefixMatch'] as const);
  const field = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  return { type, value: routePath(context, raw[field], `${path}.${field}`) };
}

function backendReference(context: Context, raw: Raw, path: string): BackendReference {
  const ref = reference(context, raw, path, { group: '', kind: 'Service' });
  const port = raw.port === undefined || raw.port === null ? undefined : integer(context, raw.port, `${path}.port`, 1, 65535);
  if (ref.group === '' && ref.kind === 'Service' && port === undefined) fail(context, `${path}.port is required for a Service`);
  return { ...ref, ...(port === undefined ? {} : { port }) };
}

function routeFilter(context: Context, value: unknown, path: string): HTTPRouteFilterInfo {
  const raw = object(context, value, path);
  const type = oneOf(context, raw.type, `${path}.type`, ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'] as const);
  switch (type) {
    case 'RequestHeaderModifier':
      return { type, modifier: headerModifier(context, raw.requestHeaderModifier, `${path}.requestHeaderModifier`) };
    case 'ResponseHeaderModifier':
      return { type, modifier: headerModifier(context, raw.responseHeaderModifier, `${path}.responseHeaderModifier`) };
    case 'RequestRedirect': {
      const redirect = object(context, raw.requestRedirect, `${path}.requestRedirect`);
      const scheme = redirect.scheme === undefined || redirect.scheme === null ? undefined : oneOf(context, redirect.scheme, `${path}.requestRedirect.scheme`, ['http', 'https'] as const);
      const statusCode = redirect.statusCode === undefined || redirect.statusCode === null ? 302 : redirect.statusCode;
      if (![301, 302, 303, 307, 308].includes(statusCode as number)) fail(context, `${path}.requestRedirect.statusCode ${JSON.stringify(statusCode)} is not 301, 302, 303, 307 or 308`);
      return {
        type, statusCode: statusCode as number,
        ...(scheme ? { scheme } : {}),
        ...(redirect.hostname === undefined || redirect.hostname === null ? {} : { hostname: hostname(context, redirect.hostname, `${path}.requestRedirect.hostname`) }),
        ...(redirect.port === undefined || redirect.port === null ? {} : { port: integer(context, redirect.port, `${path}.requestRedirect.port`, 1, 65535) }),
        ...(redirect.path === undefined || redirect.path === null ? {} : { path: pathModifier(context, redirect.path, `${path}.requestRedirect.path`) }),
      };
    }
    case 'URLRewrite': {
      const rewrite = object(context, raw.urlRewrite, `${path}.urlRewrite`);
      return {
        type,
        ...(rewrite.hostname === undefined || rewrite.hostname === null ? {} : { hostname: hostname(context, rewrite.hostname, `${path}.urlRewrite.hostname`) }),
        ...(rewrite.path === undefined || rewrite.path === null ? {} : { path: pathModifier(context, rewrite.path, `${path}.urlRewrite.path`) }),
      };
    }
    case 'RequestMirror': {
      const mirror = object(context, raw.requestMirror, `${path}.requestMirror`);
      if (mirror.percent !== undefined || mirror.fraction !== undefined) fail(context, `${path}.requestMirror: percent and fraction are not supported (every request is mirrored)`);
      return { type, backend: backendReference(context, object(context, mirror.backendRef, `${path}.requestMirror.backendRef`), `${path}.requestMirror.backendRef`) };
    }
  }
}

/** A Gateway API Duration ("1h2m3s4ms" and the like) in milliseconds. */
function duration(context: Context, value: unknown, path: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const given = text(context, value, path);
  const match = /^(?:(\d{1,5})h)?(?:(\d{1,5})m)?(?:(\d{1,5})s)?(?:(\d{1,5})ms)?$/.exec(given);
  if (!match || given === '') fail(context, `${path} ${JSON.stringify(given)} is not a duration such as 1s or 500ms`);
  const [, hours, minutes, seconds, millis] = match.map((part) => Number(part ?? 0));
  return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis;
}

function routeRule(context: Context, value: unknown, path: string): HTTPRouteRuleInfo {
  const raw = object(context, value, path);
  const matches = list(context, raw.matches, `${path}.matches`).map((item, index) => routeMatch(context, item, `${path}.matches[${index}]`));
  const filters = list(context, raw.filters, `${path}.filters`).map((item, index) => routeFilter(context, item, `${path}.filters[${index}]`));
  const kinds = filters.map((filter) => filter.type);
  for (const once of ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']) {
    if (kinds.filter((kind) => kind === once).length > 1) fail(context, `${path}.filters: ${once} may be given once`);
  }
  if (kinds.includes('RequestRedirect') && kinds.includes('URLRewrite')) fail(context, `${path}.filters: RequestRedirect and URLRewrite cannot be combined`);
  const backendRefs = list(context, raw.backendRefs, `${path}.backendRefs`).map((item, index) => {
    const ref = object(context, item, `${path}.backendRefs[${index}]`);
    if (list(context, ref.filters, `${path}.backendRefs[${index}].filters`).length > 0) fail(context, `${path}.backendRefs[${index}].filters: filters on a backendRef are not supported`);
    return { ...backendReference(context, ref, `${path}.backendRefs[${index}]`), weight: ref.weight === undefined || ref.weight === null ? 1 : integer(context, ref.weight, `${path}.backendRefs[${index}].weight`, 0, 1_000_000) };
  });
  if (kinds.includes('RequestRedirect') && backendRefs.length > 0) fail(context, `${path}: a RequestRedirect rule takes no backendRefs`);
  for (const filter of filters) {
    const prefixed = filter.type === 'RequestRedirect' || filter.type === 'URLRewrite' ? filter.path?.type === 'ReplacePrefixMatch' : false;
    if (prefixed && !(matches.length === 1 && matches[0].path.type === 'PathPrefix')) fail(context, `${path}.filters: ReplacePrefixMatch needs exactly one PathPrefix match`);
  }
  const timeouts = optionalObject(context, raw.timeouts, `${path}.timeouts`);
  const requestMs = duration(context, timeouts.request, `${path}.timeouts.request`);
  const backendRequestMs = duration(context, timeouts.backendRequest, `${path}.timeouts.backendRequest`);
  if (requestMs !== undefined && backendRequestMs !== undefined && requestMs !== 0 && (backendRequestMs === 0 || backendRequestMs > requestMs)) fail(context, `${path}.timeouts.backendRequest must not be longer than timeouts.request`);
  return {
    matches: matches.length > 0 ? matches : [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
    filters, backendRefs,
    timeouts: { ...(requestMs ? { requestMs } : {}), ...(backendRequestMs ? { backendRequestMs } : {}) },
  };
}

export function normalizeHTTPRoute(raw: KubeObject): HTTPRouteInfo {
  const { context, meta } = metaOf('HTTPRoute', raw, true);
  const spec = object(context, raw.spec ?? {}, 'spec');
  const rules = list(context, spec.rules, 'spec.rules').map((item, index) => routeRule(context, item, `spec.rules[${index}]`));
  return {
    ...meta,
    parentRefs: list(context, spec.parentRefs, 'spec.parentRefs').map((item, index) => parentRef(context, item, `spec.parentRefs[${index}]`)),
    hostnames: list(context, spec.hostnames, 'spec.hostnames').map((item, index) => hostname(context, item, `spec.hostnames[${index}]`)),
    rules: rules.length > 0 ? rules : [{ matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [], backendRefs: [], timeouts: {} }],
    statusText: JSON.stringify(isObject(raw.status) ? raw.status.parents ?? [] : []),
  };
}

export function normalizeReferenceGrant(raw: KubeObject): ReferenceGrantInfo {
  const { context, meta } = metaOf('ReferenceGrant', raw, true);
  const spec = object(context, raw.spec, 'spec');
  const from = list(context, spec.from, 'spec.from').map((item, index) => {
    const entry = object(context, item, `spec.from[${index}]`);
    return { group: String(entry.group ?? ''), kind: text(context, entry.kind, `spec.from[${index}].kind`), namespace: text(context, entry.namespace, `spec.from[${index}].namespace`, DNS1123_LABEL, 'a DNS-1123 label') };
  });
  const to = list(context, spec.to, 'spec.to').map((item, index) => {
    const entry = object(context, item, `spec.to[${index}]`);
    return { group: String(entry.group ?? ''), kind: text(context, entry.kind, `spec.to[${index}].kind`), ...(optionalText(context, entry.name, `spec.to[${index}].name`) ? { name: String(entry.name) } : {}) };
  });
  if (from.length === 0 || to.length === 0) fail(context, 'spec.from and spec.to must not be empty');
  return { namespace: meta.namespace, name: meta.name, from, to };
}
