// Synthetic clusters for the benchmark: N ClusterIP services, each with one EndpointSlice, built
// as the Kubernetes objects an agent receives and fed through ClusterState like real watch events.
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from '../../src/services/config.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { serviceKey } from '../../src/cluster/model.js';

export const BENCH_NAMESPACE = 'bench';
export const SERVICE_PORT = 80;
export const TARGET_PORT = 9376;
export const POD_CIDR = '10.244.0.0/16';
/** Covers every generated ClusterIP (10.100.0.1 ... 10.101.x.y for 100k services). */
export const SERVICE_CIDR = '10.96.0.0/12';

export const BENCH_CONFIG: ProxyConfig = {
  ...DEFAULT_PROXY_CONFIG,
  nodeName: 'bench-node',
  localCIDRs: [POD_CIDR],
  serviceCIDRs: [SERVICE_CIDR],
};

const SERVICE_NAME_DIGITS = 6;

/** Zero-padded, so that the planners' sorted order is the creation order (service #1 first). */
export const serviceName = (index: number) => `svc-${String(index).padStart(SERVICE_NAME_DIGITS, '0')}`;
export const benchServiceKey = (index: number) => serviceKey(BENCH_NAMESPACE, serviceName(index));

/** A distinct ClusterIP per service index: 10.100.0.1, 10.100.0.2, ... */
export function clusterIPOf(index: number): string {
  const offset = index + 1;
  return `10.${100 + Math.floor(offset / 65536)}.${Math.floor(offset / 256) % 256}.${offset % 256}`;
}

// 10.244.1.1 ... 10.244.254.254: endpoint addresses repeat beyond 64,516 endpoints (as pods
// backing several services do); 10.244.255.0/24 stays free for the incremental changes.
const ENDPOINT_HOSTS = 254;
function syntheticEndpoint(serial: number): string {
  const host = serial % (ENDPOINT_HOSTS * ENDPOINT_HOSTS);
  return `10.244.${1 + Math.floor(host / ENDPOINT_HOSTS)}.${1 + (host % ENDPOINT_HOSTS)}`;
}

/** Three endpoints per service, all services distinct until the /16 runs out. */
export const syntheticEndpoints = (index: number): string[] => [0, 1, 2].map((slot) => syntheticEndpoint(index * 3 + slot));

export type EndpointsOf = (index: number) => string[];

export function serviceObject(index: number): KubeObject {
  const clusterIP = clusterIPOf(index);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: serviceName(index), namespace: BENCH_NAMESPACE },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports: [{ name: '', protocol: 'TCP', port: SERVICE_PORT, targetPort: TARGET_PORT }] },
  };
}

export function endpointSliceObject(index: number, addresses: string[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName(index)}-ipv4`, namespace: BENCH_NAMESPACE, labels: { 'kubernetes.io/service-name': serviceName(index) } },
    addressType: 'IPv4',
    ports: [{ name: '', protocol: 'TCP', port: TARGET_PORT }],
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true, serving: true, terminating: false } })),
  };
}

/**
 * The state an agent holds after its initial list of N services. Objects are applied one by one
 * and dropped, as a watch delivers them, so the memory figure is the agent's own.
 */
export function buildClusterState(services: number, endpointsOf: EndpointsOf = syntheticEndpoints): ClusterState {
  const state = new ClusterState(BENCH_CONFIG.nodeName);
  for (let index = 0; index < services; index++) {
    state.apply(serviceObject(index));
    state.apply(endpointSliceObject(index, endpointsOf(index)));
  }
  state.takeChanges(); // the initial sync is a full one; only later changes are partial
  return state;
}

/**
 * The n-th endpoint change of one service: its first endpoint alternates between two addresses
 * that no generated service uses, so every change really changes the ruleset.
 */
export function endpointChange(index: number, change: number, endpointsOf: EndpointsOf = syntheticEndpoints): KubeObject {
  const [, ...others] = endpointsOf(index);
  return endpointSliceObject(index, [`10.244.255.${1 + (change % 2)}`, ...others]);
}
