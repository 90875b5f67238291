import type { ClusterState } from './cluster-state.js';
import { familyOf } from './normalize.js';
import { type EndpointInfo, type EndpointSliceInfo, type IPFamily, type ServiceInfo, type ServicePortInfo, serviceKey } from './model.js';

// Joins Services with their EndpointSlices: one entry per service port and address family, with
// each endpoint's target port resolved through the slice's ports (named ports included).

export interface PortEndpoint extends EndpointInfo {
  port: number;
}

export interface ServicePortView {
  service: ServiceInfo;
  port: ServicePortInfo;
  family: IPFamily;
  /** '' in a headless service's views (endpointPortViews). */
  clusterIP: string;
  endpoints: PortEndpoint[];
}

/** "namespace/name:port-name", kube-proxy's ServicePortName. */
export const servicePortName = (view: ServicePortView) =>
  `${view.service.namespace}/${view.service.name}${view.port.name ? `:${view.port.name}` : ''}`;

/** One service port's endpoints of one family, their target port resolved through the admitted slices' ports. */
function portView(service: ServiceInfo, slices: readonly EndpointSliceInfo[], port: ServicePortInfo, family: IPFamily, clusterIP: string): ServicePortView {
  const seen = new Set<string>();
  const endpoints: PortEndpoint[] = [];
  for (const slice of slices) {
    // Another proxy's slices are never ours; headless ones only in a headless service's views.
    if (slice.family !== family || slice.otherProxy || (slice.headless && clusterIP !== '')) continue;
    const target = slice.ports.find((candidate) => candidate.name === port.name && candidate.protocol === port.protocol);
    if (!target) continue;
    for (const endpoint of slice.endpoints) {
      // The same address in two slices (e.g. during a slice split) is one endpoint.
      if (seen.has(endpoint.address)) continue;
      seen.add(endpoint.address);
      // An explicit literal: V8 builds it far faster than a spread, and there is one per endpoint and port.
      endpoints.push({
        address: endpoint.address, ready: endpoint.ready, serving: endpoint.serving, terminating: endpoint.terminating,
        nodeName: endpoint.nodeName, zone: endpoint.zone, hintZones: endpoint.hintZones, hintNodes: endpoint.hintNodes, port: target.port,
      });
    }
  }
  return { service, port, family, clusterIP, endpoints };
}

/**
 * What the proxying dataplanes (rules, socket LB, health checks) see of a service: one view per
 * ClusterIP and port; nothing of another proxy's service, nor of the slices kube-proxy's label
 * selector leaves out, whichever source delivered them (the API with cluster DNS on, or manifests).
 */
export function servicePortViews(state: ClusterState, key: string): ServicePortView[] {
  const service = state.services.get(key);
  if (!service || service.otherProxy) return [];
  const slices = state.slices.get(key) ?? [];
  return service.clusterIPs.flatMap((clusterIP) => service.ports.map((port) => portView(service, slices, port, familyOf(clusterIP), clusterIP)));
}

/**
 * The views of a proxy that picks endpoints itself and never uses the ClusterIP (the ingress): a
 * headless service's too, one per port and per address family of its slices, with clusterIP ''.
 * Its Service's ports still name the ports; its slices' ports give the endpoints' port numbers.
 */
export function endpointPortViews(state: ClusterState, key: string): ServicePortView[] {
  const service = state.services.get(key);
  if (!service?.headless || service.otherProxy) return servicePortViews(state, key);
  const slices = (state.slices.get(key) ?? []).filter((slice) => !slice.otherProxy);
  const families = [...new Set(slices.map((slice) => slice.family))].sort();
  // Without slices the ports are still the Service's (a backend port resolves, to no endpoint).
  if (families.length === 0) families.push(4);
  return families.flatMap((family) => service.ports.map((port) => portView(service, slices, port, family, '')));
}

export function allServicePortViews(state: ClusterState): ServicePortView[] {
  return [...state.services.keys()].sort().flatMap((key) => servicePortViews(state, key));
}

export { serviceKey };
