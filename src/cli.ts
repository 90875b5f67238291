#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { IptablesBackend } from './backend/iptables.js';
import { NftablesBackend } from './backend/nftables.js';
import { Agent } from './agent/agent.js';
import { type Dataplane, IptablesDataplane, NftablesDataplane } from './agent/dataplane.js';
import type { StateDataplane } from './agent/state-dataplane.js';
import { SocketLbDataplane, cleanupSocketLb, netnsPinDir, removeLeftoverSocketLb } from './agent/socket-lb-dataplane.js';
import { startHealthServer } from './agent/healthz.js';
import { applyNodeSetup, applyOomScoreAdj } from './agent/node-setup.js';
import { claimNetns } from './agent/ownership.js';
import { LeftoverRemoval, logRemoved, removeKubeProxyLeftovers } from './agent/kube-proxy-leftovers.js';
import { DnsDataplane } from './dns/dataplane.js';
import { cleanUpDnsNetwork } from './dns/network.js';
import { IngressDataplane, ingressPlanInput, registerIngressKinds } from './ingress/dataplane.js';
import { startMetricsServer } from './agent/metrics.js';
import { configz } from './agent/configz.js';
import { explainReport, explainText, type PlannedState, servicesReport, servicesText } from './inspect/commands.js';
import { helpText, kubeProxyConfigurationYAML, type AgentOptions, OptionsError, parseOptions } from './options.js';
import { iptablesRestoreInput, planIptables } from './plan/iptables.js';
import { planIngress } from './plan/ingress.js';
import { planRuleset } from './plan/planner.js';
import { rulesetJson } from './plan/render-json.js';
import { rulesetText } from './plan/render-text.js';
import { DEFAULT_PROXY_CONFIG } from './config.js';
import { createLogger } from './logging.js';
import { ManifestSource } from './source/manifest-watch.js';
import { manifestFiles } from './source/manifests.js';
import { allServicePortViews } from './state/service-ports.js';

const VERSION = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version as string;
const CAP_NET_ADMIN = 12;

/** Programming the kernel needs CAP_NET_ADMIN; say so plainly instead of failing on the first netlink call. */
function requireNetAdmin(): void {
  const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  if ((BigInt(`0x${effective}`) >> BigInt(CAP_NET_ADMIN)) & 1n) return;
  throw new OptionsError('kubenft needs CAP_NET_ADMIN to program the kernel: run it as root or give it NET_ADMIN (see deploy/kubenft.yaml)');
}

function dataplaneFor(options: AgentOptions, iptables = new IptablesBackend({ backend: options.iptablesBackend })): Dataplane {
  return options.proxyMode === 'iptables' ? new IptablesDataplane(iptables) : new NftablesDataplane(new NftablesBackend());
}

/** The dataplanes beside the proxy's rules that the options turn on. */
function stateDataplanesFor(options: AgentOptions, log: Logger): StateDataplane[] {
  const dataplanes: StateDataplane[] = [];
  if (options.dns.addresses.length > 0) dataplanes.push(new DnsDataplane(options.dns, log));
  if (options.socketLb) {
    if (options.proxyMode !== 'nftables') throw new OptionsError('--socket-lb works in the nftables mode (--proxy-mode=nftables)');
    dataplanes.push(new SocketLbDataplane({ cgroup: options.socketLbCgroup, hostOnly: options.socketLbHostOnly, pinDir: options.socketLbPinDir }, log));
  }
  if (options.ingress.enabled) dataplanes.push(new IngressDataplane(options.ingress, log, options.manifests ? undefined : { kubeconfig: options.kubeconfig, master: options.master }));
  return dataplanes;
}

/** An agent holding what the manifests or the API hold now (with the ingress kinds, when asked); its sync runner is stopped, so nothing reaches the kernel. */
async function plannedAgent(options: AgentOptions, log: Logger, withIngress = false): Promise<Agent> {
  const agent = new Agent(options, dataplaneFor(options), log);
  agent.runner.stop();
  if (withIngress) registerIngressKinds(agent.state);
  if (options.manifests) {
    await new ManifestSource(options.manifests, agent.handler(), agent.state.kinds).start(false);
  } else {
    const source = await kubernetesSource(options, agent);
    await source.start();
    await agent.whenSynced();
    await source.stop();
  }
  return agent;
}

/** Prints what would be loaded, from the manifests alone, touching nothing. */
async function render(options: AgentOptions, log: Logger): Promise<number> {
  if (!options.manifests) throw new OptionsError('render needs --manifests PATH');
  const agent = await plannedAgent(options, log);
  const views = allServicePortViews(agent.state);
  const config = agent.proxyConfig();
  if (options.proxyMode === 'iptables') {
    for (const family of [4, 6] as const) process.stdout.write(`# ${family === 4 ? 'iptables' : 'ip6tables'}-restore --noflush\n${iptablesRestoreInput(planIptables(views, config, family))}`);
  } else {
    const ruleset = planRuleset(views, config);
    process.stdout.write(options.json ? `${JSON.stringify(rulesetJson(ruleset))}\n` : rulesetText(ruleset));
  }
  return agent.rejected.size > 0 || agent.skippedInputs > 0 ? 1 : 0;
}

/** What the manifests or the API would plan now, for the marks of `services`; nothing is synced. */
async function plannedState(options: AgentOptions, log: Logger): Promise<PlannedState | undefined> {
  if (!options.manifests && !options.kubeconfig) return undefined;
  const agent = await plannedAgent(options, log, options.ingress.enabled);
  const config = agent.proxyConfig();
  const ingress = options.ingress.enabled ? planIngress(ingressPlanInput(agent.state, config, options.ingress.className)) : undefined;
  return { views: allServicePortViews(agent.state), config, ...(ingress ? { ingress: { problems: ingress.problems, missingSecrets: ingress.missingSecrets } } : {}) };
}

/** services and explain: what the kernel holds, read back; they change nothing. */
async function inspect(options: AgentOptions, log: Logger): Promise<number> {
  const print = (report: object, text: string) => process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : text);
  const target = { mode: options.proxyMode, tableName: DEFAULT_PROXY_CONFIG.tableName, iptablesBackend: options.iptablesBackend, socketLbPinDir: netnsPinDir(options.socketLbPinDir) };
  if (options.command === 'services') {
    const report = await servicesReport(target, options.inspect.service, await plannedState(options, log));
    print(report, servicesText(report));
    return 0;
  }
  const { from, to, protocol, via } = options.inspect;
  const report = await explainReport(target, { from: from!, to: to!, protocol, via });
  print(report, explainText(report));
  return 0;
}

/** Removes what kubenft (or kube-proxy) loaded in either mode, as kube-proxy --cleanup does. */
async function cleanup(log: Logger, options: AgentOptions): Promise<number> {
  const steps: [string, () => unknown][] = [
    ['the socket LB pins', () => cleanupSocketLb(options.socketLbPinDir)],
    ['the nftables rules', async () => logRemoved({ removed: (await new NftablesBackend().cleanup()).map((table) => `nftables table ${table}`), kept: [] }, log)],
    // kubenft's iptables mode's chains are kube-proxy's: this removes both.
    ['the iptables rules and kube-proxy\'s leftovers', async () => logRemoved(await removeKubeProxyLeftovers(new IptablesBackend({ backend: 'auto' }), false, log), log)],
    ['the cluster DNS interface and rules', () => cleanUpDnsNetwork()],
  ];
  let failed = 0;
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (error) {
      failed++;
      log.error(`cleanup of ${what} failed: ${(error as Error).message}`);
    }
  }
  return failed > 0 ? 1 : 0;
}

async function syncOnce(agent: Agent, options: AgentOptions): Promise<number> {
  // One sync, this one: the runner would start another as the source reports its objects.
  agent.runner.stop();
  const source = new ManifestSource(options.manifests!, agent.handler(), agent.state.kinds);
  await source.start(false);
  const report = await agent.sync(true);
  const { services, endpoints, split } = report;
  process.stdout.write(`${JSON.stringify({ mode: options.proxyMode, services, endpoints, syncMs: Math.round(report.ms * 100) / 100, firstLists: agent.firstLists, split })}\n`);
  await agent.stop();
  return agent.rejected.size > 0 || agent.skippedInputs > 0 ? 1 : 0;
}

/** client-node is large: it is loaded only when the API is the source, so manifest runs start fast. */
async function kubernetesSource(options: AgentOptions, agent: Agent) {
  const { KubernetesSource } = await import('./source/kubernetes.js');
  return new KubernetesSource({
    kubeconfig: options.kubeconfig, master: options.master, nodeName: agent.state.nodeName,
    qps: options.kubeApiQps, burst: options.kubeApiBurst,
    clusterDNS: options.dns.addresses.length > 0,
    headlessEndpoints: options.ingress.enabled,
    kinds: agent.state.kinds,
  }, agent.handler());
}

/** The long-running agent: source → state → sync loop, with health and metrics, until SIGTERM. */
async function run(agent: Agent, options: AgentOptions, log: Logger): Promise<number> {
  const servers = [];
  if (options.healthzBindAddress !== '') servers.push(await startHealthServer(options.healthzBindAddress, agent.health, () => agent.notReady()));
  if (options.metricsBindAddress !== '') servers.push(await startMetricsServer(options.metricsBindAddress, agent.metrics, { healthz: agent.health, proxyMode: options.proxyMode, configz: configz(options) }));
  const source = options.manifests ? new ManifestSource(options.manifests, agent.handler(), agent.state.kinds) : await kubernetesSource(options, agent);
  await (source instanceof ManifestSource ? source.start(true) : source.start());
  log.info({ mode: options.proxyMode, node: agent.state.nodeName, source: options.manifests ?? 'kubernetes' }, 'kubenft started');
  await agent.whenSynced();
  agent.start();
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  // Like kube-proxy, stopping leaves the rules in place: traffic keeps flowing until a new agent
  // adopts them. Only --cleanup removes them.
  log.info('stopping; the loaded rules stay in place');
  await source.stop();
  await agent.stop();
  await Promise.all(servers.map((server) => server.close()));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  // A reader that stops early (`| head`) closes stdout: the command still finishes its work (a
  // --once sync, the agent's shutdown) and exits as it would; what it would still print goes nowhere.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  if (options.command === 'help') {
    process.stdout.write(helpText());
    return 0;
  }
  if (options.command === 'version') {
    process.stdout.write(`kubenft ${VERSION}\n`);
    return 0;
  }
  if (options.writeConfigTo) {
    writeFileSync(options.writeConfigTo, kubeProxyConfigurationYAML(options));
    return 0;
  }
  // The capability first: without it, the manifests' own permission error would hide the cause.
  if (options.command !== 'render') requireNetAdmin();
  // A manifests path that cannot be read fails here, before anything reaches the kernel: read as
  // empty, it would have emptied the node's rules.
  if (options.manifests && !options.cleanup) {
    await manifestFiles(options.manifests).catch((error: Error) => {
      throw new OptionsError(`--manifests ${error.message}`);
    });
  }
  const log = createLogger(options.logFormat, options.verbosity);
  if (options.command === 'render') return render(options, log);
  if (options.command === 'services' || options.command === 'explain') return inspect(options, log);
  // Before anything of this namespace's state is touched: one agent, --once or --cleanup at a time.
  if (options.cleanup) {
    await claimNetns('--cleanup');
    return cleanup(log, options);
  }
  if (!options.once) {
    // kube-proxy's node setup, before anything is programmed; all that --init-only does.
    applyNodeSetup(options, log);
    if (options.initOnly) return 0;
    applyOomScoreAdj(options.oomScoreAdj, log);
  }
  if (options.once && !options.manifests) throw new OptionsError('--once needs --manifests PATH');
  await claimNetns(options.once ? '--once' : 'agent');
  if (!options.socketLb) removeLeftoverSocketLb(options.socketLbPinDir, log);
  const iptables = new IptablesBackend({ backend: options.iptablesBackend });
  const leftovers = new LeftoverRemoval(options.proxyMode, iptables, log);
  const agent = new Agent(options, dataplaneFor(options, iptables), log, [...stateDataplanesFor(options, log), leftovers]);
  return options.once ? syncOnce(agent, options) : run(agent, options, log);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`kubenft: ${error.message}\n`);
    process.exit(error instanceof OptionsError ? 2 : 1);
  },
);
