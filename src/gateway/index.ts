import type { Capability } from '../capability.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { GATEWAY_WATCH, GatewayDataplane, type GatewaySettings, gatewayPlanInput } from './dataplane.js';
import { planGateways } from './plan.js';

export type { GatewaySettings } from './dataplane.js';

/** What the Gateways and HTTPRoutes in the state would be served as: problems, and where each host and match leads (`kubenft services`). */
function plannedGateways(state: ClusterState, settings: GatewaySettings) {
  const plan = planGateways(gatewayPlanInput(state, settings));
  return { problems: plan.problems.map((problem) => `${problem.object}: ${problem.reason}`), routes: plan.origins };
}

/** The Gateway API controller (--gateway): the proxy on every node serves the GatewayClass's Gateways and their HTTPRoutes. */
export const gateway = {
  name: 'gateway',
  settingsKey: 'gateway',
  enabled: (settings: GatewaySettings) => settings.enabled,
  watch: GATEWAY_WATCH,
  start: (settings: GatewaySettings, { log, api }) => new GatewayDataplane(settings, log, api),
  /** Its part of `kubenft services`. */
  view: { planned: plannedGateways },
} satisfies Capability<GatewaySettings>;
