import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { generatedDefaultCertificate, type IngressProxy, type ProxyUpdate, type RequestMetrics } from './proxy.js';
import type { DefaultCertificate, FromWorker, ProxySettings, ToWorker } from './proxy-protocol.js';
import type { RouteTable } from './routes.js';
import { splitHostPort } from '../kernel/addresses.js';

// The built-in dataplane (--ingress-dataplane=builtin): the proxy's worker processes
// (proxy-worker.ts), to which every plan goes as the changes of one sync, which they apply in
// one step (a starting worker gets the whole table). No process restarts and no listener closes
// on any change, so open connections never notice one.

/** What the workers are started with (the ingress options' part for them). */
export interface WorkerProxyOptions {
  /** Names its workers in logs ('ingress', 'gateway HTTP'). */
  name: string;
  /** host:port, or undefined when that listener is off. */
  httpAddress?: string;
  httpsAddress?: string;
  maxBodyBytes: number;
  maxHeaderBytes: number;
  clientTimeoutMs: number;
  backendTimeoutMs: number;
  connectTimeoutMs: number;
  /** Worker processes; 0: one per core. */
  workers: number;
}

const WORKER_SCRIPT = fileURLToPath(new URL('./proxy-worker.js', import.meta.url));
/** A worker loads, takes its settings and listens in well under a second; this is for one that never does. */
const WORKER_START_TIMEOUT_MS = 30_000;

/** A listener's address, validated when the options were read. */
export const listenerOf = (text: string | undefined) => (text ? splitHostPort(text) : undefined);

export class WorkerProxy implements IngressProxy {
  private readonly workers = new Set<Worker>();
  private settings: ProxySettings | undefined;
  private table: RouteTable | undefined;
  /** Counts the plans sent to the workers: a worker applies changes only on top of the generation before. */
  private generation = 0;
  /** The default certificate as last sent. */
  private defaultCertificate: DefaultCertificate = null;
  private stopping = false;
  private readonly connectionsByWorker = new Map<number, number>();

  constructor(private readonly options: WorkerProxyOptions, private readonly log: Logger, private readonly metrics: RequestMetrics) {}

  async apply({ table, changes, defaultCertificate }: ProxyUpdate): Promise<void> {
    this.table = table;
    this.generation++;
    const sameDefault = defaultCertificate?.cert === this.defaultCertificate?.cert && defaultCertificate?.key === this.defaultCertificate?.key;
    this.defaultCertificate = defaultCertificate;
    const message: ToWorker = changes
      ? { type: 'route-changes', generation: this.generation, changes, ...(sameDefault ? {} : { defaultCertificate }) }
      : this.wholeRoutes();
    if (this.workers.size === 0) await this.startWorkers();
    for (const worker of this.workers) worker.send(message);
  }

  /** The whole table, for a starting worker, one that missed a generation, or after a whole replan. */
  private wholeRoutes(): ToWorker {
    return { type: 'routes', generation: this.generation, table: this.table!, defaultCertificate: this.defaultCertificate };
  }

  private async startWorkers(): Promise<void> {
    const defaultCertificate = await generatedDefaultCertificate();
    this.settings = {
      httpAddress: listenerOf(this.options.httpAddress), httpsAddress: listenerOf(this.options.httpsAddress), defaultCertificate,
      maxBodyBytes: this.options.maxBodyBytes, maxHeaderBytes: this.options.maxHeaderBytes,
      clientTimeoutMs: this.options.clientTimeoutMs, backendTimeoutMs: this.options.backendTimeoutMs, connectTimeoutMs: this.options.connectTimeoutMs,
    };
    // The agent opens each listening socket once and every worker accepts on it (SCHED_NONE): the
    // agent's event loop never touches a connection.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: WORKER_SCRIPT, args: [], serialization: 'advanced' });
    const count = this.options.workers || availableParallelism();
    await Promise.all(Array.from({ length: count }, () => this.fork()));
    this.log.info({ workers: count, http: this.options.httpAddress, https: this.options.httpsAddress }, `${this.options.name} proxy listening`);
  }

  private fork(): Promise<void> {
    const worker = cluster.fork();
    this.workers.add(worker);
    let listened = false;
    const listening = new Promise<void>((resolve, reject) => {
      // One that never says it listens (stuck loading, or in a bind) is killed: the update fails instead of waiting for ever.
      const startTimer = setTimeout(() => {
        reject(new Error(`${this.options.name} worker ${worker.process.pid} did not listen within ${WORKER_START_TIMEOUT_MS / 1000}s`));
        worker.process.kill('SIGKILL');
      }, WORKER_START_TIMEOUT_MS);
      worker.once('exit', () => clearTimeout(startTimer));
      worker.on('message', (message: FromWorker) => {
        // A worker asks once it is loaded: messages sent before it listens for them would be lost.
        if (message.type === 'ready') {
          worker.send({ type: 'settings', settings: this.settings! } satisfies ToWorker);
          if (this.table) worker.send(this.wholeRoutes());
        } else if (message.type === 'resend-routes') {
          worker.send(this.wholeRoutes());
        } else if (message.type === 'listening') {
          listened = true;
          clearTimeout(startTimer);
          resolve();
        }
        else this.recordStats(worker.id, message);
      });
      worker.once('exit', (code, signal) => {
        reject(new Error(`${this.options.name} worker exited (${signal ?? code}) before listening`));
        this.workers.delete(worker);
        this.countConnections(worker.id, 0);
        // One that never listened (an address in use, say) fails the update instead: no restart loop.
        if (this.stopping || !listened) return;
        this.log.error(`${this.options.name} worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
        void this.fork().catch((error: Error) => this.log.error(error.message));
      });
    });
    return listening;
  }

  private recordStats(workerId: number, stats: FromWorker & { type: 'stats' }): void {
    const { owner } = this.metrics;
    for (const { ingress, host, path, status, count } of stats.requests) this.metrics.requests.inc({ [owner]: ingress, host, path, status: String(status) }, count);
    for (const { ingress, buckets, sum } of stats.durations) this.metrics.durations.add({ [owner]: ingress }, buckets, sum);
    for (const [backend, count] of Object.entries(stats.upstreamErrors)) this.metrics.upstreamErrors.inc({ backend }, count);
    this.countConnections(workerId, stats.activeConnections);
  }

  /**
   * The gauge moves by this worker's change, not to this proxy's total: proxies that share the
   * metrics (the Gateway's HTTP and HTTPS listeners) then add up instead of overwriting each other.
   */
  private countConnections(workerId: number, connections: number): void {
    this.metrics.connections.inc(connections - (this.connectionsByWorker.get(workerId) ?? 0));
    if (connections === 0) this.connectionsByWorker.delete(workerId);
    else this.connectionsByWorker.set(workerId, connections);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.workers].map((worker) => new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.disconnect();
      setTimeout(() => worker.process.kill('SIGKILL'), 5_000).unref();
    })));
  }
}
