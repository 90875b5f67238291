import { Worker } from 'node:worker_threads';
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { StateChanges, StateDataplane, WatchNeeds } from '../capability.js';
import { joinHostPort } from '../kernel/addresses.js';
import { type HttpEndpoint, serveHttp } from '../kernel/http-server.js';
import { CountedHistogram } from '../kernel/counted-histogram.js';
import { type DnsPlanConfig, planService, planZone } from './records.js';
import { type ClusterState, withNormalizers } from '../cluster/cluster-state.js';
import { DNS_LISTS } from './lists.js';
import { type NamespaceInfo, normalizeNamespace } from '../cluster/normalize.js';
import type { Upstream } from './forwarder.js';
import { native } from '../kernel/native.js';
import { defaultUpstreams, serveHostClients, setUpDnsNetwork, withdrawHostClients } from './network.js';
import { DNS_DURATION_BUCKETS, LARGE_UPDATE, type NamesUpdate, type Ping, type ServerConfig, type ServerMessage, type ServerMetrics, serverLabel } from './server.js';

// Cluster DNS as a dataplane beside the proxy's rules: on every sync it plans the names of the
// services that changed (records.ts) and posts them to the server's worker thread, which
// prepares their answers; the agent's loop never serves a query.
//
// The worker is supervised: one that exits, fails to listen or stops answering (an update not
// applied in time, no 'listening' after its start) is terminated and started again after a backoff,
// then given every name afresh from the state. No wait for it is unbounded, so a broken worker
// delays a sync by at most APPLY_TIMEOUT_MS once and never stops the proxy's rules from syncing.
// While it is down, pods' queries fall through to the kube-dns Service's endpoints (the notrack
// rule matches only while a socket is bound) and so do the node's own (that rule is withdrawn).

export const DNS_WATCH: WatchNeeds = withNormalizers(DNS_LISTS, { Namespace: normalizeNamespace });

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
  /** CoreDNS's health (/health, "OK") and ready (/ready) servers: ip:port, '' off; default the first address's :8080 and :8181. */
  healthAddress?: string;
  readyAddress?: string;
}

/**
 * How long a starting worker may take to listen, a ping to be answered and a posted update to be
 * applied, before the worker is taken for hung. An update's time grows with the services it sets:
 * measured on the 2-core test machine under load, 0.19 ms per ClusterIP service (19 s for a whole
 * update of 100k) and 0.43 ms per headless one with 3 endpoints; each gets APPLY_MS_PER_SERVICE
 * more, several times that. Pings go every PING_INTERVAL_MS while no update is out.
 */
export const START_TIMEOUT_MS = 10_000;
export const APPLY_TIMEOUT_MS = 10_000;
const APPLY_MS_PER_SERVICE = 2;
const PING_INTERVAL_MS = 2_000;
/** Restart delays: doubling from the first to the last, back to the first once a worker has served this long. */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const STABLE_MS = 60_000;
/** terminate() of a worker stuck in native code may never return: it is not waited for longer. */
const TERMINATE_TIMEOUT_MS = 5_000;
const HEALTH_PORT = 8080;
const READY_PORT = 8181;

const ZONE_OWNER = '';
/** Top-level, so that no closure over an update keeps it alive through the compaction. */
const compactJsHeap = () => native().compactJsHeap();
const KUBE_DNS = 'kube-system/kube-dns';
/** CoreDNS's labels kubenft has one value of: its one "server block" is the root zone (kubeadm's Corefile: .:53), without views. */
const ZONE_LABEL = '.';
const VIEW_LABEL = '';

type Status = 'starting' | 'serving' | 'down';

const withTimeout = <T>(promise: Promise<T>, ms: number, what: string) => new Promise<T>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000}s`)), ms);
  promise.then((value) => { clearTimeout(timer); resolve(value); }, (error: unknown) => { clearTimeout(timer); reject(error); });
});

export class DnsDataplane implements StateDataplane {
  readonly name = 'dns';
  private state: ClusterState | undefined;
  private worker: Worker | undefined;
  private status: Status = 'down';
  /** Why the last worker went (for logs, /health and the update errors). */
  private reason = 'not started';
  /** Settles when the current start ends, serving or not. */
  private settled: Promise<void> = Promise.resolve();
  private settle: () => void = () => undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private servingSince = 0;
  private stopping = false;
  /** The served addresses, the table and the probes' servers: set up once, retried with the worker. */
  private network: { addressesDieWithProcess: boolean; upstreams: Upstream[] } | undefined;
  private readonly probes: HttpEndpoint[] = [];
  private planned = new Set<string>();
  private seq = 0;
  private readonly applied = new Map<number, { resolve(): void; reject(error: Error): void }>();
  /** The worker lacks names: the next update it gets is a whole one, from the state. */
  private behind = true;
  /** The agent has synced once: the state is complete enough to give a restarted worker. */
  private agentSynced = false;
  /** Updates go to the worker one at a time: each waits for the last to be applied (or to fail). */
  private queue: Promise<unknown> = Promise.resolve();
  private metrics: ReturnType<typeof dnsMetrics> | undefined;
  private readonly plan: DnsPlanConfig;
  private readonly servers: string[];

  constructor(private readonly options: DnsOptions, private readonly log: Logger) {
    this.plan = { zone: options.zone, ttl: options.ttl };
    this.servers = options.addresses.map((address) => serverLabel(address, options.port ?? 53));
  }

  readonly watch = DNS_WATCH;

  attach(state: ClusterState, registry: Registry): void {
    this.state = state;
    this.metrics = dnsMetrics(registry);
    this.metrics.up.set(0);
    this.launch();
  }

  /** Why cluster DNS is not ready (CoreDNS's /ready: serving every name of a synced state), or undefined when it is. */
  notReady(): string | undefined {
    if (this.status !== 'serving') return `cluster DNS worker ${this.status === 'starting' ? 'starting' : `down (${this.reason})`}`;
    if (!this.agentSynced || this.behind) return 'cluster DNS is not synced';
    return undefined;
  }

  update(_state: ClusterState, changes: StateChanges): Promise<void> {
    this.agentSynced = true;
    return this.enqueue(changes);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.startTimer);
    clearInterval(this.pingTimer);
    await Promise.all(this.probes.splice(0).map((probe) => probe.close()));
    if (this.worker) await this.terminate(this.worker);
  }

  private enqueue(changes: StateChanges): Promise<void> {
    const sent = this.queue.then(() => this.send(changes));
    this.queue = sent.catch(() => undefined);
    return sent;
  }

  /** One update to the worker, the whole state when it is behind; resolves once it answers from it. */
  private async send(changes: StateChanges): Promise<void> {
    if (this.status === 'starting') await this.settled;
    const worker = this.worker;
    if (this.status !== 'serving' || !worker) {
      this.behind = true;
      throw new Error(`cluster DNS worker is down (${this.reason}); it gets every name when it is back`);
    }
    const state = this.state!;
    const whole = this.behind || changes.services === 'full';
    const { services } = state;
    const keys = whole ? new Set([...services.keys(), ...this.planned]) : (changes.services as Set<string>);
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
    if (whole || changes.kinds.has('Namespace') || keys.has(KUBE_DNS)) {
      const namespaces = [...state.objectsOf<NamespaceInfo>('Namespace').values()].map((namespace) => namespace.name);
      update.set.push([ZONE_OWNER, planZone(namespaces, services.get(KUBE_DNS), this.plan, update.serial)]);
      update.namespaces = namespaces;
    }
    // Resolves once the server answers from these names: an update is visible when the sync ends.
    const applied = new Promise<void>((resolve, reject) => this.applied.set(update.seq, { resolve, reject }));
    worker.postMessage(update);
    const timeoutMs = APPLY_TIMEOUT_MS + APPLY_MS_PER_SERVICE * update.set.length;
    try {
      await withTimeout(applied, timeoutMs, `the cluster DNS worker's update of ${update.set.length} names`);
    } catch (error) {
      this.applied.delete(update.seq);
      this.behind = true;
      if (worker === this.worker) this.gone(worker, `it did not apply an update of ${update.set.length} services within ${timeoutMs / 1000}s`);
      throw error;
    }
    this.behind = false;
    // The plans of a whole update were copied to the worker and are garbage here: give their pages
    // back, once this call has returned (its context holds the update until then).
    if (update.set.length >= LARGE_UPDATE) setImmediate(compactJsHeap);
  }

  /** Sets up what the worker serves on (once), then starts a worker; any failure goes to gone(). */
  private launch(): void {
    this.status = 'starting';
    this.settled = new Promise((resolve) => { this.settle = resolve; });
    void this.prepare().then(
      () => !this.stopping && this.startWorker(),
      (error: Error) => this.gone(undefined, error.message),
    );
  }

  private async prepare(): Promise<void> {
    if (this.network) return;
    const { addresses } = this.options;
    const addressesDieWithProcess = this.options.network !== false && (await setUpDnsNetwork(addresses, this.log));
    const probes = [
      [this.options.healthAddress ?? joinHostPort(addresses[0], HEALTH_PORT), '/health', () => this.healthReport()],
      [this.options.readyAddress ?? joinHostPort(addresses[0], READY_PORT), '/ready', () => this.readyReport()],
    ] as const;
    for (const [address, path, report] of probes) {
      if (address === '') continue;
      try {
        this.probes.push(await serveHttp(address, (requested, res) => answerProbe(res, requested === path ? report() : undefined)));
      } catch (error) {
        throw new Error(`cluster DNS ${path} server cannot listen on ${address}: ${(error as Error).message}`);
      }
    }
    this.network = { addressesDieWithProcess, upstreams: this.options.upstreams ?? defaultUpstreams(addresses) };
  }

  private startWorker(): void {
    const { addresses } = this.options;
    const { upstreams } = this.network!;
    const config: ServerConfig = { addresses, port: this.options.port ?? 53, zone: this.options.zone, ttl: this.options.ttl, pods: this.options.pods, upstreams };
    // Under tap the sources run as .ts, and the worker inherits the loader that runs them.
    const worker = new Worker(new URL(import.meta.url.endsWith('.ts') ? './server.ts' : './server.js', import.meta.url), { workerData: config, name: 'kubenft cluster DNS' });
    this.worker = worker;
    this.startTimer = setTimeout(() => this.gone(worker, `it did not listen within ${START_TIMEOUT_MS / 1000}s`), START_TIMEOUT_MS);
    worker.on('message', (message: ServerMessage) => {
      if (message.type === 'listening') void this.serving(worker, upstreams);
      else if (message.type === 'failed') this.gone(worker, `cannot serve on ${addresses.join(', ')}: ${message.message}`);
      else if (message.type === 'applied' || message.type === 'pong') this.applied.get(message.seq)?.resolve();
      else this.record(message.metrics);
    });
    worker.on('error', (error) => this.log.error({ err: error }, `cluster DNS worker failed: ${error.message}`));
    worker.once('exit', (code) => this.gone(worker, `exited with code ${code}`));
  }

  private async serving(worker: Worker, upstreams: Upstream[]): Promise<void> {
    if (worker !== this.worker) return;
    clearTimeout(this.startTimer);
    this.status = 'serving';
    this.servingSince = performance.now();
    this.metrics?.up.set(1);
    this.settle();
    this.pingTimer = setInterval(() => this.ping(worker), PING_INTERVAL_MS).unref();
    this.log.info({ addresses: this.options.addresses, upstreams: upstreams.map((upstream) => `${upstream.address}:${upstream.port}`) }, 'cluster DNS serving');
    if (this.network!.addressesDieWithProcess) {
      await serveHostClients(this.options.addresses).catch((error: Error) => this.log.error(`cluster DNS: the node's own queries stay with the DNS Service's endpoints: ${error.message}`));
    }
    // A restarted worker knows no name: it gets them all now, not at the next change.
    if (this.agentSynced && this.behind) this.enqueue({ services: 'full', kinds: new Set() }).catch((error: Error) => this.log.error(error.message));
  }

  /** The current worker (or the setup) failed: tell whoever waits, and start another after a backoff. */
  private gone(worker: Worker | undefined, reason: string): void {
    if (this.stopping || worker !== this.worker) return;
    const wasServing = this.status === 'serving';
    clearTimeout(this.startTimer);
    clearInterval(this.pingTimer);
    this.worker = undefined;
    this.status = 'down';
    this.reason = reason;
    this.behind = true;
    this.metrics?.up.set(0);
    for (const [seq, waiter] of this.applied) {
      this.applied.delete(seq);
      waiter.reject(new Error(`cluster DNS worker ${reason}`));
    }
    this.settle();
    if (worker) void this.terminate(worker);
    if (wasServing && performance.now() - this.servingSince >= STABLE_MS) this.failures = 0;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.failures++);
    this.log.error(`cluster DNS worker ${reason}; starting another in ${delay / 1000}s`);
    if (wasServing && this.network?.addressesDieWithProcess) {
      withdrawHostClients(this.options.addresses).catch((error: Error) => this.log.error(`cluster DNS: ${error.message}`));
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      this.metrics?.restarts.inc();
      this.launch();
    }, delay);
  }

  /** Between updates (which prove the same): a worker whose loop no longer turns is restarted, not left answering nothing. */
  private ping(worker: Worker): void {
    if (this.applied.size > 0) return;
    const seq = ++this.seq;
    const answered = new Promise<void>((resolve, reject) => this.applied.set(seq, { resolve, reject }));
    worker.postMessage({ type: 'ping', seq } satisfies Ping);
    withTimeout(answered, APPLY_TIMEOUT_MS, 'a ping').then(
      () => this.applied.delete(seq),
      () => {
        this.applied.delete(seq);
        if (worker === this.worker) this.gone(worker, `it did not answer for ${APPLY_TIMEOUT_MS / 1000}s`);
      },
    );
  }

  private async terminate(worker: Worker): Promise<void> {
    await withTimeout(worker.terminate(), TERMINATE_TIMEOUT_MS, 'terminating the cluster DNS worker').catch((error: Error) => this.log.error(error.message));
  }

  /** CoreDNS's health plugin: 200 OK while it serves. */
  private healthReport(): { ok: boolean; text: string } {
    return this.status === 'serving' ? { ok: true, text: 'OK' } : { ok: false, text: `cluster DNS worker ${this.status === 'starting' ? 'starting' : `down: ${this.reason}`}` };
  }

  /** CoreDNS's ready plugin: 200 OK once the names of a synced state are served. */
  private readyReport(): { ok: boolean; text: string } {
    const why = this.notReady();
    return why === undefined ? { ok: true, text: 'OK' } : { ok: false, text: why };
  }

  private record(metrics: ServerMetrics): void {
    const m = this.metrics!;
    const common = { zone: ZONE_LABEL, view: VIEW_LABEL };
    for (const [key, count] of Object.entries(metrics.requests)) {
      const [server, proto, family, type] = key.split('|');
      m.requests.inc({ server, ...common, proto, family, type }, count);
    }
    for (const [key, count] of Object.entries(metrics.responses)) {
      const [server, rcode, plugin] = key.split('|');
      m.responses.inc({ server, ...common, rcode, plugin }, count);
    }
    for (const [server, { buckets, sum }] of Object.entries(metrics.durations)) m.durations.add({ server, ...common }, buckets, sum);
    const cache = { zones: ZONE_LABEL, view: VIEW_LABEL };
    for (const [key, count] of Object.entries(metrics.cacheHits)) {
      const [server, type] = key.split('|');
      m.cacheHits.inc({ server, type, ...cache }, count);
      m.cacheRequests.inc({ server, ...cache }, count);
    }
    for (const [server, count] of Object.entries(metrics.cacheMisses)) {
      m.cacheMisses.inc({ server, ...cache }, count);
      m.cacheRequests.inc({ server, ...cache }, count);
    }
    // One cache for every address: its size under the first one's server label.
    for (const type of ['success', 'denial'] as const) m.cacheEntries.set({ server: this.servers[0], type, ...cache }, metrics.cacheEntries[type]);
    for (const [key, { buckets, sum }] of Object.entries(metrics.upstreamDurations)) {
      const [to, rcode] = key.split('|');
      m.upstreamDurations.add({ proxy_name: 'forward', to, rcode }, buckets, sum);
    }
    if (metrics.concurrentRejects > 0) m.concurrentRejects.inc(metrics.concurrentRejects);
    for (const [to, count] of Object.entries(metrics.upstreamFailures)) m.upstreamFailures.inc({ to }, count);
    for (const [key, count] of Object.entries(metrics.dropped)) {
      const [server, reason] = key.split('|');
      m.dropped.inc({ server, reason }, count);
    }
  }
}


function answerProbe(res: ServerResponse, report: { ok: boolean; text: string } | undefined): void {
  if (!report) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('404 page not found\n');
    return;
  }
  res.writeHead(report.ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(report.text);
}

/**
 * CoreDNS's metrics, names, labels and buckets (plugin/metrics/vars, plugin/cache/metrics.go,
 * plugin/pkg/proxy/metrics.go, plugin/forward/metrics.go), so its dashboards and alerts work; and
 * kubenft's own for what CoreDNS has no name for.
 */
function dnsMetrics(registry: Registry) {
  const registers = [registry];
  return {
    requests: new Counter({ name: 'coredns_dns_requests_total', help: 'Counter of DNS requests made per zone, protocol and family.', labelNames: ['server', 'zone', 'view', 'proto', 'family', 'type'], registers }),
    responses: new Counter({ name: 'coredns_dns_responses_total', help: 'Counter of response status codes.', labelNames: ['server', 'zone', 'view', 'rcode', 'plugin'], registers }),
    durations: new CountedHistogram('coredns_dns_request_duration_seconds', 'Histogram of the time (in seconds) each request took per zone.', ['server', 'zone', 'view'], DNS_DURATION_BUCKETS, registry),
    cacheEntries: new Gauge({ name: 'coredns_cache_entries', help: 'The number of elements in the cache.', labelNames: ['server', 'type', 'zones', 'view'], registers }),
    cacheRequests: new Counter({ name: 'coredns_cache_requests_total', help: 'The count of cache requests.', labelNames: ['server', 'zones', 'view'], registers }),
    cacheHits: new Counter({ name: 'coredns_cache_hits_total', help: 'The count of cache hits.', labelNames: ['server', 'type', 'zones', 'view'], registers }),
    cacheMisses: new Counter({ name: 'coredns_cache_misses_total', help: 'The count of cache misses. Deprecated, derive misses from cache hits/requests counters.', labelNames: ['server', 'zones', 'view'], registers }),
    upstreamDurations: new CountedHistogram('coredns_proxy_request_duration_seconds', 'Histogram of the time each request took.', ['proxy_name', 'to', 'rcode'], DNS_DURATION_BUCKETS, registry),
    concurrentRejects: new Counter({ name: 'coredns_forward_max_concurrent_rejects_total', help: 'Counter of the number of queries rejected because the concurrent queries were at maximum.', registers }),
    upstreamFailures: new Counter({ name: 'kubenft_dns_upstream_failures_total', help: 'Upstream queries that failed, timed out or answered SERVFAIL (to: the upstream); the next upstream is asked.', labelNames: ['to'], registers }),
    dropped: new Counter({
      name: 'kubenft_dns_dropped_requests_total', labelNames: ['server', 'reason'], registers,
      help: 'UDP queries dropped unanswered, by reason: oversized (over the 4 KiB a socket reads), backlog (the queue to the JS server was full).',
    }),
    up: new Gauge({ name: 'kubenft_dns_worker_up', help: 'Whether the cluster DNS worker serves (1) or is starting or restarting (0).', registers }),
    restarts: new Counter({ name: 'kubenft_dns_worker_restarts_total', help: 'Cluster DNS workers started again after one exited, failed to listen or stopped answering.', registers }),
  };
}
