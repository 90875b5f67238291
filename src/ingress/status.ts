import { type KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { LeaderLease, type LeaseOptions } from '../cluster/leader-lease.js';

// status.loadBalancer.ingress of the served Ingresses, written by one agent per cluster: the holder
// of a coordination.k8s.io Lease (cluster/leader-lease.ts), as ingress controllers elect their
// status writer.

export interface StatusTarget {
  namespace: string;
  name: string;
  /** The addresses the Ingress's status holds now (what the API server last sent). */
  current: string[];
}

export type StatusWriterOptions = LeaseOptions;

export const DEFAULT_STATUS_LEASE = { namespace: 'kube-system', leaseName: 'kubenft-ingress-status', leaseDurationMs: 15_000 };

const sameAddresses = (a: string[], b: string[]) => a.length === b.length && a.every((address, index) => address === b[index]);

export class IngressStatusWriter {
  private readonly networking: NetworkingV1Api;
  private readonly lease: LeaderLease;
  private targets: StatusTarget[] = [];
  private addresses: string[] = [];
  /** What this agent wrote, by namespace/name: a write is not repeated while the watch catches up. */
  private readonly written = new Map<string, string[]>();

  constructor(config: KubeConfig, options: StatusWriterOptions, private readonly log: Logger) {
    this.networking = config.makeApiClient(NetworkingV1Api);
    this.lease = new LeaderLease(config, options, 'ingress status', log, () => this.write());
  }

  get isLeader(): boolean {
    return this.lease.isLeader;
  }

  start(): void {
    this.lease.start();
  }

  /** The served Ingresses and the addresses they should show; written now if this agent leads. */
  publish(targets: StatusTarget[], addresses: string[]): Promise<void> {
    this.targets = targets;
    this.addresses = [...addresses].sort();
    return this.lease.queue();
  }

  stop(): Promise<void> {
    return this.lease.stop();
  }

  private async write(): Promise<void> {
    for (const target of this.targets) {
      const key = `${target.namespace}/${target.name}`;
      if (sameAddresses(target.current, this.addresses)) {
        this.written.delete(key);
        continue;
      }
      if (sameAddresses(this.written.get(key) ?? [], this.addresses)) continue;
      try {
        const ingress = await this.networking.readNamespacedIngressStatus({ name: target.name, namespace: target.namespace });
        ingress.status = { loadBalancer: { ingress: this.addresses.map((address) => ({ ip: address })) } };
        await this.networking.replaceNamespacedIngressStatus({ name: target.name, namespace: target.namespace, body: ingress });
        this.written.set(key, this.addresses);
      } catch (error) {
        this.log.warn(`ingress status of ${key}: ${(error as Error).message}`);
      }
    }
  }
}
