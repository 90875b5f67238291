import type { RouteTable, RouteTableChanges } from './routes.js';

// What the agent and the proxy's worker processes say to each other over the cluster IPC channel.

export interface ProxySettings {
  httpAddress: { host: string; port: number } | undefined;
  httpsAddress: { host: string; port: number } | undefined;
  /** PEM certificate and key served for unknown or absent SNI (unless the table names one). */
  defaultCertificate: { cert: string; key: string };
  maxBodyBytes: number;
  maxHeaderBytes: number;
  /** A client connection idle this long (between requests, or sending a request) is closed. */
  clientTimeoutMs: number;
  /** A backend that sends no response header (or no body data) for this long gets a 504; an upgraded tunnel idle this long (no byte either way) is closed. */
  backendTimeoutMs: number;
  /** A backend connection (a request's or a tunnel's) not established within this gets a 504. */
  connectTimeoutMs: number;
}

/** --ingress-default-certificate's Secret as PEM; null: the generated certificate. */
export type DefaultCertificate = { cert: string; key: string } | null;

/**
 * Routes go as a whole table when a worker starts (or asks again) and after a whole replan, and
 * otherwise as the changes of one sync, numbered: a worker applies changes only on top of the
 * generation before them, and asks for the whole table when it has missed one.
 */
export type ToWorker =
  | { type: 'settings'; settings: ProxySettings }
  | { type: 'routes'; generation: number; table: RouteTable; defaultCertificate: DefaultCertificate }
  | { type: 'route-changes'; generation: number; changes: RouteTableChanges; defaultCertificate?: DefaultCertificate };

/** kubenft_ingress_request_duration_seconds's upper bounds: the workers count requests into them. */
export const INGRESS_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

/** The INGRESS_DURATION_BUCKETS index a duration is counted in (INGRESS_DURATION_BUCKETS.length: past every bound), as Prometheus buckets are: value ≤ bound. */
export function durationBucket(seconds: number): number {
  let bucket = 0;
  while (bucket < INGRESS_DURATION_BUCKETS.length && seconds > INGRESS_DURATION_BUCKETS[bucket]) bucket++;
  return bucket;
}

/** Requests answered since the last report with one label set of kubenft_ingress_requests_total. */
export interface RequestCount {
  ingress: string;
  host: string;
  path: string;
  status: number;
  count: number;
}

/** One Ingress's request durations since the last report: counts per INGRESS_DURATION_BUCKETS bound (not cumulative; the last, past every bound), their sum. */
export interface DurationCounts {
  ingress: string;
  buckets: number[];
  sum: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening' }
  | { type: 'resend-routes' }
  | { type: 'stats'; requests: RequestCount[]; durations: DurationCounts[]; upstreamErrors: Record<string, number>; activeConnections: number };
