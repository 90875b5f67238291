import type { Logger } from 'pino';
import type { ClusterState } from '../cluster/cluster-state.js';
import { servicePortViews } from '../cluster/service-ports.js';
import { categorizeEndpoints } from '../cluster/topology.js';
import { type ConntrackFilter, deleteFlows } from '../kernel/conntrack.js';
import type { ProxyConfig } from './config.js';
import type { HealthCheckService, ServiceHealthServers } from './health-check-ports.js';
import { UdpFlowTracker } from './udp-flows.js';

// What follows a good sync of the Service proxy's rules, as in kube-proxy: stale UDP conntrack
// entries deleted, the HealthCheckNodePort servers opened and closed, the no-local-endpoint gauges
// set. Like the sync itself, it visits only the changed services, except after a full sync.

/** The metrics it sets (the agent's kube-proxy metrics). */
export interface FollowUpMetrics {
  setNoLocalEndpoints(internal: number, external: number): void;
  recordConntrackDeletions(count: number): void;
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

export class SyncFollowUp {
  private readonly udpFlows = new UdpFlowTracker();
  private hadGoodSync = false;
  /** What a run derived for each service, kept so a partial sync recomputes only its changes. */
  private readonly perService = new Map<string, { internalWithoutLocal: number; externalWithoutLocal: number; healthCheck?: HealthCheckService }>();

  constructor(
    private readonly metrics: FollowUpMetrics,
    /** Undefined when the health server is off (--healthz-bind-address=""): no HealthCheckNodePort is served then. */
    private readonly healthCheckPorts: ServiceHealthServers | undefined,
    private readonly log: Logger,
  ) {}

  async run(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<void> {
    const keys = changed === 'full' ? new Set([...state.services.keys(), ...this.perService.keys(), ...this.udpFlows.services()]) : changed;
    const stale: ConntrackFilter[] = [];
    for (const key of keys) {
      const views = servicePortViews(state, key);
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
    if (this.healthCheckPorts) {
      const healthChecks = all.flatMap((entry) => (entry.healthCheck ? [entry.healthCheck] : []));
      for (const failure of await this.healthCheckPorts.sync(healthChecks)) this.log.warn(failure.message);
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
}
