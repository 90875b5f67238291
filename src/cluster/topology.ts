import type { ClusterState } from './cluster-state.js';
import type { PortEndpoint, ServicePortView } from './service-ports.js';

// kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go), shared by every dataplane: which
// endpoints serve cluster traffic and which serve node-local traffic for one service port.

export interface NodeContext {
  nodeName: string;
  zone?: string;
  /**
   * false: EndpointSlice forNodes hints are not read, so PreferSameNode falls back to the zone
   * hints, as kube-proxy does with --feature-gates=PreferSameTrafficDistribution=false.
   */
  nodeHints?: boolean;
}

/** This node as the watched state knows it: its name, and its zone once the Node object is read. */
export const nodeContextOf = (state: ClusterState): NodeContext => ({ nodeName: state.nodeName, zone: state.node?.zone, nodeHints: state.nodeHints });

export interface EndpointCategories {
  /** Endpoints for traffic under the Cluster policy; empty when the service does not use it. */
  cluster: PortEndpoint[];
  /** This node's endpoints, for traffic under the Local policy; empty when unused. */
  local: PortEndpoint[];
  /** Every endpoint some traffic can reach (for hairpin and conntrack bookkeeping). */
  reachable: PortEndpoint[];
  usesCluster: boolean;
  usesLocal: boolean;
  /** Some endpoint could serve, here or elsewhere: decides drop (policy found none here) vs reject. */
  hasAny: boolean;
}

export const externallyAccessible = (view: ServicePortView) =>
  view.port.nodePort !== undefined || view.service.externalIPs.length > 0 || view.service.loadBalancerIPs.length > 0;

type TopologyMode = '' | 'node' | 'zone';

function topologyMode(endpoints: PortEndpoint[], node: NodeContext): TopologyMode {
  let allHaveNodeHints = true;
  let hasForNode = false;
  let allHaveZoneHints = true;
  let hasForZone = false;
  for (const endpoint of endpoints) {
    if (!endpoint.ready) continue;
    const hintNodes = node.nodeHints === false ? undefined : endpoint.hintNodes;
    if (!hintNodes?.length) allHaveNodeHints = false;
    else if (hintNodes.includes(node.nodeName)) hasForNode = true;
    if (!endpoint.hintZones?.length) allHaveZoneHints = false;
    else if (node.zone !== undefined && endpoint.hintZones.includes(node.zone)) hasForZone = true;
  }
  if (allHaveNodeHints && hasForNode) return 'node';
  if (allHaveZoneHints && hasForZone) return 'zone';
  return '';
}

function availableForTopology(endpoint: PortEndpoint, mode: TopologyMode, node: NodeContext): boolean {
  if (mode === 'node') return endpoint.hintNodes?.includes(node.nodeName) ?? false;
  if (mode === 'zone') return node.zone !== undefined && (endpoint.hintZones?.includes(node.zone) ?? false);
  return true;
}

/** Ready endpoints passing the filter; if there are none, the serving-and-terminating ones. */
function readyOrTerminating(endpoints: PortEndpoint[], include: (endpoint: PortEndpoint) => boolean): PortEndpoint[] {
  const ready = endpoints.filter((endpoint) => endpoint.ready && include(endpoint));
  if (ready.length > 0) return ready;
  return endpoints.filter((endpoint) => endpoint.serving && endpoint.terminating && include(endpoint));
}

export function categorizeEndpoints(view: ServicePortView, node: NodeContext): EndpointCategories {
  const external = externallyAccessible(view);
  const { internalTrafficPolicyLocal, externalTrafficPolicyLocal } = view.service;
  // Even with externalTrafficPolicy Local, cluster-wide endpoints serve the short-circuited
  // traffic from pods and from the node itself (upstream's UsesClusterEndpoints).
  const usesCluster = !internalTrafficPolicyLocal || external;
  const usesLocal = internalTrafficPolicyLocal || (external && externalTrafficPolicyLocal);
  let cluster: PortEndpoint[] = [];
  if (usesCluster) {
    const mode = topologyMode(view.endpoints, node);
    cluster = readyOrTerminating(view.endpoints, (endpoint) => availableForTopology(endpoint, mode, node));
  }
  const local = usesLocal ? readyOrTerminating(view.endpoints, (endpoint) => endpoint.nodeName === node.nodeName) : [];
  const reachable = !usesLocal ? cluster : !usesCluster ? local : [...cluster, ...local.filter((endpoint) => !cluster.includes(endpoint))];
  const hasAny = view.endpoints.some((endpoint) => endpoint.ready || (endpoint.serving && endpoint.terminating));
  return { cluster, local, reachable, usesCluster, usesLocal, hasAny };
}
