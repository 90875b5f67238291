// kube-proxy's health endpoints: the proxy's own /healthz and /livez (behaviour of upstream's
// ProxyHealthServer, pkg/proxy/healthcheck/proxy_health.go) and the per-Service
// HealthCheckNodePort servers that cloud load balancers probe for externalTrafficPolicy: Local.
import type { ServerResponse } from 'node:http';
import { ipFamily } from '../kernel/addresses.js';
import { type HttpEndpoint, type PathHandler, listen, serveHttp } from '../kernel/http-server.js';
import { serviceKey } from '../cluster/model.js';

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

export interface HealthCheckService {
  namespace: string;
  name: string;
  healthCheckNodePort: number;
  /** Ready endpoints of the service on this node. */
  localEndpoints: number;
}

/** A service whose health check port could not be served; the other services are unaffected. */
export class HealthCheckPortError extends Error {
  constructor(
    readonly namespace: string,
    readonly serviceName: string,
    readonly port: number,
    cause: unknown,
  ) {
    super(`health check for service ${namespace}/${serviceName} on port ${port}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

interface ServiceHealthInstance {
  namespace: string;
  name: string;
  port: number;
  /** Read by the handler on each probe, so a count update needs no server restart. */
  localEndpoints: number;
  endpoints: HttpEndpoint[];
}

export interface ServiceHealthServersOptions {
  /** Addresses to open each health check port on. By default every address: dual-stack '::',
   *  or '0.0.0.0' where the host has no IPv6 (upstream listens on all addresses likewise). */
  bindAddresses?: string[];
  health: ProxyHealth;
}

const WILDCARD_ADDRESSES = ['::', '0.0.0.0'] as const;

/**
 * The HealthCheckNodePort servers, one per externalTrafficPolicy: Local load-balancer Service.
 * A load balancer sends traffic to this node only while its port answers 200: the service has
 * local endpoints and the proxy is healthy.
 */
export class ServiceHealthServers {
  private readonly bindAddresses: string[] | undefined;
  private readonly health: ProxyHealth;
  private readonly instances = new Map<string, ServiceHealthInstance>();
  // sync() and close() run one at a time, so overlapping calls never open a port twice.
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: ServiceHealthServersOptions) {
    if (options.bindAddresses) {
      if (options.bindAddresses.length === 0) throw new Error('bindAddresses is empty');
      for (const address of options.bindAddresses) {
        if (ipFamily(address) === 0) throw new Error(`bind address ${JSON.stringify(address)} is not an IP address`);
      }
    }
    this.bindAddresses = options.bindAddresses?.slice();
    this.health = options.health;
  }

  /**
   * Makes the open servers match `services`: opens new ports, closes ports of services gone or
   * moved to another port, updates endpoint counts in place. Resolves with one error per
   * service whose port could not be opened (for the caller to log and report); such a service
   * is retried on the next sync.
   */
  sync(services: readonly HealthCheckService[]): Promise<HealthCheckPortError[]> {
    return this.serialized(() => {
      // A sync racing shutdown must not reopen ports that would outlive the agent.
      if (this.closed) return Promise.reject(new Error('service health servers are closed'));
      return this.apply(services);
    });
  }

  /** Closes every server; later syncs are refused. */
  close(): Promise<void> {
    this.closed = true;
    return this.serialized(async () => {
      const all = [...this.instances.values()];
      this.instances.clear();
      await Promise.all(all.map(closeInstance));
    });
  }

  private serialized<T>(step: () => Promise<T>): Promise<T> {
    const result = this.queue.then(step);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async apply(services: readonly HealthCheckService[]): Promise<HealthCheckPortError[]> {
    const errors: HealthCheckPortError[] = [];
    const wanted = new Map<string, HealthCheckService>();
    for (const service of services) {
      const { namespace, name, healthCheckNodePort: port, localEndpoints } = service;
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        errors.push(new HealthCheckPortError(namespace, name, port, new RangeError('not a port number')));
      } else if (!Number.isInteger(localEndpoints) || localEndpoints < 0) {
        errors.push(new HealthCheckPortError(namespace, name, port, new RangeError(`bad localEndpoints ${localEndpoints}`)));
      } else {
        wanted.set(serviceKey(namespace, name), service);
      }
    }

    // Close first, so a port handed from one service to another is free to reopen.
    const closing: ServiceHealthInstance[] = [];
    for (const [key, instance] of this.instances) {
      if (wanted.get(key)?.healthCheckNodePort !== instance.port) {
        this.instances.delete(key);
        closing.push(instance);
      }
    }
    await Promise.all(closing.map(closeInstance));

    const opening: Promise<void>[] = [];
    for (const [key, service] of wanted) {
      const existing = this.instances.get(key);
      if (existing) {
        existing.localEndpoints = service.localEndpoints;
        continue;
      }
      const instance: ServiceHealthInstance = {
        namespace: service.namespace,
        name: service.name,
        port: service.healthCheckNodePort,
        localEndpoints: service.localEndpoints,
        endpoints: [],
      };
      opening.push(
        this.open(instance).then(
          () => void this.instances.set(key, instance),
          (err: unknown) => void errors.push(new HealthCheckPortError(instance.namespace, instance.name, instance.port, err)),
        ),
      );
    }
    await Promise.all(opening);
    return errors;
  }

  /** Listens on every bind address, or on none: a partly open port is closed again. */
  private async open(instance: ServiceHealthInstance): Promise<void> {
    const handler: PathHandler = (_path, res) => this.answer(instance, res);
    try {
      if (this.bindAddresses) {
        for (const host of this.bindAddresses) instance.endpoints.push(await listen(host, instance.port, handler));
      } else {
        instance.endpoints.push(await listenOnAllAddresses(instance.port, handler));
      }
    } catch (err) {
      await closeInstance(instance);
      throw err;
    }
  }

  private answer(instance: ServiceHealthInstance, res: ServerResponse): void {
    const count = instance.localEndpoints;
    const proxyHealthy = this.health.healthy();
    res.writeHead(count > 0 && proxyHealthy ? 200 : 503, {
      'Content-Type': 'application/json',
      'X-Content-Type-Options': 'nosniff',
      'X-Load-Balancing-Endpoint-Weight': String(count),
    });
    // Tab-indented like upstream's body, byte for byte, for probes that compare text.
    res.end(
      JSON.stringify(
        {
          service: { namespace: instance.namespace, name: instance.name },
          localEndpoints: count,
          serviceProxyHealthy: proxyHealthy,
        },
        null,
        '\t',
      ),
    );
  }
}

async function listenOnAllAddresses(port: number, handler: PathHandler): Promise<HttpEndpoint> {
  try {
    return await listen(WILDCARD_ADDRESSES[0], port, handler);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    return listen(WILDCARD_ADDRESSES[1], port, handler);
  }
}

async function closeInstance(instance: ServiceHealthInstance): Promise<void> {
  const endpoints = instance.endpoints.splice(0);
  await Promise.all(endpoints.map((endpoint) => endpoint.close()));
}
