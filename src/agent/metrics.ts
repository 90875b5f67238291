// kube-proxy's Prometheus metrics under kube-proxy's names, bucket layouts and help texts, so
// existing dashboards and alerts keep working when kubenft replaces kube-proxy, plus a few
// metrics of kubenft's own (prefix kubenft_) for what kube-proxy has no name for.
import {
  collectDefaultMetrics,
  Counter,
  exponentialBuckets,
  Gauge,
  Histogram,
  linearBuckets,
  Registry,
} from 'prom-client';
import { type HttpEndpoint, serveHttp } from '../kernel/http-server.js';
import { handleHealthRequest, type ProxyHealth } from './healthz.js';

const SUBSYSTEM = 'kubeproxy';
const OWN_PREFIX = 'kubenft';

// Upstream: prometheus.ExponentialBuckets(0.001, 2, 15), i.e. 1ms .. 16.384s.
const SYNC_BUCKETS = exponentialBuckets(0.001, 2, 15);

// Upstream builds these with a merge() that starts from a one-element zero slice, so its
// histogram has an le="0" bucket in front; kept so bucket series match kube-proxy's one for one.
const NETWORK_PROGRAMMING_BUCKETS = [
  0,
  ...linearBuckets(0.25, 0.25, 2), // 0.25s, 0.5s
  ...linearBuckets(1, 1, 59), // 1s .. 59s
  ...linearBuckets(60, 5, 12), // 60s .. 115s
  ...linearBuckets(120, 30, 7), // 2min .. 5min
];

export type SyncKind = 'full' | 'partial';
export type SyncMode = 'nftables' | 'iptables';

function requireCount(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${what} must be a non-negative integer, got ${value}`);
  return value;
}

function requireSeconds(what: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${what} must be a finite number of seconds >= 0, got ${value}`);
  return value;
}

export class ProxyMetrics {
  readonly registry: Registry;

  private readonly syncDuration: Histogram;
  private readonly fullSyncDuration: Histogram;
  private readonly partialSyncDuration: Histogram;
  private readonly networkProgramming: Histogram;
  private readonly lastSyncTimestamp: Gauge;
  private readonly lastQueuedTimestamp: Gauge;
  private readonly endpointChangesPending: Gauge;
  private readonly endpointChangesTotal: Counter;
  private readonly serviceChangesPending: Gauge;
  private readonly serviceChangesTotal: Counter;
  private readonly noLocalEndpoints: Gauge<'traffic_policy'>;
  private readonly nftablesSyncFailures: Counter;
  private readonly nftablesCleanupFailures: Counter;
  private readonly iptablesRestoreFailures: Counter;
  private readonly healthzTotal: Counter<'code'>;
  private readonly livezTotal: Counter<'code'>;
  private readonly conntrackDeleted: Counter;
  private readonly kernelSeconds: Histogram;
  private readonly driftRepairs: Counter;
  private readonly driftCheckFailures: Counter;
  private readonly stateDataplaneFailures: Counter<'dataplane'>;
  private readonly skippedInputs: Counter;
  private readonly servicesSize: Gauge;
  private readonly endpointsSize: Gauge;

  /** Uses its own registry rather than prom-client's global one, so two agents (or tests) in
   *  one process never collide on metric names. */
  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    collectDefaultMetrics({ register: registry });
    const registers = [registry];

    const kubeProxyHistogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name: `${SUBSYSTEM}_${name}`, help, buckets, registers });
    const kubeProxyGauge = (name: string, help: string) => new Gauge({ name: `${SUBSYSTEM}_${name}`, help, registers });
    const kubeProxyCounter = (name: string, help: string) => new Counter({ name: `${SUBSYSTEM}_${name}`, help, registers });

    this.syncDuration = kubeProxyHistogram('sync_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds', SYNC_BUCKETS);
    this.fullSyncDuration = kubeProxyHistogram(
      'sync_full_proxy_rules_duration_seconds',
      'SyncProxyRules latency in seconds for full resyncs',
      SYNC_BUCKETS,
    );
    this.partialSyncDuration = kubeProxyHistogram(
      'sync_partial_proxy_rules_duration_seconds',
      'SyncProxyRules latency in seconds for partial resyncs',
      SYNC_BUCKETS,
    );
    this.networkProgramming = kubeProxyHistogram(
      'network_programming_duration_seconds',
      'In Cluster Network Programming Latency in seconds',
      NETWORK_PROGRAMMING_BUCKETS,
    );
    this.lastSyncTimestamp = kubeProxyGauge('sync_proxy_rules_last_timestamp_seconds', 'The last time proxy rules were successfully synced');
    this.lastQueuedTimestamp = kubeProxyGauge(
      'sync_proxy_rules_last_queued_timestamp_seconds',
      'The last time a sync of proxy rules was queued',
    );
    this.endpointChangesPending = kubeProxyGauge('sync_proxy_rules_endpoint_changes_pending', 'Pending proxy rules Endpoint changes');
    this.endpointChangesTotal = kubeProxyCounter('sync_proxy_rules_endpoint_changes_total', 'Cumulative proxy rules Endpoint changes');
    this.serviceChangesPending = kubeProxyGauge('sync_proxy_rules_service_changes_pending', 'Pending proxy rules Service changes');
    this.serviceChangesTotal = kubeProxyCounter('sync_proxy_rules_service_changes_total', 'Cumulative proxy rules Service changes');
    // A gauge despite the _total suffix: upstream recounts it on every sync.
    this.noLocalEndpoints = new Gauge({
      name: `${SUBSYSTEM}_sync_proxy_rules_no_local_endpoints_total`,
      help: 'Number of services with a Local traffic policy and no endpoints',
      labelNames: ['traffic_policy'] as const,
      registers,
    });
    this.nftablesSyncFailures = kubeProxyCounter(
      'sync_proxy_rules_nftables_sync_failures_total',
      'Cumulative proxy nftables sync failures',
    );
    this.nftablesCleanupFailures = kubeProxyCounter(
      'sync_proxy_rules_nftables_cleanup_failures_total',
      'Cumulative proxy nftables cleanup failures',
    );
    this.iptablesRestoreFailures = kubeProxyCounter(
      'sync_proxy_rules_iptables_restore_failures_total',
      'Cumulative proxy iptables restore failures',
    );
    this.healthzTotal = new Counter({
      name: `${SUBSYSTEM}_proxy_healthz_total`,
      help: 'Cumulative proxy healthz HTTP status',
      labelNames: ['code'] as const,
      registers,
    });
    this.livezTotal = new Counter({
      name: `${SUBSYSTEM}_proxy_livez_total`,
      help: 'Cumulative proxy livez HTTP status',
      labelNames: ['code'] as const,
      registers,
    });
    this.conntrackDeleted = kubeProxyCounter(
      'conntrack_reconciler_deleted_entries_total',
      'Cumulative conntrack flows deleted by conntrack reconciler',
    );

    this.kernelSeconds = new Histogram({
      name: `${OWN_PREFIX}_sync_proxy_rules_kernel_seconds`,
      help: 'Time of each sync spent committing the nftables transaction in the kernel, in seconds',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.driftRepairs = new Counter({
      name: `${OWN_PREFIX}_drift_repairs_total`,
      help: 'Cumulative repairs of kernel rules found to differ from what kubenft last wrote',
      registers,
    });
    this.driftCheckFailures = new Counter({
      name: `${OWN_PREFIX}_drift_check_failures_total`,
      help: 'Cumulative checks for changes to kubenft\'s rules by others that could not be made (reading the generation or a table failed)',
      registers,
    });
    this.stateDataplaneFailures = new Counter({
      name: `${OWN_PREFIX}_state_dataplane_update_failures_total`,
      help: 'Cumulative failed updates of a dataplane beside the rules (dns, ingress, socket-lb), by dataplane',
      labelNames: ['dataplane'],
      registers,
    });
    this.skippedInputs = new Counter({
      name: `${OWN_PREFIX}_manifest_skipped_total`,
      help: 'Cumulative manifest documents, List items and files skipped because they could not be read or parsed',
      registers,
    });
    this.servicesSize = new Gauge({
      name: `${OWN_PREFIX}_sync_proxy_rules_services`,
      help: 'Number of services programmed by the last successful sync',
      registers,
    });
    this.endpointsSize = new Gauge({
      name: `${OWN_PREFIX}_sync_proxy_rules_endpoints`,
      help: 'Number of endpoints programmed by the last successful sync',
      registers,
    });

    // Both label values exist from the first scrape, so "no Local services lacking endpoints"
    // reads as 0 rather than as a missing series.
    this.setNoLocalEndpoints(0, 0);
  }

  /** A successful sync: `seconds` overall, of which `kernelSeconds` in the kernel commit. */
  recordSync(kind: SyncKind, seconds: number, kernelSeconds: number): void {
    requireSeconds('sync duration', seconds);
    requireSeconds('kernel duration', kernelSeconds);
    this.syncDuration.observe(seconds);
    (kind === 'full' ? this.fullSyncDuration : this.partialSyncDuration).observe(seconds);
    this.kernelSeconds.observe(kernelSeconds);
    this.lastSyncTimestamp.setToCurrentTime();
  }

  recordSyncFailure(mode: SyncMode): void {
    (mode === 'nftables' ? this.nftablesSyncFailures : this.iptablesRestoreFailures).inc();
  }

  /** Removing the tables (on --cleanup or when switching modes) failed. */
  recordCleanupFailure(): void {
    this.nftablesCleanupFailures.inc();
  }

  recordQueued(): void {
    this.lastQueuedTimestamp.setToCurrentTime();
  }

  setPending(services: number, endpoints: number): void {
    this.serviceChangesPending.set(requireCount('pending service changes', services));
    this.endpointChangesPending.set(requireCount('pending endpoint changes', endpoints));
  }

  addChanges(services: number, endpoints: number): void {
    this.serviceChangesTotal.inc(requireCount('service changes', services));
    this.endpointChangesTotal.inc(requireCount('endpoint changes', endpoints));
  }

  /** Time from an object's change in the API (its trigger time) to rules reflecting it. */
  observeNetworkProgramming(seconds: number): void {
    // Trigger times come from the control plane's clock; a node clock behind it gives negative
    // latencies, which would only distort the histogram.
    if (!Number.isFinite(seconds) || seconds < 0) return;
    this.networkProgramming.observe(seconds);
  }

  setNoLocalEndpoints(internal: number, external: number): void {
    this.noLocalEndpoints.set({ traffic_policy: 'internal' }, requireCount('internal no-local-endpoint services', internal));
    this.noLocalEndpoints.set({ traffic_policy: 'external' }, requireCount('external no-local-endpoint services', external));
  }

  recordHealthz(code: number): void {
    this.healthzTotal.inc({ code: String(code) });
  }

  recordLivez(code: number): void {
    this.livezTotal.inc({ code: String(code) });
  }

  recordDriftRepair(): void {
    this.driftRepairs.inc();
  }

  recordDriftCheckFailure(): void {
    this.driftCheckFailures.inc();
  }

  /** A manifest document, List item or file that could not be read or parsed. */
  recordSkippedInput(): void {
    this.skippedInputs.inc();
  }

  recordStateDataplaneFailure(dataplane: string): void {
    this.stateDataplaneFailures.inc({ dataplane });
  }

  recordConntrackDeletions(n: number): void {
    this.conntrackDeleted.inc(requireCount('deleted conntrack entries', n));
  }

  setSize(services: number, endpoints: number): void {
    this.servicesSize.set(requireCount('services', services));
    this.endpointsSize.set(requireCount('endpoints', endpoints));
  }
}

export interface MetricsServerExtras {
  /** /healthz and /livez, as upstream serves them on the metrics port as well. */
  healthz?: ProxyHealth;
  /** /proxyMode: the mode, as plain text. */
  proxyMode?: string;
  /** /configz: the configuration, as JSON (src/agent/configz.ts). */
  configz?: object;
}

/** Headers upstream sets on its own answers. */
const NOSNIFF = { 'X-Content-Type-Options': 'nosniff' };

/**
 * kube-proxy's metrics server: /metrics, and when given /healthz, /livez, /proxyMode and
 * /configz; 404 for every other path. `address` is "ip:port" or "[ipv6]:port"; port 0 picks a
 * free one.
 */
export function startMetricsServer(address: string, metrics: ProxyMetrics, extra: MetricsServerExtras = {}): Promise<HttpEndpoint> {
  const health = extra.healthz;
  const configz = extra.configz && JSON.stringify(extra.configz);
  return serveHttp(address, (path, res) => {
    if (path === '/proxyMode' && extra.proxyMode !== undefined) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', ...NOSNIFF });
      res.end(extra.proxyMode);
      return;
    }
    if (path === '/configz' && configz !== undefined) {
      res.writeHead(200, { 'Content-Type': 'application/json', ...NOSNIFF });
      res.end(configz);
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
      return;
    }
    if (health && handleHealthRequest(health, path, res)) return;
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('404 page not found\n');
  });
}
