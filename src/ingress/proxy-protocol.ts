import type { RouteTable, RouteTableChanges } from '../plan/ingress.js';

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
  /** A backend that sends no response header (or no body data) for this long gets a 504. */
  backendTimeoutMs: number;
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

export interface RequestRecord {
  ingress: string;
  host: string;
  path: string;
  status: number;
  seconds: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening' }
  | { type: 'resend-routes' }
  | { type: 'stats'; requests: RequestRecord[]; upstreamErrors: Record<string, number>; activeConnections: number };
