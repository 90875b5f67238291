import { DEFAULT_PROXY_CONFIG, MAX_SERVICE_TABLES, type ProxyConfig } from './config.js';
import { type PortEndpoint, type ServicePortView, serviceKey, servicePortName } from '../cluster/service-ports.js';
import { categorizeEndpoints, externallyAccessible } from '../cluster/topology.js';
import ipaddr from 'ipaddr.js';
import { encodeAddress } from '../kernel/fields.js';
import { type Chain, type Field, type Hook, type NamedSet, type Rule, type Ruleset, type SetElement, type Statement, type Table, type TableFamily, type Verdict, tableKey } from '../kernel/ruleset.js';

// The planner: a pure function from the proxied services to the nftables ruleset.
//
// Layout (docs/architecture.md explains the kernel costs behind it): per family a main table with
// the hooks, checks and masquerading, and the services' NAT objects spread over a fixed number of
// service tables, because the kernel re-validates a whole table whenever a rule in it changes: a
// partial sync then pays for one service table, not for every service. Per-service objects are
// chains, rules and elements of a few shared maps. Dispatch is one lookup in a verdict map keyed
// address . protocol . port per service table, so the packet path does not grow with the number of
// services. A service port lives in the service table its ClusterIP's last byte picks. A new
// connection passes the NAT chains of every service table hooked before its own, so the main table
// sets the conntrack label of the table that holds it (from the address's last byte for a
// ClusterIP, from a map for the few other addresses and NodePorts): every other service table costs
// one label test, whatever its place in the hook order. Endpoint choice is a cascade of `numgen random mod k` rules (the iptables `statistic`
// probabilities 1/n, 1/(n-1), ..., 1), which needs no per-service set. Only services with ClientIP
// affinity get sets of their own (one per endpoint, as upstream).

export const CHAINS = {
  natPrerouting: 'nat-prerouting',
  clusterIPMasquerade: 'cluster-ip-masquerade',
  natOutput: 'nat-output',
  natPostrouting: 'nat-postrouting',
  filterPrerouting: 'filter-prerouting',
  filterInput: 'filter-input',
  filterForward: 'filter-forward',
  filterOutput: 'filter-output',
  filterOutputPostDnat: 'filter-output-post-dnat',
  services: 'services',
  /** Main-table chains that mark a new connection for its service table (serviceTableLabel). */
  serviceTable: (index: number) => `service-table-${index}`,
  firewallCheck: 'firewall-check',
  endpointsCheck: 'service-endpoints-check',
  clusterIPsCheck: 'cluster-ips-check',
  reject: 'reject-chain',
} as const;

/** Maps and sets shared by all services; their elements are what a service adds to the table. */
export const SHARED_SETS = {
  // in the service tables
  serviceIPs: 'service-ips',
  serviceNodePorts: 'service-nodeports',
  /** The keys of service-nodeports again, as a plain set: a cheap first test (see serviceTableSkeleton). */
  nodePortKeys: 'nodeport-keys',
  // in the main table (nodeport-ips in both)
  /** Which service table holds a ClusterIP (by its last byte), another address . protocol . port, a NodePort. */
  clusterIPTables: 'cluster-ip-tables',
  serviceIPTables: 'service-ip-tables',
  serviceNodePortTables: 'service-nodeport-tables',
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  firewallIPs: 'firewall-ips',
  clusterIPs: 'cluster-ips',
  nodePortIPs: 'nodeport-ips',
  hairpin: 'hairpin-endpoints',
  /** The ingress Service's load-balancer and external IPs (--ingress-service), steered to the ingress proxy. */
  ingressIPs: 'ingress-ips',
} as const;
export type SharedSet = (typeof SHARED_SETS)[keyof typeof SHARED_SETS];
const SERVICE_TABLE_SETS = new Set<SharedSet>([SHARED_SETS.serviceIPs, SHARED_SETS.serviceNodePorts, SHARED_SETS.nodePortKeys]);

const FAMILY = {
  ip: { saddr: 'ip saddr', daddr: 'ip daddr', address: 'ipv4_addr', version: 4 },
  ip6: { saddr: 'ip6 saddr', daddr: 'ip6 daddr', address: 'ipv6_addr', version: 6 },
} as const;

const rule = (...statements: Statement[]): Rule => ({ statements });
const verdict = (value: Verdict): Statement => ({ kind: 'verdict', verdict: value });
const goto = (chain: string): Verdict => ({ kind: 'goto', chain });
const jump = (chain: string): Verdict => ({ kind: 'jump', chain });
const DROP: Verdict = { kind: 'drop' };
/**
 * Statements that recur in every service are made once and frozen: the encoder compiles a frozen
 * statement once per transaction family and copies its bytes after that.
 */
function sharedBy<K, V extends object = Statement>(make: (key: K) => V): (key: K) => V {
  const known = new Map<K, V>();
  return (key) => {
    let statement = known.get(key);
    if (!statement) known.set(key, (statement = Object.freeze(make(key))));
    return statement;
  };
}

const ctNew: Statement = Object.freeze({ kind: 'ctStateNew' });
/**
 * With route_localnet (NodePorts on 127.0.0.1) the kernel would accept connections to 127.0.0.0/8
 * from the network: kube-proxy's "block incoming localnet connections" (CVE-2020-8558). Before
 * DNAT, so the addresses are the connection's own: a reply, or a DNAT to loopback, never matches.
 */
const localnetGuard: Rule = rule(
  ctNew,
  { kind: 'match', field: 'ip daddr', op: '==', value: '127.0.0.0/8' },
  { kind: 'match', field: 'ip saddr', op: '!=', value: '127.0.0.0/8' },
  verdict(DROP),
);
const protocolMatch = sharedBy((protocol: string): Statement => ({ kind: 'match', field: 'meta l4proto', op: '==', value: protocol }));
const numgenStep = sharedBy((modulus: number): Statement => ({ kind: 'numgen', modulus, equals: 0 }));
const markSet = sharedBy((mark: number): Statement => ({ kind: 'markSet', or: mark }));
/** The masquerade mark as an unsigned 32-bit value: `1 << 31` alone is negative in JavaScript. */
const masqueradeMark = (config: ProxyConfig) => (1 << config.masqueradeBit) >>> 0;

export const familyOfView = (view: ServicePortView): TableFamily => (view.family === 4 ? 'ip' : 'ip6');
const sameFamily = (family: TableFamily) => (cidrOrAddress: string) => cidrOrAddress.includes(':') === (family === 'ip6');

/** What one service port puts into one table: objects of its own and elements of shared sets. */
export interface TableContribution {
  table: string;
  chains: Chain[];
  sets: NamedSet[];
  elements: Partial<Record<SharedSet, SetElement[]>>;
}

/** Everything one service port contributes: to the main table and to its service table. */
export interface ServicePortPlan {
  family: TableFamily;
  /** kube-proxy's ServicePortName, for messages. */
  name: string;
  main: TableContribution;
  service: TableContribution;
}

const isEmpty = (part: TableContribution) => part.chains.length === 0 && part.sets.length === 0 && Object.keys(part.elements).length === 0;

/** The tables a service port puts something into (a service without endpoints has no NAT objects). */
export const contributions = (plan: ServicePortPlan): TableContribution[] => [plan.main, plan.service].filter((part) => !isEmpty(part));

export const serviceTableName = (config: Pick<ProxyConfig, 'tableName'>, index: number) => `${config.tableName}-services-${index}`;

/** Every table kubenft may own in a family, whatever the configuration that loaded it. */
export const allTableNames = (config: Pick<ProxyConfig, 'tableName'>) =>
  [config.tableName, ...Array.from({ length: MAX_SERVICE_TABLES }, (_, index) => serviceTableName(config, index))];

/**
 * The conntrack label bit of service table `index`: the upper half of the 128 label bits, one per
 * possible table. Labels are only ever set, by kubenft on a connection's first packet, so they
 * leave packet and connection marks, which CNIs and policy routing use, alone.
 */
export const serviceTableLabel = (index: number) => 64 + index;

/**
 * The service table of a service port: its ClusterIP's last byte (allocated at random by the API
 * server, and never changed) modulo the number of tables, which the main table can compute from
 * a packet with one masked lookup instead of a map element per service.
 */
export function serviceTableIndexOf(clusterIP: string, config: Pick<ProxyConfig, 'serviceTables'>): number {
  const bytes = encodeAddress(clusterIP);
  return bytes[bytes.length - 1] % config.serviceTables;
}

/**
 * How many values of a ClusterIP's last byte the main table tells apart: the number of service
 * tables when it is a power of two (the low bits suffice), else all 256 (so that the tables still
 * get nearly equal shares).
 */
const clusterIPBuckets = ({ serviceTables }: Pick<ProxyConfig, 'serviceTables'>) => ((serviceTables & (serviceTables - 1)) === 0 ? serviceTables : 256);

export const serviceTableOf = (clusterIP: string, config: Pick<ProxyConfig, 'tableName' | 'serviceTables'>): string =>
  serviceTableName(config, serviceTableIndexOf(clusterIP, config));

const toServiceTable = sharedBy((index: number): Verdict => ({ kind: 'goto', chain: CHAINS.serviceTable(index) }));

class ServicePortPlanner {
  private readonly family: TableFamily;
  private readonly fields: (typeof FAMILY)[TableFamily];
  private readonly protocol: string;
  private readonly base: string;
  private readonly toServiceTable: Verdict;
  readonly plan: ServicePortPlan;

  constructor(
    private readonly view: ServicePortView,
    private readonly config: ProxyConfig,
  ) {
    this.family = familyOfView(view);
    this.fields = FAMILY[this.family];
    this.protocol = view.port.protocol.toLowerCase();
    this.base = `${view.service.namespace}/${view.service.name}/${this.protocol}/${view.port.port}`;
    const part = (table: string): TableContribution => ({ table, chains: [], sets: [], elements: {} });
    const serviceTable = serviceTableIndexOf(view.clusterIP, config);
    this.toServiceTable = toServiceTable(serviceTable);
    this.plan = {
      family: this.family,
      name: servicePortName(view),
      main: part(config.tableName),
      service: part(serviceTableName(config, serviceTable)),
    };
    this.build();
  }

  private add(set: SharedSet, element: SetElement): void {
    const part = SERVICE_TABLE_SETS.has(set) ? this.plan.service : this.plan.main;
    (part.elements[set] ??= []).push(element);
  }

  /** An element of a service-table map whose key the main table must also send to this service table. */
  private addRouted(set: SharedSet, route: SharedSet, element: SetElement): void {
    this.add(set, element);
    this.add(route, { key: element.key, verdict: this.toServiceTable });
  }

  /** A chain of the service table (NAT); `part` main is for filter chains, which the main table hooks. */
  private chain(name: string, rules: Rule[], part = this.plan.service): string {
    part.chains.push({ name, rules });
    return name;
  }

  private get markMasquerade(): Statement {
    return markSet(masqueradeMark(this.config));
  }

  private build(): void {
    const { view, config, family, fields } = this;
    const { service } = view;
    const categories = categorizeEndpoints(view, config);
    const affinity = service.affinityTimeoutSeconds !== undefined;
    if (affinity) {
      for (const endpoint of categories.reachable) {
        this.plan.service.sets.push({ name: this.affinitySet(endpoint), keyType: [fields.address], dynamicTimeoutSeconds: service.affinityTimeoutSeconds, elements: [] });
      }
    }
    const localCIDRs = config.localCIDRs.filter(sameFamily(family));

    const clusterChainName = `svc/${this.base}`;
    const localChainName = `local/${this.base}`;
    const clusterChain = categories.usesCluster ? this.chain(clusterChainName, this.selection(categories.cluster, clusterChainName)) : undefined;
    const localChain = categories.usesLocal ? this.chain(localChainName, this.selection(categories.local, localChainName)) : undefined;
    const internalEndpoints = service.internalTrafficPolicyLocal ? categories.local : categories.cluster;
    const externalEndpoints = service.externalTrafficPolicyLocal ? categories.local : categories.cluster;
    // Traffic that finds no endpoint here although the service has some elsewhere is dropped (a
    // Local policy chose this); a service with none at all is rejected, so clients fail fast.
    const noEndpoints: Verdict = categories.hasAny ? DROP : goto(CHAINS.reject);

    const key = (address: string) => [address, this.protocol, view.port.port];
    const internalEntry = (service.internalTrafficPolicyLocal ? localChain : clusterChain)!;
    this.add(SHARED_SETS.clusterIPs, { key: [view.clusterIP] });
    if (internalEndpoints.length > 0) this.add(SHARED_SETS.serviceIPs, { key: key(view.clusterIP), verdict: goto(internalEntry) });
    else this.add(SHARED_SETS.noEndpointServices, { key: key(view.clusterIP), verdict: noEndpoints });
    for (const endpoint of categories.reachable) this.add(SHARED_SETS.hairpin, { key: [endpoint.address, endpoint.address] });

    if (!externallyAccessible(view)) return;
    const externalChain = this.chain(`external/${this.base}`, this.externalRules(localCIDRs, clusterChain ?? localChain!, localChain, categories.local.length > 0));
    const externalAddresses = [...service.externalIPs, ...service.loadBalancerIPs].filter(sameFamily(family));
    if (config.ingressSteering?.service === serviceKey(service.namespace, service.name)) {
      for (const address of externalAddresses) this.add(SHARED_SETS.ingressIPs, { key: [address] });
    }
    for (const address of externalAddresses) {
      if (categories.hasAny) this.addRouted(SHARED_SETS.serviceIPs, SHARED_SETS.serviceIPTables, { key: key(address), verdict: goto(externalChain) });
      if (externalEndpoints.length === 0) this.add(SHARED_SETS.noEndpointServices, { key: key(address), verdict: noEndpoints });
    }
    if (view.port.nodePort !== undefined) {
      const nodePortKey = [this.protocol, view.port.nodePort];
      if (categories.hasAny) {
        this.addRouted(SHARED_SETS.serviceNodePorts, SHARED_SETS.serviceNodePortTables, { key: nodePortKey, verdict: goto(externalChain) });
        this.add(SHARED_SETS.nodePortKeys, { key: nodePortKey });
      }
      if (externalEndpoints.length === 0) this.add(SHARED_SETS.noEndpointNodePorts, { key: nodePortKey, verdict: noEndpoints });
    }
    const loadBalancerIPs = service.loadBalancerIPs.filter(sameFamily(family));
    if (service.loadBalancerSourceRanges.length > 0 && loadBalancerIPs.length > 0) {
      const firewall = this.chain(`firewall/${this.base}`, this.firewallRules(loadBalancerIPs), this.plan.main);
      for (const address of loadBalancerIPs) this.add(SHARED_SETS.firewallIPs, { key: key(address), verdict: goto(firewall) });
    }
  }

  /**
   * External traffic (external IPs, load balancer IPs, NodePorts). Under the Cluster policy it is
   * masqueraded; under Local it keeps its source and only reaches this node's endpoints, but
   * traffic from pods or from the node itself short-circuits to the cluster-wide endpoints.
   */
  private externalRules(localCIDRs: string[], clusterWide: string, localChain: string | undefined, hasLocal: boolean): Rule[] {
    if (!this.view.service.externalTrafficPolicyLocal) return [rule(this.markMasquerade), rule(verdict(goto(clusterWide)))];
    return [
      ...localCIDRs.map((cidr) => rule({ kind: 'match', field: this.fields.saddr, op: '==', value: cidr }, verdict(goto(clusterWide)))),
      rule({ kind: 'fibLocal', address: 'saddr', op: '==' }, this.markMasquerade),
      rule({ kind: 'fibLocal', address: 'saddr', op: '==' }, verdict(goto(clusterWide))),
      rule(verdict(hasLocal && localChain ? goto(localChain) : DROP)),
    ];
  }

  /** loadBalancerSourceRanges: new connections to the LB IPs from elsewhere are dropped. */
  private firewallRules(loadBalancerIPs: string[]): Rule[] {
    const ranges = this.view.service.loadBalancerSourceRanges.filter(sameFamily(this.family));
    const nodeInRange = ranges.some((range) => {
      const cidr = ipaddr.parseCIDR(range);
      return this.config.nodeIPs.some((ip) => sameFamily(this.family)(ip) && ipaddr.parse(ip).match(cidr));
    });
    // Pods reaching the LB through the node's own address would otherwise be refused (upstream does the same).
    const allowed = nodeInRange ? [...ranges, ...loadBalancerIPs] : ranges;
    return [...allowed.map((source) => rule({ kind: 'match', field: this.fields.saddr, op: '==', value: source }, verdict({ kind: 'return' }))), rule(verdict(DROP))];
  }

  private mapSelection(endpoints: PortEndpoint[], chainName: string): Rule {
    const map = `endpoints/${chainName}`;
    const { family, fields } = this;
    this.plan.service.sets.push({
      name: map,
      keyType: ['integer'],
      dataType: [fields.address, 'inet_service'],
      typeofText: `numgen random mod ${endpoints.length} : ${fields.daddr} . th dport`,
      elements: endpoints.map((endpoint, index) => ({ key: [index], data: [endpoint.address, endpoint.port] })),
    });
    return rule(protocolMatch(this.protocol), { kind: 'dnatMap', family, modulus: endpoints.length, map });
  }

  private affinitySet(endpoint: PortEndpoint): string {
    return `affinity/${this.base}/${endpoint.address.replaceAll(':', '-')}`;
  }

  private dnat(endpoint: PortEndpoint): Statement[] {
    return [protocolMatch(this.protocol), { kind: 'dnat', address: endpoint.address, port: endpoint.port }];
  }

  /**
   * Equal-probability choice among endpoints; with ClientIP affinity, a known client first goes
   * back to its endpoint. A cascade costs one rule per endpoint on a new connection; above
   * config.largeServiceEndpoints a map of its own makes the choice one lookup (docs/architecture.md).
   */
  private selection(endpoints: PortEndpoint[], chainName: string): Rule[] {
    const affinity = this.view.service.affinityTimeoutSeconds !== undefined;
    if (!affinity && endpoints.length > this.config.largeServiceEndpoints) return [this.mapSelection(endpoints, chainName)];
    const remember = (endpoint: PortEndpoint): Statement[] =>
      affinity ? [{ kind: 'setUpdate', field: this.fields.saddr, set: this.affinitySet(endpoint) }] : [];
    const sticky = affinity
      ? endpoints.map((endpoint) => rule({ kind: 'lookup', fields: [this.fields.saddr], set: this.affinitySet(endpoint), op: '==' }, ...remember(endpoint), ...this.dnat(endpoint)))
      : [];
    const rules = sticky;
    for (let index = 0; index < endpoints.length; index++) {
      const remaining = endpoints.length - index;
      // Built in place: a full sync makes one per endpoint, and every spread array is garbage.
      const statements: Statement[] = remaining > 1 ? [numgenStep(remaining)] : [];
      if (affinity) statements.push(...remember(endpoints[index]));
      statements.push(protocolMatch(this.protocol), { kind: 'dnat', address: endpoints[index].address, port: endpoints[index].port });
      rules.push({ statements });
    }
    return rules;
  }
}

const UNCONDITIONAL_IN_SERVICE_CHAINS = new Set<Statement['kind']>(['markSet', 'setUpdate']);
const ENDS_EVALUATION = new Set<Statement['kind']>(['dnat', 'dnatMap', 'verdict']);

/**
 * True when no packet reaching the rule gets past it: it ends in a verdict or a translation, and
 * its only condition is the protocol, which the dispatch into a service chain already guarantees.
 * Rules inserted in front of such a rule make everything behind it unreachable.
 */
export function endsEvaluation(rule: Rule): boolean {
  const last = rule.statements.at(-1);
  if (!last || !ENDS_EVALUATION.has(last.kind)) return false;
  return rule.statements.slice(0, -1).every((statement) =>
    UNCONDITIONAL_IN_SERVICE_CHAINS.has(statement.kind) || (statement.kind === 'match' && statement.field === 'meta l4proto'));
}

export function planServicePort(view: ServicePortView, config: ProxyConfig = DEFAULT_PROXY_CONFIG): ServicePortPlan {
  return new ServicePortPlanner(view, config).plan;
}

/**
 * ClusterIP traffic from outside the pod network (or all of it, with masqueradeAll) is marked for
 * masquerade so replies come back through this node. One rule in front of the dispatch serves
 * every service, where a rule per service chain would add a rule per service to every sync.
 */
function clusterIPMasquerade(family: TableFamily, config: ProxyConfig): Rule[] {
  const { saddr, daddr } = FAMILY[family];
  const toClusterIP: Statement = { kind: 'lookup', fields: [daddr], set: SHARED_SETS.clusterIPs, op: '==' };
  const mark = markSet(masqueradeMark(config));
  if (config.masqueradeAll) return [rule(toClusterIP, mark)];
  const localCIDRs = config.localCIDRs.filter(sameFamily(family));
  if (localCIDRs.length === 0) return [];
  return [rule(toClusterIP, ...localCIDRs.map((cidr): Statement => ({ kind: 'match', field: saddr, op: '!=', value: cidr })), mark)];
}

const baseChain = (name: string, type: 'nat' | 'filter', hook: Hook, priority: number, rules: Rule[]): Chain =>
  ({ name, base: { type, hook, priority, policy: 'accept' }, rules });
const verdictMap = (name: string, keyType: NamedSet['keyType']): NamedSet => ({ name, keyType, dataType: 'verdict', elements: [] });
const dispatchFields = (family: TableFamily): Field[] => [FAMILY[family].daddr, 'meta l4proto', 'th dport'];
const toNodePort: Field[] = ['meta l4proto', 'th dport'];

/** NodePorts answer on the configured node addresses, or on every local address when none are configured. */
function nodePortAddressing(family: TableFamily, config: ProxyConfig): { set: NamedSet; match: Statement } {
  const addresses = config.nodePortAddresses.filter(sameFamily(family));
  const fields = FAMILY[family];
  return {
    set: { name: SHARED_SETS.nodePortIPs, keyType: [fields.address], elements: addresses.map((address) => ({ key: [address] })) },
    match: addresses.length > 0
      ? { kind: 'lookup', fields: [fields.daddr], set: SHARED_SETS.nodePortIPs, op: '==' }
      : { kind: 'fibLocal', address: 'daddr', op: '==' },
  };
}

/**
 * --ingress-service: new TCP connections to the ingress Service's addresses on a listener's port
 * reach this node's proxy: redirected to a wildcard listener ('::' takes IPv4 too), DNATed to one
 * bound to an address of the family. First in the main table's NAT chains, so that the Service's
 * own DNAT (a later chain of the hook) never sees them; its other ports keep their rules.
 */
function ingressSteeringRules(family: TableFamily, config: ProxyConfig): Rule[] {
  const toIngressIP: Statement = { kind: 'lookup', fields: [FAMILY[family].daddr], set: SHARED_SETS.ingressIPs, op: '==' };
  return (config.ingressSteering?.listeners ?? []).flatMap(({ address, port }) => {
    const toListener: Statement | undefined = address === '0.0.0.0' || address === '::'
      ? (family === 'ip' || address === '::' ? { kind: 'redirect', port } : undefined)
      : sameFamily(family)(address) ? { kind: 'dnat', address, port } : undefined;
    return toListener ? [rule(toIngressIP, protocolMatch('tcp'), { kind: 'match', field: 'th dport', op: '==', value: port }, toListener)] : [];
  });
}

/**
 * NAT priority of the main table's chains: before the service tables' DNAT (-100), because once a
 * packet is translated the kernel skips the remaining NAT chains of the hook.
 */
const MAIN_NAT_PRIORITY = -101;
const SERVICE_NAT_PRIORITY = -100;

/** The fixed part of the main table: hooks, checks, masquerading, and the shared sets (empty). */
export function skeletonTable(family: TableFamily, config: ProxyConfig): Table {
  const fields = FAMILY[family];
  const mark = masqueradeMark(config);
  const dispatch = dispatchFields(family);
  const nodePorts = nodePortAddressing(family, config);
  const endpointChecks = [rule(ctNew, verdict(jump(CHAINS.endpointsCheck))), rule(ctNew, verdict(jump(CHAINS.clusterIPsCheck)))];
  const buckets = clusterIPBuckets(config);
  const bucketAddress = (byte: number) => (family === 'ip' ? `0.0.0.${byte}` : `::${byte.toString(16)}`);
  // The label is a hint, not the decision: the service table still matches the connection exactly
  // (a NodePort also by its address), so a NodePort is labelled whatever its destination address.
  const natDispatch = [
    ...ingressSteeringRules(family, config),
    rule(verdict(jump(CHAINS.clusterIPMasquerade))),
    rule({ kind: 'lookup', fields: [fields.daddr], set: SHARED_SETS.clusterIPs, op: '==' },
      { kind: 'vmap', fields: [fields.daddr], mask: bucketAddress(buckets - 1), map: SHARED_SETS.clusterIPTables }),
    rule({ kind: 'vmap', fields: dispatch, map: SHARED_SETS.serviceIPTables }),
    rule({ kind: 'vmap', fields: toNodePort, map: SHARED_SETS.serviceNodePortTables }),
  ];
  const labelChains = Array.from({ length: config.serviceTables }, (_, index): Chain =>
    ({ name: CHAINS.serviceTable(index), rules: [rule({ kind: 'ctLabelSet', label: serviceTableLabel(index) })] }));
  const lastBytes = Array.from({ length: buckets }, (_, byte): SetElement =>
    ({ key: [bucketAddress(byte)], verdict: toServiceTable(byte % config.serviceTables) }));
  return {
    family,
    name: config.tableName,
    sets: [
      verdictMap(SHARED_SETS.noEndpointServices, [fields.address, 'inet_proto', 'inet_service']),
      verdictMap(SHARED_SETS.noEndpointNodePorts, ['inet_proto', 'inet_service']),
      verdictMap(SHARED_SETS.firewallIPs, [fields.address, 'inet_proto', 'inet_service']),
      { name: SHARED_SETS.clusterIPs, keyType: [fields.address], elements: [] },
      nodePorts.set,
      { name: SHARED_SETS.hairpin, keyType: [fields.address, fields.address], elements: [] },
      { ...verdictMap(SHARED_SETS.clusterIPTables, [fields.address]), elements: lastBytes },
      verdictMap(SHARED_SETS.serviceIPTables, [fields.address, 'inet_proto', 'inet_service']),
      verdictMap(SHARED_SETS.serviceNodePortTables, ['inet_proto', 'inet_service']),
      ...(config.ingressSteering ? [{ name: SHARED_SETS.ingressIPs, keyType: [fields.address], elements: [] }] : []),
    ],
    chains: [
      baseChain(CHAINS.natPrerouting, 'nat', 'prerouting', MAIN_NAT_PRIORITY, natDispatch),
      baseChain(CHAINS.natOutput, 'nat', 'output', MAIN_NAT_PRIORITY, natDispatch),
      baseChain(CHAINS.natPostrouting, 'nat', 'postrouting', 100, [
        // An endpoint reaching its own service would see its own address as the source and answer
        // itself directly, bypassing the reverse NAT: masquerade it (hairpin).
        rule({ kind: 'lookup', fields: [fields.saddr, fields.daddr], set: SHARED_SETS.hairpin, op: '==' }, markSet(mark)),
        rule({ kind: 'markMatch', mask: mark, op: '==', value: 0 }, verdict({ kind: 'return' })),
        rule({ kind: 'markToggle', xor: mark }, { kind: 'masquerade' }),
      ]),
      // Source-range firewalls must see the load balancer address, so they run before DNAT ...
      baseChain(CHAINS.filterPrerouting, 'filter', 'prerouting', -110, [
        ...(family === 'ip' && config.nodePortsOnLoopback ? [localnetGuard] : []),
        rule(ctNew, verdict(jump(CHAINS.firewallCheck))),
      ]),
      baseChain(CHAINS.filterOutput, 'filter', 'output', -110, [rule(ctNew, verdict(jump(CHAINS.firewallCheck)))]),
      // ... while no-endpoint and unknown-port checks run after it, so that short-circuited
      // (already translated) traffic is not mistaken for traffic without endpoints.
      baseChain(CHAINS.filterInput, 'filter', 'input', 0, [rule(ctNew, verdict(jump(CHAINS.endpointsCheck)))]),
      baseChain(CHAINS.filterForward, 'filter', 'forward', 0, endpointChecks),
      baseChain(CHAINS.filterOutputPostDnat, 'filter', 'output', -90, endpointChecks),
      { name: CHAINS.clusterIPMasquerade, rules: clusterIPMasquerade(family, config) },
      { name: CHAINS.firewallCheck, rules: [rule({ kind: 'vmap', fields: dispatch, map: SHARED_SETS.firewallIPs })] },
      { name: CHAINS.endpointsCheck, rules: [
        rule({ kind: 'vmap', fields: dispatch, map: SHARED_SETS.noEndpointServices }),
        rule(nodePorts.match, { kind: 'vmap', fields: toNodePort, map: SHARED_SETS.noEndpointNodePorts }),
      ] },
      { name: CHAINS.clusterIPsCheck, rules: [
        // A ClusterIP on a port the service does not define: refuse, so connect() fails fast.
        rule({ kind: 'lookup', fields: [fields.daddr], set: SHARED_SETS.clusterIPs, op: '==' }, { kind: 'reject' }),
        // An address of the service range that no service holds: nothing could ever answer.
        ...config.serviceCIDRs.filter(sameFamily(family)).map((cidr) => rule({ kind: 'match', field: fields.daddr, op: '==', value: cidr }, verdict(DROP))),
      ] },
      { name: CHAINS.reject, rules: [rule({ kind: 'reject' })] },
      ...labelChains,
    ],
  };
}

/**
 * The fixed part of a service table: DNAT dispatch through its two verdict maps, for the new
 * connections the main table labelled for this table.
 */
export function serviceTableSkeleton(family: TableFamily, name: string, config: ProxyConfig): Table {
  const fields = FAMILY[family];
  const nodePorts = nodePortAddressing(family, config);
  const own: Statement = { kind: 'ctLabelMatch', label: serviceTableLabel(serviceTableIndex(name)) };
  return {
    family,
    name,
    sets: [
      verdictMap(SHARED_SETS.serviceIPs, [fields.address, 'inet_proto', 'inet_service']),
      verdictMap(SHARED_SETS.serviceNodePorts, ['inet_proto', 'inet_service']),
      { name: SHARED_SETS.nodePortKeys, keyType: ['inet_proto', 'inet_service'], elements: [] },
      nodePorts.set,
    ],
    chains: [
      baseChain(CHAINS.natPrerouting, 'nat', 'prerouting', SERVICE_NAT_PRIORITY, [rule(own, verdict(jump(CHAINS.services)))]),
      baseChain(CHAINS.natOutput, 'nat', 'output', SERVICE_NAT_PRIORITY, [rule(own, verdict(jump(CHAINS.services)))]),
      { name: CHAINS.services, rules: [
        rule({ kind: 'vmap', fields: dispatchFields(family), map: SHARED_SETS.serviceIPs }),
        // The node-address test (a route lookup without nodePortAddresses) only for this table's ports.
        rule({ kind: 'lookup', fields: toNodePort, set: SHARED_SETS.nodePortKeys, op: '==' }, nodePorts.match,
          { kind: 'vmap', fields: toNodePort, map: SHARED_SETS.serviceNodePorts }),
      ] },
    ],
  };
}

export const skeletonOf = (family: TableFamily, name: string, config: ProxyConfig): Table =>
  name === config.tableName ? skeletonTable(family, config) : serviceTableSkeleton(family, name, config);

/**
 * Unique within one set (whose keys all have the same length). A one-part key, or a pair of equal
 * parts (every hairpin element), is its first part: no string is built for the bulk of a sync.
 */
const elementKey = ({ key }: SetElement) => (key.length === 1 || (key.length === 2 && key[0] === key[1]) ? String(key[0]) : key.join(' . '));

const serviceTableIndex = (name: string) => Number(name.slice(name.lastIndexOf('-') + 1));

/**
 * Assembles service port plans into tables: per family the main table and the service tables that
 * hold services (always the IPv4 main table). Shared sets may hold an element more than once (see
 * withUniqueElements).
 */
export function assembleRuleset(plans: ServicePortPlan[], config: ProxyConfig = DEFAULT_PROXY_CONFIG): Ruleset {
  const tables = mainTableSeed(config);
  assembleInto(tables, plans, config);
  // Main table first, then service tables by number: the order nft lists them in does not matter
  // to the kernel, but a stable one keeps renders comparable.
  const order = (table: Table) => (table.family === 'ip' ? 0 : 1000) + (table.name === config.tableName ? -1 : serviceTableIndex(table.name));
  return { tables: [...tables.values()].sort((a, b) => order(a) - order(b)) };
}

/** The tables every ruleset has, by family and name: the IPv4 main table. */
export const mainTableSeed = (config: ProxyConfig) => new Map<string, Table>([[tableKey('ip', config.tableName), skeletonTable('ip', config)]]);

/**
 * Adds the plans' contributions to `tables` (by family and name), creating the tables they need:
 * a full sync assembles what one group of services adds to its tables after another.
 */
export function assembleInto(tables: Map<string, Table>, plans: ServicePortPlan[], config: ProxyConfig): void {
  for (const plan of plans) {
    for (const part of contributions(plan)) {
      const key = tableKey(plan.family, part.table);
      let table = tables.get(key);
      if (!table) tables.set(key, (table = skeletonOf(plan.family, part.table, config)));
      // Loops, not push(...spread): this runs for every service port of a full sync.
      for (const chain of part.chains) table.chains.push(chain);
      for (const set of part.sets) table.sets.push(set);
      for (const name in part.elements) {
        const into = setNamed(table, name).elements;
        for (const element of part.elements[name as SharedSet]!) into.push(element);
      }
    }
  }
}

/** Several services may share an endpoint or a ClusterIP; the kernel wants each element once. */
export function withUniqueElements(ruleset: Ruleset): Ruleset {
  for (const table of ruleset.tables) {
    for (const set of table.sets) set.elements = [...new Map(set.elements.map((element) => [elementKey(element), element])).values()];
  }
  return ruleset;
}

/** The whole desired ruleset. */
export const planRuleset = (views: ServicePortView[], config: ProxyConfig = DEFAULT_PROXY_CONFIG): Ruleset =>
  withUniqueElements(assembleRuleset(views.map((view) => planServicePort(view, config)), config));

export const setNamed = (table: Table, name: string): NamedSet => table.sets.find((set) => set.name === name)!;
