// Every command beyond reading the options (main.ts): the agent, --once, --cleanup, render, services
// and explain. main.ts imports this file only after the options are validated and the agent's first
// lists are asked for, so nothing here (the agent, the capabilities' dataplanes, prom-client) is on
// the path from the process's start to its first API request.
import type { Logger } from 'pino';
import { OptionsError } from '../capability.js';
import { claimNetns } from '../kernel/netns-ownership.js';
import { Agent } from '../agent/agent.js';
import { capabilityCleanups, capabilitySteering, enabledWatches, removeLeftovers, startCapabilities } from '../agent/capabilities.js';
import { startHealthServer } from '../agent/healthz.js';
import { startMetricsServer } from '../agent/metrics.js';
import { type PlannedState, services } from '../services/index.js';
import { gateway } from '../gateway/index.js';
import { ingress } from '../ingress/index.js';
import { socketLb } from '../socket-lb/index.js';
import { configz } from './configz.js';
import type { AgentOptions } from './options.js';
import { apiSourceOptions } from './api-source.js';
import { createLogger } from './logging.js';
import { EarlyLists } from '../cluster/api-lists.js';
import { ManifestSource } from '../cluster/manifest-watch.js';
import { manifestFiles } from '../cluster/manifests.js';
import { allServicePortViews } from '../cluster/service-ports.js';

const dataplaneFor = (options: AgentOptions, log: Logger) => services.dataplane(options.proxyMode, options.iptablesBackend, log);

/** The agent of these options, with the capabilities they turn on. */
function agentFor(options: AgentOptions, log: Logger): Agent {
  const context = { log, proxyMode: options.proxyMode, api: options.manifests ? undefined : { kubeconfig: options.kubeconfig, master: options.master } };
  const { dataplane, leftoverRemoval } = dataplaneFor(options, log);
  return new Agent(options, dataplane, log, [...startCapabilities(options, context), leftoverRemoval], capabilitySteering(options));
}

/**
 * An agent holding what the manifests or the API hold now (with what the capabilities on read, when
 * asked); no dataplane is started and its sync runner is stopped, so nothing reaches the kernel.
 */
async function plannedAgent(options: AgentOptions, log: Logger, withCapabilities = false): Promise<Agent> {
  const agent = new Agent(options, dataplaneFor(options, log).dataplane, log, [], capabilitySteering(options));
  agent.runner.stop();
  if (withCapabilities) for (const watch of enabledWatches(options)) agent.state.watch(watch);
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
  process.stdout.write(services.render(allServicePortViews(agent.state), agent.proxyConfig(), options.proxyMode, options.json));
  return agent.rejected.size > 0 || agent.skippedInputs > 0 ? 1 : 0;
}

/** What the manifests or the API would plan now, for the marks of `services`; nothing is synced. */
async function plannedState(options: AgentOptions, log: Logger): Promise<PlannedState | undefined> {
  if (!options.manifests && !options.kubeconfig) return undefined;
  const agent = await plannedAgent(options, log, true);
  const planned: PlannedState = { views: allServicePortViews(agent.state), config: agent.proxyConfig() };
  return {
    ...planned,
    ...(ingress.enabled(options.ingress) ? { ingress: ingress.view.planned(agent.state, options.ingress) } : {}),
    ...(gateway.enabled(options.gateway) ? { gateway: await gateway.view.planned(agent.state, options.gateway, log) } : {}),
  };
}

/** services and explain: what the kernel holds, read back; they change nothing. */
async function inspect(options: AgentOptions, log: Logger): Promise<number> {
  const print = (report: object, text: string) => process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : text);
  const target = { mode: options.proxyMode, tableName: services.tableName, iptablesBackend: options.iptablesBackend, socketLbPinDir: socketLb.view.pinDir(options.socketLb.pinDir) };
  if (options.command === 'services') {
    const report = await services.view.servicesReport(target, options.inspect.service, await plannedState(options, log));
    print(report, services.view.servicesText(report));
    return 0;
  }
  if (options.inspect.url !== undefined) {
    if (!options.manifests && !options.kubeconfig) throw new OptionsError('explain --url plans from --manifests or --kubeconfig');
    const agent = await plannedAgent(options, log, true);
    if (options.ingress.enabled) {
      const explanation = ingress.view.explainUrl(agent.state, options.ingress, options.inspect.url);
      print(explanation, ingress.view.explanationText(explanation));
    } else {
      const explanation = await gateway.view.explainUrl(agent.state, options.gateway, log, options.inspect.url);
      print(explanation, gateway.view.explanationText(explanation));
    }
    return 0;
  }
  const { from, to, protocol, via } = options.inspect;
  const report = await services.view.explainReport(target, { from: from!, to: to!, protocol, via });
  print(report, services.view.explainText(report));
  return 0;
}

/** Removes what kubenft (or kube-proxy) loaded in either mode, as kube-proxy --cleanup does. */
async function cleanup(log: Logger, options: AgentOptions): Promise<number> {
  const steps = [...capabilityCleanups(options), ...services.cleanup];
  let failed = 0;
  for (const { what, run } of steps) {
    try {
      await run(log);
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

/**
 * client-node is large: it is loaded only when the API is the source, so manifest runs start fast,
 * and after the first lists are asked for (by main.ts for the agent, here for `services` and
 * `explain`), so that the API server builds them while it loads.
 */
async function kubernetesSource(options: AgentOptions, agent: Agent, earlyLists?: EarlyLists) {
  const sourceOptions = apiSourceOptions(options, agent.state.nodeName, agent.state.watches);
  const lists = earlyLists ?? EarlyLists.start(sourceOptions);
  const { KubernetesSource } = await import('../cluster/kubernetes.js');
  return new KubernetesSource({ ...sourceOptions, earlyLists: lists }, agent.handler());
}

/** The long-running agent: source → state → sync loop, with health and metrics, until SIGTERM. */
async function run(agent: Agent, options: AgentOptions, log: Logger, earlyLists: EarlyLists | undefined): Promise<number> {
  const servers = [];
  if (options.healthzBindAddress !== '') servers.push(await startHealthServer(options.healthzBindAddress, agent.health, () => agent.notReady()));
  if (options.metricsBindAddress !== '') servers.push(await startMetricsServer(options.metricsBindAddress, agent.metrics, { healthz: agent.health, proxyMode: options.proxyMode, configz: configz(options) }));
  const source = options.manifests ? new ManifestSource(options.manifests, agent.handler(), agent.state.kinds) : await kubernetesSource(options, agent, earlyLists);
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

/**
 * Every command, once main.ts has read the options, refused what they cannot do and, for the agent
 * reading the API, asked for its first lists (`earlyLists`).
 */
export async function runCommand(options: AgentOptions, earlyLists: EarlyLists | undefined): Promise<number> {
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
    services.setUpNode(options, log);
    if (options.initOnly) return 0;
    services.setOomScoreAdj(options.oomScoreAdj, log);
  }
  if (options.once && !options.manifests) throw new OptionsError('--once needs --manifests PATH');
  await claimNetns(options.once ? '--once' : 'agent');
  removeLeftovers(options, log);
  const agent = agentFor(options, log);
  return options.once ? syncOnce(agent, options) : run(agent, options, log, earlyLists);
}
