import type { Logger } from 'pino';
import type { StateDataplane } from '../capability.js';
import type { ServicePortView } from '../cluster/service-ports.js';
import { rulesetJson } from '../kernel/render-json.js';
import { rulesetText } from '../kernel/render-text.js';
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from './config.js';
import { type Dataplane, IptablesDataplane, NftablesDataplane } from './dataplane.js';
import { type FollowUpMetrics, SyncFollowUp } from './follow-up.js';
import { ServiceHealthServers } from './health-check-ports.js';
import { explainReport, explainText, servicesReport, servicesText } from './inspect/commands.js';
import { IptablesBackend } from './iptables-backend.js';
import { iptablesRestoreInput, planIptables } from './iptables-plan.js';
import { LeftoverRemovalDataplane, logRemoved, removeKubeProxyLeftovers } from './kube-proxy-leftovers.js';
import { planRuleset } from './nftables-plan.js';
import { SERVICE_TABLES } from './settings.js';
import { servicesBackend } from './nftables-proxier.js';
import { proxyConfigFor } from './node-config.js';
import { applyNodeSetup, applyOomScoreAdj } from './node-setup.js';

// The Service proxy, kube-proxy's job: Services and their endpoints → nftables (or iptables)
// rules, loaded in one transaction per sync, with the follow-up a sync needs (conntrack cleanup,
// HealthCheckNodePorts) and the read-back of `kubenft services` and `explain`. Unlike the other
// capabilities it is always on and drives the agent's sync: the agent syncs it first, and the
// others only after it succeeded.

export type { ProxyConfig } from './config.js';
export type { Dataplane, SyncSplit } from './dataplane.js';
export type { DriftWatch } from './drift.js';
export type { HealthCheckService } from './health-check-ports.js';
export type { PlannedState } from './inspect/commands.js';
export type { ServicesSettings } from './node-config.js';
export type { ConntrackOptions } from './node-setup.js';

export type ProxyMode = 'nftables' | 'iptables';
export type IptablesBackendName = 'auto' | 'legacy' | 'nft';

export const services = {
  name: 'services',
  /** The table the rules are loaded in (and the chains' owner in iptables mode). */
  tableName: DEFAULT_PROXY_CONFIG.tableName,
  serviceTables: SERVICE_TABLES,
  /**
   * The dataplane of the mode chosen, and the removal (after its first good sync) of kube-proxy's
   * leftovers and of the other mode's rules.
   */
  dataplane(mode: ProxyMode, iptablesBackend: IptablesBackendName, log: Logger): { dataplane: Dataplane; leftoverRemoval: StateDataplane } {
    const iptables = new IptablesBackend({ backend: iptablesBackend });
    return {
      dataplane: mode === 'iptables' ? new IptablesDataplane(iptables) : new NftablesDataplane(),
      leftoverRemoval: new LeftoverRemovalDataplane(mode, iptables, log),
    };
  },
  /** What the planners need on this node. */
  config: proxyConfigFor,
  /** `kubenft render`: what the mode would load, as its own tool's input (nft, libnftables JSON, iptables-restore). */
  render(views: ServicePortView[], config: ProxyConfig, mode: ProxyMode, json: boolean): string {
    if (mode === 'iptables') return ([4, 6] as const).map((family) => `# ${family === 4 ? 'iptables' : 'ip6tables'}-restore --noflush\n${iptablesRestoreInput(planIptables(views, config, family))}`).join('');
    const ruleset = planRuleset(views, config);
    return json ? `${JSON.stringify(rulesetJson(ruleset))}\n` : rulesetText(ruleset);
  },
  /** kube-proxy's node setup at start (conntrack sysctls, route_localnet) and its OOM score. */
  setUpNode: applyNodeSetup,
  setOomScoreAdj: applyOomScoreAdj,
  /** The HealthCheckNodePort servers, answering from the proxy's health. */
  healthCheckPorts: (health: { healthy(): boolean }) => new ServiceHealthServers({ health }),
  /** What follows each good sync. */
  followUp: (metrics: FollowUpMetrics, healthCheckPorts: ServiceHealthServers | undefined, log: Logger) => new SyncFollowUp(metrics, healthCheckPorts, log),
  /** `kubenft services` and `kubenft explain`: the loaded rules read back. */
  view: { servicesReport, servicesText, explainReport, explainText },
  /** --cleanup removes the rules of both modes, kubenft's and kube-proxy's. */
  cleanup: [
    { what: 'the nftables rules', run: async (log: Logger) => logRemoved({ removed: (await servicesBackend().cleanup()).map((table) => `nftables table ${table}`), kept: [] }, log) },
    // kubenft's iptables mode's chains are kube-proxy's: this removes both.
    { what: 'the iptables rules and kube-proxy\'s leftovers', run: async (log: Logger) => logRemoved(await removeKubeProxyLeftovers(new IptablesBackend({ backend: 'auto' }), false, log), log) },
  ],
};
