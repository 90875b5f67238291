import { OptionsError } from '../capability.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { type IngressDataplaneName, type IngressOptions, chosenDataplane, ingressPlanInput } from './dataplane.js';
import { parseRequestTarget } from './request-path.js';
import { type PathRoute, Router, planIngress, routingHost, sameRoute } from './routes.js';

// `kubenft explain --ingress --url URL`: where a GET of the URL goes, planned from the same
// objects the agent reads and routed by the same table, which both dataplanes serve (the built-in
// looks it up per request; HAProxy holds it as maps, tested to route alike). The path is read as
// the proxies read it (request-path.ts: escapes, dot segments, an encoded slash).

export interface IngressExplanation {
  method: 'GET';
  url: string;
  /** What serves the routes on this node. */
  dataplane: IngressDataplaneName;
  /** The route reached: its Ingress, rule host ('*': rules without host), rule path and type; absent for no route. */
  route?: { ingress: string; host: string; path: string; pathType: string };
  /** The Service port the route leads to, and its ready endpoints (one of which answers). */
  backend?: string;
  endpoints?: string[];
  /** What answers, in words. */
  outcome: string;
}

export function explainIngressUrl(state: ClusterState, settings: IngressOptions & { className: string }, text: string): IngressExplanation {
  const scheme = /^(https?):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (!scheme) throw new OptionsError(`--url ${JSON.stringify(text)}: not an http:// or https:// URL`);
  const dataplane = chosenDataplane(settings).name;
  const base = { method: 'GET' as const, url: text, dataplane };
  const target = parseRequestTarget(text);
  if (target === undefined) return { ...base, outcome: '400: a target the proxy refuses (a path above the root, an encoded NUL, userinfo)' };
  const router = new Router(planIngress(ingressPlanInput(state, settings.className)).table);
  const host = routingHost(target.authority);
  const match = router.match(host, target.path.path);
  if (target.path.slashed !== undefined && !sameRoute(match, router.match(host, target.path.slashed))) {
    return { ...base, outcome: '400: an encoded slash that, read as a separator, routes elsewhere' };
  }
  if (match.kind === 'none') return { ...base, outcome: '404: no rule matches and there is no default backend' };
  const path = match.route as Partial<PathRoute>;
  const route = { ingress: match.route.ingress, host: match.ruleHost || '*', path: path.path ?? '(defaultBackend)', pathType: path.type ?? 'defaultBackend' };
  if (scheme === 'http' && match.redirectToHttps) return { ...base, route, outcome: `308 to https://${host}${target.path.path}${target.query}` };
  const outcome = match.endpoints.length > 0 ? `backend ${match.backend}: one of ${match.endpoints.join(', ')}` : `backend ${match.backend}: no ready endpoint (503)`;
  return { ...base, route, backend: match.backend, endpoints: match.endpoints, outcome };
}

export function ingressExplanationText(explanation: IngressExplanation): string {
  const { route } = explanation;
  const where = route ? `Ingress ${route.ingress}, host ${route.host}, path ${route.path} (${route.pathType})\n  ` : '';
  const by = explanation.dataplane === 'haproxy' ? 'HAProxy' : 'the built-in proxy';
  return `GET ${explanation.url} (served by ${by})\n  ${where}${explanation.outcome}\n`;
}
