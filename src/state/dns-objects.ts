import type { KubeObject } from './cluster-state.js';
import { ObjectError } from './model.js';
import { normalizeEndpointSlice, normalizeService } from './normalize.js';

// What cluster DNS keeps of Services, EndpointSlices and Namespaces. The proxy's own view drops
// ExternalName services and endpoint hostnames, which DNS answers; validation is the proxy's, so an
// object the proxy rejects is rejected here for the same named reason.

export interface DnsPort { name: string; protocol: string; port: number }

export interface DnsService {
  namespace: string;
  name: string;
  headless: boolean;
  clusterIPs: string[];
  ports: DnsPort[];
  externalName?: string;
}

export interface DnsEndpoint { address: string; ready: boolean; hostname?: string }

export interface DnsSlice {
  /** namespace/name of the owning Service. */
  service: string;
  ports: DnsPort[];
  endpoints: DnsEndpoint[];
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}\.?$)([A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?\.?$/;

type Raw = Record<string, any>;

export function dnsService(object: KubeObject): DnsService {
  const spec = (object.spec ?? {}) as Raw;
  const namespace = object.metadata?.namespace ?? 'default';
  const name = String(object.metadata?.name);
  if (spec.type === 'ExternalName') {
    const target = spec.externalName;
    if (typeof target !== 'string' || !DNS_NAME.test(target)) {
      throw new ObjectError('Service', namespace, name, 'spec.externalName is not a DNS name');
    }
    return { namespace, name, headless: false, clusterIPs: [], ports: [], externalName: target.toLowerCase().replace(/\.$/, '') };
  }
  const service = normalizeService(object)!;
  return {
    namespace, name,
    headless: spec.clusterIP === 'None',
    clusterIPs: service.clusterIPs,
    ports: service.ports.map(({ name: portName, protocol, port }) => ({ name: portName, protocol, port })),
  };
}

/** Undefined for slices DNS has no use for (FQDN, or owned by no Service), as for the proxy. */
export function dnsSlice(object: KubeObject): DnsSlice | undefined {
  const slice = normalizeEndpointSlice(object);
  if (!slice) return undefined;
  const raw = (object.endpoints ?? []) as Raw[];
  return {
    service: `${slice.namespace}/${slice.serviceName}`,
    ports: slice.ports.map(({ name, protocol, port }) => ({ name, protocol, port })),
    endpoints: slice.endpoints.map((endpoint, index) => {
      const hostname = raw[index]?.hostname;
      if (hostname !== undefined && hostname !== null && (typeof hostname !== 'string' || !DNS1123_LABEL.test(hostname))) {
        throw new ObjectError('EndpointSlice', slice.namespace, slice.name, `endpoints[${index}].hostname is not a DNS-1123 label`);
      }
      return hostname ? { address: endpoint.address, ready: endpoint.ready, hostname } : { address: endpoint.address, ready: endpoint.ready };
    }),
  };
}

export function dnsNamespace(object: KubeObject): string {
  const name = object.metadata?.name;
  if (typeof name !== 'string' || !DNS1123_LABEL.test(name)) throw new ObjectError('Namespace', undefined, String(name), 'metadata.name is not a DNS-1123 label');
  return name;
}
