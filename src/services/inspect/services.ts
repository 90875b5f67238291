import type { DumpedExpression } from '../../kernel/native.js';
import { NFT_SET, NFT_VERDICT, NF_VERDICT } from '../../kernel/uapi.js';
import { CHAINS, SHARED_SETS } from '../nftables-plan.js';
import type { TableFamily } from '../../kernel/ruleset.js';
import type { ServicePortView } from '../../cluster/service-ports.js';
import { type Environment, Evaluator, type Protocol } from './evaluate.js';
import type { TableDump } from './tables.js';
import { decodeValue } from './values.js';
import { joinHostPort } from '../../kernel/addresses.js';

// Service ports read back from kubenft's tables: which addresses and ports lead to which chains,
// which endpoints those chains pick and with what probability. The same reading of the planner's
// tables gives what should be there, and the two are compared field by field.

export interface Selection {
  address: string;
  port: number;
  probability: number;
}

export interface ServicePortSummary {
  family: TableFamily;
  /** namespace/name, from the chain names; undefined for a port known only by an address. */
  service?: string;
  protocol: string;
  port: number;
  clusterIP?: string;
  internalTrafficPolicy?: 'Cluster' | 'Local';
  externalAddresses: string[];
  nodePort?: number;
  externalTrafficPolicy?: 'Cluster' | 'Local';
  /** loadBalancerSourceRanges, as the firewall chain admits them. */
  sourceRanges: string[];
  /** Endpoints of the cluster-wide chain and of the node-local chain, with their probabilities. */
  cluster: Selection[];
  local: Selection[];
  /** Keys answered without endpoints: `address:port` or `nodePort N`, with reject or drop. */
  noEndpoints: { key: string; verdict: string }[];
  affinity?: { timeoutSeconds: number; clients: number };
}

export const summaryKey = (summary: Pick<ServicePortSummary, 'family' | 'service' | 'protocol' | 'port'>, address?: string) =>
  `${summary.family} ${summary.service ?? address ?? '?'} ${summary.protocol}/${summary.port}`;

const SERVICE_CHAIN = /^(svc|local|external|firewall)\/(.+)\/([a-z]+)\/(\d+)$/;

/** Which service each address . protocol . port and NodePort belongs to, from the API's or the manifests' views. */
export function serviceIndex(views: ServicePortView[]): Map<string, string> {
  const index = new Map<string, string>();
  for (const view of views) {
    const protocol = view.port.protocol.toLowerCase();
    const service = `${view.service.namespace}/${view.service.name}`;
    const family = view.family === 4 ? 'ip' : 'ip6';
    const sameFamily = (address: string) => address.includes(':') === (view.family === 6);
    for (const address of [view.clusterIP, ...view.service.externalIPs, ...view.service.loadBalancerIPs].filter(sameFamily)) {
      index.set(`${family} ${address} ${protocol} ${view.port.port}`, service);
    }
    if (view.port.nodePort !== undefined) index.set(`${family} nodePort ${protocol} ${view.port.nodePort}`, service);
  }
  return index;
}

const verdictName = (code: number, chain?: string) =>
  code === NF_VERDICT.drop ? 'drop' : chain === CHAINS.reject && (code === NFT_VERDICT.goto || code === NFT_VERDICT.jump) ? 'reject' : chain ?? String(code);

/** The source prefix a firewall rule admits: its cmp against the source address, under its mask. */
function admittedSource(expressions: DumpedExpression[], family: TableFamily): string | undefined {
  const cmp = expressions.find((expression) => expression.name === 'cmp');
  if (!cmp) return undefined;
  const mask = expressions.find((expression) => expression.name === 'bitwise')?.attrs.mask as Buffer | undefined;
  const bits = mask ? [...mask].reduce((sum, byte) => sum + byte.toString(2).replaceAll('0', '').length, 0) : family === 'ip' ? 32 : 128;
  return `${decodeValue(family === 'ip' ? 7 : 8, cmp.attrs.data as Buffer)[0]}/${bits}`;
}

/**
 * Every service port in `tables`, one entry per family. `index` (from the views, when known)
 * names the ports the tables hold no chain for: those without endpoints.
 */
export function summarize(tables: TableDump[], environment: Environment, index = new Map<string, string>()): ServicePortSummary[] {
  const summaries = new Map<string, ServicePortSummary>();
  const entry = (family: TableFamily, service: string | undefined, protocol: string, port: number, address?: string) => {
    const key = summaryKey({ family, service, protocol, port }, address);
    let summary = summaries.get(key);
    if (!summary) {
      summary = { family, service, protocol, port, externalAddresses: [], sourceRanges: [], cluster: [], local: [], noEndpoints: [] };
      summaries.set(key, summary);
    }
    return summary;
  };
  const fromChain = (chain: string | undefined) => {
    const match = chain ? SERVICE_CHAIN.exec(chain) : null;
    return match ? { kind: match[1], service: match[2], protocol: match[3], port: Number(match[4]) } : undefined;
  };

  for (const table of tables) {
    const { family } = table;
    const evaluator = new Evaluator(tables, family, environment);
    const setOf = (name: string) => table.sets.find((set) => set.name === name);
    for (const element of setOf(SHARED_SETS.serviceIPs)?.elements ?? []) {
      const target = fromChain(element.chain);
      if (!target) continue;
      const [address] = decodeValue(setOf(SHARED_SETS.serviceIPs)!.keyType, element.key);
      const summary = entry(family, target.service, target.protocol, target.port);
      if (target.kind === 'external') summary.externalAddresses.push(String(address));
      else {
        summary.clusterIP = String(address);
        summary.internalTrafficPolicy = target.kind === 'local' ? 'Local' : 'Cluster';
      }
    }
    for (const element of setOf(SHARED_SETS.serviceNodePorts)?.elements ?? []) {
      const target = fromChain(element.chain);
      if (target) entry(family, target.service, target.protocol, target.port).nodePort = Number(decodeValue(setOf(SHARED_SETS.serviceNodePorts)!.keyType, element.key)[1]);
    }
    for (const chain of table.chains) {
      const target = fromChain(chain.name);
      if (!target) continue;
      const summary = entry(family, target.service, target.protocol, target.port);
      const rules = table.rules.filter((rule) => rule.chain === chain.name);
      if (target.kind === 'svc') summary.cluster = evaluator.selections(table, chain.name, target.protocol as Protocol);
      if (target.kind === 'local') summary.local = evaluator.selections(table, chain.name, target.protocol as Protocol);
      if (target.kind === 'external') {
        // Under Local the external chain ends in the local chain (or a drop when none is here).
        const verdicts = rules.flatMap((rule) => rule.expressions.filter((e) => e.name === 'immediate' && e.attrs.dreg === 0));
        const local = verdicts.some((e) => ((e.attrs.verdict as number) | 0) === NF_VERDICT.drop || String(e.attrs.chain ?? '').startsWith('local/'));
        summary.externalTrafficPolicy = local ? 'Local' : 'Cluster';
      }
      if (target.kind === 'firewall') {
        summary.sourceRanges = rules.flatMap((rule) => admittedSource(rule.expressions, family) ?? []);
      }
    }
    for (const set of table.sets) {
      const affinity = /^affinity\/(.+)\/([a-z]+)\/(\d+)\/[^/]+$/.exec(set.name);
      if (!affinity || !(set.flags & NFT_SET.TIMEOUT)) continue;
      const summary = entry(family, affinity[1], affinity[2], Number(affinity[3]));
      summary.affinity = { timeoutSeconds: Math.round((set.timeout ?? 0) / 1000), clients: (summary.affinity?.clients ?? 0) + set.elements.length };
    }
    const clusterIPSet = setOf(SHARED_SETS.clusterIPs);
    const clusterIPs = new Set(clusterIPSet?.elements.map((element) => String(decodeValue(clusterIPSet.keyType, element.key)[0])));
    for (const element of setOf(SHARED_SETS.noEndpointServices)?.elements ?? []) {
      const [address, protocol, port] = decodeValue(setOf(SHARED_SETS.noEndpointServices)!.keyType, element.key);
      const service = index.get(`${family} ${address} ${protocol} ${port}`);
      const summary = entry(family, service, String(protocol), Number(port), String(address));
      summary.noEndpoints.push({ key: `${address}:${port}`, verdict: verdictName(element.verdict! | 0, element.chain) });
      if (clusterIPs.has(String(address))) summary.clusterIP = String(address);
      else if (!summary.externalAddresses.includes(String(address))) summary.externalAddresses.push(String(address));
    }
    for (const element of setOf(SHARED_SETS.noEndpointNodePorts)?.elements ?? []) {
      const [protocol, nodePort] = decodeValue(setOf(SHARED_SETS.noEndpointNodePorts)!.keyType, element.key);
      const service = index.get(`${family} nodePort ${protocol} ${nodePort}`);
      const summary = service ? [...summaries.values()].find((s) => s.family === family && s.service === service && s.protocol === protocol) : undefined;
      (summary ?? entry(family, undefined, String(protocol), Number(nodePort), 'nodePort')).noEndpoints.push({ key: `nodePort ${nodePort}`, verdict: verdictName(element.verdict! | 0, element.chain) });
    }
  }
  for (const summary of summaries.values()) {
    summary.externalAddresses.sort();
    for (const list of [summary.cluster, summary.local]) list.sort((a, b) => a.address.localeCompare(b.address) || a.port - b.port);
    summary.noEndpoints.sort((a, b) => a.key.localeCompare(b.key));
  }
  return [...summaries.values()].sort((a, b) => summaryKey(a).localeCompare(summaryKey(b)));
}

export const percent = (probability: number) => `${(Math.round(probability * 10000) / 100).toString()}%`;
export const selections = (list: Selection[]) => list.map((selection) => `${joinHostPort(selection.address, selection.port)} ${percent(selection.probability)}`).join(', ') || 'none';

/** The fields compared between loaded and planned, as words. */
function facts(summary: ServicePortSummary): Map<string, string> {
  return new Map([
    ['ClusterIP', summary.clusterIP ?? 'none'],
    ['internal policy', summary.internalTrafficPolicy ?? 'none'],
    ['external addresses', summary.externalAddresses.join(', ') || 'none'],
    ['NodePort', summary.nodePort === undefined ? 'none' : String(summary.nodePort)],
    ['external policy', summary.externalTrafficPolicy ?? 'none'],
    ['source ranges', summary.sourceRanges.join(', ') || 'none'],
    ['cluster endpoints', selections(summary.cluster)],
    ['local endpoints', selections(summary.local)],
    ['without endpoints', summary.noEndpoints.map((entry) => `${entry.key} ${entry.verdict}`).join(', ') || 'no'],
    ['affinity timeout', summary.affinity ? `${summary.affinity.timeoutSeconds}s` : 'none'],
  ]);
}

/** What differs for one service port, in words: loaded first, planned second. */
export function compareSummaries(loaded: ServicePortSummary | undefined, planned: ServicePortSummary | undefined): string[] {
  if (!loaded) return ['planned, not loaded'];
  if (!planned) return ['loaded, not planned'];
  const want = facts(planned);
  return [...facts(loaded)].filter(([field, value]) => want.get(field) !== value).map(([field, value]) => `${field}: loaded ${value}, planned ${want.get(field)}`);
}
