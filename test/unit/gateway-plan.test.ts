// The Gateway planner's statuses (the spec's conditions and reasons, observedGeneration,
// attachedRoutes), hostname intersection and precedence, and the status writer against an API
// server: one elected agent writes the GatewayClass's, Gateways' and HTTPRoutes' status.
import t from 'tap';
import pino from 'pino';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { GATEWAY_WATCH, gatewayPlanInput } from '../../src/gateway/dataplane.js';
import { GatewayPlanner, intersectHostnames, planGateways } from '../../src/gateway/plan.js';
import { GatewayStatusWriter } from '../../src/gateway/status.js';
import { normalizeHTTPRoute } from '../../src/gateway/objects.js';
import { loadKubeConfig } from '../../src/cluster/kubernetes.js';
import { Router } from '../../src/ingress/routes.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { service, slice } from '../lib/manifests.js';
import { exact, gateway, gatewayClass, headers, httpRoute, namespace, prefix, referenceGrant } from '../lib/gateway-manifests.js';
import { certificate, tlsSecret } from '../lib/ingress-manifests.js';

const SETTINGS = { className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443' };

function stateOf(objects: KubeObject[]): ClusterState {
  const state = new ClusterState('node-1');
  state.watch(GATEWAY_WATCH);
  for (const object of objects) state.apply(object);
  return state;
}

const web = () => [service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: 8080 }]), slice('web', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.5' }])] as KubeObject[];
const conditionsOf = (conditions: { type: string; status: string; reason: string }[]) => Object.fromEntries(conditions.map((each) => [each.type, `${each.status} ${each.reason}`]));

t.test('hostname intersection: the more specific name of each pair; wildcards span labels', async (t) => {
  t.same(intersectHostnames(undefined, []), ['']);
  t.same(intersectHostnames(undefined, ['a.example.com']), ['a.example.com']);
  t.same(intersectHostnames('*.example.com', []), ['*.example.com']);
  t.same(intersectHostnames('*.example.com', ['a.example.com', 'b.c.example.com', 'example.com', 'other.org']), ['a.example.com', 'b.c.example.com']);
  t.same(intersectHostnames('a.example.com', ['*.example.com']), ['a.example.com']);
  t.same(intersectHostnames('*.example.com', ['*.a.example.com']), ['*.a.example.com']);
  t.same(intersectHostnames('*.a.example.com', ['*.example.com']), ['*.a.example.com']);
  t.same(intersectHostnames('a.example.com', ['b.example.com']), []);
});

t.test('statuses: the class, the Gateway and its listeners, each route parent, with the spec\'s reasons and observedGeneration', async (t) => {
  const objects: KubeObject[] = [
    namespace('default'), gatewayClass('kubenft'), gatewayClass('other', 'example.com/controller'),
    { ...gateway('gw', [
      { name: 'http', from: 'All' },
      { name: 'tcp', protocol: 'TCP' },
      { name: 'elsewhere', port: 8080 },
      { name: 'https', protocol: 'HTTPS', hostname: 'secure.example.com', certificate: { name: 'missing' } },
      { name: 'kinds', hostname: 'kinds.example.com', kinds: [{ kind: 'GRPCRoute' }] },
    ]), metadata: { name: 'gw', namespace: 'default', generation: 3 } },
    gateway('theirs', [{ name: 'http' }], { className: 'other' }),
    ...web(),
    { ...httpRoute('ok', { rules: [{ backends: [{ name: 'web' }] }] }), metadata: { name: 'ok', namespace: 'default', generation: 2 } },
    httpRoute('unresolved', { rules: [{ backends: [{ name: 'nope' }] }] }),
    httpRoute('cross', { rules: [{ backends: [{ name: 'web', namespace: 'elsewhere' }] }] }),
    httpRoute('no-section', { parents: [{ name: 'gw', sectionName: 'missing' }], rules: [{}] }),
    httpRoute('theirs', { parents: [{ name: 'theirs' }], rules: [{}] }),
  ];
  const plan = planGateways(gatewayPlanInput(stateOf(objects), SETTINGS));
  t.same(plan.classStatus?.conditions.map((each) => [each.type, each.status, each.reason]), [['Accepted', 'True', 'Accepted']], 'our class is Accepted');
  t.equal(plan.gateways.length, 1, 'another class\'s Gateway gets no status from kubenft');
  const [gw] = plan.gateways;
  t.same(conditionsOf(gw.conditions), { Accepted: 'True ListenersNotValid', Programmed: 'True Programmed' }, 'accepted with invalid listeners');
  t.ok(gw.conditions.every((each) => each.observedGeneration === 3), 'observedGeneration is the Gateway\'s generation');
  const listener = (name: string) => conditionsOf(gw.listeners.find((each) => each.name === name)!.conditions);
  t.same(listener('http'), { Accepted: 'True Accepted', ResolvedRefs: 'True ResolvedRefs', Programmed: 'True Programmed', Conflicted: 'False NoConflicts' });
  t.equal(listener('tcp').Accepted, 'False UnsupportedProtocol');
  t.equal(listener('elsewhere').Accepted, 'False PortUnavailable');
  t.equal(listener('https').ResolvedRefs, 'False InvalidCertificateRef');
  t.equal(listener('kinds').ResolvedRefs, 'False InvalidRouteKinds');
  t.same(gw.listeners.find((each) => each.name === 'kinds')!.supportedKinds, [], 'only HTTPRoute is a supported kind');
  t.equal(gw.listeners.find((each) => each.name === 'http')!.attachedRoutes, 3, 'attachedRoutes counts the accepted routes');
  const parent = (name: string) => conditionsOf(plan.routes.find((each) => each.name === name)!.parents[0].conditions);
  t.same(parent('ok'), { Accepted: 'True Accepted', ResolvedRefs: 'True ResolvedRefs' });
  t.equal(plan.routes.find((each) => each.name === 'ok')!.parents[0].conditions[0].observedGeneration, 2);
  t.same(parent('unresolved'), { Accepted: 'True Accepted', ResolvedRefs: 'False BackendNotFound' });
  t.same(parent('cross'), { Accepted: 'True Accepted', ResolvedRefs: 'False RefNotPermitted' });
  t.equal(parent('no-section').Accepted, 'False NoMatchingParent');
  t.notOk(plan.routes.some((each) => each.name === 'theirs'), 'a route of another controller\'s Gateway gets no status from kubenft');

  const granted = planGateways(gatewayPlanInput(stateOf([...objects, { ...web()[0], metadata: { name: 'web', namespace: 'elsewhere' } }, { ...web()[1], metadata: { name: 'web-ipv4', namespace: 'elsewhere', labels: { 'kubernetes.io/service-name': 'web' } } },
    referenceGrant('grant', 'elsewhere', { kind: 'HTTPRoute', namespace: 'default' }, { kind: 'Service' })]), SETTINGS));
  t.equal(conditionsOf(granted.routes.find((each) => each.name === 'cross')!.parents[0].conditions).ResolvedRefs, 'True ResolvedRefs', 'a ReferenceGrant resolves it');

  const unserved = planGateways(gatewayPlanInput(stateOf(objects.filter((object) => object.kind !== 'GatewayClass' || object.metadata?.name !== 'kubenft')), SETTINGS));
  t.same([unserved.classStatus, unserved.gateways, unserved.routes], [undefined, [], []], 'without our GatewayClass nothing is served');
  const wrongController = planGateways(gatewayPlanInput(stateOf([...objects.filter((object) => object.kind !== 'GatewayClass'), gatewayClass('kubenft', 'example.com/not-us')]), SETTINGS));
  t.same(wrongController.gateways, [], 'a class of our name but another controller is not ours');
});

t.test('precedence: Exact, longest prefix, method, header count, query count, then age, name, rule order', async (t) => {
  const objects: KubeObject[] = [
    namespace('default'), gatewayClass('kubenft'), gateway('gw', [{ name: 'http', from: 'All' }]), ...web(),
    { ...httpRoute('young', { hostnames: ['p.example.com'], rules: [{ matches: [prefix('/a')], backends: [{ name: 'web' }] }] }), metadata: { name: 'young', namespace: 'default', creationTimestamp: '2022-01-01T00:00:00Z' } },
    { ...httpRoute('old', { hostnames: ['p.example.com'], rules: [
      { matches: [prefix('/a', { headers: headers({ x: '1' }) }), prefix('/a', { method: 'GET' }), prefix('/a/b'), exact('/a'), prefix('/a', { queryParams: [{ name: 'q', value: '1' }] })], backends: [{ name: 'web' }] },
      { matches: [prefix('/a')], backends: [{ name: 'web' }] },
    ] }), metadata: { name: 'old', namespace: 'default', creationTimestamp: '2021-01-01T00:00:00Z' } },
  ];
  const plan = planGateways(gatewayPlanInput(stateOf(objects), SETTINGS));
  const order = plan.http.hosts['p.example.com'].paths.map((path) => `${path.ingress} ${path.type} ${path.path}${path.conditions ? ` ${JSON.stringify(path.conditions)}` : ''}`);
  t.same(order, [
    'default/old Exact /a',
    'default/old Prefix /a/b',
    'default/old Prefix /a {"method":"GET"}',
    'default/old Prefix /a {"headers":[{"name":"x","value":"1"}]}',
    'default/old Prefix /a {"query":[{"name":"q","value":"1"}]}',
    'default/old Prefix /a',
    'default/young Prefix /a',
  ]);
  const router = new Router(plan.http);
  const facts = (method: string, fields: Record<string, string>, query = '') => ({ method, query, header: (name: string) => fields[name] });
  const match = (path: string, method = 'POST', fields: Record<string, string> = {}, query = '') => {
    const found = router.match('p.example.com', path, facts(method, fields, query));
    return found.kind === 'route' ? JSON.stringify((found.route as { conditions?: unknown }).conditions ?? null) : 'none';
  };
  t.equal(match('/a/x', 'GET', { x: '1' }), '{"method":"GET"}', 'a method match before header matches');
  t.equal(match('/a/x', 'POST', { x: '1' }, '?q=1'), '{"headers":[{"name":"x","value":"1"}]}', 'header matches before query matches');
  t.equal(match('/a/x', 'POST', {}, '?q=1&q=2'), '{"query":[{"name":"q","value":"1"}]}', 'the first value of a repeated parameter');
  t.equal(match('/a/x', 'POST', {}, '?q=2'), 'null');
});

t.test('the incremental planner: each plan equals the whole plan of its input; an unchanged host keeps its object; changes name only what changed', async (t) => {
  const state = stateOf([namespace('default'), gatewayClass('kubenft'), gateway('gw', [{ name: 'http', from: 'All' }, { name: 'wild', hostname: '*.example.com', from: 'All' }]), ...web(),
    ...Array.from({ length: 20 }, (_, index) => httpRoute(`r-${index}`, { hostnames: [`h-${index}.example.com`], rules: [{ backends: [{ name: 'web' }] }] }))]);
  const planner = new GatewayPlanner();
  const steps: [string, () => void, ReadonlySet<string> | 'full'][] = [
    ['a route added', () => state.apply(httpRoute('added', { hostnames: ['added.example.com'], rules: [{ backends: [{ name: 'web' }] }] })), new Set()],
    ['a route changed', () => state.apply(httpRoute('r-3', { hostnames: ['h-3.example.com'], rules: [{ matches: [prefix('/x')], backends: [{ name: 'web' }] }] })), new Set()],
    ['a wildcard route added', () => state.apply(httpRoute('wild', { parents: [{ name: 'gw', sectionName: 'wild' }], rules: [{ backends: [{ name: 'web' }] }] })), new Set()],
    ['a route removed', () => state.delete(httpRoute('r-5', { rules: [] })), new Set()],
    ['a missing Service appears', () => { state.apply(httpRoute('later', { hostnames: ['later.example.com'], rules: [{ backends: [{ name: 'later' }] }] })); }, new Set()],
    ['', () => { state.apply({ ...web()[0], metadata: { name: 'later', namespace: 'default' } }); state.apply({ ...web()[1], metadata: { name: 'later-ipv4', namespace: 'default', labels: { 'kubernetes.io/service-name': 'later' } } }); }, new Set(['default/later'])],
    ['the Gateway\'s status written', () => state.apply({ ...gateway('gw', [{ name: 'http', from: 'All' }, { name: 'wild', hostname: '*.example.com', from: 'All' }]), status: { listeners: [{ name: 'http', attachedRoutes: 21 }] } }), new Set()],
    ['the Gateway changed', () => state.apply(gateway('gw', [{ name: 'http', from: 'All' }])), new Set()],
  ];
  let previous = planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  t.equal(previous.changes, undefined, 'the first plan is sent whole');
  for (const [what, change, services] of steps) {
    change();
    const next = planner.plan(gatewayPlanInput(state, SETTINGS), services);
    const whole = planGateways(gatewayPlanInput(state, SETTINGS));
    t.same(JSON.parse(JSON.stringify(next.http)), JSON.parse(JSON.stringify(whole.http)), `${what || 'its Service'}: the table equals the whole plan's`);
    t.same(next.routes.map((route) => JSON.stringify(route)).sort(), whole.routes.map((route) => JSON.stringify(route)).sort(), `${what || 'its Service'}: the statuses too`);
    const changed = Object.keys(next.changes?.http.hosts ?? {});
    if (what === 'the Gateway changed') t.equal(next.changes, undefined, 'a Gateway change replans everything: new tables, sent whole');
    else t.equal(next.http, previous.http, `${what || 'its Service'}: the table is updated in place, its changes named`);
    if (what === 'a route added') t.same(changed, ['added.example.com'], 'only the new host is sent');
    if (what === 'a route changed') t.same(changed, ['h-3.example.com']);
    if (what === 'a wildcard route added') t.ok(changed.length > 1, 'the hosts a new wildcard covers are rebuilt');
    if (what === '') {
      t.equal(new Router(next.http).match('later.example.com', '/').kind, 'route');
      t.same(Object.keys(next.changes!.http.backends), ['default/later:http'], 'the Service that appeared: its backend is sent');
    }
    if (what === 'a route removed') t.same(changed, ['h-5.example.com']);
    if (what === 'the Gateway\'s status written') t.same(changed, [], 'its own status replans no route (it moves with every attached route)');
    previous = next;
  }
  t.equal(previous.http.hosts['h-1.example.com'] !== undefined, true);
});

t.test('the incremental planner with a Selector listener: a route added in a namespace that has routes is sent alone', async (t) => {
  const state = stateOf([namespace('default', { team: 'a' }), gatewayClass('kubenft'), gateway('gw', [{ name: 'http', from: 'Selector', selector: { team: 'a' } }]), ...web(),
    httpRoute('first', { hostnames: ['first.example.com'], rules: [{ backends: [{ name: 'web' }] }] })]);
  const planner = new GatewayPlanner();
  planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  state.apply(httpRoute('second', { hostnames: ['second.example.com'], rules: [{ backends: [{ name: 'web' }] }] }));
  const next = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
  t.same(Object.keys(next.changes?.http.hosts ?? {}), ['second.example.com'], 'changes, not the whole table (on HAProxy: no reload)');
  t.same(JSON.parse(JSON.stringify(next.http)), JSON.parse(JSON.stringify(planGateways(gatewayPlanInput(state, SETTINGS)).http)), 'the table equals the whole plan\'s');
  state.apply(namespace('default', { team: 'b' }));
  const relabelled = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
  t.equal(relabelled.changes, undefined, 'the namespace\'s labels changed: every route replanned');
  t.same(relabelled.http.hosts, {}, 'no route is admitted any more');
});

t.test('an informer relist (every object handed over again, equal) replans the routes in place: changes to the same hosts, no new tables', async (t) => {
  const objects = (): KubeObject[] => [namespace('default', { team: 'a' }), namespace('backends'), gatewayClass('kubenft'),
    gateway('gw', [{ name: 'http', from: 'Selector', selector: { team: 'a' } }]), ...web(),
    { ...web()[0], metadata: { name: 'api', namespace: 'backends' } },
    referenceGrant('routes-to-api', 'backends', { kind: 'HTTPRoute', namespace: 'default' }, { kind: 'Service', name: 'api' }),
    httpRoute('first', { hostnames: ['first.example.com'], rules: [{ backends: [{ name: 'web' }, { name: 'api', namespace: 'backends' }] }] })];
  const state = stateOf(objects());
  const planner = new GatewayPlanner();
  const first = planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  for (const object of objects()) state.apply(object);
  const relisted = planner.plan(gatewayPlanInput(state, SETTINGS), new Set(state.takeChanges().services));
  t.not(relisted.changes, undefined, 'changes, not new tables (on HAProxy: no reload)');
  t.same(Object.keys(relisted.changes?.http.hosts ?? {}), ['first.example.com'], 'the relisted route\'s host is rebuilt');
  t.same(relisted.changes?.http.hosts['first.example.com'], first.http.hosts['first.example.com'], 'to what it was');
  state.apply(referenceGrant('routes-to-api', 'backends', { kind: 'HTTPRoute', namespace: 'other' }, { kind: 'Service', name: 'api' }));
  t.equal(planner.plan(gatewayPlanInput(state, SETTINGS), new Set()).changes, undefined, 'a grant that changed still replans everything');
});

t.test('the status writer: one elected agent writes conditions with observedGeneration, kept while unchanged; other controllers\' parents stay', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  const objects: KubeObject[] = [
    gatewayClass('kubenft'), gateway('gw', [{ name: 'http', from: 'All' }]),
    { ...httpRoute('web', { parents: [{ name: 'gw' }, { name: 'theirs' }], rules: [{ backends: [{ name: 'web' }] }] }), status: { parents: [{ parentRef: { name: 'theirs' }, controllerName: 'example.com/controller', conditions: [] }] } },
  ];
  for (const object of objects) server.upsert(object);
  const config = loadKubeConfig({ kubeconfig: server.kubeconfigPath() });
  const lease = { namespace: 'kube-system', leaseName: 'kubenft-gateway-status', leaseDurationMs: 900 };
  const writers = ['node-1', 'node-2'].map((identity) => new GatewayStatusWriter(config, identity, pino({ level: 'silent' }), lease));
  t.teardown(() => Promise.all(writers.map((writer) => writer.stop())));
  const stored = (kind: 'GatewayClass' | 'Gateway' | 'HTTPRoute') => server.stored(kind)[0];
  /** Each agent plans from what the server holds now, as its watch would tell it. */
  const publish = (writer: GatewayStatusWriter) => {
    const state = stateOf([...(['GatewayClass', 'Gateway', 'HTTPRoute'] as const).map(stored), namespace('default'), ...web()]);
    return writer.publish(planGateways(gatewayPlanInput(state, SETTINGS)), state, ['192.168.100.1']);
  };
  for (const writer of writers) writer.start();
  t.ok(await eventually(async () => writers.some((writer) => writer.isLeader), 5_000), 'one agent is elected');
  for (let round = 0; round < 3; round++) await Promise.all(writers.map(publish));
  const statusWrites = () => server.requests.filter((request) => request.method === 'PUT' && request.path.endsWith('/status')).length;
  t.equal(statusWrites(), 3, 'each object written once');
  const classStatus = stored('GatewayClass').status as { conditions: { type: string; status: string; observedGeneration: number; lastTransitionTime: string }[] };
  t.same(classStatus.conditions.map((each) => [each.type, each.status, each.observedGeneration]), [['Accepted', 'True', 1]]);
  t.ok(classStatus.conditions[0].lastTransitionTime, 'a lastTransitionTime');
  const gatewayStatus = stored('Gateway').status as { addresses: unknown[]; conditions: { type: string }[]; listeners: { name: string; attachedRoutes: number }[] };
  t.same(gatewayStatus.addresses, [{ type: 'IPAddress', value: '192.168.100.1' }]);
  t.same(gatewayStatus.conditions.map((each) => each.type), ['Accepted', 'Programmed']);
  t.same(gatewayStatus.listeners.map((each) => [each.name, each.attachedRoutes]), [['http', 1]]);
  const parents = (stored('HTTPRoute').status as { parents: { controllerName: string; conditions: { type: string; status: string }[] }[] }).parents;
  t.same(parents.map((each) => each.controllerName), ['example.com/controller', 'kubenft.io/gateway-controller'], 'the other controller\'s entry is kept');
  t.same(parents[1].conditions.map((each) => `${each.type} ${each.status}`), ['Accepted True', 'ResolvedRefs True']);

  // A spec change: the generation moves, the status follows it; the unchanged condition keeps its time.
  const before = classStatus.conditions[0].lastTransitionTime;
  server.upsert({ ...stored('Gateway'), spec: { ...(stored('Gateway').spec as object), listeners: [{ name: 'http', protocol: 'HTTP', port: 80, allowedRoutes: { namespaces: { from: 'Same' } } }] } });
  await Promise.all(writers.map(publish));
  t.equal((stored('Gateway').status as { conditions: { observedGeneration: number }[] }).conditions[0].observedGeneration, 2, 'observedGeneration follows the spec');
  t.equal((stored('GatewayClass').status as typeof classStatus).conditions[0].lastTransitionTime, before);
});

// The README's "not supported" rows that are refusals: each refused with a message naming the field.
t.test('refused, by name: filters on a backendRef, a mirror percent or fraction; spec.addresses → Accepted=False UnsupportedAddress', async (t) => {
  const withRule = (rule: Record<string, unknown>) => ({ ...httpRoute('refused', { rules: [] }), spec: { parentRefs: [{ name: 'gw' }], rules: [rule] } });
  t.throws(() => normalizeHTTPRoute(withRule({ backendRefs: [{ name: 'web', port: 80, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: '1' }] } }] }] })),
    /HTTPRoute default\/refused.*spec\.rules\[0\]\.backendRefs\[0\]\.filters: filters on a backendRef are not supported/);
  for (const share of [{ percent: 50 }, { fraction: { numerator: 1, denominator: 2 } }]) {
    t.throws(() => normalizeHTTPRoute(withRule({ backendRefs: [{ name: 'web', port: 80 }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'web', port: 80 }, ...share } }] })),
      /spec\.rules\[0\]\.filters\[0\]\.requestMirror: percent and fraction are not supported/, JSON.stringify(share));
  }
  const addressed = { ...gateway('gw', [{ name: 'http', from: 'All' }]) } as KubeObject & { spec: Record<string, unknown> };
  addressed.spec = { ...addressed.spec, addresses: [{ type: 'IPAddress', value: '192.0.2.1' }] };
  const plan = planGateways(gatewayPlanInput(stateOf([namespace('default'), gatewayClass('kubenft'), addressed]), SETTINGS));
  t.equal(conditionsOf(plan.gateways[0].conditions).Accepted, 'False UnsupportedAddress');
});
