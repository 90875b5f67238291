import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { StateChanges, StateDataplane, WatchNeeds } from '../capability.js';
import { IngressPlanner, type IngressPlanInput, type IngressProblem, type MissingSecret, type RouteTable, missingSecretText } from './routes.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import {
  type IngressClassInfo, type IngressInfo, type TlsSecretInfo, normalizeIngress, normalizeIngressClass, normalizeTlsSecret,
} from './objects.js';
import { endpointPortViews } from '../cluster/service-ports.js';
import { splitHostPort } from '../kernel/addresses.js';
import { nodeContextOf } from '../cluster/topology.js';
import { CountedHistogram } from '../kernel/counted-histogram.js';
import { generateDefaultCertificate } from './default-certificate.js';
import { INGRESS_DURATION_BUCKETS, type DefaultCertificate, type FromWorker, type ProxySettings, type ToWorker } from './proxy-protocol.js';
import type { IngressStatusWriter } from './status.js';

// The ingress controller as a dataplane beside the rules: every good sync replans the hosts it
// touches (routes.ts) and sends the proxy's worker processes those changes, which they
// apply in one step (a starting worker gets the whole table). No process restarts and no listener
// closes on any change, so open connections never notice one.

export interface IngressOptions {
  /** --ingress-class: the legacy annotation value served (and the IngressClass name by convention). */
  className: string;
  /** host:port, or undefined when that listener is off. */
  httpAddress?: string;
  httpsAddress?: string;
  /** --ingress-default-certificate NAMESPACE/NAME. */
  defaultCertificate?: string;
  maxBodyBytes: number;
  maxHeaderBytes: number;
  clientTimeoutMs: number;
  backendTimeoutMs: number;
  connectTimeoutMs: number;
  /** Worker processes; 0: one per core. */
  workers: number;
  /** --ingress-status-address: what status.loadBalancer shows (default: the ingress Service's addresses, else the status writer's node addresses). */
  statusAddresses: string[];
  /** --ingress-service NAMESPACE/NAME: the Service whose load-balancer and external IPs reach the proxy. */
  service?: string;
}

/** Agent mode: where the elected status writer reaches the API server. */
export interface IngressStatusSource {
  kubeconfig?: string;
  master?: string;
}

/**
 * The ingress routes to headless services' endpoints too, and reads Ingresses, their classes and
 * TLS Secrets (only those, selected by the server: it never reads another Secret's data).
 */
export const INGRESS_WATCH: WatchNeeds = {
  headlessSlices: true,
  kinds: [
    { kind: 'Ingress', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingresses', normalize: normalizeIngress },
    { kind: 'IngressClass', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingressclasses', normalize: normalizeIngressClass },
    { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets', fieldSelector: 'type=kubernetes.io/tls', normalize: normalizeTlsSecret },
  ],
};
/** A change to any of these kinds can change the routes. */
const INGRESS_KINDS = INGRESS_WATCH.kinds!.map(({ kind }) => kind);
const WORKER_SCRIPT = fileURLToPath(new URL('./proxy-worker.js', import.meta.url));
/** A worker loads, takes its settings and listens in well under a second; this is for one that never does. */
const WORKER_START_TIMEOUT_MS = 30_000;

const pemOf = (secret: TlsSecretInfo | undefined): DefaultCertificate => (secret ? { cert: secret.cert, key: secret.key } : null);

/** A listener's address, validated when the options were read. */
const listenerOf = (text: string | undefined) => (text ? splitHostPort(text) : undefined);

/**
 * What the served Ingresses' status.loadBalancer shows, chosen as ingress-nginx does: the
 * --ingress-status-address list, else the --ingress-service's load-balancer and external IPs (none
 * while it has none), else the node's addresses.
 */
export function statusAddresses(options: Pick<IngressOptions, 'statusAddresses' | 'service'>, state: ClusterState, nodeIPs: string[]): string[] {
  if (options.statusAddresses.length > 0) return options.statusAddresses;
  if (!options.service) return nodeIPs;
  const service = state.services.get(options.service);
  return service ? [...new Set([...service.loadBalancerIPs, ...service.externalIPs])] : [];
}

/** What the route planner reads from the state (the agent's syncs, and `kubenft services`). */
export function ingressPlanInput(state: ClusterState, ingressClass: string): IngressPlanInput {
  return {
    ingresses: state.objectsOf<IngressInfo>('Ingress'),
    classes: state.objectsOf<IngressClassInfo>('IngressClass').values(),
    secrets: state.objectsOf<TlsSecretInfo | null>('Secret'),
    servicePorts: (key) => endpointPortViews(state, key),
    node: nodeContextOf(state),
    ingressClass,
  };
}

export class IngressDataplane implements StateDataplane {
  readonly name = 'ingress';
  private readonly workers = new Set<Worker>();
  private settings: ProxySettings | undefined;
  private readonly planner = new IngressPlanner();
  private table: RouteTable | undefined;
  /** Counts the plans sent to the workers: a worker applies changes only on top of the generation before. */
  private generation = 0;
  /** --ingress-default-certificate's Secret as last sent. */
  private defaultCertificate: TlsSecretInfo | undefined;
  private reported = new Set<string>();
  private reportedMissing = new Map<string, string>();
  private stopping = false;
  private readonly connectionsByWorker = new Map<number, number>();
  private metrics!: {
    requests: Counter<'ingress' | 'host' | 'path' | 'status'>;
    durations: CountedHistogram;
    upstreamErrors: Counter<'backend'>;
    connections: Gauge;
    problems: Gauge;
    missingSecrets: Gauge;
    served: Gauge;
  };

  private status: IngressStatusWriter | undefined;

  constructor(private readonly options: IngressOptions, private readonly log: Logger, private readonly statusSource?: IngressStatusSource) {}

  readonly watch = INGRESS_WATCH;

  attach(_state: ClusterState, registry: Registry): void {
    const registers = [registry];
    this.metrics = {
      requests: new Counter({ name: 'kubenft_ingress_requests_total', help: 'Requests answered by the ingress proxy, by Ingress, rule host, rule path and status', labelNames: ['ingress', 'host', 'path', 'status'], registers }),
      durations: new CountedHistogram('kubenft_ingress_request_duration_seconds', 'Time from a request to its response header, by Ingress', ['ingress'], INGRESS_DURATION_BUCKETS, registry),
      upstreamErrors: new Counter({ name: 'kubenft_ingress_upstream_errors_total', help: 'Failed attempts to reach an endpoint (connection refused or reset, timeouts), by backend', labelNames: ['backend'], registers }),
      connections: new Gauge({ name: 'kubenft_ingress_active_connections', help: 'Client connections open on the ingress proxy', registers }),
      problems: new Gauge({ name: 'kubenft_ingress_problems', help: 'Ingresses (or parts of them) skipped: invalid, unknown backend, conflict', registers }),
      missingSecrets: new Gauge({ name: 'kubenft_ingress_missing_secrets', help: 'TLS Secrets named by served Ingresses that are missing or not kubernetes.io/tls, per Ingress: their hosts are served with the default certificate', registers }),
      served: new Gauge({ name: 'kubenft_ingress_served', help: 'Ingresses served by this controller', registers }),
    };
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (this.table && !this.concerns(changes)) return;
    const { table, problems, missingSecrets, changes: routeChanges } = this.planner.plan(ingressPlanInput(state, this.options.className), changes.services);
    const defaultCertificate = this.defaultCertificateOf(state, problems);
    this.report(problems);
    this.reportMissing(missingSecrets, state);
    this.metrics.served.set(table.served.length);
    this.table = table;
    this.generation++;
    const message: ToWorker = routeChanges
      ? { type: 'route-changes', generation: this.generation, changes: routeChanges, ...(defaultCertificate !== this.defaultCertificate ? { defaultCertificate: pemOf(defaultCertificate) } : {}) }
      : this.wholeRoutes(defaultCertificate);
    this.defaultCertificate = defaultCertificate;
    if (this.workers.size === 0) await this.startWorkers();
    for (const worker of this.workers) worker.send(message);
    if (this.statusSource) await this.publishStatus(state, table);
  }

  /** The whole table, for a starting worker, one that missed a generation, or after a whole replan. */
  private wholeRoutes(defaultCertificate = this.defaultCertificate): ToWorker {
    return { type: 'routes', generation: this.generation, table: this.table!, defaultCertificate: pemOf(defaultCertificate) };
  }

  /**
   * Whether a sync can change the routes: a full one, a change to Ingresses, classes or Secrets, or
   * to a Service the routes point at. Other syncs (an endpoint of some other Service) replan nothing.
   */
  private concerns(changes: StateChanges): boolean {
    if (changes.services === 'full' || INGRESS_KINDS.some((kind) => changes.kinds.has(kind))) return true;
    for (const key of changes.services) if (this.planner.uses(key) || key === this.options.service) return true;
    return false;
  }

  private async publishStatus(state: ClusterState, table: RouteTable): Promise<void> {
    if (!this.status) {
      // client-node is large: loaded only in agent mode, as the API source is.
      const [{ loadKubeConfig }, { DEFAULT_STATUS_LEASE, IngressStatusWriter }] = await Promise.all([import('../cluster/kubernetes.js'), import('./status.js')]);
      this.status = new IngressStatusWriter(loadKubeConfig(this.statusSource!), { ...DEFAULT_STATUS_LEASE, identity: state.nodeName }, this.log);
      this.status.start();
    }
    const ingresses = state.objectsOf<IngressInfo>('Ingress');
    const targets = table.served.map((key) => ingresses.get(key)!).map((ingress) => ({ namespace: ingress.namespace, name: ingress.name, current: ingress.statusAddresses }));
    await this.status.publish(targets, statusAddresses(this.options, state, state.node?.addresses ?? []));
  }

  /** --ingress-default-certificate's Secret, or undefined (reported) when there is none. */
  private defaultCertificateOf(state: ClusterState, problems: IngressProblem[]): TlsSecretInfo | undefined {
    const key = this.options.defaultCertificate;
    if (!key) return undefined;
    const secret = state.objectsOf<TlsSecretInfo | null>('Secret').get(key);
    if (!secret) {
      problems.push({ object: `Secret ${key}`, reason: '--ingress-default-certificate names no kubernetes.io/tls Secret: the generated certificate is served instead' });
      return undefined;
    }
    return secret;
  }

  /** Each problem is logged once, when it appears; the gauge holds how many there are now. */
  private report(problems: IngressProblem[]): void {
    const now = new Set(problems.map((problem) => `${problem.object}: ${problem.reason}`));
    for (const text of now) if (!this.reported.has(text)) this.log.error(`ingress: skipped ${text}`);
    this.reported = now;
    this.metrics.problems.set(now.size);
  }

  /** Each missing Secret is logged once when it goes missing, and once when it arrives. */
  private reportMissing(missingSecrets: MissingSecret[], state: ClusterState): void {
    const now = new Map(missingSecrets.map((missing) => [`${missing.ingress} ${missing.secret}`, missingSecretText(missing)]));
    for (const [key, text] of now) if (this.reportedMissing.get(key) !== text) this.log.warn(`ingress: ${text}`);
    for (const [key] of this.reportedMissing) {
      if (now.has(key)) continue;
      const [ingress, secret] = key.split(' ');
      if (state.objectsOf<TlsSecretInfo | null>('Secret').get(secret)) this.log.info(`ingress: Ingress ${ingress}: TLS Secret ${secret} is there: its certificate is served`);
    }
    this.reportedMissing = now;
    this.metrics.missingSecrets.set(now.size);
  }

  private async startWorkers(): Promise<void> {
    const defaultCertificate = generateDefaultCertificate();
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
    this.log.info({ workers: count, http: this.options.httpAddress, https: this.options.httpsAddress }, 'ingress proxy listening');
  }

  private fork(): Promise<void> {
    const worker = cluster.fork();
    this.workers.add(worker);
    let listened = false;
    const listening = new Promise<void>((resolve, reject) => {
      // One that never says it listens (stuck loading, or in a bind) is killed: the update fails instead of waiting for ever.
      const startTimer = setTimeout(() => {
        reject(new Error(`ingress worker ${worker.process.pid} did not listen within ${WORKER_START_TIMEOUT_MS / 1000}s`));
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
        reject(new Error(`ingress worker exited (${signal ?? code}) before listening`));
        this.workers.delete(worker);
        this.connectionsByWorker.delete(worker.id);
        // One that never listened (an address in use, say) fails the update instead: no restart loop.
        if (this.stopping || !listened) return;
        this.log.error(`ingress worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
        void this.fork().catch((error: Error) => this.log.error(error.message));
      });
    });
    return listening;
  }

  private recordStats(workerId: number, stats: FromWorker & { type: 'stats' }): void {
    for (const { ingress, host, path, status, count } of stats.requests) this.metrics.requests.inc({ ingress, host, path, status: String(status) }, count);
    for (const { ingress, buckets, sum } of stats.durations) this.metrics.durations.add({ ingress }, buckets, sum);
    for (const [backend, count] of Object.entries(stats.upstreamErrors)) this.metrics.upstreamErrors.inc({ backend }, count);
    this.connectionsByWorker.set(workerId, stats.activeConnections);
    this.metrics.connections.set([...this.connectionsByWorker.values()].reduce((sum, count) => sum + count, 0));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.status?.stop();
    await Promise.all([...this.workers].map((worker) => new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.disconnect();
      setTimeout(() => worker.process.kill('SIGKILL'), 5_000).unref();
    })));
  }
}
