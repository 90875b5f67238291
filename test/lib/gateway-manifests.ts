// Builders for the Gateway API tests' objects: GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants.
import type { KubeObject } from '../../src/cluster/cluster-state.js';

const V1 = 'gateway.networking.k8s.io/v1';

export const gatewayClass = (name: string, controllerName = 'kubenft.io/gateway-controller'): KubeObject => ({ apiVersion: V1, kind: 'GatewayClass', metadata: { name }, spec: { controllerName } });

export type ListenerSpec = { name: string; protocol?: 'HTTP' | 'HTTPS' | string; port?: number; hostname?: string; from?: 'Same' | 'All' | 'Selector'; selector?: Record<string, string>; certificate?: { name: string; namespace?: string }; kinds?: { group?: string; kind: string }[] };

export function gateway(name: string, listeners: ListenerSpec[], options: { namespace?: string; className?: string } = {}): KubeObject {
  return {
    apiVersion: V1, kind: 'Gateway', metadata: { name, namespace: options.namespace ?? 'default' },
    spec: {
      gatewayClassName: options.className ?? 'kubenft',
      listeners: listeners.map((listener) => ({
        name: listener.name, protocol: listener.protocol ?? 'HTTP', port: listener.port ?? (listener.protocol === 'HTTPS' ? 443 : 80),
        ...(listener.hostname ? { hostname: listener.hostname } : {}),
        ...(listener.certificate ? { tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', group: '', ...listener.certificate }] } } : {}),
        allowedRoutes: {
          namespaces: { from: listener.from ?? 'Same', ...(listener.selector ? { selector: { matchLabels: listener.selector } } : {}) },
          ...(listener.kinds ? { kinds: listener.kinds } : {}),
        },
      })),
    },
  };
}

export type Backend = { name: string; port?: number; namespace?: string; weight?: number; kind?: string; group?: string };
export type RuleSpec = { matches?: Record<string, unknown>[]; filters?: Record<string, unknown>[]; backends?: Backend[]; timeouts?: Record<string, string> };

export const backendRef = (backend: Backend) => ({
  name: backend.name, port: backend.port ?? 80,
  ...(backend.namespace ? { namespace: backend.namespace } : {}), ...(backend.weight !== undefined ? { weight: backend.weight } : {}),
  ...(backend.kind ? { kind: backend.kind, group: backend.group ?? '' } : {}),
});

export function httpRoute(name: string, spec: { parents?: Record<string, unknown>[]; hostnames?: string[]; rules: RuleSpec[] }, metadata: { namespace?: string; creationTimestamp?: string } = {}): KubeObject {
  return {
    apiVersion: V1, kind: 'HTTPRoute', metadata: { name, namespace: metadata.namespace ?? 'default', ...(metadata.creationTimestamp ? { creationTimestamp: metadata.creationTimestamp } : {}) },
    spec: {
      parentRefs: spec.parents ?? [{ name: 'gw', namespace: 'default', sectionName: 'http' }],
      ...(spec.hostnames ? { hostnames: spec.hostnames } : {}),
      rules: spec.rules.map((rule) => ({
        ...(rule.matches ? { matches: rule.matches } : {}),
        ...(rule.filters ? { filters: rule.filters } : {}),
        ...(rule.backends ? { backendRefs: rule.backends.map(backendRef) } : {}),
        ...(rule.timeouts ? { timeouts: rule.timeouts } : {}),
      })),
    },
  };
}

export function referenceGrant(name: string, namespace: string, from: { kind: string; namespace: string }, to: { kind: string; name?: string }): KubeObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name, namespace },
    spec: { from: [{ group: 'gateway.networking.k8s.io', ...from }], to: [{ group: '', ...to }] },
  };
}

export const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });

/** A path match, and the same with headers, query parameters or a method. */
export const prefix = (value: string, extra: Record<string, unknown> = {}) => ({ path: { type: 'PathPrefix', value }, ...extra });
export const exact = (value: string, extra: Record<string, unknown> = {}) => ({ path: { type: 'Exact', value }, ...extra });
export const headers = (pairs: Record<string, string>) => Object.entries(pairs).map(([name, value]) => ({ name, value }));
