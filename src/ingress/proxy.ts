import type { Counter, Gauge } from 'prom-client';
import type { CountedHistogram } from '../kernel/counted-histogram.js';
import type { DefaultCertificate } from './proxy-protocol.js';
import type { RouteTable, RouteTableChanges } from './routes.js';

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

/** The request metrics both dataplanes report under the same names. */
export interface RequestMetrics {
  requests: Counter<'ingress' | 'host' | 'path' | 'status'>;
  durations: CountedHistogram;
  upstreamErrors: Counter<'backend'>;
  connections: Gauge;
}
