import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { cidrFamily, joinHostPort } from '../kernel/addresses.js';
import type { ProxyConfig } from './config.js';
import { type PortEndpoint, type ServicePortView, servicePortName } from '../cluster/service-ports.js';
import { categorizeEndpoints } from '../cluster/topology.js';

// The `--proxy-mode=iptables` planner: a pure function from the proxied services to the classic
// kube-proxy iptables ruleset, rule for rule what upstream's pkg/proxy/iptables/proxier.go
// (syncProxyRules) writes into iptables-restore, so the output can be diffed against a real
// kube-proxy. The backend (iptables-backend.ts) loads it and installs the jump rules.

export type IptablesTable = 'filter' | 'nat';
export type IptablesFamily = 4 | 6;

export const CHAINS = {
  services: 'KUBE-SERVICES',
  externalServices: 'KUBE-EXTERNAL-SERVICES',
  nodePorts: 'KUBE-NODEPORTS',
  postrouting: 'KUBE-POSTROUTING',
  markMasq: 'KUBE-MARK-MASQ',
  forward: 'KUBE-FORWARD',
  firewall: 'KUBE-PROXY-FIREWALL',
} as const;

/** The chains every sync declares (and so flushes) in each table, in upstream's order. */
const TOP_LEVEL_CHAINS: Record<IptablesTable, string[]> = {
  filter: [CHAINS.services, CHAINS.externalServices, CHAINS.forward, CHAINS.nodePorts, CHAINS.firewall],
  nat: [CHAINS.services, CHAINS.nodePorts, CHAINS.postrouting, CHAINS.markMasq],
};

/** Prefixes of the per-service-port chains (cluster, local, external, firewall) and per-endpoint chains. */
export const SERVICE_CHAIN_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-'] as const;
export type ServiceChainPrefix = (typeof SERVICE_CHAIN_PREFIXES)[number];

export const isServiceChain = (chain: string) => SERVICE_CHAIN_PREFIXES.some((prefix) => chain.startsWith(prefix));

/** Whether a chain of this table is one this mode writes (and so replaces on every sync). */
export const isOwnChainIn = (table: string, chain: string) =>
  (TOP_LEVEL_CHAINS[table as IptablesTable]?.includes(chain) ?? false) || (table === 'nat' && isServiceChain(chain));

/** A rule in a built-in chain sending packets to one of ours. */
export interface JumpRule {
  table: IptablesTable;
  from: string;
  to: string;
  comment: string;
  conditions: string[];
}

const NEW_CONNECTIONS = ['-m', 'conntrack', '--ctstate', 'NEW'];

/** Upstream's iptablesJumpChains plus the POSTROUTING jump, in the order it ensures them. */
export const JUMP_RULES: JumpRule[] = [
  { table: 'filter', from: 'INPUT', to: CHAINS.externalServices, comment: 'kubernetes externally-visible service portals', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'FORWARD', to: CHAINS.externalServices, comment: 'kubernetes externally-visible service portals', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'INPUT', to: CHAINS.nodePorts, comment: 'kubernetes health check service ports', conditions: [] },
  { table: 'filter', from: 'FORWARD', to: CHAINS.services, comment: 'kubernetes service portals', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'OUTPUT', to: CHAINS.services, comment: 'kubernetes service portals', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'FORWARD', to: CHAINS.forward, comment: 'kubernetes forwarding rules', conditions: [] },
  { table: 'filter', from: 'INPUT', to: CHAINS.firewall, comment: 'kubernetes load balancer firewall', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'OUTPUT', to: CHAINS.firewall, comment: 'kubernetes load balancer firewall', conditions: NEW_CONNECTIONS },
  { table: 'filter', from: 'FORWARD', to: CHAINS.firewall, comment: 'kubernetes load balancer firewall', conditions: NEW_CONNECTIONS },
  { table: 'nat', from: 'OUTPUT', to: CHAINS.services, comment: 'kubernetes service portals', conditions: [] },
  { table: 'nat', from: 'PREROUTING', to: CHAINS.services, comment: 'kubernetes service portals', conditions: [] },
  { table: 'nat', from: 'POSTROUTING', to: CHAINS.postrouting, comment: 'kubernetes postrouting rules', conditions: [] },
];

/** The rule specification of a jump, as argv for `iptables -C/-I CHAIN ...`. */
export const jumpRuleArgs = (jump: JumpRule) => [...jump.conditions, '-m', 'comment', '--comment', jump.comment, '-j', jump.to];

/** The jump as iptables-save prints it back. */
export const savedJumpRule = (jump: JumpRule) =>
  ['-A', jump.from, ...jump.conditions, '-m', 'comment', '--comment', `"${jump.comment}"`, '-j', jump.to].join(' ');

const RFC4648_BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Go's base32.StdEncoding without padding (callers only keep a prefix of it). */
function base32(bytes: Uint8Array): string {
  let output = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      output += RFC4648_BASE32[(buffer >>> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) output += RFC4648_BASE32[(buffer << (5 - bits)) & 31];
  return output;
}

const chainHash = (text: string) => base32(createHash('sha256').update(text).digest()).slice(0, 16);

/** Upstream's servicePortPolicyClusterChain & co: prefix + portProtoHash(servicePortName, protocol). */
export const servicePortChainName = (servicePortName: string, protocol: string, prefix: ServiceChainPrefix = 'KUBE-SVC-') =>
  `${prefix}${chainHash(servicePortName + protocol.toLowerCase())}`;

/** Upstream's servicePortEndpointChainName; `endpoint` is "ip:port" ("[ip]:port" for IPv6). */
export const endpointChainName = (servicePortName: string, protocol: string, endpoint: string) =>
  `KUBE-SEP-${chainHash(servicePortName + protocol.toLowerCase() + endpoint)}`;

/** Go's net.JoinHostPort, which upstream uses for an endpoint's String(). */
export const endpointString = (endpoint: PortEndpoint) => joinHostPort(endpoint.address, endpoint.port);

/** Upstream's computeProbability; iptables-save prints these back with 11 decimals (0.33333333349). */
export const statisticProbability = (remaining: number) => (1 / remaining).toFixed(10);

export interface IptablesPlan {
  family: IptablesFamily;
  /** Rule lines ("-A CHAIN ...") of each table, in restore order. */
  filter: string[];
  nat: string[];
  /** Every chain this plan declares, which a restore creates or flushes. */
  chains: { filter: string[]; nat: string[] };
  /** For each rule, by the same index, the service port it belongs to ('' for the fixed rules). */
  owners: { filter: string[]; nat: string[] };
}

/** One table's restore input being built: chain declarations and rules with their owners. */
class TableWriter {
  readonly chains: string[];
  readonly rules: string[] = [];
  readonly owners: string[] = [];

  constructor(topLevelChains: string[]) {
    this.chains = [...topLevelChains];
  }

  declare(chain: string): void {
    this.chains.push(chain);
  }

  append(owner: string, chain: string, ...args: string[]): void {
    this.rules.push(['-A', chain, ...args].join(' '));
    this.owners.push(owner);
  }
}

const comment = (text: string) => ['-m', 'comment', '--comment', `"${text}"`];
/** Upstream's appendServiceCommentLocked, which writes the service port name unquoted. */
const serviceComment = (name: string) => ['-m', 'comment', '--comment', name];

const ofFamily = (family: IptablesFamily) => (addressOrCIDR: string) => (cidrFamily(addressOrCIDR) === 6) === (family === 6);

/** A view with both traffic policies set to Cluster, to ask categorizeEndpoints for the cluster-wide endpoints. */
const withClusterPolicies = (view: ServicePortView): ServicePortView => ({
  ...view,
  service: { ...view.service, internalTrafficPolicyLocal: false, externalTrafficPolicyLocal: false },
});

/** What upstream's syncProxyRules derives for one service port before writing any rule. */
interface ServicePortPlan {
  view: ServicePortView;
  name: string;
  protocol: string;
  externalIPs: string[];
  loadBalancerIPs: string[];
  chains: { cluster: string; local: string; external: string; firewall: string };
  clusterEndpoints: PortEndpoint[];
  localEndpoints: PortEndpoint[];
  hasEndpoints: boolean;
  hasInternalEndpoints: boolean;
  hasExternalEndpoints: boolean;
  internalChain: string;
  externalPolicyChain: string;
  usesExternalChain: boolean;
  usesFirewallChain: boolean;
  loadBalancerChain: string;
}

function servicePortPlan(view: ServicePortView, config: ProxyConfig, family: IptablesFamily): ServicePortPlan {
  const { service } = view;
  const name = servicePortName(view);
  const protocol = view.port.protocol.toLowerCase();
  const inFamily = ofFamily(family);
  const externalIPs = service.externalIPs.filter(inFamily);
  const loadBalancerIPs = service.loadBalancerIPs.filter(inFamily);
  const externallyAccessible = view.port.nodePort !== undefined || externalIPs.length > 0 || loadBalancerIPs.length > 0;
  // Upstream's UsesClusterEndpoints is true for any externally accessible service, even with both
  // policies Local, because pod and node traffic to its external addresses short-circuits to the
  // cluster-wide endpoints; the shared categorizeEndpoints leaves `cluster` empty in that case, so
  // the cluster-wide set is asked for explicitly. It is non-empty exactly when upstream's
  // hasAnyEndpoints is true (any ready, or serving and terminating, endpoint anywhere).
  const clusterWide = categorizeEndpoints(withClusterPolicies(view), config).cluster;
  const usesClusterPolicy = !service.internalTrafficPolicyLocal || externallyAccessible;
  const usesLocalPolicy = service.internalTrafficPolicyLocal || (externallyAccessible && service.externalTrafficPolicyLocal);
  const clusterEndpoints = usesClusterPolicy ? clusterWide : [];
  const localEndpoints = usesLocalPolicy ? categorizeEndpoints(view, config).local : [];
  const hasEndpoints = clusterWide.length > 0;
  const chain = (prefix: ServiceChainPrefix) => servicePortChainName(name, protocol, prefix);
  const chains = { cluster: chain('KUBE-SVC-'), local: chain('KUBE-SVL-'), external: chain('KUBE-EXT-'), firewall: chain('KUBE-FW-') };
  const usesFirewallChain = hasEndpoints && loadBalancerIPs.length > 0 && service.loadBalancerSourceRanges.length > 0;
  return {
    view,
    name,
    protocol,
    externalIPs,
    loadBalancerIPs,
    chains,
    clusterEndpoints,
    localEndpoints,
    hasEndpoints,
    hasInternalEndpoints: hasEndpoints && (!service.internalTrafficPolicyLocal || localEndpoints.length > 0),
    hasExternalEndpoints: hasEndpoints && (!service.externalTrafficPolicyLocal || localEndpoints.length > 0),
    internalChain: service.internalTrafficPolicyLocal ? chains.local : chains.cluster,
    externalPolicyChain: service.externalTrafficPolicyLocal ? chains.local : chains.cluster,
    // Even without external endpoints, the chain holds the short-circuit rules for local traffic.
    usesExternalChain: hasEndpoints && externallyAccessible,
    usesFirewallChain,
    loadBalancerChain: usesFirewallChain ? chains.firewall : chains.external,
  };
}

/** The filter verdict for traffic that has nowhere to go: REJECT without endpoints, DROP without local ones. */
function noEndpointsVerdict(port: ServicePortPlan, hasPolicyEndpoints: boolean): { comment: string; target: string } | undefined {
  if (!port.hasEndpoints) return { comment: `${port.name} has no endpoints`, target: 'REJECT' };
  if (!hasPolicyEndpoints) return { comment: `${port.name} has no local endpoints`, target: 'DROP' };
  return undefined;
}

/** Writes one service port's rules, following syncProxyRules section by section. */
class ServicePortWriter {
  private readonly protocolMatch: string[];

  constructor(
    private readonly port: ServicePortPlan,
    private readonly config: ProxyConfig,
    private readonly family: IptablesFamily,
    private readonly filter: TableWriter,
    private readonly nat: TableWriter,
  ) {
    this.protocolMatch = ['-m', port.protocol, '-p', port.protocol];
  }

  write(): void {
    this.writeDispatch();
    this.writeInternalMasquerade();
    this.writeExternalChain();
    this.writeFirewallChain();
    if (this.port.clusterEndpoints.length > 0) this.writePolicyChain(this.port.chains.cluster, this.port.clusterEndpoints);
    if (this.port.localEndpoints.length > 0) this.writePolicyChain(this.port.chains.local, this.port.localEndpoints);
    this.writeEndpointChains();
  }

  private natRule(chain: string, ...args: string[]) {
    this.nat.append(this.port.name, chain, ...args);
  }

  private filterRule(chain: string, ...args: string[]) {
    this.filter.append(this.port.name, chain, ...args);
  }

  private destination(address: string, port = this.port.view.port.port) {
    return [...this.protocolMatch, '-d', address, '--dport', String(port)];
  }

  /** A filter rule for traffic matching `match` that has no (local) endpoints to go to. */
  private filterNoEndpoints(chain: string, hasPolicyEndpoints: boolean, match: string[]) {
    const verdict = noEndpointsVerdict(this.port, hasPolicyEndpoints);
    if (verdict) this.filterRule(chain, ...comment(verdict.comment), ...match, '-j', verdict.target);
  }

  /** KUBE-SERVICES / KUBE-NODEPORTS entries for each address of the service port, and their filter counterparts. */
  private writeDispatch() {
    const { port } = this;
    const { view, name } = port;
    const clusterIP = this.destination(view.clusterIP);
    if (port.hasInternalEndpoints) this.natRule(CHAINS.services, ...comment(`${name} cluster IP`), ...clusterIP, '-j', port.internalChain);
    else this.filterNoEndpoints(CHAINS.services, false, clusterIP);

    for (const externalIP of port.externalIPs) {
      if (port.hasEndpoints) this.natRule(CHAINS.services, ...comment(`${name} external IP`), ...this.destination(externalIP), '-j', port.chains.external);
      this.filterNoEndpoints(CHAINS.externalServices, port.hasExternalEndpoints, this.destination(externalIP));
    }
    for (const loadBalancerIP of port.loadBalancerIPs) {
      const match = this.destination(loadBalancerIP);
      if (port.hasEndpoints) this.natRule(CHAINS.services, ...comment(`${name} loadbalancer IP`), ...match, '-j', port.loadBalancerChain);
      if (port.usesFirewallChain) {
        this.filterRule(CHAINS.firewall, ...comment(`${name} traffic not accepted by ${port.chains.firewall}`), ...match, '-j', 'DROP');
      }
    }
    for (const loadBalancerIP of port.loadBalancerIPs) {
      this.filterNoEndpoints(CHAINS.externalServices, port.hasExternalEndpoints, this.destination(loadBalancerIP));
    }

    const { nodePort } = view.port;
    if (nodePort !== undefined) {
      // NodePorts are not subject to loadBalancerSourceRanges, as upstream.
      const match = [...this.protocolMatch, '--dport', String(nodePort)];
      if (port.hasEndpoints) this.natRule(CHAINS.nodePorts, ...serviceComment(name), ...match, '-j', port.chains.external);
      this.filterNoEndpoints(CHAINS.externalServices, port.hasExternalEndpoints, ['-m', 'addrtype', '--dst-type', 'LOCAL', ...match]);
    }
    if (view.service.healthCheckNodePort !== undefined) {
      this.filterRule(CHAINS.nodePorts, ...comment(`${name} health check node port`), '-m', 'tcp', '-p', 'tcp', '--dport', String(view.service.healthCheckNodePort), '-j', 'ACCEPT');
    }
  }

  /** Off-cluster traffic to the ClusterIP may be bounced to another node: masquerade it. */
  private writeInternalMasquerade() {
    const { port, config } = this;
    if (!port.hasInternalEndpoints) return;
    const match = [...comment(`${port.name} cluster IP`), ...this.destination(port.view.clusterIP)];
    const localCIDR = localCIDROf(config, this.family);
    if (config.masqueradeAll) this.natRule(port.internalChain, ...match, '-j', CHAINS.markMasq);
    else if (localCIDR) this.natRule(port.internalChain, ...match, '!', '-s', localCIDR, '-j', CHAINS.markMasq);
  }

  private writeExternalChain() {
    const { port } = this;
    if (!port.usesExternalChain) return;
    const { external, cluster } = port.chains;
    this.nat.declare(external);
    if (!port.view.service.externalTrafficPolicyLocal) {
      // Cluster-wide endpoints may be on another node: masquerade so replies come back through here.
      this.natRule(external, ...comment(`masquerade traffic for ${port.name} external destinations`), '-j', CHAINS.markMasq);
    } else {
      const localCIDR = localCIDROf(this.config, this.family);
      // Pods reaching an external address behave as if they went out to the load balancer and
      // back: neither traffic policy applies to them.
      if (localCIDR) this.natRule(external, ...comment(`pod traffic for ${port.name} external destinations`), '-s', localCIDR, '-j', cluster);
      // The node's own traffic has a local (possibly the external) address as source: masquerade it.
      this.natRule(external, ...comment(`masquerade LOCAL traffic for ${port.name} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', CHAINS.markMasq);
      this.natRule(external, ...comment(`route LOCAL traffic for ${port.name} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', cluster);
    }
    // Without external endpoints the rest falls through, undNATed, to the filter table's DROP.
    if (port.hasExternalEndpoints) this.natRule(external, '-j', port.externalPolicyChain);
  }

  /** loadBalancerSourceRanges: allowed sources continue to the external chain; KUBE-PROXY-FIREWALL drops the rest. */
  private writeFirewallChain() {
    const { port, config } = this;
    if (!port.usesFirewallChain) return;
    const { firewall, external } = port.chains;
    this.nat.declare(firewall);
    const match = comment(`${port.name} loadbalancer IP`);
    const inFamily = ofFamily(this.family);
    // Ranges of the other family only: nothing of this family is allowed, everything is dropped.
    const ranges = port.view.service.loadBalancerSourceRanges.filter(inFamily);
    for (const range of ranges) this.natRule(firewall, ...match, '-s', range, '-j', external);
    // A VIP-like load balancer IP assigned to the node loops the node's own requests back with the
    // VIP as source: allow those when the ranges admit the node.
    const nodeIPs = config.nodeIPs.filter(inFamily);
    if (ranges.some((range) => nodeIPs.some((nodeIP) => cidrContains(range, nodeIP)))) {
      for (const loadBalancerIP of port.loadBalancerIPs) this.natRule(firewall, ...match, '-s', loadBalancerIP, '-j', external);
    }
    this.natRule(firewall, ...comment(`other traffic to ${port.name} will be dropped by ${CHAINS.firewall}`));
  }

  /** Session affinity first, then equal-probability selection: rule i matches with 1/(n-i), the last always. */
  private writePolicyChain(chain: string, endpoints: PortEndpoint[]) {
    const { port } = this;
    this.nat.declare(chain);
    const affinitySeconds = port.view.service.affinityTimeoutSeconds;
    if (affinitySeconds !== undefined) {
      for (const endpoint of endpoints) {
        const endpointChain = this.endpointChain(endpoint);
        this.natRule(chain, ...comment(`${port.name} -> ${endpointString(endpoint)}`),
          '-m', 'recent', '--name', endpointChain, '--rcheck', '--seconds', String(affinitySeconds), '--reap', '-j', endpointChain);
      }
    }
    endpoints.forEach((endpoint, index) => {
      const remaining = endpoints.length - index;
      const statistic = remaining > 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', statisticProbability(remaining)] : [];
      this.natRule(chain, ...comment(`${port.name} -> ${endpointString(endpoint)}`), ...statistic, '-j', this.endpointChain(endpoint));
    });
  }

  private writeEndpointChains() {
    const { port } = this;
    const reachable = [...new Set([...port.clusterEndpoints, ...port.localEndpoints])];
    for (const endpoint of reachable) {
      const chain = this.endpointChain(endpoint);
      this.nat.declare(chain);
      const named = serviceComment(port.name);
      // Hairpin: an endpoint reaching its own service must not get a reply from itself.
      this.natRule(chain, ...named, '-s', endpoint.address, '-j', CHAINS.markMasq);
      const affinity = port.view.service.affinityTimeoutSeconds !== undefined ? ['-m', 'recent', '--name', chain, '--set'] : [];
      this.natRule(chain, ...named, ...affinity, ...this.protocolMatch, '-j', 'DNAT', '--to-destination', endpointString(endpoint));
    }
  }

  private endpointChain(endpoint: PortEndpoint) {
    return endpointChainName(this.port.name, this.port.protocol, endpointString(endpoint));
  }
}

/**
 * Upstream's local-traffic detector matches one CIDR per family (`! -s CIDR` cannot be repeated in
 * a rule without inverting its meaning), so the first configured CIDR of the family is used.
 */
const localCIDROf = (config: ProxyConfig, family: IptablesFamily) => config.localCIDRs.find(ofFamily(family));

function cidrContains(cidr: string, address: string): boolean {
  try {
    return ipaddr.parse(address).match(ipaddr.parseCIDR(cidr));
  } catch {
    return false;
  }
}

const markHex = (config: ProxyConfig) => `0x${((1 << config.masqueradeBit) >>> 0).toString(16)}`;

function writeMasquerading(nat: TableWriter, config: ProxyConfig): void {
  const mark = markHex(config);
  nat.append('', CHAINS.postrouting, '-m', 'mark', '!', '--mark', `${mark}/${mark}`, '-j', 'RETURN');
  // Clear the mark so a packet traversing the stack again is not masqueraded twice.
  nat.append('', CHAINS.postrouting, '-j', 'MARK', '--xor-mark', mark);
  nat.append('', CHAINS.postrouting, ...comment('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', '--random-fully');
  nat.append('', CHAINS.markMasq, '-j', 'MARK', '--or-mark', mark);
}

/** The tail call to KUBE-NODEPORTS, which must stay the last rule of KUBE-SERVICES. */
function writeNodePortDispatch(nat: TableWriter, config: ProxyConfig, family: IptablesFamily): void {
  const note = comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain');
  const addresses = config.nodePortAddresses.filter(ofFamily(family));
  if (addresses.length === 0) {
    // IPv6 cannot route to ::1 after DNAT (IPv4 can, with route_localnet, as upstream defaults).
    const loopback = family === 6 ? ['!', '-d', '::1/128'] : [];
    nat.append('', CHAINS.services, ...note, '-m', 'addrtype', '--dst-type', 'LOCAL', ...loopback, '-j', CHAINS.nodePorts);
    return;
  }
  for (const address of addresses) {
    if (family === 6 && address === '::1') continue;
    nat.append('', CHAINS.services, ...note, '-d', address, '-j', CHAINS.nodePorts);
  }
}

/** kube-proxy's "block incoming localnet connections" (CVE-2020-8558), which route_localnet needs. */
function writeLocalnetGuard(filter: TableWriter, config: ProxyConfig, family: IptablesFamily): void {
  if (family !== 4 || !config.nodePortsOnLoopback) return;
  filter.append('', CHAINS.firewall, ...comment('block incoming localnet connections'), '-d', '127.0.0.0/8', '!', '-s', '127.0.0.0/8',
    '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP');
}

function writeForwarding(filter: TableWriter, config: ProxyConfig): void {
  const mark = markHex(config);
  // Out-of-window packets would otherwise reach the endpoint unDNATed and be answered with resets.
  filter.append('', CHAINS.forward, '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP');
  // Service traffic must be forwarded even when the FORWARD policy is DROP.
  filter.append('', CHAINS.forward, ...comment('kubernetes forwarding rules'), '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'ACCEPT');
  filter.append('', CHAINS.forward, ...comment('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT');
}

/** The whole ruleset of one address family (views of the other family are ignored). */
export function planIptables(views: ServicePortView[], config: ProxyConfig, family: IptablesFamily): IptablesPlan {
  const filter = new TableWriter(TOP_LEVEL_CHAINS.filter);
  const nat = new TableWriter(TOP_LEVEL_CHAINS.nat);
  writeMasquerading(nat, config);
  for (const view of views) {
    if (view.family !== family) continue;
    new ServicePortWriter(servicePortPlan(view, config, family), config, family, filter, nat).write();
  }
  writeNodePortDispatch(nat, config, family);
  writeForwarding(filter, config);
  writeLocalnetGuard(filter, config, family);
  return {
    family,
    filter: filter.rules,
    nat: nat.rules,
    chains: { filter: filter.chains, nat: nat.chains },
    owners: { filter: filter.owners, nat: nat.owners },
  };
}

const TABLES: IptablesTable[] = ['filter', 'nat'];

/**
 * The iptables-restore input (for --noflush): declaring a chain creates or flushes it, so only our
 * chains are rewritten. `staleNatChains`, service chains left from an earlier sync, are flushed
 * then deleted after the rules that no longer reference them.
 */
export function iptablesRestoreInput(plan: IptablesPlan, staleNatChains: readonly string[] = []): string {
  const lines = TABLES.flatMap((table) => {
    const stale = table === 'nat' ? staleNatChains : [];
    return [
      `*${table}`,
      ...[...plan.chains[table], ...stale].map((chain) => `:${chain} - [0:0]`),
      ...plan[table],
      ...stale.map((chain) => `-X ${chain}`),
      'COMMIT',
    ];
  });
  return `${lines.join('\n')}\n`;
}

/** A restore input line, its table, and the service port owning it, for error messages. */
export interface RestoreLine {
  number: number;
  text: string;
  table?: IptablesTable;
  servicePort?: string;
}

export function describeRestoreLine(plan: IptablesPlan, input: string, lineNumber: number): RestoreLine {
  const lines = input.split('\n');
  const text = lines[lineNumber - 1] ?? '';
  const header = lines.slice(0, lineNumber).reverse().find((line) => line.startsWith('*'));
  const table = TABLES.find((candidate) => header === `*${candidate}`);
  if (!table) return { number: lineNumber, text };
  const owner = plan.owners[table][plan[table].indexOf(text)];
  return { number: lineNumber, text, table, ...(owner ? { servicePort: owner } : {}) };
}
