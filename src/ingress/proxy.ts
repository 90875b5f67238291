import { Counter, Gauge, type Registry } from 'prom-client';
import { CountedHistogram } from '../kernel/counted-histogram.js';
import { INGRESS_DURATION_BUCKETS, type DefaultCertificate } from './proxy-protocol.js';
import type { RouteTable, RouteTableChanges } from './routes.js';

/**
 * A proxy's generated default certificate. Its module brings the ASN.1 library, ~0.2 s of CPU to
 * load, so it is imported when a proxy starts, never on the path of an agent without --ingress.
 */
export async function generatedDefaultCertificate(): Promise<NonNullable<DefaultCertificate>> {
  const { generateDefaultCertificate } = await import('./default-certificate.js');
  return generateDefaultCertificate();
}

// What serves the route plan: the built-in proxy's workers (worker-proxy.ts) or HAProxy
// (haproxy/). The control plane (the planner, problems, the status writer) is the same for both.

export interface ProxyUpdate {
  /** The whole plan. */
  table: RouteTable;
  /** What changed since the last update, or undefined when the table was planned whole. */
  changes: RouteTableChanges | undefined;
  /** --ingress-default-certificate's Secret, or null for the generated certificate. */
  defaultCertificate: DefaultCertificate;
}

export interface IngressProxy {
  /** Serves this plan from now on: the first call starts serving. */
  apply(update: ProxyUpdate): Promise<void>;
  /** The agent stops: the built-in's workers end; HAProxy is left serving the last plan for the next agent to adopt. */
  stop(): Promise<void>;
}

/** The request metrics both dataplanes report under the same names; `owner` is the label naming what a route came from. */
export interface RequestMetrics {
  requests: Counter<string>;
  durations: CountedHistogram;
  upstreamErrors: Counter<'backend'>;
  connections: Gauge;
  /** 'ingress' (an Ingress) or 'route' (an HTTPRoute). */
  owner: string;
}

/** Registers kubenft_<prefix>_requests_total and its siblings, labelled by `owner`. */
export function registerRequestMetrics(registry: Registry, prefix: string, owner: string, ownerText: string): RequestMetrics {
  const registers = [registry];
  return {
    requests: new Counter({ name: `kubenft_${prefix}_requests_total`, help: `Requests answered by the ${prefix} proxy, by ${ownerText}, rule host, rule path and status`, labelNames: [owner, 'host', 'path', 'status'], registers }),
    durations: new CountedHistogram(`kubenft_${prefix}_request_duration_seconds`, `Time from a request to its response header, by ${ownerText}`, [owner], INGRESS_DURATION_BUCKETS, registry),
    upstreamErrors: new Counter({ name: `kubenft_${prefix}_upstream_errors_total`, help: 'Failed attempts to reach an endpoint (connection refused or reset, timeouts), by backend', labelNames: ['backend'], registers }),
    connections: new Gauge({ name: `kubenft_${prefix}_active_connections`, help: `Client connections open on the ${prefix} proxy`, registers }),
    owner,
  };
}
