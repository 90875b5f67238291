// The Gateway API end to end, from the conformance suite's cases (kubernetes-sigs/gateway-api:
// conformance/tests/*.go): the real agent (--gateway, manifests) in a node namespace, echo pods,
// and curl in the client namespace talking to the node's address. Every case runs on each
// dataplane: the built-in one here, HAProxy through the twin gateway.haproxy.test.ts
// (test/lib/ingress-dataplane.ts); what one cannot carry is asserted as refused there, by status.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { curlReplies, echoed, header, type Reply } from '../lib/curl.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, metricValue, scrape } from '../lib/kubenft.js';
import { IngressDataplaneUnderTest, ON_HAPROXY } from '../lib/ingress-dataplane.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { certificate, issue, tlsSecret } from '../lib/ingress-manifests.js';
import { type RuleSpec, exact, gateway, gatewayClass, headers, httpRoute, namespace, prefix, referenceGrant } from '../lib/gateway-manifests.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';


const ECHO_PORT = 8080;
const ECHO_PODS = ['web', 'api', 'other', 'mirror'];
const PODS = ECHO_PODS.map((name, index) => ({ name, ipv4: `10.244.${index + 1}.5` }));
const NODE = EXTERNAL.nodeIPv4;

const echoService = (name: string, clusterIP: string, pod: string, serviceNamespace = 'default') => [
  { ...service(name, clusterIP, [{ name: 'http', port: 80, targetPort: ECHO_PORT }]), metadata: { name, namespace: serviceNamespace } },
  { ...slice(name, [{ name: 'http', port: ECHO_PORT }], [{ ip: PODS[ECHO_PODS.indexOf(pod)].ipv4 }]), metadata: { name: `${name}-ipv4`, namespace: serviceNamespace, labels: { 'kubernetes.io/service-name': name } } },
];

const secure = certificate('secure.example.com');
const cross = certificate('cross.example.com');
const denied = certificate('denied.example.com');
const inNamespace = (object: KubeObject, name: string): KubeObject => ({ ...object, metadata: { ...object.metadata, namespace: name } });

const to = (name: string, extra: Partial<{ port: number; namespace: string; weight: number; kind: string; group: string }> = {}) => [{ name, ...extra }];
const route = (name: string, hostnames: string[], rules: RuleSpec[], extra: { parents?: Record<string, unknown>[]; namespace?: string; creationTimestamp?: string } = {}) =>
  httpRoute(name, { hostnames, rules, ...(extra.parents ? { parents: extra.parents } : {}) }, extra);
const redirect = (path: string, requestRedirect: Record<string, unknown>): RuleSpec => ({ matches: [prefix(path)], filters: [{ type: 'RequestRedirect', requestRedirect }] });

/** Everything the cases read: namespaces, classes, Gateways, Services, Secrets, grants (the live changes' certificate and endpoint as given). */
const base = (secureCertificate = secure, livePod = 'web'): unknown[] => [
  namespace('default'), namespace('apps', { team: 'blue' }), namespace('backends'),
  gatewayClass('kubenft'), gatewayClass('theirs', 'example.com/other-controller'),
  gateway('gw', [
    { name: 'http', from: 'All' },
    { name: 'same-ns', hostname: 'same.example.com' },
    { name: 'selector', hostname: 'selected.example.com', from: 'Selector', selector: { team: 'blue' } },
    { name: 'wild', hostname: '*.wild.example.com', from: 'All' },
    { name: 'https', protocol: 'HTTPS', hostname: 'secure.example.com', certificate: { name: 'secure' } },
    { name: 'https-cross', protocol: 'HTTPS', hostname: 'cross.example.com', certificate: { name: 'cross', namespace: 'backends' } },
    { name: 'https-denied', protocol: 'HTTPS', hostname: 'denied.example.com', certificate: { name: 'denied', namespace: 'backends' } },
    { name: 'wrong-port', port: 8080 },
  ]),
  gateway('theirs', [{ name: 'http', from: 'All' }], { className: 'theirs' }),
  ...echoService('web', '10.0.0.10', 'web'), ...echoService('api', '10.0.0.11', 'api'), ...echoService('other', '10.0.0.12', 'other'),
  ...echoService('mirror', '10.0.0.13', 'mirror'), ...echoService('live-backend', '10.0.0.14', livePod),
  ...echoService('api', '10.0.0.20', 'api', 'backends'), ...echoService('other', '10.0.0.21', 'other', 'backends'), ...echoService('api', '10.0.0.22', 'api', 'apps'),
  tlsSecret('secure', secureCertificate), inNamespace(tlsSecret('cross', cross), 'backends'), inNamespace(tlsSecret('denied', denied), 'backends'),
  referenceGrant('routes-to-api', 'backends', { kind: 'HTTPRoute', namespace: 'default' }, { kind: 'Service', name: 'api' }),
  referenceGrant('gateway-certificate', 'backends', { kind: 'Gateway', namespace: 'default' }, { kind: 'Secret', name: 'cross' }),
];

const routes = (): unknown[] => [
  // HTTPRouteMatching: path and header matches; the rule with more header matches wins a tie on the path.
  route('matching', ['match.example.com'], [
    { matches: [prefix('/'), prefix('/', { headers: headers({ version: 'one' }) })], backends: to('web') },
    { matches: [prefix('/v2'), prefix('/', { headers: headers({ version: 'two' }) })], backends: to('api') },
  ]),
  // HTTPRouteExactPathMatching.
  route('exact', ['exact.example.com'], [{ matches: [exact('/one')], backends: to('web') }, { matches: [exact('/two')], backends: to('api') }]),
  // HTTPRouteHeaderMatching: names compare case-insensitively, values exactly.
  route('headers', ['headers.example.com'], [{ matches: [prefix('/', { headers: headers({ Version: 'one', Color: 'orange' }) })], backends: to('web') }]),
  // HTTPRouteMatchingAcrossRoutes: the precedence order holds across routes; ties go to the oldest route, then the name.
  route('across-a', ['across.example.com'], [{ matches: [prefix('/')], backends: to('web') }, { matches: [prefix('/tie')], backends: to('web') }], { creationTimestamp: '2021-01-01T00:00:00Z' }),
  route('across-b', ['across.example.com'], [{ matches: [exact('/example')], backends: to('api') }, { matches: [prefix('/tie')], backends: to('api') }], { creationTimestamp: '2020-01-01T00:00:00Z' }),
  route('named-b', ['names.example.com'], [{ matches: [prefix('/')], backends: to('api') }], { creationTimestamp: '2020-01-01T00:00:00Z' }),
  route('named-a', ['names.example.com'], [{ matches: [prefix('/')], backends: to('web') }], { creationTimestamp: '2020-01-01T00:00:00Z' }),
  // HTTPRouteCrossNamespace, HTTPRouteReferenceGrant: another namespace's Service only with a grant.
  route('cross', ['cross-backend.example.com'], [
    { matches: [prefix('/granted')], backends: to('api', { namespace: 'backends' }) },
    { matches: [prefix('/not-granted')], backends: to('other', { namespace: 'backends' }) },
  ]),
  // HTTPRouteInvalidBackendRefUnknownKind, HTTPRouteInvalidNonExistentBackendRef: 500.
  route('invalid', ['invalid.example.com'], [
    { matches: [prefix('/kind')], backends: to('web', { kind: 'Unknown', group: 'example.com' }) },
    { matches: [prefix('/missing')], backends: to('nope') },
    { matches: [prefix('/none')] },
  ]),
  // HTTPRouteWeight.
  route('weights', ['weights.example.com'], [{ backends: [{ name: 'web', weight: 70 }, { name: 'api', weight: 30 }, { name: 'other', weight: 0 }] }]),
  // HTTPRouteRequestHeaderModifier, HTTPRouteResponseHeaderModifier.
  route('modifiers', ['modifiers.example.com'], [{
    backends: to('web'),
    filters: [
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'add-appends-values' }], remove: ['X-Header-Remove'] } },
      { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'Content-Type', value: 'text/echo' }], add: [{ name: 'X-Response-Add', value: 'added' }], remove: ['Date'] } },
    ],
  }]),
  // HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectScheme, HTTPRouteRedirectPort, HTTPRouteRedirectPath.
  route('redirects', ['redirect.example.com'], [
    redirect('/hostname', { hostname: 'example.org' }),
    redirect('/status-301', { statusCode: 301 }),
    redirect('/scheme', { scheme: 'https' }),
    redirect('/port', { port: 8443 }),
    redirect('/scheme-and-port', { scheme: 'https', port: 8443 }),
    redirect('/full', { path: { type: 'ReplaceFullPath', replaceFullPath: '/replaced' }, statusCode: 303 }),
    redirect('/prefix/one', { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/two' }, statusCode: 307 }),
    redirect('/permanent', { scheme: 'https', hostname: 'example.org', statusCode: 308 }),
  ]),
  // HTTPRouteRewriteHost, HTTPRouteRewritePath.
  route('rewrites', ['rewrite.example.com'], [
    { matches: [prefix('/prefix/one')], backends: to('web'), filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } } }] },
    { matches: [prefix('/strip-prefix')], backends: to('web'), filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }] },
    { matches: [prefix('/full')], backends: to('web'), filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example.org', path: { type: 'ReplaceFullPath', replaceFullPath: '/one' } } }] },
  ]),
  // HTTPRouteQueryParamMatching, HTTPRouteMethodMatching.
  route('query-method', ['extended.example.com'], [
    { matches: [prefix('/', { queryParams: [{ name: 'animal', value: 'whale' }] })], backends: to('web') },
    { matches: [prefix('/', { queryParams: [{ name: 'animal', value: 'dolphin' }, { name: 'color', value: 'blue' }] })], backends: to('api') },
    { matches: [prefix('/', { method: 'POST' })], backends: to('other') },
  ]),
  // Regular expressions (implementation-specific): a path expression matches the whole path; a header expression anywhere in the value.
  route('regex', ['regex.example.com'], [
    { matches: [{ path: { type: 'RegularExpression', value: '/items/[0-9]+' } }], backends: to('web') },
    { matches: [prefix('/', { headers: [{ type: 'RegularExpression', name: 'X-Version', value: '^v[0-9]+$' }] })], backends: to('api') },
  ]),
  // Expressions ECMAScript reads but HAProxy's PCRE2 refuses: [^] (any character), a lookbehind of no fixed length.
  route('regex-ecmascript', ['regex-js.example.com'], [
    { matches: [{ path: { type: 'RegularExpression', value: '/any/[^]+' } }], backends: to('web') },
    { matches: [prefix('/', { headers: [{ type: 'RegularExpression', name: 'X-Tag', value: '(?<=v+)1' }] })], backends: to('api') },
  ]),
  // HTTPRouteRequestMirror.
  route('mirror', ['mirror.example.com'], [{ backends: to('web'), filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', port: 80 } } }] }]),
  // HTTPRouteRequestMultipleMirrors: each mirror filter gets its copy.
  route('mirrors', ['mirrors.example.com'], [{ backends: to('web'), filters: [
    { type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror', port: 80 } } }, { type: 'RequestMirror', requestMirror: { backendRef: { name: 'other', port: 80 } } },
  ] }]),
  // HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest.
  route('timeouts', ['timeout.example.com'], [
    { matches: [prefix('/request')], backends: to('web'), timeouts: { request: '500ms' } },
    { matches: [prefix('/backend')], backends: to('web'), timeouts: { request: '10s', backendRequest: '500ms' } },
  ]),
  // HTTPRouteParentRefPort: a port that matches the listener's attaches, another does not.
  route('parent-port', ['port.example.com'], [{ backends: to('web') }], { parents: [{ name: 'gw', port: 80, sectionName: 'http' }] }),
  route('parent-bad-port', ['bad-port.example.com'], [{ backends: to('web') }], { parents: [{ name: 'gw', port: 8081 }] }),
  // HTTPRouteHostnameIntersection and multi-label wildcards on a *.wild.example.com listener.
  route('wild-named', ['a.wild.example.com', 'outside.example.com'], [{ backends: to('api') }], { parents: [{ name: 'gw', sectionName: 'wild' }] }),
  route('wild-any', [], [{ backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'wild' }] }),
  route('wild-none', ['unrelated.example.net'], [{ backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'wild' }] }),
  // allowedRoutes: Same and Selector.
  route('same-ok', [], [{ backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'same-ns' }] }),
  route('selected', [], [{ backends: to('api') }], { namespace: 'apps', parents: [{ name: 'gw', namespace: 'default', sectionName: 'selector' }] }),
  route('not-selected', ['not-selected.example.com'], [{ backends: to('api') }], { namespace: 'backends', parents: [{ name: 'gw', namespace: 'default', sectionName: 'selector' }] }),
  route('not-same', ['not-same.example.com'], [{ backends: to('api') }], { namespace: 'backends', parents: [{ name: 'gw', namespace: 'default', sectionName: 'same-ns' }] }),
  // Not attached: a section the Gateway lacks, another class's Gateway.
  route('no-section', ['unattached.example.com'], [{ backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'nope' }] }),
  route('theirs', ['theirs.example.com'], [{ backends: to('web') }], { parents: [{ name: 'theirs' }] }),
  // HTTPS listeners: their own certificates, one from another namespace with a grant.
  route('secure', [], [{ backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'https' }, { name: 'gw', sectionName: 'https-cross' }, { name: 'gw', sectionName: 'https-denied' }] }),
  // A redirect on an HTTPS listener keeps the scheme, and leaves out its default port.
  route('secure-redirect', ['secure.example.com'], [redirect('/moved', { hostname: 'example.org' })], { parents: [{ name: 'gw', sectionName: 'https' }] }),
  // Plain rules (a path, one backend: map lookups on HAProxy) beside conditional ones (its Lua router) at longer and shorter paths.
  route('layered', ['layered.example.com'], [
    { matches: [prefix('/a/b', { headers: headers({ pick: 'api' }) })], backends: to('api') },
    { matches: [prefix('/a')], backends: to('web') },
    { matches: [prefix('/', { headers: headers({ pick: 'other' }) })], backends: to('other') },
    { matches: [exact('/a/b/exact')], backends: to('other') },
    { matches: [exact('/a/conditional', { headers: headers({ pick: 'api' }) })], backends: to('api') },
  ]),
  // A longer path of the wildcard's than a.wild.example.com's own Prefix /: the host's own rules come first.
  route('wild-deeper', [], [{ matches: [prefix('/deeper')], backends: to('other') }], { parents: [{ name: 'gw', sectionName: 'wild' }] }),
  // Nested wildcards and any host's rules (on the http listener alone, at paths no other case asks).
  route('nest-inner', ['*.inner.nest.example.com'], [{ matches: [prefix('/nest')], backends: to('other') }], { parents: [{ name: 'gw', sectionName: 'http' }] }),
  route('nest-outer', ['*.nest.example.com'], [{ matches: [prefix('/nest'), prefix('/nest-outer')], backends: to('api') }], { parents: [{ name: 'gw', sectionName: 'http' }] }),
  route('nest-any', [], [{ matches: [prefix('/nest'), prefix('/nest-outer'), prefix('/nest-any')], backends: to('web') }], { parents: [{ name: 'gw', sectionName: 'http' }] }),
  route('live', ['live.example.com'], [{ backends: to('web') }]),
  route('live-endpoints', ['endpoints.example.com'], [{ backends: to('live-backend') }]),
];

{
  const dataplane = new IngressDataplaneUnderTest();
  t.test(`Gateway API on the ${dataplane.name} dataplane`, async (t) => {
    let topology: Topology | undefined;
    let agent: ProcessHandle | undefined;
    const manifests = new ManifestFile([...base(), ...routes()]);
    let mirrorPod: ProcessHandle | undefined;
    let otherPod: ProcessHandle | undefined;
    t.teardown(async () => {
      if (process.env.GATEWAY_TEST_LOG) (await import('node:fs')).writeFileSync(process.env.GATEWAY_TEST_LOG, agent?.output().stderr ?? '');
      await agent?.stop();
      await dataplane.remove();
      await topology?.destroy();
      manifests.remove();
    });
    topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
    const pods = topology;
    await Promise.all(ECHO_PODS.map(async (name, index) => {
      const server = pods.spawn(pods.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), name, String(ECHO_PORT), name === 'mirror' || name === 'other' ? 'LOG' : '']);
      if (name === 'mirror') mirrorPod = server;
      if (name === 'other') otherPod = server;
      await server.waitForOutput(/ready/, 60_000);
    }));
    agent = topology.spawn(topology.node, [
      'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
      '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '--gateway', '--gateway-workers', '1', ...dataplane.gatewayArgs,
    ]);
    const curls = (args: string[]) => curlReplies(pods, NODE, args);
    const curl = async (args: string[]): Promise<Reply> => (await curls(args))[0] ?? { status: 0, body: '', headers: '' };
    if (!(await eventually(async () => (await curl(['http://match.example.com/'])).status === 200, 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
    const logged = (pattern: RegExp) => eventually(async () => pattern.test(agent!.output().stderr), 5_000);
    /** Requests (with `headers`, curl's -H arguments) in batches of 50 on new connections until `running` says no (at most 4,000): each one's status, 0 for none. */
    const requestsWhile = async (running: () => boolean, urls: string[], headers: string[] = []) => {
      const statuses: number[] = [];
      while (running() && statuses.length < 4_000) {
        const replies = await curls(['-H', 'connection: close', ...headers, ...Array.from({ length: 50 }, (_, index) => urls[index % urls.length])]);
        statuses.push(...replies.map((reply) => reply.status), ...Array<number>(50 - replies.length).fill(0));
      }
      return statuses;
    };
    /** The HAProxys' reloads by reason, adoption by a restarted agent aside. */
    const reloads = async (): Promise<Record<string, number>> => Object.fromEntries([...(await scrape(pods, 'http://127.0.0.1:10249/metrics')).body.matchAll(/^kubenft_gateway_haproxy_reloads_total\{reason="(?!adopted")([^"]*)"\} (\d+)$/gm)]
      .map((match) => [match[1], Number(match[2])]));

    t.test('HTTPRouteMatching: path and header matches, more header matches first', async (t) => {
      const cases: [string[], string][] = [
        [['http://match.example.com/'], 'web'], [['http://match.example.com/example'], 'web'],
        [['-H', 'version: one', 'http://match.example.com/'], 'web'], [['http://match.example.com/v2'], 'api'],
        [['http://match.example.com/v2/example'], 'api'], [['-H', 'version: two', 'http://match.example.com/'], 'api'],
        [['http://match.example.com/foo/v2/example'], 'web'], [['http://match.example.com/v2example'], 'web'],
      ];
      for (const [args, pod] of cases) {
        const reply = await curl(args);
        t.equal(reply.pod, pod, `${args.join(' ')} (${reply.status} ${reply.body.slice(0, 80)})`);
      }
    });

    t.test('HTTPRouteExactPathMatching: exact and case-sensitive', async (t) => {
      const [one, two, deeper, slash, upper] = await curls(['http://exact.example.com/one', 'http://exact.example.com/two', 'http://exact.example.com/one/example', 'http://exact.example.com/two/', 'http://exact.example.com/One']);
      t.equal(one.pod, 'web');
      t.equal(two.pod, 'api');
      for (const reply of [deeper, slash, upper]) t.equal(reply.status, 404, 'no rule matches: 404');
    });

    t.test('HTTPRouteHeaderMatching: names case-insensitive, values exact, every header must match', async (t) => {
      t.equal((await curl(['-H', 'version: one', '-H', 'color: orange', 'http://headers.example.com/'])).pod, 'web');
      t.equal((await curl(['-H', 'VERSION: one', '-H', 'CoLoR: orange', 'http://headers.example.com/'])).pod, 'web', 'names in any case');
      t.equal((await curl(['-H', 'version: ONE', '-H', 'color: orange', 'http://headers.example.com/'])).status, 404, 'values are exact');
      t.equal((await curl(['-H', 'version: one', 'http://headers.example.com/'])).status, 404, 'one header missing');
    });

    t.test('HTTPRouteMatchingAcrossRoutes: precedence across routes, then the oldest route, then its name', async (t) => {
      t.equal((await curl(['http://across.example.com/example'])).pod, 'api', 'Exact beats Prefix / of another route');
      t.equal((await curl(['http://across.example.com/other'])).pod, 'web');
      t.equal((await curl(['http://across.example.com/tie/x'])).pod, 'api', 'the same match in two routes: the older route');
      t.equal((await curl(['http://names.example.com/'])).pod, 'web', 'the same age: the first name (named-a)');
    });

    t.test('HTTPRouteCrossNamespace and ReferenceGrant: another namespace\'s Service only with a grant; 500 without', async (t) => {
      t.equal((await curl(['http://cross-backend.example.com/granted'])).pod, 'api');
      t.equal((await curl(['http://cross-backend.example.com/not-granted'])).status, 500);
    });

    t.test('invalid backends answer 500: an unknown kind, a missing Service, no backend', async (t) => {
      const replies = await curls(['http://invalid.example.com/kind', 'http://invalid.example.com/missing', 'http://invalid.example.com/none']);
      t.same(replies.map((reply) => reply.status), [500, 500, 500]);
    });

    t.test('HTTPRouteWeight: traffic in proportion to the weights, none to weight 0', async (t) => {
      const replies = await curls(['-H', 'connection: close', ...Array.from({ length: 200 }, () => 'http://weights.example.com/')]);
      const count = (pod: string) => replies.filter((reply) => reply.pod === pod).length;
      t.equal(count('web') + count('api'), 200, 'every request answered by web or api');
      t.equal(count('other'), 0, 'weight 0 gets none');
      t.ok(count('api') > 0 && count('web') > count('api'), `70:30 (web ${count('web')}, api ${count('api')})`);
    });

    t.test('RequestHeaderModifier and ResponseHeaderModifier', async (t) => {
      const reply = await curl(['-H', 'X-Header-Set: original', '-H', 'X-Header-Add: original', '-H', 'X-Header-Remove: gone', 'http://modifiers.example.com/']);
      t.equal(echoed(reply, 'x-header-set'), 'set-overwrites-values');
      t.equal(echoed(reply, 'x-header-add'), 'original, add-appends-values');
      t.equal(echoed(reply, 'x-header-remove'), '');
      t.equal(header(reply, 'content-type'), 'text/echo', 'a response header set');
      t.equal(header(reply, 'x-response-add'), 'added');
      t.equal(header(reply, 'date'), undefined, 'a response header removed');
    });

    t.test('RequestRedirect: hostname, status, scheme, port, path (full and prefix), 301/302/303/307/308', async (t) => {
      const cases: [string, number, string][] = [
        ['/hostname/x?q=1', 302, 'http://example.org/hostname/x?q=1'],
        ['/status-301', 301, 'http://redirect.example.com/status-301'],
        ['/scheme', 302, 'https://redirect.example.com/scheme'],
        ['/port', 302, 'http://redirect.example.com:8443/port'],
        ['/scheme-and-port', 302, 'https://redirect.example.com:8443/scheme-and-port'],
        ['/full/a?b=c', 303, 'http://redirect.example.com/replaced?b=c'],
        ['/prefix/one/three', 307, 'http://redirect.example.com/two/three'],
        ['/permanent', 308, 'https://example.org/permanent'],
      ];
      const replies = await curls(cases.map(([path]) => `http://redirect.example.com${path}`));
      cases.forEach(([path, status, location], index) => {
        t.equal(replies[index].status, status, `${path}: ${status}`);
        t.equal(header(replies[index], 'location'), location, `${path}: Location`);
      });
    });

    t.test('URLRewrite: prefix and full path, hostname', async (t) => {
      const [prefixed, trailing, stripped, bare, full] = await curls(['http://rewrite.example.com/prefix/one/two?x=1', 'http://rewrite.example.com/prefix/one/', 'http://rewrite.example.com/strip-prefix/three', 'http://rewrite.example.com/strip-prefix', 'http://rewrite.example.com/full/path']);
      t.equal(prefixed.echo?.url, '/one/two?x=1');
      t.equal(trailing.echo?.url, '/one/');
      t.equal(stripped.echo?.url, '/three');
      t.equal(bare.echo?.url, '/');
      t.equal(full.echo?.url, '/one');
      t.equal(echoed(full, 'host'), 'rewritten.example.org');
    });

    t.test('query parameter and method matches', async (t) => {
      t.equal((await curl(['http://extended.example.com/?animal=whale'])).pod, 'web');
      t.equal((await curl(['http://extended.example.com/?animal=dolphin&color=blue'])).pod, 'api', 'more query matches first');
      t.equal((await curl(['http://extended.example.com/?animal=dolphin'])).status, 404, 'one query parameter missing');
      t.equal((await curl(['-X', 'POST', 'http://extended.example.com/'])).pod, 'other');
      t.equal((await curl(['http://extended.example.com/'])).status, 404, 'GET matches no method rule');
    });

    t.test('variants: query escapes and repeats, regular expressions, HTTP/2 over TLS, requests counted by route', async (t) => {
      const cases: [string[], number, string?][] = [
        [['http://extended.example.com/?animal=wh%61le'], 200, 'web'],
        [['http://extended.example.com/?animal=whale&animal=dolphin'], 200, 'web'],
        [['http://extended.example.com/?color=blue&animal=dolphin'], 200, 'api'],
        [['http://extended.example.com/?Animal=whale'], 404],
        [['http://regex.example.com/items/42'], 200, 'web'],
        [['http://regex.example.com/items/42/more'], 404],
        [['http://regex.example.com/items/abc'], 404],
        [['-H', 'x-version: v2', 'http://regex.example.com/anything'], 200, 'api'],
        [['-H', 'X-VERSION: v2beta', 'http://regex.example.com/anything'], 404],
        // An encoded slash that a backend could read as a separator, reaching another rule that way: refused.
        [['http://match.example.com/v2%2Fexample'], 400],
        [['http://match.example.com/other%2Fexample'], 200, 'web'],
      ];
      for (const [args, status, pod] of cases) {
        const reply = await curl(args);
        t.equal(reply.status, status, args.join(' '));
        if (pod) t.equal(reply.pod, pod, `${args.join(' ')}: ${pod}`);
      }
      const h2 = await pods.exec(pods.client, ['curl', '-sS', '-k', '--http2', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', '--connect-to', `::${NODE}:`, 'https://secure.example.com/']);
      t.equal(h2.stdout, '2 200', 'HTTP/2 over TLS');
      const moved = await curl(['https://secure.example.com/moved/x?y=1']);
      t.same([moved.status, header(moved, 'location')], [302, 'https://example.org/moved/x?y=1'], 'a redirect on the HTTPS listener: https, no port');
      // Each rule path is a series of its own: the route's answers are their sum.
      const counted = async () => [...(await scrape(pods, 'http://127.0.0.1:10249/metrics')).body.matchAll(/^kubenft_gateway_requests_total\{[^}]*route="default\/regex"[^}]*status="200"[^}]*\} (\d+)$/gm)]
        .reduce((sum, match) => sum + Number(match[1]), 0);
      t.ok(await eventually(async () => (await counted()) >= 2, 5_000), 'requests are counted by HTTPRoute');
    });

    if (ON_HAPROXY) {
      t.test('an expression HAProxy\'s PCRE2 cannot compile: the route is not accepted (UnsupportedValue, naming it), the others are served', async (t) => {
        t.same([(await curl(['http://regex-js.example.com/any/thing'])).status, (await curl(['-H', 'x-tag: vv1', 'http://regex-js.example.com/'])).status], [404, 404]);
        t.ok(await logged(/HTTPRoute default\/regex-ecmascript: parent default\/gw[^:]*: UnsupportedValue: spec\.rules\[0\]\.matches\[0\]\.path\.value \\?"\/any\/\[\^\]\+\\?": HAProxy's PCRE2 cannot compile it \(--gateway-dataplane=haproxy\): missing terminating \] for character class/), 'named, with PCRE2\'s reason');
        t.equal((await curl(['http://regex.example.com/items/42'])).pod, 'web', 'a route whose expression both engines read is served');
        // kubenft services and explain judge with the same PCRE2: they show what the dataplane serves.
        const inspectArgs = ['--manifests', manifests.path, '--hostname-override', 'node-1', '--gateway', ...dataplane.gatewayArgs];
        const listed = await kubenft(pods, ['services', ...inspectArgs]);
        t.equal(listed.code, 0, listed.stderr);
        t.match(listed.stdout, /not served: HTTPRoute default\/regex-ecmascript: parent default\/gw[^:]*: UnsupportedValue: .*HAProxy's PCRE2 cannot compile it/, 'services names the route HAProxy refuses');
        t.notMatch(listed.stdout, /regex-js\.example\.com/, 'and lists no host of it');
        const explained = await kubenft(pods, ['explain', ...inspectArgs, '--url', 'http://regex-js.example.com/any/thing']);
        t.equal(explained.code, 0, explained.stderr);
        t.match(explained.stdout, /404: no route matches/, 'explain answers what HAProxy answers');
      });
    } else {
      t.test('expressions only ECMAScript reads ([^], a lookbehind of no fixed length) run on the built-in dataplane', async (t) => {
        t.equal((await curl(['http://regex-js.example.com/any/thing'])).pod, 'web');
        t.equal((await curl(['-H', 'x-tag: vv1', 'http://regex-js.example.com/'])).pod, 'api');
        t.equal((await curl(['-H', 'x-tag: 1', 'http://regex-js.example.com/'])).status, 404, 'the lookbehind holds');
      });
    }

    if (ON_HAPROXY) {
      t.test('RequestMirror on HAProxy: not carried, so the route is not accepted (UnsupportedValue) and not served', async (t) => {
        t.equal((await curl(['http://mirror.example.com/mirrored-path'])).status, 404);
        t.ok(await logged(/HTTPRoute default\/mirror: parent default\/gw[^:]*: UnsupportedValue: spec\.rules\[0\] has a RequestMirror filter: HAProxy 2\.6 has no request mirroring/), 'named, with the reason');
        t.equal((await curl(['http://mirrors.example.com/'])).status, 404, 'two mirrors: the same');
      });
    } else {
      t.test('RequestMirror: the mirror backend gets a copy; the client gets the backend\'s answer', async (t) => {
        const reply = await curl(['http://mirror.example.com/mirrored-path']);
        t.equal(reply.pod, 'web');
        t.ok(await eventually(async () => /request GET \/mirrored-path/.test(mirrorPod!.output().stdout), 5_000), 'the mirror saw the request');
      });
      t.test('HTTPRouteRequestMultipleMirrors: each mirror backend gets a copy', async (t) => {
        t.equal((await curl(['http://mirrors.example.com/both-mirrors'])).pod, 'web');
        t.ok(await eventually(async () => /request GET \/both-mirrors/.test(mirrorPod!.output().stdout) && /request GET \/both-mirrors/.test(otherPod!.output().stdout), 5_000), 'both mirrors saw the request');
      });
    }

    t.test('timeouts: the request and the backend request', async (t) => {
      t.equal((await curl(['-H', 'x-echo-delay-ms: 3000', 'http://timeout.example.com/request'])).status, 504, 'past timeouts.request');
      t.equal((await curl(['-H', 'x-echo-delay-ms: 3000', 'http://timeout.example.com/backend'])).status, 504, 'past timeouts.backendRequest');
      t.equal((await curl(['http://timeout.example.com/request'])).status, 200, 'a prompt backend is answered');
    });

    t.test('parentRef port, hostname intersection, multi-label wildcards, allowedRoutes, unattached routes', async (t) => {
      const expect: [string, number, string?][] = [
        ['http://port.example.com/', 200, 'web'],
        ['http://bad-port.example.com/', 404],
        ['http://a.wild.example.com/', 200, 'api'],
        ['http://outside.example.com/', 404],
        ['http://b.wild.example.com/', 200, 'web'],
        ['http://deep.b.wild.example.com/', 200, 'web'],
        ['http://wild.example.com/', 404],
        ['http://unrelated.example.net/', 404],
        ['http://same.example.com/', 200, 'web'],
        ['http://selected.example.com/', 200, 'api'],
        ['http://not-selected.example.com/', 404],
        ['http://not-same.example.com/', 404],
        ['http://unattached.example.com/', 404],
        ['http://theirs.example.com/', 404],
      ];
      const replies = await curls(expect.map(([url]) => url));
      expect.forEach(([url, status, pod], index) => {
        t.equal(replies[index].status, status, url);
        if (pod) t.equal(replies[index].pod, pod, `${url}: ${pod}`);
      });
      t.ok(await logged(/HTTPRoute default\/no-section: parent default\/gw[^:]*: NoMatchingParent/), 'the unattached route is named, with the reason');
      t.ok(await logged(/HTTPRoute backends\/not-selected: parent default\/gw[^:]*: NotAllowedByListeners/));
      t.ok(await logged(/HTTPRoute default\/wild-none: parent default\/gw[^:]*: NoMatchingListenerHostname/));
      t.ok(await logged(/Gateway default\/gw listener wrong-port: PortUnavailable/));
    });

    t.test('HTTPS listeners: each hostname\'s certificate, one from another namespace with a grant; none without', async (t) => {
      const subject = async (name: string) => {
        const result = await pods.exec(pods.client, ['curl', '-sS', '-k', '-v', '-o', '/dev/null', '--connect-to', `::${NODE}:`, `https://${name}/`]);
        return /subject: (.*)/.exec(result.stderr)?.[1] ?? result.stderr;
      };
      t.match(await subject('secure.example.com'), /CN=secure\.example\.com/);
      t.match(await subject('cross.example.com'), /CN=cross\.example\.com/, 'a Secret in another namespace, granted');
      t.notMatch(await subject('denied.example.com'), /CN=denied\.example\.com/, 'without a grant: not served');
      t.equal((await curl(['https://secure.example.com/'])).pod, 'web');
      t.equal((await curl(['https://denied.example.com/'])).status, 404, 'the denied listener takes no route');
      t.equal((await curl(['http://secure.example.com/'])).status, 404, 'a route of the HTTPS listeners only is not on HTTP');
      t.ok(await logged(/Gateway default\/gw listener https-denied: RefNotPermitted/));
    });

    t.test('kubenft services lists where each host and match leads; explain --url names the Gateway, listener, route and rule', async (t) => {
      const listed = await kubenft(pods, ['services', '--manifests', manifests.path, '--hostname-override', 'node-1', '--gateway', ...dataplane.gatewayArgs]);
      t.equal(listed.code, 0, listed.stderr);
      t.match(listed.stdout, /HTTP match\.example\.com PathPrefix \/v2 -> HTTPRoute default\/matching rule 1 \(Gateway default\/gw listener http\)/);
      t.match(listed.stdout, /HTTPS secure\.example\.com PathPrefix \/ -> HTTPRoute default\/secure rule 0 \(Gateway default\/gw listener https\)/);
      t.match(listed.stdout, /not served: HTTPRoute default\/no-section: parent default\/gw \(nope\): NoMatchingParent/);
      const explain = async (url: string) => {
        const result = await kubenft(pods, ['explain', '--manifests', manifests.path, '--hostname-override', 'node-1', '--gateway', ...dataplane.gatewayArgs, '--url', url]);
        t.equal(result.code, 0, result.stderr);
        return result.stdout;
      };
      t.match(await explain('http://match.example.com/v2/x'), /Gateway default\/gw listener http \(HTTP\), host match\.example\.com, HTTPRoute default\/matching rule 1 \(PathPrefix \/v2\)\n\s+backend default\/api:http: 10\.244\.2\.5:8080/);
      t.match(await explain('http://redirect.example.com/status-301'), /HTTPRoute default\/redirects rule 1 .*\n\s+301 redirect/);
      t.match(await explain('http://invalid.example.com/missing'), /500: the backend cannot be resolved/);
      t.match(await explain('http://nowhere.example.com/'), /404: no route matches/);
    });

    t.test('kubenft_gateway_active_connections counts both listeners\' connections', async (t) => {
      // Two idle connections to the HTTP listener, one to the HTTPS one: the listeners' proxies share the gauge.
      const holder = pods.spawn(pods.client, ['node', '-e', `
        const [net, tls] = [require('node:net'), require('node:tls')];
        let open = 0;
        const opened = () => { if (++open === 3) console.log('open'); };
        net.connect(80, '${NODE}', opened); net.connect(80, '${NODE}', opened);
        tls.connect({ port: 443, host: '${NODE}', servername: 'secure.example.com', rejectUnauthorized: false }, opened);`]);
      t.teardown(() => holder.stop());
      await holder.waitForOutput(/open/, 10_000);
      const gauge = async () => metricValue((await scrape(pods, 'http://127.0.0.1:10249/metrics')).body, 'kubenft_gateway_active_connections');
      t.ok(await eventually(async () => (await gauge()) === 3, 10_000), `3 connections open (the gauge says ${await gauge()})`);
      await holder.stop();
      t.ok(await eventually(async () => (await gauge()) === 0, 10_000), 'none once they close');
    });

    t.test('a full sync with nothing changed (as a drift repair or the hourly resync makes) reloads nothing and fails no request; a route change after it is applied', async (t) => {
      const fullSyncs = () => agent!.output().stderr.match(/synced kind="full"/g)?.length ?? 0;
      const [syncsBefore, reloadsBefore] = [fullSyncs(), await reloads()];
      let syncing = true;
      const requests = requestsWhile(() => syncing, ['http://live.example.com/', 'http://match.example.com/']);
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        // A rule of someone else's in kubenft's table: the drift watch restores the table with a full
        // sync, and every dataplane is handed the whole state ('full'), as after a relist or the hourly one.
        const added = await pods.exec(pods.node, ['nft', 'add', 'rule', 'ip', 'kubenft', 'nat-postrouting', 'counter']);
        t.equal(added.code, 0, added.stderr);
        t.ok(await eventually(async () => fullSyncs() > syncsBefore, 10_000), 'the drift repair ran a full sync (the Gateway\'s update included)');
        await new Promise((resolve) => setTimeout(resolve, 500));
      } finally {
        syncing = false;
      }
      const statuses = await requests;
      t.ok(statuses.length >= 50, `requests ran across the full sync (${statuses.length})`);
      t.same(statuses.filter((status) => status !== 200), [], 'no failed request');
      if (ON_HAPROXY) t.same(await reloads(), reloadsBefore, 'no HAProxy reloaded: the unchanged tables were no runtime API command');
      manifests.write([...base(), ...routes(), route('after-full-sync', ['after-full-sync.example.com'], [{ backends: to('api') }])]);
      t.ok(await eventually(async () => (await curl(['http://after-full-sync.example.com/'])).pod === 'api', 10_000), 'a route added after it answers');
      if (ON_HAPROXY) t.same(await reloads(), reloadsBefore, 'through the runtime API too');
    });

    t.test('live changes: a route moved, one added (with a timeout not seen before), an endpoint moved, a certificate rotated, while requests run: none fails', async (t) => {
      let changing = true;
      const loop = (urls: string[]) => requestsWhile(() => changing, urls);
      const subject = async () => /subject: (.*)/.exec((await pods.exec(pods.client, ['curl', '-sS', '-k', '-v', '-o', '/dev/null', '--connect-to', `::${NODE}:`, 'https://secure.example.com/'])).stderr)?.[1] ?? '';
      const loops = [loop(['http://live.example.com/', 'http://endpoints.example.com/']), loop(['https://secure.example.com/'])];
      const moved = [...routes().filter((object) => (object as KubeObject).metadata?.name !== 'live'),
        route('live', ['live.example.com'], [{ backends: to('api') }]), route('added', ['added.example.com'], [{ backends: to('other'), timeouts: { request: '7s' } }])];
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        manifests.write([...base(), ...moved]);
        t.ok(await eventually(async () => (await curl(['http://added.example.com/'])).pod === 'other', 10_000), 'the new route answers');
        // The new route alone is replanned (a manifest rewrite is a partial sync): one reload, for its timeout, none for a whole replan.
        if (ON_HAPROXY) t.same(await reloads(), { 'new route timeout': 1 }, 'its new timeout value took one seamless reload (the requests below show none failed)');
        manifests.write([...base(secure, 'other'), ...moved]);
        t.ok(await eventually(async () => (await curl(['http://endpoints.example.com/'])).pod === 'other', 10_000), 'the endpoint moved');
        const rotated = issue(['secure.example.com'], { organization: 'rotated' });
        manifests.write([...base(rotated, 'other'), ...moved]);
        t.ok(await eventually(async () => /O=rotated/.test(await subject()), 10_000), 'the rotated certificate is served');
      } finally {
        changing = false;
      }
      const [plain, secured] = await Promise.all(loops);
      t.ok(plain.length >= 50 && secured.length >= 50, `requests ran across the changes (${plain.length} http, ${secured.length} https)`);
      t.same(plain.filter((status) => status !== 200), [], 'no failed HTTP request across the changes');
      t.same(secured.filter((status) => status !== 200), [], 'no failed HTTPS request across the changes');
      t.equal((await curl(['http://live.example.com/'])).pod, 'api', 'the moved route');
    });

    t.test('plain rules beside conditional ones at longer and shorter paths, and a covering wildcard\'s: precedence and fall-through', async (t) => {
      const cases: [string[], string, number, string?][] = [
        [['http://layered.example.com/a/b/c'], 'a conditional longer prefix falls through to the plain /a', 200, 'web'],
        [['-H', 'pick: api', 'http://layered.example.com/a/b/c'], 'it holds', 200, 'api'],
        [['-H', 'pick: other', 'http://layered.example.com/a/b/c'], 'the plain /a before the conditional /', 200, 'web'],
        [['http://layered.example.com/a'], 'the plain /a', 200, 'web'],
        [['-H', 'pick: other', 'http://layered.example.com/z'], 'the conditional / holds', 200, 'other'],
        [['http://layered.example.com/z'], 'it does not: no rule', 404],
        [['http://layered.example.com/ab'], '/a does not cover /ab', 404],
        [['http://layered.example.com/a/b/exact'], 'Exact before the prefixes', 200, 'other'],
        [['-H', 'pick: api', 'http://layered.example.com/a/b/exact'], 'Exact before the conditional /a/b', 200, 'other'],
        [['http://layered.example.com/a/conditional'], 'a conditional Exact falls through to /a', 200, 'web'],
        [['-H', 'pick: api', 'http://layered.example.com/a/conditional'], 'it holds', 200, 'api'],
        [['http://a.wild.example.com/deeper'], 'the host\'s own Prefix / before the wildcard\'s longer path', 200, 'api'],
        [['http://b.wild.example.com/deeper/x'], 'a wildcard\'s longer path', 200, 'other'],
        [['http://b.wild.example.com/deeperx'], 'by path element', 200, 'web'],
        [['http://deep.b.wild.example.com/deeper'], 'a deeper name, the same wildcard', 200, 'other'],
      ];
      for (const [args, why, status, pod] of cases) {
        const reply = await curl(args);
        t.equal(reply.status, status, `${args.join(' ')}: ${why}`);
        if (pod) t.equal(reply.pod, pod, `${args.join(' ')}: ${pod}`);
      }
    });

    t.test('nested wildcards and any host: the deepest covering wildcard\'s rules first, then the shallower\'s, then any host\'s', async (t) => {
      const cases: [string, string, string][] = [
        ['http://x.inner.nest.example.com/nest', 'one label under the deeper wildcard', 'other'],
        ['http://a.b.inner.nest.example.com/nest', 'two labels under the deeper wildcard, three under the other', 'other'],
        ['http://a.b.inner.nest.example.com/nest-outer', 'the shallower wildcard\'s rule after the deeper\'s', 'api'],
        ['http://a.b.inner.nest.example.com/nest-any', 'any host\'s after both', 'web'],
        ['http://x.nest.example.com/nest', 'one label under the shallower', 'api'],
        ['http://a.b.nest.example.com/nest', 'two labels under the shallower', 'api'],
        ['http://a.b.example.org/nest', 'no wildcard: any host\'s', 'web'],
      ];
      const replies = await curls(cases.map(([url]) => url));
      cases.forEach(([url, why, pod], index) => {
        t.equal(replies[index].status, 200, `${url}: ${why}`);
        t.equal(replies[index].pod, pod, `${url}: ${why}: ${pod}`);
      });
    });

    t.test('a plain rule turned conditional and back while requests run: none fails', async (t) => {
      const flip = (conditional: boolean) => route('flip', ['flip.example.com'], conditional
        ? [{ matches: [prefix('/x', { headers: headers({ flip: 'yes' }) })], backends: to('api') }, { matches: [prefix('/', { headers: headers({ flip: 'yes' }) })], backends: to('web') }]
        : [{ backends: to('web') }]);
      const write = (conditional: boolean) => manifests.write([...base(), ...routes(), flip(conditional)]);
      write(false);
      t.ok(await eventually(async () => (await curl(['http://flip.example.com/x'])).pod === 'web', 10_000), 'plain: served');
      let changing = true;
      const requests = requestsWhile(() => changing, ['http://flip.example.com/', 'http://flip.example.com/x/y'], ['-H', 'flip: yes']);
      try {
        for (const conditional of [true, false, true, false]) {
          await new Promise((resolve) => setTimeout(resolve, 300));
          write(conditional);
          t.ok(await eventually(async () => (await curl(['http://flip.example.com/x'])).status === (conditional ? 404 : 200), 10_000), conditional ? 'conditional: a request without the header matches no rule' : 'plain again: it does');
          t.equal((await curl(['-H', 'flip: yes', 'http://flip.example.com/x/y'])).pod, conditional ? 'api' : 'web', 'with it: the state\'s rule');
        }
      } finally {
        changing = false;
      }
      const statuses = await requests;
      t.ok(statuses.length >= 50, `requests ran across the changes (${statuses.length})`);
      t.same(statuses.filter((status) => status !== 200), [], 'no failed request across the changes');
    });

    t.test('an invalid HTTPRoute is named and skipped alone', async (t) => {
      const bad = route('bad', ['bad.example.com'], [{ matches: [prefix('relative')], backends: to('web') }]);
      manifests.write([...base(), ...routes(), bad, route('beside', ['beside.example.com'], [{ backends: to('web') }])]);
      t.ok(await eventually(async () => (await curl(['http://beside.example.com/'])).pod === 'web', 10_000), 'the valid route beside it is served');
      t.ok(await logged(/HTTPRoute default\/bad: spec\.rules\[0\]\.matches\[0\]\.path\.value \\?"relative\\?" must be an absolute path/));
      t.equal((await curl(['http://match.example.com/'])).pod, 'web', 'the others still served');
    });

    if (ON_HAPROXY) {
      t.test('a route changed to an expression HAProxy\'s PCRE2 refuses is judged on its change, and served again when changed back', async (t) => {
        const changing = (value: string) => route('regex-changing', ['changing.example.com'], [{ matches: [{ path: { type: 'RegularExpression', value } }], backends: to('web') }]);
        const served = async () => (await curl(['http://changing.example.com/items/42'])).pod === 'web';
        manifests.write([...base(), ...routes(), changing('/items/[0-9]+')]);
        t.ok(await eventually(served, 10_000), 'an expression both engines read is served');
        manifests.write([...base(), ...routes(), changing('/items/[^]+')]);
        t.ok(await logged(/HTTPRoute default\/regex-changing: parent default\/gw[^:]*: UnsupportedValue: spec\.rules\[0\]\.matches\[0\]\.path\.value \\?"\/items\/\[\^\]\+\\?": HAProxy's PCRE2 cannot compile it/), 'the changed expression is judged, not the one remembered');
        t.ok(await eventually(async () => (await curl(['http://changing.example.com/items/42'])).status === 404, 10_000), 'and the route is no longer served');
        manifests.write([...base(), ...routes(), changing('/items/[0-9]+')]);
        t.ok(await eventually(served, 10_000), 'changed back: served again');
      });
    }
  });
}
