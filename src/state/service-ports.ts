import type { ClusterState } from './cluster-state.js';
import { familyOf } from './normalize.js';
import { type EndpointInfo, type IPFamily, type ServiceInfo, type ServicePortInfo, serviceKey } from './model.js';

// Joins Services with their EndpointSlices: one entry per service port and address family, with
// each endpoint's target port resolved through the slice's ports (named ports included).

export interface PortEndpoint extends EndpointInfo {
  port: number;
}

export interface ServicePortView {
  service: ServiceInfo;
  port: ServicePortInfo;
  family: IPFamily;
  clusterIP: string;
  endpoints: PortEndpoint[];
}

/** "namespace/name:port-name", kube-proxy's ServicePortName. */
export const servicePortName = (view: ServicePortView) =>
  `${view.service.namespace}/${view.service.name}${view.port.name ? `:${view.port.name}` : ''}`;

/**
 * What the proxying dataplanes (rules, socket LB, ingress backends, health checks) see of a
 * service: nothing of another proxy's service, nor of the slices kube-proxy's label selector
 * leaves out, whichever source delivered them (the API with cluster DNS on, or manifests).
 */
export function servicePortViews(state: ClusterState, key: string): ServicePortView[] {
  const service = state.services.get(key);
  if (!service || service.otherProxy) return [];
  const slices = state.slices.get(key) ?? [];
  return service.clusterIPs.flatMap((clusterIP) => {
    const family = familyOf(clusterIP);
    return service.ports.map((port) => {
      const seen = new Set<string>();
      const endpoints: PortEndpoint[] = [];
      for (const slice of slices) {
        if (slice.family !== family || slice.unproxied) continue;
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
    });
  });
}

export function allServicePortViews(state: ClusterState): ServicePortView[] {
  return [...state.services.keys()].sort().flatMap((key) => servicePortViews(state, key));
}

export { serviceKey };
