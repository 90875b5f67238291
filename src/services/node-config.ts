import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { ServiceSteering } from '../capability.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { DEFAULT_PROXY_CONFIG, type LocalDetectMode, type ProxyConfig } from './config.js';
import { nodePortsOnIPv4Loopback } from './node-setup.js';

// The Service proxy's configuration on this node: the operator's settings, and what the Node
// object and this node's interfaces say (its addresses, its pod CIDRs, its zone).

/** The settings the Service proxy's configuration is made of (kube-proxy's flags and fields). */
export interface ServicesSettings {
  /** kube-proxy's --bind-address: only its address family matters (the node's primary family). */
  bindAddress: string;
  /** CIDRs and the keywords 'primary', 'localhost', 'all'; empty means the mode's default ('primary'). */
  nodePortAddresses: string[];
  detectLocalMode: LocalDetectMode;
  /** Pod network CIDRs: at most one per address family. */
  clusterCIDRs: string[];
  masqueradeAll: boolean;
  masqueradeBit: number;
  serviceCIDRs: string[];
  serviceTables: number;
}

/** NodePorts on IPv4 loopback also need net.ipv4.conf.all.route_localnet=1, which the node setup sets. */
const LOOPBACK_CIDRS = ['127.0.0.0/8', '::1/128'];
/** Local interface addresses inside the given CIDRs (for --nodeport-addresses CIDRs). */
function localAddressesIn(cidrs: string[]): string[] {
  const parsed = cidrs.map((cidr) => ipaddr.parseCIDR(cidr));
  return Object.values(networkInterfaces()).flat().flatMap((entry) => {
    if (!entry) return [];
    const address = ipaddr.parse(entry.address.split('%')[0]);
    return parsed.some((cidr) => address.kind() === cidr[0].kind() && address.match(cidr)) ? [address.toString()] : [];
  });
}

/**
 * The node's IPs: the Node object's, except that a --bind-address other than 0.0.0.0 or :: is
 * the node's IP of its family (kube-proxy's detectNodeIPs).
 */
export function nodeIPsWith(bindAddress: string, nodeAddresses: string[]): string[] {
  const bind = ipaddr.parse(bindAddress);
  if (bind.range() === 'unspecified') return nodeAddresses;
  return [bind.toString(), ...nodeAddresses.filter((address) => ipaddr.parse(address).kind() !== bind.kind())];
}

/** What the planners need, from the settings and what the Node object says about this node. */
export function proxyConfigFor(settings: ServicesSettings, state: ClusterState, steering?: ServiceSteering): ProxyConfig {
  const node = state.node;
  const nodeIPs = nodeIPsWith(settings.bindAddress, node?.addresses ?? []);
  const wanted = settings.nodePortAddresses.length > 0 ? settings.nodePortAddresses : ['primary'];
  // No addresses means every local address (`fib daddr type local`): what 'all' asks for, and
  // the fallback while the Node object (and so 'primary') is unknown.
  const nodePortAddresses = wanted.includes('all') ? [] : [...new Set(wanted.flatMap((entry) => {
    if (entry === 'primary') return nodeIPs;
    return localAddressesIn(entry === 'localhost' ? LOOPBACK_CIDRS : [entry]);
  }))];
  return {
    ...DEFAULT_PROXY_CONFIG,
    nodeName: state.nodeName,
    zone: node?.zone,
    nodeHints: state.nodeHints,
    localCIDRs: settings.detectLocalMode === 'NodeCIDR' ? node?.podCIDRs ?? [] : settings.clusterCIDRs,
    detectLocalMode: settings.detectLocalMode,
    masqueradeAll: settings.masqueradeAll,
    masqueradeBit: settings.masqueradeBit,
    serviceCIDRs: settings.serviceCIDRs,
    serviceTables: settings.serviceTables,
    nodePortAddresses,
    nodeIPs,
    nodePortsOnLoopback: nodePortsOnIPv4Loopback(settings.nodePortAddresses),
    ingressSteering: steering,
  };
}
