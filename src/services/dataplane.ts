import type { ProxyConfig } from './config.js';
import { IptablesBackend } from './iptables-backend.js';
import type { NftablesBackend } from '../kernel/nftables.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { allServicePortViews } from '../cluster/service-ports.js';
import { DriftWatch } from './drift.js';
import { NftablesProxier, servicesBackend } from './nftables-proxier.js';

// The two dataplanes behind one interface, so the agent's loop, metrics and health do not care
// which one programs the kernel.

export interface DataplaneSync {
  kind: 'full' | 'partial';
  /** Time spent in the kernel (nftables) or in iptables-restore. */
  kernelMs: number;
  /** Netlink messages (nftables) — 0 when nothing needed writing. */
  messages: number;
  /** Where the rest of an nftables sync's time went (a staged first load overlaps these). */
  split?: SyncSplit;
}

export interface SyncSplit {
  planMs: number;
  /** A full sync's bookkeeping for later partial syncs. */
  recordMs: number;
  /** The wire format, built in TypeScript. */
  serializeMs: number;
  /** libnftnl objects and the netlink batch, built in C++. */
  encodeMs: number;
}

export interface Dataplane {
  readonly mode: 'nftables' | 'iptables';
  sync(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<DataplaneSync>;
  /** Forget what is loaded: the next sync rewrites everything. */
  invalidate(): void;
  cleanup(): Promise<void>;
  /** Starts watching for changes made by others to what this dataplane loaded, where it can. */
  watchDrift?(onDrift: (differences: string[]) => void, onError: (error: Error) => void): DriftWatch;
}

/**
 * A full sync writing this much (several thousand services) leaves enough garbage to be worth a
 * compacting collection, which blocks the event loop (about a second at 100k services).
 */
const COMPACT_AFTER_BYTES = 8 * 2 ** 20;

export class NftablesDataplane implements Dataplane {
  readonly mode = 'nftables';
  private readonly proxier: NftablesProxier;

  constructor(private readonly backend: NftablesBackend = servicesBackend()) {
    this.proxier = new NftablesProxier(backend);
  }

  private syncing = false;

  async sync(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<DataplaneSync> {
    this.syncing = true;
    try {
      const result = await this.proxier.sync(state, config, changed);
      // The ruleset such a sync built is garbage now; without compaction the heap keeps its pages.
      if (result.kind === 'full' && result.bytes >= COMPACT_AFTER_BYTES) this.backend.releaseMemory();
      const split = { planMs: result.planMs, recordMs: result.recordMs ?? 0, serializeMs: result.serializeMs, encodeMs: result.encodeMs };
      return { kind: result.kind, kernelMs: result.kernelMs, messages: result.messages, split };
    } finally {
      this.syncing = false;
    }
  }

  watchDrift(onDrift: (differences: string[]) => void, onError: (error: Error) => void): DriftWatch {
    const subject = { ownGeneration: () => this.proxier.generation, busy: () => this.syncing, expectedShape: () => this.proxier.expectedShape() };
    const watch = new DriftWatch(this.backend, subject, onDrift, onError);
    watch.start();
    return watch;
  }

  invalidate(): void {
    this.proxier.invalidate();
  }

  async cleanup(): Promise<void> {
    await this.backend.cleanup();
  }
}

export class IptablesDataplane implements Dataplane {
  readonly mode = 'iptables';

  constructor(private readonly backend: IptablesBackend) {}

  /** iptables-restore rewrites kubenft's chains wholesale: every sync is a full one. */
  async sync(state: ClusterState, config: ProxyConfig): Promise<DataplaneSync> {
    const result = await this.backend.replace(allServicePortViews(state), config);
    return { kind: 'full', kernelMs: result.restoreMs, messages: 0 };
  }

  invalidate(): void {}

  cleanup(): Promise<void> {
    return this.backend.cleanup();
  }
}
