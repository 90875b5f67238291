import ipaddr from 'ipaddr.js';
import type { EndpointSliceInfo, ServiceInfo, ServicePortInfo } from '../cluster/model.js';

// Cluster DNS records from the watched state (Kubernetes DNS-Based Service Discovery 1.1.0, with
// CoreDNS's kubernetes plugin behaviour where the spec is silent). Pure: the server turns these into
// prepared wire answers. Names are lower-case and without the trailing dot.

export type PlannedType = 'A' | 'AAAA' | 'SRV' | 'PTR' | 'CNAME' | 'TXT' | 'NS' | 'SOA';

export interface SrvTarget { priority: number; weight: number; port: number; target: string }
export interface SoaFields { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }

export interface PlannedRecord {
  name: string;
  type: PlannedType;
  ttl: number;
  data: string | SrvTarget | SoaFields | string[];
}

export interface PlannedRRSet {
  answers: PlannedRecord[];
  /** Glue: the addresses of SRV targets and of the apex NS. */
  additionals: PlannedRecord[];
}

/** A name that exists. No rrset for a type means NODATA; `cname` (ExternalName) answers every type. */
export interface PlannedName {
  name: string;
  rrsets: Partial<Record<PlannedType, PlannedRRSet>>;
  cname?: PlannedRecord;
}

/** What the records of a Service need of it: the proxy's own view of Services, as the state holds them. */
export type DnsService = Pick<ServiceInfo, 'namespace' | 'name' | 'headless' | 'clusterIPs' | 'externalName'> & { ports: readonly Pick<ServicePortInfo, 'name' | 'protocol' | 'port'>[] };
/** What the records need of a Service's EndpointSlices. */
export type DnsSlice = Pick<EndpointSliceInfo, 'ports' | 'endpoints'>;

export interface DnsPlanConfig {
  zone: string;
  ttl: number;
}

/** Spec 1.1.0 §2.2: dns-version's TXT, with the spec's example TTL. */
export const SCHEMA_VERSION = '1.1.0';
const VERSION_TTL = 28800;
/** CoreDNS's SOA timers; the SOA's own TTL (and the negative TTL) is min(ttl, 300). */
const SOA_TIMERS = { refresh: 7200, retry: 1800, expire: 86400 } as const;

const record = (name: string, type: PlannedType, ttl: number, data: PlannedRecord['data']): PlannedRecord => ({ name, type, ttl, data });
const addressType = (address: string): 'A' | 'AAAA' => (address.includes(':') ? 'AAAA' : 'A');

/** The zone's SOA, which NXDOMAIN and NODATA carry in their authority section. */
export function soaRecord(zone: string, ttl: number, serial: number): PlannedRecord {
  const negative = Math.min(ttl, 300);
  return record(zone, 'SOA', negative, { mname: `ns.dns.${zone}`, rname: `hostmaster.${zone}`, serial, ...SOA_TIMERS, minimum: negative });
}

/** CoreDNS's endpoint name for an endpoint without a hostname: the address with dashes (`10-0-0-1`, `fd00--1`). */
export function dashedAddress(address: string): string {
  const dashed = address.replace(/[.:]/g, '-');
  return dashed.endsWith('-') ? `${dashed}0` : dashed.startsWith('-') ? `0${dashed}` : dashed;
}

/** The reverse name of an address: in-addr.arpa, or ip6.arpa in 32 nibbles. */
export function reverseName(address: string): string {
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return `${parsed.toByteArray().reverse().join('.')}.in-addr.arpa`;
  const nibbles = parsed.toByteArray().flatMap((byte) => [byte >> 4, byte & 15]);
  return `${nibbles.reverse().map((nibble) => nibble.toString(16)).join('.')}.ip6.arpa`;
}

/** The address a pod name (`10-0-0-1`, `fd00--1`) spells, or undefined when it spells none. */
export function podAddress(label: string): string | undefined {
  if (/^\d{1,3}(-\d{1,3}){3}$/.test(label)) {
    const text = label.replace(/-/g, '.');
    return ipaddr.IPv4.isValidFourPartDecimal(text) ? text : undefined;
  }
  const text = label.replace(/-/g, ':');
  return /^[0-9a-f:]+$/.test(text) && ipaddr.IPv6.isValid(text) ? ipaddr.IPv6.parse(text).toString() : undefined;
}

interface ReadyEndpoint { name: string; address: string }

/** Ready endpoints of a headless service, one per (endpoint name, address), across slices. */
function readyEndpoints(slices: readonly DnsSlice[]): ReadyEndpoint[] {
  const seen = new Set<string>();
  const endpoints: ReadyEndpoint[] = [];
  for (const slice of slices) {
    for (const endpoint of slice.endpoints) {
      if (!endpoint.ready) continue;
      const name = endpoint.hostname ?? dashedAddress(endpoint.address);
      const key = `${name}/${endpoint.address}`;
      if (seen.has(key)) continue;
      seen.add(key);
      endpoints.push({ name, address: endpoint.address });
    }
  }
  return endpoints;
}

interface NamedPort { name: string; protocol: string; port: number }

/** Named ports only (spec §2.3.2): a headless service's are its slices' ports, a ClusterIP's its own. */
function namedPorts(service: DnsService, slices: readonly DnsSlice[]): NamedPort[] {
  const ports = service.headless ? slices.flatMap((slice) => slice.ports) : service.ports;
  const seen = new Set<string>();
  return ports.filter((port) => {
    const key = `${port.name}/${port.protocol}`;
    if (port.name === '' || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

class NameSet {
  readonly names = new Map<string, PlannedName>();

  get(name: string): PlannedName {
    let planned = this.names.get(name);
    if (!planned) this.names.set(name, (planned = { name, rrsets: {} }));
    return planned;
  }

  add(answer: PlannedRecord, additionals: PlannedRecord[] = []): void {
    const rrsets = this.get(answer.name).rrsets;
    const rrset = (rrsets[answer.type] ??= { answers: [], additionals: [] });
    rrset.answers.push(answer);
    rrset.additionals.push(...additionals);
  }
}

/** Every name one Service owns: the service name, its SRV names, endpoint names and reverse names. */
export function planService(service: DnsService, slices: readonly DnsSlice[], config: DnsPlanConfig): PlannedName[] {
  const { zone, ttl } = config;
  const serviceName = `${service.name}.${service.namespace}.svc.${zone}`;
  const names = new NameSet();
  if (service.externalName !== undefined) {
    names.get(serviceName).cname = record(serviceName, 'CNAME', ttl, service.externalName);
    return [...names.names.values()];
  }
  // A headless service without ready endpoints is NXDOMAIN (spec §2.4.1): it owns no name at all.
  const endpoints = service.headless ? readyEndpoints(slices) : [];
  if (service.headless && endpoints.length === 0) return [];
  names.get(serviceName);

  const ports = namedPorts(service, slices);
  if (service.headless) {
    for (const endpoint of endpoints) {
      const endpointName = `${endpoint.name}.${serviceName}`;
      names.add(record(serviceName, addressType(endpoint.address), ttl, endpoint.address));
      names.add(record(endpointName, addressType(endpoint.address), ttl, endpoint.address));
      names.add(record(reverseName(endpoint.address), 'PTR', ttl, endpointName));
    }
  } else {
    for (const clusterIP of service.clusterIPs) {
      names.add(record(serviceName, addressType(clusterIP), ttl, clusterIP));
      names.add(record(reverseName(clusterIP), 'PTR', ttl, serviceName));
    }
  }

  // CoreDNS's SRV: priority 0, weight 100/n (at least 1); a headless port has one target per endpoint,
  // a ClusterIP port one per ClusterIP (dual stack gives two), and the bare service name lists them all.
  const targets = service.headless
    ? endpoints.map((endpoint) => ({ target: `${endpoint.name}.${serviceName}`, address: endpoint.address }))
    : service.clusterIPs.map((address) => ({ target: serviceName, address }));
  const weight = Math.max(1, Math.floor(100 / (targets.length || 1)));
  for (const port of ports) {
    const srvName = `_${port.name}._${port.protocol.toLowerCase()}.${serviceName}`;
    for (const { target, address } of targets) {
      const srv = record(srvName, 'SRV', ttl, { priority: 0, weight, port: port.port, target });
      const glue = record(target, addressType(address), ttl, address);
      names.add(srv, [glue]);
      names.add({ ...srv, name: serviceName }, [glue]);
    }
  }
  return [...names.names.values()];
}

/** The names of the zone itself: apex (SOA, NS), dns-version, svc, pod and every namespace. */
export function planZone(namespaces: Iterable<string>, kubeDNS: DnsService | undefined, config: DnsPlanConfig, serial: number): PlannedName[] {
  const { zone, ttl } = config;
  const names = new NameSet();
  names.add(soaRecord(zone, ttl, serial));
  const nsTarget = `kube-dns.kube-system.svc.${zone}`;
  const glue = (kubeDNS?.clusterIPs ?? []).map((address) => record(nsTarget, addressType(address), ttl, address));
  names.add(record(zone, 'NS', ttl, nsTarget), glue);
  names.add(record(`dns-version.${zone}`, 'TXT', VERSION_TTL, [SCHEMA_VERSION]));
  names.get(`svc.${zone}`);
  names.get(`pod.${zone}`);
  for (const namespace of namespaces) {
    names.get(`${namespace}.svc.${zone}`);
    names.get(`${namespace}.pod.${zone}`);
  }
  return [...names.names.values()];
}

/** Merges the names several owners plan for one name (two services' endpoints sharing an address). */
export function mergeNames(parts: readonly PlannedName[]): PlannedName {
  const merged: PlannedName = { name: parts[0].name, rrsets: {} };
  for (const part of parts) {
    merged.cname ??= part.cname;
    for (const [type, rrset] of Object.entries(part.rrsets) as [PlannedType, PlannedRRSet][]) {
      const target = (merged.rrsets[type] ??= { answers: [], additionals: [] });
      const seen = new Set(target.answers.map((answer) => JSON.stringify(answer.data)));
      target.answers.push(...rrset.answers.filter((answer) => !seen.has(JSON.stringify(answer.data))));
      target.additionals.push(...rrset.additionals);
    }
  }
  return merged;
}
