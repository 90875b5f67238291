// The cluster of the cold-start runs as an API server holds it: bench-cluster.ts's services and
// slices with the metadata a real server adds (uid, resourceVersion, timestamps, managedFields, the
// endpoint slice controller's labels and annotation, pod references), since decoding and keeping
// that metadata is part of what a node pays when it starts.
import { BENCH_NAMESPACE, endpointSliceObject, serviceObject, serviceName, syntheticEndpoints } from './bench-cluster.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';

export const BENCH_NODE = 'bench-node';
const CREATED = '2026-12-01T10:00:00Z';

const managedFields = (manager: string, apiVersion: string, fields: Record<string, unknown>) => [
  { manager, operation: 'Update', apiVersion, time: CREATED, fieldsType: 'FieldsV1', fieldsV1: fields },
];

function withServerMetadata(object: KubeObject, serial: number, manager: string, fields: Record<string, unknown>): KubeObject {
  return {
    ...object,
    metadata: {
      ...object.metadata,
      uid: `00000000-0000-4000-8000-${String(serial).padStart(12, '0')}`,
      resourceVersion: String(1000 + serial),
      generation: 1,
      creationTimestamp: CREATED,
      managedFields: managedFields(manager, object.apiVersion as string, fields),
    },
  };
}

export function apiService(index: number): KubeObject {
  const base = serviceObject(index);
  const object = { ...base, spec: { ...base.spec as object, sessionAffinity: 'None', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', internalTrafficPolicy: 'Cluster' }, status: { loadBalancer: {} } };
  return withServerMetadata(object, 2 * index, 'kubectl-client-side-apply', {
    'f:spec': { 'f:ports': { '.': {}, 'k:{"port":80,"protocol":"TCP"}': { '.': {}, 'f:port': {}, 'f:protocol': {}, 'f:targetPort': {} } }, 'f:selector': {}, 'f:sessionAffinity': {}, 'f:type': {} },
  });
}

export function apiEndpointSlice(index: number): KubeObject {
  const base = endpointSliceObject(index, syntheticEndpoints(index));
  const endpoints = (base.endpoints as Array<Record<string, unknown>>).map((endpoint, slot) => ({
    ...endpoint,
    nodeName: BENCH_NODE,
    targetRef: { kind: 'Pod', namespace: BENCH_NAMESPACE, name: `${serviceName(index)}-${slot}`, uid: `10000000-0000-4000-8000-${String(3 * index + slot).padStart(12, '0')}` },
  }));
  const metadata = base.metadata!;
  const object = {
    ...base,
    metadata: {
      ...metadata,
      generateName: `${serviceName(index)}-`,
      labels: { ...metadata.labels as object, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': CREATED },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: serviceName(index), uid: `00000000-0000-4000-8000-${String(2 * index).padStart(12, '0')}`, controller: true, blockOwnerDeletion: true }],
    },
    endpoints,
  };
  return withServerMetadata(object, 2 * index + 1, 'kube-controller-manager', { 'f:addressType': {}, 'f:endpoints': {}, 'f:metadata': { 'f:annotations': {}, 'f:labels': {}, 'f:ownerReferences': {} }, 'f:ports': {} });
}

export const apiNode = (): KubeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: BENCH_NODE, uid: 'node-uid', resourceVersion: '1', creationTimestamp: CREATED, labels: {} }, spec: {}, status: {} });

/** Every object of the cluster, in the API's order: the services, then their slices, then the node. */
export function* apiObjects(services: number): Generator<KubeObject> {
  for (let index = 0; index < services; index++) yield apiService(index);
  for (let index = 0; index < services; index++) yield apiEndpointSlice(index);
  yield apiNode();
}
