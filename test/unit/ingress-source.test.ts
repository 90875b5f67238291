// Agent mode: the API source watches Ingresses, IngressClasses and only TLS Secrets when the state
// watches for the ingress (--ingress), and nothing of them otherwise.
import t from 'tap';
import { HEADLESS_INCLUDED_SELECTOR, KubernetesSource, PROXYABLE_SELECTOR, type SourceHandler } from '../../src/cluster/kubernetes.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { ingress as ingressCapability } from '../../src/ingress/index.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';
import { service, slice } from '../lib/manifests.js';
import { servicePortViews } from '../../src/cluster/service-ports.js';

const NODE = 'node-1';
const INGRESS_KINDS = ['Ingress', 'IngressClass', 'Secret'];

function stateWithIngressKinds(headlessSlices = true): ClusterState {
  const state = new ClusterState(NODE);
  state.watch({ ...ingressCapability.watch, headlessSlices });
  return state;
}

function handlerFor(state: ClusterState, synced: () => void): SourceHandler {
  return { apply: (object) => state.apply(object), delete: (object) => state.delete(object), synced, problem: () => undefined };
}

t.test('with the ingress kinds registered, Ingresses, IngressClasses and TLS Secrets are listed and watched', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  server.upsert({ ...ingress('cafe', [{ host: 'cafe.example.com', paths: [{ path: '/tea', pathType: 'Prefix' }] }]), metadata: { name: 'cafe', namespace: 'default', creationTimestamp: '2024-01-01T00:00:00Z' } });
  server.upsert(OUR_CLASS as KubeObject);
  server.upsert(tlsSecret('cafe-secret', certificate('cafe.example.com')));
  server.upsert({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'password', namespace: 'default' }, type: 'Opaque', data: { password: 'c2VjcmV0' } });
  const state = stateWithIngressKinds();
  let synced = false;
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE, watches: state.watches }, handlerFor(state, () => (synced = true)));
  t.teardown(() => source.stop());
  await source.start();
  t.ok(await eventually(async () => synced, 10_000), 'synced');
  t.same([...state.objectsOf('Ingress').keys()], ['default/cafe']);
  t.same([...state.objectsOf('IngressClass').keys()], ['kubenft']);
  t.same([...state.objectsOf('Secret').keys()], ['default/cafe-secret'], 'only the TLS Secret reached the agent');
  const secrets = server.requests.find((request) => request.path === '/api/v1/secrets' && !request.watch);
  t.equal(secrets?.query.fieldSelector, 'type=kubernetes.io/tls', 'the server selects TLS Secrets');
  t.equal(state.objectsOf<{ created: number }>('Ingress').get('default/cafe')?.created, Date.parse('2024-01-01T00:00:00Z'), 'a listed creationTimestamp');

  server.upsert(ingress('later', [{ host: 'later.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }]));
  t.ok(await eventually(async () => state.objectsOf('Ingress').has('default/later'), 10_000), 'a watched Ingress arrives');
  server.remove('Ingress', 'default', 'cafe');
  t.ok(await eventually(async () => !state.objectsOf('Ingress').has('default/cafe'), 10_000), 'a deleted one goes');
});

t.test('without them, no ingress resource is requested', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const state = new ClusterState(NODE);
  let synced = false;
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE, watches: state.watches }, handlerFor(state, () => (synced = true)));
  t.teardown(() => source.stop());
  await source.start();
  t.ok(await eventually(async () => synced, 10_000));
  t.same(server.requests.filter((request) => INGRESS_KINDS.some((kind) => request.path.includes(kind.toLowerCase()))), []);
});

t.test('with headlessSlices (the ingress\'s watch) the slices of headless services are watched too; the proxy\'s views still leave them out', async (t) => {
  for (const headlessSlices of [true, false]) {
    const server = await FakeApiServer.create();
    t.teardown(() => server.close());
    server.upsert(service('db', 'None', [{ name: 'http', port: 80 }]) as KubeObject);
    const headlessSlice = slice('db', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.8' }]);
    headlessSlice.metadata.labels = { ...headlessSlice.metadata.labels, 'service.kubernetes.io/headless': '' };
    server.upsert(headlessSlice as KubeObject);
    const state = stateWithIngressKinds(headlessSlices);
    let synced = false;
    const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE, watches: state.watches }, handlerFor(state, () => (synced = true)));
    t.teardown(() => source.stop());
    await source.start();
    t.ok(await eventually(async () => synced, 10_000), 'synced');
    const slices = server.requests.find((request) => request.path === '/apis/discovery.k8s.io/v1/endpointslices' && !request.watch);
    t.equal(slices?.query.labelSelector, headlessSlices ? HEADLESS_INCLUDED_SELECTOR : PROXYABLE_SELECTOR, `headlessSlices ${headlessSlices}: the selector`);
    t.equal(state.slices.get('default/db')?.length ?? 0, headlessSlices ? 1 : 0, `headlessSlices ${headlessSlices}: the headless slice`);
    t.same(servicePortViews(state, 'default/db'), [], 'no rule is planned for it');
    await source.stop();
  }
});
