import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { StateChanges, StateDataplane } from '../capability.js';
import { type DnsPlanConfig, planService, planZone } from './records.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { normalizeNamespace } from '../cluster/normalize.js';
import type { Upstream } from './forwarder.js';
import { native } from '../kernel/native.js';
import { defaultUpstreams, serveHostClients, setUpDnsNetwork } from './network.js';
import { DURATION_BUCKETS, LARGE_UPDATE, type NamesUpdate, type ServerConfig, type ServerMessage, type ServerMetrics } from './server.js';

// Cluster DNS as a dataplane beside the proxy's rules: on every sync it plans the names of the
// services that changed (records.ts) and posts them to the server's worker thread, which
// prepares their answers; the agent's loop never serves a query.

export interface DnsOptions {
  addresses: string[];
  zone: string;
  ttl: number;
  pods: 'insecure' | 'disabled';
  upstreams?: Upstream[];
  /** 53; tests may serve elsewhere. */
  port?: number;
  /** Off in tests that serve on loopback: no interface and no table. */
  network?: boolean;
}

const ZONE_OWNER = '';
/** Top-level, so that no closure over an update keeps it alive through the compaction. */
const compactJsHeap = () => native().compactJsHeap();
const KUBE_DNS = 'kube-system/kube-dns';

export class DnsDataplane implements StateDataplane {
  readonly name = 'dns';
  private worker: Worker | undefined;
  private started: Promise<void> | undefined;
  private planned = new Set<string>();
  private seq = 0;
  private readonly applied = new Map<number, () => void>();
  private metrics: ReturnType<typeof dnsMetrics> | undefined;
  private readonly plan: DnsPlanConfig;

  constructor(private readonly options: DnsOptions, private readonly log: Logger) {
    this.plan = { zone: options.zone, ttl: options.ttl };
  }

  attach(state: ClusterState, registry: Registry): void {
    state.registerKind('Namespace', normalizeNamespace);
    this.metrics = dnsMetrics(registry);
    this.started = this.start();
    // Failures surface in update(), which the agent logs and counts; none may go unhandled first.
    this.started.catch(() => undefined);
  }

  private async start(): Promise<void> {
    const { addresses } = this.options;
    const addressesDieWithProcess = this.options.network !== false && (await setUpDnsNetwork(addresses, this.log));
    const upstreams = this.options.upstreams ?? defaultUpstreams(addresses);
    const config: ServerConfig = { addresses, port: this.options.port ?? 53, zone: this.options.zone, ttl: this.options.ttl, pods: this.options.pods, upstreams };
    // Under tap the sources run as .ts, and the worker inherits the loader that runs them.
    const worker = new Worker(new URL(import.meta.url.endsWith('.ts') ? './server.ts' : './server.js', import.meta.url), { workerData: config });
    this.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (message: ServerMessage) => {
        if (message.type === 'listening') resolve();
        else if (message.type === 'failed') reject(new Error(`cluster DNS cannot serve on ${addresses.join(', ')}: ${message.message}`));
        else if (message.type === 'applied') this.applied.get(message.seq)?.();
        else this.record(message.metrics);
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`cluster DNS server exited (${code})`)));
    });
    if (addressesDieWithProcess) await serveHostClients(addresses);
    worker.on('error', (error) => this.log.error({ err: error }, `cluster DNS server failed: ${error.message}`));
    this.log.info({ addresses, upstreams: upstreams.map((upstream) => `${upstream.address}:${upstream.port}`) }, 'cluster DNS serving');
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    await this.started;
    const { services } = state;
    const keys = changes.services === 'full' ? new Set([...services.keys(), ...this.planned]) : changes.services;
    const update: NamesUpdate = { type: 'names', seq: ++this.seq, set: [], remove: [], serial: Math.floor(Date.now() / 1000) };
    for (const key of keys) {
      const service = services.get(key);
      if (service) {
        update.set.push([key, planService(service, state.slices.get(key) ?? [], this.plan)]);
        this.planned.add(key);
      } else if (this.planned.delete(key)) {
        update.remove.push(key);
      }
    }
    if (changes.services === 'full' || changes.kinds.has('Namespace') || keys.has(KUBE_DNS) || this.seq === 1) {
      const namespaces = [...state.objectsOf<string>('Namespace').values()];
      update.set.push([ZONE_OWNER, planZone(namespaces, services.get(KUBE_DNS), this.plan, update.serial)]);
      update.namespaces = namespaces;
    }
    // Resolves once the server answers from these names: an update is visible when the sync ends.
    await new Promise<void>((resolve) => {
      this.applied.set(update.seq, () => { this.applied.delete(update.seq); resolve(); });
      this.worker!.postMessage(update);
    });
    // The plans of a full update were copied to the worker and are garbage here: give their pages
    // back, once this call has returned (its context holds the update until then).
    if (update.set.length >= LARGE_UPDATE) setImmediate(compactJsHeap);
  }

  async stop(): Promise<void> {
    await this.worker?.terminate();
  }

  private record(metrics: ServerMetrics): void {
    const m = this.metrics!;
    for (const [key, count] of Object.entries(metrics.requests)) {
      const [proto, family, type] = key.split('|');
      m.requests.inc({ server: 'dns://:53', zone: this.options.zone, proto, family, type }, count);
    }
    for (const [rcode, count] of Object.entries(metrics.responses)) m.responses.inc({ server: 'dns://:53', rcode }, count);
    metrics.durationBuckets.forEach((count, index) => { m.durations.counts[index] += count; });
    m.durations.sum += metrics.durationSum;
    for (const [type, count] of Object.entries(metrics.cacheHits)) m.cacheHits.inc({ server: 'dns://:53', type }, count);
    if (metrics.cacheMisses > 0) m.cacheMisses.inc({ server: 'dns://:53' }, metrics.cacheMisses);
    for (const [to, count] of Object.entries(metrics.upstreamFailures)) m.upstreamFailures.inc({ to }, count);
    for (const [reason, count] of Object.entries(metrics.dropped)) m.dropped.inc({ server: 'dns://:53', reason }, count);
  }
}

/** A histogram whose buckets the worker counts: prom-client's Histogram only takes single observations. */
class WorkerHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly counts = DURATION_BUCKETS.map(() => 0);
  sum = 0;

  constructor(readonly name: string, readonly help: string) {}

  get() {
    let cumulative = 0;
    const buckets = DURATION_BUCKETS.map((bound, index) => ({ labels: { le: bound }, value: (cumulative += this.counts[index]), metricName: `${this.name}_bucket` }));
    return {
      name: this.name, help: this.help, type: this.type, aggregator: this.aggregator,
      values: [...buckets, { labels: { le: '+Inf' }, value: cumulative, metricName: `${this.name}_bucket` }, { labels: {}, value: this.sum, metricName: `${this.name}_sum` }, { labels: {}, value: cumulative, metricName: `${this.name}_count` }],
    };
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
  }
}

/** CoreDNS's metrics and label names, under kubenft_dns_. */
function dnsMetrics(registry: Registry) {
  const registers = [registry];
  const durations = new WorkerHistogram('kubenft_dns_request_duration_seconds', 'Time to answer a DNS query, cluster names and forwarded ones.');
  registry.registerMetric(durations as never);
  return {
    requests: new Counter({ name: 'kubenft_dns_requests_total', help: 'DNS queries received.', labelNames: ['server', 'zone', 'proto', 'family', 'type'], registers }),
    responses: new Counter({ name: 'kubenft_dns_responses_total', help: 'DNS responses sent, by rcode.', labelNames: ['server', 'rcode'], registers }),
    durations,
    cacheHits: new Counter({ name: 'kubenft_dns_cache_hits_total', help: 'Forwarded names answered from the cache (type success or denial).', labelNames: ['server', 'type'], registers }),
    cacheMisses: new Counter({ name: 'kubenft_dns_cache_misses_total', help: 'Forwarded names not in the cache.', labelNames: ['server'], registers }),
    upstreamFailures: new Counter({ name: 'kubenft_dns_upstream_failures_total', help: 'Upstream queries that failed or timed out (type to: the upstream).', labelNames: ['to'], registers }),
    dropped: new Counter({
      name: 'kubenft_dns_dropped_requests_total', labelNames: ['server', 'reason'], registers,
      help: 'UDP queries dropped unanswered, by reason: oversized (over the 4 KiB a socket reads), backlog (the queue to the JS server was full).',
    }),
  };
}
