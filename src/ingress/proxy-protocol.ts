import type { RouteTable } from '../plan/ingress.js';

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

export type ToWorker =
  | { type: 'settings'; settings: ProxySettings }
  | { type: 'routes'; table: RouteTable; defaultCertificate?: string };

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
  | { type: 'stats'; requests: RequestRecord[]; upstreamErrors: Record<string, number>; activeConnections: number };
