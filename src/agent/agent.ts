import { networkInterfaces, hostname } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { DEFAULT_PROXY_CONFIG, type IngressSteering, type ProxyConfig } from '../services/config.js';
import { type ConntrackFilter, deleteFlows } from '../kernel/conntrack.js';
import { splitHostPort } from '../kernel/addresses.js';
import type { AgentOptions } from '../cli/options.js';
import { ClusterState, type KubeObject } from '../cluster/cluster-state.js';
import { ObjectError } from '../cluster/model.js';
import { servicePortViews } from '../cluster/service-ports.js';
import { categorizeEndpoints } from '../cluster/topology.js';
import type { SourceHandler } from '../cluster/kubernetes.js';
import type { Dataplane, SyncSplit } from '../services/dataplane.js';
import type { StateChanges, StateDataplane } from '../capability.js';
import type { DriftWatch } from '../services/drift.js';
import { type HealthCheckService, ProxyHealth, ServiceHealthServers } from './healthz.js';
import { nodePortsOnIPv4Loopback } from '../services/node-setup.js';
import { ProxyMetrics } from './metrics.js';
import { SyncRunner } from './sync-runner.js';
import { UdpFlowTracker } from '../services/udp-flows.js';

// The node agent: the state fed by a source, a rate-limited sync loop that turns it into one
// kernel transaction per sync (partial when only some services changed), and the health and
// metrics that tell an operator whether it keeps up. A failed sync keeps the last good ruleset
// loaded (the kernel applies a batch atomically) and makes the next sync a full one.

const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

const objectId = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

export interface SyncReport {
  kind: 'full' | 'partial';
  ms: number;
  services: number;
  endpoints: number;
  /** Where the sync's time went, with the kernel's share. */
  split?: SyncSplit & { kernelMs: number };
}

/** A start-up's first lists: when the last source had listed, and how long the state took to take them in. */
export interface FirstLists {
  /** Milliseconds since the process started (performance.now()); 0 until every source has listed. */
  listedAtMs: number;
  /** Validating and storing the listed objects, a part of listedAtMs. */
  stateMs: number;
}

export function nodeNameOf(options: AgentOptions): string {
  return (options.hostnameOverride ?? hostname()).trim().toLowerCase();
}

/** NodePorts on IPv4 loopback also need net.ipv4.conf.all.route_localnet=1, which the node setup sets. */
const LOOPBACK_CIDRS = ['127.0.0.0/8', '::1/128'];
/**
 * The periodic sync (every --iptables-sync-period) is a full one only this often, as upstream's
 * FullSyncPeriod: partial syncs and drift repair keep the kernel right in between, and a full sync
 * of 100k services costs seconds of CPU.
 */
export const FULL_SYNC_PERIOD_MS = 60 * 60_000;

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

export class Agent {
  readonly state: ClusterState;
  readonly metrics = new ProxyMetrics();
  readonly health: ProxyHealth;
  readonly serviceHealth: ServiceHealthServers;
  readonly runner: SyncRunner;
  private previousSync: Promise<unknown> = Promise.resolve();
  /** Objects the last reads rejected, by kind/namespace/name. */
  readonly rejected = new Map<string, ObjectError>();
  /** Manifest documents, List items and files that could not be read at all, since the start. */
  skippedInputs = 0;
  private needFullSync = true;
  private lastFullSyncAt = -Infinity;
  private lastConfig = '';
  private readonly udpFlows = new UdpFlowTracker();
  private readonly triggerTimes: number[] = [];
  private synced = false;
  private hadGoodSync = false;
  private pendingChanges = { services: 0, endpoints: 0 };
  private drift: DriftWatch | undefined;
  private lastDriftError: string | undefined;
  /** What afterSync derived for each service, kept so a partial sync recomputes only its changes. */
  private readonly perService = new Map<string, { internalWithoutLocal: number; externalWithoutLocal: number; healthCheck?: HealthCheckService }>();
  private readonly syncedWaiters: (() => void)[] = [];
  readonly firstLists: FirstLists = { listedAtMs: 0, stateMs: 0 };

  /** Dataplanes whose last update failed: their next update is a full one. */
  private readonly stateDataplanesBehind = new Set<StateDataplane>();

  constructor(
    private readonly options: AgentOptions,
    private readonly dataplane: Dataplane,
    private readonly log: Logger,
    private readonly stateDataplanes: StateDataplane[] = [],
  ) {
    this.state = new ClusterState(nodeNameOf(options));
    this.health = new ProxyHealth({ healthTimeoutMs: 2 * options.syncPeriodMs, metrics: this.metrics });
    this.serviceHealth = new ServiceHealthServers({ health: this.health });
    this.runner = new SyncRunner((reason) => this.syncSafely(reason === 'periodic'), {
      minIntervalMs: options.minSyncPeriodMs,
      maxIntervalMs: options.syncPeriodMs,
    });
    for (const stateDataplane of stateDataplanes) stateDataplane.attach(this.state, this.metrics.registry);
  }

  /** What the planners need, from the options and what the Node object says about this node. */
  proxyConfig(): ProxyConfig {
    const { options } = this;
    const node = this.state.node;
    const nodeIPs = nodeIPsWith(options.bindAddress, node?.addresses ?? []);
    const wanted = options.nodePortAddresses.length > 0 ? options.nodePortAddresses : ['primary'];
    // No addresses means every local address (`fib daddr type local`): what 'all' asks for, and
    // the fallback while the Node object (and so 'primary') is unknown.
    const nodePortAddresses = wanted.includes('all') ? [] : [...new Set(wanted.flatMap((entry) => {
      if (entry === 'primary') return nodeIPs;
      return localAddressesIn(entry === 'localhost' ? LOOPBACK_CIDRS : [entry]);
    }))];
    return {
      ...DEFAULT_PROXY_CONFIG,
      nodeName: this.state.nodeName,
      zone: node?.zone,
      localCIDRs: options.detectLocalMode === 'NodeCIDR' ? node?.podCIDRs ?? [] : options.clusterCIDRs,
      detectLocalMode: options.detectLocalMode,
      masqueradeAll: options.masqueradeAll,
      masqueradeBit: options.masqueradeBit,
      serviceCIDRs: options.serviceCIDRs,
      serviceTables: options.serviceTables,
      nodePortAddresses,
      nodeIPs,
      nodePortsOnLoopback: nodePortsOnIPv4Loopback(options.nodePortAddresses),
      ingressSteering: this.ingressSteering(),
    };
  }

  /** --ingress-service: the ingress Service's addresses go to the proxy's listeners. */
  private ingressSteering(): IngressSteering | undefined {
    const { enabled, service, httpAddress, httpsAddress } = this.options.ingress;
    if (!enabled || !service) return undefined;
    const listeners = [httpAddress, httpsAddress].flatMap((text) => (text ? [splitHostPort(text)] : [])).map(({ host, port }) => ({ address: host, port }));
    return { service, listeners };
  }

  /** The source's callbacks: every change is tracked and asks the runner for a sync. */
  handler(): SourceHandler {
    const queue = (object: KubeObject) => {
      // kube-proxy counts Service changes and endpoint changes apart; Node changes are neither.
      const services = object.kind === 'Service' ? 1 : 0;
      const endpoints = object.kind === 'EndpointSlice' || object.kind === 'Endpoints' ? 1 : 0;
      this.pendingChanges.services += services;
      this.pendingChanges.endpoints += endpoints;
      this.metrics.addChanges(services, endpoints);
      this.metrics.setPending(this.pendingChanges.services, this.pendingChanges.endpoints);
      this.health.queued();
      this.metrics.recordQueued();
      this.runner.run();
    };
    return {
      apply: (object: KubeObject) => {
        const id = objectId(object);
        const started = this.synced ? 0 : performance.now();
        try {
          this.state.apply(object);
          this.rejected.delete(id);
          this.noteTriggerTime(object);
        } catch (error) {
          if (!(error instanceof ObjectError)) throw error;
          this.rejected.set(id, error);
          this.log.error({ kind: error.kind, namespace: error.namespace, name: error.objectName }, `skipped ${error.message}`);
          return;
        } finally {
          if (!this.synced) this.firstLists.stateMs += performance.now() - started;
        }
        queue(object);
      },
      delete: (object: KubeObject) => {
        this.state.delete(object);
        this.rejected.delete(objectId(object));
        queue(object);
      },
      synced: () => {
        if (!this.synced) {
          this.firstLists.listedAtMs = performance.now();
          this.log.info({ ...this.firstLists, services: this.state.services.size, endpoints: this.state.endpointCount }, 'every source has listed');
        }
        this.synced = true;
        for (const resolve of this.syncedWaiters.splice(0)) resolve();
      },
      problem: (message: string) => this.log.warn(message),
      skipped: (message: string) => {
        this.skippedInputs++;
        this.metrics.recordSkippedInput();
        this.log.error(`skipped ${message}`);
      },
    };
  }

  /** What keeps the node from serving everything it is asked to (for /readyz): the rules' health, then each dataplane's. */
  notReady(): string[] {
    const reasons = this.health.healthy() ? [] : ['the proxy\'s rules are not synced (see /healthz)'];
    for (const stateDataplane of this.stateDataplanes) {
      const reason = stateDataplane.notReady?.();
      if (reason !== undefined) reasons.push(`${stateDataplane.name}: ${reason}`);
    }
    return reasons;
  }

  whenSynced(): Promise<void> {
    return this.synced ? Promise.resolve() : new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  private noteTriggerTime(object: KubeObject): void {
    const annotations = object.metadata?.annotations as Record<string, string> | undefined;
    const trigger = Date.parse(annotations?.[TRIGGER_TIME_ANNOTATION] ?? '');
    if (object.kind === 'EndpointSlice' && Number.isFinite(trigger)) this.triggerTimes.push(trigger);
  }

  /**
   * One sync; throws on failure after recording it (the caller decides what a failure means).
   * Syncs never overlap, whoever asks (the runner, `--once`): each reads what is loaded (the
   * tables that exist, the proxier's record) before it writes, which a concurrent one would change.
   */
  sync(forceFull = false): Promise<SyncReport> {
    const report = this.previousSync.then(() => this.syncAlone(forceFull));
    this.previousSync = report.catch(() => undefined);
    return report;
  }

  private async syncAlone(forceFull: boolean): Promise<SyncReport> {
    const started = performance.now();
    const changes = this.state.takeChanges();
    const config = this.proxyConfig();
    const configText = JSON.stringify(config);
    const full = forceFull || this.needFullSync || changes.nodeLabelsChanged || configText !== this.lastConfig;
    this.pendingChanges = { services: 0, endpoints: 0 };
    this.metrics.setPending(0, 0);
    try {
      const result = await this.dataplane.sync(this.state, config, full ? 'full' : changes.services);
      if (result.kind === 'full') this.lastFullSyncAt = performance.now();
      this.needFullSync = false;
      this.lastConfig = configText;
      const ms = performance.now() - started;
      this.metrics.recordSync(result.kind, ms / 1000, result.kernelMs / 1000);
      this.health.updated();
      const split = result.split && { ...result.split, kernelMs: result.kernelMs };
      const report: SyncReport = { kind: result.kind, ms, services: this.state.services.size, endpoints: this.state.endpointCount, split };
      this.metrics.setSize(report.services, report.endpoints);
      for (const trigger of this.triggerTimes.splice(0)) this.metrics.observeNetworkProgramming((Date.now() - trigger) / 1000);
      await this.afterSync(config, result.kind === 'full' ? 'full' : changes.services);
      await this.updateStateDataplanes({ services: result.kind === 'full' ? 'full' : changes.services, kinds: changes.kinds });
      return report;
    } catch (error) {
      this.needFullSync = true;
      this.dataplane.invalidate();
      this.metrics.recordSyncFailure(this.dataplane.mode);
      throw error;
    }
  }

  /** Each dataplane beside the rules gets the synced state; a failure stays its own. */
  private async updateStateDataplanes(changes: StateChanges): Promise<void> {
    for (const stateDataplane of this.stateDataplanes) {
      const behind = this.stateDataplanesBehind.has(stateDataplane);
      try {
        await stateDataplane.update(this.state, behind ? { ...changes, services: 'full' } : changes);
        this.stateDataplanesBehind.delete(stateDataplane);
      } catch (error) {
        this.stateDataplanesBehind.add(stateDataplane);
        this.metrics.recordStateDataplaneFailure(stateDataplane.name);
        this.log.error({ err: error, dataplane: stateDataplane.name }, `${stateDataplane.name} update failed, it keeps its previous state: ${(error as Error).message}`);
      }
    }
  }

  private async syncSafely(periodic: boolean): Promise<void> {
    try {
      const report = await this.sync(periodic && performance.now() - this.lastFullSyncAt >= FULL_SYNC_PERIOD_MS);
      this.log.info(report, 'synced');
    } catch (error) {
      this.log.error({ err: error }, `sync failed, the previous ruleset stays loaded: ${(error as Error).message}`);
      // Retry soon rather than waiting for the next change or the periodic sync.
      setTimeout(() => this.runner.run(), this.options.minSyncPeriodMs).unref();
    }
  }

  /**
   * Conntrack cleanup, health-check ports and no-local-endpoint gauges: what follows a good sync.
   * Like the sync itself, it visits only the changed services, except after a full sync.
   */
  private async afterSync(config: ProxyConfig, changed: Set<string> | 'full'): Promise<void> {
    const keys = changed === 'full' ? new Set([...this.state.services.keys(), ...this.perService.keys(), ...this.udpFlows.services()]) : changed;
    const stale: ConntrackFilter[] = [];
    for (const key of keys) {
      const views = servicePortViews(this.state, key);
      stale.push(...this.udpFlows.staleFlows(key, views, config));
      if (views.length === 0) {
        this.perService.delete(key);
        continue;
      }
      const categories = views.map((view) => categorizeEndpoints(view, config));
      const { service } = views[0];
      const localEndpoints = Math.max(...categories.map((category) => category.local.length));
      this.perService.set(key, {
        internalWithoutLocal: views.filter((view, index) => view.service.internalTrafficPolicyLocal && categories[index].local.length === 0).length,
        externalWithoutLocal: views.filter((view, index) => view.service.externalTrafficPolicyLocal && categories[index].local.length === 0).length,
        healthCheck: service.healthCheckNodePort !== undefined && service.externalTrafficPolicyLocal
          ? { namespace: service.namespace, name: service.name, healthCheckNodePort: service.healthCheckNodePort, localEndpoints }
          : undefined,
      });
    }
    const all = [...this.perService.values()];
    this.metrics.setNoLocalEndpoints(sum(all.map((entry) => entry.internalWithoutLocal)), sum(all.map((entry) => entry.externalWithoutLocal)));
    if (this.options.healthzBindAddress !== '') {
      const healthChecks = all.flatMap((entry) => (entry.healthCheck ? [entry.healthCheck] : []));
      for (const failure of await this.serviceHealth.sync(healthChecks)) this.log.warn(failure.message);
    }
    // At start-up every endpoint looks new; deleting flows then would only disturb live clients of a
    // restarted agent, whose rules never stopped serving.
    if (!this.hadGoodSync) {
      this.hadGoodSync = true;
      return;
    }
    let deleted = 0;
    for (const filter of stale) {
      try {
        deleted += await deleteFlows(filter);
      } catch (error) {
        this.log.warn((error as Error).message);
      }
    }
    if (deleted > 0) this.metrics.recordConntrackDeletions(deleted);
  }

  start(): void {
    this.runner.start();
    this.drift = this.dataplane.watchDrift?.(
      (differences) => {
        this.log.warn({ differences }, 'kubenft\'s rules were changed by someone else; restoring them');
        this.metrics.recordDriftRepair();
        this.needFullSync = true;
        this.health.queued();
        this.runner.run();
      },
      (error) => {
        this.metrics.recordDriftCheckFailure();
        // Every 250 ms while it lasts: a warning when the failure changes, the rest in the metric.
        const repeated = error.message === this.lastDriftError;
        this.lastDriftError = error.message;
        if (repeated) this.log.debug(`drift check failed again: ${error.message}`);
        else this.log.warn({ err: error }, `drift check failed, so changes to kubenft's rules by others go unnoticed meanwhile: ${error.message}`);
      },
    );
  }

  async stop(): Promise<void> {
    this.drift?.stop();
    this.runner.stop();
    await this.serviceHealth.close();
    for (const stateDataplane of this.stateDataplanes) await stateDataplane.stop();
  }
}
