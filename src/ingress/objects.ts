import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import type { KubeObject } from '../cluster/cluster-state.js';
import { canonicalOctets } from '../ingress/request-path.js';
import { ObjectError } from '../cluster/model.js';

// Ingress, IngressClass and TLS Secrets, validated at the edge as the API server would (host and
// path rules of networking/v1 validation), so that the ingress planner only ever sees well-formed
// objects. networking.k8s.io/v1beta1 and extensions/v1beta1 Ingresses are converted to v1 here, as
// the deprecation guide says.

export const INGRESS_CONTROLLER = 'kubenft.io/ingress-controller';
export const INGRESS_CLASS_ANNOTATION = 'kubernetes.io/ingress.class';
export const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';
export const SSL_REDIRECT_ANNOTATION = 'kubenft.io/ssl-redirect';

export type PathType = 'Exact' | 'Prefix' | 'ImplementationSpecific';

export interface IngressBackend {
  service: string;
  /** A Service port number or name. */
  port: number | string;
}

export interface IngressPath {
  path: string;
  pathType: PathType;
  backend: IngressBackend;
}

export interface IngressRule {
  /** Lower-case FQDN, `*.` wildcard, or '' for every host. */
  host: string;
  paths: IngressPath[];
}

export interface IngressInfo {
  namespace: string;
  name: string;
  /** Milliseconds since the epoch; conflicts go to the oldest. */
  created: number;
  className?: string;
  annotationClass?: string;
  sslRedirect: boolean;
  defaultBackend?: IngressBackend;
  rules: IngressRule[];
  tls: { hosts: string[]; secretName?: string }[];
  /** status.loadBalancer.ingress as the API server holds it (IPs or host names), sorted. */
  statusAddresses: string[];
}

export interface IngressClassInfo {
  name: string;
  controller: string;
  isDefault: boolean;
  created: number;
}

/** A kubernetes.io/tls Secret's PEM certificate chain and key; other Secrets are kept as null. */
export interface TlsSecretInfo {
  namespace: string;
  name: string;
  cert: string;
  key: string;
}

type Raw = Record<string, unknown>;
const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// networking/v1 validation rejects these in Exact and Prefix paths: they would match differently
// after a backend normalises the path.
const INVALID_PATH_SEQUENCES = ['//', '/./', '/../', '%2f', '%2F'];
const INVALID_PATH_SUFFIXES = ['/..', '/.'];
/** Request-line characters a path may hold (RFC 3986 pchar and '/'), so that a rule cannot inject anything into a log or a header. */
const PATH_CHARACTERS = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;

export interface Context {
  kind: string;
  namespace?: string;
  name: string;
}

export function fail(context: Context, reason: string): never {
  throw new ObjectError(context.kind, context.namespace, context.name, reason);
}

export function metadataOf(kind: string, raw: KubeObject, namespaced: boolean): { context: Context; metadata: Raw } {
  const metadata = isObject(raw.metadata) ? raw.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  const namespace = namespaced ? (typeof metadata.namespace === 'string' && metadata.namespace ? metadata.namespace : 'default') : undefined;
  const context = { kind, namespace, name };
  if (!DNS1123_SUBDOMAIN.test(name)) fail(context, 'metadata.name is not a DNS-1123 subdomain');
  if (namespace !== undefined && !DNS1123_LABEL.test(namespace)) fail(context, 'metadata.namespace is not a DNS-1123 label');
  return { context, metadata };
}

/** Listed objects carry Date timestamps, watched and file ones strings; a missing one sorts first. */
export function creationTime(metadata: Raw): number {
  const value = metadata.creationTimestamp;
  const time = value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isFinite(time) ? time : 0;
}

const annotationsOf = (metadata: Raw): Record<string, unknown> => (isObject(metadata.annotations) ? metadata.annotations : {});

export function list(context: Context, value: unknown, path: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(context, `${path} must be a list`);
  return value;
}

export function object(context: Context, value: unknown, path: string): Raw {
  if (!isObject(value)) fail(context, `${path} must be an object`);
  return value;
}

/** networking/v1's host rule: a lower-case DNS name, `*.` as the whole first label, no IP, no port. */
export function validHost(host: string): string | undefined {
  if (isIP(host) !== 0) return 'must be a DNS name, not an IP address';
  if (host.includes(':')) return 'must not hold a port';
  const name = host.startsWith('*.') ? host.slice(2) : host;
  if (!DNS1123_SUBDOMAIN.test(name)) return 'must be a lower-case DNS-1123 subdomain, with at most a leading "*." label';
  return undefined;
}

function host(context: Context, value: unknown, path: string): string {
  if (value === undefined || value === null || value === '') return '';
  if (typeof value !== 'string') fail(context, `${path} must be a string`);
  const problem = validHost(value);
  if (problem) fail(context, `${path} ${JSON.stringify(value)} ${problem}`);
  return value;
}

function backend(context: Context, value: unknown, path: string): IngressBackend {
  const raw = object(context, value, path);
  if (raw.resource !== undefined) fail(context, `${path}.resource: resource backends are not supported, only services`);
  // v1beta1: serviceName and servicePort (a number, or a name, sometimes a numeric string).
  if (raw.serviceName !== undefined) {
    const service = raw.serviceName;
    if (typeof service !== 'string' || !DNS1123_LABEL.test(service)) fail(context, `${path}.serviceName must be a DNS-1123 label`);
    const port = raw.servicePort;
    if (typeof port === 'number') return { service, port: portNumber(context, port, `${path}.servicePort`) };
    if (typeof port === 'string' && /^\d+$/.test(port)) return { service, port: portNumber(context, Number(port), `${path}.servicePort`) };
    if (typeof port === 'string' && DNS1123_LABEL.test(port)) return { service, port };
    return fail(context, `${path}.servicePort must be a port number or name`);
  }
  const service = object(context, raw.service, `${path}.service`);
  if (typeof service.name !== 'string' || !DNS1123_LABEL.test(service.name)) fail(context, `${path}.service.name must be a DNS-1123 label`);
  const port = object(context, service.port, `${path}.service.port`);
  if (port.number !== undefined && port.name !== undefined) fail(context, `${path}.service.port: give number or name, not both`);
  if (port.number !== undefined) return { service: service.name, port: portNumber(context, port.number, `${path}.service.port.number`) };
  if (typeof port.name === 'string' && DNS1123_LABEL.test(port.name)) return { service: service.name, port: port.name };
  return fail(context, `${path}.service.port needs a number (1-65535) or a name (a DNS-1123 label)`);
}

function portNumber(context: Context, value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) fail(context, `${path} ${JSON.stringify(value)} is not a port number (1-65535)`);
  return value;
}

function ingressPath(context: Context, value: unknown, path: string): IngressPath {
  const raw = object(context, value, path);
  const pathType = raw.pathType ?? 'ImplementationSpecific';
  if (pathType !== 'Exact' && pathType !== 'Prefix' && pathType !== 'ImplementationSpecific') {
    fail(context, `${path}.pathType ${JSON.stringify(pathType)} is not Exact, Prefix or ImplementationSpecific`);
  }
  const text = raw.path ?? '/';
  const problem = rulePathProblem(text);
  if (problem) fail(context, `${path}.path ${JSON.stringify(text)} ${problem}`);
  return { path: text as string, pathType, backend: backend(context, raw.backend, `${path}.backend`) };
}

/** Why a rule's path cannot be matched (Ingress paths, HTTPRoute path matches), or undefined. */
export function rulePathProblem(text: unknown): string | undefined {
  if (typeof text !== 'string' || !PATH_CHARACTERS.test(text)) return 'must be an absolute path ("/…") of URL path characters';
  // Requests are routed by their normalized path: a rule must be one, percent-escapes decoded too (`/%2e%2e/`).
  const canonical = canonicalOctets(text);
  if (canonical === undefined) return 'holds a malformed percent-escape or %00';
  const bad = INVALID_PATH_SEQUENCES.find((sequence) => canonical.includes(sequence)) ?? INVALID_PATH_SUFFIXES.find((suffix) => canonical.endsWith(suffix));
  return bad === undefined ? undefined : `must not contain ${JSON.stringify(bad)}`;
}

const INGRESS_API_VERSIONS = ['networking.k8s.io/v1', 'networking.k8s.io/v1beta1', 'extensions/v1beta1'];

export function normalizeIngress(raw: KubeObject): IngressInfo {
  const { context, metadata } = metadataOf('Ingress', raw, true);
  if (raw.apiVersion !== undefined && !INGRESS_API_VERSIONS.includes(raw.apiVersion)) fail(context, `apiVersion ${JSON.stringify(raw.apiVersion)} is not ${INGRESS_API_VERSIONS.join(', ')}`);
  const spec = object(context, raw.spec ?? {}, 'spec');
  const annotations = annotationsOf(metadata);
  const annotationClass = annotations[INGRESS_CLASS_ANNOTATION];
  const className = spec.ingressClassName;
  if (className !== undefined && className !== null && (typeof className !== 'string' || !DNS1123_SUBDOMAIN.test(className))) fail(context, 'spec.ingressClassName must be a DNS-1123 subdomain');
  const rawDefault = spec.defaultBackend ?? spec.backend;
  const rules = list(context, spec.rules, 'spec.rules').map((value, index): IngressRule => {
    const rule = object(context, value, `spec.rules[${index}]`);
    const http = rule.http === undefined || rule.http === null ? { paths: [] } : object(context, rule.http, `spec.rules[${index}].http`);
    const paths = list(context, http.paths, `spec.rules[${index}].http.paths`).map((item, pathIndex) => ingressPath(context, item, `spec.rules[${index}].http.paths[${pathIndex}]`));
    if (rule.http !== undefined && rule.http !== null && paths.length === 0) fail(context, `spec.rules[${index}].http.paths must not be empty`);
    return { host: host(context, rule.host, `spec.rules[${index}].host`), paths };
  });
  if (rules.length === 0 && (rawDefault === undefined || rawDefault === null)) fail(context, 'spec needs rules or a defaultBackend');
  const tls = list(context, spec.tls, 'spec.tls').map((value, index) => {
    const entry = object(context, value, `spec.tls[${index}]`);
    const hosts = list(context, entry.hosts, `spec.tls[${index}].hosts`).map((item, hostIndex) => host(context, item, `spec.tls[${index}].hosts[${hostIndex}]`)).filter((item) => item !== '');
    const secretName = entry.secretName;
    if (secretName !== undefined && secretName !== null && (typeof secretName !== 'string' || !DNS1123_SUBDOMAIN.test(secretName))) fail(context, `spec.tls[${index}].secretName must be a DNS-1123 subdomain`);
    return { hosts, secretName: (secretName as string | null | undefined) || undefined };
  });
  const status = isObject(raw.status) && isObject(raw.status.loadBalancer) ? raw.status.loadBalancer : {};
  const statusAddresses = (Array.isArray(status.ingress) ? status.ingress : [])
    .map((entry: unknown) => (isObject(entry) ? entry.ip ?? entry.hostname : undefined))
    .filter((address): address is string => typeof address === 'string')
    .sort();
  return {
    namespace: context.namespace!,
    name: context.name,
    created: creationTime(metadata),
    statusAddresses,
    className: (className as string | null | undefined) || undefined,
    annotationClass: typeof annotationClass === 'string' && annotationClass !== '' ? annotationClass : undefined,
    sslRedirect: annotations[SSL_REDIRECT_ANNOTATION] !== 'false',
    defaultBackend: rawDefault === undefined || rawDefault === null ? undefined : backend(context, rawDefault, spec.defaultBackend ? 'spec.defaultBackend' : 'spec.backend'),
    rules,
    tls,
  };
}

export function normalizeIngressClass(raw: KubeObject): IngressClassInfo {
  const { context, metadata } = metadataOf('IngressClass', raw, false);
  const spec = object(context, raw.spec ?? {}, 'spec');
  if (typeof spec.controller !== 'string' || spec.controller === '') fail(context, 'spec.controller must be a non-empty string');
  return { name: context.name, controller: spec.controller, isDefault: annotationsOf(metadata)[DEFAULT_CLASS_ANNOTATION] === 'true', created: creationTime(metadata) };
}

function pemField(context: Context, data: Raw, stringData: Raw, key: string): string {
  if (typeof stringData[key] === 'string') return stringData[key] as string;
  const encoded = data[key];
  if (typeof encoded !== 'string' || encoded === '') fail(context, `data["${key}"] is missing`);
  return Buffer.from(encoded, 'base64').toString('utf8');
}

/** Only kubernetes.io/tls Secrets matter; the certificate and key are parsed here, so a bad pair is named before it reaches a TLS context. */
export function normalizeTlsSecret(raw: KubeObject): TlsSecretInfo | null {
  const { context } = metadataOf('Secret', raw, true);
  if (raw.type !== 'kubernetes.io/tls') return null;
  const data = isObject(raw.data) ? raw.data : {};
  const stringData = isObject(raw.stringData) ? raw.stringData : {};
  const cert = pemField(context, data, stringData, 'tls.crt');
  const key = pemField(context, data, stringData, 'tls.key');
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    return fail(context, `tls.crt is not a PEM certificate: ${(error as Error).message}`);
  }
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(key))) fail(context, 'tls.key does not belong to tls.crt');
  } catch (error) {
    if (error instanceof ObjectError) throw error;
    fail(context, `tls.key is not a PEM private key: ${(error as Error).message}`);
  }
  return { namespace: context.namespace!, name: context.name, cert, key };
}
