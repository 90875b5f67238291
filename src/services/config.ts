import type { ServiceSteering } from '../capability.js';
import type { NodeContext } from '../cluster/topology.js';

// Everything the planners need to know about this node and the operator's choices (made by
// node-config.ts from the settings and the Node object); the planners treat it as read-only.

export type LocalDetectMode = 'ClusterCIDR' | 'NodeCIDR';

export interface ProxyConfig extends NodeContext {
  /** nftables table name / iptables chain prefix owner. */
  tableName: string;
  /** Pod network CIDRs (ClusterCIDR mode) or this node's pod CIDRs (NodeCIDR mode). */
  localCIDRs: string[];
  detectLocalMode: LocalDetectMode;
  masqueradeAll: boolean;
  masqueradeBit: number;
  /** CIDRs of service ClusterIPs: an unallocated address in them is dropped. */
  serviceCIDRs: string[];
  /** Addresses NodePorts answer on (resolved from --nodeport-addresses and the Node object). */
  nodePortAddresses: string[];
  /** This node's addresses (from the Node object), used for NodePorts by default. */
  nodeIPs: string[];
  /**
   * NodePorts answer on 127.0.0.1, for which the agent sets route_localnet: new connections to
   * 127.0.0.0/8 from other sources are then dropped, as kube-proxy drops them (CVE-2020-8558).
   */
  nodePortsOnLoopback: boolean;
  /**
   * Above this many endpoints a service chooses through a map of its own instead of a rule
   * cascade (docs/architecture.md has the measurements behind the default).
   */
  largeServiceEndpoints: number;
  /**
   * How many tables the services' NAT objects are spread over (at most MAX_SERVICE_TABLES): the
   * kernel re-validates a whole table when a rule in it changes, so a partial sync costs a table's
   * share of the services (docs/architecture.md).
   */
  serviceTables: number;
  /**
   * New TCP connections to the ingress Service's load-balancer and external IPs on a listener's port
   * go to this node's ingress proxy, before the Service's own DNAT could take them.
   */
  ingressSteering?: ServiceSteering;
}

/** Upper bound of config.serviceTables, so a full sync can remove the tables of any earlier setting. */
export const MAX_SERVICE_TABLES = 64;

export const DEFAULT_PROXY_CONFIG: ProxyConfig = {
  nodeName: 'localhost',
  tableName: 'kubenft',
  localCIDRs: [],
  detectLocalMode: 'ClusterCIDR',
  masqueradeAll: false,
  masqueradeBit: 14,
  serviceCIDRs: [],
  nodePortAddresses: [],
  nodeIPs: [],
  nodePortsOnLoopback: false,
  largeServiceEndpoints: 64,
  serviceTables: 16,
};
