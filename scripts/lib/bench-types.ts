// The figures exchanged between the bench orchestrator (scripts/bench.ts), its workers
// (bench-worker.ts, one process per measurement, inside a namespace) and the report writer.
import type { ColdstartResults } from './bench-coldstart.js';
import type { DnsBenchResult } from './bench-dns.js';
import type { IngressBenchResult } from './bench-ingress.js';
import type { GatewayBenchResult } from './bench-gateway.js';

export type IptablesFlavor = 'legacy' | 'nft';
export type Dataplane = 'kubenft' | `iptables-${IptablesFlavor}`;
export const DATAPLANES: readonly Dataplane[] = ['kubenft', 'iptables-legacy', 'iptables-nft'];

/** Which configuration of kubenft's incremental sync a run measures (see bench-partial-sync.ts). */
export type PartialSyncerName = 'proxier' | 'proxier-one-service-table';

export type WorkerTask =
  | { kind: 'cold-kubenft'; services: number }
  /** kubenft --proxy-mode=iptables end to end: IptablesBackend.replace. */
  | { kind: 'cold-iptables-backend'; flavor: IptablesFlavor; services: number }
  /** One bare `iptables-restore --noflush` of the same plan: what upstream kube-proxy pays. */
  | { kind: 'cold-iptables-restore'; flavor: IptablesFlavor; services: number }
  | { kind: 'cold-upstream-nft'; services: number; timeoutMs: number }
  | { kind: 'incremental'; implementation: PartialSyncerName | Dataplane; services: number; changes: number }
  | { kind: 'load'; dataplane: Dataplane; services: number; endpoints: string[] }
  | { kind: 'unload'; dataplane: Dataplane }
  | { kind: 'memory'; services: number };

/** Milliseconds of one kubenft sync, split as the issue asks. */
export interface KubenftSplit {
  planMs: number;
  /** A full sync's bookkeeping for later partial syncs (0 for a partial sync). */
  recordMs: number;
  /** Wire format built in TypeScript. */
  serializeMs: number;
  /** libnftnl objects built in C++. */
  encodeMs: number;
  kernelMs: number;
  messages: number;
  bytes: number;
}

export interface ColdResult {
  /** Wall time of the sync itself (ingesting the objects into ClusterState excluded). */
  wallMs: number;
  ingestMs: number;
  /** Plan (or text generation) time; the rest of wallMs is loading. */
  planMs: number;
  loadMs: number;
  split?: KubenftSplit;
  timedOut?: boolean;
  /** Set instead of figures when the run was not attempted (e.g. predicted far beyond the timeout). */
  skipped?: string;
  error?: string;
}

export interface IncrementalSample {
  /** From the changed EndpointSlice reaching ClusterState to the kernel's commit. */
  totalMs: number;
  split?: KubenftSplit;
  /** kubenft: the second transaction that removes dead weight once the change is committed. */
  cleanupMs?: number;
}

export interface IncrementalResult {
  initialSyncMs: number;
  samples: IncrementalSample[];
  skipped?: string;
  error?: string;
}

export interface MemoryResult {
  rssBytes: number;
  heapUsedBytes: number;
  maxRssBytes: number;
}

export interface LoadResult {
  syncMs: number;
}

export interface LatencyFigures {
  samples: number;
  failures: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

export interface LatencyRow {
  dataplane: Dataplane;
  services: number;
  first: LatencyFigures;
  last: LatencyFigures;
}

export interface DistributionRow {
  endpoints: number;
  connections: number;
  failures: number;
  min: number;
  max: number;
  chiSquare: number;
  degreesOfFreedom: number;
  pValue: number;
}

export interface Machine {
  date: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  nft: string;
  iptablesLegacy: string;
  iptablesNft: string;
}

export type ColdImplementation =
  | 'kubenft'
  | 'iptables-legacy-restore' | 'iptables-nft-restore'
  | 'kubenft-iptables-legacy' | 'kubenft-iptables-nft'
  | 'upstream-nft';

export type SocketLbVariant = 'direct' | 'nftables' | 'socket-lb';

export interface SocketLbRow {
  services: number;
  variant: SocketLbVariant;
  connections: number;
  connectP50Us: number;
  connectP99Us: number;
  shortPerSecond: number;
  /** The client cgroup's cpu.stat usage over the short-connection runs, per 100,000 connections. */
  cpuMsPer100k: number;
  persistentPerSecond: number;
}

export interface SocketLbBenchResult {
  rows: SocketLbRow[];
  /** One changed service at N services: plan + map writes, in µs. */
  mapChange?: { services: number; samples: number; p50Us: number; p99Us: number };
  /** The same change through the nftables partial sync, in µs, measured in this run. */
  nftablesChange?: { services: number; samples: number; p50Us: number; p99Us: number };
  failures: string[];
}

export interface BenchResults {
  machine: Machine;
  quick: boolean;
  cold: Array<{ implementation: ColdImplementation; services: number; result: ColdResult }>;
  incremental: Array<{ implementation: PartialSyncerName | Dataplane; services: number; result: IncrementalResult }>;
  latency: LatencyRow[];
  distribution: DistributionRow[];
  memory: Array<{ services: number; result: MemoryResult }>;
  socketLb?: SocketLbBenchResult;
  ingress?: IngressBenchResult;
  gateway?: GatewayBenchResult;
  dns?: DnsBenchResult;
  coldstart?: ColdstartResults;
  /** Phases that failed as a whole, with why. */
  failures: Array<{ phase: string; error: string }>;
  elapsedSeconds: number;
}
