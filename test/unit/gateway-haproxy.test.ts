// Gateway API on HAProxy, the parts without HAProxy: what the planner refuses for a dataplane that
// cannot carry a filter (RequestMirror), and what the HAProxy model makes of a Gateway table — the
// Lua router's maps, a host's rules before its count, and a reload only for a timeout HAProxy has
// no line for yet. test/kernel/gateway.haproxy.test.ts runs the same behaviour cases on HAProxy.
import t from 'tap';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import pino from 'pino';
import { GATEWAY_WATCH, GatewayDataplane, gatewayPlanInput } from '../../src/gateway/dataplane.js';
import { GATEWAY_SETTINGS } from '../../src/gateway/flags.js';
import { GatewayPlanner, planGateways } from '../../src/gateway/plan.js';
import { haproxyLayout } from '../../src/ingress/haproxy/config.js';
import { HaproxyModel } from '../../src/ingress/haproxy/model.js';
import { service, slice } from '../lib/manifests.js';
import { gateway, gatewayClass, headers, httpRoute, namespace, prefix } from '../lib/gateway-manifests.js';

const SETTINGS = { className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443' };
const CERTIFICATE = { cert: 'cert', key: 'key' };

function stateOf(objects: KubeObject[]): ClusterState {
  const state = new ClusterState('node-1');
  state.watch(GATEWAY_WATCH);
  for (const object of objects) state.apply(object);
  return state;
}

const mirrored = httpRoute('mirrored', { hostnames: ['m.example.com'], rules: [{ backends: [{ name: 'web' }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'web', port: 80 } } }] }] });
const objects = (...routes: KubeObject[]): KubeObject[] => [
  namespace('default'), gatewayClass('kubenft'), gateway('gw', [{ name: 'http', from: 'All' }]),
  service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: 8080 }]), slice('web', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.5' }]),
  httpRoute('plain', { hostnames: ['p.example.com'], rules: [{ matches: [prefix('/a', { headers: headers({ x: '1' }) })], backends: [{ name: 'web' }], timeouts: { request: '2s' } }] }),
  ...routes,
];

t.test('a route with a filter the dataplane cannot carry is not accepted (UnsupportedValue) and not planned; on the built-in it is', async (t) => {
  const state = stateOf(objects(mirrored));
  const onHaproxy = planGateways(gatewayPlanInput(state, { ...SETTINGS, dataplane: 'haproxy' }));
  const parent = onHaproxy.routes.find((route) => route.name === 'mirrored')!.parents[0];
  t.same([parent.conditions[0].status, parent.conditions[0].reason], ['False', 'UnsupportedValue']);
  t.match(parent.conditions[0].message, /spec\.rules\[0\] has a RequestMirror filter: HAProxy 2\.6 has no request mirroring/);
  t.notOk(onHaproxy.http.hosts['m.example.com'], 'its host is not routed (404)');
  t.equal(onHaproxy.gateways[0].listeners[0].attachedRoutes, 1, 'the listener counts only the route it carries');
  t.match(onHaproxy.problems.map((problem) => problem.reason).join('\n'), /UnsupportedValue/, 'named as a problem (log, kubenft services)');
  const builtin = planGateways(gatewayPlanInput(state, { ...SETTINGS, dataplane: 'builtin' }));
  t.equal(builtin.routes.find((route) => route.name === 'mirrored')!.parents[0].conditions[0].reason, 'Accepted');
  t.same(builtin.http.hosts['m.example.com'].paths[0].actions?.mirrors, ['default/web:http']);
});

t.test('the HAProxy model of a Gateway table: the Lua router\'s maps; a new timeout value reloads, a known one does not', async (t) => {
  const layout = haproxyLayout('/h');
  const model = new HaproxyModel(layout, true);
  // One state, changed as informers change it: the planner's changes are what the dataplane gets.
  const state = stateOf(objects());
  const planner = new GatewayPlanner();
  const first = planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  model.load(first.http, CERTIFICATE);
  const files = new Map(model.files({ maxBodyBytes: 1, maxHeaderBytes: 1024, clientTimeoutMs: 1000, backendTimeoutMs: 1000, connectTimeoutMs: 1000, threads: 1, gatewayRules: true }).map((file) => [file.path, file.content]));
  t.equal(files.get(layout.map('gateway-hosts')), 'p.example.com 0:1\n', 'the host: its generation and rule count');
  t.match(files.get(layout.map('gateway-rules')), /^p\.example\.com\/0\/0 n=\d+&t=P&m=%2Fa&h=x:1:e&b=slot_\d+:1&T=2000\n$/, 'the rule, its header match, its slot and its timeout');
  t.match(files.get(layout.config), /lua\.kubenft-gateway-route/);
  t.match(files.get(layout.config), /set-timeout server 2000ms if \{ var\(txn\.gw_timeout\) -m int eq 2000 \}/, 'a line for the timeout in use');
  t.notMatch(files.get(layout.config), /map_beg/, 'no Ingress map lookups');
  t.match(files.get(layout.luaScript), /core\.register_action\("kubenft-gateway-route"/);

  state.apply(httpRoute('added', { hostnames: ['q.example.com'], rules: [{ backends: [{ name: 'web' }], timeouts: { request: '2s' } }] }));
  const known = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
  const commands = model.changes(known.http, known.changes!.http, CERTIFICATE);
  t.same(commands?.map(({ command }) => command.replace(/ n=.*/, '')), ['add map /h/gateway-rules.map q.example.com/1/0', 'add map /h/gateway-hosts.map q.example.com 1:1'],
    'a known timeout: through the runtime API, the host\'s rule before the host names it');

  state.apply(httpRoute('added', { hostnames: ['q.example.com'], rules: [
    { matches: [prefix('/first')], backends: [{ name: 'web' }] }, { backends: [{ name: 'web' }], timeouts: { request: '2s' } },
  ] }));
  const inserted = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
  t.same(model.changes(inserted.http, inserted.changes!.http, CERTIFICATE)?.map(({ command }) => command.replace(/ n=.*/, '')), [
    'add map /h/gateway-rules.map q.example.com/2/0', 'add map /h/gateway-rules.map q.example.com/2/1', 'set map /h/gateway-hosts.map q.example.com 2:2',
    'del map /h/gateway-rules.map q.example.com/1/0',
  ], 'a rule inserted before another: the new generation whole, then one switch, then the old one deleted (no request sees a mix)');

  state.apply(httpRoute('slower', { hostnames: ['s.example.com'], rules: [{ backends: [{ name: 'web' }], timeouts: { request: '7s' } }] }));
  const slower = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
  t.equal(model.changes(slower.http, slower.changes!.http, CERTIFICATE), undefined, 'a timeout HAProxy has no line for needs a reload');
  t.equal(model.reloadReason, 'new route timeout');
});

t.test('--gateway-dataplane=haproxy without haproxy on PATH is refused by name', async (t) => {
  const path = process.env.PATH;
  t.teardown(() => {
    process.env.PATH = path;
  });
  process.env.PATH = '/nonexistent';
  t.throws(() => new GatewayDataplane({ ...GATEWAY_SETTINGS.defaults(), enabled: true, dataplane: 'haproxy' }, pino({ level: 'silent' })), /--gateway-dataplane=haproxy: no haproxy on PATH: install it/);
  t.doesNotThrow(() => new GatewayDataplane({ ...GATEWAY_SETTINGS.defaults(), enabled: true }, pino({ level: 'silent' })), 'the built-in needs none');
});
