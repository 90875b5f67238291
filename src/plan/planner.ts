import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from '../config.js';
import type { PortEndpoint, ServicePortView } from '../state/service-ports.js';
import type { Chain, Field, NamedSet, Rule, Ruleset, SetElement, Statement, Table, TableFamily } from './ruleset.js';

// The planner: a pure function from the proxied services to the nftables ruleset.
//
// Layout (docs/architecture.md explains the kernel costs behind it): per family one table whose
// per-service objects are only chains, rules and map elements. Dispatch is one lookup in the
// `service-ips` verdict map, keyed address . protocol . port, so the packet path does not grow
// with the number of services; endpoint choice is a cascade of `numgen random mod k` rules, the
// iptables `statistic` probabilities 1/n, 1/(n-1), ..., 1, which needs no per-service set.


export const CHAINS = {
  prerouting: 'nat-prerouting',
  output: 'nat-output',
  postrouting: 'nat-postrouting',
  services: 'services',
} as const;

export const SETS = { serviceIPs: 'service-ips', hairpin: 'hairpin-endpoints' } as const;

const FAMILY_FIELDS = {
  ip: { saddr: 'ip saddr', daddr: 'ip daddr', address: 'ipv4_addr' },
  ip6: { saddr: 'ip6 saddr', daddr: 'ip6 daddr', address: 'ipv6_addr' },
} as const;

const tableFamily = (view: ServicePortView): TableFamily => (view.family === 4 ? 'ip' : 'ip6');
const protocolName = (view: ServicePortView) => view.port.protocol.toLowerCase();
const rule = (...statements: Statement[]): Rule => ({ statements });

/** The chain of one service port; the name is readable and unique per table. */
export const serviceChainName = (view: ServicePortView) =>
  `svc/${view.service.namespace}/${view.service.name}/${protocolName(view)}/${view.port.port}`;

export const usableEndpoints = (view: ServicePortView): PortEndpoint[] => view.endpoints.filter((endpoint) => endpoint.ready);

/** Everything one service port contributes to its table: its chain and its map elements. */
export interface ServicePortPlan {
  family: TableFamily;
  chain: Chain;
  serviceIPs: SetElement[];
  hairpin: SetElement[];
}

export function planServicePort(view: ServicePortView, config: ProxyConfig): ServicePortPlan {
  const family = tableFamily(view);
  const fields = FAMILY_FIELDS[family];
  const protocol = protocolName(view);
  const markMasquerade: Statement = { kind: 'markSet', or: 1 << config.masqueradeBit };
  const endpoints = usableEndpoints(view);
  const rules: Rule[] = config.localCIDRs
    .filter((cidr) => cidr.includes(':') === (family === 'ip6'))
    .map((cidr) => rule({ kind: 'match', field: fields.saddr, op: '!=', value: cidr }, markMasquerade));
  endpoints.forEach((endpoint, index) => {
    const remaining = endpoints.length - index;
    const dnat: Statement[] = [
      { kind: 'match', field: 'meta l4proto', op: '==', value: protocol },
      { kind: 'dnat', address: endpoint.address, port: endpoint.port },
    ];
    rules.push(rule(...(remaining > 1 ? [{ kind: 'numgen', modulus: remaining, equals: 0 } as Statement] : []), ...dnat));
  });
  const chain: Chain = { name: serviceChainName(view), rules };
  return {
    family,
    chain,
    serviceIPs: endpoints.length === 0 ? [] : [{ key: [view.clusterIP, protocol, view.port.port], verdict: { kind: 'goto', chain: chain.name } }],
    hairpin: endpoints.map((endpoint) => ({ key: [endpoint.address, endpoint.address] })),
  };
}

/** The fixed part of a table: base chains, dispatch and masquerading, and its sets (empty). */
export function skeletonTable(family: TableFamily, config: ProxyConfig): Table {
  const fields = FAMILY_FIELDS[family];
  const mark = 1 << config.masqueradeBit;
  const nat = (hook: 'prerouting' | 'output' | 'postrouting', priority: number, rules: Rule[]): Chain => ({
    name: CHAINS[hook],
    base: { type: 'nat', hook, priority, policy: 'accept' },
    rules,
  });
  const dispatch: Field[] = [fields.daddr, 'meta l4proto', 'th dport'];
  return {
    family,
    name: config.tableName,
    sets: [
      { name: SETS.serviceIPs, keyType: [fields.address, 'inet_proto', 'inet_service'], dataType: 'verdict', elements: [] },
      { name: SETS.hairpin, keyType: [fields.address, fields.address], elements: [] },
    ],
    chains: [
      nat('prerouting', -100, [rule({ kind: 'verdict', verdict: { kind: 'jump', chain: CHAINS.services } })]),
      nat('output', -100, [rule({ kind: 'verdict', verdict: { kind: 'jump', chain: CHAINS.services } })]),
      nat('postrouting', 100, [
        // An endpoint reaching its own service would see its own address as the source and answer
        // itself directly, bypassing the reverse NAT: masquerade it (hairpin).
        rule({ kind: 'lookup', fields: [fields.saddr, fields.daddr], set: SETS.hairpin, op: '==' }, { kind: 'markSet', or: mark }),
        rule({ kind: 'markMatch', mask: mark, op: '==', value: 0 }, { kind: 'verdict', verdict: { kind: 'return' } }),
        rule({ kind: 'markToggle', xor: mark }, { kind: 'masquerade' }),
      ]),
      { name: CHAINS.services, rules: [rule({ kind: 'vmap', fields: dispatch, map: SETS.serviceIPs })] },
    ],
  };
}

const uniqueByKey = (elements: SetElement[]) => [...new Map(elements.map((element) => [element.key.join(' . '), element])).values()];

/** The whole desired ruleset: one table per family that has services (always the IPv4 one). */
export function planRuleset(views: ServicePortView[], config: ProxyConfig = DEFAULT_PROXY_CONFIG): Ruleset {
  const tables = new Map<TableFamily, Table>([['ip', skeletonTable('ip', config)]]);
  for (const view of views) {
    const plan = planServicePort(view, config);
    let table = tables.get(plan.family);
    if (!table) tables.set(plan.family, (table = skeletonTable(plan.family, config)));
    table.chains.push(plan.chain);
    setNamed(table, SETS.serviceIPs).elements.push(...plan.serviceIPs);
    setNamed(table, SETS.hairpin).elements.push(...plan.hairpin);
  }
  for (const table of tables.values()) {
    const hairpin = setNamed(table, SETS.hairpin);
    hairpin.elements = uniqueByKey(hairpin.elements);
  }
  return { tables: [...tables.values()] };
}

export const setNamed = (table: Table, name: string): NamedSet => table.sets.find((set) => set.name === name)!;
