// kube-proxy's health endpoints for the proxy itself: /healthz and /livez (behaviour of upstream's
// ProxyHealthServer, pkg/proxy/healthcheck/proxy_health.go). The per-Service HealthCheckNodePort
// servers are the Service proxy's (services/health-check-ports.ts).
import type { ServerResponse } from 'node:http';
import { type HttpEndpoint, serveHttp } from '../kernel/http-server.js';

/** Where /healthz and /livez answers are counted: the metrics server's own file imports this one, not the reverse. */
export interface HealthAnswerCounters {
  recordHealthz(code: number): void;
  recordLivez(code: number): void;
}

// Go's zero time.Time, which upstream prints as lastUpdated before any sync.
const NEVER = '0001-01-01T00:00:00.000Z';

export interface ProxyHealthOptions {
  /** How long a queued change may wait for a successful sync before the proxy is unhealthy. */
  healthTimeoutMs: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Where /healthz and /livez answers are counted (proxy_healthz_total, proxy_livez_total). */
  metrics?: HealthAnswerCounters;
}

/**
 * Whether the sync loop keeps up. Upstream's rule: healthy while no change is pending, or while
 * the oldest pending change has waited less than healthTimeout. The age counts from when the
 * change was queued, not from the last sync, so an agent idle for a long time is not declared
 * unhealthy the moment an event arrives. Unlike upstream (which reports healthy from start-up
 * until a sync falls behind), the agent is unhealthy until its first successful sync: a node
 * whose rules were never written must not receive load-balancer traffic.
 *
 * One state for both families: kubenft commits IPv4 and IPv6 rules in one sync.
 */
export class ProxyHealth {
  readonly metrics: HealthAnswerCounters | undefined;
  private readonly healthTimeoutMs: number;
  private readonly now: () => number;
  private lastUpdatedMs: number | undefined;
  private oldestPendingQueuedMs: number | undefined;
  private eligible = true;

  constructor(options: ProxyHealthOptions) {
    if (!Number.isFinite(options.healthTimeoutMs) || options.healthTimeoutMs <= 0) {
      throw new RangeError(`healthTimeoutMs must be a positive number, got ${options.healthTimeoutMs}`);
    }
    this.healthTimeoutMs = options.healthTimeoutMs;
    this.now = options.now ?? Date.now;
    this.metrics = options.metrics;
  }

  /** A change that needs a sync arrived. Only the oldest pending one matters. */
  queued(): void {
    this.oldestPendingQueuedMs ??= this.now();
  }

  /** A sync succeeded: rules reflect everything queued so far. */
  updated(): void {
    this.lastUpdatedMs = this.now();
    this.oldestPendingQueuedMs = undefined;
  }

  healthy(): boolean {
    if (this.lastUpdatedMs === undefined) return false;
    if (this.oldestPendingQueuedMs === undefined) return true;
    return this.now() - this.oldestPendingQueuedMs < this.healthTimeoutMs;
  }

  lastUpdated(): Date | undefined {
    return this.lastUpdatedMs === undefined ? undefined : new Date(this.lastUpdatedMs);
  }

  /** False while the Node is being deleted or carries the cluster autoscaler's
   *  ToBeDeletedByClusterAutoscaler taint: /healthz then fails so load balancers drain the node,
   *  while /livez stays unaffected. */
  setNodeEligible(eligible: boolean): void {
    this.eligible = eligible;
  }

  nodeEligible(): boolean {
    return this.eligible;
  }

  /** The JSON answer of /healthz or /livez; `lastUpdated` reads as now while healthy, as
   *  upstream keeps for clients written against older releases. */
  report(withNodeEligibility: boolean): { code: 200 | 503; body: string } {
    const nowMs = this.now();
    const eligible = this.eligible;
    const ok = this.healthy() && (!withNodeEligibility || eligible);
    const currentTime = new Date(nowMs).toISOString();
    const lastUpdated = ok ? currentTime : this.lastUpdatedMs === undefined ? NEVER : new Date(this.lastUpdatedMs).toISOString();
    const body = withNodeEligibility ? { lastUpdated, currentTime, nodeEligible: eligible } : { lastUpdated, currentTime };
    return { code: ok ? 200 : 503, body: JSON.stringify(body) };
  }
}

/** Answers /healthz or /livez and returns true, or returns false for any other path. */
export function handleHealthRequest(health: ProxyHealth, path: string, res: ServerResponse): boolean {
  let withNodeEligibility: boolean;
  if (path === '/healthz') withNodeEligibility = true;
  else if (path === '/livez') withNodeEligibility = false;
  else return false;

  const { code, body } = health.report(withNodeEligibility);
  if (withNodeEligibility) health.metrics?.recordHealthz(code);
  else health.metrics?.recordLivez(code);
  res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
  return true;
}

/**
 * kubenft's /readyz: 200 "ok" while the rules are synced and every dataplane beside them serves
 * (cluster DNS's worker up and synced), else 503 and one line per reason. kube-proxy has no such
 * path; /healthz stays kube-proxy's, so that load balancers do not drain a node for a DNS problem.
 */
function handleReadyRequest(notReady: () => string[], res: ServerResponse): void {
  const reasons = notReady();
  res.writeHead(reasons.length === 0 ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(reasons.length === 0 ? 'ok\n' : `${reasons.join('\n')}\n`);
}

/** The proxy's health server (upstream: healthzBindAddress, 0.0.0.0:10256 by default), with /readyz when given the readiness. */
export function startHealthServer(address: string, health: ProxyHealth, notReady?: () => string[]): Promise<HttpEndpoint> {
  return serveHttp(address, (path, res) => {
    if (handleHealthRequest(health, path, res)) return;
    if (path === '/readyz' && notReady) return handleReadyRequest(notReady, res);
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('404 page not found\n');
  });
}
