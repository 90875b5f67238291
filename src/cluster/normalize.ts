import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { networkCIDR } from '../kernel/addresses.js';
import {
  type EndpointInfo, type EndpointSliceInfo, type EndpointSlicePort, type IPFamily, type NodeInfo, ObjectError,
  type Protocol, type ServiceInfo, type ServicePortInfo,
} from './model.js';

// Validation of Kubernetes objects at the edge. Every reason names the offending field, and an
// object either normalizes completely or is rejected as a whole: half a Service is worse than none.

type Raw = Record<string, unknown>;

const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);
const PROTOCOLS: Protocol[] = ['TCP', 'UDP', 'SCTP'];
const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Objects labelled so belong to another service proxy (kube-proxy's informers select them out). */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
/** The EndpointSlice controller's label on the slices of headless services (selected out too). */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

const labelsOf = (read: Reader, raw: unknown) => read.optionalObject(((raw as Raw).metadata as Raw).labels, 'metadata.labels');

// The lists a normalized object holds are exact-size copies (flatMap and filter leave room to grow:
// ~130 bytes a list), and every empty one is this one frozen array: most services have no
// externalIPs, load-balancer IPs or source ranges, and an array object for each of those lists
// cost ~10 MB at 100k services. Frozen, so that a consumer mutating it fails loudly.
const NONE = Object.freeze([]) as unknown as never[];
const held = <T>(list: T[]): T[] => (list.length === 0 ? NONE : list.slice());

/** The special addresses, as Go's net.IP predicates (IsUnspecified, IsLoopback, …) that the API server uses define them. */
type SpecialAddress = 'unspecified' | 'loopback' | 'link-local' | 'link-local multicast' | 'multicast' | 'broadcast';
const SPECIAL_ADDRESS_NAMES: Record<SpecialAddress, string> = {
  unspecified: 'the unspecified address',
  loopback: 'a loopback address',
  'link-local': 'a link-local address',
  'link-local multicast': 'a link-local multicast address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
};

/** `text` is a valid IPv4 address (no leading zeros: node:net's isIP refuses them). */
function specialIPv4(text: string): SpecialAddress | undefined {
  const first = parseInt(text, 10);
  // Most addresses are none of these: decided on the first octet, without splitting the text.
  if (first !== 0 && first !== 127 && first !== 169 && first < 224) return undefined;
  const [, second, third, fourth] = text.split('.').map(Number);
  if (first === 0 && second === 0 && third === 0 && fourth === 0) return 'unspecified';
  if (first === 127) return 'loopback';
  if (first === 169 && second === 254) return 'link-local';
  if (first === 224 && second === 0 && third === 0) return 'link-local multicast';
  if (first >= 224 && first <= 239) return 'multicast';
  if (first === 255 && second === 255 && third === 255 && fourth === 255) return 'broadcast';
  return undefined;
}

function specialIPv6(bytes: number[]): SpecialAddress | undefined {
  if (bytes.every((byte) => byte === 0)) return 'unspecified';
  if (bytes[15] === 1 && bytes.slice(0, 15).every((byte) => byte === 0)) return 'loopback';
  if (bytes[0] === 0xfe && (bytes[1] & 0xc0) === 0x80) return 'link-local';
  // ffX2::/16 whatever the flags X, as Go's IsLinkLocalMulticast.
  if (bytes[0] === 0xff && (bytes[1] & 0x0f) === 0x02) return 'link-local multicast';
  if (bytes[0] === 0xff) return 'multicast';
  return undefined;
}

// Objects read from manifests have no API server in front of them, so each address field refuses
// the special addresses the API server refuses there (kubernetes/kubernetes, pkg/apis):
const NO_SPECIAL_ADDRESS: ReadonlySet<SpecialAddress> = new Set();
/**
 * EndpointSlice (and Endpoints) addresses: discovery/validation validateEndpoints and
 * core/validation validateEndpointAddress refuse, through ValidateEndpointIP / ValidateNonSpecialIP,
 * unspecified, loopback, link-local and link-local multicast addresses. Multicast and broadcast
 * addresses too here: no pod can have one (upstream lets global multicast through, which its own
 * comment on ValidateEndpointIP calls probably a bug), and a DNAT to one cannot reach a pod.
 */
const ENDPOINT_REFUSED: ReadonlySet<SpecialAddress> = new Set(['unspecified', 'loopback', 'link-local', 'link-local multicast', 'multicast', 'broadcast']);
/** spec.externalIPs: core/validation ValidateService, IsValidIP then ValidateNonSpecialIP. */
const EXTERNAL_IP_REFUSED: ReadonlySet<SpecialAddress> = new Set(['unspecified', 'loopback', 'link-local', 'link-local multicast']);
/**
 * spec.clusterIPs: ValidateServiceClusterIPsRelatedFields checks only the syntax (IsValidIP), but
 * the allocator (registry/core/service/ipallocator) never hands out a range's network address nor
 * an IPv4 range's broadcast address, so no cluster IP is ever the unspecified or broadcast address.
 */
const CLUSTER_IP_REFUSED: ReadonlySet<SpecialAddress> = new Set(['unspecified', 'broadcast']);
/** discovery/validation: maxAddresses. */
const MAX_ENDPOINT_ADDRESSES = 100;

class Reader {
  constructor(readonly fail: (reason: string) => never) {}

  object(value: unknown, path: string): Raw {
    if (!isObject(value)) this.fail(`${path} must be an object`);
    return value;
  }

  optionalObject(value: unknown, path: string): Raw {
    return value === undefined || value === null ? {} : this.object(value, path);
  }

  list(value: unknown, path: string): unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(`${path} must be a list`);
    return value;
  }

  string(value: unknown, path: string): string {
    if (typeof value !== 'string' || value === '') this.fail(`${path} must be a non-empty string`);
    return value;
  }

  optionalString(value: unknown, path: string): string | undefined {
    return value === undefined || value === null || value === '' ? undefined : this.string(value, path);
  }

  port(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
      this.fail(`${path} ${JSON.stringify(value)} is not a port number (1-65535)`);
    }
    return value;
  }

  protocol(value: unknown, path: string): Protocol {
    if (value === undefined || value === null) return 'TCP';
    if (!PROTOCOLS.includes(value as Protocol)) this.fail(`${path} ${JSON.stringify(value)} is not TCP, UDP or SCTP`);
    return value as Protocol;
  }

  /** A valid IP address (of `family`, when given) that is none of the `refused` special addresses. */
  address(value: unknown, path: string, family?: IPFamily, refused: ReadonlySet<SpecialAddress> = NO_SPECIAL_ADDRESS): string {
    const text = this.string(value, path);
    const version = isIP(text);
    if (version === 0) this.fail(`${path} ${JSON.stringify(text)} is not an IP address`);
    if (family !== undefined && version !== family) this.fail(`${path} ${text} is not an IPv${family} address`);
    if (version === 4) {
      if (refused.size > 0) this.refuseSpecial(path, text, specialIPv4(text), refused);
      return text;
    }
    const parsed = ipaddr.IPv6.parse(text);
    if (parsed.isIPv4MappedAddress()) this.fail(`${path} ${text} is an IPv4-mapped IPv6 address`);
    if (refused.size > 0) this.refuseSpecial(path, text, specialIPv6(parsed.toByteArray()), refused);
    // One spelling per address, so that the same endpoint written two ways is one endpoint.
    return parsed.toString();
  }

  private refuseSpecial(path: string, text: string, special: SpecialAddress | undefined, refused: ReadonlySet<SpecialAddress>): void {
    if (special !== undefined && refused.has(special)) this.fail(`${path} ${text} is ${SPECIAL_ADDRESS_NAMES[special]}`);
  }

  cidr(value: unknown, path: string): string {
    const text = this.string(value, path);
    try {
      return networkCIDR(text);
    } catch {
      this.fail(`${path} ${JSON.stringify(text)} is not a CIDR`);
    }
  }

  boolean(value: unknown, path: string, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') this.fail(`${path} must be true or false`);
    return value;
  }
}

export const familyOf = (address: string): IPFamily => (isIP(address) === 6 ? 6 : 4);

/** Validates a CIDR given on the command line or in a config file. */
export function parseCIDR(text: string, what: string): string {
  return new Reader((reason) => {
    throw new Error(`${what}: ${reason}`);
  }).cidr(text, what);
}

// Kubernetes' own name rules. They also keep every name safe inside nft identifiers, iptables
// comments and log lines, which is why they are enforced here even for objects from files.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_RULES: Record<string, { pattern: RegExp; rule: string }> = {
  Service: { pattern: DNS1035_LABEL, rule: 'a DNS-1035 label (lower-case letters, digits and "-", at most 63, starting with a letter)' },
  EndpointSlice: { pattern: DNS1123_SUBDOMAIN, rule: 'a DNS-1123 subdomain' },
  Endpoints: { pattern: DNS1035_LABEL, rule: 'a DNS-1035 label' },
  Node: { pattern: DNS1123_SUBDOMAIN, rule: 'a DNS-1123 subdomain' },
};
/** Kubernetes caps an EndpointSlice at 1000 endpoints; more is not a slice any controller wrote. */
export const MAX_SLICE_ENDPOINTS = 1000;

function readerFor(kind: string, raw: unknown): { read: Reader; metadata: { namespace: string; name: string } } {
  const meta = isObject(raw) && isObject(raw.metadata) ? raw.metadata : {};
  const namespace = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
  const name = typeof meta.name === 'string' ? meta.name : undefined;
  const read = new Reader((reason) => {
    throw new ObjectError(kind, namespace, name, reason);
  });
  if (!isObject(raw)) read.object(raw, 'the object');
  if (name === undefined || name === '') read.string(undefined, 'metadata.name');
  const rule = NAME_RULES[kind];
  if (!rule.pattern.test(name as string)) read.fail(`metadata.name is not ${rule.rule}`);
  if (kind !== 'Node' && !DNS1123_LABEL.test(namespace)) read.fail('metadata.namespace is not a DNS-1123 label');
  if (meta.namespace !== undefined && meta.namespace !== null && typeof meta.namespace !== 'string') read.fail('metadata.namespace is not a string');
  // What ObjectMeta cannot hold, kubectl and the API server refuse: a manifest's `version: 1.0` label is a number.
  for (const field of ['labels', 'annotations']) {
    const map = meta[field];
    if (map === undefined || map === null) continue;
    if (!isObject(map)) read.fail(`metadata.${field} is not a map`);
    for (const [key, value] of Object.entries(map as Raw)) if (value !== null && typeof value !== 'string') read.fail(`metadata.${field}["${key}"] is not a string`);
  }
  return { read, metadata: { namespace, name: name as string } };
}

/** A DNS name as spec.externalName holds it (RFC 1123 subdomain; a trailing dot allowed). */
const EXTERNAL_NAME = /^(?=.{1,253}\.?$)([A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?\.?$/;

/** ExternalName services carry only their alias: they have no address for any dataplane but DNS. */
function externalNameService(read: Reader, metadata: { namespace: string; name: string }, spec: Raw, otherProxy: boolean): ServiceInfo {
  const target = spec.externalName;
  if (typeof target !== 'string' || !EXTERNAL_NAME.test(target)) read.fail('spec.externalName is not a DNS name');
  return {
    namespace: metadata.namespace, name: metadata.name, type: 'ExternalName', headless: false, otherProxy, externalName: target.toLowerCase().replace(/\.$/, ''),
    clusterIPs: NONE, ports: NONE, externalIPs: NONE, loadBalancerIPs: NONE, loadBalancerSourceRanges: NONE,
    externalTrafficPolicyLocal: false, internalTrafficPolicyLocal: false,
  };
}

export function normalizeService(raw: unknown): ServiceInfo {
  const { read, metadata } = readerFor('Service', raw);
  const spec = read.object((raw as Raw).spec, 'spec');
  const otherProxy = labelsOf(read, raw)[SERVICE_PROXY_NAME_LABEL] !== undefined;
  const type = spec.type ?? 'ClusterIP';
  if (type === 'ExternalName') return externalNameService(read, metadata, spec, otherProxy);
  if (type !== 'ClusterIP' && type !== 'NodePort' && type !== 'LoadBalancer') read.fail(`spec.type ${JSON.stringify(type)} is not ClusterIP, NodePort, LoadBalancer or ExternalName`);

  const primary = spec.clusterIP;
  const headless = primary === 'None';
  const listed = read.list(spec.clusterIPs, 'spec.clusterIPs');
  const clusterIPsRaw = headless ? [] : listed.length > 0 ? listed : primary === undefined || primary === null || primary === '' ? [] : [primary];
  const clusterIPs = held(clusterIPsRaw.map((ip, index) => read.address(ip, `spec.clusterIPs[${index}]`, undefined, CLUSTER_IP_REFUSED)));
  if (primary && !headless && clusterIPs.length > 0 && read.address(primary, 'spec.clusterIP') !== clusterIPs[0]) {
    read.fail(`spec.clusterIP ${String(primary)} differs from spec.clusterIPs[0]`);
  }
  read.list(spec.ipFamilies, 'spec.ipFamilies').forEach((family, index) => {
    const expected = family === 'IPv4' ? 4 : family === 'IPv6' ? 6 : read.fail(`spec.ipFamilies[${index}] ${JSON.stringify(family)} is not IPv4 or IPv6`);
    if (index < clusterIPs.length && familyOf(clusterIPs[index]) !== expected) read.fail(`spec.clusterIPs[${index}] ${clusterIPs[index]} is not of family ${family}`);
  });
  if (clusterIPs.length === 2 && familyOf(clusterIPs[0]) === familyOf(clusterIPs[1])) {
    read.fail('spec.clusterIPs holds two addresses of one family');
  }

  const names = new Set<string>();
  const ports = held(read.list(spec.ports, 'spec.ports').map((entry, index): ServicePortInfo => {
    const path = `spec.ports[${index}]`;
    const port = read.object(entry, path);
    const name = read.optionalString(port.name, `${path}.name`) ?? '';
    if (name !== '' && !DNS1123_LABEL.test(name)) read.fail(`${path}.name is not a DNS-1123 label`);
    if (names.has(name)) read.fail(`${path}.name ${JSON.stringify(name)} is used twice`);
    names.add(name);
    const number = read.port(port.port, `${path}.port`);
    const target = port.targetPort;
    const targetPort = target === undefined || target === null || target === 0 ? number
      : typeof target === 'string' ? read.string(target, `${path}.targetPort`) : read.port(target, `${path}.targetPort`);
    const nodePort = port.nodePort === undefined || port.nodePort === null || port.nodePort === 0 ? undefined : read.port(port.nodePort, `${path}.nodePort`);
    return { name, protocol: read.protocol(port.protocol, `${path}.protocol`), port: number, targetPort, nodePort };
  }));
  if (!headless && clusterIPs.length > 0 && ports.length === 0) read.fail('spec.ports is empty');

  const status = read.optionalObject((raw as Raw).status, 'status');
  const loadBalancer = read.optionalObject(status.loadBalancer, 'status.loadBalancer');
  const loadBalancerIPs = held(read.list(loadBalancer.ingress, 'status.loadBalancer.ingress').flatMap((entry, index) => {
    const ingress = read.object(entry, `status.loadBalancer.ingress[${index}]`);
    // No special address is refused here: ValidateLoadBalancerStatus checks only the syntax (IsValidIP).
    return ingress.ip === undefined ? [] : [read.address(ingress.ip, `status.loadBalancer.ingress[${index}].ip`)];
  }));
  const affinity = spec.sessionAffinity === 'ClientIP';
  const affinityConfig = read.optionalObject(read.optionalObject(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig').clientIP, 'spec.sessionAffinityConfig.clientIP');
  const timeout = affinityConfig.timeoutSeconds ?? 10800;
  if (affinity && (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 86400)) {
    read.fail(`spec.sessionAffinityConfig.clientIP.timeoutSeconds ${JSON.stringify(timeout)} is not 1-86400`);
  }

  return {
    namespace: metadata.namespace,
    name: metadata.name,
    type: type as ServiceInfo['type'],
    headless,
    otherProxy,
    clusterIPs,
    ports,
    externalIPs: held(read.list(spec.externalIPs, 'spec.externalIPs').map((ip, index) => read.address(ip, `spec.externalIPs[${index}]`, undefined, EXTERNAL_IP_REFUSED))),
    loadBalancerIPs,
    loadBalancerSourceRanges: held(read.list(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges')
      .map((cidr, index) => read.cidr(String(cidr).trim(), `spec.loadBalancerSourceRanges[${index}]`))),
    affinityTimeoutSeconds: affinity ? (timeout as number) : undefined,
    externalTrafficPolicyLocal: spec.externalTrafficPolicy === 'Local',
    internalTrafficPolicyLocal: spec.internalTrafficPolicy === 'Local',
    healthCheckNodePort: spec.healthCheckNodePort ? read.port(spec.healthCheckNodePort, 'spec.healthCheckNodePort') : undefined,
    trafficDistribution: read.optionalString(spec.trafficDistribution, 'spec.trafficDistribution'),
  };
}

/** Returns undefined for slices kube-proxy ignores (FQDN, or not owned by a Service). */
export function normalizeEndpointSlice(raw: unknown): EndpointSliceInfo | undefined {
  const { read, metadata } = readerFor('EndpointSlice', raw);
  const labels = labelsOf(read, raw);
  const serviceName = labels[SERVICE_NAME_LABEL];
  const addressType = (raw as Raw).addressType;
  if (addressType === 'FQDN' || serviceName === undefined) return undefined;
  if (addressType !== 'IPv4' && addressType !== 'IPv6') read.fail(`addressType ${JSON.stringify(addressType)} is not IPv4 or IPv6`);
  const family: IPFamily = addressType === 'IPv6' ? 6 : 4;

  const ports = held(read.list((raw as Raw).ports, 'ports').flatMap((entry, index): EndpointSlicePort[] => {
    const port = read.object(entry, `ports[${index}]`);
    // A slice port without a number means "all ports", which kube-proxy cannot program: skip it as upstream does.
    if (port.port === undefined || port.port === null) return [];
    return [{
      name: read.optionalString(port.name, `ports[${index}].name`) ?? '',
      protocol: read.protocol(port.protocol, `ports[${index}].protocol`),
      port: read.port(port.port, `ports[${index}].port`),
    }];
  }));

  const rawEndpoints = read.list((raw as Raw).endpoints, 'endpoints');
  if (rawEndpoints.length > MAX_SLICE_ENDPOINTS) read.fail(`endpoints holds ${rawEndpoints.length} endpoints, more than the ${MAX_SLICE_ENDPOINTS} a slice may`);
  const endpoints = held(rawEndpoints.map((entry, index): EndpointInfo => {
    const path = `endpoints[${index}]`;
    const endpoint = read.object(entry, path);
    const addresses = read.list(endpoint.addresses, `${path}.addresses`);
    if (addresses.length === 0) read.fail(`${path}.addresses is empty`);
    if (addresses.length > MAX_ENDPOINT_ADDRESSES) read.fail(`${path}.addresses holds ${addresses.length} addresses, more than the ${MAX_ENDPOINT_ADDRESSES} an endpoint may`);
    // Only the first address is used (as upstream's proxy does), but any invalid one refuses the slice, as the API server would.
    for (let index = 1; index < addresses.length; index++) read.address(addresses[index], `${path}.addresses[${index}]`, family, ENDPOINT_REFUSED);
    const conditions = read.optionalObject(endpoint.conditions, `${path}.conditions`);
    const ready = read.boolean(conditions.ready, `${path}.conditions.ready`, true);
    const hints = read.optionalObject(endpoint.hints, `${path}.hints`);
    const hintNames = (list: unknown, field: string) =>
      list === undefined ? undefined : held(read.list(list, `${path}.hints.${field}`).map((hint, i) => read.string(read.object(hint, `${path}.hints.${field}[${i}]`).name, `${path}.hints.${field}[${i}].name`)));
    const normalized: EndpointInfo = {
      address: read.address(addresses[0], `${path}.addresses[0]`, family, ENDPOINT_REFUSED),
      ready,
      serving: read.boolean(conditions.serving, `${path}.conditions.serving`, ready),
      terminating: read.boolean(conditions.terminating, `${path}.conditions.terminating`, false),
    };
    // Absent fields stay absent rather than undefined: a field costs 8 bytes in every endpoint held.
    const nodeName = read.optionalString(endpoint.nodeName, `${path}.nodeName`);
    if (nodeName !== undefined) normalized.nodeName = nodeName;
    const zone = read.optionalString(endpoint.zone, `${path}.zone`);
    if (zone !== undefined) normalized.zone = zone;
    const hintZones = hintNames(hints.forZones, 'forZones');
    if (hintZones !== undefined) normalized.hintZones = hintZones;
    const hintNodes = hintNames(hints.forNodes, 'forNodes');
    if (hintNodes !== undefined) normalized.hintNodes = hintNodes;
    const hostname = read.optionalString(endpoint.hostname, `${path}.hostname`);
    if (hostname !== undefined && !DNS1123_LABEL.test(hostname)) read.fail(`${path}.hostname is not a DNS-1123 label`);
    if (hostname) normalized.hostname = hostname;
    return normalized;
  }));

  if (typeof serviceName !== 'string' || !DNS1035_LABEL.test(serviceName)) read.fail(`metadata.labels["${SERVICE_NAME_LABEL}"] is not a Service name`);
  return { namespace: metadata.namespace, name: metadata.name, serviceName: serviceName as string, family, ports, endpoints,
    otherProxy: labels[SERVICE_PROXY_NAME_LABEL] !== undefined, headless: labels[HEADLESS_LABEL] !== undefined };
}

/** A Namespace's name and labels: cluster DNS answers for the namespaces that exist; Gateway listeners select them by label. */
export function normalizeNamespace(raw: unknown): NamespaceInfo {
  const name = isObject(raw) && isObject(raw.metadata) ? raw.metadata.name : undefined;
  if (typeof name !== 'string' || !DNS1123_LABEL.test(name)) throw new ObjectError('Namespace', undefined, typeof name === 'string' ? name : undefined, 'metadata.name is not a DNS-1123 label');
  const labels = isObject((raw as Raw).metadata) && isObject(((raw as Raw).metadata as Raw).labels) ? ((raw as Raw).metadata as Raw).labels as Record<string, unknown> : {};
  return { name, labels: Object.fromEntries(Object.entries(labels).filter((entry): entry is [string, string] => typeof entry[1] === 'string')) };
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

export function normalizeNode(raw: unknown): NodeInfo {
  const { read, metadata } = readerFor('Node', raw);
  const labels = read.optionalObject(((raw as Raw).metadata as Raw).labels, 'metadata.labels') as Record<string, string>;
  const spec = read.optionalObject((raw as Raw).spec, 'spec');
  const status = read.optionalObject((raw as Raw).status, 'status');
  const podCIDRs = read.list(spec.podCIDRs, 'spec.podCIDRs');
  return {
    name: metadata.name,
    labels,
    zone: labels[ZONE_LABEL],
    podCIDRs: (podCIDRs.length > 0 ? podCIDRs : spec.podCIDR ? [spec.podCIDR] : []).map((cidr, index) => read.cidr(cidr, `spec.podCIDRs[${index}]`)),
    addresses: read.list(status.addresses, 'status.addresses').flatMap((entry, index) => {
      const address = read.object(entry, `status.addresses[${index}]`);
      return address.type === 'InternalIP' || address.type === 'ExternalIP' ? [read.address(address.address, `status.addresses[${index}].address`)] : [];
    }),
  };
}

/**
 * Converts a legacy v1 Endpoints object into the EndpointSlices the EndpointSlice mirroring
 * controller would make: one per subset and address family, not-ready addresses as not ready.
 */
export function endpointsToSlices(raw: unknown): unknown[] {
  const { read, metadata } = readerFor('Endpoints', raw);
  return read.list((raw as Raw).subsets, 'subsets').flatMap((entry, subsetIndex) => {
    const subset = read.object(entry, `subsets[${subsetIndex}]`);
    const ports = read.list(subset.ports, `subsets[${subsetIndex}].ports`);
    const addresses = [
      ...read.list(subset.addresses, `subsets[${subsetIndex}].addresses`).map((address) => ({ address, ready: true })),
      ...read.list(subset.notReadyAddresses, `subsets[${subsetIndex}].notReadyAddresses`).map((address) => ({ address, ready: false })),
    ];
    return (['IPv4', 'IPv6'] as const).flatMap((addressType) => {
      const family = addressType === 'IPv6' ? 6 : 4;
      const endpoints = addresses.flatMap(({ address, ready }, index) => {
        const entryObject = read.object(address, `subsets[${subsetIndex}].addresses[${index}]`);
        const ip = read.address(entryObject.ip, `subsets[${subsetIndex}].addresses[${index}].ip`, undefined, ENDPOINT_REFUSED);
        return familyOf(ip) === family ? [{ addresses: [ip], conditions: { ready }, nodeName: entryObject.nodeName }] : [];
      });
      if (endpoints.length === 0) return [];
      return [{
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { namespace: metadata.namespace, name: `${metadata.name}-${subsetIndex}-${addressType.toLowerCase()}`, labels: { [SERVICE_NAME_LABEL]: metadata.name } },
        addressType,
        ports,
        endpoints,
      }];
    });
  });
}
