// Gateway API on HAProxy, the parts without a running HAProxy: what the planner refuses for a
// dataplane that cannot carry a filter (RequestMirror) or an expression (judged by the haproxy
// binary's own PCRE2, `haproxy -c`), and what the HAProxy model makes of a Gateway table — the
// maps (a plain rule's path straight to its slot, the others to the Lua router), a host's rules
// before the host names them, and a reload only for a timeout HAProxy has
// no line for yet. test/kernel/gateway.haproxy.test.ts runs the same behaviour cases on HAProxy.
import t from 'tap';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import pino from 'pino';
import { GATEWAY_WATCH, GatewayDataplane, gatewayPlanInput, judgedExpressions } from '../../src/gateway/dataplane.js';
import { GATEWAY_SETTINGS } from '../../src/gateway/flags.js';
import { GatewayPlanner, planGateways, routeExpressions } from '../../src/gateway/plan.js';
import type { HTTPRouteInfo } from '../../src/gateway/objects.js';
import { HaproxyExpressionCheck, routerExpression } from '../../src/ingress/haproxy/expression-check.js';
import { findHaproxy } from '../../src/kernel/haproxy-process.js';
import { haproxyLayout } from '../../src/ingress/haproxy/config.js';
import { HaproxyModel } from '../../src/ingress/haproxy/model.js';
import { ASK_ROUTER, gatewayRouteEntries } from '../../src/ingress/haproxy/gateway-rules.js';
import type { PathRoute } from '../../src/ingress/routes.js';
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

// ECMAScript reads these (the objects are valid), HAProxy's PCRE2 refuses them: [^] (any character
// in ECMAScript, an unterminated class in PCRE2), a lookbehind of no fixed length, \u escapes.
const ecmascriptOnly = httpRoute('ecmascript-only', { hostnames: ['e.example.com'], rules: [
  { matches: [prefix('/fine')], backends: [{ name: 'web' }] },
  { matches: [{ path: { type: 'RegularExpression', value: '/any/[^]+' } }], backends: [{ name: 'web' }] },
] });
const lookbehind = httpRoute('lookbehind', { hostnames: ['l.example.com'], rules: [
  { matches: [prefix('/', { headers: [{ type: 'RegularExpression', name: 'x-tag', value: '(?<=v+)1' }], queryParams: [{ type: 'RegularExpression', name: 'q', value: '\\u0041' }] })], backends: [{ name: 'web' }] },
] });
const portable = httpRoute('portable', { hostnames: ['r.example.com'], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/items/[0-9]+' } }], backends: [{ name: 'web' }] }] });

t.test('a regular expression HAProxy\'s PCRE2 cannot compile: the route is not accepted (UnsupportedValue, naming the field and expression), the others are', async (t) => {
  const state = stateOf(objects(ecmascriptOnly, lookbehind, portable));
  const check = new HaproxyExpressionCheck(findHaproxy()!, pino({ level: 'silent' }));
  await check.learn([ecmascriptOnly, lookbehind, portable].flatMap((route) => [...routeExpressions(stateOf([route]).objectsOf<HTTPRouteInfo>('HTTPRoute').values().next().value!)])
    .map(({ source, wholeValue }) => routerExpression(source, wholeValue)));
  const plan = planGateways(gatewayPlanInput(state, { ...SETTINGS, dataplane: 'haproxy' }, check));
  const accepted = (name: string) => plan.routes.find((route) => route.name === name)!.parents[0].conditions[0];
  t.same([accepted('ecmascript-only').status, accepted('ecmascript-only').reason], ['False', 'UnsupportedValue']);
  t.match(accepted('ecmascript-only').message, /^spec\.rules\[1\]\.matches\[0\]\.path\.value "\/any\/\[\^\]\+": HAProxy's PCRE2 cannot compile it \(--gateway-dataplane=haproxy\): missing terminating \] for character class \(at offset \d+ of "\^\(\?:\/any\/\[\^\]\+\)\$"\)$/, 'the field, the expression, PCRE2\'s reason and the form the router compiles');
  t.same([accepted('lookbehind').status, accepted('lookbehind').reason], ['False', 'UnsupportedValue']);
  t.match(accepted('lookbehind').message, /^spec\.rules\[0\]\.matches\[0\]\.headers\[0\]\.value "\(\?<=v\+\)1": HAProxy's PCRE2 cannot compile it \(--gateway-dataplane=haproxy\): lookbehind assertion is not fixed length/);
  t.notOk(plan.http.hosts['e.example.com'] ?? plan.http.hosts['l.example.com'], 'their hosts are not routed (404)');
  t.same([accepted('portable').reason, accepted('plain').reason], ['Accepted', 'Accepted'], 'the other routes are served');
  t.ok(plan.http.hosts['r.example.com'], 'an expression both engines read is routed');
  t.match(plan.problems.map((problem) => `${problem.object}: ${problem.reason}`).join('\n'), /HTTPRoute default\/ecmascript-only: parent default\/gw \(http\): UnsupportedValue: spec\.rules\[1\]\.matches\[0\]\.path\.value "\/any\/\[\^\]\+": HAProxy.s PCRE2/, 'named as a problem (the log line)');
  const builtin = planGateways(gatewayPlanInput(state, { ...SETTINGS, dataplane: 'builtin' }));
  t.same(['ecmascript-only', 'lookbehind'].map((name) => builtin.routes.find((route) => route.name === name)!.parents[0].conditions[0].reason), ['Accepted', 'Accepted'], 'the built-in dataplane runs them as ECMAScript');
});

/** A Gateway model and one planner over one state, as the agent's: each plan after the first names its table changes. */
function plannedModel() {
  const layout = haproxyLayout('/h');
  const model = new HaproxyModel(layout, true);
  const state = stateOf(objects());
  const planner = new GatewayPlanner();
  const next = (change: () => void) => {
    change();
    state.takeChanges();
    const plan = planner.plan(gatewayPlanInput(state, SETTINGS), new Set());
    return { table: plan.http, changes: plan.changes!.http };
  };
  return { layout, model, state, planner, next };
}

t.test('the HAProxy model of a Gateway table: the Lua router\'s maps; a new timeout value reloads, a known one does not', async (t) => {
  const { layout, model, state, planner, next } = plannedModel();
  const first = planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  model.load(first.http, CERTIFICATE);
  const files = new Map(model.files({ maxBodyBytes: 1, maxHeaderBytes: 1024, clientTimeoutMs: 1000, backendTimeoutMs: 1000, connectTimeoutMs: 1000, threads: 1, gatewayRules: true }).map((file) => [file.path, file.content]));
  t.equal(files.get(layout.map('gateway-hosts')), 'p.example.com p.example.com/0\n', 'the host: the key of its rules in generation 0');
  t.match(files.get(layout.map('gateway-rules')), /^p\.example\.com\/0\/0 n=\d+&t=P&m=%2Fa&h=x:1:e&b=slot_\d+:1&T=2000\n$/, 'the rule, its header match, its slot and its timeout');
  t.equal(files.get(layout.map('gateway-routes')), `p.example.com/0/a/ ${ASK_ROUTER}\n`, 'its path: a header match, so the Lua router');
  t.match(files.get(layout.config), /lua\.kubenft-gateway-route/);
  t.match(files.get(layout.config), /set-timeout server 2000ms if \{ var\(txn\.gw_timeout\) -m int eq 2000 \}/, 'a line for the timeout in use');
  t.notMatch(files.get(layout.config), /\/h\/(hosts|wildcards|routes|redirect)\.map/, 'no Ingress maps');
  t.match(files.get(layout.luaScript), /core\.register_action\("kubenft-gateway-route"/);

  const added = httpRoute('added', { hostnames: ['q.example.com'], rules: [{ backends: [{ name: 'web' }], timeouts: { request: '2s' } }] });
  const known = next(() => state.apply(added));
  const commands = model.changes(known.table, known.changes, CERTIFICATE);
  t.same(commands?.map(({ command }) => command.replace(/ n=.*/, '')), [
    'add map /h/gateway-rules.map q.example.com/1/0', `add map /h/gateway-routes.map q.example.com/1/ ${ASK_ROUTER}`, 'add map /h/gateway-hosts.map q.example.com q.example.com/1',
  ], 'a known timeout: through the runtime API, the host\'s rule and route before the host names them');
  const replanned = planner.plan(gatewayPlanInput(state, SETTINGS), 'full');
  t.equal(replanned.changes, undefined, 'a full sync plans new tables');
  t.same(model.changes(replanned.http, model.wholeChanges(replanned.http), CERTIFICATE), [], 'which, unchanged, are no runtime command and no reload: the rules keep their generation');

  const inserted = next(() => state.apply(httpRoute('added', { hostnames: ['q.example.com'], rules: [
    { matches: [prefix('/first')], backends: [{ name: 'web' }] }, { backends: [{ name: 'web' }], timeouts: { request: '2s' } },
  ] })));
  t.same(model.changes(inserted.table, inserted.changes, CERTIFICATE)?.map(({ command }) => command.replace(/ n=.*/, '').replace(/ slot_\d+\/\d+$/, ' <slot>/<route>')), [
    'add map /h/gateway-rules.map q.example.com/2/0', 'add map /h/gateway-rules.map q.example.com/2/1',
    'add map /h/gateway-routes.map q.example.com/2/first/ <slot>/<route>', `add map /h/gateway-routes.map q.example.com/2/ ${ASK_ROUTER}`,
    'set map /h/gateway-hosts.map q.example.com q.example.com/2',
    'del map /h/gateway-rules.map q.example.com/1/0', 'del map /h/gateway-routes.map q.example.com/1/',
  ], 'a rule inserted before another: the new generation whole (the plain rule\'s path straight to its slot), then one switch, then the old one deleted (no request sees a mix)');

  const slower = next(() => state.apply(httpRoute('slower', { hostnames: ['s.example.com'], rules: [{ backends: [{ name: 'web' }], timeouts: { request: '7s' } }] })));
  t.equal(model.changes(slower.table, slower.changes, CERTIFICATE), undefined, 'a timeout HAProxy has no line for needs a reload');
  t.equal(model.reloadReason, 'new route timeout');
});

t.test('gateway-hosts holds WILDCARDS while a wildcard host has rules (the routing\'s Lua lookup runs only then): written after its entries, deleted with them', async (t) => {
  const { layout, model, state, planner, next: plan } = plannedModel();
  const next = (change: () => void) => {
    const { table, changes } = plan(change);
    return model.changes(table, changes, CERTIFICATE)?.map(({ command }) => command.replace(/ n=.*/, '').replace(/ slot_\d+\/\d+$/, ' <slot>/<route>'));
  };
  model.load(planner.plan(gatewayPlanInput(state, SETTINGS), 'full').http, CERTIFICATE);
  const hostsMap = () => new Map(model.files({ maxBodyBytes: 1, maxHeaderBytes: 1024, clientTimeoutMs: 1000, backendTimeoutMs: 1000, connectTimeoutMs: 1000, threads: 1, gatewayRules: true }).map((file) => [file.path, file.content])).get(layout.map('gateway-hosts'));
  t.notMatch(hostsMap(), /WILDCARDS/, 'no wildcard host: no flag');
  const wildcard = httpRoute('wild', { hostnames: ['*.w.example.com'], rules: [{ backends: [{ name: 'web' }] }] });
  t.same(next(() => state.apply(wildcard)), [
    'add map /h/gateway-rules.map *.w.example.com/1/0', 'add map /h/gateway-routes.map *.w.example.com/1/ <slot>/<route>',
    'add map /h/gateway-hosts.map *.w.example.com *.w.example.com/1', 'add map /h/gateway-hosts.map WILDCARDS 1',
  ], 'the wildcard\'s entries, then the flag');
  t.match(hostsMap(), /^WILDCARDS 1$/m, 'and a reload writes it');
  t.same(next(() => state.apply(httpRoute('wild', { hostnames: ['*.w.example.com', '*.v.example.com'], rules: [{ backends: [{ name: 'web' }] }] }))).filter((command) => /WILDCARDS/.test(command)), [], 'a second wildcard: the flag stays');
  t.same(next(() => state.delete(wildcard)).filter((command) => /gateway-hosts/.test(command)), [
    'del map /h/gateway-hosts.map *.w.example.com', 'del map /h/gateway-hosts.map *.v.example.com', 'del map /h/gateway-hosts.map WILDCARDS',
  ], 'no wildcard left: the flag goes with them');
  t.notMatch(hostsMap(), /WILDCARDS/);
});

// Rules as the planner orders a host's: Exact first, then regular expressions, then the longest
// prefix, conditions breaking ties; a covering wildcard's rules after the host's own.
const rule = (type: PathRoute['type'], match: string, backend: string, extra: Partial<PathRoute> = {}): PathRoute =>
  ({ type, path: match || '/', match, ingress: `default/${backend}`, backend, actions: { backends: [{ backend, weight: 1 }] }, ...extra });
const header = { conditions: { headers: [{ name: 'x', value: '1' }] } };
const routesOf = (rules: PathRoute[]) => Object.fromEntries(gatewayRouteEntries(rules, (path, backend) => `${backend}@${path.match || '/'}`));

t.test('gateway-routes: a key goes straight to a backend only when its first reachable rule is plain and matches all its requests; else to the Lua router', async (t) => {
  t.same(routesOf([rule('Prefix', '/a/b', 'api', header), rule('Prefix', '/a', 'web'), rule('Prefix', '', 'other', header)]),
    { '/a/b/': ASK_ROUTER, '/a/': 'web@/a', '/': ASK_ROUTER }, 'a conditional rule at a longer path asks the router (it falls through to /a there); the plain /a is a target');
  t.same(routesOf([rule('Exact', '/a', 'api'), rule('Prefix', '/a', 'web', header), rule('Prefix', '', 'other')]),
    { '/a/?': 'api@/a', '/a/': ASK_ROUTER, '/': 'other@/' }, 'Exact before Prefix; the conditional /a asks; / below it is plain');
  t.same(routesOf([rule('Exact', '/a/b', 'api', header), rule('Prefix', '/a', 'web')]), { '/a/b/?': ASK_ROUTER, '/a/': 'web@/a' }, 'a conditional Exact asks the router, which falls through to /a');
  t.same(routesOf([rule('Exact', '/e', 'api'), rule('RegularExpression', '/r/[0-9]+', 'other'), rule('Prefix', '/a', 'web'), rule('Prefix', '', 'web')]),
    { '/e/?': 'api@/e', '/a/': ASK_ROUTER, '/': ASK_ROUTER }, 'a regular expression before the prefixes: every prefix key asks; Exact keys are not its');
  t.same(routesOf([rule('RegularExpression', '/r/[0-9]+', 'other')]), { '/': ASK_ROUTER }, 'only an expression: every path asks');
  t.same(routesOf([rule('Prefix', '/a', 'web'), rule('Prefix', '/a/b', 'api')]), { '/a/': 'web@/a', '/a/b/': 'web@/a' }, 'a covering wildcard\'s longer path after the host\'s own /a: the host\'s rule wins there too');
  t.same(routesOf([rule('Prefix', '/ab', 'api'), rule('Prefix', '/a', 'web')]), { '/ab/': 'api@/ab', '/a/': 'web@/a' }, 'prefixes by path element: /a does not cover /ab');
  const two = { actions: { backends: [{ backend: 'web', weight: 1 }, { backend: 'api', weight: 1 }] } };
  const unresolved = { actions: { backends: [{ weight: 1 }] } };
  const none = { actions: { backends: [{ backend: 'web', weight: 0 }] } };
  const filtered = { actions: { backends: [{ backend: 'web', weight: 1 }], responseHeaders: { set: [{ name: 'x', value: '1' }], add: [], remove: [] } } };
  const timed = { actions: { backends: [{ backend: 'web', weight: 1 }], requestTimeoutMs: 1000 } };
  for (const [what, extra] of [['weighted backends', two], ['an unresolved backend (500)', unresolved], ['weight 0 (500)', none], ['a filter', filtered], ['a timeout', timed]] as const) {
    t.same(routesOf([rule('Prefix', '', 'web', extra)]), { '/': ASK_ROUTER }, `${what}: the router`);
  }
});

t.test('--gateway-dataplane=haproxy without haproxy on PATH is refused by name', async (t) => {
  const path = process.env.PATH;
  t.teardown(() => {
    process.env.PATH = path;
  });
  process.env.PATH = '/nonexistent';
  t.throws(() => new GatewayDataplane({ ...GATEWAY_SETTINGS.defaults(), enabled: true, dataplane: 'haproxy' }, pino({ level: 'silent' })), /--gateway-dataplane=haproxy: no haproxy on PATH: install it/);
  t.doesNotThrow(() => new GatewayDataplane({ ...GATEWAY_SETTINGS.defaults(), enabled: true }, pino({ level: 'silent' })), 'the built-in needs none');
  const state = stateOf(objects());
  await t.rejects(judgedExpressions(state, { dataplane: 'haproxy' }, pino({ level: 'silent' })), /--gateway-dataplane=haproxy: no haproxy on PATH: install it/, 'services and explain refuse it too');
  t.equal(await judgedExpressions(state, { dataplane: 'builtin' }, pino({ level: 'silent' })), undefined, 'the built-in judges no expression');
});
