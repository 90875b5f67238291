import type { Logger } from 'pino';
import type { ServiceSteering, StateChanges, StateDataplane } from '../capability.js';
import { ClusterState, type KubeObject } from '../cluster/cluster-state.js';
import { featureEnabled } from '../cluster/feature-gates.js';
import { ObjectError } from '../cluster/model.js';
import type { SourceHandler } from '../cluster/kubernetes.js';
import { type Dataplane, type DriftWatch, type ProxyConfig, type ServicesSettings, type SyncSplit, services } from '../services/index.js';
import { ProxyHealth } from './healthz.js';
import { nodeNameOf } from './node-name.js';
import { ProxyMetrics } from './metrics.js';
import { SyncRunner } from './sync-runner.js';

// The node agent: the state fed by a source, a rate-limited sync loop that turns it into one
// kernel transaction per sync (partial when only some services changed), and the health and
// metrics that tell an operator whether it keeps up. A failed sync keeps the last good ruleset
// loaded (the kernel applies a batch atomically) and makes the next sync a full one.

const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

const objectId = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;


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

/** What the agent reads of the options: its sync loop's and health's settings, and the Service proxy's. */
export interface AgentSettings extends ServicesSettings {
  /** Trimmed and lower-cased, as kube-proxy does: it names a Node. */
  hostnameOverride?: string;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  /** host:port; '' disables the health server (and the HealthCheckNodePort servers). */
  healthzBindAddress: string;
  /** --feature-gates as given (names checked against kube-proxy's table). */
  featureGates?: Record<string, boolean>;
}

/**
 * The periodic sync (every --iptables-sync-period) is a full one only this often, as upstream's
 * FullSyncPeriod: partial syncs and drift repair keep the kernel right in between, and a full sync
 * of 100k services costs seconds of CPU.
 */
export const FULL_SYNC_PERIOD_MS = 60 * 60_000;

export class Agent {
  readonly state: ClusterState;
  readonly metrics = new ProxyMetrics();
  readonly health: ProxyHealth;
  /** The Service proxy's HealthCheckNodePort servers, opened with the health server (--healthz-bind-address). */
  private readonly healthCheckPorts: ReturnType<typeof services.healthCheckPorts> | undefined;
  private readonly followUp: ReturnType<typeof services.followUp>;
  readonly runner: SyncRunner;
  private previousSync: Promise<unknown> = Promise.resolve();
  /** Objects the last reads rejected, by kind/namespace/name. */
  readonly rejected = new Map<string, ObjectError>();
  /** Manifest documents, List items and files that could not be read at all, since the start. */
  skippedInputs = 0;
  private needFullSync = true;
  private lastFullSyncAt = -Infinity;
  private lastConfig = '';
  private readonly triggerTimes: number[] = [];
  private synced = false;
  private pendingChanges = { services: 0, endpoints: 0 };
  private drift: DriftWatch | undefined;
  private lastDriftError: string | undefined;
  private readonly syncedWaiters: (() => void)[] = [];
  readonly firstLists: FirstLists = { listedAtMs: 0, stateMs: 0 };

  /** Dataplanes whose last update failed: their next update is a full one. */
  private readonly stateDataplanesBehind = new Set<StateDataplane>();

  constructor(
    private readonly options: AgentSettings,
    private readonly dataplane: Dataplane,
    private readonly log: Logger,
    private readonly stateDataplanes: StateDataplane[] = [],
    /** The Service traffic a capability takes over (the ingress proxy's, with --ingress-service). */
    private readonly steering?: ServiceSteering,
  ) {
    this.state = new ClusterState(nodeNameOf(options), featureEnabled(options.featureGates ?? {}, 'PreferSameTrafficDistribution'));
    this.health = new ProxyHealth({ healthTimeoutMs: 2 * options.syncPeriodMs, metrics: this.metrics });
    this.healthCheckPorts = options.healthzBindAddress === '' ? undefined : services.healthCheckPorts(this.health);
    this.followUp = services.followUp(this.metrics, this.healthCheckPorts, log);
    this.runner = new SyncRunner((reason) => this.syncSafely(reason === 'periodic'), {
      minIntervalMs: options.minSyncPeriodMs,
      maxIntervalMs: options.syncPeriodMs,
    });
    for (const stateDataplane of stateDataplanes) {
      if (stateDataplane.watch) this.state.watch(stateDataplane.watch);
      stateDataplane.attach(this.state, this.metrics.registry);
    }
  }

  /** What the Service proxy's planners need, from the options and what the Node object says about this node. */
  proxyConfig(): ProxyConfig {
    return services.config(this.options, this.state, this.steering);
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
      await this.followUp.run(this.state, config, result.kind === 'full' ? 'full' : changes.services);
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
    await this.healthCheckPorts?.close();
    for (const stateDataplane of this.stateDataplanes) await stateDataplane.stop();
  }
}
