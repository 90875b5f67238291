import type { ServicePortView } from '../cluster/service-ports.js';
import { categorizeEndpoints, type NodeContext } from '../cluster/topology.js';
import type { ConntrackFilter } from '../kernel/conntrack.js';

// Which UDP flows a sync made stale, as kube-proxy's conntrack cleanup decides it: a service port
// that got its first endpoint (clients may be stuck on the reject), and endpoints that went away
// (clients may be stuck on them). Compares each sync's UDP endpoints with the previous sync's.

interface UdpServicePort {
  family: 4 | 6;
  addresses: string[];
  nodePort?: number;
  endpoints: Set<string>;
}

export class UdpFlowTracker {
  /** Per service key, its UDP service ports as the last sync left them. */
  private previous = new Map<string, Map<string, UdpServicePort>>();

  /**
   * The conntrack deletions a sync calls for in one service (given its current service port
   * views; none once it is deleted); remembers the result for the next call.
   */
  staleFlows(serviceKey: string, views: ServicePortView[], node: NodeContext): ConntrackFilter[] {
    const current = new Map<string, UdpServicePort>();
    for (const view of views) {
      if (view.port.protocol !== 'UDP') continue;
      const sameFamily = (address: string) => address.includes(':') === (view.family === 6);
      current.set(`${view.family}/${view.port.port}`, {
        family: view.family,
        addresses: [view.clusterIP, ...view.service.externalIPs.filter(sameFamily), ...view.service.loadBalancerIPs.filter(sameFamily)],
        nodePort: view.port.nodePort,
        endpoints: new Set(categorizeEndpoints(view, node).reachable.map((endpoint) => endpoint.address)),
      });
    }
    const previous = this.previous.get(serviceKey) ?? new Map<string, UdpServicePort>();
    const filters: ConntrackFilter[] = [];
    for (const [key, port] of current) {
      const before = previous.get(key);
      if (port.endpoints.size > 0 && !before?.endpoints.size) {
        for (const serviceIP of port.addresses) filters.push({ family: port.family, serviceIP });
        if (port.nodePort !== undefined) filters.push({ family: port.family, nodePort: port.nodePort });
      }
    }
    for (const [key, before] of previous) {
      const after = current.get(key);
      for (const endpointIP of before.endpoints) {
        if (after?.endpoints.has(endpointIP)) continue;
        for (const serviceIP of before.addresses) filters.push({ family: before.family, serviceIP, endpointIP });
        if (before.nodePort !== undefined) filters.push({ family: before.family, nodePort: before.nodePort, endpointIP });
      }
    }
    if (current.size > 0) this.previous.set(serviceKey, current);
    else this.previous.delete(serviceKey);
    return filters;
  }

  /** Services the tracker remembers (a full sync must also visit those that are gone). */
  services(): Iterable<string> {
    return this.previous.keys();
  }
}
