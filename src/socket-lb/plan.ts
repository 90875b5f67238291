import { type ServicePortView } from '../cluster/service-ports.js';
import { categorizeEndpoints, type NodeContext } from '../cluster/topology.js';

// What the socket LB's maps hold, planned from the same categorized views as the nftables rules:
// one frontend per ClusterIP, port and protocol, with the endpoints a client on this node would get
// from the rules (ready, else serving and terminating; internalTrafficPolicy Local; topology).
// Anything left out here (no endpoint, SCTP, NodePort, external and load-balancer addresses) is
// untouched by the programs and handled by the rules.

export interface SocketLbEndpoint {
  address: string;
  port: number;
}

export interface SocketLbFrontend {
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  /** 0: no ClientIP affinity. */
  affinityTimeoutSeconds: number;
  /** Sorted by address and port, without duplicates; never empty. */
  endpoints: SocketLbEndpoint[];
}

export const frontendKey = (frontend: Pick<SocketLbFrontend, 'protocol' | 'address' | 'port'>) => `${frontend.protocol} ${frontend.address} ${frontend.port}`;

const endpointOrder = (a: SocketLbEndpoint, b: SocketLbEndpoint) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port);

/** The frontend of one service port view, or undefined when the rules must handle its traffic. */
export function planSocketLbFrontend(view: ServicePortView, node: NodeContext): SocketLbFrontend | undefined {
  const { protocol } = view.port;
  if (protocol !== 'TCP' && protocol !== 'UDP') return undefined;
  const categories = categorizeEndpoints(view, node);
  // ClusterIP traffic follows the internal traffic policy, whatever the external one is.
  const chosen = view.service.internalTrafficPolicyLocal ? categories.local : categories.cluster;
  const endpoints = chosen.map(({ address, port }) => ({ address, port })).sort(endpointOrder)
    .filter((endpoint, index, sorted) => index === 0 || endpointOrder(sorted[index - 1], endpoint) !== 0);
  if (endpoints.length === 0) return undefined;
  return { address: view.clusterIP, port: view.port.port, protocol, affinityTimeoutSeconds: view.service.affinityTimeoutSeconds ?? 0, endpoints };
}

/** The frontends of some service port views, by frontendKey. */
export function planSocketLb(views: ServicePortView[], node: NodeContext): Map<string, SocketLbFrontend> {
  const frontends = new Map<string, SocketLbFrontend>();
  for (const view of views) {
    const frontend = planSocketLbFrontend(view, node);
    if (frontend) frontends.set(frontendKey(frontend), frontend);
  }
  return frontends;
}
