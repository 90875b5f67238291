import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';

// One agent per cluster holds a coordination.k8s.io Lease, as controllers elect their status
// writer: it takes the Lease when it is free or expired and renews it every third of its
// duration; the others find it held and wait. Every agent serves traffic; only the holder writes
// status, so a status never flaps between nodes, and another agent takes over when the holder
// stops renewing.

export interface LeaseOptions {
  identity: string;
  namespace: string;
  leaseName: string;
  leaseDurationMs: number;
}

const httpCode = (error: unknown) => (error as { code?: number }).code;

export class LeaderLease {
  private readonly coordination: CoordinationV1Api;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  /** The writes queued behind each renewal and publish: one at a time. */
  private round: Promise<void> = Promise.resolve();

  /** `write` runs after every renewal while this agent holds the Lease, and on `queue`. */
  constructor(config: KubeConfig, private readonly options: LeaseOptions, private readonly what: string, private readonly log: Logger, private readonly write: () => Promise<void>) {
    this.coordination = config.makeApiClient(CoordinationV1Api);
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

  /** Writes now if this agent leads (after whatever write is under way). */
  queue(): Promise<void> {
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
      this.log.warn(`${this.what} lease ${this.options.namespace}/${this.options.leaseName}: ${(error as Error).message}`);
    }
    if (this.leading !== wasLeading) this.log.info({ lease: this.options.leaseName }, this.leading ? `${this.what}: this agent now writes it` : `${this.what}: another agent writes it`);
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
}
