import { OptionsError, type Capability } from '../capability.js';
import { gatewaySettings } from './settings.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { Router, cleanupHaproxy, routingHost } from '../ingress/index.js';
import type { Logger } from 'pino';
import { GATEWAY_WATCH, GatewayDataplane, type GatewaySettings, HAPROXY_LISTENERS, gatewayPlanInput, judgedExpressions } from './dataplane.js';
import { type RouteOrigin, planGateways } from './plan.js';
import type { PathRoute } from '../ingress/index.js';

export type { GatewaySettings } from './dataplane.js';

/** What the Gateways and HTTPRoutes in the state would be served as: problems, and where each host and match leads (`kubenft services`). */
async function plannedGateways(state: ClusterState, settings: GatewaySettings, log: Logger) {
  const plan = planGateways(gatewayPlanInput(state, settings, await judgedExpressions(state, settings, log)));
  return { problems: plan.problems.map((problem) => `${problem.object}: ${problem.reason}`), routes: plan.origins() };
}

export interface GatewayExplanation {
  method: string;
  url: string;
  /** Where it goes; undefined: no route (404). */
  origin?: RouteOrigin;
  /** What answers: a redirect, a 500 for an unresolved backend, or the backend and its endpoints. */
  outcome: string;
}

/** Where a request reaches through the Gateways (`kubenft explain --url`): the Gateway, listener, HTTPRoute and rule, and what answers. */
async function explainUrl(state: ClusterState, settings: GatewaySettings, log: Logger, text: string, method = 'GET'): Promise<GatewayExplanation> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OptionsError(`--url ${JSON.stringify(text)} is not a URL (http://HOST/PATH)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OptionsError(`--url ${JSON.stringify(text)}: http or https only`);
  const plan = planGateways(gatewayPlanInput(state, settings, await judgedExpressions(state, settings, log)));
  const router = new Router(url.protocol === 'https:' ? plan.https : plan.http);
  const match = router.match(routingHost(url.host), url.pathname, { method, query: url.search, header: () => undefined });
  if (match.kind === 'none') return { method, url: text, outcome: '404: no route matches' };
  const origin = plan.originOf(match.route as PathRoute);
  const actions = (match.route as { actions?: { redirect?: { statusCode: number } } }).actions;
  const outcome = actions?.redirect ? `${actions.redirect.statusCode} redirect`
    : match.backend === undefined ? '500: the backend cannot be resolved'
      : `backend ${match.backend}: ${match.endpoints.length ? match.endpoints.join(', ') : 'no ready endpoint (503)'}`;
  return { method, url: text, ...(origin ? { origin } : {}), outcome };
}

const explanationText = (explanation: GatewayExplanation) => {
  const { origin } = explanation;
  const where = origin ? `Gateway ${origin.gateway} listener ${origin.listener} (${origin.protocol}), host ${origin.host || '*'}, HTTPRoute ${origin.route} rule ${origin.rule} (${origin.match})\n  ` : '';
  return `${explanation.method} ${explanation.url}\n  ${where}${explanation.outcome}\n`;
};

/** The Gateway API controller (--gateway): the proxy on every node serves the GatewayClass's Gateways and their HTTPRoutes. */
export const gateway = {
  ...gatewaySettings,
  watch: GATEWAY_WATCH,
  start: (settings: GatewaySettings, { log, api }) => new GatewayDataplane(settings, log, api),
  /** Its HAProxys outlive the agent (the next one adopts them): --cleanup stops them. */
  cleanup: { what: 'the Gateway\'s HAProxys', run: (settings: GatewaySettings, log) => cleanupHaproxy(settings.haproxyDir, log, Object.values(HAPROXY_LISTENERS)) },
  /** Its part of `kubenft services`. */
  view: { planned: plannedGateways, explainUrl, explanationText },
} satisfies Capability<GatewaySettings>;
