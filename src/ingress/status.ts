import { CoordinationV1Api, type KubeConfig, NetworkingV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';

// status.loadBalancer.ingress of the served Ingresses, written by one agent per cluster: the holder
// of a coordination.k8s.io Lease, as ingress controllers elect their status writer. Every agent
// serves traffic; only the holder writes, so the status never flaps between nodes, and another
// agent takes over when the holder stops renewing.

export interface StatusTarget {
  namespace: string;
  name: string;
  /** The addresses the Ingress's status holds now (what the API server last sent). */
  current: string[];
}

export interface StatusWriterOptions {
  identity: string;
  namespace: string;
  leaseName: string;
  leaseDurationMs: number;
}

export const DEFAULT_STATUS_LEASE = { namespace: 'kube-system', leaseName: 'kubenft-ingress-status', leaseDurationMs: 15_000 };

const sameAddresses = (a: string[], b: string[]) => a.length === b.length && a.every((address, index) => address === b[index]);
const httpCode = (error: unknown) => (error as { code?: number }).code;

export class IngressStatusWriter {
  private readonly coordination: CoordinationV1Api;
  private readonly networking: NetworkingV1Api;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private targets: StatusTarget[] = [];
  private addresses: string[] = [];
  /** What this agent wrote, by namespace/name: a write is not repeated while the watch catches up. */
  private readonly written = new Map<string, string[]>();
  private round: Promise<void> = Promise.resolve();

  constructor(config: KubeConfig, private readonly options: StatusWriterOptions, private readonly log: Logger) {
    this.coordination = config.makeApiClient(CoordinationV1Api);
    this.networking = config.makeApiClient(NetworkingV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = () => {
      this.round = this.round.then(() => this.renewAndWrite());
    };
    tick();
    this.timer = setInterval(tick, this.options.leaseDurationMs / 3);
  }

  /** The served Ingresses and the addresses they should show; written now if this agent leads. */
  publish(targets: StatusTarget[], addresses: string[]): Promise<void> {
    this.targets = targets;
    this.addresses = [...addresses].sort();
    this.round = this.round.then(() => (this.leading ? this.write() : undefined));
    return this.round;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
  }

  private async renewAndWrite(): Promise<void> {
    const wasLeading = this.leading;
    try {
      this.leading = await this.acquireOrRenew();
    } catch (error) {
      this.leading = false;
      this.log.warn(`ingress status lease ${this.options.namespace}/${this.options.leaseName}: ${(error as Error).message}`);
    }
    if (this.leading !== wasLeading) this.log.info({ lease: this.options.leaseName }, this.leading ? 'ingress status: this agent now writes Ingress status' : 'ingress status: another agent writes Ingress status');
    if (this.leading) await this.write();
  }

  /** Takes the Lease when it is free or expired, renews it when held; a conflict means another agent won. */
  private async acquireOrRenew(): Promise<boolean> {
    const { namespace, leaseName: name, identity, leaseDurationMs } = this.options;
    const now = new Date();
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000), renewTime: now };
    let lease: V1Lease;
    try {
      lease = await this.coordination.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (httpCode(error) !== 404) throw error;
      try {
        await this.coordination.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: { ...spec, acquireTime: now } } });
        return true;
      } catch (createError) {
        if (httpCode(createError) === 409) return false;
        throw createError;
      }
    }
    const holder = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
    const expired = renewed + (lease.spec?.leaseDurationSeconds ?? 0) * 1000 < now.getTime();
    if (holder && holder !== identity && !expired) return false;
    const acquireTime = holder === identity ? lease.spec?.acquireTime ?? now : now;
    try {
      await this.coordination.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: { ...lease.spec, ...spec, acquireTime } } });
      return true;
    } catch (error) {
      if (httpCode(error) === 409) return false;
      throw error;
    }
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
