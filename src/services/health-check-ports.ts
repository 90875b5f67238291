import type { ServerResponse } from 'node:http';
import { ipFamily } from '../kernel/addresses.js';
import { type HttpEndpoint, type PathHandler, listen } from '../kernel/http-server.js';
import { serviceKey } from '../cluster/model.js';

// kube-proxy's per-Service HealthCheckNodePort servers, which cloud load balancers probe for
// externalTrafficPolicy: Local (upstream's pkg/proxy/healthcheck/service_health.go): one port per
// such Service, answering 200 while this node has a local endpoint of it and the proxy is healthy.

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
  health: { healthy(): boolean };
}

const WILDCARD_ADDRESSES = ['::', '0.0.0.0'] as const;

/**
 * The HealthCheckNodePort servers, one per externalTrafficPolicy: Local load-balancer Service.
 * A load balancer sends traffic to this node only while its port answers 200: the service has
 * local endpoints and the proxy is healthy.
 */
export class ServiceHealthServers {
  private readonly bindAddresses: string[] | undefined;
  private readonly health: { healthy(): boolean };
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
