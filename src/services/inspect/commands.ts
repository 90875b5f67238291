import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import { HostPortError, ipFamily, joinHostPort, splitHostPort } from '../../kernel/addresses.js';
import type { ProxyConfig } from '../config.js';
import { OptionsError } from '../../capability.js';
import { servicesBackend } from '../nftables-proxier.js';
import { native } from '../../kernel/native.js';
import { IptablesBackend } from '../iptables-backend.js';
import { type IptablesFamily, iptablesRestoreInput, planIptables } from '../iptables-plan.js';
import { gateway } from '../../gateway/index.js';
import { type MissingSecret, ingress } from '../../ingress/index.js';
import { planRuleset } from '../nftables-plan.js';
import { IptablesEvaluator, type IptablesRuleset, parseIptables, summarizeIptables } from './iptables.js';
import type { ServicePortView } from '../../cluster/service-ports.js';
import { servicePortName } from '../../cluster/service-ports.js';
import { type Environment, EvaluationError, Evaluator, type Outcome, type Probe, type Protocol, type Step, type Via } from './evaluate.js';
import { compareSummaries, percent, selections, serviceIndex, type ServicePortSummary, summarize, summaryKey } from './services.js';
import { kernelTables, type TableDump, nftRuleText, plannedTables, ruleTextKey, tableDifferences } from './tables.js';
import { describeElement } from './values.js';
import { type SocketLbFrontend, socketLb as socketLbCapability } from '../../socket-lb/index.js';

const { endpointsText, frontendKey, loaded: loadedSocketLb, planned: plannedSocketLb, differences: socketLbDifferences } = socketLbCapability.view;

// `kubenft services` and `kubenft explain` for the nftables mode: both read kubenft's tables back
// from the kernel (never kubenft's memory) and print what they hold; services also compares them
// with what the manifests or the API state would plan now.

/** What the manifests or the API would plan now (for services' drift marks). */
export interface PlannedState {
  views: ServicePortView[];
  config: ProxyConfig;
  /** With --ingress: what the route planner reports. */
  ingress?: { problems: string[]; missingSecrets: MissingSecret[]; routes?: string[] };
  /** With --gateway: what the Gateway planner reports, and where each host and match leads. */
  gateway?: GatewayView;
}

type GatewayView = Awaited<ReturnType<typeof gateway.view.planned>>;

export class InspectError extends Error {}

/** Addresses of this network namespace: what `fib … type local` and the routing decision test. */
export function localAddresses(): Set<string> {
  const addresses = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const entry of list ?? []) addresses.add(ipaddr.process(entry.address.split('%')[0]).toString());
  return addresses;
}

const isLocal = (local = localAddresses()) => (address: string) => local.has(address) || (ipFamily(address) === 4 && address.startsWith('127.'));

/** kubenft's tables in this namespace, what evaluating them needs, and nft's rule texts as they are fetched. */
export interface LoadedRuleset {
  tables: TableDump[];
  environment: Environment;
  texts: Map<string, string>;
  listed: Set<TableDump>;
}

export async function loadedRuleset(tableName: string): Promise<LoadedRuleset> {
  const tables = await kernelTables(servicesBackend(tableName), tableName, () => native().tables());
  return { tables, environment: { isLocalAddress: isLocal() }, texts: new Map(), listed: new Set() };
}

/** nft's own text for the steps' rules, listing only the tables the steps pass (once each). */
async function withNftText(outcomes: Outcome[], family: 'ip' | 'ip6', loaded: LoadedRuleset): Promise<void> {
  const passed = loaded.tables.filter((table) => table.family === family && !loaded.listed.has(table)
    && outcomes.some((outcome) => outcome.steps.some((step) => step.table === table.table.name)));
  for (const [key, text] of await nftRuleText(passed)) loaded.texts.set(key, text);
  for (const table of passed) loaded.listed.add(table);
  for (const step of outcomes.flatMap((outcome) => outcome.steps)) {
    if (step.handle !== undefined) step.text = loaded.texts.get(ruleTextKey(family, step.table, step.handle)) ?? step.text;
  }
}

// ---- services ------------------------------------------------------------------------------------

export interface ServicesReport {
  services: (ServicePortSummary & { name?: string; endpointStates?: string[]; drift?: string[]; socketLb?: Omit<SocketLbFrontend, 'address' | 'port' | 'protocol'> })[];
  /** Differences outside what the service entries show (main-table elements, rules), when compared. */
  ruleset?: string[];
  /** With --ingress: Ingresses (or parts) skipped, TLS Secrets missing (their hosts get the default certificate), where each host and path goes. */
  ingress?: { problems: string[]; missingSecrets: MissingSecret[]; routes?: string[] };
  /** With --gateway: the routes (host, match → Gateway, listener, HTTPRoute, rule) and what is not served. */
  gateway?: GatewayView;
  /** The socket LB's maps, when they are pinned: every frontend (those of the listed services with a filter). */
  socketLb?: { pinDir: string; frontends: SocketLbFrontend[] };
}

const stateOf = (endpoint: ServicePortView['endpoints'][number]) =>
  `${joinHostPort(endpoint.address, endpoint.port)} ${endpoint.ready ? 'ready' : endpoint.serving ? (endpoint.terminating ? 'serving, terminating' : 'serving') : endpoint.terminating ? 'terminating' : 'not ready'}${endpoint.nodeName ? ` on ${endpoint.nodeName}` : ''}`;

/** Which dataplane to read: nftables (kubenft's tables) or iptables (iptables-save of both families). */
export interface InspectTarget {
  mode: 'nftables' | 'iptables';
  tableName: string;
  iptablesBackend: 'auto' | 'legacy' | 'nft';
  /** Where the socket LB's maps would be pinned (--socket-lb-pin-dir); they are listed when they are. */
  socketLbPinDir?: string;
}

async function loadedIptables(target: InspectTarget, family: IptablesFamily): Promise<IptablesRuleset> {
  return parseIptables(await new IptablesBackend({ backend: target.iptablesBackend }).save(family));
}

/**
 * "No service ports" would read as an empty cluster where the truth is that no kubenft agent has
 * programmed this network namespace (another namespace, another mode, never started): say so.
 */
function nothingLoaded(target: InspectTarget, families: ('ip' | 'ip6')[]): InspectError {
  const what = target.mode === 'iptables'
    ? families.map((family) => `no ${family === 'ip' ? 'iptables' : 'ip6tables'} (${target.iptablesBackend}) chain nat KUBE-SERVICES`).join(', ')
    : families.map((family) => `no table ${family} ${target.tableName}`).join(', ');
  return new InspectError(`nothing of kubenft is loaded in this network namespace in --proxy-mode=${target.mode} (${what}): run this where the agent runs, with its mode`);
}

const hasServiceChain = (ruleset: IptablesRuleset) => ruleset.chains.has('nat KUBE-SERVICES');

/** What is loaded, and what the plan would load, as service port summaries (and table differences for nftables). */
async function summaries(target: InspectTarget, planned: PlannedState | undefined): Promise<{ have: ServicePortSummary[]; want?: ServicePortSummary[]; ruleset?: string[] }> {
  if (target.mode === 'iptables') {
    const local = isLocal();
    const read = (ruleset: IptablesRuleset, family: IptablesFamily) => summarizeIptables(ruleset, family === 6, new IptablesEvaluator(ruleset, local));
    const have: ServicePortSummary[] = [];
    const want: ServicePortSummary[] = [];
    let loaded = false;
    for (const family of [4, 6] as const) {
      const ruleset = await loadedIptables(target, family);
      loaded ||= hasServiceChain(ruleset);
      have.push(...read(ruleset, family));
      if (planned) want.push(...read(parseIptables(iptablesRestoreInput(planIptables(planned.views, planned.config, family))), family));
    }
    if (!loaded) throw nothingLoaded(target, ['ip', 'ip6']);
    return { have, want: planned ? want : undefined };
  }
  const { tables, environment } = await loadedRuleset(target.tableName);
  if (tables.length === 0) throw nothingLoaded(target, ['ip', 'ip6']);
  const index = serviceIndex(planned?.views ?? []);
  const have = summarize(tables, environment, index);
  if (!planned) return { have };
  const plannedRuleset = plannedTables(planRuleset(planned.views, planned.config), native().attributes);
  return { have, want: summarize(plannedRuleset, environment, index), ruleset: tableDifferences(tables, plannedRuleset, describeElement) };
}

export async function servicesReport(target: InspectTarget, filter: string | undefined, planned: PlannedState | undefined): Promise<ServicesReport> {
  const { have, want, ruleset } = await summaries(target, planned);
  const socketLb = target.socketLbPinDir === undefined ? undefined : loadedSocketLb(target.socketLbPinDir);
  const plannedFrontends = socketLb && planned ? plannedSocketLb(planned.views, planned.config) : undefined;
  const keys = [...new Set([...have, ...(want ?? [])].map((summary) => summaryKey(summary, summary.clusterIP)))].sort();
  const services: ServicesReport['services'] = [];
  const listedFrontends = new Set<string>();
  for (const key of keys) {
    const mine = have.find((summary) => summaryKey(summary, summary.clusterIP) === key);
    const theirs = want?.find((summary) => summaryKey(summary, summary.clusterIP) === key);
    const summary = mine ?? { ...theirs!, clusterIP: undefined, internalTrafficPolicy: undefined, externalAddresses: [], nodePort: undefined, externalTrafficPolicy: undefined, sourceRanges: [], cluster: [], local: [], noEndpoints: [], affinity: undefined };
    if (filter && summary.service !== filter) continue;
    const view = planned?.views.find((candidate) => `${candidate.service.namespace}/${candidate.service.name}` === summary.service
      && candidate.port.protocol.toLowerCase() === summary.protocol && candidate.port.port === summary.port && (candidate.family === 4) === (summary.family === 'ip'));
    const drift = want ? compareSummaries(mine, theirs) : undefined;
    const clusterIP = summary.clusterIP ?? theirs?.clusterIP;
    const frontend = socketLb && clusterIP ? frontendKey({ protocol: summary.protocol.toUpperCase() as SocketLbFrontend['protocol'], address: clusterIP, port: summary.port }) : undefined;
    const loadedFrontend = frontend ? socketLb!.frontends.get(frontend) : undefined;
    if (frontend) listedFrontends.add(frontend);
    if (frontend && plannedFrontends) drift?.push(...socketLbDifferences(loadedFrontend, plannedFrontends.get(frontend)));
    const socketLbEntry = loadedFrontend ? { affinityTimeoutSeconds: loadedFrontend.affinityTimeoutSeconds, endpoints: loadedFrontend.endpoints } : undefined;
    services.push({ ...summary, name: view ? servicePortName(view) : undefined, endpointStates: view?.endpoints.map(stateOf), drift, socketLb: socketLbEntry });
  }
  const frontends = socketLb ? [...socketLb.frontends].filter(([key]) => !filter || listedFrontends.has(key)).map(([, frontend]) => frontend) : undefined;
  return { services, ruleset, ...(planned?.ingress ? { ingress: planned.ingress } : {}), ...(planned?.gateway ? { gateway: planned.gateway } : {}), socketLb: socketLb && { pinDir: socketLb.pinDir, frontends: frontends! } };
}

export function servicesText(report: ServicesReport): string {
  const lines: string[] = [];
  for (const entry of report.services) {
    const title = entry.name ?? entry.service ?? `(no chain: named by no service) ${entry.clusterIP ?? ''}`;
    lines.push(`${title} ${entry.protocol}/${entry.port} (${entry.family})${entry.drift?.length ? '  DIFFERS FROM PLAN' : ''}`);
    if (entry.clusterIP) lines.push(`  ClusterIP ${joinHostPort(entry.clusterIP, entry.port)}${entry.internalTrafficPolicy ? `, internalTrafficPolicy ${entry.internalTrafficPolicy}` : ''}`);
    if (entry.externalAddresses.length || entry.nodePort !== undefined) {
      const parts = [...entry.externalAddresses.map((address) => joinHostPort(address, entry.port)), ...(entry.nodePort !== undefined ? [`NodePort ${entry.nodePort}`] : [])];
      lines.push(`  external ${parts.join(', ')}${entry.externalTrafficPolicy ? `, externalTrafficPolicy ${entry.externalTrafficPolicy}` : ''}`);
    }
    if (entry.sourceRanges.length) lines.push(`  loadBalancerSourceRanges ${entry.sourceRanges.join(', ')}`);
    if (entry.cluster.length) lines.push(`  cluster endpoints: ${selections(entry.cluster)}`);
    if (entry.local.length) lines.push(`  local endpoints: ${selections(entry.local)}`);
    for (const none of entry.noEndpoints) lines.push(`  no endpoints: ${none.key} ${none.verdict}`);
    if (entry.affinity) lines.push(`  sessionAffinity ClientIP ${entry.affinity.timeoutSeconds}s, ${entry.affinity.clients} client(s) remembered`);
    if (entry.socketLb) lines.push(`  socket LB: ${endpointsText(entry.socketLb.endpoints)}${entry.socketLb.affinityTimeoutSeconds ? `, affinity ${entry.socketLb.affinityTimeoutSeconds}s` : ''}`);
    if (entry.endpointStates?.length) lines.push(`  endpoints in the API: ${entry.endpointStates.join('; ')}`);
    for (const difference of entry.drift ?? []) lines.push(`  differs: ${difference}`);
  }
  if (report.ruleset?.length) {
    lines.push('ruleset differences from the plan:');
    for (const difference of report.ruleset) lines.push(`  ${difference}`);
  }
  if (report.services.length === 0) lines.push('no service ports loaded');
  if (report.ingress?.problems.length || report.ingress?.missingSecrets.length) {
    lines.push('ingress:');
    for (const missing of report.ingress.missingSecrets) lines.push(`  ${ingress.view.missingSecretText(missing)}`);
    for (const problem of report.ingress.problems) lines.push(`  skipped ${problem}`);
  }
  if (report.ingress?.routes?.length) {
    lines.push('ingress routes (rule host, path -> backend: endpoints):');
    for (const route of report.ingress.routes) lines.push(`  ${route}`);
  }
  if (report.gateway) {
    lines.push('gateway:');
    for (const route of report.gateway.routes) lines.push(`  ${route.protocol} ${route.host || '*'} ${route.match} -> HTTPRoute ${route.route} rule ${route.rule} (Gateway ${route.gateway} listener ${route.listener})`);
    for (const problem of report.gateway.problems) lines.push(`  not served: ${problem}`);
  }
  if (report.socketLb) {
    const listed = new Set(report.services.flatMap((entry) => (entry.clusterIP ? [frontendKey({ protocol: entry.protocol.toUpperCase() as SocketLbFrontend['protocol'], address: entry.clusterIP, port: entry.port })] : [])));
    const unlisted = report.socketLb.frontends.filter((frontend) => !listed.has(frontendKey(frontend)));
    lines.push(`socket LB maps (${report.socketLb.pinDir}): ${report.socketLb.frontends.length} frontend(s)${unlisted.length ? ', of which no service port above lists:' : ''}`);
    for (const frontend of unlisted) lines.push(`  ${joinHostPort(frontend.address, frontend.port)}/${frontend.protocol} -> ${endpointsText(frontend.endpoints)}`);
  }
  return `${lines.join('\n')}\n`;
}

// ---- explain -------------------------------------------------------------------------------------

/** `ADDR` or `ADDR:PORT` (IPv6 with a port in brackets: `[fd00::1]:80`). */
export function parseEndpoint(text: string, what: string, needPort: boolean): { address: string; port?: number } {
  try {
    const { host, port } = splitHostPort(text, { portOptional: !needPort });
    return { address: ipaddr.process(host).toString(), port };
  } catch (error) {
    if (!(error instanceof HostPortError)) throw error;
    throw new OptionsError(`${what} ${JSON.stringify(text)}: ${error.problem === 'not an address' ? 'not an address (ADDR, ADDR:PORT or [IPv6]:PORT)' : error.problem}`);
  }
}

export interface ExplainRequest {
  from: string;
  to: string;
  protocol: Protocol;
  via: Via;
}

export interface ExplainReport {
  probe: Probe & { via: Via };
  outcomes: (Outcome & { reason?: string })[];
}

/** The kubenft object a dropping or rejecting step belongs to, by its chain and set names. */
function reasonOf(outcome: Outcome): string | undefined {
  if (outcome.fate === 'accept') return undefined;
  const last = outcome.steps[outcome.steps.length - 1];
  if (!last) return undefined;
  if ((last.element?.includes(' : ') && /no-endpoint/.test(last.text)) || / has no endpoints"/.test(last.text)) return 'the service has no usable endpoints';
  if (last.chain.startsWith('firewall/') || last.chain === 'KUBE-PROXY-FIREWALL') return 'source not in the service\'s loadBalancerSourceRanges';
  if (last.chain.startsWith('external/') || last.chain.startsWith('KUBE-EXT-')) return 'externalTrafficPolicy Local and no endpoint on this node';
  if (last.chain === 'cluster-ips-check') return last.text.includes('@cluster-ips') ? 'a ClusterIP, on a port no service defines' : 'an address of the service CIDR that no service holds';
  return undefined;
}

/** `loaded`: the nftables tables read once for many requests (the semantics harness). */
export async function explainReport(target: InspectTarget, request: ExplainRequest, loaded?: LoadedRuleset): Promise<ExplainReport> {
  const source = parseEndpoint(request.from, '--from', false);
  const destination = parseEndpoint(request.to, '--to', true);
  if (ipFamily(source.address) !== ipFamily(destination.address)) throw new OptionsError(`--from ${request.from} and --to ${request.to} are of different address families`);
  const family = ipFamily(destination.address) === 4 ? 'ip' : 'ip6';
  const probe: Probe = { family, protocol: request.protocol, saddr: source.address, sport: source.port ?? 40000, daddr: destination.address, dport: destination.port! };
  try {
    let outcomes: Outcome[];
    if (target.mode === 'iptables') {
      const ruleset = await loadedIptables(target, family === 'ip' ? 4 : 6);
      if (!hasServiceChain(ruleset)) throw nothingLoaded(target, [family]);
      outcomes = new IptablesEvaluator(ruleset, isLocal()).explain(probe, request.via);
    } else {
      const ruleset = loaded ?? (await loadedRuleset(target.tableName));
      if (!ruleset.tables.some((table) => table.family === family)) throw nothingLoaded(target, [family]);
      outcomes = new Evaluator(ruleset.tables, family, ruleset.environment).explain(probe, request.via);
      await withNftText(outcomes, family, ruleset);
    }
    return { probe: { ...probe, via: request.via }, outcomes: outcomes.map((outcome) => ({ ...outcome, reason: reasonOf(outcome) })) };
  } catch (error) {
    if (error instanceof EvaluationError) throw new InspectError(`cannot explain: ${error.message}`);
    throw error;
  }
}

const stepText = (step: Step) =>
  `${step.table} ${step.chain}${step.handle === undefined ? '' : ` #${step.handle}`}: ${step.text}${step.element ? `  [matched ${step.element}]` : ''}`;

const sameStep = (a: Step | undefined, b: Step | undefined) => a !== undefined && b !== undefined && stepText(a) === stepText(b);

export function explainText(report: ExplainReport): string {
  const { probe, outcomes } = report;
  const lines = [`new ${probe.protocol} connection ${joinHostPort(probe.saddr, probe.sport)} -> ${joinHostPort(probe.daddr, probe.dport)}, entering at ${probe.via} (${probe.family} tables)`];
  let common = 0;
  while (outcomes.length > 0 && outcomes.every((outcome) => sameStep(outcome.steps[common], outcomes[0].steps[common]))) common++;
  for (const step of outcomes[0]?.steps.slice(0, common) ?? []) lines.push(`  ${stepText(step)}`);
  for (const outcome of outcomes) {
    const translation = outcome.dnat?.redirect ? `redirect to :${outcome.dnat.port}`
      : outcome.dnat ? `dnat to ${joinHostPort(outcome.dnat.address, outcome.dnat.port)}` : undefined;
    const what = [outcome.fate, translation,
      outcome.masquerade ? 'masquerade' : undefined, outcome.delivery === 'local' ? 'delivered to this node' : outcome.delivery].filter(Boolean).join(', ');
    lines.push(`${percent(outcome.probability).padStart(8)}  ${what}${outcome.reason ? `: ${outcome.reason}` : ''}`);
    for (const step of outcome.steps.slice(common)) lines.push(`            ${stepText(step)}`);
    for (const note of outcome.notes) lines.push(`            remembers: ${note}`);
  }
  return `${lines.join('\n')}\n`;
}
