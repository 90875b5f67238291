import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { OptionsError, type StateChanges, type StateDataplane, type WatchNeeds } from '../capability.js';
import { IngressPlanner, type IngressPlanInput, type IngressProblem, type MissingSecret, type RouteTable, missingSecretText } from './routes.js';
import { type ClusterState, withNormalizers } from '../cluster/cluster-state.js';
import { INGRESS_LISTS } from './lists.js';
import {
  type IngressClassInfo, type IngressInfo, type TlsSecretInfo, normalizeIngress, normalizeIngressClass, normalizeTlsSecret,
} from './objects.js';
import { endpointPortViews } from '../cluster/service-ports.js';
import { nodeContextOf } from '../cluster/topology.js';
import type { DefaultCertificate } from './proxy-protocol.js';
import { type IngressProxy, type RequestMetrics, registerRequestMetrics } from './proxy.js';
import { WorkerProxy, type WorkerProxyOptions, listenerOf } from './worker-proxy.js';
import { type HaproxyMetrics, HaproxyProxy, netnsHaproxyDir } from './haproxy/proxy.js';
import type { HaproxySettings } from './haproxy/config.js';
import { findHaproxy } from '../kernel/haproxy-process.js';
import { availableParallelism } from 'node:os';
import type { IngressStatusWriter } from './status.js';

// The ingress controller as a dataplane beside the rules: every good sync replans the hosts it
// touches (routes.ts) and hands those changes to the proxy that serves them (proxy.ts: the
// built-in's workers, or HAProxy with --ingress-dataplane=haproxy).

export interface IngressOptions extends Omit<WorkerProxyOptions, 'name'> {
  /** --ingress-class: the legacy annotation value served (and the IngressClass name by convention). */
  className: string;
  /** --ingress-default-certificate NAMESPACE/NAME. */
  defaultCertificate?: string;
  /** --ingress-status-address: what status.loadBalancer shows (default: the ingress Service's addresses, else the status writer's node addresses). */
  statusAddresses: string[];
  /** --ingress-service NAMESPACE/NAME: the Service whose load-balancer and external IPs reach the proxy. */
  service?: string;
  /** --ingress-dataplane: what serves the routes (unset: HAProxy where it is installed). */
  dataplane?: IngressDataplaneName;
  /** --ingress-haproxy-dir: HAProxy's files, in a subdirectory per network namespace. */
  haproxyDir: string;
}

export type IngressDataplaneName = 'builtin' | 'haproxy';

/** What serves the routes: --ingress-dataplane, else HAProxy where a haproxy is on PATH, else the built-in; and the haproxy binary. */
export function chosenDataplane(options: Pick<IngressOptions, 'dataplane'>): { name: IngressDataplaneName; haproxy?: string } {
  if (options.dataplane === 'builtin') return { name: 'builtin' };
  const haproxy = findHaproxy();
  if (haproxy) return { name: 'haproxy', haproxy };
  if (options.dataplane === 'haproxy') throw new OptionsError('--ingress-dataplane=haproxy: no haproxy on PATH: install it (Debian: apt-get install haproxy) or use --ingress-dataplane=builtin');
  return { name: 'builtin' };
}

/** Agent mode: where the elected status writer reaches the API server. */
export interface IngressStatusSource {
  kubeconfig?: string;
  master?: string;
}

export const INGRESS_WATCH: WatchNeeds = withNormalizers(INGRESS_LISTS, { Ingress: normalizeIngress, IngressClass: normalizeIngressClass, Secret: normalizeTlsSecret });
/** A change to any of these kinds can change the routes. */
const INGRESS_KINDS = INGRESS_WATCH.kinds!.map(({ kind }) => kind);

const pemOf = (secret: TlsSecretInfo | undefined): DefaultCertificate => (secret ? { cert: secret.cert, key: secret.key } : null);

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
  private readonly planner = new IngressPlanner();
  private table: RouteTable | undefined;
  private proxy: IngressProxy | undefined;
  private reported = new Set<string>();
  private reportedMissing = new Map<string, string>();
  private metrics!: RequestMetrics & {
    problems: Gauge;
    missingSecrets: Gauge;
    served: Gauge;
  };

  private status: IngressStatusWriter | undefined;
  private haproxyMetrics: HaproxyMetrics | undefined;

  /** The haproxy binary, when HAProxy serves the routes. */
  private readonly haproxy: string | undefined;

  constructor(private readonly options: IngressOptions, private readonly log: Logger, private readonly statusSource?: IngressStatusSource) {
    const chosen = chosenDataplane(options);
    this.haproxy = chosen.haproxy;
    const why = options.dataplane ? '--ingress-dataplane' : chosen.haproxy ? 'haproxy is installed' : 'no haproxy on PATH';
    log.info({ dataplane: chosen.name, haproxy: chosen.haproxy }, `ingress: served by ${chosen.name === 'haproxy' ? `HAProxy (${chosen.haproxy})` : 'the built-in proxy'}: ${why}`);
  }

  readonly watch = INGRESS_WATCH;

  attach(_state: ClusterState, registry: Registry): void {
    const registers = [registry];
    this.metrics = {
      ...registerRequestMetrics(registry, 'ingress', 'ingress', 'Ingress'),
      problems: new Gauge({ name: 'kubenft_ingress_problems', help: 'Ingresses (or parts of them) skipped: invalid, unknown backend, conflict', registers }),
      missingSecrets: new Gauge({ name: 'kubenft_ingress_missing_secrets', help: 'TLS Secrets named by served Ingresses that are missing or not kubernetes.io/tls, per Ingress: their hosts are served with the default certificate', registers }),
      served: new Gauge({ name: 'kubenft_ingress_served', help: 'Ingresses served by this controller', registers }),
    };
    if (this.haproxy) {
      this.haproxyMetrics = {
        reloads: new Counter({ name: 'kubenft_ingress_haproxy_reloads_total', help: 'HAProxy reloads (seamless: the listeners pass over), by reason: what the runtime API could not change', labelNames: ['reason'], registers }),
        restarts: new Counter({ name: 'kubenft_ingress_haproxy_restarts_total', help: 'Times HAProxy was found gone and started again with the last plan', registers }),
      };
    }
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (this.table && !this.concerns(changes)) return;
    const { table, problems, missingSecrets, changes: routeChanges } = this.planner.plan(ingressPlanInput(state, this.options.className), changes.services);
    const defaultCertificate = this.defaultCertificateOf(state, problems);
    this.report(problems);
    this.reportMissing(missingSecrets, state);
    this.metrics.served.set(table.served.length);
    this.table = table;
    this.proxy ??= this.startProxy();
    await this.proxy.apply({ table, changes: routeChanges, defaultCertificate: pemOf(defaultCertificate) });
    if (this.statusSource) await this.publishStatus(state, table);
  }

  private startProxy(): IngressProxy {
    if (!this.haproxy) return new WorkerProxy({ name: 'ingress', ...this.options }, this.log, this.metrics);
    const settings: HaproxySettings = {
      httpAddress: listenerOf(this.options.httpAddress), httpsAddress: listenerOf(this.options.httpsAddress),
      maxBodyBytes: this.options.maxBodyBytes, maxHeaderBytes: this.options.maxHeaderBytes,
      clientTimeoutMs: this.options.clientTimeoutMs, backendTimeoutMs: this.options.backendTimeoutMs, connectTimeoutMs: this.options.connectTimeoutMs,
      threads: this.options.workers || availableParallelism(),
    };
    return new HaproxyProxy(this.haproxy, netnsHaproxyDir(this.options.haproxyDir), settings, this.log, this.haproxyMetrics!, this.metrics);
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

  async stop(): Promise<void> {
    await this.status?.stop();
    await this.proxy?.stop();
  }
}
