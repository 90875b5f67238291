// The Kubernetes API source against a fake API server: the first list, watch events, relists after
// 410 Gone, an API outage, and a stop that leaves nothing running. No kernel is involved.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { LIST_PAGE_SIZE } from '../../src/cluster/list-request.js';
import { KubernetesSource, loadKubeConfig, PROXYABLE_SELECTOR, type SourceHandler } from '../../src/cluster/kubernetes.js';
import { EarlyLists } from '../../src/cluster/api-lists.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { allServicePortViews, servicePortName } from '../../src/cluster/service-ports.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { dns } from '../../src/dns/index.js';

const NODE = 'node-1';
const HEADLESS_LABEL = 'service.kubernetes.io/headless';
const PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';

const keyOf = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name}`;

/** The agent's side: what the source handed over, fed into a ClusterState as the agent does. */
class Recorder implements SourceHandler {
  readonly state = new ClusterState(NODE);
  /** The last version delivered of every object, valid or not. */
  readonly seen = new Map<string, KubeObject>();
  readonly changes: Array<{ change: 'apply' | 'delete'; key: string }> = [];
  readonly problems: string[] = [];
  /** How many changes had arrived when synced() was called, once per call. */
  readonly syncedAfter: number[] = [];

  apply(object: KubeObject): void {
    this.seen.set(keyOf(object), object);
    this.changes.push({ change: 'apply', key: keyOf(object) });
    this.state.apply(object); // throws ObjectError for an invalid object: the source must report it and go on
  }

  delete(object: KubeObject): void {
    this.seen.delete(keyOf(object));
    this.changes.push({ change: 'delete', key: keyOf(object) });
    this.state.delete(object);
  }

  synced(): void {
    this.syncedAfter.push(this.changes.length);
  }

  problem(message: string): void {
    this.problems.push(message);
  }
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function service(name: string, clusterIP: string, labels: Record<string, string> = {}, port = 80): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', labels },
    spec: { clusterIP, clusterIPs: [clusterIP], ports: [{ name: 'http', protocol: 'TCP', port, targetPort: 'http' }] },
  };
}

function slice(name: string, serviceName: string, address: string, extraLabels: Record<string, string> = {}): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName, ...extraLabels } },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: [{ addresses: [address], conditions: { ready: true }, nodeName: NODE }],
  };
}

function node(name: string, zone: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
    spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.0.11' }] },
  };
}

/** What the source should have delivered: the server's objects its selectors admit, by resourceVersion. */
function admittedByServer(server: FakeApiServer): Record<string, string> {
  const view: Record<string, string> = {};
  for (const object of server.stored()) {
    const labels = (object.metadata?.labels ?? {}) as Record<string, string>;
    if (object.kind === 'Node' && object.metadata?.name !== NODE) continue;
    if (object.kind !== 'Node' && (HEADLESS_LABEL in labels || PROXY_NAME_LABEL in labels)) continue;
    view[keyOf(object)] = String(object.metadata?.resourceVersion);
  }
  return view;
}

function delivered(recorder: Recorder): Record<string, string> {
  return Object.fromEntries([...recorder.seen].map(([key, object]) => [key, String(object.metadata?.resourceVersion)]));
}

const converged = (server: FakeApiServer, recorder: Recorder) =>
  JSON.stringify(Object.entries(delivered(recorder)).sort()) === JSON.stringify(Object.entries(admittedByServer(server)).sort());

const anyMatches = (messages: string[], pattern: RegExp) => messages.some((message) => pattern.test(message));

const listsOf = (server: FakeApiServer, path: string) => server.requests.filter((request) => request.path === path && !request.watch).length;

t.test('loadKubeConfig: a kubeconfig file, --master over it, --master alone, and no in-cluster environment', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  t.equal(loadKubeConfig({ kubeconfig: server.kubeconfigPath() }).getCurrentCluster()?.server, server.url);
  const overridden = loadKubeConfig({ kubeconfig: server.kubeconfigPath(), master: 'http://127.0.0.1:1' }).getCurrentCluster();
  t.equal(overridden?.server, 'http://127.0.0.1:1');
  t.equal(overridden?.skipTLSVerify, true, 'plain HTTP needs no verification (and client-node insists)');
  t.same(loadKubeConfig({ master: 'https://api.example:6443' }).getCurrentCluster(), {
    name: 'master',
    server: 'https://api.example:6443',
    skipTLSVerify: false,
  });
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  delete process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_PORT;
  t.teardown(() => Object.assign(process.env, saved.host === undefined ? {} : { KUBERNETES_SERVICE_HOST: saved.host, KUBERNETES_SERVICE_PORT: saved.port }));
  t.throws(() => loadKubeConfig({}), /KUBERNETES_SERVICE_HOST/);
});

t.test('listed and watched objects arrive without managedFields; a refused list is reported with its reason', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const managed = (object: KubeObject): KubeObject => ({
    ...object,
    metadata: { ...object.metadata, managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': {} } }] },
  });
  server.upsert(managed(service('listed', '10.96.0.20')));
  server.upsert(node(NODE, 'zone-a'));
  const recorder = new Recorder();
  // The Namespaces list is refused with 404, and only it is retried.
  server.refusedKinds.add('Namespace');
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE, watches: [dns.watch] }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('the refused list reported', () => anyMatches(recorder.problems, /^Namespace list\/watch failed: HTTP 404: GET \/api\/v1\/namespaces is not served here; retrying/));
  await waitFor('the services watch', () => server.requests.some((request) => request.path === '/api/v1/services' && request.watch));
  server.upsert(managed(service('watched', '10.96.0.21')));
  await waitFor('the watched service', () => recorder.seen.has('Service/default/watched'));
  for (const name of ['listed', 'watched']) {
    const object = recorder.seen.get(`Service/default/${name}`);
    t.same([object?.kind, object?.apiVersion], ['Service', 'v1'], `the ${name} service carries kind and apiVersion`);
    t.notOk(object?.metadata && 'managedFields' in object.metadata, `the ${name} service comes without managedFields`);
  }
  t.same(recorder.syncedAfter, [], 'not synced while a kind has not listed');
});

t.test('with cluster DNS, other proxies\' objects arrive for DNS and the proxy leaves them out, as from manifests', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const objects = [
    service('web', '10.96.0.10'), slice('web-abcde', 'web', '10.244.1.7'),
    service('elsewhere', '10.96.0.11', { [PROXY_NAME_LABEL]: 'other-proxy' }), slice('elsewhere-abcde', 'elsewhere', '10.244.1.9', { [PROXY_NAME_LABEL]: 'other-proxy' }),
    // A slice the selector would leave out although its service is proxied: kube-proxy proxies no endpoint of it.
    service('mixed', '10.96.0.12'), slice('mixed-abcde', 'mixed', '10.244.1.10', { [HEADLESS_LABEL]: '' }),
    node(NODE, 'zone-a'),
  ];
  for (const object of objects) server.upsert(object);
  const recorder = new Recorder();
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE, watches: [dns.watch] }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('every object', () => recorder.seen.size === objects.length);
  const query = (path: string) => server.requests.find((request) => request.path === path && !request.watch)?.query;
  t.equal(query('/api/v1/services')?.labelSelector, undefined, 'no selector: DNS names every Service');
  t.equal(query('/apis/discovery.k8s.io/v1/endpointslices')?.labelSelector, undefined);
  t.ok(recorder.state.services.has('default/elsewhere'), 'the other proxy\'s service is in the state, for DNS');
  const proxied = (state: ClusterState) => allServicePortViews(state).map((view) => `${servicePortName(view)} ${view.endpoints.map((endpoint) => endpoint.address).join()}`);
  t.same(proxied(recorder.state), ['default/mixed:http ', 'default/web:http 10.244.1.7'], 'the proxy sees neither the other proxy\'s service nor the selected-out slice');
  const fromManifests = new ClusterState(NODE);
  for (const object of objects) fromManifests.apply(object);
  t.same(proxied(fromManifests), proxied(recorder.state), 'the manifest source\'s objects are filtered the same way');
});

t.test('the source follows the API server through watches, relists and an outage', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  server.upsert(service('web', '10.96.0.10'));
  server.upsert(service('elsewhere', '10.96.0.11', { [PROXY_NAME_LABEL]: 'other-proxy' }));
  server.upsert(slice('web-abcde', 'web', '10.244.1.7'));
  server.upsert(slice('db-headless', 'db', '10.244.1.8', { [HEADLESS_LABEL]: '' }));
  server.upsert(node(NODE, 'zone-a'));
  server.upsert(node('node-2', 'zone-b'));

  const recorder = new Recorder();
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE }, recorder);
  let stopped = false;
  t.teardown(() => (stopped ? undefined : source.stop()));

  await t.test('the first list delivers what the selectors admit, then synced()', async (t) => {
    await source.start();
    await waitFor('synced()', () => recorder.syncedAfter.length > 0);
    t.same(recorder.syncedAfter, [3], 'synced() once, after the three admitted objects');
    t.same(
      [...recorder.seen.keys()].sort(),
      ['EndpointSlice/default/web-abcde', `Node//${NODE}`, 'Service/default/web'],
      'not the other node, the headless slice, nor the other proxy’s service',
    );
    for (const object of recorder.seen.values()) {
      t.ok(object.kind && object.apiVersion, `${keyOf(object)} carries kind and apiVersion`);
      t.type(object.metadata?.creationTimestamp, 'string', `${keyOf(object)} is plain JSON (no Date)`);
    }
    t.equal(recorder.state.services.get('default/web')?.ports[0]?.targetPort, 'http', 'a named targetPort survives the list');
    t.equal(recorder.state.node?.zone, 'zone-a');
    t.equal(recorder.state.slices.get('default/web')?.length, 1);
    const query = (path: string) => server.requests.find((request) => request.path === path && !request.watch)?.query;
    t.equal(query('/api/v1/services')?.labelSelector, PROXYABLE_SELECTOR);
    t.equal(query('/apis/discovery.k8s.io/v1/endpointslices')?.labelSelector, PROXYABLE_SELECTOR);
    t.equal(query('/api/v1/nodes')?.fieldSelector, `metadata.name=${NODE}`);
    t.same(recorder.problems, []);
  });

  await t.test('MODIFIED and DELETED events arrive; an invalid object is reported, not fatal', async (t) => {
    await waitFor('three watches', () => server.watchCount === 3);
    server.upsert(service('web', '10.96.0.10', {}, 8080));
    await waitFor('the modified service', () => recorder.state.services.get('default/web')?.ports[0]?.port === 8080);
    server.remove('EndpointSlice', 'default', 'web-abcde');
    await waitFor('the deleted slice', () => !recorder.state.slices.has('default/web'));
    t.same(recorder.changes.at(-1), { change: 'delete', key: 'EndpointSlice/default/web-abcde' });
    server.upsert(node('node-2', 'zone-c'));
    server.upsert(node(NODE, 'zone-b'));
    await waitFor('the node update', () => recorder.state.node?.zone === 'zone-b');
    t.notOk(recorder.changes.some((change) => change.key === 'Node//node-2'), 'other nodes never arrive');

    server.upsert(service('broken', 'not-an-address'));
    server.upsert(service('api', '10.96.0.12'));
    await waitFor('the service after the broken one', () => recorder.state.services.has('default/api'));
    t.notOk(recorder.state.services.has('default/broken'));
    t.ok(anyMatches(recorder.problems, /^Service default\/broken: .*clusterIP/), 'the invalid service is reported');
  });

  for (const goneResponse of ['event', 'http'] as const) {
    await t.test(`after compaction and dropped watches, a relist (410 as ${goneResponse}) converges`, async (t) => {
      server.goneResponse = goneResponse;
      await waitFor('three watches', () => server.watchCount === 3);
      const servicesListed = listsOf(server, '/api/v1/services');
      const problemsBefore = recorder.problems.length;
      server.dropConnections();
      // Changes the watches miss, then history the restarted watches cannot resume from.
      server.remove('Service', 'default', 'api');
      server.upsert(service(`added-${goneResponse}`, goneResponse === 'event' ? '10.96.0.20' : '10.96.0.21'));
      server.upsert(slice(`web-${goneResponse}`, 'web', '10.244.1.9'));
      server.compact();
      await waitFor('convergence', () => converged(server, recorder));
      t.ok(listsOf(server, '/api/v1/services') > servicesListed, 'services were listed again');
      t.notOk(recorder.state.services.has('default/api'), 'a deletion missed by the watch is found by the relist');
      t.ok(anyMatches(recorder.problems.slice(problemsBefore), /410 Gone/), 'the expiry is logged');
      t.same(recorder.syncedAfter.length, 1, 'synced() is not repeated');
    });
  }

  await t.test('after an outage the source resumes and sees what changed during and after it', async (t) => {
    await waitFor('three watches', () => server.watchCount === 3);
    const problemsBefore = recorder.problems.length;
    await server.stop();
    server.upsert(service('during-outage', '10.96.0.30'));
    await waitFor('a refused retry', () => anyMatches(recorder.problems.slice(problemsBefore), /ECONNREFUSED/));
    await server.start();
    server.upsert(service('after-outage', '10.96.0.31'));
    server.upsert(node(NODE, 'zone-d'));
    await waitFor('convergence', () => converged(server, recorder), 15_000);
    t.ok(recorder.state.services.has('default/during-outage'));
    t.ok(recorder.state.services.has('default/after-outage'));
    t.equal(recorder.state.node?.zone, 'zone-d');
    t.ok(anyMatches(recorder.problems.slice(problemsBefore), /failed: .*retrying in 2s/), 'retries back off');
  });

  await t.test('stop() ends every request and timer', async (t) => {
    await waitFor('three watches', () => server.watchCount === 3);
    await source.stop();
    stopped = true;
    await waitFor('the watches to close', () => server.watchCount === 0);
    const requests = server.requests.length;
    server.dropConnections();
    server.upsert(service('after-stop', '10.96.0.40'));
    await server.close();
    t.equal(server.requests.length, requests, 'nothing is requested after stop()');
    t.notOk(recorder.seen.has('Service/default/after-stop'));
    // Whatever the source left running would keep the process alive (tap itself holds no TCP socket).
    await waitFor('sockets to close', () => !process.getActiveResourcesInfo().some((resource) => resource.startsWith('TCP')));
  });
});

/** More Services than two pages hold, each with its slice, and this node. */
function pagedCluster(server: FakeApiServer): number {
  const count = 2 * LIST_PAGE_SIZE + 3;
  for (let index = 0; index < count; index++) {
    const address = `10.96.${index >> 8}.${index & 255}`;
    server.upsert(service(`paged-${index}`, address));
    server.upsert(slice(`paged-${index}-x`, `paged-${index}`, `10.244.${index >> 8}.${index & 255}`));
  }
  server.upsert(node(NODE, 'zone-a'));
  return count;
}

const serviceLists = (server: FakeApiServer) => server.requests.filter((request) => request.path === '/api/v1/services' && !request.watch);

t.test('a list larger than a page is read page by page (limit, then continue) into one list', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const count = pagedCluster(server);
  const recorder = new Recorder();
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('every object delivered', () => converged(server, recorder), 60_000);
  const lists = serviceLists(server);
  t.same(lists.map((request) => [request.query.limit, request.query.continue !== undefined]), [[String(LIST_PAGE_SIZE), false], [String(LIST_PAGE_SIZE), true], [String(LIST_PAGE_SIZE), true]], 'three pages asked for');
  t.ok(lists.every((request) => request.query.labelSelector === PROXYABLE_SELECTOR), 'every page with the selector');
  t.equal(allServicePortViews(recorder.state).length, count, 'every service, with its slice, in the state');
  t.same(recorder.syncedAfter.length, 1, 'synced once, after the last page');
});

t.test('a continue token that expires before the last page makes the list start again in one request', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const count = pagedCluster(server);
  // Compaction between the first and second page of the Services list.
  server.onList = (query) => {
    if (query.continue !== undefined) server.expireContinuations();
  };
  const recorder = new Recorder();
  const source = new KubernetesSource({ kubeconfig: server.kubeconfigPath(), nodeName: NODE }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('every object delivered', () => converged(server, recorder), 60_000);
  t.same(serviceLists(server).map((request) => [request.query.limit, request.query.continue !== undefined]), [[String(LIST_PAGE_SIZE), false], [String(LIST_PAGE_SIZE), true], [undefined, false]], 'first page, expired continue, one whole list');
  t.equal(allServicePortViews(recorder.state).length, count, 'every service in the state');
  t.same(recorder.problems, [], 'nothing to report: the list succeeded');
});

t.test('the first lists, asked for before client-node loads, are taken over once each; what changed meanwhile comes by the watch', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  server.upsert(service('early', '10.96.0.30'));
  server.upsert(slice('early-abcde', 'early', '10.244.1.30'));
  server.upsert(node(NODE, 'zone-a'));
  const options = { kubeconfig: server.kubeconfigPath(), nodeName: NODE };
  const earlyLists = EarlyLists.start(options);
  await waitFor('the three first lists answered', () => server.requests.filter((request) => !request.watch).length === 3);
  await new Promise((resolve) => setTimeout(resolve, 50));
  server.upsert(service('meanwhile', '10.96.0.31'));
  const recorder = new Recorder();
  const source = new KubernetesSource({ ...options, earlyLists }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('every object delivered', () => converged(server, recorder));
  for (const path of ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices', '/api/v1/nodes']) t.equal(listsOf(server, path), 1, `${path} listed once`);
  t.ok(recorder.seen.has('Service/default/meanwhile'), 'the service created after the first list arrived by the watch');
  t.same(recorder.syncedAfter.length, 1, 'synced once');
});

t.test('a first list asked for with other credentials than client-node\'s is not used: the source lists again', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  server.upsert(service('web', '10.96.0.40'));
  server.upsert(node(NODE, 'zone-a'));
  const kubeconfig = server.kubeconfigPath();
  // The same cluster, another token: what a kubeconfig rewritten between the two readings would give.
  const other = `${kubeconfig}-other`;
  writeFileSync(other, readFileSync(kubeconfig, 'utf8').replace('fake-token', 'another-token'));
  const earlyLists = EarlyLists.start({ kubeconfig, nodeName: NODE });
  await waitFor('the three first lists answered', () => server.requests.filter((request) => !request.watch).length === 3);
  const recorder = new Recorder();
  const source = new KubernetesSource({ kubeconfig: other, nodeName: NODE, earlyLists }, recorder);
  t.teardown(() => source.stop());
  await source.start();
  await waitFor('every object delivered', () => converged(server, recorder));
  t.equal(listsOf(server, '/api/v1/services'), 2, 'the services listed again with client-node\'s credentials');
});
