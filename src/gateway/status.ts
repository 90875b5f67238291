import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ClusterState } from '../cluster/cluster-state.js';
import { LeaderLease } from '../cluster/leader-lease.js';
import { GATEWAY_CONTROLLER, GATEWAY_GROUP, type GatewayClassInfo, type GatewayInfo, type HTTPRouteInfo } from './objects.js';
import type { Condition, GatewayPlan, RouteParentStatus, RouteStatus } from './plan.js';

// The status of the served GatewayClass, its Gateways and their HTTPRoutes (Accepted,
// ResolvedRefs, Programmed, with observedGeneration and the spec's reasons), written by one agent
// per cluster: the holder of a Lease of its own (cluster/leader-lease.ts), as the Ingress status
// is. A status already as planned is not written again; a condition keeps its lastTransitionTime
// while its status stays.

export const GATEWAY_STATUS_LEASE = { namespace: 'kube-system', leaseName: 'kubenft-gateway-status', leaseDurationMs: 15_000 };

type Written = {
  kind: 'GatewayClass' | 'Gateway' | 'HTTPRoute'; namespace?: string; name: string; status: Record<string, unknown>; current: unknown;
  /** The API server's copy already says what the plan does (computed once per target). */
  settled?: boolean;
};

interface StoredCondition extends Condition {
  lastTransitionTime?: string;
}

/** A status as compared: without transition times, which only the API server's copy has. */
const comparable = (value: unknown) => JSON.stringify(value, (key, item) => (key === 'lastTransitionTime' ? undefined : item));

/** The conditions with the times they last changed: kept from `previous` while their status is the same. */
function timed(conditions: Condition[], previous: unknown): StoredCondition[] {
  const before = Array.isArray(previous) ? previous as StoredCondition[] : [];
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return conditions.map((condition) => {
    const kept = before.find((each) => each.type === condition.type && each.status === condition.status)?.lastTransitionTime;
    return { ...condition, lastTransitionTime: kept ?? now };
  });
}

const PLURALS = { GatewayClass: 'gatewayclasses', Gateway: 'gateways', HTTPRoute: 'httproutes' };

export class GatewayStatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly lease: LeaderLease;
  private targets: Written[] = [];
  /** What this agent wrote, by kind/namespace/name: a write is not repeated while the watch catches up. */
  private readonly written = new Map<string, string>();
  /**
   * Each route's target, kept while its planned status (the planner keeps an unchanged route's
   * object) and the API server's copy stay the same: at 10,000 routes a publication then costs a
   * lookup per route, not a JSON parse and two serializations.
   */
  private routeTargets = new Map<string, { planned: RouteStatus; statusText: string; target: Written }>();

  constructor(config: KubeConfig, identity: string, private readonly log: Logger, options = GATEWAY_STATUS_LEASE) {
    this.api = config.makeApiClient(CustomObjectsApi);
    this.lease = new LeaderLease(config, { ...options, identity }, 'gateway status', log, () => this.write());
  }

  get isLeader(): boolean {
    return this.lease.isLeader;
  }

  start(): void {
    this.lease.start();
  }

  stop(): Promise<void> {
    return this.lease.stop();
  }

  /** The plan's statuses, against what the API server holds (the state's copies); written now if this agent leads. */
  publish(plan: GatewayPlan, state: ClusterState, nodeAddresses: string[]): Promise<void> {
    const targets: Written[] = [];
    if (plan.classStatus) {
      const current = state.objectsOf<GatewayClassInfo>('GatewayClass').get(plan.classStatus.name);
      targets.push({ kind: 'GatewayClass', name: plan.classStatus.name, status: { conditions: plan.classStatus.conditions }, current: { conditions: current?.conditions } });
    }
    const gateways = state.objectsOf<GatewayInfo>('Gateway');
    for (const gateway of plan.gateways) {
      const status = {
        addresses: nodeAddresses.map((value) => ({ type: 'IPAddress', value })),
        conditions: gateway.conditions,
        listeners: gateway.listeners,
      };
      targets.push({ kind: 'Gateway', namespace: gateway.namespace, name: gateway.name, status, current: JSON.parse(gateways.get(`${gateway.namespace}/${gateway.name}`)?.statusText ?? '{}') });
    }
    const routes = state.objectsOf<HTTPRouteInfo>('HTTPRoute');
    const routeTargets = new Map<string, { planned: RouteStatus; statusText: string; target: Written }>();
    for (const route of plan.routes) {
      const key = `${route.namespace}/${route.name}`;
      const statusText = routes.get(key)?.statusText ?? '[]';
      const kept = this.routeTargets.get(key);
      if (kept && kept.planned === route && kept.statusText === statusText) {
        routeTargets.set(key, kept);
        targets.push(kept.target);
        continue;
      }
      const current = JSON.parse(statusText) as (RouteParentStatus & { controllerName?: string })[];
      // Other controllers' entries stay as they are.
      const parents = [...current.filter((parent) => parent.controllerName !== GATEWAY_CONTROLLER), ...route.parents];
      const target: Written = { kind: 'HTTPRoute', namespace: route.namespace, name: route.name, status: { parents }, current: { parents: current } };
      routeTargets.set(key, { planned: route, statusText, target });
      targets.push(target);
    }
    this.routeTargets = routeTargets;
    this.targets = targets;
    return this.lease.queue();
  }

  private async write(): Promise<void> {
    for (const target of this.targets) {
      const key = `${target.kind}/${target.namespace ?? ''}/${target.name}`;
      if (target.settled) continue;
      const wanted = comparable(target.status);
      if (comparable(target.current) === wanted) {
        target.settled = true;
        this.written.delete(key);
        continue;
      }
      if (this.written.get(key) === wanted) continue;
      try {
        await this.replace(target);
        this.written.set(key, wanted);
      } catch (error) {
        this.log.warn(`gateway status of ${key}: ${(error as Error).message}`);
      }
    }
  }

  /** Reads the object's status and replaces it, each condition list with its transition times. */
  private async replace(target: Written): Promise<void> {
    const base = { group: GATEWAY_GROUP, version: 'v1', plural: PLURALS[target.kind], name: target.name };
    const object = (target.namespace === undefined
      ? await this.api.getClusterCustomObjectStatus(base)
      : await this.api.getNamespacedCustomObjectStatus({ ...base, namespace: target.namespace })) as { status?: Record<string, unknown> };
    const before = object.status ?? {};
    const status: Record<string, unknown> = { ...before, ...target.status, conditions: timed((target.status.conditions ?? []) as Condition[], before.conditions) };
    if (target.kind === 'HTTPRoute') delete status.conditions;
    if (Array.isArray(status.listeners)) {
      const previous = Array.isArray(before.listeners) ? before.listeners as { name: string; conditions?: unknown }[] : [];
      status.listeners = (status.listeners as { name: string; conditions: Condition[] }[]).map((listener) => ({ ...listener, conditions: timed(listener.conditions, previous.find((each) => each.name === listener.name)?.conditions) }));
    }
    if (Array.isArray(status.parents)) {
      const previous = Array.isArray(before.parents) ? before.parents as { parentRef: unknown; conditions?: unknown }[] : [];
      status.parents = (status.parents as RouteParentStatus[]).map((parent) => (parent.controllerName === GATEWAY_CONTROLLER
        ? { ...parent, conditions: timed(parent.conditions, previous.find((each) => comparable(each.parentRef) === comparable(parent.parentRef))?.conditions) }
        : parent));
    }
    const body = { ...object, status };
    if (target.namespace === undefined) await this.api.replaceClusterCustomObjectStatus({ ...base, body });
    else await this.api.replaceNamespacedCustomObjectStatus({ ...base, namespace: target.namespace, body });
  }
}
